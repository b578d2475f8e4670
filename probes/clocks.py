"""The two clocks (docs/science.md#clocks), per run and across runs: the one place for the
sustained-onset rule, the memorization-threshold policy and the tau_mem = c N^alpha fits.

- Sustained onset (:func:`sustained_onset`, also used by the DSM probe's loss clocks): the first
  evaluated step from which a criterion holds at that evaluation and the k-1 following ones (k = 3
  by default: a transient spike of one or two evaluations does not count).
- tau_rule: sustained onset of sample accuracy >= ``acc_threshold`` (0.9).
- tau_mem: sustained onset of sample memorization > the memorization threshold. One policy object,
  :class:`MemThreshold`, decides it for every command (clocks, markov, collect, plot); the default is
  the ``adaptive`` threshold the paper's Table 4 fits use (App. C.3):
      thr = b + t (1 - b),  b = N / |support| (sample memorization of a perfect model of the training
      distribution, which draws uniformly from the sampler's support: the valid set, or for Latin
      squares and Sudoku the cyclic square's isotopy class), t = 0.1,
  "t of the way from the rule-only baseline to full memorization" (App. B.3's formula is stripped
  from our copy of the paper; this form is assumed). It equals the fixed threshold t when b -> 0 and
  stays above b however large b is (a model that only learned the rule already memorizes a fraction
  b). ``fixed`` (thr = t = 0.1, the paper's Fig. 4) is the option. Where |support| is unknown the
  adaptive policy uses t. Every output that depends on it records :meth:`MemThreshold.attrs` and
  says which threshold it used (:meth:`MemThreshold.phrase`).
- A tau_rule later than tau_mem is discarded (paper) and reported as such. Innovation window =
  [tau_rule, tau_mem]; ``window`` is its length tau_mem - tau_rule in steps.
- A clock never reached is NaN with a status: ``never`` (not above threshold at the end), or
  ``pending`` (above threshold at the last j < k evaluations: more checkpoints may confirm it). Such a
  tau_mem is right-censored: ``tau_mem_censored_at`` is the step it is known to lie beyond (the last
  evaluated step; for ``pending``, the first evaluation of the final run above threshold).
- Across runs (:func:`fit_power_law`), per group of runs whose configs are equal in everything but N,
  the seed and bookkeeping fields (:data:`NOT_GROUPING`), plus any fields named in ``pool``: tau_mem =
  c N^alpha by (i) the plain least-squares line of ln tau_mem on ln N over the runs that reached
  tau_mem (the paper's fit; it drops the censored runs, usually the largest N, which biases alpha
  down) and (ii) right-censored maximum likelihood (a Tobit model: ln tau = ln c + alpha ln N + e,
  e ~ N(0, s^2); a censored run contributes P(ln tau > ln censored_at)). Intervals for alpha: the t
  interval of the least-squares slope (dof = n - 2) and, for the censored fit, a profile-likelihood
  interval cut at n ln(1 + t^2/(n - 2)) (:func:`ml_cutoff`; the t interval when nothing is censored),
  so both keep their level at small n. Both come with the group's runs, its censored runs and their
  censoring steps; a fit on fewer than 4 runs is flagged weak.

Loss-based clocks: when a run has ``probes/dsm_spectrum.zarr`` holding ``tau_rule_loss`` /
``tau_mem_loss`` (scalar variables or attrs, written by the DSM probe), they are read and shown
beside the sample clocks (:func:`loss_clocks`).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.data.rules import support_baseline
from twoclocks.probes.clocks_schema import CLOCKS_SCHEMA, FIT_CLOCK_KEYS, FIT_KEYS, FIT_STR_KEYS, LOSS_CLOCKS
from twoclocks.probes.clockdefs import (DEFAULT_ACC_THRESHOLD, DEFAULT_K, DEFAULT_MEM_POLICY, DEFAULT_MEM_THRESHOLD,
                                        MEM_POLICIES, PRESETS, ClockDef, ClockSet, Condition, MemThreshold, Sustain,
                                        clocks_from_curves, clockset_from_options, mem_threshold_for, sustained_onset)
from twoclocks.probes.uncertainty import (samples_cube, DEFAULT_LEVEL, DEFAULT_N_BOOT, METHOD as BOOT_METHOD, grid_bracket,
                                          run_bootstrap)
from twoclocks.environment import pooled_environment_note
from twoclocks.probes.linefit import WEAK_FIT_RUNS, censored_line_fit, ml_cutoff
from twoclocks.probes.pooling import check_pooling, measured_pooling
from twoclocks.probes.registry import DerivedProbe, register
from twoclocks.run import Run, open_run
from twoclocks.store import open_cube, write_derived
from twoclocks.training.config import TrainConfig

__all__ = ["PROBE", "ClockDef", "ClockSet", "Condition", "Sustain", "PRESETS", "alpha_spread", "FIT_CLOCK_KEYS",
           "FIT_CLOCK_METHOD", "sustained_onset", "MemThreshold", "DEFAULT_MEM_POLICY", "MEM_POLICIES", "mem_threshold_for",
           "clocks_from_curves", "loss_clocks", "run_clocks", "compute_clocks", "fit_power_law",
           "format_fit", "fit_dataset", "fits_from_dataset", "format_clocks_table", "NOT_GROUPING",
           "LOSS_CLOCKS", "FIT_KEYS", "FIT_STR_KEYS", "WEAK_FIT_RUNS", "ml_cutoff", "parse_where", "select_runs",
           "SEED_FIELDS", "WHERE_OPS", "group_runs", "POWER_LAW_NAMES"]

#: config fields that do not separate power-law groups (besides n_train): seeds and bookkeeping
NOT_GROUPING = ("n_train", "seed", "data_seed", "steps", "device", "bf16", "compile", "log_every", "resume_every",
                "saves_per_decade", "n_heldout", "n_hypercube", "n_noise")
#: config fields that tell apart the seeds of one grid point (the seed summary: mean and sd over them)
SEED_FIELDS = ("seed", "data_seed")
#: the comparison operators of a ``--where`` clause (two-character ones first, so they parse greedily)
WHERE_OPS = ("==", "!=", ">=", "<=", ">", "<")


# ----------------------------------------------------------------------------- one run
def loss_clocks(run) -> dict:
    """Loss-based clocks of a run from ``probes/dsm_spectrum.zarr`` (scalar variables or attrs
    ``tau_rule_loss`` / ``tau_mem_loss``), NaN where absent. A damaged cube is never read as "no
    loss clocks": it raises the store's one-line DamagedError (which names the probe that heals it)."""
    out = {name: np.nan for name in LOSS_CLOCKS}
    path = run.probe_path("dsm_spectrum")
    if not path.exists():
        return out
    ds = open_cube(path)
    for name in LOSS_CLOCKS:
        if name in ds.variables and ds[name].size == 1:
            out[name] = float(ds[name].values.ravel()[0])
        elif name in ds.attrs:
            try:
                out[name] = float(ds.attrs[name])
            except (TypeError, ValueError):
                pass
    return out


