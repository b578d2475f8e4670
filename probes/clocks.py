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

import datetime as _dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

import twoclocks
from twoclocks import TwoclocksError
from twoclocks.data.rules import support_baseline
from twoclocks.environment import pooled_environment_note
from twoclocks.probes.pooling import check_pooling, measured_pooling
from twoclocks.store import open_cube

__all__ = ["sustained_onset", "MemThreshold", "DEFAULT_MEM_POLICY", "MEM_POLICIES", "mem_threshold_for",
           "clocks_from_curves", "loss_clocks", "run_clocks", "compute_clocks", "fit_power_law",
           "format_fit", "fit_dataset", "fits_from_dataset", "format_clocks_table", "NOT_GROUPING",
           "LOSS_CLOCKS", "FIT_KEYS", "FIT_STR_KEYS", "WEAK_FIT_RUNS", "ml_cutoff", "parse_where", "select_runs",
           "SEED_FIELDS", "WHERE_OPS"]

DEFAULT_K = 3
DEFAULT_ACC_THRESHOLD = 0.9
DEFAULT_MEM_THRESHOLD = 0.1
MEM_POLICIES = ("adaptive", "fixed")
LOSS_CLOCKS = ("tau_rule_loss", "tau_mem_loss")
#: config fields that do not separate power-law groups (besides n_train): seeds and bookkeeping
NOT_GROUPING = ("n_train", "seed", "data_seed", "steps", "device", "bf16", "compile", "log_every", "resume_every",
                "saves_per_decade", "n_heldout", "n_hypercube", "n_noise")
#: config fields that tell apart the seeds of one grid point (the seed summary: mean and sd over them)
SEED_FIELDS = ("seed", "data_seed")
#: the comparison operators of a ``--where`` clause (two-character ones first, so they parse greedily)
WHERE_OPS = ("==", "!=", ">=", "<=", ">", "<")


# ----------------------------------------------------------------------------- sustained onset
def sustained_onset(steps, values, threshold: float | None = None, k: int = DEFAULT_K, strict: bool = False):
    """(step, status) of the first evaluation i from which the criterion holds at i..i+k-1: values >=
    threshold (> with ``strict``), or, with ``threshold`` None, ``values`` are the criterion's booleans.
    NaN values count as not holding. ``steps`` in evaluation order (ascending). status: 'reached',
    'never', or 'pending: ...' when only the last j < k evaluations hold (not yet sustained). The one
    sustained-onset rule of the package (sample clocks here, loss clocks in the DSM probe)."""
    steps = np.asarray(steps)
    if k < 1:
        raise TwoclocksError(f"--k must be at least 1, got {k}")
    if threshold is None:
        above = np.asarray(values).astype(bool)
    else:
        v = np.asarray(values, dtype=float)
        above = (v > threshold) if strict else (v >= threshold)
        above &= ~np.isnan(v)
    if len(above) >= k:
        run = np.convolve(above.astype(int), np.ones(k, int), mode="valid")  # window sums
        hit = np.flatnonzero(run == k)
        if hit.size:
            return float(steps[hit[0]]), "reached"
    tail = _tail(above)
    if tail:
        return np.nan, f"pending: above threshold at the last {tail} of {k} evaluations needed"
    return np.nan, "never"


def _tail(above: np.ndarray) -> int:
    """Length of the final run of True."""
    return len(above) - (np.flatnonzero(~above)[-1] + 1 if (~above).any() else 0)


