"""The pipeline on planted truth (docs/science.md#planted): planted runs built from the exact reference
generators, whose clocks and scaling are known by construction, read back by run_clocks,
run_clock_uncertainty and compute_clocks."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import chi2, linregress
from scipy.stats import t as student_t

from twoclocks import TwoclocksError
from twoclocks.planted import (REFERENCE_ORDER, ReferenceRates, Schedule, choose_references,
                               continuous_crossings, grid_clock, make_planted_run, mixture_indicators,
                               plant_schedule, population_curves, profile_coverage, run_coverage,
                               sweep_clocks, sweep_coverage, sweep_truth, t_interval)
from twoclocks.probes.clocks import compute_clocks, fit_power_law, run_clocks
from twoclocks.probes.uncertainty import run_clock_uncertainty, seed_indicators
from twoclocks.store import open_cube

BASE = dict(side=4, group=4, n_heldout=8, n_hypercube=8, model="tiny", device="cpu", steps=20000,
            saves_per_decade=20)
TAU_RULE, TAU_MEM = 150.0, 2200.0


@pytest.fixture(scope="module", params=["dit", "gpt"])
def planted(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("planted") / request.param
    return make_planted_run(path, TAU_RULE, TAU_MEM, u_seed=1, arch=request.param, n_train=64, n_noise=2048, **BASE)


def test_reference_rates_and_bank(planted):
    """Rates from the references' own properties (independent formulas for 4x4 parity, G = 4), and the
    bank sampled through each reference agrees with them (binomial, 4 sd)."""
    D, G, N = 16, 4, 64
    r = planted.rates
    assert r.chance_acc == 2.0 ** -(D // G) and r.rule_mem == N / 2 ** (D - D // G) and r.cube_mem == N / 2 ** D
    n = planted.ref_valid.shape[1]
    for got, p in zip(np.r_[planted.ref_valid.mean(1), planted.ref_mem.mean(1)], np.r_[r.acc(), r.mem()]):
        assert abs(got - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12
    assert REFERENCE_ORDER == ("ideal-cube", "ideal-rule", "memorize")


def test_population_curves_and_crossings():
    """A(t), M(t) by hand at one step; the planted schedule's crossings are the wanted clocks."""
    rates = ReferenceRates(chance_acc=1 / 16, rule_mem=0.02, cube_mem=0.001)
    s = plant_schedule(TAU_RULE, TAU_MEM, rates, rule_width=0.4, mem_width=0.7)
    fr = 1 / (1 + math.exp(-(math.log(500) - s.rule_mid) / 0.4))
    fm = 1 / (1 + math.exp(-(math.log(500) - s.mem_mid) / 0.7))
    a, m = population_curves(s, rates, [500])
    assert a[0] == pytest.approx(fr + (1 - fr) / 16, abs=1e-12)
    assert m[0] == pytest.approx(fr * fm + fr * (1 - fm) * 0.02 + (1 - fr) * 0.001, abs=1e-12)
    cross = continuous_crossings(s, rates)
    assert cross["tau_rule"] == pytest.approx(TAU_RULE, rel=1e-9)
    assert cross["tau_mem"] == pytest.approx(TAU_MEM, rel=1e-9)
    grid = [1, 10, 100, 1000, 2000, 3000]
    assert grid_clock(grid, [50, 100, 101]).tolist() == [100, 100, 1000]
    assert np.isnan(grid_clock(grid, [1001, 5000])).all()   # k = 3 evaluations needed


def test_bad_input():
    rates = ReferenceRates(1 / 16, 0.02, 0.001)
    with pytest.raises(TwoclocksError, match="tau_rule < tau_mem"):
        plant_schedule(3000, 2000, rates)
    with pytest.raises(TwoclocksError, match="positive"):
        Schedule(1.0, 0.0, 2.0, 1.0)


def test_cube_is_the_mixture(planted):
    """The samples cube holds exactly the mixture: per-seed indicators read back from it equal the
    references' indicators picked by the latents; seeds only move cube -> rule -> memorize."""
    run = planted.run
    ds = open_cube(run.probe_path("samples"))
    info = json.loads(ds.attrs["planted"])
    assert info["schedule"] == planted.schedule.to_dict() and ds.attrs["tau_mem_planted"] == pytest.approx(TAU_MEM)
    choice = choose_references(planted.schedule, planted.steps, planted.u)
    assert (np.diff(choice, axis=0) >= 0).all()
    ind = seed_indicators(run)   # also checks the means against the stored sample_acc / sample_mem
    valid, mem = mixture_indicators(choice, planted.ref_valid, planted.ref_mem)
    assert np.array_equal(ind["valid"].values, valid) and np.array_equal(ind["memorized"].values, mem)


def test_point_clocks_equal_planted_grid_clocks(planted):
    """2048 seeds, steep schedules: the pipeline's clocks are the planted grid clocks, and the bootstrap
    interval joined with the grid bracket holds the continuous crossing."""
    c = run_clocks(planted.path)
    t = planted.truth
    assert c["mem_threshold"] == pytest.approx(t["mem_threshold"], abs=1e-15)
    assert (c["tau_rule"], c["tau_mem"]) == (t["tau_rule_planted_grid"], t["tau_mem_planted_grid"])
    u = run_clock_uncertainty(planted.path, n_boot=200)
    for name in ("tau_rule", "tau_mem"):
        assert float(u[f"{name}_bracket_lo"]) < t[f"{name}_planted"] <= float(u[f"{name}_hi"])
        assert float(u[name]) == t[f"{name}_planted_grid"]


