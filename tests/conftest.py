"""Shared fixtures: tiny runs trained once per test session (CPU, seconds)."""
from __future__ import annotations


import pytest
import torch

torch.set_num_threads(1)  # tiny models: one thread is fastest, and never spin-waits on a shared CPU

TINY = dict(side=4, group=2, n_train=32, n_heldout=64, n_hypercube=64, n_noise=64, model="tiny",
            batch=64, lr=1e-3, steps=60, saves_per_decade=4, log_every=10, device="cpu")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny DiT run on 4x4 parity, G=2, N=32: 60 steps, checkpoints at 0, 1, 2, 3, 6, 10, 18, 32, 56, 60.
    Treat it as read-only (copy it with shutil.copytree to modify)."""
    from twoclocks.training.train import train
    path = tmp_path_factory.mktemp("runs") / "tiny"
    train(path, TINY, progress=False)
    return path


#: small options per probe, for the conformance, kinds and kill tests
SMALL = {"samples": {}, "dsm-spectrum": dict(n_sigma=6, n_subset=16), "ce": dict(n=16), "markov": {},
         "plane": dict(anchor=1, grid=5), "basin": dict(n_anchors=3, n_alpha=5)}


@pytest.fixture(scope="session")
def tiny_gpt_run(tmp_path_factory):
    """A tiny GPT run on the same data as :func:`tiny_run`, 30 steps. Treat it as read-only."""
    from twoclocks.training.train import train
    path = tmp_path_factory.mktemp("runs") / "tiny_gpt"
    train(path, {**TINY, "arch": "gpt", "steps": 30}, progress=False)
    return path


def count_network_calls(run) -> list:
    """Wrap ``run.denoiser`` so every network call appends (source, rows); returns that list."""
    calls = []
    orig = run.denoiser

    def denoiser(source, device="cpu", **kw):
        D = orig(source, device, **kw)

        def counted(x, s):
            calls.append((source, int(x.shape[0])))
            return D(x, s)
        return counted
    run.denoiser = denoiser
    return calls