# ----------------------------------------------------------------------------- threshold policy
@dataclass(frozen=True)
class MemThreshold:
    """The memorization-threshold policy (module docstring): ``policy`` 'adaptive' (default; the
    paper's Table 4) thr = b + t (1 - b) above the training-distribution baseline b = N/|support|, or
    'fixed' thr = t;
    ``t`` = 0.1."""
    policy: str = "adaptive"
    t: float = DEFAULT_MEM_THRESHOLD

    def __post_init__(self):
        if self.policy not in MEM_POLICIES:
            raise TwoclocksError(f"unknown memorization threshold policy {self.policy!r}; choose adaptive or fixed")
        if not (isinstance(self.t, (int, float)) and 0 <= self.t < 1):
            raise TwoclocksError(f"--mem-threshold must be in [0, 1), got {self.t}")

    @classmethod
    def from_options(cls, mem_threshold: float | None = None, mem_adaptive: bool | None = None,
                     policy: "MemThreshold | str | None" = None) -> "MemThreshold":
        """The policy from command options: ``policy`` (a MemThreshold or its name) wins; else
        ``mem_adaptive`` True / False picks adaptive / fixed, None the default (adaptive); ``t`` from
        ``mem_threshold`` (None: 0.1)."""
        if isinstance(policy, MemThreshold):
            return policy if mem_threshold is None else cls(policy.policy, float(mem_threshold))
        if policy is None:
            policy = DEFAULT_MEM_POLICY.policy if mem_adaptive is None else ("adaptive" if mem_adaptive else "fixed")
        return cls(policy, DEFAULT_MEM_THRESHOLD if mem_threshold is None else mem_threshold)

    @property
    def adaptive(self) -> bool:
        return self.policy == "adaptive"

    def value(self, baseline: float = np.nan) -> float:
        """The threshold for a run whose baseline sample memorization (N/|support|) is ``baseline``
        (NaN: unknown, then t)."""
        b = float(baseline) if baseline is not None else np.nan
        if self.adaptive and np.isfinite(b):
            return float(b + self.t * (1.0 - b))
        return float(self.t)

    def formula(self) -> str:
        return (f"adaptive: b + {self.t:g} (1 - b), b = N/|support| (sample memorization of a perfect model "
                f"of the training distribution); {self.t:g} where |support| is unknown" if self.adaptive
                else f"fixed: {self.t:g}")

    def attrs(self, baseline: float = np.nan, per_run: bool = False) -> dict:
        """Attrs for every cube that depends on the threshold, e.g. {"mem_threshold_policy": "adaptive",
        "mem_threshold_t": 0.1, "mem_threshold": 0.156, "mem_threshold_formula": ...}: ``mem_threshold``
        is the value for the run's ``baseline`` (NaN: unknown, then t); ``per_run``: a cube over several
        runs with their own baselines, ``mem_threshold`` "per run" for the adaptive policy (the per-run
        values go in a variable)."""
        value = ("per run" if self.adaptive else float(self.t)) if per_run else self.value(baseline)
        return {"mem_threshold_policy": self.policy, "mem_threshold_t": float(self.t),
                "mem_threshold": value, "mem_threshold_formula": self.formula()}

    def phrase(self, baseline: float = np.nan, value: float | None = None) -> str:
        """A short phrase for summary lines, e.g. 'tau_mem at adaptive threshold 0.156' (``value``: the
        threshold already computed)."""
        return f"tau_mem at {self.policy} threshold {self.value(baseline) if value is None else float(value):.3g}"


DEFAULT_MEM_POLICY = MemThreshold()


def mem_threshold_for(baseline: float, mem_threshold: float = DEFAULT_MEM_THRESHOLD,
                      adaptive: bool | None = None) -> float:
    """The memorization threshold (:class:`MemThreshold`): adaptive b + t (1 - b) above the
    training-distribution baseline b = N/|support| (the default, ``adaptive`` None or True) or fixed t (``adaptive`` False).
    A NaN baseline gives t."""
    return MemThreshold.from_options(mem_threshold, adaptive).value(baseline)


# ----------------------------------------------------------------------------- one run
def clocks_from_curves(steps, sample_acc, sample_mem, baseline: float = np.nan, k: int = DEFAULT_K,
                       acc_threshold: float = DEFAULT_ACC_THRESHOLD, mem_threshold: float | None = None,
                       mem_adaptive: bool | None = None, policy: MemThreshold | str | None = None) -> dict:
    """Both clocks and the innovation window from one run's curves (module docstring). The
    memorization threshold: ``policy`` or ``mem_threshold`` / ``mem_adaptive``
    (:meth:`MemThreshold.from_options`; default adaptive, t = 0.1)."""
    pol = MemThreshold.from_options(mem_threshold, mem_adaptive, policy)
    steps = np.asarray(steps)
    order = np.argsort(steps)
    steps, acc, mem = steps[order], np.asarray(sample_acc, float)[order], np.asarray(sample_mem, float)[order]
    thr = pol.value(baseline)
    tau_rule, rule_status = sustained_onset(steps, acc, acc_threshold, k)
    tau_mem, mem_status = sustained_onset(steps, mem, thr, k, strict=True)
    tau_rule_raw = tau_rule
    if np.isfinite(tau_rule) and np.isfinite(tau_mem) and tau_rule > tau_mem:
        tau_rule, rule_status = np.nan, "discarded: after tau_mem"
    last = float(steps[-1]) if len(steps) else np.nan
    censored_at = np.nan
    if not np.isfinite(tau_mem) and len(steps):
        tail = _tail((mem > thr) & ~np.isnan(mem))
        censored_at = float(steps[-tail]) if tail else last
    if np.isfinite(tau_rule) and np.isfinite(tau_mem):
        window, wstatus = tau_mem - tau_rule, "open"
    elif rule_status.startswith("discarded"):
        window, wstatus = np.nan, "none: the rule is learned only after memorization starts"
    elif np.isfinite(tau_rule):
        window, wstatus = np.nan, f"open-ended: tau_mem not reached by step {last:g} (window > {last - tau_rule:g})"
    else:
        window, wstatus = np.nan, "undefined: tau_rule not reached"
    notes = []
    if np.isfinite(baseline) and baseline >= thr:
        notes.append(f"baseline memorization N/|support| {baseline:.3g} >= threshold {thr:.3g}: tau_mem may time "
                     "rule learning (use the adaptive threshold, --mem-adaptive)")
    elif np.isfinite(baseline) and not pol.adaptive and baseline >= thr / 2:
        notes.append(f"baseline memorization N/|support| {baseline:.3g} is close to the threshold {thr:.3g}")
    return {"tau_rule": tau_rule, "tau_rule_status": rule_status, "tau_rule_raw": tau_rule_raw,
            "tau_mem": tau_mem, "tau_mem_status": mem_status, "tau_mem_censored_at": censored_at,
            "window": window, "window_status": wstatus,
            "mem_threshold": thr, "mem_threshold_policy": pol.policy, "mem_threshold_t": float(pol.t),
            "mem_phrase": pol.phrase(baseline), "mem_baseline": float(baseline), "last_step": last,
            "n_evals": int(len(steps)), "notes": "; ".join(notes)}