def _curve(ds: xr.Dataset, var: str) -> np.ndarray:
    """The curve ``var`` over step of a samples cube (``NAME[LABEL]``: the label of NAME's second dim)."""
    name, _, label = var.partition("[")
    if name not in ds:
        raise TwoclocksError(f"the clock definitions read {var}, which the samples cube lacks; recompute it with "
                             "`twoclocks-probe samples RUN --force` or change the definitions")
    da = ds[name]
    if label:
        other = [d for d in da.dims if d != "step"]
        if len(other) != 1 or label[:-1] not in [str(v) for v in da[other[0]].values]:
            raise TwoclocksError(f"the clock definitions read {var}: {name} has no label {label[:-1]!r}")
        da = da.sel({other[0]: label[:-1]})
    return np.asarray(da.transpose("step").values, float)


def run_clocks(run, k: int | None = None, acc_threshold: float | None = None,
               mem_threshold: float | None = None, mem_adaptive: bool | None = None,
               policy: MemThreshold | str | None = None, clocks=None) -> dict:
    """The clocks of one run (a directory or an opened Run) from its samples.zarr, plus its
    loss-based clocks when the DSM probe stored them. Definitions as :func:`clocks_from_curves`
    (``clocks`` and the shorthands)."""
    run = run if isinstance(run, Run) else open_run(run)
    cs = clockset_from_options(clocks, k, acc_threshold, mem_threshold, mem_adaptive, policy)
    ds = samples_cube(run)
    if ds.sizes["step"] == 0:
        raise TwoclocksError(f"{run.probe_path('samples')} holds no checkpoint steps; run "
                             f"`twoclocks-probe samples {run.path}`")
    base = support_baseline(run.rule, run.config.n_train)   # computed when read: no frozen baseline
    curves = {v: _curve(ds, v) for v in cs.variables if v not in ("sample_acc", "sample_mem")}
    out = clocks_from_curves(ds["step"].values, ds["sample_acc"].values, ds["sample_mem"].values, base,
                             clocks=cs, curves=curves)
    out.update(loss_clocks(run))
    return out


def alpha_spread(n, tau_boot, level: float = DEFAULT_LEVEL) -> dict:
    """The spread of the least-squares exponent alpha under per-run clock uncertainty: ``n`` (runs,)
    training-set sizes, ``tau_boot`` (runs, B) bootstrap replicates of each run's tau_mem (NaN: not
    reached in that replicate, dropped as the plain fit drops it). Per replicate b the slope of ln tau on
    ln N over the runs reached in b, in closed form (sums over runs, vectorized over replicates); NaN
    where fewer than 2 distinct N remain. Returns ``lo`` / ``hi`` the (1 - level)/2 and (1 + level)/2
    quantiles (numpy's default linear interpolation) of the finite slopes, ``median``, ``n_valid``
    (replicates with a slope) and ``slopes`` (B,)."""
    x = np.log(np.asarray(n, float))[:, None]
    tau = np.asarray(tau_boot, float)
    m = np.isfinite(tau) & (tau > 0)
    y = np.where(m, np.log(np.where(m, tau, 1.0)), 0.0)
    w = m.astype(float)
    nb = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * x).sum(axis=0) / nb
        my = y.sum(axis=0) / nb
        sxx = (w * (x - mx) ** 2).sum(axis=0)
        sxy = (w * (x - mx) * (y - my)).sum(axis=0)
        slopes = np.where((nb >= 2) & (sxx > 1e-12), sxy / sxx, np.nan)
    ok = slopes[np.isfinite(slopes)]
    a = (1 - level) / 2
    lo, hi, med = ((float(np.quantile(ok, a)), float(np.quantile(ok, 1 - a)), float(np.median(ok))) if ok.size
                   else (np.nan, np.nan, np.nan))
    return {"lo": lo, "hi": hi, "median": med, "n_valid": int(ok.size), "slopes": slopes}


# ----------------------------------------------------------------------------- power-law fits
#: the keys of :data:`FIT_KEYS` under their name in :func:`twoclocks.probes.linefit.censored_line_fit`
POWER_LAW_NAMES = {"alpha": "slope", "alpha_lo": "slope_lo", "alpha_hi": "slope_hi", "censored_n": "censored_x",
                   "alpha_ml": "slope_ml", "alpha_ml_lo": "slope_ml_lo", "alpha_ml_hi": "slope_ml_hi"}
#: the censored-ML interval of Datasets written before interval_method_ml existed
LEGACY_ML_INTERVAL = "profile likelihood, chi2_1 cut"


def fit_power_law(n, tau, censored_at=None, level: float = 0.95) -> dict:
    """tau = c N^alpha over one group of runs, in ONE format (keys and meanings: :data:`FIT_KEYS`).

    ``n`` (runs,) training-set sizes; ``tau`` (runs,) tau_mem, NaN for runs that never reached it;
    ``censored_at`` (runs,) for those runs the step tau_mem is known to exceed (the run's
    ``tau_mem_censored_at``, usually its last evaluated step), NaN where tau_mem was reached (None: no
    censoring information, runs without tau_mem are dropped as the plain fit always does). Returns
    both fits: the plain least squares of ln tau on ln N over the runs that reached tau_mem
    (``c``, ``alpha``, ``r2``, ``n``; NaN with fewer than 2 distinct N) with its t interval
    [``alpha_lo``, ``alpha_hi``] at ``level`` (slope standard error, ``dof`` = n - 2; NaN with n < 3),
    and the right-censored maximum likelihood fit that also uses the censored runs (``c_ml``,
    ``alpha_ml`` with its profile-likelihood interval [``alpha_ml_lo``, ``alpha_ml_hi``] cut at the
    t-calibrated :func:`ml_cutoff`, ``sigma_ml``; NaN, with ``ml_status`` saying why, when fewer than 3
    runs reached tau_mem or they span fewer than 2 distinct N), the interval methods, ``notes`` (a fit
    on fewer than 4 runs is weak), plus the group's runs and its censored runs (``n_runs``,
    ``n_censored``, ``censored_at``, ``censored_n``)."""
    n, tau = np.asarray(n, float).ravel(), np.asarray(tau, float).ravel()
    cen = np.full(len(n), np.nan) if censored_at is None else np.asarray(censored_at, float).ravel()
    if not (len(n) == len(tau) == len(cen)):
        raise TwoclocksError(f"fit_power_law: n, tau and censored_at differ in length "
                             f"({len(n)}, {len(tau)}, {len(cen)})")
    if not 0 < level < 1:
        raise TwoclocksError(f"fit_power_law: level must be in (0, 1), got {level}")
    f = censored_line_fit(n, tau, cen, level, "power", clock_name="tau_mem", axis_name="N", slope_name="alpha")
    return {key: f[POWER_LAW_NAMES.get(key, key)] for key in FIT_KEYS}


