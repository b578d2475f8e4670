"""bf16 against fp32 for the probes' network calls, on a run's checkpoints: agreement and speed.

For each chosen checkpoint of RUN_DIR (a DiT run; a GPT run gets the samples and CE rows):
- samples: the fixed seed bank sampled with fp32 and with bf16 (same seeds): the fraction of identical
  decoded final samples (target >= 99.5%) and the fraction with the same state;
- DSM loss (DiT): the per-(split, sigma) loss on the probe's fixed rows, relative difference where the
  fp32 loss is above 1e-4 (target <= 1%);
- CE (GPT): the absolute difference of the per-position cross-entropy (nats);
and the time of each with both precisions (ratio bf16 / fp32, measured in this run).

    python benchmarks/bench_precision.py RUN_DIR [--steps 10:] [--device cpu] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from twoclocks.probes import dsm
from twoclocks.probes.ce import SPLITS, ce_subsets, per_position_ce
from twoclocks.probes.samples import SampleEvaluator
from twoclocks.run import open_run, resolve_device


def agreement(run, steps, device, n_sigma=24, n_subset=256) -> dict:
    dev = resolve_device(device)
    ev = SampleEvaluator(run.rule, run.encoding, run.cells("train"))
    rows = dsm.make_rows(run, n_sigma, 0.002, 80.0, n_subset).to(dev) if run.config.arch == "dit" else None
    subsets = ce_subsets(run, n_subset) if run.config.arch == "gpt" else None
    out = {"steps": [], "identical_samples": [], "same_state": [], "dsm_max_rel_diff": [], "ce_max_abs_diff": [],
           "t_samples_fp32": 0.0, "t_samples_bf16": 0.0, "t_dsm_fp32": 0.0, "t_dsm_bf16": 0.0}
    for s in steps:
        res = {}
        for prec in ("fp32", "bf16"):
            t = time.perf_counter()
            x = run.generate(s, dev, precision=prec)
            out[f"t_samples_{prec}"] += time.perf_counter() - t
            res[prec] = (ev.encoding.decode(x), ev.evaluate(x)["state"].values)
        out["steps"].append(int(s))
        out["identical_samples"].append(float((res["fp32"][0] == res["bf16"][0]).all(axis=1).mean()))
        out["same_state"].append(float((res["fp32"][1] == res["bf16"][1]).mean()))
        if rows is not None:
            loss = {}
            for prec in ("fp32", "bf16"):
                t = time.perf_counter()
                loss[prec] = dsm.split_stats(rows, dsm.row_losses(run.denoiser(s, dev, precision=prec), rows))[0]
                out[f"t_dsm_{prec}"] += time.perf_counter() - t
            ok = loss["fp32"] > 1e-4
            out["dsm_max_rel_diff"].append(float(np.max(np.abs(loss["bf16"] - loss["fp32"])[ok] / loss["fp32"][ok])))
        if subsets is not None:
            model = run.model(s, dev)
            ce = {}
            for prec in ("fp32", "bf16"):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16"):
                    ce[prec] = np.stack([per_position_ce(model, subsets[sp]).mean(0) for sp in SPLITS])
            out["ce_max_abs_diff"].append(float(np.max(np.abs(ce["bf16"] - ce["fp32"]))))
    out["min_identical_samples"] = min(out["identical_samples"])
    out["samples_speed_ratio_bf16_over_fp32"] = out["t_samples_bf16"] / out["t_samples_fp32"]
    if rows is not None:
        out["max_dsm_rel_diff"] = max(out["dsm_max_rel_diff"])
        out["dsm_speed_ratio_bf16_over_fp32"] = out["t_dsm_bf16"] / out["t_dsm_fp32"]
    if subsets is not None:
        out["max_ce_abs_diff"] = max(out["ce_max_abs_diff"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--steps", default=None, help="as --steps of the probes (default: every 4th checkpoint)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    run = open_run(a.run_dir)
    steps = run.select_steps(a.steps) if a.steps else run.steps[::4]
    res = agreement(run, steps, a.device)
    print(json.dumps(res, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
