"""Landscape probe throughput: grid points per second against bare forward passes of the same batch size.

A throwaway run (6x6 parity G=3, one training step) is created in a temp directory. For each preset
the baseline is the denoiser called on random (batch, 36) inputs in chunks of ``--batch`` rows, the same
number of rows as the probe evaluates; the probe numbers are :func:`plane_fields` /
:func:`basin_profiles` (points built on the device, reductions included) and the whole
``plane`` probe call for one checkpoint (geometry, store writes and cube assembly included). Ratios are
probe points/s divided by bare rows/s, measured in the same process on the same device (1.0 = no overhead).

    python benchmarks/bench_landscape.py                       # tiny on the CPU
    python benchmarks/bench_landscape.py --presets tiny,mini --device cuda
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from twoclocks.landscape.basin import alpha_grid, basin_ends, basin_profiles
from twoclocks.landscape.geometry import anchor_spec, face_geometry
from twoclocks.landscape.plane import PROBE as PLANE, plane_fields, plane_grid
from twoclocks.run import open_run, resolve_device
from twoclocks.training.train import train


def best_of(fn, repeats, sync):
    out = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        out.append(time.perf_counter() - t)
    return min(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny")
    ap.add_argument("--grid", type=int, default=81)
    ap.add_argument("--sigmas", type=int, default=4, help="noise levels per plane (jobs = anchors x sigmas)")
    ap.add_argument("--anchors", type=int, default=1)
    ap.add_argument("--basin-anchors", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16384)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    dev = resolve_device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    print(f"device {dev}, torch threads {torch.get_num_threads()}, batch {a.batch}")
    for preset in a.presets.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "run"
            train(path, dict(side=6, group=3, n_train=256, n_heldout=64, n_hypercube=64, n_noise=64, model=preset,
                             steps=1, batch=32, device=str(dev)), progress=False)
            run = open_run(path)
            step = run.steps[-1]
            D = run.denoiser(step, dev)
            sig = np.geomspace(0.2, 2.0, a.sigmas)
            anchors = np.arange(a.anchors)
            face = face_geometry(run, anchors)
            u = plane_grid(a.grid, 2.0)
            jobs_a = np.repeat(np.arange(a.anchors), a.sigmas)
            jobs_s = np.tile(sig, a.anchors)
            n_plane = len(jobs_a) * a.grid ** 2

            x_a, ends, _ = basin_ends(run, np.arange(a.basin_anchors))
            al = alpha_grid()
            b_a = np.repeat(np.arange(a.basin_anchors), a.sigmas)
            b_s = np.tile(sig, a.basin_anchors)
            n_basin = len(b_a) * ends.shape[1] * len(al)

            def bare(n):
                x = torch.randn(n, run.rule.D, device=dev)
                s = torch.as_tensor(np.resize(sig, n), dtype=torch.float32, device=dev)

                def go():
                    with torch.inference_mode():
                        for k in range(0, n, a.batch):
                            D(x[k:k + a.batch], s[k:k + a.batch])
                return go

            t_bare_p = best_of(bare(n_plane), a.repeats, sync)
            t_plane = best_of(lambda: plane_fields(D, face, jobs_a, jobs_s, u, u, dev, a.batch), a.repeats, sync)
            t_bare_b = best_of(bare(n_basin), a.repeats, sync)
            t_basin = best_of(lambda: basin_profiles(D, x_a, ends, b_a, b_s, al, dev, a.batch), a.repeats, sync)
            t_e2e = best_of(lambda: PLANE(run, anchors=anchor_spec(anchors), sigma=sig, steps=str(step), grid=a.grid,
                                          device=str(dev), force=True, batch_size=a.batch, progress=False),
                            a.repeats, sync)
            print(f"[{preset}] plane {n_plane} points: {n_plane / t_plane:,.0f} points/s vs bare forward "
                  f"{n_plane / t_bare_p:,.0f} rows/s -> ratio {t_bare_p / t_plane:.2f}")
            print(f"[{preset}] basin {n_basin} points: {n_basin / t_basin:,.0f} points/s vs bare forward "
                  f"{n_basin / t_bare_b:,.0f} rows/s -> ratio {t_bare_b / t_basin:.2f}")
            print(f"[{preset}] plane probe end to end (one checkpoint, store + assembly): {n_plane / t_e2e:,.0f} "
                  f"points/s -> ratio {t_bare_p / t_e2e:.2f}")


if __name__ == "__main__":
    main()
