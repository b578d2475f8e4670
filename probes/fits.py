"""Any clock against any numeric config field across runs: the scaling claims as estimators
(docs/science.md#generic-fit).

:func:`fit_clocks` fits ln clock on x, x = ln axis (``power``: clock = c axis^slope) or x = axis
(``loglinear``: clock = c exp(slope axis), per-unit factor exp(slope)), per group of runs equal in every
config field but the axis, seeds and bookkeeping (:func:`twoclocks.probes.clocks.group_runs`), by the
one censored line fit (:func:`twoclocks.probes.linefit.censored_line_fit`): least squares with a t
interval and the t-test of a zero slope, and right-censored ML with the t-calibrated profile interval
and likelihood-ratio test. Every run is a point (the seeds of a grid point all enter the fit).
E.g. "tau_rule grows tenfold per unit of G": ``fit_clocks(ds, y="tau_rule", x="group",
model="loglinear")`` and its ``fit_factor`` with [``fit_factor_lo``, ``fit_factor_hi``]; "tau_mem
does not depend on G": the p-values ``fit_p_zero`` / ``fit_p_zero_ml`` of ``y="tau_mem", x="group"``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.stats import t as student_t

from twoclocks import TwoclocksError
from twoclocks.probes.clocks import (NOT_GROUPING, compute_clocks, group_runs, parse_where,
                                     select_runs)
from twoclocks.probes.fits_schema import CLOCK_FIT_SCHEMA
from twoclocks.probes.registry import DerivedProbe, get_probe, register
from twoclocks.probes.linefit import (LINE_FIT_KEYS, LINE_FIT_STR_KEYS, LINE_MODELS, ML_TEST, T_TEST,
                                      censored_line_fit, line_x)
from twoclocks.store import open_cube, write_derived
from twoclocks.training.config import TrainConfig

__all__ = ["fit_clocks", "fit_clock_dataset", "format_clock_fits", "clock_names", "clock_censoring",
           "run_configs", "numeric_fields", "fit_line", "fit_rows", "BOOKKEEPING"]

#: fields that never separate fit groups: seeds and bookkeeping (NOT_GROUPING without n_train, which
#: is a grid axis like any other here)
BOOKKEEPING = tuple(f for f in NOT_GROUPING if f != "n_train")
#: run variables in steps that are not clocks
_NOT_CLOCKS = ("tau_rule_raw", "last_step", "final_step")


def clock_names(ds: xr.Dataset) -> list[str]:
    """The clock variables of a clocks / collect Dataset: float variables on ``run`` in steps, other than
    censoring points, raw values and last steps (tau_rule, tau_mem, window, loss clocks, ...)."""
    return [str(n) for n, v in ds.data_vars.items() if v.dims == ("run",) and v.dtype.kind == "f"
            and v.attrs.get("units") == "steps" and not str(n).endswith("_censored_at") and n not in _NOT_CLOCKS]


def clock_censoring(ds: xr.Dataset, clock: str) -> np.ndarray:
    """Per run, the step ``clock`` is known to exceed where it was not reached (NaN where reached or
    unknown): ``CLOCK_censored_at`` when the Dataset has it (tau_mem); tau_rule ``never`` reached: the
    last evaluated step; window with tau_rule reached and tau_mem censored: tau_mem's censoring step
    minus tau_rule. Other clocks carry no censoring information."""
    y = ds[clock].values.astype(float)
    cen = np.full(len(y), np.nan)
    if f"{clock}_censored_at" in ds:
        cen = ds[f"{clock}_censored_at"].values.astype(float)
    elif clock == "tau_rule" and "tau_rule_status" in ds and "last_step" in ds:
        never = ds["tau_rule_status"].values.astype(str) == "never"
        cen = np.where(never, ds["last_step"].values.astype(float), np.nan)
    elif clock == "window" and "tau_mem_censored_at" in ds and "tau_rule" in ds:
        cen = ds["tau_mem_censored_at"].values.astype(float) - ds["tau_rule"].values.astype(float)
    return np.where(np.isfinite(y), np.nan, cen)


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def run_configs(ds: xr.Dataset) -> list[dict]:
    """The runs' config values from a clocks / collect Dataset: the config coordinates on ``run`` plus
    (collect) the constant ones in attrs ``constant_config``."""
    const = json.loads(ds.attrs.get("constant_config", "{}") or "{}")
    fields = [f for f in TrainConfig.__dataclass_fields__ if (f in ds.coords and ds[f].dims == ("run",))
              or f in const]
    cols = {f: [_plain(v) for v in ds[f].values] if f in ds.coords else [const[f]] * ds.sizes["run"]
            for f in fields}
    return [{f: cols[f][i] for f in fields} for i in range(ds.sizes["run"])]


def _as_number(v):
    if isinstance(v, (bool, np.bool_)) or v is None:
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def numeric_fields(cfgs: list[dict]) -> list[str]:
    """The config fields whose value is a number in every run (booleans are not numbers)."""
    fields = list(cfgs[0]) if cfgs else []
    return [f for f in fields if all(_as_number(c.get(f)) is not None for c in cfgs)]


def _load(source, clock_options: dict) -> xr.Dataset:
    """A clocks Dataset from a Dataset, a sweep directory (its clocks as `collect` computes them, not
    written), a written clocks / collect / .zarr cube, or run directories."""
    if isinstance(source, xr.Dataset):
        return source
    paths = [Path(source)] if isinstance(source, (str, Path)) else [Path(p) for p in source]
    if not paths:
        raise TwoclocksError("give a sweep directory, run directories or a clocks Dataset (.zarr)")
    opts = {k: v for k, v in clock_options.items() if v is not None}
    if len(paths) == 1 and paths[0].suffix == ".zarr":
        return open_cube(paths[0]).load()
    if len(paths) == 1 and (paths[0] / "sweep.json").is_file():
        # the sweep layer's cross-run probe `collect` (twoclocks.sweep.collect), found through the registry:
        # the sweep sits above the probes, which never import it
        return get_probe("collect")(paths[0], write=False, pool=(), **opts)
    missing = [str(p) for p in paths if not p.is_dir()]
    if missing:
        raise TwoclocksError(f"{missing[0]} is not a directory; give a sweep directory, run directories or a "
                             "clocks Dataset (.zarr)")
    return compute_clocks([str(p) for p in paths], **opts)


def fit_clocks(source, y: str = "tau_mem", x: str = "n_train", model: str = "power", where=None, pool=None,
               level: float = 0.95, out=None, **clock_options) -> xr.Dataset:
    """``y`` (a clock: :func:`clock_names`) against ``x`` (a numeric config field) over the runs of
    ``source``: a clocks / collect Dataset (nothing is read from disk), a sweep directory, a written
    cube (.zarr) or a list of run directories (``clock_options``: k, acc_threshold, mem_threshold,
    mem_adaptive as for compute_clocks). ``model``: ``power`` (clock = c x^slope) or ``loglinear``
    (clock = c exp(slope x)). ``where``: the runs to fit (clauses as ``--where``); ``pool``: config
    fields (a string "a,b" or a tuple) to pool over in extra fits beside the per-group ones. Returns
    the fit Dataset (:func:`fit_clock_dataset`), also written to ``out`` (.zarr) when given."""
    ds = _load(source, clock_options)
    fit = fit_clock_dataset(ds, y=y, x=x, model=model, where=where, pool=pool, level=level)
    if out is not None:
        out = Path(out)
        if out.suffix != ".zarr":
            raise TwoclocksError(f"--out {out}: give a path ending in .zarr")
        fit = write_derived(fit, out, schema=CLOCK_FIT_SCHEMA, params={
            "y": y, "x": x, "model": model, "level": level, "pools": json.loads(fit.attrs["pools"]),
            "where": json.loads(fit.attrs["where"])})
    return fit


def _pools(pool) -> tuple:
    if pool is None:
        return ()
    return tuple(p.strip() for p in (pool.split(",") if isinstance(pool, str) else pool) if p.strip())


def fit_clock_dataset(ds: xr.Dataset, y: str, x: str, model: str = "power", where=None, pool=None,
                      level: float = 0.95) -> xr.Dataset:
    """The fits of :func:`fit_clocks` on a clocks / collect Dataset, as a Dataset (variables:
    :data:`twoclocks.probes.fits_schema.CLOCK_FIT_VARS`; dims ``fit`` and ``run``). Bad input (an unknown
    clock or field, a non-numeric field, no group with >= 3 runs that reached the clock) raises a
    one-line TwoclocksError."""
    if "run" not in ds.dims:
        raise TwoclocksError("the Dataset has no run dimension: give a clocks or collect Dataset")
    if model not in LINE_MODELS:
        raise TwoclocksError(f"--model {model!r}: choose from {', '.join(LINE_MODELS)}")
    if not 0 < level < 1:
        raise TwoclocksError(f"--level {level}: give a confidence level in (0, 1), e.g. 0.95")
    clocks = clock_names(ds)
    if y not in clocks:
        raise TwoclocksError(f"--y {y!r}: not a clock of these runs; clocks: {', '.join(clocks)}")
    cfgs = run_configs(ds)
    fields = list(cfgs[0]) if cfgs else []
    numeric = numeric_fields(cfgs)
    if x not in fields:
        raise TwoclocksError(f"--x {x!r}: not a config field; numeric config fields: {', '.join(numeric)}")
    if x not in numeric:
        raise TwoclocksError(f"--x {x!r} is not numeric; numeric config fields: {', '.join(numeric)}")
    pools = _pools(pool)
    bad = [p for p in pools if p not in fields or p == x]
    if bad:
        raise TwoclocksError(f"--pool {', '.join(bad)}: not a config field other than --x {x}; fields: "
                             f"{', '.join(f for f in fields if f != x)}")
    clauses = parse_where(where, fields)
    selected = select_runs(cfgs, clauses)
    axis = np.array([_as_number(c[x]) for c in cfgs], float)
    yv = ds[y].values.astype(float)
    cen = clock_censoring(ds, y)
    xv = line_x(axis, model)
    role = np.where(np.isfinite(yv) & (yv > 0), "reached",
                    np.where(np.isfinite(cen) & (cen > 0), "censored", f"left out: {y} not reached, no censoring step"))
    role = np.where(np.isfinite(xv), role, f"left out: {x} <= 0 (power model)")
    role = np.where(selected, role, "left out: not selected (--where)").astype(str)
    usable = selected & np.isfinite(xv) & (np.isfinite(yv) | np.isfinite(cen))
    if not usable.any():
        raise TwoclocksError(f"no selected run has {y} or a censoring step for it at a usable {x}")
    if not (usable & np.isfinite(yv)).any():
        raise TwoclocksError(f"all {int(usable.sum())} usable runs are censored: no run reached {y}")
    groups = group_runs(cfgs, x, [()] + ([pools] if pools else []), selected & np.isfinite(xv), BOOKKEEPING)
    if not groups:
        raise TwoclocksError(f"no group of runs spans >= 2 distinct {x} values (groups: runs equal in every config "
                             f"field but {x}, seeds and bookkeeping; pool fields with --pool)")
    fits = []
    for g in groups:
        m = g["members"]
        fits.append({**g, **censored_line_fit(axis[m], yv[m], cen[m], level, model, clock_name=y, axis_name=x,
                                              slope_name="the slope")})
    if max(f["n"] for f in fits) < 3:
        raise TwoclocksError(f"fewer than 3 runs reached {y} in every group (most: {max(f['n'] for f in fits)}); "
                             f"a fit with an interval needs >= 3")
    return _dataset(ds, cfgs, fits, y, x, model, level, pools, clauses, axis, yv, cen, role, selected)


def _dataset(ds, cfgs, fits, y, x, model, level, pools, clauses, axis, yv, cen, role, selected) -> xr.Dataset:
    run = ds["run"].values
    coords = {"run": ("run", run), "fit": ("fit", np.arange(len(fits)))}
    for f in cfgs[0] if cfgs else ():
        if f in ds.coords and ds[f].dims == ("run",):
            coords[f] = ("run", ds[f].values, dict(ds[f].attrs))
    data = {"axis_value": ("run", axis), "clock_value": ("run", yv), "clock_censored_at": ("run", cen),
            "run_role": ("run", role), "run_selected": ("run", np.asarray(selected, bool)),
            "fit_label": ("fit", np.array([f["label"] for f in fits], dtype=str)),
            "fit_pooled_over": ("fit", np.array([f["pooled_over"] for f in fits], dtype=str)),
            "fit_member": (("fit", "run"), np.array([f["members"] for f in fits], bool).reshape(len(fits), len(run)))}
    for key in LINE_FIT_KEYS:
        vals = [f[key] for f in fits]
        if key in ("censored_at", "censored_x"):
            arr = np.array([json.dumps(list(v)) for v in vals], dtype=str)
        elif key in LINE_FIT_STR_KEYS:
            arr = np.array(vals, dtype=str)
        elif key in ("n", "n_runs", "n_censored"):
            arr = np.array(vals, dtype=np.int64)
        else:
            arr = np.array(vals, dtype=float)
        data[f"fit_{key}"] = ("fit", arr)
    out = CLOCK_FIT_SCHEMA.apply(xr.Dataset(data, coords=coords))
    keep = {k: ds.attrs[k] for k in ("source_steps", "constant_config", "sweep_dir", "mem_threshold_policy",
                                     "mem_threshold_t", "k", "acc_threshold") if k in ds.attrs}
    return out.assign_attrs({
        **keep, "y": y, "x": x, "model": model, "level": float(level), "model_formula": LINE_MODELS[model],
        "pools": json.dumps([list(pools)] if pools else []), "where": json.dumps([" ".join(c) for c in clauses]),
        "test_method": T_TEST, "test_method_ml": ML_TEST,
        "fit_method": ("least squares of ln clock on x (scipy.stats.linregress; censored runs dropped) with a t "
                       "interval for the slope and a t-test of slope = 0 (n - 2 dof), and right-censored maximum "
                       "likelihood (Tobit on ln clock) with a profile-likelihood interval cut at n ln(1 + t^2/(n - 2)) "
                       "and the likelihood-ratio test of slope = 0 calibrated the same way (n runs that reached the "
                       "clock)")})


def fit_rows(fit: xr.Dataset) -> list[tuple[str, dict]]:
    """(label, fit dict with the keys of LINE_FIT_KEYS) per ``fit`` of a fit Dataset."""
    out = []
    for j in range(fit.sizes["fit"]):
        f = fit.isel(fit=j)
        row = {}
        for key in LINE_FIT_KEYS:
            v = f[f"fit_{key}"].item()
            row[key] = (tuple(json.loads(v)) if key in ("censored_at", "censored_x") else str(v)
                        if key in LINE_FIT_STR_KEYS else int(v) if key in ("n", "n_runs", "n_censored") else float(v))
        out.append((str(f["fit_label"].item()), row))
    return out


def fit_line(fit: xr.Dataset, j: int, axis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(line, lower, upper) of fit ``j`` at the axis values ``axis``, in clock units: the least-squares
    line c x^slope / c exp(slope x) and its pointwise t confidence band at the fit's level,
    exp(ln c + slope x -+ t s sqrt(1/n + (x - x_mean)^2 / sxx)), s the residual standard deviation
    (band NaN with n < 3)."""
    f = fit.isel(fit=j)
    get = lambda k: float(f[f"fit_{k}"])  # noqa: E731
    x = line_x(axis, str(fit.attrs.get("model", f["fit_model"].item())))
    mid = np.log(get("c")) + get("slope") * x
    n, dof = get("n"), get("dof")
    if not np.isfinite(dof):
        return np.exp(mid), np.full(len(x), np.nan), np.full(len(x), np.nan)
    half = float(student_t.ppf(0.5 + get("level") / 2, dof)) * get("resid_sd") * np.sqrt(
        1 / n + (x - get("x_mean")) ** 2 / get("sxx"))
    return np.exp(mid), np.exp(mid - half), np.exp(mid + half)


