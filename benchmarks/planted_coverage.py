"""Planted-truth coverage study (docs/science.md#planted): planted vs recovered clocks and scaling, and
the coverage of every interval, for DiT and GPT. Prints a markdown table.

    PYTHONPATH=... python benchmarks/planted_coverage.py [--reps 200] [--sweep-reps 150] [--out DIR]

About 3 CPU-minutes with the defaults; the table in docs/science.md#planted used --reps 400
--sweep-reps 300 (6 CPU-minutes).
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from twoclocks.planted import (make_planted_run, profile_coverage, run_coverage, sweep_coverage, sweep_truth,
                               t_interval)
from twoclocks.probes.clocks import compute_clocks, run_clocks

BASE = dict(side=4, n_heldout=8, n_hypercube=8, model="tiny", device="cpu", saves_per_decade=20)
TAU_RULE, TAU_MEM = 150.0, 2200.0
NS, GS = (16, 32, 64, 128, 256), (4, 8, 16)
C, ALPHA, RULE0, FACTOR, SIGMA = 40.0, 1.1, 40.0, 1.2, 0.1
REGIMES = ((256, 0.5), (128, 1.0))   # (seeds per repetition, logistic width in ln t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200, help="repetitions per run-coverage cell")
    ap.add_argument("--sweep-reps", type=int, default=150, help="repeated planted sweeps")
    ap.add_argument("--out", default=None, help="where to keep the planted runs (default: a temp dir)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(args.out or tempfile.mkdtemp(prefix="planted-"))
    rows, notes = [], []
    t0 = time.time()
    for arch in ("dit", "gpt"):
        pr = make_planted_run(root / f"{arch}-run", TAU_RULE, TAU_MEM, u_seed=1, arch=arch, group=4, n_train=64,
                              n_noise=2048, steps=20000, **BASE)
        c = run_clocks(pr.path)
        for name in ("tau_rule", "tau_mem"):
            rows.append((arch, f"{name}, 2048 seeds, width 0.05", f"{pr.truth[name + '_planted']:.0f} "
                         f"(grid {pr.truth[name + '_planted_grid']:.0f})", f"{c[name]:.0f}", "point clock", "-", "-"))
        for n_seeds, width in REGIMES:
            r = run_coverage(pr, args.reps, n_seeds, seed=5, n_boot=1000, rule_width=width, mem_width=width)
            for name in ("tau_rule", "tau_mem"):
                d = r[name]
                rows.append((arch, f"{name}, {n_seeds} seeds, width {width}", f"{r['truth'][name + '_planted']:.0f}",
                             f"exp(mean ln ratio) {math.exp(d['mean_log_ratio']):.3f}; = grid clock "
                             f"{d['point_equals_grid']:.0%}",
                             f"bootstrap 90% + grid bracket ({d['mean_width_steps']:.1f} steps)", "0.90",
                             f"{d['coverage']:.3f} ({args.reps})"))
        truths = sweep_truth(NS, GS, C, ALPHA, RULE0, FACTOR, g0=4, sigma=SIGMA, rng=np.random.default_rng(2))
        pruns = [make_planted_run(root / f"{arch}-sweep" / f"run{i}", tr["tau_rule"], tr["tau_mem"], u_seed=i,
                                  arch=arch, group=tr["group"], n_train=tr["n_train"], n_noise=1024, steps=100000,
                                  **BASE) for i, tr in enumerate(truths)]
        ds = compute_clocks([p.path for p in pruns], pools=[("group",)])
        f = ds.isel(fit=0)
        g = np.array([tr["group"] for tr in truths], float)
        s, slo, shi = t_interval(g, np.log(ds.tau_rule.values))
        n = np.array([tr["n_train"] for tr in truths], float)
        a, tlo, thi = t_interval(np.log(n), np.log(ds.tau_mem.values))
        exact = np.mean([(p.truth["tau_mem_planted_grid"], p.truth["tau_rule_planted_grid"]) == (m, q)
                         for p, m, q in zip(pruns, ds.tau_mem.values, ds.tau_rule.values)])
        notes.append(f"{arch}: one planted sweep of {len(pruns)} runs through compute_clocks: per-run clocks equal "
                     f"the planted grid clocks in {exact:.0%} of runs; alpha {float(f.fit_alpha):.3f} (t 95% "
                     f"[{tlo:.3f}, {thi:.3f}], profile [{float(f.fit_alpha_ml_lo):.3f}, "
                     f"{float(f.fit_alpha_ml_hi):.3f}]), c {float(f.fit_c):.1f}, per-unit-G factor {math.exp(s):.3f} "
                     f"[{math.exp(slo):.3f}, {math.exp(shi):.3f}]")
        cfgs = [{"group": tr["group"], "n_train": tr["n_train"]} for tr in truths]
        r = sweep_coverage(pruns, cfgs, args.sweep_reps, C, ALPHA, RULE0, FACTOR, g0=4, sigma=SIGMA, seed=9)
        k = len(pruns)
        rows += [
            (arch, f"alpha, {k} runs (N x G), sigma {SIGMA}", f"{ALPHA}",
             f"{r['alpha_ls_mean']:.4f} +- {r['alpha_ls_sd']:.4f}", "least squares t 95%", "0.95",
             f"{r['cover_t']:.3f} ({args.sweep_reps})"),
            (arch, "alpha (fit_power_law, printed)", f"{ALPHA}", f"{r['alpha_ml_mean']:.4f}",
             "censored ML profile 95%", f"0.95 (exact for n={k}: {profile_coverage(k):.3f})",
             f"{r['cover_ml']:.3f} ({args.sweep_reps})"),
            (arch, "c", f"{C}", f"median {r['c_ls_median']:.2f} (x{r['c_ls_median'] / C:.3f})", "-", "-", "-"),
            (arch, "tau_rule factor per unit G", f"{FACTOR}", f"median {r['factor_median']:.4f}",
             "least squares t 95% on ln tau_rule", "0.95", f"{r['cover_factor']:.3f} ({args.sweep_reps})"),
            (arch, "sweep clocks = planted grid clocks", "-", f"tau_mem {r['exact_mem']:.1%}, tau_rule "
             f"{r['exact_rule']:.1%} of runs", "-", "-", "-"),
        ]
    print("| arm | quantity | planted | recovered | interval | nominal | coverage (reps) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    for line in notes:
        print(f"- {line}")
    print(f"\n{time.time() - t0:.0f} s; runs under {root}")


if __name__ == "__main__":
    main()
