"""The clocks / collect tables: baseline, threshold, passes at tau_mem, censoring, fit residuals, run
selection (--where), the seed summary, and `plot` drawing the clocks the tables print.

Synthetic runs (no training): a sweep over N = 4, 8, 16, 32 and seeds 0, 1 whose memorization steps
are designed, tau_mem = 16 N + 8 seed, except N = 32 seed 1 which never memorizes (censored)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from scipy.stats import linregress
from typer.testing import CliRunner

import twoclocks.plotting.load as PL
import twoclocks.plotting.sweep as PS
from twoclocks import TwoclocksError
from twoclocks.cli import app
from twoclocks.plotting.figures import PlotResult
from twoclocks.plotting.samples import plot_learning_dynamics
from twoclocks.probes.clocks import compute_clocks, format_clocks_table, parse_where
from twoclocks.probes.registry import get_probe
from twoclocks.store import open_cube, write_dataset
from twoclocks.sweep import SweepSpec, collect, expand, write_sweep
from twoclocks.training.config import TrainConfig
from twoclocks.training.train import create_run

STEPS = np.arange(0, 4000, 8)
NS, SEEDS, BATCH = (4, 8, 16, 32), (0, 1), 16
runner = CliRunner()


def step_curve(onset, lo=0.0, hi=1.0):
    return np.where(STEPS >= onset, hi, lo).astype(float)


def designed(n, seed):
    """(tau_rule, tau_mem) of a run; tau_mem NaN: never memorizes."""
    return 40.0 + 8 * seed, (np.nan if (n, seed) == (32, 1) else 16.0 * n + 8 * seed)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables") / "sweep"
    spec = SweepSpec(base={"side": 4, "group": 2, "n_heldout": 8, "n_hypercube": 8, "n_noise": 8, "model": "tiny",
                           "batch": BATCH, "device": "cpu"}, grid={"n_train": list(NS), "seed": list(SEEDS)})
    runs = expand(spec)
    write_sweep(d, spec, runs)
    for r in runs:
        path = d / r["name"]
        create_run(path, TrainConfig.from_dict(r["overrides"]), set())
        n, seed = r["point"]["n_train"], r["point"]["seed"]
        tr, tm = designed(n, seed)
        mem = step_curve(tm, 0.0, 0.9) if np.isfinite(tm) else np.zeros(len(STEPS))
        acc = step_curve(tr)
        ds = xr.Dataset({"sample_acc": ("step", acc), "sample_mem": ("step", mem), "group_acc": ("step", acc),
                         "group_mem": ("step", mem), "uniform_valid_sample_mem": ((), n / 2 ** 8)},
                        coords={"step": STEPS})
        write_dataset(ds, path / "probes" / "samples.zarr")
    return d, [d / r["name"] for r in runs], [r["point"] for r in runs]


def arrays(points):
    n = np.array([p["n_train"] for p in points], float)
    seed = np.array([p["seed"] for p in points])
    tau = np.array([designed(a, b)[1] for a, b in zip(n, seed)])
    return n, seed, tau


def test_table_columns_passes_and_censoring(sweep):
    _, dirs, points = sweep
    n, seed, tau = arrays(points)
    ds = compute_clocks(dirs)
    np.testing.assert_array_equal(ds.tau_mem.values, tau)
    np.testing.assert_allclose(ds.passes_at_tau_mem.values, tau * BATCH / n)       # NaN where never reached
    assert np.isnan(ds.passes_at_tau_mem.values[np.isnan(tau)]).all()
    table = format_clocks_table(ds)
    head, *rows = table.splitlines()
    for col in ("N/|support|", "mem_thr", "passes@tau_mem", "censored", "resid"):
        assert col in head.split()
    never = [r for r in rows if r.startswith("n_train=32__seed=1")]
    assert len(never) == 1 and f"tau_mem>{STEPS[-1]}" in never[0]
    reached = [r for r in rows if r.startswith("n_train=4__seed=0")][0].split()
    cols = head.split()
    assert reached[cols.index("censored")] == "-"
    assert reached[cols.index("passes@tau_mem")] == f"{16 * 4 * BATCH / 4:.3g}"
    assert reached[cols.index("N/|support|")] == f"{float(ds.mem_baseline[0]):.3g}"


def test_where_selects_runs_and_fits_the_subset(sweep):
    _, dirs, points = sweep
    n, seed, tau = arrays(points)
    ds = compute_clocks(dirs, where="n_train>=8")
    sel = n >= 8
    assert ds.fit_selected.values.tolist() == sel.tolist()
    assert ds.sizes["fit"] == 1 and not ds.fit_member.values[0][~sel].any()
    ok = sel & np.isfinite(tau)
    ref = linregress(np.log(n[ok]), np.log(tau[ok]))
    f = ds.isel(fit=0)
    assert float(f.fit_alpha) == pytest.approx(ref.slope) and float(f.fit_c) == pytest.approx(np.exp(ref.intercept))
    assert int(f.fit_n) == ok.sum() and int(f.fit_n_runs) == sel.sum() and int(f.fit_n_censored) == 1
    everything = compute_clocks(dirs)
    assert float(everything.fit_alpha[0]) != pytest.approx(ref.slope)     # the selection changed the fit
    table = format_clocks_table(ds)
    assert "fits over the runs where n_train >= 8: 6 of 8 runs (not fitted: n_train=4__seed=0, n_train=4__seed=1)" \
        in table
    assert sum("not fitted (--where)" in line for line in table.splitlines()) == 2
    # repeatable and comma-joined clauses all hold; text fields compare as text
    both = compute_clocks(dirs, where=["n_train>=8, n_train < 32", "seed==0", "model==tiny"])
    assert both.fit_selected.values.tolist() == ((n >= 8) & (n < 32) & (seed == 0)).tolist()
    with pytest.raises(TwoclocksError, match="selects none"):
        compute_clocks(dirs, where="model!=tiny")


def test_residuals_from_each_groups_line(sweep):
    _, dirs, points = sweep
    n, seed, tau = arrays(points)
    ds = compute_clocks(dirs, where="n_train>=8")
    ok = (n >= 8) & np.isfinite(tau)
    ref = linregress(np.log(n[ok]), np.log(tau[ok]))
    want = np.where(ok, np.log(tau) - (ref.intercept + ref.slope * np.log(n)), np.nan)
    np.testing.assert_allclose(ds.fit_residual.values, want, atol=1e-12)
    resid_col = format_clocks_table(ds).splitlines()[0].split().index("resid")
    row = [r for r in format_clocks_table(ds).splitlines() if r.startswith("n_train=8__seed=1")][0]
    assert row.split()[resid_col] == f"{want[(n == 8) & (seed == 1)][0]:+.3f}"


def test_fit_pools_seeds_2_seeds_x_3_n(sweep):
    _, dirs, points = sweep
    n, seed, tau = arrays(points)
    ds = compute_clocks(dirs, where="n_train<=16")
    f = ds.isel(fit=0)
    assert ds.sizes["fit"] == 1 and int(f.fit_n) == 6 and int(f.fit_n_runs) == 6
    m = n <= 16
    assert float(f.fit_alpha) == pytest.approx(linregress(np.log(n[m]), np.log(tau[m])).slope)


def test_seed_summary_is_numpys_mean_and_sd(sweep):
    _, dirs, points = sweep
    n, seed, tau = arrays(points)
    ds = compute_clocks(dirs)
    assert ds.sizes["point"] == len(NS) and ds.point.values.tolist() == [f"n_train={v}" for v in NS]
    assert ds.point_n_seeds.values.tolist() == [2] * len(NS)
    tr = np.array([designed(a, b)[0] for a, b in zip(n, seed)])
    for p, nv in enumerate(NS):
        m = n == nv
        assert (ds.point_index.values == p).tolist() == m.tolist()
        for clock, v in (("tau_rule", tr[m]), ("tau_mem", tau[m]), ("window", tau[m] - tr[m])):
            v = v[np.isfinite(v)]
            d = ds.isel(point=p).sel(clock=clock)
            assert int(d.seed_n) == len(v) and float(d.seed_mean) == pytest.approx(np.mean(v))
            if len(v) >= 2:
                assert float(d.seed_sd) == pytest.approx(np.std(v, ddof=1))
            else:
                assert np.isnan(float(d.seed_sd))
    table = format_clocks_table(ds)
    assert "over seeds per grid point" in table
    assert "n_train=8: tau_rule 44 ± 5.66 (2 of 2), tau_mem 132 ± 5.66 (2 of 2)" in table
    assert "n_train=32: tau_rule 44 ± 5.66 (2 of 2), tau_mem 512 ± - (1 of 2)" in table


def test_bad_where_is_one_line_exit_2(sweep):
    d, dirs, _ = sweep
    for clause, what in (("n_train=>8", "write FIELD OP VALUE"), ("nosuch>=3", "unknown field 'nosuch'"),
                         ("n_train>>3", "write FIELD OP VALUE"), ("n_train", "write FIELD OP VALUE")):
        for args in (["clocks", *map(str, dirs[:2])], ["collect", str(d)]):
            res = runner.invoke(app, [*args, "--where", clause])
            assert res.exit_code == 2, res.output
            out = res.output.strip().splitlines()
            assert len(out) == 1 and "Traceback" not in res.output
            assert repr(clause) in out[0] and what in out[0] and "fields: " in out[0] and "n_train" in out[0]
    assert parse_where("group == 2, n_train<64", ["group", "n_train"]) == [("group", "==", "2"),
                                                                           ("n_train", "<", "64")]


def test_collect_where_and_columns(sweep, tmp_path):
    d, dirs, points = sweep
    n, _, _ = arrays(points)
    res = runner.invoke(app, ["collect", str(d), "--where", "n_train>=8", "--out", str(tmp_path / "c.zarr")])
    assert res.exit_code == 0, res.output
    assert "passes@tau_mem" in res.output and "not fitted (--where)" in res.output
    back = xr.open_zarr(tmp_path / "c.zarr").load()
    assert back.fit_selected.values.tolist() == (n >= 8).tolist()
    ref = compute_clocks(dirs, where="n_train>=8")
    np.testing.assert_allclose(back.fit_residual.values, ref.fit_residual.values)
    np.testing.assert_allclose(back.seed_mean.values, ref.seed_mean.values)


def test_plot_takes_the_clock_options(sweep, monkeypatch, tmp_path):
    """`plot SWEEP --where --mem-threshold ...` draws the clocks `collect` prints with those options; the
    memorization collapse draws each run's own (adaptive) threshold; one run's learning dynamics draws
    the threshold `clocks` used."""
    d, dirs, points = sweep
    n, _, _ = arrays(points)
    seen = {}

    def fake_plot_sweep(run_dir, out=None, formats=("png",), clocks=None, **kw):
        seen["clocks"] = clocks
        return PlotResult()
    monkeypatch.setattr(PL, "plot_sweep", fake_plot_sweep)
    res = runner.invoke(app, ["plot", str(d), "--where", "n_train>=8", "--mem-threshold", "0.3", "--k", "2",
                              "--mem-adaptive", "--pool", ""])
    assert res.exit_code == 0, res.output
    clocks = seen["clocks"]
    want = collect(d, write=False, where="n_train>=8", mem_threshold=0.3, k=2, mem_adaptive=True, pool=())
    b = want.mem_baseline.values
    np.testing.assert_allclose(clocks.mem_threshold.values, b + 0.3 * (1 - b))
    assert clocks.fit_selected.values.tolist() == (n >= 8).tolist() and clocks.attrs["k"] == 2
    np.testing.assert_allclose(clocks.fit_alpha.values, want.fit_alpha.values)
    monkeypatch.undo()

    samples = [open_cube(p / "probes" / "samples.zarr") for p in dirs]
    fig = PS.plot_memorization_collapse(want, samples)
    for ax in fig.axes[:2]:
        drawn = [float(line.get_ydata()[0]) for line in ax.lines if line.get_gid() == "mem_threshold"]
        np.testing.assert_allclose(drawn, want.mem_threshold.values)           # one per run, its own
    plt.close(fig)
    fixed = collect(d, write=False, mem_threshold=0.3, mem_adaptive=False)
    fig = PS.plot_memorization_collapse(fixed, samples)
    assert [float(line.get_ydata()[0]) for line in fig.axes[0].lines if line.get_gid() == "mem_threshold"] == [0.3]
    plt.close(fig)

    one = compute_clocks([dirs[2]], mem_threshold=0.3, k=2, acc_threshold=0.5)
    spec = [f for f in PL.figures_of(get_probe("samples")) if f.name == "learning_dynamics"][0]
    values = PL.run_clock_values(samples[2], mem_threshold=0.3, k=2, acc_threshold=0.5)
    for fig in (plot_learning_dynamics(samples[2], clocks=values),
                spec.draw({"samples": samples[2], "run_clocks": values})):
        drawn = [float(line.get_ydata()[0]) for line in fig.axes[0].lines if line.get_gid() == "mem_threshold"]
        assert drawn == [pytest.approx(float(one.mem_threshold[0]))]
        assert f"tau_mem = {float(one.tau_mem[0]):g}" in fig.get_suptitle()
        plt.close(fig)
    res = runner.invoke(app, ["plot", str(dirs[0]), "--where", "n_train>=8"])
    assert res.exit_code == 2 and "one run" in res.output