def _num(v, spec=".3g") -> str:
    return "-" if not np.isfinite(v) else format(v, spec)


def _p(v) -> str:
    return "-" if not np.isfinite(v) else f"{v:.2g}"


def format_clock_fits(fit: xr.Dataset) -> str:
    """The fit Dataset as text: per group its runs (censored ones), dof, the slope with its interval and
    method, the per-unit factor (loglinear) or exponent (power), the zero-slope p-values, R^2, the
    censored runs and the runs left out."""
    y, x, model = fit.attrs["y"], fit.attrs["x"], fit.attrs["model"]
    formula = f"{y} = c {x}^slope" if model == "power" else f"{y} = c exp(slope {x})"
    runs = [Path(str(r)).name for r in fit["run"].values]
    role = fit["run_role"].values.astype(str)
    axis = fit["axis_value"].values.astype(float)
    lines = [f"fit {formula} ({model}); every run is a point (seeds included)"]
    where = json.loads(fit.attrs.get("where", "[]"))
    if where:
        lines.append(f"runs where {', '.join(where)}: {int(fit['run_selected'].values.sum())} of {len(runs)}")
    for j, (label, f) in enumerate(fit_rows(fit)):
        lvl = f"{f['level']:.0%}"
        dof = f", dof {int(f['dof'])}" if np.isfinite(f["dof"]) else ""
        lines.append(f"[{label}] {f['n_runs']} runs ({f['n_censored']} censored), {f['n']} reached {y}{dof}")

        def part(sfx, method, p, ptest):
            s, lo, hi = f[f"slope{sfx}"], f[f"slope{sfx}_lo"], f[f"slope{sfx}_hi"]
            ci = f" [{_num(lo)}, {_num(hi)}] ({lvl} {method})" if method else " (no interval)"
            text = f"slope {_num(s)}{ci}"
            if model == "loglinear":
                fl, fh = f[f"factor{sfx}_lo"], f[f"factor{sfx}_hi"]
                text += (f", per unit of {x} x{_num(f[f'factor{sfx}'])}"
                         + (f" [{_num(fl)}, {_num(fh)}]" if method else ""))
            else:
                text += f" (exponent of {x})"
            return text + f", p(slope = 0) = {_p(p)} ({ptest})"
        lines.append(f"  least squares: c = {_num(f['c'])}, {part('', f['interval_method'], f['p_zero'], 't-test')}"
                     f", R^2 = {_num(f['r2'])}")
        if f["ml_status"] == "ok":
            lines.append(f"  censored ML:   c = {_num(f['c_ml'])}, "
                         f"{part('_ml', f['interval_method_ml'], f['p_zero_ml'], 'likelihood ratio')}"
                         f", sigma = {_num(f['sigma_ml'])}")
        else:
            lines.append(f"  censored ML: {f['ml_status']}")
        m = fit["fit_member"].values[j]
        cen = [f"{runs[i]} ({x}={axis[i]:g}) > {float(fit['clock_censored_at'].values[i]):g}"
               for i in np.flatnonzero(m & (role == "censored"))]
        if cen:
            lines.append(f"  censored: {', '.join(cen)}")
        out = [f"{runs[i]} ({role[i][len('left out: '):]})" for i in np.flatnonzero(m & np.char.startswith(
            role, "left out"))]
        if out:
            lines.append(f"  left out: {', '.join(out)}")
        if f["notes"]:
            lines.append(f"  {f['notes']}")
    grouped = fit["fit_member"].values.any(axis=0)
    loose = [runs[i] for i in np.flatnonzero(~grouped & fit["run_selected"].values)]
    if loose:
        lines.append(f"in no group (fewer than 2 distinct {x} among runs equal otherwise): {', '.join(loose)}")
    return "\n".join(lines)


PROBE = register(DerivedProbe(
    name="fit", cube="clock_fit", options=None, schema=CLOCK_FIT_SCHEMA, derive=fit_clocks, cross_run=True,
    builtin=True, summary=format_clock_fits,
    help="Any clock against any numeric config field across runs, per group, with intervals (`fit --out`)."))
