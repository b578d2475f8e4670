"""DSM spectrum: time per checkpoint against the bare forward passes of the same batches.

    python benchmarks/bench_dsm.py [--device cpu|cuda] [--models tiny,mini] [--n-subset N] [--n-sigma S]
                                   [--batch-size B] [--repeats R] [--memorize-n N]

For each model preset a throw-away run is created (6x6 parity, G=3; three training steps, so four
checkpoints 0..3 with essentially random weights) and, interleaved ``repeats`` times (min taken):
- bare: the network's forward passes over exactly the probe's batches for the 4 checkpoints
  (models already loaded; inference mode, same autocast);
- probe: the probe itself (the one driver, ``dsm.PROBE``) completing a cube that has checkpoint 0 and
  the references: checkpoints 1..3 each loaded from disk, every (split, item, draw, sigma) row
  evaluated in batches, reduced to a piece and written, and the cube compacted with its derived views.
Target: probe / bare <= 1.1. It also prints the once-per-cube costs (building the fixed rows, the
exact references) and, with ``--memorize-n``, the memorizing reference's time on a train set of that
size against the previous implementation (plain chunked online softmax).
CPU defaults are small so the script runs in a couple of minutes on a laptop; on a GPU use the
probe's defaults: ``--n-subset 1024 --n-sigma 50 --batch-size 8192``.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from twoclocks.probes import dsm
from twoclocks.probes.dsm import make_rows, reference_piece
from twoclocks.run import open_run, resolve_device
from twoclocks.training.train import train


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


STEPS = [1, 2, 3]


def bare(run, rows, dev, batch_size):
    """The forward passes alone, through the same denoiser wrapper (autocast, inference mode)."""
    Ds = []
    for step in STEPS:
        Ds.append(run.denoiser(step, dev))
        run._models.clear()  # the closures keep their nets; the cache would keep only one anyway
    sync(dev)
    t = time.perf_counter()
    with torch.inference_mode():
        for D in Ds:
            for i in range(0, rows.y.shape[0], batch_size):
                D(rows.y[i:i + batch_size], rows.s[i:i + batch_size])
    sync(dev)
    return time.perf_counter() - t


def probe(path, dev, batch_size, opts, instrument=False):
    """The probe completing checkpoints 1..3 of a fresh copy of the run whose cube already has step 0
    and the references; with ``instrument``, also the time spent inside the checkpoints' network calls
    (synchronised around each call), measured in the same call: immune to load changes between runs."""
    work = path.with_name(path.name + "_probe")
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(path, work)
    run = open_run(work)  # fresh: every checkpoint is loaded from disk
    inside = [0.0]
    if instrument:
        plain = run.denoiser

        def timed(source, device, precision="fp32"):
            D = plain(source, device, precision=precision)
            if isinstance(source, str):
                return D

            def W(y, s):
                sync(dev)
                t0 = time.perf_counter()
                out = D(y, s)
                sync(dev)
                inside[0] += time.perf_counter() - t0
                return out
            return W
        run.denoiser = timed
    sync(dev)
    t = time.perf_counter()
    dsm.PROBE(run, steps="0:3", device=str(dev), batch_size=batch_size, progress=False, **opts)
    sync(dev)
    return time.perf_counter() - t, inside[0]


def old_memorizing(train_x, chunk=8192):
    """The previous ideal.memorizing_denoiser (for the speed comparison only)."""
    sq = (train_x ** 2).sum(1)

    def D(y, sigma):
        s2 = sigma.reshape(-1, 1) ** 2
        m = torch.full((y.shape[0], 1), -torch.inf, device=y.device)
        z = torch.zeros((y.shape[0], 1), device=y.device)
        acc = torch.zeros_like(y)
        for k in range(0, train_x.shape[0], chunk):
            xk = train_x[k:k + chunk]
            logit = (y @ xk.T - 0.5 * sq[k:k + chunk]) / s2
            m_new = torch.maximum(m, logit.max(1, keepdim=True).values)
            scale = torch.exp(m - m_new)
            w = torch.exp(logit - m_new)
            z = z * scale + w.sum(1, keepdim=True)
            acc = acc * scale + w @ xk
            m = m_new
        return acc / z
    return D


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", default="tiny,mini")
    ap.add_argument("--n-subset", type=int, default=None, help="default: 1024 on cuda; CPU: 64 tiny, 4 mini")
    ap.add_argument("--n-sigma", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=None, help="default: 8192 on cuda, 1024 on cpu")
    ap.add_argument("--repeats", type=int, default=4)
    ap.add_argument("--memorize-n", type=int, default=0, help="also time the memorizing reference at this N")
    a = ap.parse_args()
    dev = resolve_device(a.device)
    torch.manual_seed(0)
    gpu = dev.type == "cuda"
    bs = a.batch_size or (8192 if gpu else 1024)
    tmp = Path(tempfile.mkdtemp(prefix="bench_dsm_"))
    try:
        for model in a.models.split(","):
            n_subset = a.n_subset or (1024 if gpu else {"tiny": 64}.get(model, 4))
            path = tmp / model
            train(path, dict(side=6, group=3, n_train=1024, n_heldout=1024, n_hypercube=1024, n_noise=8,
                             model=model, steps=3, batch=16, device=str(dev)), progress=False)
            run = open_run(path)
            t = time.perf_counter()
            rows = make_rows(run, a.n_sigma, 0.002, 80.0, n_subset).to(dev)
            t_rows = time.perf_counter() - t
            params = {"n_sigma": a.n_sigma, "n_subset": n_subset}
            dsm.PROBE(run, steps="0", device=str(dev), batch_size=bs, progress=False, **params)  # step 0 + references
            bare(run, rows, dev, bs)  # warm-up (allocator, kernels)
            tb, tp = [], []
            for r in range(a.repeats):  # interleaved, alternating order; the minimum of each is kept
                order = (0, 1) if r % 2 else (1, 0)
                for o in order:
                    if o:
                        tp.append(probe(path, dev, bs, params)[0] / len(STEPS))
                    else:
                        tb.append(bare(run, rows, dev, bs) / len(STEPS))
            total, inside = probe(path, dev, bs, params, instrument=True)
            t = time.perf_counter()
            reference_piece(run, rows, bs)
            t_ref = time.perf_counter() - t
            R = rows.y.shape[0]
            print(f"{model:>5} on {dev.type}: {R} rows ({n_subset} per split x {a.n_sigma} sigmas x 3 splits), "
                  f"batch {bs}: per checkpoint: bare forward {min(tb):.3f} s, probe {min(tp):.3f} s, "
                  f"ratio {min(tp) / min(tb):.3f} (target <= 1.1)")
            print(f"       same loop, instrumented: total / time inside the network calls = {total / inside:.3f}")
            print(f"       once per cube: fixed rows {t_rows:.3f} s, the 3 references {t_ref:.3f} s")
        if a.memorize_n:
            from twoclocks.ideal import memorizing_denoiser
            g = torch.Generator().manual_seed(0)
            X = (torch.randint(0, 2, (a.memorize_n, 36), generator=g).float() * 2 - 1).to(dev)
            y = (X[:bs] + 0.5 * torch.randn(bs, 36, generator=g).to(dev))
            s = torch.exp(torch.randn(bs, generator=g) - 0.5).to(dev)
            times = {}
            for name, D in (("new", memorizing_denoiser(X)), ("old", old_memorizing(X))):
                D(y[:64], s[:64])
                sync(dev)
                t = time.perf_counter()
                out = D(y, s)
                sync(dev)
                times[name] = (time.perf_counter() - t, out)
            err = (times["new"][1] - times["old"][1]).abs().max().item()
            print(f"memorizing reference, N = {a.memorize_n}, {bs} rows: new {times['new'][0]:.2f} s, "
                  f"old {times['old'][0]:.2f} s, speed-up {times['old'][0] / times['new'][0]:.2f}x "
                  f"(max |difference| {err:.1e})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
