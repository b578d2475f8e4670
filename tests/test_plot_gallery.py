"""The paper's figures that span runs (Figs. 1B-C, 4A-D, 5-6, 21, 23-28): each plot function on small
synthetic Datasets with the drawn values checked against the input (or the aggregate it should show),
and `plot SWEEP_DIR` drawing exactly the figures a synthetic sweep's axes allow."""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from twoclocks import TwoclocksError
from twoclocks import plotting as P
from twoclocks.cli import app
from twoclocks.plotting.data import tile
from twoclocks.plotting.load import SWEEP_FIGURES, run_curves, sweep_figures, train_montage
from twoclocks.store import write_dataset
from twoclocks.sweep import SweepSpec, expand, write_sweep
from twoclocks.training.config import TrainConfig
from twoclocks.training.train import create_run

matplotlib = pytest.importorskip("matplotlib")
STEPS = np.arange(0, 2000, 20)


def clocks_ds(**coords) -> xr.Dataset:
    """A clocks-like Dataset over the product of ``coords`` (name -> values), clocks designed from them:
    tau_rule = 50 * 3^(G-2) * (2 if gpt) * (1 + seed / 10), tau_mem = 4 tau_rule, lr 0.1 never memorizes."""
    names = list(coords)
    grids = np.meshgrid(*[np.asarray(v, dtype=object) for v in coords.values()], indexing="ij")
    flat = {n: g.ravel() for n, g in zip(names, grids)}
    n_run = len(next(iter(flat.values())))
    g = np.array(flat.get("group", [2] * n_run), float)
    gpt = np.array([a == "gpt" for a in flat.get("arch", ["dit"] * n_run)])
    seed = np.array(flat.get("seed", [0] * n_run), float)
    tr = 50 * 3.0 ** (g - 2) * np.where(gpt, 2, 1) * (1 + seed / 10)
    tm = 4 * tr
    if "lr" in flat:
        tm = np.where(np.array(flat["lr"], float) == 0.1, np.nan, tm)
    ds = xr.Dataset({"tau_rule": ("run", tr), "tau_mem": ("run", tm),
                     "tau_mem_censored_at": ("run", np.where(np.isnan(tm), 5000.0, np.nan)),
                     "last_step": ("run", np.full(n_run, 5000.0)),
                     "tau_rule_lo": ("run", tr * 0.8), "tau_rule_hi": ("run", tr * 1.25),
                     "tau_mem_lo": ("run", tm * 0.9), "tau_mem_hi": ("run", np.where(np.isnan(tm), np.nan, np.inf)),
                     "final_sample_acc": ("run", 1 / g), "final_sample_mem": ("run", 0.1 * g + 0.01 * seed),
                     "final_group_acc": ("run", 1 - 0.1 * g), "final_group_mem": ("run", 0.05 * g)},
                    coords={"run": [f"r{i}" for i in range(n_run)],
                            **{n: ("run", np.array(list(v))) for n, v in flat.items()}})
    return ds


def lines_by_gid(ax, gid):
    return [ln for ln in ax.lines if ln.get_gid() == gid]


# ------------------------------------------------------------------------------------ Fig. 1B-C
def test_final_vs_group_lines_are_seed_means():
    ds = clocks_ds(group=[2, 3, 4], model=["tiny", "mini"], seed=[0, 1])
    fig = P.plot_final_vs_group(ds)
    assert len([a for a in fig.axes if a.get_visible()]) == 2
    ax = fig.axes[0]
    acc, mem = lines_by_gid(ax, "final_sample_acc"), lines_by_gid(ax, "final_sample_mem")
    assert len(acc) == 2 and len(mem) == 2                   # one line per model
    np.testing.assert_allclose(acc[0].get_xdata(), [2, 3, 4])
    np.testing.assert_allclose(acc[0].get_ydata(), [1 / 2, 1 / 3, 1 / 4])
    np.testing.assert_allclose(mem[0].get_ydata(), 0.1 * np.array([2, 3, 4]) + 0.005)  # mean over seeds 0, 1
    np.testing.assert_allclose(lines_by_gid(fig.axes[1], "final_group_acc")[1].get_ydata(), [0.8, 0.7, 0.6])
    assert ax.get_xlabel() == "group size G"
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert "model = tiny" in texts and "model = mini" in texts
    with pytest.raises(TwoclocksError, match="final_sample_acc"):
        P.plot_final_vs_group(ds.drop_vars("final_sample_acc"))


