"""Markov transitions between per-sample states: counts vs brute force, windows, the cube."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from twoclocks import TwoclocksError
from twoclocks.probes.markov import (compute_markov, default_windows, parse_windows, row_normalize,
                                     transition_counts)
from twoclocks.probes.samples import STATES


def test_counts_against_brute_force():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 4, (9, 50))
    c = transition_counts(s)
    brute = np.zeros((8, 4, 4), int)
    for p in range(8):
        for seed in range(50):
            brute[p, s[p, seed], s[p + 1, seed]] += 1
    assert np.array_equal(c, brute)
    assert (c.sum(axis=(1, 2)) == 50).all() and c.sum() == 50 * 8     # seeds x step pairs
    assert transition_counts(s[:1]).shape == (0, 4, 4)
    with pytest.raises(ValueError):
        transition_counts(s + 4)


def test_row_normalize():
    c = np.array([[3, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 5]])
    p = row_normalize(c)
    assert np.isnan(p[1]).all()
    np.testing.assert_allclose(np.nansum(p, axis=1), [1, 0, 1, 1])
    np.testing.assert_allclose(p[0], [0.75, 0.25, 0, 0])


def test_default_windows_tile_the_step_pairs():
    rng = np.random.default_rng(1)
    for _ in range(50):
        steps = np.unique(rng.integers(0, 1000, 12))
        t = np.sort(rng.choice(steps, 2))
        tau_rule = t[0] if rng.random() > 0.3 else np.nan
        tau_mem = t[1] if rng.random() > 0.3 else np.nan
        wins = default_windows(steps, tau_rule, tau_mem)
        member = np.array([(steps[:-1] >= lo) & (steps[1:] <= hi) for _, lo, hi in wins])
        assert (member.sum(axis=0) == 1).all(), (steps, tau_rule, tau_mem, wins)
    names = [w[0] for w in default_windows(np.arange(0, 100, 10), 30.0, 60.0)]
    assert names == ["before_tau_rule", "innovation_window", "after_tau_mem"]
    assert [w[0] for w in default_windows(np.arange(0, 100, 10), np.nan, np.nan)] == ["all"]


def test_parse_windows():
    assert parse_windows("0:1000,1000:5000") == [("0:1000", 0, 1000), ("1000:5000", 1000, 5000)]
    assert parse_windows("100:")[0][2] > 10 ** 12
    for bad in ("abc", "5:1", "1-2"):
        with pytest.raises(TwoclocksError):
            parse_windows(bad)


def fake_run(path, states, steps, tau_rule, tau_mem):
    from twoclocks.store import write_dataset
    from twoclocks.training.config import TrainConfig
    from twoclocks.training.train import create_run
    create_run(path, TrainConfig(side=4, group=2, n_train=8, n_heldout=8, n_hypercube=8, n_noise=states.shape[1],
                                 model="tiny"), set())
    ds = xr.Dataset({"state": (("step", "seed"), states.astype(np.int8)),
                     "sample_acc": ("step", (steps >= tau_rule).astype(float)),
                     "sample_mem": ("step", (steps >= tau_mem) * 0.5),
                     "uniform_valid_sample_mem": ((), 0.01)}, coords={"step": steps})
    write_dataset(ds, path / "probes" / "samples.zarr")
    return path


def test_compute_markov_on_a_run(tmp_path):
    rng = np.random.default_rng(2)
    steps = np.array([0, 1, 2, 5, 10, 20, 50, 100, 200, 500])
    states = rng.integers(0, 4, (len(steps), 40))
    run = fake_run(tmp_path / "r", states, steps, tau_rule=10, tau_mem=100)
    ds = compute_markov(run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = xr.open_zarr(run / "probes" / "markov.zarr")
    xr.testing.assert_identical(back.load().drop_attrs(), ds.drop_attrs())
    assert ds.counts.dims == ("step_pair", "state_from", "state_to")
    assert ds.step_from.values.tolist() == steps[:-1].tolist() and ds.step_to.values.tolist() == steps[1:].tolist()
    assert np.array_equal(ds.counts.values, transition_counts(states))
    assert ds.window.values.tolist() == ["before_tau_rule", "innovation_window", "after_tau_mem"]
    assert ds.window_start.values.tolist() == [0, 10, 100] and ds.window_end.values.tolist() == [10, 100, 500]
    assert ds.window_n_pairs.values.tolist() == [4, 3, 2]
    assert np.array_equal(ds.window_counts.sel(window="innovation_window").values,
                          transition_counts(states[4:8]).sum(0))
    assert ds.window_counts.sum().item() == 40 * (len(steps) - 1)
    p = ds.window_prob.values
    np.testing.assert_allclose(p.sum(axis=-1)[~np.isnan(p).any(-1)], 1.0)
    np.testing.assert_allclose(ds.state_frac.sum("state_label").values, 1.0)
    expect = (states[:, :, None] == np.arange(4)).mean(1)
    np.testing.assert_allclose(ds.state_frac.values, expect)
    assert ds.state_from.values.tolist() == list(STATES)

    user = compute_markov(run, windows="0:5,5:500")
    assert user.window_n_pairs.values.tolist() == [3, 6]
    assert user.attrs["windows_from"] == "user"


def test_markov_cli_and_errors(tmp_path):
    from twoclocks.cli import app
    steps = np.array([0, 10, 20])
    run = fake_run(tmp_path / "r", np.zeros((3, 5), int), steps, 1000, 1000)
    res = CliRunner().invoke(app, ["markov", str(run), "--windows", "0:10,10:20"])
    assert res.exit_code == 0, res.output
    assert "window 0:10" in res.output
    one = fake_run(tmp_path / "one", np.zeros((1, 5), int), np.array([0]), 1000, 1000)
    res = CliRunner().invoke(app, ["markov", str(one)])
    assert res.exit_code == 2 and "at least 2" in res.output and len(res.output.strip().splitlines()) == 1
    bare = tmp_path / "bare"
    bare.mkdir()
    res = CliRunner().invoke(app, ["markov", str(bare)])
    assert res.exit_code == 2
