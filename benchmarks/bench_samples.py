"""The samples probe's time per checkpoint over the bare network calls it needs.

A run is created (6x6 parity, G=3, N train samples, a bank of S seeds) and trained for 1 step, so
it has checkpoints 0 and 1. Baseline: the 2n - 1 network calls of the Heun sampler (n = 35 steps)
on the whole bank, with nothing else: ``D(x, sigma)`` on a fixed random x. Probe: ``get_probe("samples")``
over both checkpoints with ``force`` (model loading, sampling, metrics incl. memorization and
nearest-neighbour Hamming against the N train samples, one cube piece per step, the assembly),
divided by 2. Target: probe / bare <= 1.2. Both are timed in the same process (best of --repeat),
by wall clock and by the process's CPU time (the robust one on a shared, busy machine).

    python benchmarks/bench_samples.py                       # tiny DiT, N = 100000, 2048 seeds
    python benchmarks/bench_samples.py --model nano --n-train 4096 --threads 2
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from twoclocks.probes import get_probe
from twoclocks.run import open_run
from twoclocks.training.edm import karras_sigmas
from twoclocks.training.train import train


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--n-train", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir", default=None, help="where to create the run (default: a temp dir)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    root = Path(a.dir or tempfile.mkdtemp(prefix="bench_samples_"))
    path = root / f"run_{a.model}_{a.n_train}_{a.seeds}"
    if not (path / "config.json").exists():
        train(path, dict(side=6, group=3, n_train=a.n_train, n_heldout=256, n_hypercube=256, n_noise=a.seeds,
                         model=a.model, steps=1, batch=256, device="cpu"), progress=False)
    run = open_run(path)
    steps = run.steps
    cfg = run.config
    sig = karras_sigmas(cfg.sampler_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho).tolist()
    calls = [s for s in sig[:-1]] + [s for s in sig[1:-1]]   # 2n - 1 evaluations
    x = torch.as_tensor(np.random.default_rng(0).standard_normal((a.seeds, 36)), dtype=torch.float32)

    def bare():
        D = run.denoiser(steps[-1])
        for s in calls:
            D(x, s)

    def probe():
        get_probe("samples")(run, force=True, progress=False)

    def timed(fn, per=1):
        w, c = time.perf_counter(), time.process_time()
        fn()
        return (time.perf_counter() - w) / per, (time.process_time() - c) / per

    t_bare, t_probe = [], []
    for _ in range(a.repeat):   # interleaved, so a change in machine load hits both
        t_bare.append(timed(bare))
        t_probe.append(timed(probe, len(steps)))
    print(f"model {a.model}, N = {a.n_train}, {a.seeds} seeds, {len(calls)} network calls per checkpoint, "
          f"torch threads {a.threads}")
    for j, clock in enumerate(("wall", "cpu")):
        tb, tp = min(t[j] for t in t_bare), min(t[j] for t in t_probe)
        print(f"{clock:>4}: bare network calls {tb:.3f} s/checkpoint, samples probe {tp:.3f} s/checkpoint, "
              f"ratio {tp / tb:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