def format_fit(fit: dict, label: str = "") -> str:
    """One summary line of a :func:`fit_power_law` result: both fits, each with its interval, method,
    n and degrees of freedom, the censored runs and the notes (e.g. a weak fit), e.g.
    ``least squares c = 31.2, alpha = 0.881 [0.52, 1.24] (95% t, n = 5 of 6 runs, dof 3), R^2 = 0.97``."""
    def num(v):
        return "-" if not np.isfinite(v) else f"{v:.3g}"

    def interval(lo, hi, method, n_text):
        dof = fit.get("dof", np.nan)
        if not method or not (np.isfinite(lo) or np.isfinite(hi)):
            return f" (no interval: {n_text})"
        dof_text = f", dof {int(dof)}" if np.isfinite(dof) else ""
        return f" [{num(lo)}, {num(hi)}] ({fit['level']:.0%} {method}, {n_text}{dof_text})"
    head = "fit tau_mem = c N^alpha" + (f" [{label}]" if label else "")
    n_ls = f"n = {fit['n']} of {fit['n_runs']} runs"
    line = (f"{head}: least squares c = {num(fit['c'])}, alpha = {num(fit['alpha'])}"
            f"{interval(fit.get('alpha_lo', np.nan), fit.get('alpha_hi', np.nan), fit.get('interval_method'), n_ls)}"
            f", R^2 = {num(fit['r2'])}")
    if fit.get("ml_status") == "ok":
        n_ml = f"n = {fit['n_runs']} runs, {fit['n']} reached tau_mem"
        line += (f"; censored ML c = {num(fit['c_ml'])}, alpha = {num(fit['alpha_ml'])}"
                 f"{interval(fit['alpha_ml_lo'], fit['alpha_ml_hi'], fit.get('interval_method_ml'), n_ml)}")
    else:
        line += f"; censored ML: {fit.get('ml_status') or 'n/a'}"
    if fit["n_censored"]:
        pairs = ", ".join(f"N={n:g} > {c:g}" for n, c in zip(fit["censored_n"], fit["censored_at"]))
        line += f"; {fit['n_censored']} censored ({pairs})"
    if fit.get("notes"):
        line += f"; {fit['notes']}"
    return line


def _coord_value(v):
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True)
    return "none" if v is None else v


def fit_dataset(fits: list[dict], dim: str = "fit") -> dict:
    """The ``fit_*`` variables (dim ``dim``) of a list of :func:`fit_power_law` results, for a clocks or
    collect Dataset: every key of :data:`FIT_KEYS` as ``fit_KEY`` (``censored_at`` / ``censored_n`` as
    JSON lists)."""
    out = {}
    for key in FIT_KEYS:
        vals = [f[key] for f in fits]
        if key in ("censored_at", "censored_n"):
            arr = np.array([json.dumps(list(v)) for v in vals], dtype=str)
        elif key in FIT_STR_KEYS:
            arr = np.array(vals, dtype=str)
        elif key in ("n", "n_runs", "n_censored"):
            arr = np.array(vals, dtype=np.int64)
        else:
            arr = np.array(vals, dtype=float)
        out[f"fit_{key}"] = (dim, arr)
    return out


