"""The loading layer of the figures: it reads run and sweep directories, computes the clocks and fits
through :mod:`twoclocks.probes`, and hands Datasets to the drawing functions (which only draw).

- :func:`plot_run`: every figure whose cube a run has (the built-in probes' :data:`PROBE_FIGURES`, and
  the figures a probe of your own declares);
- :func:`plot_runs`: the across-runs figures of several run directories;
- :func:`plot_sweep`: every figure of :data:`SWEEP_FIGURES` that fits the sweep's axes
  (:func:`sweep_figures`), into files;
- the inputs the drawing functions take: :func:`run_clock_values` (one run's clocks for
  ``plot_learning_dynamics``), :func:`mem_fits` (the tau_mem fits of ``plot_mem_vs_n``),
  :func:`rule_group_fit` (the tau_rule vs G fit of ``plot_rule_vs_group``, with its line and band),
  :func:`run_curves` (the runs' curves as one Dataset), :func:`train_montage` (training samples).

A sweep figure is declared once in :data:`SWEEP_FIGURES`: its drawing function as a dotted string
(``module:function``), the sweep axes that must vary for it (all of ``axes``, and one of ``any_of``),
the collect variables it reads, and what the loader prepares for it.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.landscape.geometry import complete_anchors
from twoclocks.plotting.ce import plot_ce, plot_ce_difference
from twoclocks.plotting.dsm import plot_dsm_bands, plot_dsm_gap, plot_dsm_spectrum
from twoclocks.plotting.figures import PlotResult, parse_formats, save
from twoclocks.plotting.landscape import plot_basin, plot_plane
from twoclocks.plotting.samples import plot_learning_dynamics, plot_nn_hamming, plot_state_raster, plot_transitions
from twoclocks.plotting.sweep import plot_clock_scaling, plot_memorization_collapse
from twoclocks.plotting.style import memorization_baseline, run_series, run_values, varies
from twoclocks.probes import clocks as C
from twoclocks.probes.fits import fit_clocks, fit_line
from twoclocks.probes.registry import FigureSpec, all_probes, load_probe
from twoclocks.run import open_run
from twoclocks.store import open_cube
from twoclocks.sweep.collect import collect

__all__ = ["PROBE_FIGURES", "figures_of", "plot_run", "plot_runs", "plot_sweep", "sweep_figures", "SWEEP_FIGURES", "SweepFigure",
           "run_clock_values", "mem_fits", "rule_group_fit", "run_curves", "train_montage", "novel_clocks",
           "grid_axes"]


# ------------------------------------------------------------------------------------------ one run
def run_clock_values(samples: xr.Dataset, mem_adaptive=None, policy=None, k: int | None = None,
                     acc_threshold: float | None = None, mem_threshold: float | None = None) -> dict:
    """One run's clocks for :func:`twoclocks.plotting.samples.plot_learning_dynamics`: tau_rule, tau_mem,
    their status strings, the memorization threshold and ``how`` (a line naming the options), computed
    from the samples cube's curves with :func:`twoclocks.probes.clocks.clocks_from_curves` under the
    clock options of `clocks` (``k``, ``acc_threshold``, the threshold ``policy`` or ``mem_threshold`` /
    ``mem_adaptive``; None: the package's defaults, adaptive t = 0.1), so a figure and `clocks` agree."""
    ds = samples.sel(step=samples["step"] >= 0) if (samples["step"] < 0).any() else samples
    pol = C.MemThreshold.from_options(mem_threshold, mem_adaptive, policy)
    k = C.DEFAULT_K if k is None else k
    acc_threshold = C.DEFAULT_ACC_THRESHOLD if acc_threshold is None else acc_threshold
    c = C.clocks_from_curves(np.asarray(ds["step"].values), ds["sample_acc"].values, ds["sample_mem"].values,
                             memorization_baseline(ds), k=k, acc_threshold=acc_threshold, policy=pol)
    out = {"how": f"clocks: sustained {k} evaluations, accuracy >= {acc_threshold:g}, {c['mem_phrase']}",
           "mem_threshold": float(np.asarray(c.get("mem_threshold", np.nan)))}
    for key in ("tau_rule", "tau_mem"):
        out[key] = float(np.asarray(c[key]).ravel()[0])
        out[f"{key}_status"] = str(np.asarray(c.get(f"{key}_status", "not reached")).ravel()[0])
    return out


def _plane_figure(c):
    plane = c["plane"]
    full = complete_anchors(plane)
    return plot_plane(plane.sel(anchor=full) if len(full) else plane)


def _basin_figure(c):
    basin = c["basin"]
    if "summarized" in basin and basin["summarized"].any():
        basin = basin.sel(anchor=basin["summarized"].values)  # the anchors the summaries are over
    return plot_basin(basin)


#: the figures of the built-in probes, by probe name (the probes compute; this layer draws). A probe
#: of your own declares its figures with it (``Probe.figures``, :class:`twoclocks.probes.FigureSpec`).
PROBE_FIGURES: dict[str, tuple[FigureSpec, ...]] = {
    "samples": (FigureSpec("learning_dynamics", ("samples",),
                           lambda c: plot_learning_dynamics(c["samples"], clocks=c.get("run_clocks"))),
                FigureSpec("state_raster", ("samples",), lambda c: plot_state_raster(c["samples"])),
                FigureSpec("nn_hamming", ("samples",), lambda c: plot_nn_hamming(c["samples"]))),
    "markov": (FigureSpec("transitions", ("markov",), lambda c: plot_transitions(c["markov"])),),
    "dsm-spectrum": (FigureSpec("dsm_spectrum", ("dsm_spectrum",), lambda c: plot_dsm_spectrum(c["dsm_spectrum"])),
                     FigureSpec("dsm_bands", ("dsm_spectrum",),
                                lambda c: plot_dsm_bands(c["dsm_spectrum"], c.get("samples"))),
                     FigureSpec("dsm_gap", ("dsm_spectrum",), lambda c: plot_dsm_gap(c["dsm_spectrum"]))),
    "ce": (FigureSpec("ce", ("ce",), lambda c: plot_ce(c["ce"])),
           FigureSpec("ce_difference", ("ce",), lambda c: plot_ce_difference(c["ce"]))),
    "plane": (FigureSpec("plane", ("plane",), _plane_figure),),
    "basin": (FigureSpec("basin", ("basin",), _basin_figure),),
}


def figures_of(probe) -> tuple:
    """The figures `plot` draws for ``probe``: those it declares (``Probe.figures``), else a built-in
    probe's :data:`PROBE_FIGURES`."""
    return probe.figure_specs() or (PROBE_FIGURES.get(probe.name, ()) if probe.builtin else ())


def plot_run(run_dir, out=None, formats=("png",), mem_adaptive: bool | None = None, probes=None,
             k: int | None = None, acc_threshold: float | None = None, mem_threshold: float | None = None
             ) -> PlotResult:
    """Draw every figure whose cubes ``run_dir/probes`` holds into ``out`` (default RUN_DIR/figures),
    as each of ``formats``: the figures each registered probe declares (and those of ``probes``, extra
    probes given as Probe objects or MODULE:OBJECT names). Returns the written paths (a list) whose
    ``.notes`` hold one line per cube missing (cubes that do not apply to the run's architecture are
    not mentioned). ``mem_adaptive``, ``mem_threshold``, ``k``, ``acc_threshold``: the clock options of
    the clocks drawn (:func:`run_clock_values`), as `clocks` (None: the package's defaults)."""
    run = open_run(run_dir)
    formats = parse_formats(formats)
    out = Path(out) if out is not None else run.path / "figures"
    arch = run.config.arch
    chosen = list(all_probes())
    asked = set()  # missing cubes are noted for the built-in probes and those asked for
    for p in probes or ():
        p = load_probe(p) if isinstance(p, str) else p
        asked.add(p.name)
        if p not in chosen:
            chosen.append(p)
    by_cube = {p.cube: p for p in chosen}
    options = {"k": k, "acc_threshold": acc_threshold, "mem_threshold": mem_threshold, "mem_adaptive": mem_adaptive}
    cubes, result = {"mem_adaptive": mem_adaptive, "clock_options": options}, PlotResult()
    for name in by_cube:
        path = run.probe_path(name)
        if path.exists():
            cubes[name] = open_cube(path)
    if "samples" in cubes and {"sample_acc", "sample_mem"} <= set(cubes["samples"].variables):
        cubes["run_clocks"] = run_clock_values(cubes["samples"], **options)
    noted = set()
    for probe in chosen:
        if not probe.applies_to(arch):
            continue
        for fig in figures_of(probe):
            missing = [n for n in fig.needs if n not in cubes]
            if missing and not (probe.builtin or probe.name in asked):
                continue  # a probe registered in this process but not asked for: only drawn when its cube exists
            if missing:
                for n in missing:
                    if n in noted:
                        continue
                    noted.add(n)
                    maker = by_cube.get(n)
                    first = "".join(f"`twoclocks-probe {need} {run.path}` then " for need in getattr(maker, "needs", ())
                                    if need not in cubes)
                    cmd = maker.name if maker is not None else n
                    result.notes.append(f"skipped {n}: no probes/{n}.zarr; run {first}`twoclocks-probe {cmd} "
                                        f"{run.path}`")
                continue
            result.extend(save(fig.draw(cubes), out, fig.name, formats))
    return result


def plot_runs(run_dirs, out, formats=("png",), **clock_options) -> PlotResult:
    """The across-runs figures (clock scaling and the memorization collapse) of several runs with
    samples cubes, into ``out``. ``clock_options`` go to :func:`twoclocks.probes.clocks.compute_clocks`."""
    formats = parse_formats(formats)
    clocks = C.compute_clocks([str(d) for d in run_dirs], **clock_options)
    samples = [open_cube(open_run(d).probe_path("samples")) for d in run_dirs]
    out = Path(out)
    res = PlotResult()
    res.extend(save(plot_clock_scaling(clocks), out, "clock_scaling", formats))
    res.extend(save(plot_memorization_collapse(clocks, samples), out, "memorization_collapse", formats))
    return res


# ------------------------------------------------------------------------------------------ fits
def _members(clocks) -> tuple[np.ndarray, np.ndarray]:
    """(members (fit, run) bool, pooled (fit,) bool) of a clocks / collect Dataset's fits."""
    n_run = clocks.sizes["run"]
    n_fit = clocks.sizes.get("fit", 0) if "fit_c" in clocks else 0
    if "fit_member" in clocks:
        m = clocks["fit_member"].transpose("fit", "run").values.astype(bool)
    elif "fit_index" in clocks:
        m = np.arange(n_fit)[:, None] == clocks["fit_index"].values[None, :]
    else:
        m = np.zeros((0, n_run), bool)
    pooled = (np.array([bool(str(p)) for p in clocks["fit_pooled_over"].values], dtype=bool)
              if "fit_pooled_over" in clocks else np.zeros(len(m), bool))
    return m[:n_fit], pooled[:n_fit]


def mem_fits(clocks: xr.Dataset) -> list[dict]:
    """The tau_mem = c N^alpha fits :func:`twoclocks.plotting.sweep.plot_mem_vs_n` draws: per fit group
    of the Dataset (:func:`twoclocks.probes.clocks.fits_from_dataset`) a dict with ``label``,
    ``members`` (bool per run), ``pooled`` and the keys of :func:`twoclocks.probes.clocks.fit_power_law`;
    the censored maximum-likelihood fit computed here over the group's runs where the Dataset has none;
    without ``fit_*`` variables, one fit over all runs."""
    n = run_values(clocks, "n_train")
    if n is None:
        raise TwoclocksError("mem_fits needs the runs' n_train (a coord, or attrs constant_config)")
    n = n.astype(float)
    tm = clocks["tau_mem"].values.astype(float)
    own = clocks["tau_mem_censored_at"].values.astype(float) if "tau_mem_censored_at" in clocks else None
    last = clocks["last_step"].values.astype(float) if "last_step" in clocks else np.full(len(n), np.nan)
    cen = np.where(np.isfinite(tm), np.nan, own if own is not None else last)
    members, pooled = _members(clocks)
    rows = C.fits_from_dataset(clocks)
    if not rows:
        return [{"label": "all runs", "members": np.ones(len(n), bool), "pooled": False,
                 **C.fit_power_law(n, tm, cen)}]
    out = []
    for (lab, fit), m, p in zip(rows, members, pooled):
        row = {"label": lab or "fit", "members": m, "pooled": bool(p), **fit}
        if "fit_alpha_ml" not in clocks:
            ml = C.fit_power_law(n[m], tm[m], cen[m])
            row.update({key: ml[key] for key in ("c_ml", "alpha_ml", "alpha_ml_lo", "alpha_ml_hi", "level",
                                                 "ml_status")})
        out.append(row)
    return out


def rule_group_fit(clocks: xr.Dataset, level: float = 0.95, n_line: int = 50) -> xr.Dataset | str | None:
    """The fit tau_rule = c exp(slope G) that :func:`twoclocks.plotting.sweep.plot_rule_vs_group` draws
    (:func:`twoclocks.probes.fits.fit_clocks`, loglinear, per group of runs equal but for G and seeds),
    with its least-squares line and pointwise confidence band over each group's G range (variables
    ``line_x``, ``line_mid``, ``line_lo``, ``line_hi``, dims (fit, line); :func:`twoclocks.probes.fits.
    fit_line`): None when fewer than 3 G values have a tau_rule, the reason (a line) when the fit is
    refused."""
    g = run_values(clocks, "group")
    if g is None or "tau_rule" not in clocks:
        return None
    have = np.isfinite(clocks["tau_rule"].values.astype(float))
    if len(np.unique(g[have].astype(float))) < 3:
        return None
    try:
        fit = fit_clocks(clocks, y="tau_rule", x="group", model="loglinear", level=level)
    except TwoclocksError as e:
        return f"no tau_rule vs G fit: {e}"
    axis = fit["axis_value"].values.astype(float)
    xs, mids, los, his = [], [], [], []
    for j in range(fit.sizes["fit"]):
        m = fit["fit_member"].values[j].astype(bool) & np.isfinite(axis)
        gx = np.linspace(axis[m].min(), axis[m].max(), n_line) if m.any() else np.full(n_line, np.nan)
        mid, lo, hi = fit_line(fit, j, gx) if m.any() else (gx, gx, gx)
        xs.append(gx), mids.append(mid), los.append(lo), his.append(hi)
    dims = ("fit", "line")
    return fit.assign(line_x=(dims, np.array(xs), {"long_name": "group size G along the fitted line"}),
                      line_mid=(dims, np.array(mids), {"long_name": "least-squares line c exp(slope G)",
                                                       "units": "steps"}),
                      line_lo=(dims, np.array(los), {"long_name": "pointwise confidence band, lower", "units": "steps"}),
                      line_hi=(dims, np.array(his), {"long_name": "pointwise confidence band, upper", "units": "steps"}))


# ------------------------------------------------------------------------------------------ curves
CURVE_VARS = ("sample_acc", "sample_mem", "group_acc", "group_mem")


def run_curves(run_dirs, clocks: xr.Dataset | None = None, variables=CURVE_VARS) -> xr.Dataset:
    """The runs' training curves as one Dataset with dims (run, step): ``variables`` of each run's
    samples cube (trained steps; steps a run did not evaluate are NaN) and ``novel_frac``, the
    valid-novel fraction, where the cubes have ``state_frac``; the run coordinate and the config
    coords of ``clocks`` (same runs, same order) when given, else the runs' configs."""
    run_dirs = [Path(str(d)) for d in run_dirs]
    parts = []
    for d in run_dirs:
        s = open_cube(d / "probes" / "samples.zarr")
        s = s.sel(step=s["step"] >= 0)
        keep = {v: s[v] for v in variables if v in s}
        if "state_frac" in s and "valid_novel" in [str(x) for x in s["state_label"].values]:
            keep["novel_frac"] = s["state_frac"].sel(state_label="valid_novel", drop=True).assign_attrs(
                long_name="fraction of samples rule-valid and not in the train set", units="1")
        parts.append(xr.Dataset(keep).reset_coords(drop=True).load())
    ds = xr.concat(parts, dim="run", join="outer", combine_attrs="drop_conflicts")
    names = [d.name for d in run_dirs] if clocks is None else [str(r) for r in clocks["run"].values]
    ds = ds.assign_coords(run=("run", names))
    if clocks is not None:
        for c in clocks.coords:
            if clocks[c].dims == ("run",) and c != "run":
                ds = ds.assign_coords({c: ("run", clocks[c].values)})
        for key, value in json.loads(clocks.attrs.get("constant_config", "{}")).items():
            if not isinstance(value, (dict, list)):
                ds = ds.assign_coords({key: ("run", [value] * len(names))})
    else:
        cfgs = [open_run(d).config.to_dict() for d in run_dirs]
        for key in cfgs[0]:
            vals = [c[key] for c in cfgs]
            if all(isinstance(v, (int, float, str, bool)) for v in vals):
                ds = ds.assign_coords({key: ("run", vals)})
    return ds


def novel_clocks(run_dirs, **options) -> xr.Dataset:
    """The clocks of the paper's Fig. 23 per run (preset ``valid-novel``: rule accuracy >= 0.85;
    tau_novel the first step with accuracy >= 0.85 and valid-novel fraction >= 0.5, sustained; tau_mem as
    the default) from each run's samples cube, by :func:`twoclocks.probes.clocks.clocks_from_curves`:
    ``tau_rule``, ``tau_novel``, ``tau_mem`` (dim run, the run names). ``options``: further clock options
    (k, mem_threshold, ...)."""
    run_dirs = [Path(str(d)) for d in run_dirs]
    rows = []
    for d in run_dirs:
        s = open_cube(d / "probes" / "samples.zarr")
        s = s.sel(step=s["step"] >= 0)
        if "state_frac" not in s:
            raise TwoclocksError(f"{d}: the samples cube has no state_frac (valid-novel fraction); rerun "
                                 f"`twoclocks-probe samples {d} --force`")
        novel = s["state_frac"].sel(state_label="valid_novel").values
        rows.append(C.clocks_from_curves(s["step"].values, s["sample_acc"].values, s["sample_mem"].values,
                                         memorization_baseline(s), clocks="valid-novel",
                                         curves={"state_frac[valid_novel]": novel}, **options))
    step = {"units": "steps"}
    return xr.Dataset({name: ("run", np.array([float(r[name]) for r in rows]), {"long_name": name, **step})
                       for name in ("tau_rule", "tau_novel", "tau_mem")},
                      coords={"run": ("run", [d.name for d in run_dirs])})


def train_montage(run_dirs, labels=None, n: int = 25, seed: int = 0) -> xr.Dataset:
    """Training samples of each run for :func:`twoclocks.plotting.data.plot_montage`: ``cells`` with
    dims (panel, sample, row, col), ``n`` samples per run drawn without replacement from its data.zarr
    train split (reproducibly, ``seed``), ``n_symbols`` per panel; ``labels``: one title per run
    (default: the run names)."""
    run_dirs = [Path(str(d)) for d in run_dirs]
    rng = np.random.default_rng(seed)
    cells, n_sym, sides = [], [], []
    for d in run_dirs:
        run = open_run(d)
        train = run.cells("train")
        pick = np.sort(rng.choice(len(train), size=min(n, len(train)), replace=False))
        side = int(round(np.sqrt(train.shape[1])))
        if side * side != train.shape[1]:
            raise TwoclocksError(f"{d}: {train.shape[1]} cells are not a square image; no montage")
        block = np.full((n, side, side), -1, dtype=np.int16)
        block[:len(pick)] = train[pick].reshape(-1, side, side)
        cells.append(block), n_sym.append(run.rule.n_symbols), sides.append(side)
    if len(set(sides)) > 1:
        raise TwoclocksError(f"train_montage: runs of different image sides {sorted(set(sides))}; pass runs of one side")
    labels = [d.name for d in run_dirs] if labels is None else list(labels)
    return xr.Dataset({"cells": (("panel", "sample", "row", "col"), np.stack(cells),
                                 {"long_name": "training sample cells (-1: no sample)", "units": "1"}),
                       "n_symbols": ("panel", np.array(n_sym), {"long_name": "symbols per cell"})},
                      coords={"panel": ("panel", labels)})


# ------------------------------------------------------------------------------------------ a sweep
class SweepData:
    """What the sweep figures read, loaded once and only when a figure asks: the clocks (collect's
    Dataset), the run directories, their samples cubes and curves."""

    def __init__(self, sweep_dir: Path, clocks: xr.Dataset):
        self.sweep_dir, self.clocks = sweep_dir, clocks

    @cached_property
    def run_dirs(self) -> list[Path]:
        def run_dir(value):  # collect: run names (and run_dir paths); compute_clocks: run directories
            p = Path(str(value))
            return p if (p / "probes").is_dir() else self.sweep_dir / p.name
        src = self.clocks["run_dir"] if "run_dir" in self.clocks else self.clocks["run"]
        return [run_dir(d) for d in src.values]

    @cached_property
    def samples(self) -> list[xr.Dataset]:
        return [open_cube(d / "probes" / "samples.zarr") for d in self.run_dirs]

    @cached_property
    def curves(self) -> xr.Dataset:
        return run_curves(self.run_dirs, self.clocks)

    def labels(self, exclude=()) -> list[str]:
        idx, names = run_series(self.clocks, tuple(exclude))
        return [names[i] or str(r) for i, r in zip(idx, self.clocks["run"].values)]


@dataclass(frozen=True)
class SweepFigure:
    """A figure of a sweep directory: ``draw`` the drawing function (``module:function``), called with
    what ``inputs(data, notes)`` returns (args, kwargs; ``data`` a :class:`SweepData`); drawn when every
    sweep axis of ``axes`` varies, one of ``any_of`` does (when given) and the clocks carry ``vars``."""
    name: str
    draw: str
    axes: tuple = ()
    any_of: tuple = ()
    vars: tuple = ("tau_rule", "tau_mem")
    inputs: Callable = field(default=lambda data, notes: ((data.clocks,), {}), repr=False, compare=False)
    paper: str = ""
    kwargs: dict = field(default_factory=dict, compare=False)

    def fits(self, clocks: xr.Dataset) -> bool:
        axes = grid_axes(clocks)
        return (all(a in axes for a in self.axes) and (not self.any_of or any(a in axes for a in self.any_of))
                and all(v in clocks for v in self.vars))

    def function(self) -> Callable:
        module, _, name = self.draw.partition(":")
        return getattr(importlib.import_module(module), name)


def grid_axes(clocks: xr.Dataset) -> set[str]:
    """The axes of a sweep: its spec's grid axes (collect's attrs ``sweep_spec``), which vary by design
    (a value that differs only through another axis, e.g. the default lr of each arch, is not one), else
    every config value that differs between the runs."""
    try:
        grid = json.loads(clocks.attrs.get("sweep_spec", "{}")).get("grid")
    except (TypeError, ValueError, AttributeError):
        grid = None
    if grid:
        return {key.split(".")[0] for key in grid if varies(clocks, key.split(".")[0])}
    return {name for name in clocks.coords if clocks[name].dims == ("run",) and name not in ("run", "run_dir")
            and varies(clocks, name)}


def _rule_vs_group_inputs(data, notes):
    fit = rule_group_fit(data.clocks)
    if isinstance(fit, str):
        notes.append(fit)
        fit = None
    return (data.clocks,), {"fit": fit}


def _with_curves(data, notes):
    return (data.curves, data.clocks), {}


def _novel_inputs(data, notes):
    ds = data.curves
    if "novel_frac" not in ds:
        raise TwoclocksError("the samples cubes have no state_frac (valid-novel fraction); rerun "
                             "`twoclocks-probe samples` on the runs")
    return (ds, novel_clocks(data.run_dirs)), {}


def _montage_inputs(data, notes):
    return (train_montage(data.run_dirs[:12], data.labels(("seed", "n_train", "lr", "weight_decay"))[:12]),), {}


_P = "twoclocks.plotting."
#: every sweep figure, in drawing order (docs/reproducing.md names the paper figure of each)
SWEEP_FIGURES = (
    SweepFigure("rule_vs_group", _P + "sweep:plot_rule_vs_group", ("group",), inputs=_rule_vs_group_inputs,
                paper="2C"),
    SweepFigure("mem_vs_n", _P + "sweep:plot_mem_vs_n", ("n_train",), vars=("tau_mem",),
                inputs=lambda data, notes: ((data.clocks,), {"fits": mem_fits(data.clocks)}), paper="2D, 10"),
    SweepFigure("memorization_collapse", _P + "sweep:plot_memorization_collapse", ("n_train",), vars=(),
                inputs=lambda data, notes: ((data.clocks, data.samples), {}), paper="2H, 8"),
    SweepFigure("clock_scaling", _P + "sweep:plot_clock_scaling", ("group", "n_train"), paper="2C-D"),
    SweepFigure("final_vs_group", _P + "grid:plot_final_vs_group", ("group",),
                vars=("final_sample_acc", "final_sample_mem"), paper="1B-C"),
    SweepFigure("clock_heatmap", _P + "grid:plot_clock_heatmap", ("group",), ("arch", "model", "depth"),
                paper="4B"),
    SweepFigure("arch_overlay", _P + "curves:plot_arch_overlay", ("arch",), vars=(), inputs=_with_curves,
                paper="4A"),
    SweepFigure("clocks_by_rule", _P + "grid:plot_clocks_by_rule", ("rule",), paper="21"),
    SweepFigure("novel_fraction", _P + "curves:plot_novel_fraction", (), ("rule", "encoding"), vars=(),
                inputs=_novel_inputs, paper="23"),
    SweepFigure("clocks_vs_lr", _P + "grid:plot_clocks_vs_hparam", ("lr",), kwargs={"axis": "lr"},
                paper="24, 26"),
    SweepFigure("clocks_vs_weight_decay", _P + "grid:plot_clocks_vs_hparam", ("weight_decay",),
                kwargs={"axis": "weight_decay"}, paper="25, 27"),
    SweepFigure("seed_spread", _P + "curves:plot_seed_spread", ("seed",), vars=(), inputs=_with_curves,
                paper="28"),
    SweepFigure("train_montage", _P + "data:plot_montage", (), ("rule", "group", "encoding"), vars=(),
                inputs=_montage_inputs, paper="5-6"),
)


def sweep_figures(clocks: xr.Dataset) -> list[str]:
    """The names of the :data:`SWEEP_FIGURES` that fit a sweep's collect Dataset (its varying axes and
    its variables), in drawing order."""
    return [f.name for f in SWEEP_FIGURES if f.fits(clocks)]


def plot_sweep(sweep_dir, out=None, formats=("png",), clocks: xr.Dataset | None = None, dpi: int = 150,
               **collect_options) -> PlotResult:
    """Draw the figures of a sweep directory that fit its axes (:func:`sweep_figures`) into ``out``
    (default SWEEP_DIR/figures), as NAME.FORMAT. The clocks come from ``clocks``, else
    SWEEP_DIR/collect.zarr when it exists (what `collect` printed), else
    ``twoclocks.sweep.collect(..., write=False, **collect_options)``; the curves from each run's
    probes/samples.zarr. Returns a PlotResult (paths; notes: one line per figure not drawn and why)."""
    sweep_dir = Path(sweep_dir)
    formats = parse_formats(formats)
    out = Path(out) if out is not None else sweep_dir / "figures"
    result = PlotResult()
    if clocks is None:
        if (sweep_dir / "collect.zarr").exists() and not collect_options:
            clocks = open_cube(sweep_dir / "collect.zarr").load()
            result.notes.append(f"clocks from {sweep_dir / 'collect.zarr'}")
        else:
            clocks = collect(sweep_dir, write=False, **collect_options)
    chosen = [f for f in SWEEP_FIGURES if f.fits(clocks)]
    if not chosen:
        result.notes.append("no sweep axis varies that a cross-run figure needs: no figure (plot a run with "
                            "`twoclocks-probe plot SWEEP_DIR/RUN`)")
        return result
    data = SweepData(sweep_dir, clocks)
    for spec in chosen:
        try:
            args, kwargs = spec.inputs(data, result.notes)
        except TwoclocksError as e:
            result.notes.append(f"skipped {spec.name}: {e}")
            continue
        fig = spec.function()(*args, **{**spec.kwargs, **kwargs})
        out.mkdir(parents=True, exist_ok=True)
        for f in formats:
            p = out / f"{spec.name}.{f}"
            fig.savefig(p, dpi=dpi, bbox_inches="tight", pad_inches=0.08)
            result.append(p)
    return result
