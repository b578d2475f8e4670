"""The per-position cross-entropy probe: ideal reference against brute force, cube schema, resume, CLI."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import xarray as xr
from torch import nn
from typer.testing import CliRunner

from twoclocks import TwoclocksError
from twoclocks.data import make_rule
from twoclocks.probes.ce import ce_probe, ideal_reference, per_position_ce

GPT_TINY = dict(arch="gpt", side=4, group=4, n_train=32, n_heldout=64, n_hypercube=64, n_noise=64,
                model="tiny", batch=64, lr=1e-3, steps=20, saves_per_decade=3, log_every=10, device="cpu")


class BruteForceIdeal(nn.Module):
    """The ideal rule model by enumeration: each group is uniform over its 2^(G-1) even patterns, so
    p(c_t | c_<t) = #even patterns extending the group's prefix with c_t / #extending the prefix."""

    def __init__(self, rule):
        super().__init__()
        self.K, self.G = 2, rule.G
        pats = np.array([p for p in itertools.product((0, 1), repeat=rule.G) if sum(p) % 2 == 0])
        self.table = {}
        for j in range(rule.G):
            for prefix in itertools.product((0, 1), repeat=j):
                ext = pats[(pats[:, :j] == prefix).all(1)] if j else pats
                self.table[prefix] = [math.log((ext[:, j] == b).mean()) if (ext[:, j] == b).any() else -math.inf
                                      for b in (0, 1)]

    def forward(self, tokens):
        cells = tokens[:, 1:].numpy()
        n, t = tokens.shape
        out = np.empty((n, t, 2))
        for i in range(n):
            for pos in range(t):
                start = pos - pos % self.G
                out[i, pos] = self.table[tuple(cells[i, start:pos])]
        return torch.as_tensor(out)


@pytest.mark.parametrize("side,group", [(4, 2), (3, 3), (4, 4)])
def test_ideal_model_ce_equals_reference(side, group):
    rule = make_rule({"name": "parity", "height": side, "width": side, "group": group})
    rng = np.random.default_rng(group)
    valid, cube = rule.sample(100, rng), rng.integers(0, 2, (100, rule.D)).astype(np.uint8)
    model = BruteForceIdeal(rule)
    for cells in (valid, cube):
        ce = per_position_ce(model, cells)
        ref, viol = ideal_reference(rule, cells)
        np.testing.assert_array_equal(ce.mean(0), ref)
        np.testing.assert_array_equal(np.isinf(ce).mean(0), viol)
    det = rule.determined_positions
    ref, viol = ideal_reference(rule, valid)
    np.testing.assert_allclose(ref, np.where(det, 0.0, math.log(2)), rtol=1e-14, atol=0)  # mean of n ln 2
    assert not viol.any()
    ref, viol = ideal_reference(rule, cube)
    assert np.isinf(ref[det]).all() and np.allclose(ref[~det], math.log(2), rtol=1e-14, atol=0)
    assert np.all(viol[~det] == 0) and np.all((viol[det] > 0.3) & (viol[det] < 0.7))


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    from twoclocks.training.train import train
    path = tmp_path_factory.mktemp("gpt_ce") / "run"
    train(path, GPT_TINY, progress=False)
    return path


def test_ce_cube(gpt_run):
    from twoclocks.run import open_run
    run = open_run(gpt_run)
    first = run.steps[:2]
    ds = ce_probe(gpt_run, steps=",".join(map(str, first)), n=48, device="cpu", progress=False)
    assert list(ds.step.values) == first
    ds = ce_probe(gpt_run, n=48, device="cpu", progress=False)  # completes the missing steps only
    cube = xr.open_zarr(gpt_run / "probes/ce.zarr", consolidated=True).load()
    assert dict(cube.sizes) == {"step": len(run.steps), "split": 3, "position": 16}
    assert list(cube.split.values) == ["train", "heldout", "hypercube"]
    np.testing.assert_array_equal(cube.determined.values, run.rule.determined_positions)
    assert cube.ce.dims == ("step", "split", "position") and np.isfinite(cube.ce).all()
    assert cube.ce_mean.dims == ("step", "split")
    np.testing.assert_allclose(cube.ce_mean, cube.ce.mean("position"))
    np.testing.assert_allclose(cube.ce_determined, cube.ce.isel(position=run.rule.determined_positions).mean("position"))
    assert list(cube.n_sequences.values) == [32, 48, 48]
    ln2 = math.log(2)
    np.testing.assert_allclose(cube.ce_ideal.sel(split=["train", "heldout"]),
                               np.where(cube.determined, 0.0, ln2)[None].repeat(2, 0))
    assert np.isinf(cube.ce_ideal_mean.sel(split="hypercube"))
    assert (cube.ideal_violation.sel(split="hypercube").values[run.rule.determined_positions] > 0).all()
    # the untrained model is near chance: about ln 2 per bit everywhere
    assert np.abs(cube.ce.sel(step=0) - ln2).max() < 0.1
    for v in cube.data_vars:
        assert cube[v].attrs.get("long_name") and cube[v].attrs.get("units"), v
    assert cube.attrs["probe"] == "ce" and "inf" in cube.attrs["ideal_reference"]
    # resumed pieces equal a fresh computation of the same step
    again = ce_probe(gpt_run, steps=str(first[1]), n=48, device="cpu", force=True, progress=False)
    np.testing.assert_array_equal(again.ce.sel(step=first[1]), cube.ce.sel(step=first[1]))
    with pytest.raises(TwoclocksError, match="--force"):
        ce_probe(gpt_run, n=16, device="cpu", progress=False)


def test_ce_cli(gpt_run, tiny_run):
    from twoclocks.cli import app
    runner = CliRunner()
    res = runner.invoke(app, ["ce", str(gpt_run), "--n", "48", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "heldout" in res.output
    res = runner.invoke(app, ["ce", str(tiny_run), "--device", "cpu", "--quiet"])
    assert res.exit_code == 2
    assert "GPT run" in res.output and len(res.output.strip().splitlines()) == 1