def compute_clocks(run_dirs, k: int | None = None, acc_threshold: float | None = None,
                   mem_threshold: float | None = None, mem_adaptive: bool | None = None,
                   pool=(), out: str | Path | None = None, policy: MemThreshold | str | None = None,
                   pools=None, where=None, clocks=None, sustain_steps: float | None = None,
                   sustain_factor: float | None = None, n_boot: int = DEFAULT_N_BOOT,
                   level: float = DEFAULT_LEVEL, boot_seed: int = 0,
                   allow_unequal: bool = False) -> xr.Dataset:
    """Clocks of several runs as a Dataset with dim ``run`` (the run directories as its coordinate,
    every config value as a coordinate), and the power-law fits of tau_mem vs N (dim ``fit``, both
    fits of :func:`fit_power_law`, the censored runs included). ``pool``: config fields to pool over
    in the fits (e.g. ('group',) as the paper's Table 4). The memorization threshold: ``policy`` or
    ``mem_threshold`` / ``mem_adaptive`` (default adaptive, t = 0.1; recorded in the attrs).
    ``where``: the runs to fit (:func:`parse_where`, e.g. ``"n_train>=64"`` or a list of clauses; all
    must hold); the other runs stay in the Dataset with ``fit_selected`` False and in no fit group.
    Writes the Dataset to ``out`` (zarr) when given. A fit group whose runs differ in evaluation density or
    bank size is refused unless ``allow_unequal`` (:func:`twoclocks.probes.pooling.check_pooling`).

    The clock definitions: ``clocks`` (a :class:`~twoclocks.probes.clockdefs.ClockSet`, a preset name of
    :data:`~twoclocks.probes.clockdefs.PRESETS`, ClockDefs or their dict; None: the default preset,
    adaptive) with the shorthands ``k``, ``acc_threshold``, ``policy`` / ``mem_threshold`` /
    ``mem_adaptive``, ``sustain_steps`` / ``sustain_factor``
    (:func:`~twoclocks.probes.clockdefs.clockset_from_options`); recorded in the attrs ``clock_defs``
    (JSON) and ``clock_preset``. Clocks besides tau_rule and tau_mem go in ``extra_tau`` (run,
    extra_clock; the coordinate ``extra_clock`` names them) with their statuses (``extra_tau_status``).

    Per-run clock uncertainty (docs/science.md#clock-uncertainty): with ``n_boot`` > 0, for every run
    whose samples cube holds the per-seed samples, the seed bootstrap of
    :func:`~twoclocks.probes.uncertainty.run_bootstrap` (run i with bootstrap seed ``boot_seed`` + i, so
    replicates are independent across runs) at ``level``: ``tau_rule_lo`` / ``_hi``, ``tau_mem_lo`` /
    ``_hi``, ``*_reached``; for every run the grid brackets ``*_bracket_lo`` / ``_hi``. Per fit group
    the spread of alpha under that uncertainty (:func:`alpha_spread` over the members' tau_mem
    replicates; a run without a bootstrap enters every replicate with its point clock):
    ``fit_clock_alpha_lo`` / ``_hi`` / ``_median`` / ``fit_clock_n_valid``.

    Besides the clocks, per run: ``mem_baseline`` (b, the memorization of a sampler of the rule's
    support), ``passes_at_tau_mem`` = tau_mem x batch / n_train (passes over each train sample at
    tau_mem; NaN where not reached), ``fit_selected`` and ``fit_residual`` (ln tau_mem minus the
    least-squares line ln c + alpha ln N of the run's first fit group, ``fit_index``; NaN where the run
    is not fitted or tau_mem not reached).

    The seed summary, over dim ``point`` (one per grid point: runs whose configs are equal except
    :data:`SEED_FIELDS`; coordinate ``point`` its label, e.g. ``"n_train=64, group=2"``) and dim
    ``clock`` (``tau_rule``, ``tau_mem``, ``window``): ``seed_mean`` and ``seed_sd`` (sample standard
    deviation, ddof 1; NaN with fewer than 2) over the point's seeds that reached the clock,
    ``seed_n`` how many did, ``point_n_seeds`` the point's runs; per run ``point_index``. E.g.
    ``ds.seed_mean.sel(clock="tau_mem")``, or ``ds.tau_mem.groupby("point_index")``."""
    if not run_dirs:
        raise TwoclocksError("give at least one run directory")
    if out is not None and Path(out).suffix != ".zarr":
        raise TwoclocksError(f"--out {out}: give a path ending in .zarr")
    cs = clockset_from_options(clocks, k, acc_threshold, mem_threshold, mem_adaptive, policy, sustain_steps,
                               sustain_factor)
    pol = cs.mem_policy()
    if not (isinstance(n_boot, (int, np.integer)) and not isinstance(n_boot, bool) and n_boot >= 0):
        raise TwoclocksError(f"--n-boot must be 0 (no bootstrap) or a positive integer, got {n_boot}")
    if not (0 < level < 1):
        raise TwoclocksError(f"--level must be in (0, 1), got {level}")
    fields = list(TrainConfig.__dataclass_fields__)
    bad = [p for p in pool if p not in fields]
    if bad:
        raise TwoclocksError(f"--pool {', '.join(bad)}: not a config field; choose from {', '.join(fields)}")
    clauses = parse_where(where, fields)
    runs = [open_run(d) for d in run_dirs]
    rows = [run_clocks(r, clocks=cs) for r in runs]
    boots = [_bootstrap_or_note(r, rows[i], cs, n_boot, boot_seed + i, level)
             if n_boot and _has_seed_samples(r) else None for i, r in enumerate(runs)]
    cfgs = [r.config.to_dict() for r in runs]
    selected = select_runs(cfgs, clauses)

    ds = _per_run_dataset(cs, runs, rows, boots, cfgs, fields, level)
    # power-law fits per group of runs equal in everything but N, seeds, bookkeeping (and the pooled fields)
    levels = [tuple(p) for p in pools] if pools is not None else [tuple(pool)]
    fits = fit_groups(cfgs, ds["tau_mem"].values, levels, ds["tau_mem_censored_at"].values, selected=selected,
                      allow_unequal=allow_unequal, names=[r.path.name for r in runs],
                      measured=measured_pooling([samples_cube(r) for r in runs]))
    ds = _with_fits(_with_seed_summary(ds, cfgs), fits, selected, cfgs, _tau_mem_replicates(rows, boots), level)

    def col(key, dtype=float):
        return np.array([row[key] for row in rows], dtype=dtype)
    skip = set(NOT_GROUPING) | {f for level in levels for f in level}
    ds.attrs.update({
        "k": int(cs["tau_mem"].sustain.k), "acc_threshold": _acc_threshold(cs),
        "mem_adaptive": int(bool(pol and pol.adaptive)),
        **((pol.attrs(float(col("mem_baseline")[0])) if len(rows) == 1 else pol.attrs(per_run=True)) if pol else {}),
        "mem_threshold_rule": _mem_formula(cs), **cs.attrs(),
        "clock_uncertainty_method": (f"{BOOT_METHOD}; level {level:g}, {n_boot} replicates, run i with seed "
                                     f"{boot_seed} + i; grid bracket (previous evaluated step, tau]"
                                     if n_boot else "none (--n-boot 0); grid bracket (previous evaluated step, tau]"),
        "clock_uncertainty_level": float(level), "clock_uncertainty_n_boot": int(n_boot),
        "fit_clock_method": FIT_CLOCK_METHOD,
        "fit_method": FIT_METHOD,
        "fit_pooled_over": json.dumps(sorted(skip)),
        "fit_where": json.dumps([" ".join(c) for c in clauses]),
        "source_steps": json.dumps({str(r.path): [int(v) for v in samples_cube(r)["step"].values] for r in runs}),
        "pooled_environment_note": pooled_environment_note(  # empty when the runs' environments agree
            [r.training_environments() for r in runs],
            [json.loads(samples_cube(r).attrs.get("environment", "null")) for r in runs]),
    })
    return write_derived(ds, out, schema=CLOCKS_SCHEMA, params={  # out None: provenance and attrs, not written
        "k": int(cs["tau_mem"].sustain.k), "acc_threshold": _acc_threshold(cs),
        "mem_threshold_policy": pol.policy if pol else "custom", "mem_threshold_t": pol.t if pol else None,
        "clock_defs": cs.to_dict(), "n_boot": int(n_boot), "level": float(level),
        "pools": [list(level) for level in levels], "where": [" ".join(c) for c in clauses]})