def loss_clocks(run) -> dict:
    """Loss-based clocks of a run from ``probes/dsm_spectrum.zarr`` (scalar variables or attrs
    ``tau_rule_loss`` / ``tau_mem_loss``), NaN where absent."""
    out = {name: np.nan for name in LOSS_CLOCKS}
    path = run.probe_path("dsm_spectrum")
    if not path.exists():
        return out
    try:
        ds = open_cube(path)
    except Exception:  # a partly written or foreign store: no loss clocks rather than a failure
        return out
    for name in LOSS_CLOCKS:
        if name in ds.variables and ds[name].size == 1:
            out[name] = float(ds[name].values.ravel()[0])
        elif name in ds.attrs:
            try:
                out[name] = float(ds.attrs[name])
            except (TypeError, ValueError):
                pass
    return out


def _samples_cube(run):
    path = run.probe_path("samples")
    if not path.exists():
        raise TwoclocksError(f"run {run.path} has no probes/samples.zarr; compute it first with "
                             f"`twoclocks-probe samples {run.path}`")
    ds = open_cube(path)
    missing = [v for v in ("sample_acc", "sample_mem") if v not in ds]
    if missing:
        raise TwoclocksError(f"{path} lacks {', '.join(missing)}; recompute it with "
                             f"`twoclocks-probe samples {run.path} --force`")
    return ds.sel(step=ds["step"] >= 0)


def run_clocks(run, k: int = DEFAULT_K, acc_threshold: float = DEFAULT_ACC_THRESHOLD,
               mem_threshold: float | None = None, mem_adaptive: bool | None = None,
               policy: MemThreshold | str | None = None) -> dict:
    """The clocks of one run (a directory or an opened Run) from its samples.zarr, plus its
    loss-based clocks when the DSM probe stored them. Threshold policy as :func:`clocks_from_curves`."""
    from twoclocks.run import Run, open_run
    run = run if isinstance(run, Run) else open_run(run)
    ds = _samples_cube(run)
    if ds.sizes["step"] == 0:
        raise TwoclocksError(f"{run.probe_path('samples')} holds no checkpoint steps; run "
                             f"`twoclocks-probe samples {run.path}`")
    base = support_baseline(run.rule, run.config.n_train)   # computed when read: no frozen baseline
    out = clocks_from_curves(ds["step"].values, ds["sample_acc"].values, ds["sample_mem"].values, base, k,
                             acc_threshold, mem_threshold, mem_adaptive, policy)
    out.update(loss_clocks(run))
    return out


