"""Sensitivity of the clocks and of alpha to the arbitrary choices behind them (docs/science.md#sensitivity).

The clocks (:func:`twoclocks.probes.clocks.clocks_from_curves`) and the tau_mem = c N^alpha fits
(:func:`~twoclocks.probes.clocks.fit_groups`) rest on choices the data do not fix. :func:`clock_sensitivity`
varies them one at a time around the defaults (not their product) and tabulates every run's clocks and
every fit group's alpha with its interval, one block of rows (``variant``) per choice:

- ``mem_threshold``: the memorization threshold t under each policy (adaptive b + t (1 - b), fixed t;
  :class:`~twoclocks.probes.clocks.MemThreshold`), default grid t = 0.05, 0.1, 0.2, 0.3 x both policies;
- ``acc_threshold``: the sample-accuracy threshold of tau_rule, default 0.8, 0.9, 0.95;
- ``k``: the evaluations a criterion must hold for, default 2, 3, 5;
- ``thin``: the evaluation density. Factor f keeps every f-th evaluated checkpoint counted back from the
  last one (positions T-1, T-1-f, T-1-2f, ... of the sorted stored steps): the last evaluated step is
  always kept, so the censoring step of an unreached clock does not move, and the first may be
  dropped. Default 1, 2, 4;
- ``bank``: the noise-bank size. Factor f keeps n_seeds // f seeds (at least 1): the first of one
  permutation of the bank drawn with ``numpy.random.default_rng(bank_seed)`` (so the subsets are
  nested, 1/4 inside 1/2, and equal for every run of one bank size), sorted; sample_acc and sample_mem
  are recomputed as means over those seeds of the per-seed indicators
  (:func:`twoclocks.probes.uncertainty.seed_indicators`, read from the stored samples; no network call).
  A cube without per-seed samples gives NaN clocks there (status ``no per-seed samples``). Default 1, 2, 4.

Every value of an axis is a row (the default value too), plus one row ``default`` with every choice
at its default: that row equals :func:`~twoclocks.probes.clocks.compute_clocks`. Each run's samples
cube is read once. The clocks of each (variant, run) come from ``clocks_from_curves`` itself, so
they follow the clock definitions exactly; the fits from ``fit_groups``, so a group that pools runs
of different evaluation density or bank size is refused unless ``allow_unequal``
(:func:`check_pooling`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.data.rules import support_baseline
from twoclocks.probes.clocks import (DEFAULT_ACC_THRESHOLD, DEFAULT_K, MEM_POLICIES, MemThreshold,
                                     clocks_from_curves, fit_groups, parse_where, select_runs)
from twoclocks.probes.clocks_schema import SENSITIVITY_SCHEMA
from twoclocks.probes.registry import DerivedProbe, register
from twoclocks.probes.pooling import POOLING_FLAG, check_pooling, measured_pooling
from twoclocks.probes.uncertainty import samples_cube, seed_indicators
from twoclocks.run import Run, open_run
from twoclocks.store import write_derived
from twoclocks.training.config import TrainConfig

__all__ = ["clock_sensitivity", "format_sensitivity", "parse_grid_options", "check_grids", "thin_index",
           "bank_subset", "DEFAULT_GRIDS", "CHOICES", "DEFAULT_BANK_SEED", "check_pooling", "POOLING_FLAG",
           "FIT_COLUMNS", "sensitivity_summary"]

#: the default grid of each choice (``mem_policy`` goes with ``mem_threshold``: its rows are policy x t)
DEFAULT_GRIDS = {"mem_threshold": (0.05, 0.1, 0.2, 0.3), "mem_policy": MEM_POLICIES,
                 "acc_threshold": (0.8, 0.9, 0.95), "k": (2, 3, 5), "thin": (1, 2, 4), "bank": (1, 2, 4)}
#: the choices varied, in row order
CHOICES = ("mem_threshold", "acc_threshold", "k", "thin", "bank")
DEFAULT_BANK_SEED = 0
#: the per-fit variables (dims variant, fit), each a key of fit_power_law's result
FIT_COLUMNS = ("alpha", "alpha_lo", "alpha_hi", "alpha_ml", "alpha_ml_lo", "alpha_ml_hi", "c", "c_ml", "n",
               "n_censored")
NO_SEEDS = "no per-seed samples in the cube (bank subsampling needs sample and nn_hamming)"


# ----------------------------------------------------------------------------- grids
def _number_list(key: str, values, kind):
    out = []
    for v in values:
        try:
            x = kind(v)
            if kind is int and float(v) != x:
                raise ValueError
        except (TypeError, ValueError):
            raise TwoclocksError(f"sensitivity grid {key}: {v!r} is not {'an integer' if kind is int else 'a number'}"
                                 ) from None
        out.append(x)
    return tuple(dict.fromkeys(out))


def check_grids(grids: dict | None = None) -> dict:
    """The grids, each validated and de-duplicated (order kept), the defaults (:data:`DEFAULT_GRIDS`)
    for those not given; an empty grid leaves its choice out. One-line :class:`TwoclocksError` for an
    unknown choice or a value out of range."""
    grids = dict(grids or {})
    bad = [key for key in grids if key not in DEFAULT_GRIDS]
    if bad:
        raise TwoclocksError(f"sensitivity grid {', '.join(bad)}: unknown choice; choose from "
                             f"{', '.join(DEFAULT_GRIDS)}")
    out = {}
    for key, default in DEFAULT_GRIDS.items():
        values = grids.get(key, default)
        values = [values] if isinstance(values, (str, int, float)) else list(values)
        if key == "mem_policy":
            wrong = [v for v in values if v not in MEM_POLICIES]
            if wrong:
                raise TwoclocksError(f"sensitivity grid mem_policy: {', '.join(map(repr, wrong))}; choose from "
                                     f"{', '.join(MEM_POLICIES)}")
            out[key] = tuple(dict.fromkeys(values))
            continue
        vals = _number_list(key, values, int if key in ("k", "thin", "bank") else float)
        if key == "mem_threshold":
            wrong = [v for v in vals if not 0 <= v < 1]
            rng = "in [0, 1)"
        elif key == "acc_threshold":
            wrong = [v for v in vals if not 0 < v <= 1]
            rng = "in (0, 1]"
        else:
            wrong = [v for v in vals if v < 1]
            rng = "at least 1"
        if wrong:
            raise TwoclocksError(f"sensitivity grid {key}: {', '.join(f'{v:g}' for v in wrong)} out of range "
                                 f"(must be {rng})")
        out[key] = vals
    if out["mem_threshold"] and not out["mem_policy"]:
        raise TwoclocksError("sensitivity grid mem_policy is empty while mem_threshold is not; give a policy "
                             "(adaptive, fixed) or an empty mem_threshold grid")
    return out


def parse_grid_options(items) -> dict:
    """Grids from ``CHOICE=V1,V2,...`` strings (``--sensitivity-grid``, e.g. ``k=2,3,5``, ``thin=1,8``,
    ``bank=`` for none), checked by :func:`check_grids`."""
    out = {}
    for item in items or ():
        key, sep, rest = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise TwoclocksError(f"--sensitivity-grid {item!r}: write CHOICE=V1,V2,... (e.g. k=2,3,5) with CHOICE "
                                 f"one of {', '.join(DEFAULT_GRIDS)}")
        out[key] = [v.strip() for v in rest.split(",") if v.strip()]
    return check_grids(out)


# ----------------------------------------------------------------------------- thinning and bank subsets
def thin_index(n_steps: int, factor: int) -> np.ndarray:
    """Ascending positions kept of ``n_steps`` sorted evaluated steps when keeping every ``factor``-th
    counted back from the last: T-1, T-1-f, ... (the last always kept)."""
    if factor < 1:
        raise TwoclocksError(f"thinning factor must be at least 1, got {factor}")
    return np.arange(n_steps - 1, -1, -int(factor))[::-1] if n_steps else np.zeros(0, np.int64)


def bank_subset(n_seeds: int, factor: int, seed: int = DEFAULT_BANK_SEED) -> np.ndarray:
    """Sorted seed positions of a bank of ``n_seeds`` subsampled by ``factor``: the first
    max(1, n_seeds // factor) of ``numpy.random.default_rng(seed).permutation(n_seeds)`` (nested
    across factors)."""
    if factor < 1:
        raise TwoclocksError(f"bank factor must be at least 1, got {factor}")
    keep = max(1, n_seeds // int(factor))
    return np.sort(np.random.default_rng(seed).permutation(n_seeds)[:keep])


# ----------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class _Variant:
    choice: str
    value: str
    policy: MemThreshold
    acc_threshold: float
    k: int
    thin: int
    bank: int


def _variants(center: _Variant, grids: dict) -> list[_Variant]:
    """The default row, then one row per value of each choice with the others at the default."""
    out = [center]
    for pol in grids["mem_policy"] if grids["mem_threshold"] else ():
        for t in grids["mem_threshold"]:
            out.append(_Variant("mem_threshold", f"{pol} {t:g}", MemThreshold(pol, t), center.acc_threshold,
                                center.k, 1, 1))
    for a in grids["acc_threshold"]:
        out.append(_Variant("acc_threshold", f"{a:g}", center.policy, a, center.k, 1, 1))
    for k in grids["k"]:
        out.append(_Variant("k", f"{k}", center.policy, center.acc_threshold, k, 1, 1))
    for f in grids["thin"]:
        out.append(_Variant("thin", f"1/{f}" if f > 1 else "all", center.policy, center.acc_threshold, center.k, f, 1))
    for f in grids["bank"]:
        out.append(_Variant("bank", f"1/{f}" if f > 1 else "all", center.policy, center.acc_threshold, center.k, 1, f))
    return out


def _read(run: Run, need_seeds: bool) -> dict:
    """One run's samples cube, read once: the stored curves (as run_clocks reads them) and, when
    ``need_seeds`` and present, the per-seed indicators."""
    ds = samples_cube(run)
    if ds.sizes["step"] == 0:
        raise TwoclocksError(f"{run.probe_path('samples')} holds no checkpoint steps; run "
                             f"`twoclocks-probe samples {run.path}`")
    out = {"steps": ds["step"].values, "acc": ds["sample_acc"].values.astype(float),
           "mem": ds["sample_mem"].values.astype(float), "cube": ds, "ind": None}
    if need_seeds and "sample" in ds and "nn_hamming" in ds:
        out["ind"] = seed_indicators(ds, run.rule)
    return out


def _curves(data: dict, v: _Variant, bank_seed: int):
    """(steps, acc, mem, n_seeds) of one run under variant ``v``; None where the bank cannot be subsampled."""
    if v.bank == 1:
        steps, acc, mem = data["steps"], data["acc"], data["mem"]
        n_seeds = data["cube"].sizes.get("seed", np.nan)
    else:
        ind = data["ind"]
        if ind is None:
            return None
        sub = bank_subset(ind.sizes["seed"], v.bank, bank_seed)
        steps = ind["step"].values
        acc = ind["valid"].values[:, sub].mean(axis=1)
        mem = ind["memorized"].values[:, sub].mean(axis=1)
        n_seeds = len(sub)
    order = np.argsort(steps, kind="stable")
    keep = order[thin_index(len(steps), v.thin)]
    return steps[keep], acc[keep], mem[keep], float(n_seeds)


# ----------------------------------------------------------------------------- the study
def clock_sensitivity(run_dirs, k: int = DEFAULT_K, acc_threshold: float = DEFAULT_ACC_THRESHOLD,
                      mem_threshold: float | None = None, mem_adaptive: bool | None = None,
                      policy: MemThreshold | str | None = None, pool=(), pools=None, where=None,
                      grids: dict | None = None, bank_seed: int = DEFAULT_BANK_SEED, allow_unequal: bool = False,
                      out: str | Path | None = None) -> xr.Dataset:
    """Clocks per run and alpha per fit group over the arbitrary choices (module docstring), as a
    Dataset with dims ``variant`` (coords ``choice``, ``value``; the first is ``default``), ``run``,
    ``fit``. The defaults (the center of the variation) and ``pool`` / ``pools`` / ``where`` /
    ``allow_unequal`` as :func:`~twoclocks.probes.clocks.compute_clocks`; ``grids``: overrides of
    :data:`DEFAULT_GRIDS` (:func:`check_grids`; an empty grid leaves its choice out); ``bank_seed``:
    the seed of the bank subsets (:func:`bank_subset`). Writes the Dataset to ``out`` (zarr,
    :data:`~twoclocks.probes.clocks_schema.SENSITIVITY_SCHEMA`) when given.

    Per (variant, run): ``tau_rule``, ``tau_mem``, ``window``, ``tau_mem_censored_at``, their statuses,
    ``mem_threshold``, ``n_evals`` (evaluated steps used), ``n_seeds`` (bank seeds averaged; NaN
    unknown). Per (variant, fit): ``fit_KEY`` for KEY in :data:`FIT_COLUMNS` (:func:`fit_power_law`).
    Per variant the settings: ``mem_policy``, ``mem_t``, ``acc_threshold``, ``k``, ``thin_factor``,
    ``bank_factor``."""
    if not run_dirs:
        raise TwoclocksError("give at least one run directory")
    center_pol = MemThreshold.from_options(mem_threshold, mem_adaptive, policy)
    if not (0 < acc_threshold <= 1):
        raise TwoclocksError(f"--acc-threshold must be in (0, 1], got {acc_threshold}")
    if k < 1:
        raise TwoclocksError(f"--k must be at least 1, got {k}")
    grids = check_grids(grids)
    fields = list(TrainConfig.__dataclass_fields__)
    bad = [p for level in ([pool] if pools is None else pools) for p in level if p not in fields]
    if bad:
        raise TwoclocksError(f"--pool {', '.join(bad)}: not a config field; choose from {', '.join(fields)}")
    levels = [tuple(p) for p in pools] if pools is not None else [tuple(pool)]
    runs = [r if isinstance(r, Run) else open_run(r) for r in run_dirs]
    cfgs = [r.config.to_dict() for r in runs]
    selected = select_runs(cfgs, parse_where(where, fields))
    center = _Variant("default", "default", center_pol, float(acc_threshold), int(k), 1, 1)
    variants = _variants(center, grids)
    need_seeds = any(v.bank > 1 for v in variants)
    data = [_read(r, need_seeds) for r in runs]
    base = np.array([support_baseline(r.rule, r.config.n_train) for r in runs], float)
    names = [r.path.name for r in runs]
    measured = measured_pooling([d["cube"] for d in data])

    V, R = len(variants), len(runs)
    num = {key: np.full((V, R), np.nan) for key in ("tau_rule", "tau_mem", "window", "tau_mem_censored_at",
                                                    "mem_threshold", "n_seeds")}
    n_evals = np.zeros((V, R), np.int64)
    status = {key: np.full((V, R), "", dtype=object) for key in ("tau_rule_status", "tau_mem_status")}
    for i, d in enumerate(data):
        for j, v in enumerate(variants):
            c = _curves(d, v, bank_seed)
            if c is None:
                status["tau_rule_status"][j, i] = status["tau_mem_status"][j, i] = NO_SEEDS
                continue
            steps, acc, mem, n_seeds = c
            row = clocks_from_curves(steps, acc, mem, base[i], v.k, v.acc_threshold, policy=v.policy)
            for key in ("tau_rule", "tau_mem", "window", "tau_mem_censored_at", "mem_threshold"):
                num[key][j, i] = row[key]
            num["n_seeds"][j, i] = n_seeds
            n_evals[j, i] = row["n_evals"]
            status["tau_rule_status"][j, i] = row["tau_rule_status"]
            status["tau_mem_status"][j, i] = row["tau_mem_status"]

    fits_by_variant = [fit_groups(cfgs, num["tau_mem"][j], levels, num["tau_mem_censored_at"][j], selected=selected,
                                  allow_unequal=allow_unequal, names=names, measured=measured) for j in range(V)]
    first = fits_by_variant[0]
    F = len(first)
    fitvals = {key: np.full((V, F), np.nan) for key in FIT_COLUMNS}
    for j, fits in enumerate(fits_by_variant):
        for g, f in enumerate(fits):
            for key in FIT_COLUMNS:
                fitvals[key][j, g] = f[key]

    vdim, rv, fv = ("variant",), ("variant", "run"), ("variant", "fit")
    ds_vars = {
        **{key: (rv, num[key]) for key in ("tau_rule", "tau_mem", "window", "tau_mem_censored_at", "mem_threshold",
                                           "n_seeds")},
        "n_evals": (rv, n_evals),
        **{key: (rv, status[key].astype(str)) for key in status},
        **{f"fit_{key}": (fv, fitvals[key].astype(np.int64) if key in ("n", "n_censored") else fitvals[key])
           for key in FIT_COLUMNS},
        "fit_label": (("fit",), np.array([f["label"] for f in first], dtype=str)),
        "fit_member": (("fit", "run"), np.array([f["members"] for f in first], bool).reshape(F, R)),
        "is_default": (vdim, np.array([j == 0 for j in range(V)])),
        "mem_policy": (vdim, np.array([v.policy.policy for v in variants], dtype=str)),
        "mem_t": (vdim, np.array([v.policy.t for v in variants], float)),
        "acc_threshold": (vdim, np.array([v.acc_threshold for v in variants], float)),
        "k": (vdim, np.array([v.k for v in variants], np.int64)),
        "thin_factor": (vdim, np.array([v.thin for v in variants], np.int64)),
        "bank_factor": (vdim, np.array([v.bank for v in variants], np.int64)),
    }
    labels = ["default" if j == 0 else f"{v.choice}={v.value}" for j, v in enumerate(variants)]
    ds = xr.Dataset(ds_vars, coords={
        "variant": ("variant", np.array(labels, dtype=str)),
        "choice": ("variant", np.array([v.choice for v in variants], dtype=str)),
        "value": ("variant", np.array([v.value for v in variants], dtype=str)),
        "run": ("run", np.array([str(r.path) for r in runs], dtype=str)),
        "n_train": ("run", np.array([c["n_train"] for c in cfgs], np.int64)),
        "fit": ("fit", np.arange(F, dtype=np.int64))})
    ds.attrs.update({
        "defaults": json.dumps({"k": int(k), "acc_threshold": float(acc_threshold), **center_pol.attrs(per_run=True),
                                "thin": 1, "bank": 1}),
        "grids": json.dumps({key: list(v) for key, v in grids.items()}),
        "bank_seed": int(bank_seed),
        "thinning": "factor f keeps every f-th evaluated step counted back from the last (the last always kept)",
        "bank_subsampling": (f"factor f keeps n_seeds // f seeds: the first of numpy.random.default_rng({bank_seed})"
                             ".permutation(n_seeds), nested across f; curves = means of the per-seed indicators"),
        "pools": json.dumps([list(level) for level in levels]),
        "where": json.dumps([str(w) for w in ([where] if isinstance(where, str) else (where or []))]),
        "allow_unequal": int(bool(allow_unequal)),
        "source_steps": json.dumps({str(r.path): [int(s) for s in d["steps"]] for r, d in zip(runs, data)}),
    })
    if out is not None and Path(out).suffix != ".zarr":
        raise TwoclocksError(f"--sensitivity-out {out}: give a path ending in .zarr")
    return write_derived(ds, out, schema=SENSITIVITY_SCHEMA, params={  # out None: stamped, not written
        "k": int(k), "acc_threshold": float(acc_threshold), "mem_threshold_policy": center_pol.policy,
        "mem_threshold_t": center_pol.t, "grids": {key: list(v) for key, v in grids.items()},
        "bank_seed": int(bank_seed), "pools": [list(level) for level in levels], "allow_unequal": allow_unequal})


# ----------------------------------------------------------------------------- the table
def _g(v, spec=".4g") -> str:
    return "-" if not np.isfinite(v) else format(float(v), spec)


def _clock_cell(vals) -> str:
    """Per run (3 runs or fewer) 'a/b/c', else 'min..max', with '(r/R)' when some are not reached."""
    vals = np.asarray(vals, float)
    ok = np.isfinite(vals)
    if len(vals) <= 3:
        return "/".join(_g(v) for v in vals)
    text = "-" if not ok.any() else (_g(vals[ok].min()) if vals[ok].min() == vals[ok].max()
                                      else f"{_g(vals[ok].min())}..{_g(vals[ok].max())}")
    return text + (f" ({int(ok.sum())}/{len(vals)})" if not ok.all() else "")


def _interval(a, lo, hi) -> str:
    if not np.isfinite(a):
        return "-"
    return f"{a:.3g} [{_g(lo, '.3g')}, {_g(hi, '.3g')}]"


def sensitivity_summary(ds: xr.Dataset, fit: int, ml: bool = False) -> dict:
    """For fit group ``fit``: the range of alpha (least squares; censored ML with ``ml``) over every
    variant (``lo``, ``hi``: NaN when none), the default's alpha and interval (``alpha``, ``alpha_lo``,
    ``alpha_hi``), ``outside`` (some choice gives an alpha outside the default's interval) and
    ``wider`` (the spread of alpha across the choices exceeds the interval's width)."""
    key = "fit_alpha_ml" if ml else "fit_alpha"
    a = ds[key].isel(fit=fit).values.astype(float)
    d = ds.isel(fit=fit, variant=int(np.flatnonzero(ds["is_default"].values)[0]))
    dlo, dhi = float(d[f"{key}_lo"]), float(d[f"{key}_hi"])
    ok = np.isfinite(a)
    lo, hi = (float(a[ok].min()), float(a[ok].max())) if ok.any() else (np.nan, np.nan)
    outside = bool(ok.any() and np.isfinite(dlo) and np.isfinite(dhi) and (lo < dlo or hi > dhi))
    wider = bool(ok.any() and np.isfinite(dlo) and np.isfinite(dhi) and hi - lo > dhi - dlo)
    return {"lo": lo, "hi": hi, "alpha": float(d[key]), "alpha_lo": dlo, "alpha_hi": dhi, "outside": outside,
            "wider": wider}


def format_sensitivity(ds: xr.Dataset) -> str:
    """The sensitivity Dataset as a compact table: one line per (choice, value), each clock per run
    (3 runs or fewer, 'a/b/c') or its range over runs ('min..max (reached/runs)'), and per fit group
    alpha [lo, hi] of the least-squares and the censored-ML fit; then per fit group the line 'alpha
    ranges over X..Y across the choices; the default's interval is [lo, hi]', flagged where the
    choices move alpha outside that interval."""
    F = ds.sizes["fit"]
    head = ["choice", "value", "tau_rule", "tau_mem", "window"]
    for g in range(F):
        head += [f"alpha[{g}]", f"alpha_ml[{g}]"]
    rows = []
    for j in range(ds.sizes["variant"]):
        d = ds.isel(variant=j)
        row = [str(d.choice.item()), str(d.value.item()), _clock_cell(d.tau_rule.values),
               _clock_cell(d.tau_mem.values), _clock_cell(d.window.values)]
        for g in range(F):
            f = d.isel(fit=g)
            row += [_interval(float(f.fit_alpha), float(f.fit_alpha_lo), float(f.fit_alpha_hi)),
                    _interval(float(f.fit_alpha_ml), float(f.fit_alpha_ml_lo), float(f.fit_alpha_ml_hi))]
        rows.append(row)
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]]
    runs = [Path(str(r)).name for r in ds["run"].values]
    lines.append(f"clocks per run ({', '.join(runs)})" if len(runs) <= 3 else
                 f"clocks: range over the {len(runs)} runs (reached/runs where some are not reached)")
    no_seeds = [Path(str(ds["run"].values[i])).name for i in range(ds.sizes["run"])
                if (ds["tau_mem_status"].values[:, i] == NO_SEEDS).any()]
    if no_seeds:
        lines.append(f"bank rows are empty for {', '.join(no_seeds)}: {NO_SEEDS}")
    if F == 0:
        lines.append("no fit group (a fit needs runs at 2 or more distinct N)")
    for g in range(F):
        label = str(ds["fit_label"].values[g])
        for ml, name in ((False, "least squares"), (True, "censored ML")):
            s = sensitivity_summary(ds, g, ml)
            if not np.isfinite(s["lo"]):
                continue
            text = (f"fit [{g}] {label}, {name}: alpha ranges over {s['lo']:.3g}..{s['hi']:.3g} across the choices; "
                    f"the default's interval is [{_g(s['alpha_lo'], '.3g')}, {_g(s['alpha_hi'], '.3g')}]")
            if s["outside"]:
                text += (" -- the choices move alpha outside it" +
                         (" and their spread exceeds its width" if s["wider"] else ""))
            lines.append(text)
    return "\n".join(lines)


PROBE = register(DerivedProbe(
    name="sensitivity", cube="sensitivity", options=None, schema=SENSITIVITY_SCHEMA, derive=clock_sensitivity,
    cross_run=True, builtin=True, summary=format_sensitivity,
    help="The clocks and alpha over the arbitrary choices, varied one at a time (`clocks --sensitivity-out`)."))