def _per_run_dataset(cs: ClockSet, runs, rows, boots, cfgs, fields, level: float) -> xr.Dataset:
    """The per-run variables of :func:`compute_clocks` (dim ``run``; the config fields as coordinates)."""
    def col(key, dtype=float):
        return np.array([row[key] for row in rows], dtype=dtype)
    data = {name: ("run", col(name, dtype)) for name, dtype in (
        ("tau_rule", float), ("tau_mem", float), ("tau_mem_censored_at", float), ("window", float),
        ("tau_rule_raw", float), ("tau_rule_status", str), ("tau_mem_status", str), ("window_status", str),
        ("mem_threshold", float), ("mem_baseline", float))}
    data["passes_at_tau_mem"] = ("run", col("tau_mem") * np.array([c["batch"] for c in cfgs], float)
                                 / np.array([c["n_train"] for c in cfgs], float))
    data.update({"last_step": ("run", col("last_step")), "n_evals": ("run", col("n_evals", int)),
                 "notes": ("run", col("notes", str))})
    data.update(_uncertainty_vars(cs, runs, rows, boots, level))
    for name in LOSS_CLOCKS:
        vals = col(name)
        if np.isfinite(vals).any():
            data[name] = ("run", vals)
    coords = {"run": ("run", [str(r.path) for r in runs])}
    if cs.extra:
        coords["extra_clock"] = ("extra_clock", list(cs.extra))
    for f in fields:
        coords[f] = ("run", np.array([_coord_value(c[f]) for c in cfgs]))
    return xr.Dataset(data, coords=coords)


def _with_fits(ds: xr.Dataset, fits: list[dict], selected, cfgs, tau_boot, level: float) -> xr.Dataset:
    """``ds`` with the fit groups (dim ``fit``), each run's first group, its residual from that group's
    least-squares line, and per group the spread of alpha over the clocks' bootstrap replicates."""
    n_runs = ds.sizes["run"]
    tau = ds["tau_mem"].values
    index = np.full(n_runs, -1)
    for j, f in reversed(list(enumerate(fits))):  # each run's first fit group
        index[f["members"]] = j
    n_arr = np.array([c["n_train"] for c in cfgs], float)
    resid = np.full(n_runs, np.nan)
    for i, j in enumerate(index):
        if j >= 0 and tau[i] > 0:  # NaN (not reached) compares False
            resid[i] = np.log(tau[i]) - (np.log(fits[j]["c"]) + fits[j]["alpha"] * np.log(n_arr[i]))
    ds["fit_index"] = ("run", index)
    ds["fit_selected"] = ("run", selected)
    ds["fit_residual"] = ("run", resid)
    ds = ds.assign_coords(fit=("fit", np.arange(len(fits))))
    ds["fit_label"] = ("fit", np.array([f["label"] for f in fits], dtype=str))
    ds["fit_pooled_over"] = ("fit", np.array([f["pooled_over"] for f in fits], dtype=str))
    ds["fit_member"] = (("fit", "run"), np.array([f["members"] for f in fits], bool).reshape(len(fits), n_runs))
    for name, (dims, arr) in fit_dataset(fits).items():
        ds[name] = (dims, arr)
    spreads = [alpha_spread(n_arr[f["members"]], tau_boot[f["members"]], level) for f in fits]
    for key in FIT_CLOCK_KEYS:
        ds[f"fit_clock_{key}"] = ("fit", np.array([sp[key.replace("alpha_", "")] for sp in spreads],
                                                  np.int64 if key == "n_valid" else float))
    return ds


FIT_METHOD = ("least squares of ln tau_mem on ln n_train (scipy.stats.linregress; censored runs dropped) with a t "
              "interval for alpha (slope standard error, n - 2 dof), and right-censored maximum likelihood (Tobit on "
              "ln tau_mem, scipy.optimize) with a profile-likelihood interval for alpha cut at n ln(1 + t^2/(n - 2)), "
              "t the Student-t quantile with n - 2 dof (n runs that reached tau_mem; without censoring it is the t "
              "interval); fits on fewer than 4 runs are flagged weak (fit_notes)")
FIT_CLOCK_METHOD = ("per fit group, the least-squares slope of ln tau_mem on ln N refitted on every bootstrap "
                    "replicate row (replicate b of every member run's seed bootstrap; a run without per-seed "
                    "samples or with --n-boot 0 enters with its point tau_mem), in closed form over the runs "
                    "reached in that replicate; the (1 - level)/2 and (1 + level)/2 quantiles of the slopes "
                    "(numpy linear interpolation)")


def _acc_threshold(cs: ClockSet) -> float:
    return float(next((c.threshold for c in cs["tau_rule"].conditions if c.var == "sample_acc"), np.nan))


def _mem_formula(cs: ClockSet) -> str:
    pol = cs.mem_policy()
    return pol.formula() if pol else cs["tau_mem"].text()


def _has_seed_samples(run) -> bool:
    ds = samples_cube(run)
    return "sample" in ds and "nn_hamming" in ds and ds.sizes.get("seed", 0) > 0


def _uncertainty_vars(cs: ClockSet, runs, rows, boots, level: float) -> dict:
    """The per-run interval, reached-fraction and grid-bracket variables of :func:`compute_clocks`."""
    out = {}
    for name in ("tau_rule", "tau_mem"):
        get = lambda key: np.array([b[key] if b is not None else np.nan for b in boots], float)  # noqa: E731
        out[f"{name}_lo"] = ("run", get(f"{name}_lo"))
        out[f"{name}_hi"] = ("run", get(f"{name}_hi"))
        out[f"{name}_reached"] = ("run", get(f"{name}_reached"))
        lo, hi = np.full(len(runs), np.nan), np.full(len(runs), np.nan)
        for i, (r, row) in enumerate(zip(runs, rows)):
            if np.isfinite(row[name]):
                lo[i], hi[i] = grid_bracket(samples_cube(r)["step"].values, row[name])
        out[f"{name}_bracket_lo"] = ("run", lo)
        out[f"{name}_bracket_hi"] = ("run", hi)
    if cs.extra:
        out["extra_tau"] = (("run", "extra_clock"), np.array([[row[n] for n in cs.extra] for row in rows], float))
        out["extra_tau_status"] = (("run", "extra_clock"),
                                     np.array([[row[f"{n}_status"] for n in cs.extra] for row in rows], dtype=str))
    return out


