"""Sensitivity of the clocks and alpha to the arbitrary choices (probes/sensitivity.py) and the pooling
rule (probes/pooling.py), on synthetic sweeps with hand-written per-seed samples cubes (no training).

Sweep: N = 4, 8, 16, 32, 64, one bank of 16 seeds, steps on a log grid (12 per decade). Seed j of the
run at N is rule-valid from step 30 (1 + u_j) and memorized from 20 N (1 + u_j), u_j ~ U(0, 1) drawn
per run, besides a transient at the two evaluations nearest 8 N where every seed is valid and memorized
(sustained for k = 2 only); the run at N = 64 memorizes only in that transient (censored at k >= 3). Every expected value below is computed from
these planted per-seed states, not from the package's indicators."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import xarray as xr
from scipy.stats import linregress
from typer.testing import CliRunner

from twoclocks import TwoclocksError
from twoclocks.cli import app
from twoclocks.probes.clocks import clocks_from_curves, compute_clocks
from twoclocks.probes.pooling import check_pooling, evals_per_decade
from twoclocks.run import open_run
from twoclocks.probes.sensitivity import (DEFAULT_GRIDS, bank_subset, check_grids, clock_sensitivity,
                                          format_sensitivity, sensitivity_summary, thin_index)
from twoclocks.store import write_dataset
from twoclocks.sweep import SweepSpec, expand, write_sweep
from twoclocks.training.config import TrainConfig
from twoclocks.training.train import create_run

STEPS = np.unique(np.r_[0, np.round(np.logspace(0, 4, 49))]).astype(np.int64)
NS, N_SEEDS, CELLS = (4, 8, 16, 32, 64), 16, 16
CENSORED_N = 64
runner = CliRunner()


def planted(n, steps=STEPS, n_seeds=N_SEEDS):
    """(valid, memorized) (steps, seeds) booleans of the run at N = n (module docstring)."""
    u = np.random.default_rng(n).random(n_seeds)
    valid = steps[:, None] >= 30 * (1 + u)[None]
    mem = (steps[:, None] >= 20 * n * (1 + u)[None]) if n != CENSORED_N else np.zeros((len(steps), n_seeds), bool)
    spike = np.argsort(np.abs(np.log(np.maximum(steps, 1) / (8.0 * n))))[:2]   # two evaluations nearest 8 N
    valid[spike], mem[spike] = True, True       # a transient of 2 evaluations: counted with k = 2 only
    return valid, mem & valid


def write_samples(path, valid, mem, steps=STEPS):
    """A samples cube holding the per-seed samples: a valid sample is all zeros (even parity in every group),
    an invalid one has one cell set; nn_hamming 0 for memorized, 2 for valid novel, 1 for invalid."""
    cells = np.zeros(valid.shape + (CELLS,), np.uint8)
    cells[~valid, 0] = 1
    nn = np.where(mem, 0, np.where(valid, 2, 1)).astype(np.int16)
    ds = xr.Dataset({"sample": (("step", "seed", "cell"), cells), "nn_hamming": (("step", "seed"), nn),
                     "sample_acc": ("step", valid.mean(axis=1)), "sample_mem": ("step", mem.mean(axis=1))},
                    coords={"step": steps, "seed": np.arange(valid.shape[1]), "cell": np.arange(CELLS)})
    write_dataset(ds, path / "probes" / "samples.zarr")


def make_sweep(d, base_extra=None):
    spec = SweepSpec(base={"side": 4, "group": 2, "n_heldout": 8, "n_hypercube": 8, "n_noise": N_SEEDS,
                           "model": "tiny", "batch": 16, "device": "cpu", **(base_extra or {})},
                     grid={"n_train": list(NS)})
    runs = expand(spec)
    write_sweep(d, spec, runs)
    for r in runs:
        create_run(d / r["name"], TrainConfig.from_dict(r["overrides"]), set())
        write_samples(d / r["name"], *planted(r["point"]["n_train"]))
    return [d / r["name"] for r in runs]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("sens") / "sweep"
    dirs = make_sweep(d)
    return d, dirs, clock_sensitivity(dirs)


def baseline(n):
    return n / 2 ** (CELLS - CELLS // 2)   # 4x4 parity, G = 2: |support| = |valid| = 2^(16 - 8)


def rows(ds, choice):
    return ds.isel(variant=np.flatnonzero(ds.choice.values == choice))


def hand_clocks(steps, valid, mem, n, **kw):
    return clocks_from_curves(steps, valid.mean(axis=1), mem.mean(axis=1), baseline(n), **kw)


# ------------------------------------------------------------------------------ rows vs hand computations
def test_default_row_equals_compute_clocks(sweep):
    _, dirs, ds = sweep
    ref = compute_clocks(dirs)
    d = ds.isel(variant=0)
    assert str(d.variant.item()) == "default" and bool(d.is_default) and ds.is_default.values.sum() == 1
    for name in ("tau_rule", "tau_mem", "window", "tau_mem_censored_at", "mem_threshold"):
        np.testing.assert_array_equal(d[name].values, ref[name].values)
    assert d.tau_mem_status.values.tolist() == ref.tau_mem_status.values.tolist()
    assert ds.sizes["fit"] == ref.sizes["fit"] == 1
    for key in ("alpha", "alpha_lo", "alpha_hi", "alpha_ml", "alpha_ml_lo", "alpha_ml_hi", "c", "n", "n_censored"):
        np.testing.assert_allclose(d[f"fit_{key}"].values, ref[f"fit_{key}"].values, rtol=1e-12)
    assert np.isnan(d.tau_mem.values[-1]) and int(d.fit_n_censored[0]) == 1
    # every axis holds its default value as a row equal to the default row
    for choice, value in (("mem_threshold", "adaptive 0.1"), ("acc_threshold", "0.9"), ("k", "3"), ("thin", "all"),
                          ("bank", "all")):
        r = ds.isel(variant=int(np.flatnonzero((ds.choice.values == choice) & (ds.value.values == value))[0]))
        np.testing.assert_array_equal(r.tau_mem.values, d.tau_mem.values)
        np.testing.assert_array_equal(r.fit_alpha.values, d.fit_alpha.values)


def test_threshold_and_k_rows_equal_compute_clocks_with_that_option(sweep):
    _, dirs, ds = sweep
    m = rows(ds, "mem_threshold")
    assert m.sizes["variant"] == len(DEFAULT_GRIDS["mem_threshold"]) * len(DEFAULT_GRIDS["mem_policy"])
    for j in range(m.sizes["variant"]):
        r = m.isel(variant=j)
        pol, t = str(r.value.item()).split()
        ref = compute_clocks(dirs, mem_threshold=float(t), policy=pol, n_boot=0)
        np.testing.assert_array_equal(r.tau_mem.values, ref.tau_mem.values)
        np.testing.assert_array_equal(r.mem_threshold.values, ref.mem_threshold.values)
        np.testing.assert_allclose(r.fit_alpha.values, ref.fit_alpha.values, rtol=1e-12)
        np.testing.assert_allclose(r.fit_alpha_ml.values, ref.fit_alpha_ml.values, rtol=1e-9)
    for choice, kw in (("acc_threshold", "acc_threshold"), ("k", "k")):
        block = rows(ds, choice)
        for j in range(block.sizes["variant"]):
            r = block.isel(variant=j)
            value = float(r.value.item()) if kw == "acc_threshold" else int(r.value.item())
            ref = compute_clocks(dirs, **{kw: value})
            for name in ("tau_rule", "tau_mem", "window"):
                np.testing.assert_array_equal(r[name].values, ref[name].values)
            np.testing.assert_allclose(r.fit_alpha.values, ref.fit_alpha.values, rtol=1e-12)
    # the choices do move the clocks here (the test can fail)
    assert len({tuple(np.nan_to_num(v)) for v in rows(ds, "k").tau_mem.values}) > 1


def test_thinning_equals_clocks_on_the_thinned_steps(sweep):
    _, dirs, ds = sweep
    assert thin_index(10, 4).tolist() == [1, 5, 9] and thin_index(10, 1).tolist() == list(range(10))
    block = rows(ds, "thin")
    for j, f in enumerate(DEFAULT_GRIDS["thin"]):
        r = block.isel(variant=j)
        assert int(r.thin_factor) == f
        kept = STEPS[::-1][::f][::-1]                  # every f-th counted back from the last
        assert kept[-1] == STEPS[-1]
        taus = []
        for i, n in enumerate(NS):
            valid, mem = planted(n)
            sel = np.isin(STEPS, kept)
            want = hand_clocks(kept, valid[sel], mem[sel], n)
            assert int(r.n_evals[i]) == len(kept)
            for name in ("tau_rule", "tau_mem", "window", "tau_mem_censored_at"):
                assert np.array_equal(float(r[name][i]), want[name], equal_nan=True), (f, n, name)
            taus.append(want["tau_mem"])
        taus = np.array(taus)
        ok = np.isfinite(taus)
        assert float(r.fit_alpha[0]) == pytest.approx(linregress(np.log(np.array(NS)[ok]), np.log(taus[ok])).slope)
    assert not np.array_equal(block.tau_mem.values[0], block.tau_mem.values[-1], equal_nan=True)


def test_bank_subsampling_equals_means_over_the_seed_subset(sweep):
    _, dirs, ds = sweep
    block = rows(ds, "bank")
    for j, f in enumerate(DEFAULT_GRIDS["bank"]):
        r = block.isel(variant=j)
        keep = np.sort(np.random.default_rng(0).permutation(N_SEEDS)[:N_SEEDS // f])   # the documented draw
        np.testing.assert_array_equal(bank_subset(N_SEEDS, f, 0), keep)
        for i, n in enumerate(NS):
            valid, mem = planted(n)
            want = hand_clocks(STEPS, valid[:, keep], mem[:, keep], n)
            assert float(r.n_seeds[i]) == len(keep)
            for name in ("tau_rule", "tau_mem", "window"):
                assert np.array_equal(float(r[name][i]), want[name], equal_nan=True), (f, n, name)
    assert set(bank_subset(N_SEEDS, 4)) <= set(bank_subset(N_SEEDS, 2))                  # nested subsets
    assert not all(np.array_equal(block[c].values[0], block[c].values[-1], equal_nan=True) for c in ("tau_rule",
                                                                                                     "tau_mem"))


def test_table_and_summary(sweep):
    _, _, ds = sweep
    table = format_sensitivity(ds)
    head, *lines = table.splitlines()
    assert head.split()[:5] == ["choice", "value", "tau_rule", "tau_mem", "window"]
    assert sum(line.startswith("k ") for line in lines) == 3 and any(line.startswith("thin  1/4") or
                                                                     line.startswith("thin ") for line in lines)
    a = ds.fit_alpha.values[:, 0]
    s = sensitivity_summary(ds, 0)
    assert (s["lo"], s["hi"]) == (np.nanmin(a), np.nanmax(a))
    d = ds.isel(variant=0, fit=0)
    want = (f"alpha ranges over {np.nanmin(a):.3g}..{np.nanmax(a):.3g} across the choices; the default's interval "
            f"is [{float(d.fit_alpha_lo):.3g}, {float(d.fit_alpha_hi):.3g}]")
    line = [x for x in lines if "least squares: alpha ranges" in x][0]
    assert want in line
    outside = np.nanmin(a) < float(d.fit_alpha_lo) or np.nanmax(a) > float(d.fit_alpha_hi)
    assert ("outside it" in line) == outside
    # the 4-run range of tau_mem with the censored run counted
    default = [x for x in lines if x.startswith("default")][0]
    tm = ds.tau_mem.values[0]
    assert f"{np.nanmin(tm):.4g}..{np.nanmax(tm):.4g} (4/5)" in default


# ------------------------------------------------------------------------------ pooling rule
def test_pooling_refuses_unequal_density_and_bank(tmp_path):
    dirs = make_sweep(tmp_path / "a")
    # a run with another saves_per_decade, another n_noise
    for field, value, what in (("saves_per_decade", 7, "saves_per_decade"), ("n_noise", 8, "n_noise")):
        other = tmp_path / f"other_{field}"
        cfg = TrainConfig.from_dict({**open_run(dirs[0]).config.to_dict(), "n_train": 128, field: value})
        create_run(other, cfg, set())
        write_samples(other, *planted(128))
        runs = [*dirs, other]
        with pytest.raises(TwoclocksError) as e:
            compute_clocks(runs)
        msg = str(e.value)
        assert "\n" not in msg and what in msg and "--pool-unequal" in msg and f"{value:g} ({other.name})" in msg
        assert compute_clocks(runs, allow_unequal=True).sizes["fit"] == 1
        with pytest.raises(TwoclocksError, match=what):
            clock_sensitivity(runs, grids={"mem_threshold": (), "acc_threshold": (), "k": (), "thin": (), "bank": ()})
        res = runner.invoke(app, ["clocks", *map(str, runs)])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "--pool-unequal" in res.output
        assert runner.invoke(app, ["clocks", *map(str, runs), "--pool-unequal"]).exit_code == 0
    # measured: same configs, but one cube evaluated at every 4th step, another with half the seeds
    thin = tmp_path / "thin"
    shutil.copytree(dirs[1], thin)
    shutil.rmtree(thin / "probes")
    v, m = planted(8)
    write_samples(thin, v[thin_index(len(STEPS), 4)], m[thin_index(len(STEPS), 4)], STEPS[thin_index(len(STEPS), 4)])
    with pytest.raises(TwoclocksError, match=r"evaluated steps per decade 3 \(thin\), 12 \("):
        compute_clocks([dirs[0], thin, *dirs[2:]])
    half = tmp_path / "half"
    shutil.copytree(dirs[1], half)
    shutil.rmtree(half / "probes")
    write_samples(half, v[:, :8], m[:, :8])
    with pytest.raises(TwoclocksError, match=r"bank seeds in the cube 8 \(half\), 16 \("):
        compute_clocks([dirs[0], half, *dirs[2:]])
    compute_clocks([dirs[0], half, *dirs[2:]], allow_unequal=True)


def test_check_pooling_and_density_units():
    cfgs = [{"saves_per_decade": 20, "n_noise": 64}, {"saves_per_decade": 20, "n_noise": 64},
            {"saves_per_decade": 10, "n_noise": 64}]
    check_pooling(cfgs, [True, True, False])                        # the differing run is not in the group
    with pytest.raises(TwoclocksError, match=r"saves_per_decade 10 \(c\), 20 \(a, b\)"):
        check_pooling(cfgs, [True, True, True], names=["a", "b", "c"])
    check_pooling(cfgs, [True, True, True], allow_unequal=True)
    assert evals_per_decade(np.r_[0, np.logspace(0, 3, 31)]) == pytest.approx(10)
    assert evals_per_decade(STEPS) == pytest.approx(12, rel=0.02)
    assert np.isnan(evals_per_decade([0, 100]))


# ------------------------------------------------------------------------------ CLI
def test_cli_sensitivity_prints_and_writes(sweep, tmp_path):
    d, dirs, ds = sweep
    out = tmp_path / "s.zarr"
    res = runner.invoke(app, ["clocks", *map(str, dirs), "--sensitivity", "--sensitivity-out", str(out)])
    assert res.exit_code == 0, res.output
    assert "sensitivity to the arbitrary choices" in res.output and "alpha ranges over" in res.output
    back = xr.open_zarr(out).load()
    assert back.attrs["probe"] == "sensitivity" and "probe_params" in back.attrs
    np.testing.assert_array_equal(back.tau_mem.values, ds.tau_mem.values)
    np.testing.assert_allclose(back.fit_alpha.values, ds.fit_alpha.values)
    res = runner.invoke(app, ["collect", str(d), "--sensitivity", "--sensitivity-grid", "k=2,5",
                              "--sensitivity-grid", "bank=", "--out", str(tmp_path / "c.zarr")])
    assert res.exit_code == 0, res.output
    table = res.output.split("sensitivity to the arbitrary choices")[1]
    assert sum(line.startswith("k ") for line in table.splitlines()) == 2
    assert not any(line.startswith("bank") for line in table.splitlines())


@pytest.mark.parametrize("grid, text", [("k=0", "k: 0 out of range"), ("thin=x", "thin: 'x' is not an integer"),
                                        ("nosuch=1", "nosuch: unknown choice"), ("k", "write CHOICE=V1,V2"),
                                        ("mem_threshold=1.5", "mem_threshold: 1.5 out of range"),
                                        ("mem_policy=weird", "mem_policy: 'weird'"), ("bank=1.5", "not an integer")])
def test_bad_grids_are_one_line_exit_2(sweep, grid, text):
    d, dirs, _ = sweep
    for args in (["clocks", *map(str, dirs[:2])], ["collect", str(d)]):
        res = runner.invoke(app, [*args, "--sensitivity-grid", grid])
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and text in lines[0] and "Traceback" not in res.output
    with pytest.raises(TwoclocksError):
        check_grids({"acc_threshold": [0]})