# ------------------------------------------------------------------------------------ Fig. 4B
def test_clock_heatmap_cells_are_geometric_means():
    ds = clocks_ds(group=[2, 3, 4], arch=["dit", "gpt"], seed=[0, 1])
    fig = P.plot_clock_heatmap(ds)
    rule_ax, mem_ax = fig.axes[0], fig.axes[1]
    assert rule_ax.get_title() == "tau_rule" and rule_ax.get_ylabel() == "arch"
    img = rule_ax.images[0].get_array()
    want = np.array([[50 * 3.0 ** (g - 2) * a * np.sqrt(1.1) for g in (2, 3, 4)] for a in (1, 2)])
    np.testing.assert_allclose(np.asarray(img), want, rtol=1e-12)
    assert [t.get_text() for t in rule_ax.get_yticklabels()] == ["dit", "gpt"]
    np.testing.assert_allclose(np.asarray(mem_ax.images[0].get_array()), 4 * want, rtol=1e-12)
    assert "2/2" in [t.get_text().split("\n")[-1] for t in rule_ax.texts][0]
    never = ds.assign(tau_mem=ds.tau_mem.where(ds.arch != "gpt"))    # gpt never memorizes: grey cells, '>'
    fig = P.plot_clock_heatmap(never)
    assert np.ma.getmaskarray(fig.axes[1].images[0].get_array())[1].all()
    assert sum(t.get_text().startswith(">5e+03") for t in fig.axes[1].texts) == 3


# ------------------------------------------------------------------------------------ Fig. 21
def test_clocks_by_rule_points_and_intervals():
    ds = clocks_ds(rule=["parity", "exact_k", "row_k"], seed=[0, 1])
    fig = P.plot_clocks_by_rule(ds)
    ax = fig.axes[0]
    (rule_pts,) = lines_by_gid(ax, "tau_rule")
    np.testing.assert_allclose(rule_pts.get_ydata(), ds.tau_rule.values)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["parity", "exact_k", "row_k"]
    x = rule_pts.get_xdata()
    assert np.all(np.abs(x - np.repeat([0, 1, 2], 2)) < 0.3)     # each run in its rule's column
    bars = [c for c in ax.collections if c.get_gid() == "tau_rule_interval"][0]
    segs = np.array([s[:, 1] for s in bars.get_segments()])
    np.testing.assert_allclose(segs, np.c_[0.8 * ds.tau_rule.values, 1.25 * ds.tau_rule.values])
    assert ax.get_yscale() == "log"


# ------------------------------------------------------------------------------------ Figs. 24-27
def test_clocks_vs_lr_window_and_censoring():
    ds = clocks_ds(lr=[1e-4, 1e-3, 1e-2, 0.1], seed=[0, 1]).assign_coords(
        lr=("run", np.repeat([1e-4, 1e-3, 1e-2, 0.1], 2)))
    fig = P.plot_clocks_vs_hparam(ds, axis="lr")
    ax = fig.axes[0]
    (rl,) = lines_by_gid(ax, "tau_rule_line")
    np.testing.assert_allclose(rl.get_xdata(), [1e-4, 1e-3, 1e-2, 0.1])
    np.testing.assert_allclose(rl.get_ydata(), np.full(4, 50 * np.sqrt(1.1)))   # geometric mean over seeds
    (ml,) = lines_by_gid(ax, "tau_mem_line")
    np.testing.assert_allclose(ml.get_ydata()[:3], np.full(3, 200 * np.sqrt(1.1)))
    assert np.isnan(ml.get_ydata()[3])                                        # lr 0.1 never memorized
    (cen,) = lines_by_gid(ax, "tau_mem_censored")
    np.testing.assert_allclose(cen.get_ydata(), [5000, 5000])
    assert ax.get_xscale() == "log" and "learning rate" in ax.get_xlabel()
    assert [c for c in ax.collections if c.get_gid() == "window"]
    wd = clocks_ds(weight_decay=[0.0, 0.01, 0.1]).assign_coords(weight_decay=("run", [0.0, 0.01, 0.1]))
    assert P.plot_clocks_vs_hparam(wd, axis="weight_decay").axes[0].get_xscale() == "symlog"
    with pytest.raises(TwoclocksError, match="no 'momentum'"):
        P.plot_clocks_vs_hparam(wd, axis="momentum")


# ------------------------------------------------------------------------------------ curves
def curves_ds(arch=("dit", "gpt"), seeds=(0, 1, 2), onset=None) -> xr.Dataset:
    runs, acc, mem, novel, a_c, s_c = [], [], [], [], [], []
    for a in arch:
        for s in seeds:
            t = (200 if a == "dit" else 100) + 20 * s
            runs.append(f"arch={a}__seed={s}")
            acc.append((STEPS >= t).astype(float))
            mem.append((STEPS >= 4 * t).astype(float) * 0.8)
            novel.append(np.clip((STEPS - t) / 400, 0, 1) * (STEPS < 4 * t))
            a_c.append(a), s_c.append(s)
    return xr.Dataset({"sample_acc": (("run", "step"), np.array(acc)), "sample_mem": (("run", "step"), np.array(mem)),
                       "novel_frac": (("run", "step"), np.array(novel))},
                      coords={"run": runs, "step": STEPS, "arch": ("run", a_c), "seed": ("run", s_c)})