# ----------------------------------------------------------------------------- power-law fits
#: the keys of :func:`fit_power_law`'s result, with their meaning (one output format for every caller)
FIT_KEYS = {
    "c": "prefactor c of tau_mem = c N^alpha, least squares of ln tau on ln N over the runs that reached tau_mem",
    "alpha": "exponent alpha, least squares over the runs that reached tau_mem (censored runs dropped)",
    "alpha_lo": "lower end of the t confidence interval of alpha (slope standard error, n - 2 dof; NaN if n < 3)",
    "alpha_hi": "upper end of the t confidence interval of alpha (slope standard error, n - 2 dof; NaN if n < 3)",
    "r2": "R^2 of that least-squares line",
    "n": "number of runs with a finite tau_mem (the points of the least-squares line)",
    "dof": "degrees of freedom of both intervals: n - 2 (n runs that reached tau_mem; NaN if n < 3)",
    "interval_method": "method of [alpha_lo, alpha_hi] ('t': Student t with dof; empty: no interval)",
    "n_runs": "number of runs in the group",
    "n_censored": "runs that never reached tau_mem: right-censored at their censoring step",
    "censored_at": "censoring steps of the censored runs (tau_mem > this), ascending",
    "censored_n": "N of the censored runs, in the order of censored_at",
    "c_ml": "prefactor c, right-censored maximum likelihood (Tobit on ln tau_mem)",
    "alpha_ml": "exponent alpha, right-censored maximum likelihood (Tobit on ln tau_mem)",
    "alpha_ml_lo": "lower end of the confidence interval of alpha_ml (method: interval_method_ml)",
    "alpha_ml_hi": "upper end of the confidence interval of alpha_ml (method: interval_method_ml)",
    "sigma_ml": "residual standard deviation of ln tau_mem in the Tobit model",
    "level": "confidence level of [alpha_lo, alpha_hi] and [alpha_ml_lo, alpha_ml_hi]",
    "interval_method_ml": "method of [alpha_ml_lo, alpha_ml_hi] (profile likelihood cut at the t-calibrated "
                          "n ln(1 + t^2/dof); empty: no interval)",
    "ml_status": "'ok', or why the censored fit is NaN",
    "notes": "warnings on the fit (e.g. a weak fit on fewer than 4 runs); empty: none",
}
#: the string-valued keys of :data:`FIT_KEYS` (the rest are numbers; censored_* are tuples)
FIT_STR_KEYS = ("interval_method", "interval_method_ml", "ml_status", "notes")
#: a fit on fewer runs than this (runs that reached tau_mem) is flagged as weak in ``notes``
WEAK_FIT_RUNS = 4
T_INTERVAL = "t"
ML_INTERVAL = "profile likelihood, t-calibrated"
#: the censored-ML interval of Datasets written before interval_method_ml existed
LEGACY_ML_INTERVAL = "profile likelihood, chi2_1 cut"


def _tobit_negll(theta, x_obs, y_obs, x_cen, c_cen):
    """(-log likelihood, its gradient in theta) of ln tau = a + b ln N + e, e ~ N(0, s^2), theta = (a, b,
    ln s); observed runs contribute the density of y, censored ones P(y > c) = sf((c - a - b x) / s)."""
    from scipy.special import erfcx, log_ndtr
    a, b, ls = theta
    s = np.exp(ls)
    z = (y_obs - a - b * x_obs) / s
    f = 0.5 * float(z @ z) + len(y_obs) * (ls + 0.5 * np.log(2 * np.pi))
    grad = np.array([-z.sum() / s, -(z @ x_obs) / s, len(y_obs) - float(z @ z)])
    if len(c_cen):
        w = (c_cen - a - b * x_cen) / s
        logsf = log_ndtr(-w)                               # log P(Z > w)
        with np.errstate(over="ignore"):                   # erfcx(-large) = inf: the ratio is 0 there
            mills = np.sqrt(2 / np.pi) / erfcx(w / np.sqrt(2))  # pdf(w) / sf(w) = d(-log sf)/dw
        f -= float(logsf.sum())
        grad -= np.array([mills.sum() / s, (mills @ x_cen) / s, float(mills @ w)])
    return f, grad


def ml_cutoff(n_obs: int, level: float) -> tuple[float, float]:
    """(cutoff, dof) of the censored-ML profile-likelihood interval on ``n_obs`` runs that reached
    tau_mem: the likelihood-ratio statistic W(b) = 2 (max ll - max_{a, s} ll(a, b, s)) is cut at
    n ln(1 + t^2 / (n - 2)), t the Student-t quantile at ``level`` with dof = n - 2, n = ``n_obs``.
    With no censored runs W(b) = n ln(1 + T(b)^2 / (n - 2)), T(b) the usual t statistic of the slope, so
    the interval is exactly the t interval (docs/science.md#scaling)."""
    from scipy.stats import t as student_t
    dof = n_obs - 2
    q = float(student_t.ppf(0.5 + level / 2, dof))
    return float(n_obs * np.log1p(q * q / dof)), float(dof)


