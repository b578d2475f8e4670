"""One command, one JSON: how fast and how sound is training and sampling on this machine's GPU.

    python benchmarks/gpu_check.py --out gpu_check.json             # one GPU: DiT-mini, GPT-mini, < 5 min
    python benchmarks/gpu_check.py --cpu --tiny --out check.json    # the same code on the CPU, seconds
    python benchmarks/gpu_check.py --record                         # ... and record the bf16 agreement

What it writes (every ratio is against a baseline measured in the same process):

- ``train.{dit,gpt}.{naive,fp32,bf16,bf16_compile}``: training steps/s. ``naive`` is the eager
  reference of benchmarks/bench_train.py (DataLoader, hand-written attention, per-parameter Adam,
  ``loss.item()`` per step); the others are the trainer's own step (``TrainStep``) in fp32, with bf16
  autocast, and bf16 + torch.compile with CUDA graphs (compile="graphs"; on the CPU compile="on").
  Each row: ``steps_per_s``, ``ratio`` (to naive), ``peak_step_bytes`` (CUDA: device memory a step
  allocates beyond what was allocated before it), ``host_syncs_per_step`` (CUDA: counted with
  torch.cuda.set_sync_debug_mode; 0 is the goal), ``compile_mode`` actually used and ``first_calls_s``
  (warm-up calls, compile included).
- ``samples_probe``: a short run of the same model size is trained; over its last 10 checkpoints x
  the seed bank: the samples probe (``run.generate`` + ``SampleEvaluator.evaluate``, model loading
  included) against the bare Heun network calls on the same bank (model preloaded); ``ratio`` =
  probe seconds / bare seconds (1 = no overhead).
- ``bf16_vs_fp32`` at the last checkpoint: fraction of identical decoded final samples (Heun from
  the same bank with and without bf16 autocast) and the DSM loss relative difference (unweighted
  ||D(x + s n; s) - x||^2 on train samples, fixed noises, 50 noise levels: mean and max over levels).
- ``peak_memory``: CUDA max_memory_allocated over the whole check; the process's max RSS.
- ``recorded`` (with ``--record [FILE]``): the bf16 agreement written as measurements of this device
  (twoclocks.environment; FILE defaults to the package's precision_measurements.json): samples
  (``identical_samples_frac``) and dsm-spectrum (``dsm_loss_rel_diff_max``) on DiT, each with whether
  it meets the probe's ``bf16_target``. ``--precision auto`` uses bf16 on this GPU model for a probe
  only where the recorded measurements meet the target (docs/science.md#precision).

A part that cannot run here is ``{"not_measured": "<why>"}``. ``--budget-s`` stops starting new parts
once spent (they are then not measured), so the command ends in time.
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_train import naive, ours, setup  # noqa: E402

from twoclocks.environment import MEASUREMENTS_FILE, device_name, meets_target, record_measurements  # noqa: E402
from twoclocks.probes.registry import get_probe  # noqa: E402
from twoclocks.training.edm import heun_sample, sigma_grid  # noqa: E402

#: what --record writes: (probe, arch, metric of bf16_vs_fp32)
RECORDED = (("samples", "dit", "identical_samples_frac"), ("dsm-spectrum", "dit", "dsm_loss_rel_diff_max"))

SIZES = {  # the GPU check, and the tiny CPU mode the tests run
    "gpu": dict(preset="mini", side=6, group=3, n_train=4096, batch=256, timed=50, warmup=5,
                run_steps=100, saves_per_decade=5, n_noise=2048, sampler_steps=35, dsm_n=1024),
    "tiny": dict(preset="tiny", side=4, group=2, n_train=32, batch=64, timed=5, warmup=3,
                 run_steps=20, saves_per_decade=10, n_noise=32, sampler_steps=4, dsm_n=32),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def count_syncs(fn, calls: int, device) -> float | None:
    """Host synchronisations per call of ``fn`` (CUDA only: set_sync_debug_mode warns on each)."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for _ in range(calls):
                fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in seen) / calls


def time_row(fn, size, device) -> dict:
    """First calls (compile, CUDA-graph recording), host syncs, then the timed steps and their memory."""
    t = time.perf_counter()
    for _ in range(size["warmup"]):
        fn()
    sync(device)
    row = {"first_calls_s": time.perf_counter() - t}
    syncs = count_syncs(fn, 3, device)
    row["host_syncs_per_step"] = syncs if syncs is not None else "not measured (CPU)"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    t = time.perf_counter()
    for _ in range(size["timed"]):
        fn()
    sync(device)
    row["steps_per_s"] = size["timed"] / (time.perf_counter() - t)
    row["peak_step_bytes"] = (torch.cuda.max_memory_allocated() - before if device.type == "cuda"
                              else "not measured (CPU)")
    return row