def test_arch_overlay_shares_axes_and_shades_windows():
    cur = curves_ds()
    clocks = xr.Dataset({"tau_rule": ("run", [200.0 + 20 * s for s in range(3)] + [100.0 + 20 * s for s in range(3)]),
                         "tau_mem": ("run", [800.0 + 80 * s for s in range(3)] + [np.nan] * 3)},
                        coords={"run": cur.run.values})
    fig = P.plot_arch_overlay(cur, clocks)
    ax = fig.axes[0]
    for i, run in enumerate(cur.run.values):
        (line,) = lines_by_gid(ax, f"acc {run}")
        np.testing.assert_allclose(line.get_ydata(), cur.sample_acc.values[i])
    colors = {lines_by_gid(ax, f"acc {r}")[0].get_color() for r in cur.run.values}
    assert len(colors) == 2                                               # one colour per architecture
    spans = {p.get_gid(): p for p in ax.patches if p.get_gid()}
    x0, x1 = spans["window arch=dit__seed=1"].get_x(), spans["window arch=dit__seed=1"].get_x() + spans[
        "window arch=dit__seed=1"].get_width()
    assert (x0, x1) == pytest.approx((220, 880))
    assert spans["window arch=gpt__seed=0"].get_x() + spans["window arch=gpt__seed=0"].get_width() == pytest.approx(
        STEPS[-1])                                                        # tau_mem not reached: to the last step
    split = curves_ds().assign_coords(group=("run", [2, 3] * 3))          # another axis varies: one panel per value
    assert len([a for a in P.plot_arch_overlay(split).axes if a.get_visible()]) == 2


def test_seed_spread_mean_and_band():
    cur = curves_ds(arch=("gpt",))
    fig = P.plot_seed_spread(cur)
    ax = fig.axes[0]
    (mean,) = lines_by_gid(ax, "mean sample_acc")
    np.testing.assert_allclose(mean.get_ydata(), cur.sample_acc.values.mean(0))
    assert len(lines_by_gid(ax, "seed sample_acc")) == 3
    band = [c for c in ax.collections if c.get_gid() == "band sample_acc"][0]
    verts = band.get_paths()[0].vertices
    sd = cur.sample_acc.values.std(0, ddof=1)
    top = (cur.sample_acc.values.mean(0) + sd)
    assert np.nanmax(verts[:, 1]) == pytest.approx(top.max())
    assert "(3 seeds)" in ax.get_title()
    rng = P.plot_seed_spread(cur, band="range")
    verts = [c for c in rng.axes[0].collections if c.get_gid() == "band sample_mem"][0].get_paths()[0].vertices
    assert verts[:, 1].min() == pytest.approx(0) and verts[:, 1].max() == pytest.approx(0.8)
    with pytest.raises(TwoclocksError, match="band"):
        P.plot_seed_spread(cur, band="iqr")


def test_novel_fraction_curves_and_onsets():
    cur = curves_ds(arch=("dit",), seeds=(0, 1)).assign_coords(rule=("run", ["latin", "sudoku"]))
    clocks = xr.Dataset({"tau_rule": ("run", [200.0, 220.0]), "tau_mem": ("run", [800.0, np.nan]),
                         "tau_novel": ("run", [400.0, 440.0])}, coords={"run": cur.run.values})
    fig = P.plot_novel_fraction(cur, clocks)
    ax, ax2 = fig.axes[0], fig.axes[1]
    (line,) = lines_by_gid(ax, f"novel {cur.run.values[1]}")
    np.testing.assert_allclose(line.get_ydata(), cur.novel_frac.values[1])
    (mark,) = lines_by_gid(ax, f"tau_novel {cur.run.values[0]}")
    assert mark.get_xdata()[0] == 400 and mark.get_ydata()[0] == pytest.approx(0.5)
    np.testing.assert_allclose(lines_by_gid(ax2, "tau_novel")[0].get_ydata(), [400, 440])
    np.testing.assert_allclose(lines_by_gid(ax2, "tau_mem")[0].get_ydata(), [800])
    assert [t.get_text() for t in ax2.get_xticklabels()] == ["rule = latin, seed = 0", "rule = sudoku, seed = 1"]