def test_bootstrap_coverage(planted):
    """Seed-limited regime (128 of the bank's seeds, wide schedules): the 90% interval joined with the
    grid bracket covers the planted crossing at about its level (150 repetitions: 0.90 +- 3 sd, plus the
    conservatism of the inclusive ends); a wrongly planted clock (x 4) is rarely covered."""
    r = run_coverage(planted, n_rep=150, n_seeds=128, seed=7, n_boot=300, rule_width=1.0, mem_width=1.0)
    for name in ("tau_rule", "tau_mem"):
        assert 0.82 <= r[name]["coverage"] <= 0.99, (name, r[name]["coverage"])
        d = r[name]
        below = np.concatenate([[-np.inf], planted.steps])[np.searchsorted(planted.steps, d["lo"])]
        wrong = 4 * r["truth"][f"{name}_planted"]
        assert np.mean((below < wrong) & (wrong <= d["hi"])) < 0.5


# ----------------------------------------------------------------------------- sweeps
NS, GS = (16, 64, 256), (4, 8)
C, ALPHA, RULE0, FACTOR = 40.0, 1.1, 40.0, 1.2


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    truths = sweep_truth(NS, GS, C, ALPHA, RULE0, FACTOR, g0=4, sigma=0.1, rng=np.random.default_rng(11))
    pruns = [make_planted_run(root / f"run{i}", tr["tau_rule"], tr["tau_mem"], u_seed=i, arch="dit",
                              n_train=tr["n_train"], n_noise=512, **{**BASE, "group": tr["group"], "steps": 100000})
             for i, tr in enumerate(truths)]
    return truths, pruns


def test_sweep_recovers_planted_scaling(sweep):
    """compute_clocks on planted runs: per-run clocks are the planted grid clocks; the pooled fit's
    profile interval and the least-squares t-interval hold the planted alpha and reject alpha + 0.3; the
    per-unit-G factor of tau_rule is recovered; the cube-free shortcut used by the coverage study gives
    the same clocks from the same latents."""
    truths, pruns = sweep
    ds = compute_clocks([p.path for p in pruns], pools=[("group",)])
    grid = [(p.truth["tau_rule_planted_grid"], p.truth["tau_mem_planted_grid"]) for p in pruns]
    assert list(zip(ds.tau_rule.values, ds.tau_mem.values)) == grid
    f = ds.isel(fit=0)
    lo, hi = float(f.fit_alpha_ml_lo), float(f.fit_alpha_ml_hi)
    assert lo <= ALPHA <= hi and not (lo <= ALPHA + 0.3 <= hi)
    n = np.array([tr["n_train"] for tr in truths], float)
    a, tlo, thi = t_interval(np.log(n), np.log(ds.tau_mem.values))
    assert a == pytest.approx(float(f.fit_alpha), abs=1e-9) and tlo <= ALPHA <= thi
    assert math.log(float(f.fit_c) / C) == pytest.approx(0, abs=0.35)
    g = np.array([tr["group"] for tr in truths], float)
    s, slo, shi = t_interval(g, np.log(ds.tau_rule.values))
    assert math.exp(slo) <= FACTOR <= math.exp(shi)

    class Fixed:   # the runs' own latents, to compare the shortcut with the cubes
        def __init__(self):
            self.i = 0

        def random(self, n):
            self.i += 1
            return pruns[self.i - 1].u
    rows = sweep_clocks(pruns, truths, Fixed())
    assert [r["tau_mem"] for r in rows] == list(ds.tau_mem.values)
    assert [r["tau_rule"] for r in rows] == list(ds.tau_rule.values)


def test_profile_interval_is_the_t_interval(sweep):
    """Without censoring, fit_power_law's t-calibrated profile-likelihood interval is the least-squares
    slope +- t_{n-2}(0.975) standard errors (exact 95% coverage); the uncalibrated chi-square cut would be
    sqrt((n - 2) (exp(q / n) - 1)) standard errors, whose exact coverage profile_coverage(n) is 0.87 for
    n = 6."""
    truths, pruns = sweep
    n = np.array([tr["n_train"] for tr in truths], float)
    tau = np.array([p.truth["tau_mem_planted_grid"] for p in pruns])
    fit = fit_power_law(n, tau)
    ls = linregress(np.log(n), np.log(tau))
    half = student_t.ppf(0.975, len(n) - 2) * ls.stderr
    assert fit["alpha_ml_lo"] == pytest.approx(ls.slope - half, abs=2e-5)
    assert fit["alpha_ml_hi"] == pytest.approx(ls.slope + half, abs=2e-5)
    chi2_half = math.sqrt(4 * math.expm1(chi2.ppf(0.95, 1) / 6)) * ls.stderr
    assert chi2_half < 0.8 * half                       # the old cut was much narrower
    assert profile_coverage(6) == pytest.approx(0.869, abs=0.002)


def test_sweep_interval_coverage(sweep):
    """Over 300 planted sweeps (log-normal jitter sigma 0.1, grid quantization): the least-squares
    t-interval covers the planted alpha at 95% +- 3 sd (0.038), the mean slope is unbiased and the
    per-unit-G factor's interval covers too."""
    truths, pruns = sweep
    cfgs = [{"group": tr["group"], "n_train": tr["n_train"]} for tr in truths]
    r = sweep_coverage(pruns, cfgs, n_rep=300, c=C, alpha=ALPHA, tau_rule0=RULE0, rule_factor=FACTOR, g0=4,
                       sigma=0.1, seed=3, ml=False)
    assert abs(r["cover_t"] - 0.95) <= 0.04
    assert abs(r["alpha_ls_mean"] - ALPHA) <= 3 * r["alpha_ls_sd"] / math.sqrt(r["n_rep"])
    assert abs(r["cover_factor"] - 0.95) <= 0.04
    assert r["exact_mem"] > 0.9 and r["exact_rule"] > 0.9