def _tau_mem_replicates(rows, boots) -> np.ndarray:
    """(runs, B) tau_mem replicates: each run's bootstrap row, or its point tau_mem in every column."""
    B = max([len(b["tau_mem_boot"]) for b in boots if b is not None], default=1)
    return np.array([b["tau_mem_boot"] if b is not None else np.full(B, row["tau_mem"]) for row, b in zip(rows, boots)],
                    float).reshape(len(rows), B)


def parse_where(where, fields) -> list[tuple[str, str, str]]:
    """The clauses (field, op, value) of a run selection: ``where`` a string of comma-joined clauses
    ``FIELD OP VALUE`` (OP one of :data:`WHERE_OPS`, e.g. ``"n_train>=64, group==2"``), a list of
    such strings, or None (no clause). ``fields``: the valid field names. A clause that does not parse
    or names another field raises a one-line :class:`TwoclocksError` naming it and the valid fields."""
    if where is None:
        return []
    items = [where] if isinstance(where, str) else list(where)
    ops = "|".join(re.escape(o) for o in WHERE_OPS)
    out = []
    for item in items:
        for clause in (c.strip() for c in str(item).split(",")):
            if not clause:
                continue
            m = re.fullmatch(rf"([A-Za-z_]\w*)\s*({ops})\s*([^=<>!\s].*?)", clause)
            if m is None:
                raise TwoclocksError(f"--where {clause!r}: write FIELD OP VALUE with OP one of "
                                     f"{', '.join(WHERE_OPS)} (e.g. n_train>=64); fields: {', '.join(fields)}")
            if m.group(1) not in fields:
                raise TwoclocksError(f"--where {clause!r}: unknown field {m.group(1)!r}; fields: {', '.join(fields)}")
            out.append((m.group(1), m.group(2), m.group(3).strip().strip("'\"")))
    return out


def _where_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(_coord_value(v))


def _number(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        return None


def select_runs(cfgs: list[dict], clauses) -> np.ndarray:
    """Boolean mask of the runs (config dicts) for which every clause (:func:`parse_where`; or a
    ``where`` string / list, parsed against the configs' fields) holds: values compared as numbers
    when both are numeric, else as strings (booleans as true / false)."""
    import operator
    if clauses is None or isinstance(clauses, str) or (len(clauses) and isinstance(clauses[0], str)):
        clauses = parse_where(clauses, list(cfgs[0]) if cfgs else [])
    fn = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le, ">": operator.gt,
          "<": operator.lt}
    mask = np.ones(len(cfgs), bool)
    for field, op, value in clauses:
        for i, c in enumerate(cfgs):
            a, b = _number(c.get(field)), _number(value)
            if a is None or b is None:
                a, b = _where_value(c.get(field)), value
            mask[i] &= bool(fn[op](a, b))
    if len(cfgs) and not mask.any():
        raise TwoclocksError(f"--where {', '.join(' '.join(c) for c in clauses)}: selects none of the "
                             f"{len(cfgs)} runs")
    return mask


def _with_seed_summary(ds: xr.Dataset, cfgs: list[dict]) -> xr.Dataset:
    """``ds`` with the seed summary of :func:`compute_clocks` (dims ``point``, ``clock``)."""
    fields = list(cfgs[0]) if cfgs else []
    keys = [json.dumps({f: _coord_value(c.get(f)) for f in fields if f not in SEED_FIELDS}, sort_keys=True)
            for c in cfgs]
    points = list(dict.fromkeys(keys))
    values = [json.loads(p) for p in points]  # dicts and lists already JSON text (_coord_value)
    varying = [f for f in fields if f not in SEED_FIELDS and len({v[f] for v in values}) > 1]
    labels = [", ".join(f"{f}={v[f]}" for f in varying) or "all runs" for v in values]
    index = np.array([points.index(k) for k in keys], np.int64)
    clocks = ("tau_rule", "tau_mem", "window")
    mean = np.full((len(points), len(clocks)), np.nan)
    sd, n = mean.copy(), np.zeros(mean.shape, np.int64)
    for p in range(len(points)):
        for j, name in enumerate(clocks):
            v = ds[name].values[index == p].astype(float)
            v = v[np.isfinite(v)]
            n[p, j] = len(v)
            if len(v):
                mean[p, j] = v.mean()
            if len(v) >= 2:
                sd[p, j] = v.std(ddof=1)
    ds = ds.assign_coords(point=("point", np.array(labels, dtype=str)),
                          clock=("clock", np.array(clocks, dtype=str)))
    ds["point_index"] = ("run", index)
    ds["point_n_seeds"] = ("point", np.bincount(index, minlength=len(points)).astype(np.int64))
    ds["seed_mean"] = (("point", "clock"), mean)
    ds["seed_sd"] = (("point", "clock"), sd)
    ds["seed_n"] = (("point", "clock"), n)
    return ds


def group_runs(cfgs: list[dict], axis: str, pools=((),), selected=None, ignore=NOT_GROUPING) -> list[dict]:
    """The fit groups of runs (config dicts) along ``axis``: per pool level (a tuple of fields), runs
    whose configs are equal in every field but ``axis``, ``ignore`` (seeds and bookkeeping) and the
    level's fields. A group needs >= 2 distinct ``axis`` values; a group equal to one of an earlier
    level is not repeated. ``selected``: bool mask of the runs to group (None: all). Returns
    [{label, pooled_over, members (bool mask)}], the label naming the fields that tell groups apart
    (e.g. ``"model=tiny, group=3 (pooled over seed)"``; "all runs" when none)."""
    selected = np.ones(len(cfgs), bool) if selected is None else np.asarray(selected, bool)
    fields = list(cfgs[0]) if cfgs else []
    enc = [{f: json.dumps(_coord_value(c.get(f)), sort_keys=True) for f in fields} for c in cfgs]
    values = np.array([json.dumps(_coord_value(c.get(axis)), sort_keys=True) for c in cfgs])
    out, seen = [], set()
    for pool in pools:
        skip = set(ignore) | {axis} | set(pool)
        keys = [tuple((f, e[f]) for f in fields if f not in skip) if sel else None for e, sel in zip(enc, selected)]
        groups = [key for key in dict.fromkeys(keys) if key is not None]
        varying = [f for f in fields if f not in skip and len({dict(k)[f] for k in groups}) > 1]
        for key in groups:
            members = np.array([k == key for k in keys])
            if len(np.unique(values[members])) < 2 or members.tobytes() in seen:
                continue
            seen.add(members.tobytes())
            label = ", ".join(f"{f}={json.loads(dict(key)[f])}" for f in varying) or "all runs"
            if pool:
                label += f" (pooled over {', '.join(pool)})"
            out.append({"label": label, "pooled_over": ",".join(pool), "members": members})
    return out