# ------------------------------------------------------------------------------------ Fig. 4C-D
def test_ce_difference_is_hypercube_minus_train():
    rng = np.random.default_rng(0)
    ce = rng.random((5, 3, 8))
    ds = xr.Dataset({"ce": (("step", "split", "position"), ce, {"units": "nats"})},
                    coords={"step": [0, 10, 100, 1000, 3000], "split": ["train", "heldout", "hypercube"],
                            "position": np.arange(8), "determined": ("position", np.arange(8) % 2 == 1)})
    fig = P.plot_ce_difference(ds)
    ax, ax2 = fig.axes[0], fig.axes[1]
    diff = ce[:, 2] - ce[:, 0]
    np.testing.assert_allclose(np.asarray(ax2.collections[0].get_array()).reshape(8, 5), diff.T)
    np.testing.assert_allclose(lines_by_gid(ax, "mean all positions")[0].get_ydata(), diff.mean(1))
    np.testing.assert_allclose(lines_by_gid(ax, "mean determined by the prefix")[0].get_ydata(), diff[:, 1::2].mean(1))
    with pytest.raises(TwoclocksError, match="no split 'random'"):
        P.plot_ce_difference(ds, split="random")


# ------------------------------------------------------------------------------------ Figs. 5-6
def test_montage_tiles_the_samples():
    cells = np.random.default_rng(1).integers(0, 2, (2, 4, 3, 3))
    m = xr.Dataset({"cells": (("panel", "sample", "row", "col"), cells), "n_symbols": ("panel", [2, 2])},
                   coords={"panel": ["G = 2", "G = 3"]})
    t = tile(cells[0])
    assert t.shape == (7, 7) and np.isnan(t[3]).all() and np.isnan(t[:, 3]).all()
    np.testing.assert_array_equal(t[4:, 4:], cells[0, 3])
    fig = P.plot_montage(m)
    np.testing.assert_array_equal(np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)[:3, :3], cells[0, 0])
    assert [a.get_title() for a in fig.axes[:2]] == ["G = 2", "G = 3"]


# ------------------------------------------------------------------------------------ a sweep
@pytest.fixture(scope="module")
def gallery_sweep(tmp_path_factory):
    """A synthetic sweep over group x arch x seed (no training): designed curves in each run's samples cube."""
    d = tmp_path_factory.mktemp("gallery") / "sweep"
    spec = SweepSpec(base={"side": 4, "n_train": 16, "n_heldout": 8, "n_hypercube": 8, "n_noise": 8, "model": "tiny",
                           "batch": 8, "device": "cpu"},
                     grid={"group": [2, 4], "arch": ["dit", "gpt"], "seed": [0, 1]})
    runs = expand(spec)
    write_sweep(d, spec, runs)
    for r in runs:
        path = d / r["name"]
        create_run(path, TrainConfig.from_dict(r["overrides"]), set())
        p = r["point"]
        t = 40 * p["group"] * (2 if p["arch"] == "gpt" else 1) + 8 * p["seed"]
        acc = (STEPS >= t).astype(float)
        mem = (STEPS >= 6 * t).astype(float) * 0.9
        ds = xr.Dataset({"sample_acc": ("step", acc), "sample_mem": ("step", mem), "group_acc": ("step", acc),
                         "group_mem": ("step", mem), "uniform_valid_sample_mem": ((), 16 / 2 ** 8)},
                        coords={"step": STEPS})
        write_dataset(ds, path / "probes" / "samples.zarr")
    return d, runs


def test_plot_sweep_draws_the_figures_its_axes_allow(gallery_sweep, tmp_path):
    d, runs = gallery_sweep
    out = tmp_path / "figs"
    res = CliRunner().invoke(app, ["plot", str(d), "--out", str(out)])
    assert res.exit_code == 0, res.output
    want = {"rule_vs_group", "final_vs_group", "clock_heatmap", "arch_overlay", "seed_spread", "train_montage"}
    assert {p.stem for p in out.iterdir()} == want
    from twoclocks.sweep import collect
    clocks = collect(d, write=False, n_boot=0)
    assert set(sweep_figures(clocks)) == want
    names = [f.name for f in SWEEP_FIGURES]
    assert sweep_figures(clocks) == [n for n in names if n in want]   # in the registry's order
    for f in SWEEP_FIGURES:                                              # every registered draw function resolves
        assert callable(f.function())
    cur = run_curves([d / r["name"] for r in runs], clocks)
    assert cur.sizes == {"run": len(runs), "step": len(STEPS)} and set(cur.arch.values) == {"dit", "gpt"}
    np.testing.assert_array_equal(cur.sample_acc.sel(run=runs[0]["name"]).values,
                                  (STEPS >= 40 * runs[0]["point"]["group"] * (2 if runs[0]["point"]["arch"] == "gpt"
                                                                              else 1) + 8 * runs[0]["point"]["seed"]))
    m = train_montage([d / runs[0]["name"]], n=5)
    from twoclocks.run import open_run
    train = open_run(d / runs[0]["name"]).cells("train").reshape(-1, 4, 4)
    assert m.cells.shape == (1, 5, 4, 4)
    assert all((train == s).all(axis=(1, 2)).any() for s in m.cells.values[0])   # each tile is a train sample
