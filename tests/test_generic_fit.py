"""The generic clock fit (docs/science.md#generic-fit): any clock on any numeric config field, power or
loglinear, least squares and censored ML, intervals and zero-slope tests; the `fit` command and its cube.

Synthetic clocks Datasets (no training, nothing read from disk): tau_rule = c 10^G with log-normal noise,
tau_mem independent of G, several seeds per grid point."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.stats import linregress
from scipy.stats import t as student_t
from typer.testing import CliRunner

from twoclocks import TwoclocksError
from twoclocks.cli import app
from twoclocks.plotting.load import rule_group_fit
from twoclocks.plotting.sweep import plot_rule_vs_group
from twoclocks.probes.clocks import fit_power_law
from twoclocks.probes.fits import fit_clocks, fit_line, format_clock_fits
from twoclocks.probes.linefit import LINE_FIT_KEYS, censored_line_fit
from twoclocks.store import open_cube, write_dataset

runner = CliRunner()
STEPS = {"units": "steps"}


def clocks_ds(seed=0, gs=(2, 3, 4, 5), ns=(64,), seeds=(0, 1, 2), factor=10.0, sigma=0.3, mem_last=np.inf):
    """A clocks Dataset: tau_rule = 5 factor^G e, tau_mem = 2e5 N/64 e' (no G dependence), e, e' log-normal;
    tau_mem beyond ``mem_last`` is censored there."""
    rng = np.random.default_rng(seed)
    grid = np.array([(g, n, s) for g in gs for n in ns for s in seeds], float)
    g, n, s = grid.T
    tr = 5 * factor ** g * np.exp(sigma * rng.standard_normal(len(g)))
    tm = 2e5 * n / 64 * np.exp(sigma * rng.standard_normal(len(g)))
    cen = np.where(tm > mem_last, mem_last, np.nan)
    tm = np.where(tm > mem_last, np.nan, tm)
    return xr.Dataset(
        {"tau_rule": ("run", tr, STEPS), "tau_mem": ("run", tm, STEPS), "tau_mem_censored_at": ("run", cen, STEPS),
         "window": ("run", tm - tr, STEPS), "tau_rule_status": ("run", np.full(len(g), "reached")),
         "last_step": ("run", np.full(len(g), 1e7), STEPS)},
        coords={"run": [f"G{int(a)}_N{int(b)}_s{int(c)}" for a, b, c in grid], "group": ("run", g.astype(int)),
                "n_train": ("run", n.astype(int)), "seed": ("run", s.astype(int)),
                "model": ("run", np.full(len(g), "tiny")), "lr": ("run", np.full(len(g), 1e-4))})


def test_power_model_on_tau_mem_vs_n_is_fit_power_law_exactly():
    rng = np.random.default_rng(4)
    n = np.repeat([16, 32, 64, 128, 256], 2)
    tm = 30 * n * np.exp(0.3 * rng.standard_normal(10))
    cen = np.full(10, np.nan)
    tm[-1], cen[-1] = np.nan, 5000.0
    ds = xr.Dataset({"tau_mem": ("run", tm, STEPS), "tau_mem_censored_at": ("run", cen, STEPS)},
                    coords={"run": [f"r{i}" for i in range(10)], "n_train": ("run", n),
                            "seed": ("run", np.tile([0, 1], 5)), "group": ("run", np.full(10, 3))})
    fit = fit_clocks(ds, y="tau_mem", x="n_train", model="power")
    ref = fit_power_law(n, tm, cen)
    names = {"c": "c", "slope": "alpha", "slope_lo": "alpha_lo", "slope_hi": "alpha_hi", "r2": "r2", "n": "n",
             "dof": "dof", "c_ml": "c_ml", "slope_ml": "alpha_ml", "slope_ml_lo": "alpha_ml_lo",
             "slope_ml_hi": "alpha_ml_hi", "sigma_ml": "sigma_ml", "n_runs": "n_runs", "n_censored": "n_censored"}
    assert fit.sizes["fit"] == 1 and int(fit.fit_n_censored[0]) == 1
    for mine, theirs in names.items():
        assert float(fit[f"fit_{mine}"][0]) == ref[theirs], mine          # exact: one implementation
    # independent: the least-squares line and its t-test from scipy.stats.linregress on the reached runs
    ok = np.isfinite(tm)
    lr = linregress(np.log(n[ok]), np.log(tm[ok]))
    assert float(fit.fit_slope[0]) == pytest.approx(lr.slope, rel=1e-12)
    assert float(fit.fit_p_zero[0]) == pytest.approx(lr.pvalue, rel=1e-9)


def test_loglinear_recovers_the_per_unit_g_factor_with_its_coverage():
    """300 seeded datasets (4 G values x 3 seeds, sigma 0.3): the 95% t interval of the factor covers
    the planted 10 in [0.92, 0.98] of them (Monte-Carlo sd 0.013); the brute-force slope and interval."""
    rng = np.random.default_rng(0)
    g = np.repeat([2.0, 3, 4, 5], 3)
    hits, est = 0, []
    for _ in range(300):
        tr = 5 * 10.0 ** g * np.exp(0.3 * rng.standard_normal(len(g)))
        f = censored_line_fit(g, tr, model="loglinear", ml=False)
        hits += f["factor_lo"] <= 10.0 <= f["factor_hi"]
        est.append(np.log(f["factor"]))
    assert 0.92 <= hits / 300 <= 0.98, hits / 300
    assert np.exp(np.mean(est)) == pytest.approx(10.0, rel=0.03)
    # the brute-force formulas on the last dataset
    y = np.log(tr)
    sxx = np.sum((g - g.mean()) ** 2)
    b = np.sum((g - g.mean()) * (y - y.mean())) / sxx
    se = np.sqrt(np.sum((y - y.mean() - b * (g - g.mean())) ** 2) / (len(g) - 2) / sxx)
    q = student_t.ppf(0.975, len(g) - 2)
    assert f["slope"] == pytest.approx(b, rel=1e-10) and f["factor"] == pytest.approx(np.exp(b), rel=1e-10)
    assert f["factor_lo"] == pytest.approx(np.exp(b - q * se), rel=1e-9)
    assert f["factor_hi"] == pytest.approx(np.exp(b + q * se), rel=1e-9)
    assert f["p_zero"] == pytest.approx(2 * student_t.sf(abs(b / se), len(g) - 2), rel=1e-8)
    # through fit_clocks on a Dataset: the same numbers, and the censored ML without censoring equals them
    fit = fit_clocks(clocks_ds(3), y="tau_rule", x="group", model="loglinear")
    f = fit.isel(fit=0)
    assert float(f.fit_factor_lo) < 10 < float(f.fit_factor_hi)
    assert float(f.fit_slope_ml) == pytest.approx(float(f.fit_slope), abs=1e-6)
    assert float(f.fit_slope_ml_lo) == pytest.approx(float(f.fit_slope_lo), abs=1e-6)
    assert float(f.fit_p_zero_ml) == pytest.approx(float(f.fit_p_zero), rel=1e-3)
    assert "per unit of group x" in format_clock_fits(fit)


def test_zero_slope_p_value_is_uniform_under_the_null_and_small_under_an_effect():
    """tau_mem independent of G: over 600 datasets the t-test rejects at 5% in [0.02, 0.09] of them; the
    censored fit's likelihood-ratio p-value is dual to its interval (p = 1 - level at an interval end),
    whose coverage tests/test_fit_coverage.py checks; a tenfold-per-G effect gives p < 1e-6."""
    rng = np.random.default_rng(1)
    g = np.repeat([2.0, 3, 4, 5], 2)
    p = np.array([censored_line_fit(g, 1e4 * np.exp(0.3 * rng.standard_normal(8)), model="loglinear",
                                    ml=False)["p_zero"] for _ in range(600)])
    assert 0.02 <= np.mean(p < 0.05) <= 0.09, np.mean(p < 0.05)
    assert 0.4 <= np.mean(p < 0.5) <= 0.6
    # duality with censoring: shift the data so that the true slope sits at the lower interval end
    y = 1e4 * np.exp(0.3 * rng.standard_normal(8))
    cen = np.r_[np.full(7, np.nan), y[-1] * 0.8]
    y[-1] = np.nan
    f = censored_line_fit(g, y, cen, model="loglinear")
    assert f["n_censored"] == 1 and f["ml_status"] == "ok"
    shift = np.exp(-f["slope_ml_lo"] * g)
    s = censored_line_fit(g, y * shift, cen * shift, model="loglinear")
    assert s["slope_ml"] == pytest.approx(f["slope_ml"] - f["slope_ml_lo"], abs=1e-5)
    assert s["p_zero_ml"] == pytest.approx(0.05, abs=2e-3)
    strong = fit_clocks(clocks_ds(2), y="tau_rule", x="group", model="loglinear")
    assert float(strong.fit_p_zero[0]) < 1e-6 and float(strong.fit_p_zero_ml[0]) < 1e-6


def test_censored_run_changes_the_ml_fit_and_is_reported():
    ds = clocks_ds(5, mem_last=2.2e5)
    cen = np.isfinite(ds.tau_mem_censored_at.values)
    assert 1 <= cen.sum() <= 6
    fit = fit_clocks(ds, y="tau_mem", x="group", model="loglinear")
    f = fit.isel(fit=0)
    assert int(f.fit_n_censored) == cen.sum() and int(f.fit_n) == (~cen).sum()
    assert abs(float(f.fit_slope_ml) - float(f.fit_slope)) > 1e-3 or abs(float(f.fit_c_ml) - float(f.fit_c)) > 1
    assert (fit.run_role.values[cen] == "censored").all()
    text = format_clock_fits(fit)
    for name in ds.run.values[cen]:
        assert f"{name} (group=" in text
    assert f"({int(cen.sum())} censored)" in text and "likelihood ratio" in text


def test_groups_by_the_other_axes_and_pooling():
    ds = clocks_ds(6, ns=(64, 256))
    fit = fit_clocks(ds, y="tau_rule", x="group", model="loglinear")
    assert fit.fit_label.values.tolist() == ["n_train=64", "n_train=256"]
    for j, n in enumerate((64, 256)):
        m = fit.fit_member.values[j]
        assert (ds.n_train.values[m] == n).all() and m.sum() == 12     # all seeds of the group are points
    pooled = fit_clocks(ds, y="tau_rule", x="group", model="loglinear", pool="n_train")
    assert pooled.fit_label.values.tolist()[-1] == "all runs (pooled over n_train)"
    assert pooled.fit_member.values[-1].all() and pooled.fit_pooled_over.values[-1] == "n_train"
    sel = fit_clocks(ds, y="tau_rule", x="group", model="loglinear", where="n_train==64")
    assert sel.sizes["fit"] == 1 and sel.run_selected.values.sum() == 12


def test_fit_dataset_round_trips_through_the_cube(tmp_path):
    ds = clocks_ds(7, mem_last=2.2e5)
    src = tmp_path / "clocks.zarr"
    write_dataset(ds, src)
    out = tmp_path / "fit.zarr"
    res = runner.invoke(app, ["fit", str(src), "--y", "tau_mem", "--x", "group", "--model", "loglinear",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "p(slope = 0)" in res.output and f"wrote {out}" in res.output
    back = open_cube(out).load()
    direct = fit_clocks(ds, y="tau_mem", x="group", model="loglinear")
    for key in LINE_FIT_KEYS:
        np.testing.assert_array_equal(back[f"fit_{key}"].values, direct[f"fit_{key}"].values)
    np.testing.assert_array_equal(back.fit_member.values, direct.fit_member.values)
    assert back.attrs["y"] == "tau_mem" and back.attrs["x"] == "group" and back.attrs["model"] == "loglinear"
    for key in ("probe", "probe_params", "twoclocks_version", "created_at", "environment"):
        assert key in back.attrs
    assert back.attrs["probe"] == "clock_fit"


@pytest.mark.parametrize("args, msg", [
    (["--y", "tau_foo"], "not a clock"),
    (["--x", "bogus"], "not a config field"),
    (["--x", "model"], "is not numeric; numeric config fields:"),
    (["--model", "cubic"], "--model"),
    (["--where", "group<=2"], ">= 2 distinct group values"),
    (["--where", "group<=3", "--x", "group"], "fewer than 3 runs"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, msg):
    ds = clocks_ds(8, seeds=(0,))
    src = tmp_path / "clocks.zarr"
    write_dataset(ds, src)
    res = runner.invoke(app, ["fit", str(src), "--x", "group", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and msg in lines[0], res.output
    assert "Traceback" not in res.output


def test_all_censored_is_refused():
    ds = clocks_ds(9, mem_last=1.0)
    with pytest.raises(TwoclocksError, match="all 12 usable runs are censored"):
        fit_clocks(ds, y="tau_mem", x="group")


def test_plot_draws_the_estimated_factor_with_its_band():
    ds = clocks_ds(10)
    fit = rule_group_fit(ds)
    mid, lo, hi = fit_line(fit, 0, np.array([2.0, 5.0]))
    assert (lo < mid).all() and (mid < hi).all()
    assert mid[1] / mid[0] == pytest.approx(float(fit.fit_factor[0]) ** 3, rel=1e-9)
    fig = plot_rule_vs_group(ds, fit=fit)
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert any(t.startswith(f"fit ×{float(fit.fit_factor[0]):.3g}") for t in texts), texts
    assert rule_group_fit(ds.sel(run=ds.group.values <= 3)) is None          # fewer than 3 G values
