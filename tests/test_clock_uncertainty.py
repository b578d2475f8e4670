"""Per-run clock uncertainty: per-seed indicators against the stored curves, the vectorized sustained
onset against sustained_onset, the bootstrap against a brute-force loop over clocks_from_curves, grid
brackets, and coverage of a planted clock."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.probes.clocks import MemThreshold, clocks_from_curves, sustained_onset
from twoclocks.probes.samples import SampleEvaluator, run_samples
from twoclocks.probes.uncertainty import (DISCARDED, NEVER, PENDING, REACHED, bootstrap_clocks, bootstrap_indices,
                                          clock_brackets, grid_bracket, run_clock_uncertainty, seed_indicators,
                                          sustained_onset_batch)
from twoclocks.run import open_run
from twoclocks.store import write_dataset

CODE = {"reached": REACHED, "pending": PENDING, "never": NEVER}


# ------------------------------------------------------------------------------ vectorized onset
@pytest.mark.parametrize("k", [1, 2, 3, 5, 9])
def test_batch_onset_equals_sustained_onset(k):
    rng = np.random.default_rng(k)
    T = 8
    steps = np.cumsum(rng.integers(1, 50, T))
    bools = rng.random((400, T)) < rng.random((400, 1))          # every density, incl. all / none
    values = rng.random((400, T))
    values[rng.random((400, T)) < 0.1] = np.nan
    values[:50] = np.round(values[:50], 1)                        # ties with the threshold
    cases = [(bools, None, False), (values, 0.5, False), (values, 0.5, True)]
    for vals, thr, strict in cases:
        tau, status = sustained_onset_batch(steps, vals, thr, k, strict)
        for row, t, s in zip(vals, tau, status):
            ref_t, ref_s = sustained_onset(steps, row, thr, k, strict)
            assert np.array_equal(t, ref_t, equal_nan=True) and s == CODE[ref_s.split(":")[0]]
    tau, status = sustained_onset_batch(steps, bools.reshape(20, 20, T), None, k)   # any leading shape
    assert tau.shape == status.shape == (20, 20)
    with pytest.raises(TwoclocksError, match="at least 1"):
        sustained_onset_batch(steps, bools, None, 0)


# ------------------------------------------------------------------------------ bootstrap vs brute force
def planted(n_seeds=256, n_steps=120, rule_mid=300.0, mem_mid=3000.0, slope=2.0, seed=0):
    """Per-seed states with a planted schedule: seed j has a latent u_j ~ U(0, 1) and at step t is valid
    iff u_j < p_rule(t), memorized iff u_j < p_mem(t) <= p_rule(t) (logistics in log t), on a log grid."""
    steps = np.unique(np.round(np.logspace(0, 5, n_steps)))
    p_rule = 1 / (1 + (rule_mid / steps) ** slope)
    p_mem = 1 / (1 + (mem_mid / steps) ** slope)
    u = np.random.default_rng(seed).random(n_seeds)
    return steps, p_rule, p_mem, u[None] < p_rule[:, None], u[None] < p_mem[:, None]


def brute_force(steps, valid, memorized, baseline, k, acc_threshold, policy, n_boot, seed, level):
    """The same replicates (bootstrap_indices) through clocks_from_curves one at a time, and the
    interval by sorting: ends at order statistics floor(a (B-1)) and ceil((1-a) (B-1))."""
    idx = bootstrap_indices(valid.shape[1], n_boot, seed)
    rows = [clocks_from_curves(steps, valid[:, i].mean(axis=1), memorized[:, i].mean(axis=1), baseline, k,
                               acc_threshold, policy=policy) for i in idx]
    out = {}
    a = (1 - level) / 2
    for c in ("tau_rule", "tau_mem"):
        boot = np.array([r[c] for r in rows])
        srt = np.sort(np.where(np.isnan(boot), np.inf, boot))
        out[c] = boot
        out[f"{c}_lo"] = srt[int(np.floor(a * (n_boot - 1) + 1e-9))]
        out[f"{c}_hi"] = srt[int(np.ceil((1 - a) * (n_boot - 1) - 1e-9))]
        out[f"{c}_reached"] = np.isfinite(boot).mean()
    out["discarded"] = np.mean([r["tau_rule_status"].startswith("discarded") for r in rows])
    return out


@pytest.mark.parametrize("case", ["planted", "noisy", "discard"])
def test_bootstrap_equals_brute_force_loop(case):
    steps, _, _, valid, mem = planted(n_seeds=64, n_steps=40)
    base, pol = 0.05, MemThreshold()
    if case == "noisy":                                           # non-monotone seeds, unsorted steps
        rng = np.random.default_rng(1)
        valid = valid ^ (rng.random(valid.shape) < 0.15)
        mem = mem ^ (rng.random(mem.shape) < 0.05)
        perm = rng.permutation(len(steps))
        steps, valid, mem = steps[perm], valid[perm], mem[perm]
        pol = MemThreshold("fixed", 0.2)
    if case == "discard":                                         # rule learned around memorization onset
        steps, _, _, valid, mem = planted(n_seeds=64, n_steps=40, rule_mid=300, mem_mid=2500)
        valid = valid & (np.random.default_rng(2).random(valid.shape) < 0.97)
    r = bootstrap_clocks(steps, valid, mem, base, 3, 0.9, pol, n_boot=60, seed=7, level=0.8)
    ref = brute_force(steps, valid, mem, base, 3, 0.9, pol, 60, 7, 0.8)
    for c in ("tau_rule", "tau_mem"):
        assert np.array_equal(r[f"{c}_boot"], ref[c], equal_nan=True)
        assert (r[f"{c}_lo"], r[f"{c}_hi"]) == (ref[f"{c}_lo"], ref[f"{c}_hi"])
        assert r[f"{c}_reached"] == ref[f"{c}_reached"] and r[f"{c}_counts"].sum() == np.isfinite(ref[c]).sum()
    assert r["tau_rule_discarded"] == ref["discarded"] == np.mean(r["tau_rule_boot_status"] == DISCARDED)
    if case == "discard":
        assert 0 < r["tau_rule_discarded"] < 1
    point = clocks_from_curves(steps, valid.mean(1), mem.mean(1), base, policy=pol)
    assert np.array_equal([r["tau_rule"], r["tau_mem"]], [point["tau_rule"], point["tau_mem"]], equal_nan=True)


def test_bootstrap_censoring_and_errors():
    steps, _, _, valid, mem = planted(n_seeds=64, n_steps=40, mem_mid=1e7)   # tau_mem far beyond the grid
    r = bootstrap_clocks(steps, valid, mem, 0.0, n_boot=50)
    assert r["tau_mem_reached"] == 0 and r["tau_mem_lo"] == r["tau_mem_hi"] == np.inf
    assert np.isnan(r["tau_mem"]) and r["tau_mem_counts"].sum() == 0
    assert set(np.unique(r["tau_mem_boot_status"])) <= {PENDING, NEVER}
    with pytest.raises(TwoclocksError, match="level"):
        bootstrap_clocks(steps, valid, mem, level=1.0)
    with pytest.raises(TwoclocksError, match="n_steps"):
        bootstrap_clocks(steps[1:], valid, mem)


def test_grid_bracket():
    steps = np.array([0, 1, 2, 4, 8])
    assert grid_bracket(steps, 4) == (2.0, 4.0)
    assert grid_bracket(steps, 0) == (-np.inf, 0.0)
    assert all(np.isnan(grid_bracket(steps, np.nan)))
    lo, hi = grid_bracket(steps[::-1], np.array([8, 1, np.nan]))
    assert np.array_equal(lo, [4, 0, np.nan], equal_nan=True) and np.array_equal(hi, [8, 1, np.nan], equal_nan=True)
    assert clock_brackets(steps, 2, np.nan)["tau_rule"] == (1.0, 2.0)
    with pytest.raises(TwoclocksError, match="not an evaluated step"):
        grid_bracket(steps, 3)


# ------------------------------------------------------------------------------ planted-truth coverage
def test_interval_covers_planted_clock():
    """Over R = 200 simulations of a planted schedule (256 seeds, 200 log-spaced steps; B = 200), the 90% interval
    holds the population clock (the first grid step where p_rule >= 0.9 / p_mem > the threshold: the
    curves are monotone, so it is sustained) in 0.85..0.98 of them; equivalently the continuous crossing
    lies in (step before lo, hi] (the interval joined with the grid bracket of its lower end). The ends
    are inclusive evaluated steps, so coverage is at or above nominal (here 0.93 for tau_rule, 0.945 for
    tau_mem; R = 1000 with B = 400 gives 0.94 and 0.96); the binomial sd at R = 200 is about 0.02. The
    band fails the point estimate (a zero-width interval: 0.25 here) and the interval widened by one grid
    step on each side (0.985)."""
    R, level, base = 200, 0.9, 0.02
    thr = MemThreshold().value(base)
    # the continuous crossings: p(t) = 1 / (1 + (mid / t)^2) reaches q at t = mid (1/q - 1)^(-1/2)
    cont = {"tau_rule": 300 * (1 / 0.9 - 1) ** -0.5, "tau_mem": 3000 * (1 / thr - 1) ** -0.5}
    cover = {c: [] for c in cont}
    point, widened = {c: [] for c in cont}, {c: [] for c in cont}
    for rep in range(R):
        steps, p_rule, p_mem, valid, mem = planted(n_seeds=256, n_steps=200, slope=2.0, seed=100 + rep)
        truth = {"tau_rule": steps[np.argmax(p_rule >= 0.9)], "tau_mem": steps[np.argmax(p_mem > thr)]}
        r = bootstrap_clocks(steps, valid, mem, base, 3, 0.9, None, n_boot=200, seed=rep, level=level)
        for c in cover:
            lo, hi = r[f"{c}_lo"], r[f"{c}_hi"]
            inside = lo <= truth[c] <= hi
            cover[c].append(inside)
            assert inside == (grid_bracket(steps, lo)[0] < cont[c] <= hi)
            point[c].append(r[c] == truth[c])
            i, j = np.searchsorted(steps, [lo, hi])
            widened[c].append(steps[max(i - 1, 0)] <= truth[c] <= steps[min(j + 1, len(steps) - 1)])
    cov = {c: float(np.mean(v)) for c, v in cover.items()}
    assert all(0.85 <= v <= 0.98 for v in cov.values()), cov
    assert all(np.mean(v) < 0.5 for v in point.values()), {c: np.mean(v) for c, v in point.items()}
    assert all(np.mean(v) > 0.98 for v in widened.values()), {c: np.mean(v) for c, v in widened.items()}


# ------------------------------------------------------------------------------ a real samples cube
@pytest.fixture(scope="module")
def sampled_run(tiny_run, tmp_path_factory):
    """A copy of the tiny run with its samples cube at four checkpoints."""
    path = tmp_path_factory.mktemp("uncert") / "tiny"
    shutil.copytree(tiny_run, path)
    run_samples(path, steps="0,6,32,60", progress=False)
    return path


def test_indicators_reproduce_stored_curves(sampled_run):
    run = open_run(sampled_run)
    ds = xr.open_zarr(run.probe_path("samples")).load()
    ind = seed_indicators(run)
    assert ind["valid"].dtype == bool and ind.sizes == {"step": ds.sizes["step"], "seed": ds.sizes["seed"]}
    assert np.array_equal(ind["valid"].mean("seed").values, ds["sample_acc"].values)
    assert np.array_equal(ind["memorized"].mean("seed").values, ds["sample_mem"].values)
    # independent of the stored nn_hamming: memorized == the decoded sample is a row of the train set
    train = {bytes(r) for r in run.cells("train")}
    cells = ds["sample"].values
    assert np.array_equal(ind["memorized"].values,
                          np.array([[bytes(c) in train for c in row] for row in cells]))
    states = ds["state"].values                                   # valid_novel / valid_memorized are valid
    assert ind["valid"].values[states >= 2].all() and not ind["valid"].values[states == 1].any()
    assert float(ind["baseline"]) == float(ds["uniform_valid_sample_mem"])


def test_indicators_count_nonfinite_samples_as_failures(sampled_run):
    """Non-finite samples are stored as 0 cells (rule-valid for parity) with nn_hamming -1: they must count
    as neither valid nor memorized, as SampleEvaluator.evaluate scores them."""
    run = open_run(sampled_run)
    ev = SampleEvaluator(run.rule, run.encoding, run.cells("train"))
    rng = np.random.default_rng(0)
    steps = []
    for s in range(3):
        x = run.x("train")[rng.integers(0, 32, 40)].copy()          # memorized, valid
        x[:10] = run.encoding.encode(np.zeros((10, run.rule.D), np.uint8))   # all-zero: parity-valid
        x[10 + s: 20] = np.nan                                       # non-finite: decoded to 0 cells
        x[25:30] = rng.standard_normal(x[25:30].shape)               # arbitrary
        steps.append(ev.evaluate(x).expand_dims(step=[s]))
    ds = xr.concat(steps, "step")
    assert (ds["nonfinite_count"] > 0).all()
    ind = seed_indicators(ds, run.rule)
    assert np.array_equal(ind["valid"].mean("seed").values, ds["sample_acc"].values)
    assert np.array_equal(ind["memorized"].mean("seed").values, ds["sample_mem"].values)
    assert not ind["valid"].values[:, 10:20].all()
    bad = ds.copy()
    bad["nn_hamming"] = bad["nn_hamming"].where(bad["nn_hamming"] >= 0, 0)   # unmarked non-finite samples
    with pytest.raises(TwoclocksError, match="do not reproduce the stored sample_acc"):
        seed_indicators(bad, run.rule)


def planted_cube(run, n_seeds=256, n_steps=40):
    """A samples cube scored by SampleEvaluator.evaluate from planted states (:func:`planted`): a memorized
    seed draws a train sample, a valid one a valid sample outside train, the others a valid sample with one
    flipped bit (breaks its group's parity)."""
    steps, _, _, valid, mem = planted(n_seeds=n_seeds, n_steps=n_steps)
    rule, train = run.rule, run.cells("train")
    rng = np.random.default_rng(5)
    pool = rule.sample(4 * n_seeds, rng)
    pool = pool[~np.isin(pool.view(f"V{pool.shape[1]}"), train.view(f"V{train.shape[1]}")).ravel()][:n_seeds]
    ev = SampleEvaluator(rule, run.encoding, train)
    parts = []
    for i, s in enumerate(steps):
        cells = pool.copy()
        cells[~valid[i], 0] ^= 1
        cells[mem[i]] = train[rng.integers(0, len(train), mem[i].sum())]
        parts.append(ev.evaluate(run.encoding.encode(cells)).expand_dims(step=[int(s)]))
    ds = xr.concat(parts, "step").merge(ev.baselines())
    assert np.array_equal(ds["sample_acc"].values, valid.mean(1)) and np.array_equal(ds["sample_mem"].values,
                                                                                      mem.mean(1))
    return steps, valid, mem, ds


def test_run_clock_uncertainty(sampled_run, tmp_path):
    path = tmp_path / "planted"
    shutil.copytree(sampled_run, path)
    run = open_run(path)
    steps, valid, mem, cube = planted_cube(run)
    write_dataset(cube, run.probe_path("samples"))                    # replaces the real cube
    ds = run_clock_uncertainty(path, n_boot=200, seed=3)
    base = float(cube["uniform_valid_sample_mem"])
    ref = clocks_from_curves(steps, valid.mean(1), mem.mean(1), base)
    r = bootstrap_clocks(steps, valid, mem, base, n_boot=200, seed=3)
    for c in ("tau_rule", "tau_mem"):
        assert np.isfinite(ref[c]) and float(ds[c]) == ref[c]
        assert (float(ds[f"{c}_lo"]), float(ds[f"{c}_hi"]), float(ds[f"{c}_reached"])) == \
            (r[f"{c}_lo"], r[f"{c}_hi"], r[f"{c}_reached"])
        assert float(ds[f"{c}_lo"]) < float(ds[f"{c}_hi"]) and ds[f"{c}_boot_count"].sum() == 200 * r[f"{c}_reached"]
        i = int(np.searchsorted(steps, ref[c]))
        assert (float(ds[f"{c}_bracket_lo"]), float(ds[f"{c}_bracket_hi"])) == (steps[i - 1], ref[c])
        assert ds[f"{c}_lo"].attrs["units"] == "steps" and "long_name" in ds[f"{c}_hi"].attrs
    assert ds.attrs["n_boot"] == 200 and ds.attrs["level"] == 0.9 and ds.attrs["k"] == 3
    assert ds.attrs["mem_threshold_policy"] == "adaptive" and ds.attrs["mem_threshold"] == float(ds["mem_threshold"])
    assert "percentile bootstrap" in ds.attrs["method"]
    fixed = run_clock_uncertainty(path, n_boot=50, policy="fixed", level=0.5)
    assert fixed.attrs["mem_threshold"] == 0.1 and fixed.attrs["level"] == 0.5

    nothing = run_clock_uncertainty(sampled_run, n_boot=50)         # the real tiny run reaches no clock
    assert all(float(nothing[f"{c}_reached"]) == 0 and np.isnan(float(nothing[c])) for c in ("tau_rule", "tau_mem"))