def _tobit(x_obs, y_obs, x_cen, c_cen, level: float):
    """(a, b, s, b_lo, b_hi, status, dof): right-censored ML of the line and the profile-likelihood
    interval of b, {b : W(b) <= cutoff} with the t-calibrated cutoff of :func:`ml_cutoff`; an end is
    +-inf when the likelihood never drops that far."""
    from scipy.optimize import brentq, minimize
    bounds_ls = (np.log(1e-8), np.log(1e3))
    b0, a0 = np.polyfit(x_obs, y_obs, 1)
    s0 = max(float(np.std(y_obs - a0 - b0 * x_obs)), 1e-3)
    args = (x_obs, y_obs, x_cen, c_cen)
    opts = {"ftol": 1e-12, "gtol": 1e-8, "maxiter": 500}
    best = None
    for start in ([a0, b0, np.log(s0)], [a0, b0, np.log(max(s0, 1.0))]):
        r = minimize(_tobit_negll, start, args=args, jac=True, method="L-BFGS-B",
                     bounds=[(None, None), (None, None), bounds_ls], options=opts)
        if best is None or r.fun < best.fun:
            best = r
    a, b, ls = best.x
    nll_min = float(best.fun)
    q, dof = ml_cutoff(len(y_obs), level)
    xm = float(np.mean(np.r_[x_obs, x_cen]))

    def excess(bb):  # W(bb) - cutoff; (a, ln s) profiled out, started from the ML line pivoted about xm
        def prof(t):
            f, g = _tobit_negll([t[0], bb, t[1]], *args)
            return f, g[[0, 2]]
        r = minimize(prof, [a + (b - bb) * xm, ls], jac=True, method="L-BFGS-B",
                     bounds=[(None, None), bounds_ls], options=opts)
        return 2.0 * (float(r.fun) - nll_min) - q

    # a first step of about the half-width of the uncensored t interval (the exact end when none is censored)
    resid = y_obs - a - b * x_obs
    sxx = float(np.sum((x_obs - x_obs.mean()) ** 2))
    se = np.sqrt(max(float(resid @ resid), 1e-12) / max(len(y_obs) - 2, 1) / sxx) if sxx > 0 else 1.0
    half = max(se * np.sqrt(np.expm1(q / len(y_obs)) * dof), 1e-6)
    ends = []
    for sign in (-1.0, 1.0):
        inside, step, end = b, 1.1 * half, sign * np.inf
        for _ in range(40):
            trial = b + sign * step
            if excess(trial) > 0:
                end = brentq(excess, min(inside, trial), max(inside, trial), xtol=1e-8)
                break
            inside, step = trial, step * 2
        ends.append(float(end))
    return float(a), float(b), float(np.exp(ls)), ends[0], ends[1], "ok", dof


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
    from scipy.stats import linregress
    from scipy.stats import t as student_t
    n, tau = np.asarray(n, float).ravel(), np.asarray(tau, float).ravel()
    cen = np.full(len(n), np.nan) if censored_at is None else np.asarray(censored_at, float).ravel()
    if not (len(n) == len(tau) == len(cen)):
        raise TwoclocksError(f"fit_power_law: n, tau and censored_at differ in length "
                             f"({len(n)}, {len(tau)}, {len(cen)})")
    if not 0 < level < 1:
        raise TwoclocksError(f"fit_power_law: level must be in (0, 1), got {level}")
    good_n = np.isfinite(n) & (n > 0)
    obs = good_n & np.isfinite(tau) & (tau > 0)
    censored = good_n & ~obs & np.isfinite(cen) & (cen > 0)
    order = np.argsort(cen[censored], kind="stable")
    out = {"c": np.nan, "alpha": np.nan, "alpha_lo": np.nan, "alpha_hi": np.nan, "r2": np.nan,
           "n": int(obs.sum()), "dof": np.nan, "interval_method": "", "n_runs": int(good_n.sum()),
           "n_censored": int(censored.sum()), "censored_at": tuple(float(v) for v in cen[censored][order]),
           "censored_n": tuple(float(v) for v in n[censored][order]),
           "c_ml": np.nan, "alpha_ml": np.nan, "alpha_ml_lo": np.nan, "alpha_ml_hi": np.nan, "sigma_ml": np.nan,
           "level": float(level), "interval_method_ml": "", "ml_status": "", "notes": ""}
    x_obs, y_obs = np.log(n[obs]), np.log(tau[obs])
    distinct = len(np.unique(x_obs))
    if distinct >= 2:
        fit = linregress(x_obs, y_obs)
        out.update(c=float(np.exp(fit.intercept)), alpha=float(fit.slope), r2=float(fit.rvalue ** 2))
        if len(x_obs) >= 3:
            dof = len(x_obs) - 2
            half = float(student_t.ppf(0.5 + level / 2, dof)) * float(fit.stderr)
            out.update(alpha_lo=out["alpha"] - half, alpha_hi=out["alpha"] + half, dof=float(dof),
                       interval_method=T_INTERVAL)
        if len(x_obs) < WEAK_FIT_RUNS:
            out["notes"] = (f"weak fit: only {len(x_obs)} runs reached tau_mem (fewer than {WEAK_FIT_RUNS}); "
                            f"alpha is poorly determined")
    if obs.sum() < 3 or distinct < 2:
        out["ml_status"] = (f"needs >= 3 runs that reached tau_mem at >= 2 distinct N (has {int(obs.sum())} at "
                            f"{distinct})")
        return out
    a, b, sd, lo, hi, status, dof = _tobit(x_obs, y_obs, np.log(n[censored]), np.log(cen[censored]), level)
    out.update(c_ml=float(np.exp(a)), alpha_ml=b, alpha_ml_lo=lo, alpha_ml_hi=hi, sigma_ml=sd, ml_status=status,
               interval_method_ml=ML_INTERVAL)
    return out


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
    for key, long in FIT_KEYS.items():
        vals = [f[key] for f in fits]
        if key in ("censored_at", "censored_n"):
            arr = np.array([json.dumps(list(v)) for v in vals], dtype=str)
            units = None
        elif key in FIT_STR_KEYS:
            arr, units = np.array(vals, dtype=str), None
        elif key in ("n", "n_runs", "n_censored"):
            arr, units = np.array(vals, dtype=np.int64), "1"
        else:
            arr = np.array(vals, dtype=float)
            units = "steps" if key.startswith("c") else "1"
        attrs = {"long_name": long, **({"units": units} if units else {})}
        out[f"fit_{key}"] = (dim, arr, attrs)
    return out