def release(device):
    """Give the last row's device memory back before the next one (CUDA; on the CPU gc is slow)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def check_training(arch, size, device, compile_ok: bool, deadline: float) -> dict:
    task = setup(arch, size["preset"], size["side"], size["group"], size["n_train"], size["batch"], device)
    rows = {}
    variants = [("naive", None), ("fp32", dict(compile="off", bf16=False)),
                ("bf16", dict(compile="off", bf16=True)), ("bf16_compile", dict(compile="graphs", bf16=True))]
    for name, kw in variants:
        if time.time() > deadline:
            rows[name] = {"not_measured": "time budget (--budget-s) spent"}
            continue
        if name == "bf16_compile" and not compile_ok:
            rows[name] = {"not_measured": "--no-compile"}
            continue
        if name == "bf16_compile" and time.time() > deadline - 60:  # a cold compile takes about a minute
            rows[name] = {"not_measured": "time budget (--budget-s) nearly spent: no time to compile"}
            continue
        step = naive(*task, device) if kw is None else ours(*task, device, **kw)
        rows[name] = time_row(step, size, device)
        if kw is not None:
            rows[name]["compile_mode"] = step.mode  # after any fallback
            rows[name]["cuda_graphs"] = step.mode == "graphs" and device.type == "cuda"
        del step
        release(device)
    base = rows["naive"].get("steps_per_s")
    for row in rows.values():
        if "steps_per_s" in row and base:
            row["ratio"] = row["steps_per_s"] / base
    return rows


def short_run(size, device, root: Path) -> Path:
    from twoclocks.training.train import train
    path = root / "run"
    train(path, dict(side=size["side"], group=size["group"], n_train=size["n_train"], n_heldout=64,
                     n_hypercube=64, n_noise=size["n_noise"], model=size["preset"], batch=size["batch"],
                     steps=size["run_steps"], saves_per_decade=size["saves_per_decade"],
                     sampler_steps=size["sampler_steps"], device=device.type), progress=False)
    return path


def bare_denoiser(net, device, bf16: bool):
    """D(x, sigma) = the network, nothing else (bf16 autocast when asked)."""
    @torch.inference_mode()
    def D(x, sigma):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return net(x, sigma).float()
    return D


def check_samples_probe(run, device, steps) -> dict:
    from twoclocks.probes.samples import SampleEvaluator
    cfg = run.config
    sampler = (cfg.sampler_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
    z = torch.as_tensor(run.noise, device=device)
    use_bf16 = device.type == "cuda" and cfg.bf16  # as run.denoiser does
    bare_s = 0.0
    for step in steps:
        D = bare_denoiser(run.model(step, device), device, use_bf16)
        sync(device)
        t = time.perf_counter()
        heun_sample(D, z, *sampler)
        sync(device)
        bare_s += time.perf_counter() - t
    t = time.perf_counter()
    ev = SampleEvaluator(run.rule, run.encoding, run.cells("train"))
    for step in steps:
        ev.evaluate(run.generate(step, device))
    probe_s = time.perf_counter() - t
    return {"checkpoints": len(steps), "seeds": int(run.n_seeds), "sampler_steps": cfg.sampler_steps,
            "bf16": use_bf16, "probe_s": probe_s, "bare_heun_s": bare_s, "ratio": probe_s / bare_s}


def check_bf16_vs_fp32(run, device, step, dsm_n: int) -> dict:
    cfg = run.config
    net = run.model(step, device)
    D32, D16 = bare_denoiser(net, device, False), bare_denoiser(net, device, True)
    z = torch.as_tensor(run.noise, device=device)
    sampler = (cfg.sampler_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
    c32 = run.encoding.decode(heun_sample(D32, z, *sampler).cpu().numpy())
    c16 = run.encoding.decode(heun_sample(D16, z, *sampler).cpu().numpy())
    x = torch.as_tensor(run.x("train")[:dsm_n], device=device)
    n = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(device)
    rel, l32s = [], []
    for s in sigma_grid(50).tolist():
        l32 = ((D32(x + s * n, s) - x) ** 2).mean().item()
        l16 = ((D16(x + s * n, s) - x) ** 2).mean().item()
        rel.append(abs(l16 - l32) / l32)
        l32s.append(l32)
    return {"step": step, "identical_samples_frac": float(np.mean(np.all(c32 == c16, axis=1))),
            "dsm_loss_rel_diff_mean": float(np.mean(rel)), "dsm_loss_rel_diff_max": float(np.max(rel)),
            "dsm_loss_fp32_mean": float(np.mean(l32s)), "noise_levels": len(rel), "samples": int(len(x))}


def record(agreement: dict, device, path) -> dict:
    """Write the measured bf16 agreement (``RECORDED``) to the measurements file ``path``."""
    if "identical_samples_frac" not in agreement:
        return {"not_recorded": "bf16_vs_fp32 was not measured"}
    entries = [{"probe": p, "arch": arch, "metric": m, "value": agreement[m],
                "source": "benchmarks/gpu_check.py bf16_vs_fp32"} for p, arch, m in RECORDED]
    written = record_measurements(path, entries, device)
    for e in written:
        e["meets_target"] = meets_target(e, get_probe(e["probe"]).bf16_target)
    return {"file": str(path), "measurements": written}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check.json", help="where the JSON goes")
    ap.add_argument("--cpu", action="store_true", help="run on the CPU even if a GPU is present")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (seconds; the tests use --cpu --tiny)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile row (it compiles for "
                    "tens of seconds on a cold cache)")
    ap.add_argument("--budget-s", type=float, default=240.0, help="start no new part after this many seconds")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--record", nargs="?", const=str(MEASUREMENTS_FILE), default=None, metavar="FILE",
                    help="record the bf16 agreement as this device's measurements in FILE (default: the "
                    "package's precision_measurements.json)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.time()
    deadline = t0 + a.budget_s
    device = torch.device("cuda" if torch.cuda.is_available() and not a.cpu else "cpu")
    size = SIZES["tiny" if a.tiny else "gpu"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    report = {"meta": {"torch": torch.__version__, "python": platform.python_version(), "device": str(device),
                       "device_name": device_name(device),
                       "threads": torch.get_num_threads(), "sizes": size, "args": vars(a)}}
    if device.type == "cpu" and not a.cpu:
        report["meta"]["note"] = "no CUDA here: measured on the CPU; CUDA-only numbers are not measured"

    took = report["meta"]["section_s"] = {}
    for arch in ("dit", "gpt"):
        t = time.time()
        report.setdefault("train", {})[arch] = check_training(arch, size, device, not a.no_compile, deadline)
        took[f"train_{arch}"] = time.time() - t

    with tempfile.TemporaryDirectory(prefix="gpu_check_") as root:
        if time.time() > deadline:
            report["samples_probe"] = report["bf16_vs_fp32"] = {"not_measured": "time budget (--budget-s) spent"}
        else:
            from twoclocks.run import open_run
            t = time.time()
            run = open_run(short_run(size, device, Path(root)))
            took["short_run"], t = time.time() - t, time.time()
            steps = run.steps[-10:]  # both sizes save at least 10 checkpoints
            report["samples_probe"] = check_samples_probe(run, device, steps)
            took["samples_probe"], t = time.time() - t, time.time()
            report["bf16_vs_fp32"] = check_bf16_vs_fp32(run, device, steps[-1], size["dsm_n"])
            took["bf16_vs_fp32"] = time.time() - t

    if a.record:
        report["recorded"] = record(report["bf16_vs_fp32"], device, a.record)

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    report["peak_memory"] = {
        "cuda_max_allocated_bytes": (torch.cuda.max_memory_allocated() if device.type == "cuda"
                                     else "not measured (CPU)"),
        "process_max_rss_bytes": rss if sys.platform == "darwin" else rss * 1024}
    report["meta"]["wall_s"] = time.time() - t0
    Path(a.out).write_text(json.dumps(report, indent=2, default=float))
    for arch, rows in report["train"].items():
        print(arch, "  ".join(f"{k} {r['ratio']:.2f}x" if "ratio" in r else f"{k} -" for k, r in rows.items()))
    sp = report["samples_probe"]
    if "ratio" in sp:
        print(f"samples probe / bare Heun: {sp['ratio']:.2f}  ({sp['checkpoints']} checkpoints x {sp['seeds']} seeds)")
    for e in report.get("recorded", {}).get("measurements", []):
        print(f"recorded {e['probe']} {e['arch']} on {e['device_name']}: {e['metric']} = {e['value']:.4g} "
              f"({'meets' if e['meets_target'] else 'misses'} the bf16 target) in {report['recorded']['file']}")
    print(f"wrote {a.out} in {report['meta']['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