def _bootstrap_or_note(run, row: dict, cs, n_boot: int, seed: int, level: float):
    """The run's seed bootstrap, or None with a note in ``row`` when its per-seed samples cannot give one
    (e.g. they do not reproduce the stored curves): the point clocks stand, without an interval."""
    try:
        return run_bootstrap(run, cs, n_boot, seed, level, row["mem_baseline"])
    except TwoclocksError as e:
        row["notes"] = "; ".join(filter(None, [row["notes"], f"no seed-bootstrap interval: {e}"]))
        return None


def fit_groups(cfgs: list[dict], tau, pools=((),), censored_at=None, selected=None, allow_unequal: bool = False,
               names=None, measured: dict | None = None) -> list[dict]:
    """tau_mem = c N^alpha fits (:func:`fit_power_law`, both the plain and the censored one) over groups
    of runs whose configs are equal in everything but N, seeds and bookkeeping (NOT_GROUPING) and the
    fields of a pool level: one list of fits per level (e.g. () per model and G, ('group',) pooled over
    G as in the paper's Table 4). A group needs >= 2 distinct N; a pooled group equal to an earlier one is
    not repeated (:func:`group_runs`). ``selected``: bool mask of the runs to fit (:func:`select_runs`;
    None: all), the others are in no group. A group whose runs differ in evaluation density or bank size
    is refused unless ``allow_unequal`` (:func:`twoclocks.probes.pooling.check_pooling`; ``names``,
    ``measured``: the runs' names and cube measurements for it). Returns [{label, pooled_over, members
    (bool mask), **fit_power_law(...)}]."""
    tau = np.asarray(tau, float)
    cen = None if censored_at is None else np.asarray(censored_at, float)
    n = np.array([c["n_train"] for c in cfgs], float)
    groups = group_runs(cfgs, "n_train", pools, selected)
    for g in groups:
        check_pooling(cfgs, g["members"], g["label"], names, measured, allow_unequal)
    return [{**g, **fit_power_law(n[g["members"]], tau[g["members"]], None if cen is None else cen[g["members"]])}
            for g in groups]


def _fmt(v):
    return "-" if not np.isfinite(v) else f"{v:g}"


def fits_from_dataset(ds: xr.Dataset) -> list[tuple[str, dict]]:
    """(label, fit dict) per ``fit`` of a clocks / collect Dataset (inverse of :func:`fit_dataset`; keys
    absent from an older Dataset are NaN, empty strings or tuples; an older Dataset's censored-ML
    interval is named for the chi-square cut it was made with)."""
    out = []
    for j in range(ds.sizes.get("fit", 0) if "fit_c" in ds else 0):
        f = ds.isel(fit=j)
        fit = {}
        for key in FIT_KEYS:
            name = f"fit_{key}"
            if name not in f:
                fit[key] = (() if key.startswith("censored") else "" if key in FIT_STR_KEYS
                            else 0 if key in ("n_runs", "n_censored") else np.nan)
            elif key.startswith("censored"):
                fit[key] = tuple(json.loads(str(f[name].item())))
            elif key in FIT_STR_KEYS:
                fit[key] = str(f[name].item())
            elif key in ("n", "n_runs", "n_censored"):
                fit[key] = int(f[name])
            else:
                fit[key] = float(f[name])
        if not fit["n_runs"]:
            fit["n_runs"] = fit["n"]
        if "fit_interval_method_ml" not in f and np.isfinite(fit["alpha_ml_lo"]):
            fit["interval_method_ml"] = LEGACY_ML_INTERVAL
        out.append((str(f["fit_label"].item()) if "fit_label" in f else "", fit))
    return out