def compute_clocks(run_dirs, k: int = DEFAULT_K, acc_threshold: float = DEFAULT_ACC_THRESHOLD,
                   mem_threshold: float | None = None, mem_adaptive: bool | None = None,
                   pool=(), out: str | Path | None = None, policy: MemThreshold | str | None = None,
                   pools=None, where=None, allow_unequal: bool = False) -> xr.Dataset:
    """Clocks of several runs as a Dataset with dim ``run`` (the run directories as its coordinate,
    every config value as a coordinate), and the power-law fits of tau_mem vs N (dim ``fit``, both
    fits of :func:`fit_power_law`, the censored runs included). ``pool``: config fields to pool over
    in the fits (e.g. ('group',) as the paper's Table 4). The memorization threshold: ``policy`` or
    ``mem_threshold`` / ``mem_adaptive`` (default adaptive, t = 0.1; recorded in the attrs).
    ``where``: the runs to fit (:func:`parse_where`, e.g. ``"n_train>=64"`` or a list of clauses; all
    must hold); the other runs stay in the Dataset with ``fit_selected`` False and in no fit group.
    Writes the Dataset to ``out`` (zarr) when given. A fit group whose runs differ in evaluation density or
    bank size is refused unless ``allow_unequal`` (:func:`twoclocks.probes.pooling.check_pooling`).

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
    from twoclocks.run import open_run
    from twoclocks.training.config import TrainConfig
    if not run_dirs:
        raise TwoclocksError("give at least one run directory")
    pol = MemThreshold.from_options(mem_threshold, mem_adaptive, policy)
    if not (0 < acc_threshold <= 1):
        raise TwoclocksError(f"--acc-threshold must be in (0, 1], got {acc_threshold}")
    fields = list(TrainConfig.__dataclass_fields__)
    bad = [p for p in pool if p not in fields]
    if bad:
        raise TwoclocksError(f"--pool {', '.join(bad)}: not a config field; choose from {', '.join(fields)}")
    clauses = parse_where(where, fields)
    runs = [open_run(d) for d in run_dirs]
    rows = [run_clocks(r, k, acc_threshold, policy=pol) for r in runs]
    cfgs = [r.config.to_dict() for r in runs]
    selected = select_runs(cfgs, clauses)

    def col(key, dtype=float):
        return np.array([row[key] for row in rows], dtype=dtype)
    step_attrs = lambda name: {"long_name": name, "units": "steps"}  # noqa: E731
    data = {
        "tau_rule": ("run", col("tau_rule"), step_attrs(f"rule clock: first step with sample accuracy >= "
                                                        f"{acc_threshold} for {k} evaluations (NaN: see status)")),
        "tau_mem": ("run", col("tau_mem"), step_attrs(f"memorization clock: first step with sample "
                                                      f"memorization > the {pol.policy} threshold for {k} "
                                                      f"evaluations")),
        "tau_mem_censored_at": ("run", col("tau_mem_censored_at"), step_attrs(
            "tau_mem not reached: the step it is known to exceed (right-censoring point; NaN when reached)")),
        "window": ("run", col("window"), step_attrs("innovation window length tau_mem - tau_rule")),
        "tau_rule_raw": ("run", col("tau_rule_raw"), step_attrs("tau_rule before discarding it when after "
                                                                 "tau_mem")),
        "tau_rule_status": ("run", col("tau_rule_status", str), {"long_name": "tau_rule status"}),
        "tau_mem_status": ("run", col("tau_mem_status", str), {"long_name": "tau_mem status"}),
        "window_status": ("run", col("window_status", str), {"long_name": "innovation window status"}),
        "mem_threshold": ("run", col("mem_threshold"), {"long_name": f"sample memorization threshold used "
                                                                     f"({pol.formula()})", "units": "1"}),
        "mem_baseline": ("run", col("mem_baseline"), {"long_name": "baseline sample memorization N/|support| "
                                                                     "(perfect model of the training distribution)",
                                                      "units": "1"}),
        "passes_at_tau_mem": ("run", col("tau_mem") * np.array([c["batch"] for c in cfgs], float)
                              / np.array([c["n_train"] for c in cfgs], float),
                              {"long_name": "passes over each train sample at tau_mem, tau_mem x batch / n_train "
                                            "(NaN: tau_mem not reached)", "units": "1"}),
        "last_step": ("run", col("last_step"), step_attrs("last evaluated step")),
        "n_evals": ("run", col("n_evals", int), {"long_name": "number of evaluated checkpoints", "units": "1"}),
        "notes": ("run", col("notes", str), {"long_name": "notes on the clocks"}),
    }
    for name in LOSS_CLOCKS:
        vals = col(name)
        if np.isfinite(vals).any():
            data[name] = ("run", vals, step_attrs(f"loss-based {name[:-5]} from the DSM probe"))
    coords = {"run": ("run", [str(r.path) for r in runs], {"long_name": "run directory"})}
    for f in fields:
        coords[f] = ("run", np.array([_coord_value(c[f]) for c in cfgs]), {"long_name": f"config: {f}"})
    ds = xr.Dataset(data, coords=coords)

    # power-law fits per group of runs equal in everything but N, seeds, bookkeeping (and the pooled fields)
    levels = [tuple(p) for p in pools] if pools is not None else [tuple(pool)]
    fits = fit_groups(cfgs, col("tau_mem"), levels, col("tau_mem_censored_at"), selected=selected,
                      allow_unequal=allow_unequal, names=[r.path.name for r in runs],
                      measured=measured_pooling([_samples_cube(r) for r in runs]))
    index = np.full(len(runs), -1)
    for j, f in reversed(list(enumerate(fits))):  # each run's first fit group
        index[f["members"]] = j
    ds["fit_index"] = ("run", index, {"long_name": "index of the run's first power-law fit group (-1: none)",
                                      "units": "1"})
    ds["fit_selected"] = ("run", selected, {"long_name": "run selected for the fits (--where; all when not given)",
                                            "units": "1"})
    n_arr = np.array([c["n_train"] for c in cfgs], float)
    resid = np.full(len(runs), np.nan)
    for i, j in enumerate(index):
        if j >= 0 and col("tau_mem")[i] > 0:  # NaN (not reached) compares False
            resid[i] = np.log(col("tau_mem")[i]) - (np.log(fits[j]["c"]) + fits[j]["alpha"] * np.log(n_arr[i]))
    ds["fit_residual"] = ("run", resid, {"long_name": "ln tau_mem minus the least-squares line ln c + alpha ln N "
                                                      "of the run's first fit group (NaN: not fitted)", "units": "1"})
    ds = _with_seed_summary(ds, cfgs)
    ds = ds.assign_coords(fit=("fit", np.arange(len(fits)), {"long_name": "power-law fit group"}))
    ds["fit_label"] = ("fit", np.array([f["label"] for f in fits], dtype=str), {"long_name": "the group's runs"})
    ds["fit_pooled_over"] = ("fit", np.array([f["pooled_over"] for f in fits], dtype=str),
                             {"long_name": "config fields pooled over (empty: none)"})
    ds["fit_member"] = (("fit", "run"), np.array([f["members"] for f in fits], bool).reshape(len(fits), len(runs)),
                        {"long_name": "run is in the fit group", "units": "1"})
    for name, (dims, arr, attrs) in fit_dataset(fits).items():
        ds[name] = (dims, arr, attrs)
    skip = set(NOT_GROUPING) | {f for level in levels for f in level}
    ds.attrs.update({
        "probe": "clocks", "twoclocks_version": twoclocks.__version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "k": k, "acc_threshold": acc_threshold, "mem_adaptive": int(pol.adaptive),
        **(pol.attrs(float(col("mem_baseline")[0])) if len(rows) == 1 else pol.attrs(per_run=True)),
        "mem_threshold_rule": pol.formula(),
        "fit_method": ("least squares of ln tau_mem on ln n_train (scipy.stats.linregress; censored runs dropped) "
                       "with a t interval for alpha (slope standard error, n - 2 dof), and right-censored maximum "
                       "likelihood (Tobit on ln tau_mem, scipy.optimize) with a profile-likelihood interval for "
                       "alpha cut at n ln(1 + t^2/(n - 2)), t the Student-t quantile with n - 2 dof (n runs that "
                       "reached tau_mem; without censoring it is the t interval); fits on fewer than 4 runs are "
                       "flagged weak (fit_notes)"),
        "fit_pooled_over": json.dumps(sorted(skip)),
        "fit_where": json.dumps([" ".join(c) for c in clauses]),
        "source_steps": json.dumps({str(r.path): [int(v) for v in _samples_cube(r)["step"].values] for r in runs}),
        "pooled_environment_note": pooled_environment_note(  # empty when the runs' environments agree
            [r.training_environments() for r in runs],
            [json.loads(_samples_cube(r).attrs.get("environment", "null")) for r in runs]),
    })
    if out is not None:
        from twoclocks.probes.clocks_schema import CLOCKS_SCHEMA
        from twoclocks.store import write_derived
        out = Path(out)
        if out.suffix != ".zarr":
            raise TwoclocksError(f"--out {out}: give a path ending in .zarr")
        ds = write_derived(ds, out, schema=CLOCKS_SCHEMA, params={
            "k": k, "acc_threshold": acc_threshold, "mem_threshold_policy": pol.policy, "mem_threshold_t": pol.t,
            "pools": [list(level) for level in levels], "where": [" ".join(c) for c in clauses]})
    return ds


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
    ds = ds.assign_coords(point=("point", np.array(labels, dtype=str), {"long_name": "grid point: runs equal "
                                                                         "except their seeds"}),
                          clock=("clock", np.array(clocks, dtype=str), {"long_name": "clock"}))
    ds["point_index"] = ("run", index, {"long_name": "index of the run's grid point (dim point)", "units": "1"})
    ds["point_n_seeds"] = ("point", np.bincount(index, minlength=len(points)).astype(np.int64),
                           {"long_name": "runs (seeds) at the grid point", "units": "1"})
    ds["seed_mean"] = (("point", "clock"), mean, {"long_name": "mean over the point's seeds that reached the "
                                                               "clock", "units": "steps"})
    ds["seed_sd"] = (("point", "clock"), sd, {"long_name": "sample standard deviation (ddof 1) over the point's "
                                                           "seeds that reached the clock", "units": "steps"})
    ds["seed_n"] = (("point", "clock"), n, {"long_name": "seeds of the point that reached the clock", "units": "1"})
    return ds


def fit_groups(cfgs: list[dict], tau, pools=((),), censored_at=None, selected=None, allow_unequal: bool = False,
               names=None, measured: dict | None = None) -> list[dict]:
    """tau_mem = c N^alpha fits (:func:`fit_power_law`, both the plain and the censored one) over groups
    of runs whose configs are equal in everything but N, seeds and bookkeeping (NOT_GROUPING) and the
    fields of a pool level: one list of fits per level (e.g. () per model and G, ('group',) pooled over
    G as in the paper's Table 4). A group needs >= 2 distinct N; a pooled group equal to an earlier one is
    not repeated. ``selected``: bool mask of the runs to fit (:func:`select_runs`; None: all), the
    others are in no group. A group whose runs differ in evaluation density or bank size is refused
    unless ``allow_unequal`` (:func:`twoclocks.probes.pooling.check_pooling`; ``names``, ``measured``:
    the runs' names and cube measurements for it). Returns [{label, pooled_over, members (bool mask),
    **fit_power_law(...)}]."""
    tau = np.asarray(tau, float)
    selected = np.ones(len(cfgs), bool) if selected is None else np.asarray(selected, bool)
    cen = None if censored_at is None else np.asarray(censored_at, float)
    fields = list(cfgs[0]) if cfgs else []
    enc = [{f: json.dumps(_coord_value(c.get(f)), sort_keys=True) for f in fields} for c in cfgs]
    fits, seen = [], set()
    for pool in pools:
        skip = set(NOT_GROUPING) | set(pool)
        keys = [tuple((f, e[f]) for f in fields if f not in skip) if sel else None for e, sel in zip(enc, selected)]
        groups = [key for key in dict.fromkeys(keys) if key is not None]
        varying = [f for f in fields if f not in skip and len({dict(k)[f] for k in groups}) > 1]
        for key in groups:
            members = np.array([k == key for k in keys])
            n = np.array([c["n_train"] for c in cfgs], float)[members]
            if len(np.unique(n)) < 2 or members.tobytes() in seen:
                continue
            seen.add(members.tobytes())
            label = ", ".join(f"{f}={json.loads(dict(key)[f])}" for f in varying) or "all runs"
            if pool:
                label += f" (pooled over {', '.join(pool)})"
            check_pooling(cfgs, members, label, names, measured, allow_unequal)
            fits.append({"label": label, "pooled_over": ",".join(pool), "members": members,
                         **fit_power_law(n, tau[members], None if cen is None else cen[members])})
    return fits


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
    from twoclocks.training.config import TrainConfig
    fields = [f for f in TrainConfig.__dataclass_fields__ if f in ds.coords
              and f not in ("device", "data_seed") and len(np.unique(ds[f].values)) > 1]
    loss = [n for n in LOSS_CLOCKS if n in ds]
    head = ["run", *fields, "tau_rule", "tau_mem", "window", *loss, "N/|support|", "mem_thr", "passes@tau_mem",
            "censored", "resid", "status"]
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
    for label, fit in fits_from_dataset(ds):
        lines.append(format_fit(fit, label))
    lines += _format_seed_summary(ds)
    if ds.attrs.get("pooled_environment_note"):
        lines.append(ds.attrs["pooled_environment_note"])
    return "\n".join(lines)


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
