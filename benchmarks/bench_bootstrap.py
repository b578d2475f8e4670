"""Clock-uncertainty benchmark: :func:`twoclocks.probes.uncertainty.bootstrap_clocks` (B replicates at
once: one count-weight matrix product and one vectorized sustained onset) on a synthetic cube of 500
checkpoints x 2048 seeds, against B calls of ``clocks_from_curves`` (the per-replicate clock rule alone,
curves given), and against a plain loop that also resamples the curves (index the seeds, mean,
``clocks_from_curves``; timed on a few replicates and scaled to B). Prints times and ratios measured
in this run.

    python benchmarks/bench_bootstrap.py [--steps 500] [--seeds 2048] [--boot 1000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from twoclocks.probes.clocks import clocks_from_curves
from twoclocks.probes.uncertainty import bootstrap_clocks, bootstrap_indices


def synthetic(n_steps: int, n_seeds: int, seed: int = 0):
    """Monotone per-seed states (a latent uniform per seed against logistic schedules in log step),
    with 5% of the states flipped at random so the curves are not monotone."""
    rng = np.random.default_rng(seed)
    steps = np.unique(np.round(np.logspace(0, 6, n_steps * 2)))[:n_steps]
    u = rng.random(n_seeds)
    p_rule = 1 / (1 + (2e3 / steps) ** 2)
    p_mem = 1 / (1 + (5e4 / steps) ** 2)
    valid = (u[None] < p_rule[:, None]) ^ (rng.random((len(steps), n_seeds)) < 0.05)
    mem = (u[None] < p_mem[:, None]) & valid
    return steps, valid, mem


def best_of(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=2048)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--loop", type=int, default=20, help="replicates of the plain loop actually timed")
    a = ap.parse_args()
    steps, valid, mem = synthetic(a.steps, a.seeds)
    base = 0.01
    acc, mcurve = valid.mean(1), mem.mean(1)

    t_boot = best_of(lambda: bootstrap_clocks(steps, valid, mem, base, n_boot=a.boot), a.repeat)
    calls = 200
    t_one = best_of(lambda: [clocks_from_curves(steps, acc, mcurve, base) for _ in range(calls)], a.repeat) / calls
    idx = bootstrap_indices(a.seeds, a.loop, 0)

    def loop():
        for i in idx:
            clocks_from_curves(steps, valid[:, i].mean(1), mem[:, i].mean(1), base)
    t_loop = best_of(loop, a.repeat) / a.loop

    r = bootstrap_clocks(steps, valid, mem, base, n_boot=a.boot)
    print(f"cube: {len(steps)} steps x {a.seeds} seeds; B = {a.boot}")
    print(f"tau_rule {r['tau_rule']:g} [{r['tau_rule_lo']:g}, {r['tau_rule_hi']:g}], "
          f"tau_mem {r['tau_mem']:g} [{r['tau_mem_lo']:g}, {r['tau_mem_hi']:g}] ({r['level']:.0%})")
    print(f"bootstrap_clocks (B = {a.boot}):          {t_boot:8.3f} s")
    print(f"clocks_from_curves x B:                 {t_one * a.boot:8.3f} s  ({t_one * 1e3:.3f} ms per call)  "
          f"ratio {t_one * a.boot / t_boot:.1f}x")
    print(f"plain loop (resample + clocks) x B:     {t_loop * a.boot:8.3f} s  ({t_loop * 1e3:.2f} ms per "
          f"replicate, {a.loop} timed)  ratio {t_loop * a.boot / t_boot:.1f}x")


if __name__ == "__main__":
    main()
