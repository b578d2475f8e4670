"""The one censored line fit behind every scaling estimator (docs/science.md#scaling): ln clock on a
transformed axis, by least squares (t interval, t-test of a zero slope) and by right-censored maximum
likelihood (a Tobit model; t-calibrated profile-likelihood interval and likelihood-ratio test of a zero
slope). :func:`twoclocks.probes.clocks.fit_power_law` (tau_mem = c N^alpha) and
:func:`twoclocks.probes.fits.fit_clocks` (any clock on any numeric config field) both call
:func:`censored_line_fit`.

Models (:data:`LINE_MODELS`): ``power``, clock = c axis^slope (x = ln axis; needs axis > 0), and
``loglinear``, clock = c exp(slope axis) (x = axis), whose per-unit factor is exp(slope).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq, minimize
from scipy.special import erfcx, log_ndtr
from scipy.stats import linregress
from scipy.stats import t as student_t

from twoclocks import TwoclocksError

__all__ = ["LINE_MODELS", "LINE_FIT_KEYS", "LINE_FIT_STR_KEYS", "T_INTERVAL", "ML_INTERVAL", "T_TEST", "ML_TEST",
           "WEAK_FIT_RUNS", "censored_line_fit", "ml_cutoff", "tobit_fit", "tobit_negll", "line_x"]

#: the models: name -> (clock as a function of the axis, how x is made from the axis)
LINE_MODELS = {"power": "clock = c axis^slope: ln clock on ln axis (axis > 0)",
               "loglinear": "clock = c exp(slope axis): ln clock on axis; per-unit factor exp(slope)"}
#: a fit on fewer runs than this (runs that reached the clock) is flagged as weak in ``notes``
WEAK_FIT_RUNS = 4
T_INTERVAL = "t"
ML_INTERVAL = "profile likelihood, t-calibrated"
T_TEST = "t-test of the least-squares slope (n - 2 dof)"
ML_TEST = "profile likelihood ratio, t-calibrated (n - 2 dof; the t-test when nothing is censored)"

#: the keys of :func:`censored_line_fit`'s result, with their meaning
LINE_FIT_KEYS = {
    "model": "power (clock = c axis^slope) or loglinear (clock = c exp(slope axis))",
    "c": "prefactor c, least squares of ln clock on x over the runs that reached the clock",
    "slope": "slope of ln clock on x (power: the exponent; loglinear: ln of the per-unit factor), least squares "
             "over the runs that reached the clock (censored runs dropped)",
    "slope_lo": "lower end of the t confidence interval of slope (n - 2 dof; NaN if n < 3)",
    "slope_hi": "upper end of the t confidence interval of slope (n - 2 dof; NaN if n < 3)",
    "p_zero": "two-sided p-value of slope = 0: t-test of the least-squares slope (n - 2 dof; NaN if n < 3)",
    "r2": "R^2 of the least-squares line",
    "n": "number of runs that reached the clock (the points of the least-squares line)",
    "dof": "degrees of freedom of the intervals and tests: n - 2 (NaN if n < 3)",
    "interval_method": "method of [slope_lo, slope_hi] ('t': Student t with dof; empty: no interval)",
    "n_runs": "number of runs in the group with a usable axis value (reached or censored or neither)",
    "n_censored": "runs that did not reach the clock: right-censored at their censoring step",
    "censored_at": "censoring steps of the censored runs (clock > this), ascending",
    "censored_x": "axis values of the censored runs, in the order of censored_at",
    "c_ml": "prefactor c, right-censored maximum likelihood (Tobit on ln clock)",
    "slope_ml": "slope, right-censored maximum likelihood (Tobit on ln clock)",
    "slope_ml_lo": "lower end of the confidence interval of slope_ml (method: interval_method_ml)",
    "slope_ml_hi": "upper end of the confidence interval of slope_ml (method: interval_method_ml)",
    "p_zero_ml": "two-sided p-value of slope = 0 in the censored fit: profile likelihood ratio W(0), t-calibrated "
                 "(T^2 = dof (exp(W/n) - 1), Student t with dof; the t-test when nothing is censored)",
    "sigma_ml": "residual standard deviation of ln clock in the Tobit model",
    "factor": "loglinear: per-unit factor exp(slope) (NaN for power)",
    "factor_lo": "loglinear: exp(slope_lo)",
    "factor_hi": "loglinear: exp(slope_hi)",
    "factor_ml": "loglinear: exp(slope_ml)",
    "factor_ml_lo": "loglinear: exp(slope_ml_lo)",
    "factor_ml_hi": "loglinear: exp(slope_ml_hi)",
    "x_mean": "mean of x over the runs that reached the clock (for the line's confidence band)",
    "sxx": "sum of squared deviations of x from x_mean (for the line's confidence band)",
    "resid_sd": "least-squares residual standard deviation of ln clock, sqrt(RSS / (n - 2)) (NaN if n < 3)",
    "level": "confidence level of the intervals",
    "interval_method_ml": "method of [slope_ml_lo, slope_ml_hi] (profile likelihood cut at the t-calibrated "
                          "n ln(1 + t^2/dof); empty: no interval)",
    "ml_status": "'ok', or why the censored fit is NaN",
    "notes": "warnings on the fit (e.g. a weak fit on fewer than 4 runs); empty: none",
}
#: the string-valued keys of :data:`LINE_FIT_KEYS` (censored_* are tuples, the rest numbers)
LINE_FIT_STR_KEYS = ("model", "interval_method", "interval_method_ml", "ml_status", "notes")


def line_x(axis, model: str) -> np.ndarray:
    """x of the line from axis values: ln axis (``power``; NaN where axis <= 0) or the axis (``loglinear``)."""
    axis = np.asarray(axis, float)
    if model == "power":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(axis > 0, np.log(np.where(axis > 0, axis, 1.0)), np.nan)
    if model == "loglinear":
        return axis
    raise TwoclocksError(f"--model {model!r}: choose from {', '.join(LINE_MODELS)}")


def tobit_negll(theta, x_obs, y_obs, x_cen, c_cen):
    """(-log likelihood, its gradient in theta) of y = a + b x + e, e ~ N(0, s^2), theta = (a, b, ln s);
    observed runs contribute the density of y, censored ones P(y > c) = sf((c - a - b x) / s)."""
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
    """(cutoff, dof) of the censored-ML profile-likelihood interval on ``n_obs`` runs that reached the
    clock: the likelihood-ratio statistic W(b) = 2 (max ll - max_{a, s} ll(a, b, s)) is cut at
    n ln(1 + t^2 / (n - 2)), t the Student-t quantile at ``level`` with dof = n - 2, n = ``n_obs``.
    With no censored runs W(b) = n ln(1 + T(b)^2 / (n - 2)), T(b) the usual t statistic of the slope, so
    the interval is exactly the t interval (docs/science.md#scaling)."""
    dof = n_obs - 2
    q = float(student_t.ppf(0.5 + level / 2, dof))
    return float(n_obs * np.log1p(q * q / dof)), float(dof)


def tobit_fit(x_obs, y_obs, x_cen, c_cen, level: float) -> dict:
    """Right-censored ML of the line y = a + b x: {a, b, s, lo, hi, dof, p_zero}; [lo, hi] the
    profile-likelihood interval of b, {b : W(b) <= cutoff} with the t-calibrated cutoff of
    :func:`ml_cutoff` (an end is +-inf when the likelihood never drops that far), p_zero the
    two-sided p-value of b = 0 from W(0) calibrated the same way (T^2 = dof (exp(W(0)/n) - 1), so
    [lo, hi] = {b : p(b) >= 1 - level} and without censoring p_zero is the t-test's)."""
    bounds_ls = (np.log(1e-8), np.log(1e3))
    b0, a0 = np.polyfit(x_obs, y_obs, 1)
    s0 = max(float(np.std(y_obs - a0 - b0 * x_obs)), 1e-3)
    args = (x_obs, y_obs, x_cen, c_cen)
    opts = {"ftol": 1e-12, "gtol": 1e-8, "maxiter": 500}
    best = None
    for start in ([a0, b0, np.log(s0)], [a0, b0, np.log(max(s0, 1.0))]):
        r = minimize(tobit_negll, start, args=args, jac=True, method="L-BFGS-B",
                     bounds=[(None, None), (None, None), bounds_ls], options=opts)
        if best is None or r.fun < best.fun:
            best = r
    a, b, ls = best.x
    nll_min = float(best.fun)
    n_obs = len(y_obs)
    q, dof = ml_cutoff(n_obs, level)
    xm = float(np.mean(np.r_[x_obs, x_cen]))

    def lr_stat(bb):  # W(bb); (a, ln s) profiled out, started from the ML line pivoted about xm
        def prof(t):
            f, g = tobit_negll([t[0], bb, t[1]], *args)
            return f, g[[0, 2]]
        r = minimize(prof, [a + (b - bb) * xm, ls], jac=True, method="L-BFGS-B",
                     bounds=[(None, None), bounds_ls], options=opts)
        return 2.0 * (float(r.fun) - nll_min)

    def excess(bb):
        return lr_stat(bb) - q

    # a first step of about the half-width of the uncensored t interval (the exact end when none is censored)
    resid = y_obs - a - b * x_obs
    sxx = float(np.sum((x_obs - x_obs.mean()) ** 2))
    se = np.sqrt(max(float(resid @ resid), 1e-12) / max(n_obs - 2, 1) / sxx) if sxx > 0 else 1.0
    half = max(se * np.sqrt(np.expm1(q / n_obs) * dof), 1e-6)
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
    w0 = max(lr_stat(0.0), 0.0) if b != 0 else 0.0
    t0 = np.sqrt(dof * np.expm1(w0 / n_obs))
    p_zero = float(min(1.0, 2 * student_t.sf(t0, dof)))
    return {"a": float(a), "b": float(b), "s": float(np.exp(ls)), "lo": ends[0], "hi": ends[1], "dof": dof,
            "p_zero": p_zero}


def censored_line_fit(axis, clock, censored_at=None, level: float = 0.95, model: str = "power",
                      clock_name: str = "the clock", axis_name: str = "x", slope_name: str = "the slope",
                      ml: bool = True) -> dict:
    """ln clock = ln c + slope x + e over one group of runs (keys and meanings: :data:`LINE_FIT_KEYS`),
    x = :func:`line_x` (``model``: ``power`` x = ln axis, ``loglinear`` x = axis).

    ``axis`` (runs,) the axis values; ``clock`` (runs,) the clock, NaN for runs that did not reach it;
    ``censored_at`` (runs,) for those runs the step the clock is known to exceed, NaN where reached or
    unknown (None: no censoring information; such runs are dropped). Returns the least-squares line
    over the runs that reached the clock (``c``, ``slope``, ``r2``, ``n``; NaN with fewer than 2
    distinct x) with its t interval at ``level`` and the t-test p-value of a zero slope (``p_zero``;
    NaN with n < 3), and the right-censored ML line that also uses the censored runs (``c_ml``,
    ``slope_ml`` with its t-calibrated profile-likelihood interval and likelihood-ratio p-value
    ``p_zero_ml``; NaN, with ``ml_status`` saying why, when fewer than 3 runs reached the clock or
    they span fewer than 2 distinct x). ``clock_name``, ``axis_name`` and ``slope_name`` only word
    the notes. For ``loglinear`` also the per-unit factors exp(slope) (``factor*``). ``ml`` False: the
    least-squares fit only (the censored-ML keys NaN, ``ml_status`` saying so; much faster)."""
    x_all = line_x(axis, model)
    tau = np.asarray(clock, float).ravel()
    x_all = x_all.ravel()
    cen = np.full(len(x_all), np.nan) if censored_at is None else np.asarray(censored_at, float).ravel()
    if not (len(x_all) == len(tau) == len(cen)):
        raise TwoclocksError(f"censored_line_fit: axis, clock and censored_at differ in length "
                             f"({len(x_all)}, {len(tau)}, {len(cen)})")
    if not 0 < level < 1:
        raise TwoclocksError(f"censored_line_fit: level must be in (0, 1), got {level}")
    axis = np.asarray(axis, float).ravel()
    good_x = np.isfinite(x_all)
    obs = good_x & np.isfinite(tau) & (tau > 0)
    censored = good_x & ~obs & np.isfinite(cen) & (cen > 0)
    order = np.argsort(cen[censored], kind="stable")
    nan = np.nan
    out = {"model": model, "c": nan, "slope": nan, "slope_lo": nan, "slope_hi": nan, "p_zero": nan, "r2": nan,
           "n": int(obs.sum()), "dof": nan, "interval_method": "", "n_runs": int(good_x.sum()),
           "n_censored": int(censored.sum()), "censored_at": tuple(float(v) for v in cen[censored][order]),
           "censored_x": tuple(float(v) for v in axis[censored][order]),
           "c_ml": nan, "slope_ml": nan, "slope_ml_lo": nan, "slope_ml_hi": nan, "p_zero_ml": nan, "sigma_ml": nan,
           **{k: nan for k in ("factor", "factor_lo", "factor_hi", "factor_ml", "factor_ml_lo", "factor_ml_hi")},
           "x_mean": nan, "sxx": nan, "resid_sd": nan,
           "level": float(level), "interval_method_ml": "", "ml_status": "", "notes": ""}
    x_obs, y_obs = x_all[obs], np.log(tau[obs])
    distinct = len(np.unique(x_obs))
    if distinct >= 2:
        fit = linregress(x_obs, y_obs)
        out.update(c=float(np.exp(fit.intercept)), slope=float(fit.slope), r2=float(fit.rvalue ** 2),
                   x_mean=float(np.mean(x_obs)), sxx=float(np.sum((x_obs - np.mean(x_obs)) ** 2)))
        if len(x_obs) >= 3:
            dof = len(x_obs) - 2
            half = float(student_t.ppf(0.5 + level / 2, dof)) * float(fit.stderr)
            out.update(slope_lo=out["slope"] - half, slope_hi=out["slope"] + half, dof=float(dof),
                       interval_method=T_INTERVAL, p_zero=float(fit.pvalue),
                       resid_sd=float(fit.stderr) * np.sqrt(out["sxx"]))
        if len(x_obs) < WEAK_FIT_RUNS:
            out["notes"] = (f"weak fit: only {len(x_obs)} runs reached {clock_name} (fewer than {WEAK_FIT_RUNS}); "
                            f"{slope_name} is poorly determined")
    if not ml:
        out["ml_status"] = "not computed (ml=False)"
    elif obs.sum() >= 3 and distinct >= 2:
        r = tobit_fit(x_obs, y_obs, x_all[censored], np.log(cen[censored]), level)
        out.update(c_ml=float(np.exp(r["a"])), slope_ml=r["b"], slope_ml_lo=r["lo"], slope_ml_hi=r["hi"],
                   sigma_ml=r["s"], p_zero_ml=r["p_zero"], ml_status="ok", interval_method_ml=ML_INTERVAL)
    else:
        out["ml_status"] = (f"needs >= 3 runs that reached {clock_name} at >= 2 distinct {axis_name} (has "
                            f"{int(obs.sum())} at {distinct})")
    if model == "loglinear":
        with np.errstate(over="ignore"):
            for k in ("", "_lo", "_hi", "_ml", "_ml_lo", "_ml_hi"):
                out[f"factor{k}"] = float(np.exp(out[f"slope{k}"]))
    return out