def format_clocks_table(ds: xr.Dataset) -> str:
    """The clocks Dataset as a plain-text table (one line per run), which threshold was used, then
    both fits per group with its censored runs (:func:`format_fit`), then, where a grid point has
    several seeds, one line per point with each clock's mean +- sd over its seeds.

    Columns besides the config values that vary and the clocks: ``N/|support|`` the memorization
    baseline b (``mem_baseline``), ``mem_thr`` the memorization threshold, ``passes@tau_mem``
    tau_mem x batch / N, ``censored`` the clocks not reached and the step each is known to exceed
    (``-``: none), ``resid`` the residual of ln tau_mem from its fit group's least-squares line."""
    fields = [f for f in TrainConfig.__dataclass_fields__ if f in ds.coords
              and f not in ("device", "data_seed") and len(np.unique(ds[f].values)) > 1]
    loss = [n for n in LOSS_CLOCKS if n in ds]
    unc = "tau_mem_bracket_hi" in ds
    extra = [str(e) for e in ds["extra_clock"].values] if "extra_clock" in ds else []
    head = ["run", *fields, "tau_rule", "tau_mem", "window", *(["rule_ci", "rule_grid", "mem_ci", "mem_grid"] if unc
                                                              else []), *extra, *loss, "N/|support|", "mem_thr",
            "passes@tau_mem", "censored", "resid", "status"]
    n_run = ds.sizes["run"]
    nan = np.full(n_run, np.nan)
    passes = ds["passes_at_tau_mem"].values if "passes_at_tau_mem" in ds else nan
    resid = ds["fit_residual"].values if "fit_residual" in ds else nan
    selected = ds["fit_selected"].values.astype(bool) if "fit_selected" in ds else np.ones(n_run, bool)
    rows = []
    for i in range(n_run):
        d = ds.isel(run=i)
        status, censored = [], []
        if d.tau_rule_status.item() != "reached":
            status.append(f"tau_rule {d.tau_rule_status.item()}")
        if d.tau_rule_status.item() == "never" and np.isfinite(d.last_step):
            censored.append(f"tau_rule>{float(d.last_step):g}")
        if d.tau_mem_status.item() != "reached":
            cen = float(d["tau_mem_censored_at"]) if "tau_mem_censored_at" in d else np.nan
            status.append(f"tau_mem {d.tau_mem_status.item()}"
                          + (f" (censored at {cen:g})" if np.isfinite(cen) else ""))
            if np.isfinite(cen):
                censored.append(f"tau_mem>{cen:g}")
        if d.window_status.item() != "open":
            status.append(f"window {d.window_status.item()}")
        if d.notes.item():
            status.append(d.notes.item())
        if np.isfinite(d.tau_rule_raw) and not np.isfinite(d.tau_rule):
            status.append(f"(raw tau_rule {float(d.tau_rule_raw):g})")
        if not selected[i]:
            status.append("not fitted (--where)")
        rows.append([Path(str(d.run.item())).name, *[str(d[f].item()) for f in fields],
                     _fmt(float(d.tau_rule)), _fmt(float(d.tau_mem)), _fmt(float(d.window)),
                     *([_interval_text(d, "tau_rule"), _bracket_text(d, "tau_rule"), _interval_text(d, "tau_mem"),
                        _bracket_text(d, "tau_mem")] if unc else []),
                     *[_fmt(float(d["extra_tau"].sel(extra_clock=e))) for e in extra],
                     *[_fmt(float(d[n])) for n in loss], _num(float(d.mem_baseline)),
                     f"{float(d.mem_threshold):.3g}", _num(float(passes[i])), ",".join(censored) or "-",
                     "excl" if not selected[i] else _num(round(float(resid[i]), 3) + 0.0, "+.3f"),
                     "; ".join(status) or "ok"])
    widths = [max(len(r[j]) for r in [head, *rows]) for j in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in [head, *rows]]
    policy = ds.attrs.get("mem_threshold_policy")
    if policy:
        thr = np.unique(np.round(ds["mem_threshold"].values.astype(float), 6))
        pol = MemThreshold(policy, float(ds.attrs.get("mem_threshold_t", DEFAULT_MEM_THRESHOLD)))
        lines.append(pol.phrase(value=thr[0]) if len(thr) == 1 else
                     f"tau_mem at {policy} threshold {thr.min():.3g}..{thr.max():.3g} (per run: mem_thr)")
    where = json.loads(ds.attrs.get("fit_where", "[]"))
    if where:
        out = [Path(str(r)).name for r in ds["run"].values[~selected]]
        lines.append(f"fits over the runs where {', '.join(where)}: {int(selected.sum())} of {n_run} runs"
                     + (f" (not fitted: {', '.join(out)})" if out else ""))
    if unc:
        n_boot = int(ds.attrs.get("clock_uncertainty_n_boot", 0))
        lines.append(f"rule_ci, mem_ci: seed-bootstrap {float(ds.attrs.get('clock_uncertainty_level', 0.9)):.0%} "
                     f"interval ({n_boot} replicates; - : no per-seed samples or --n-boot 0); rule_grid, mem_grid: "
                     "grid bracket (previous evaluated step, clock]" if n_boot else
                     "rule_grid, mem_grid: grid bracket (previous evaluated step, clock]; no bootstrap (--n-boot 0)")
    if ds.attrs.get("clock_preset"):
        lines.append(f"clocks: {ds.attrs['clock_preset']} ({ds.attrs.get('clock_defs_text', '')})")
    for j, (label, fit) in enumerate(fits_from_dataset(ds)):
        lines.append(format_fit(fit, label))
        if "fit_clock_alpha_lo" in ds and np.isfinite(float(ds["fit_clock_alpha_lo"][j])):
            f = ds.isel(fit=j)
            lines.append(f"  alpha under per-run clock uncertainty: [{float(f.fit_clock_alpha_lo):.3g}, "
                         f"{float(f.fit_clock_alpha_hi):.3g}] (median {float(f.fit_clock_alpha_median):.3g}, "
                         f"{int(f.fit_clock_n_valid)} replicates)")
    lines += _format_seed_summary(ds)
    if ds.attrs.get("pooled_environment_note"):
        lines.append(ds.attrs["pooled_environment_note"])
    return "\n".join(lines)


def _interval_text(d, name: str) -> str:
    """``[lo,hi]`` of a run's bootstrap interval (no spaces: one table cell), ``-`` without one."""
    lo, hi = float(d[f"{name}_lo"]), float(d[f"{name}_hi"])
    return "-" if np.isnan(lo) or np.isnan(hi) else f"[{lo:g},{hi:g}]"


def _bracket_text(d, name: str) -> str:
    """``(lo,hi]`` of a run's grid bracket, ``-`` where the clock is not reached."""
    lo, hi = float(d[f"{name}_bracket_lo"]), float(d[f"{name}_bracket_hi"])
    return "-" if np.isnan(hi) else f"({lo:g},{hi:g}]"


def _num(v: float, spec: str = ".3g") -> str:
    return "-" if not np.isfinite(v) else format(v, spec)


def _format_seed_summary(ds: xr.Dataset) -> list[str]:
    """Lines of the seed summary (:func:`compute_clocks`) when some grid point has several seeds."""
    if "seed_mean" not in ds or not (ds["point_n_seeds"].values > 1).any():
        return []
    lines = ["over seeds per grid point (mean ± sd over the seeds that reached the clock, of the point's seeds):"]
    clocks = [str(c) for c in ds["clock"].values]
    for p in range(ds.sizes["point"]):
        d = ds.isel(point=p)
        total = int(d.point_n_seeds)
        parts = []
        for c in clocks:
            m, sd, n = (float(d.seed_mean.sel(clock=c)), float(d.seed_sd.sel(clock=c)),
                        int(d.seed_n.sel(clock=c)))
            parts.append(f"{c} {_num(m, '.4g')} ± {_num(sd, '.3g')} ({n} of {total})")
        lines.append(f"  {d.point.item()}: " + ", ".join(parts))
    return lines


#: the clocks cube as a cross-run derived probe (its schema: twoclocks.probes.clocks_schema; compute_clocks
#: writes it through twoclocks.store.write_derived with the provenance of every cube)
PROBE = register(DerivedProbe(
    name="clocks", cube="clocks", options=None, schema=CLOCKS_SCHEMA, derive=compute_clocks, cross_run=True,
    builtin=True, summary=format_clocks_table,
    help="The two clocks and the innovation window per run, with the tau_mem = c N^alpha fits (`clocks --out`)."))
