"""Per-run uncertainty of the two clocks (docs/science.md#clock-uncertainty).

A run's clocks (:func:`twoclocks.probes.clocks.clocks_from_curves`) are point estimates from one fixed
bank of noise seeds, read on a grid of evaluated checkpoints. Two separate uncertainties:

- **Seed resampling** (:func:`bootstrap_clocks`): the curves ``sample_acc`` / ``sample_mem`` are means
  over the bank's seeds of per-seed indicators (:func:`seed_indicators`: ``valid``, the decoded sample
  is rule-valid; ``memorized``, it equals a train sample). A nonparametric *percentile bootstrap* over
  seeds (resampled with replacement, the same seeds at every step) recomputes both clocks by the same
  rules as ``clocks_from_curves`` (sustained onset over k evaluations, accuracy >= ``acc_threshold``,
  memorization > the :class:`~twoclocks.probes.clocks.MemThreshold` threshold strictly, tau_rule
  discarded when after tau_mem) in every replicate. The interval [lo, hi] holds the (1 - level)/2 and
  (1 + level)/2 quantiles of the replicates (``numpy.quantile`` methods ``lower`` / ``higher``: no
  interpolation, so both ends are evaluated steps). A replicate whose clock is not reached (never,
  pending, or for tau_rule discarded) is right-censored: it sorts above every reached value (+inf), so an
  end is +inf ("beyond the last evaluated step") when too few replicates reach the clock; the fraction
  reached is reported beside. ``scipy.stats.bootstrap`` is not used: its statistic sees one resampled
  1-d sample per batch element, while a clock needs the whole (step, seed) matrix resampled along seeds
  with shared indices; the replicates here are one matrix product (count weights W (n_seeds, B),
  curves = indicators @ W / n_seeds) and one vectorized sustained onset
  (:func:`sustained_onset_batch`), with no loop over replicates or seeds.
- **Checkpoint grid** (:func:`grid_bracket`, :func:`clock_brackets`): a clock reached at the evaluated
  step steps[i] means the criterion failed at steps[i-1] and holds from steps[i] on, so the crossing
  lies in (steps[i-1], steps[i]]; for i = 0 the grid gives no lower bound, (-inf, steps[0]].

:func:`run_clock_uncertainty` does both for a run directory from its ``probes/samples.zarr`` and returns
a small Dataset.
"""
from __future__ import annotations

import datetime as _dt

import numpy as np
import xarray as xr

import twoclocks
from twoclocks import TwoclocksError
from twoclocks.data.rules import support_baseline
from twoclocks.probes.clockdefs import (DISCARDED, NEVER, PENDING, REACHED, STATUS_NAMES, ClockSet, MemThreshold,
                                        clocks_from_curves, clockset_from_options, evaluate_clocks,
                                        sustained_onset_batch)
from twoclocks.run import Run, open_run
from twoclocks.store import open_cube

__all__ = ["samples_cube", "REACHED", "PENDING", "NEVER", "DISCARDED", "STATUS_NAMES", "seed_indicators",
           "sustained_onset_batch", "bootstrap_indices", "bootstrap_clocks", "grid_bracket", "clock_brackets",
           "run_clock_uncertainty", "run_bootstrap", "boot_curves", "DEFAULT_N_BOOT", "DEFAULT_LEVEL", "METHOD"]

DEFAULT_N_BOOT = 1000
DEFAULT_LEVEL = 0.9
METHOD = ("percentile bootstrap over noise-bank seeds (resampled with replacement, shared across steps); "
          "quantiles without interpolation (numpy lower/higher); unreached replicates right-censored at +inf")


# ----------------------------------------------------------------------------- per-seed indicators
def samples_cube(run: Run) -> xr.Dataset:
    """The trained steps (step >= 0) of ``run``'s ``probes/samples.zarr``, with its curves
    ``sample_acc`` and ``sample_mem``; a one-line error saying which command computes what is missing.
    The one way the clock code opens a samples cube."""
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


def seed_indicators(source, rule=None, check: bool = True) -> xr.Dataset:
    """Per-step per-seed indicators from a samples cube (or a Run / run directory: its
    ``probes/samples.zarr`` and its rule), nothing resampled or recomputed but the rule check on the
    stored decoded cells:

    - ``valid`` (step, seed): the stored ``sample`` is rule-valid (``rule.is_valid``) and finite;
    - ``memorized`` (step, seed): ``nn_hamming == 0``;
    - ``finite`` (step, seed): ``nn_hamming >= 0`` (a non-finite sample is stored as 0 cells, which may
      well be rule-valid, with ``nn_hamming`` -1: it counts as neither valid nor memorized, as in
      :meth:`~twoclocks.probes.samples.SampleEvaluator.evaluate`);
    - ``baseline``: the cube's ``uniform_valid_sample_mem`` (NaN when absent).

    Only steps >= 0 are kept (as the clocks). With ``check`` the means over seeds must equal the stored
    ``sample_acc`` / ``sample_mem`` exactly, else TwoclocksError (e.g. a cube from twoclocks 0.1 whose
    non-finite samples were not marked)."""
    if isinstance(source, xr.Dataset):
        ds = source
        if rule is None:
            raise TwoclocksError("seed_indicators(ds, rule): give the run's rule with a samples cube")
    else:
        run = source if isinstance(source, Run) else open_run(source)
        ds = samples_cube(run)
        rule = run.rule if rule is None else rule
    missing = [v for v in ("sample", "nn_hamming") if v not in ds]
    if missing:
        raise TwoclocksError(f"the samples cube lacks {', '.join(missing)}; recompute it with "
                             "`twoclocks-probe samples RUN --force`")
    ds = ds.sel(step=ds["step"] >= 0)
    cells = np.asarray(ds["sample"].transpose("step", "seed", "cell").values)
    nn = np.asarray(ds["nn_hamming"].transpose("step", "seed").values)
    T, n, D = cells.shape
    finite = nn >= 0
    valid = np.asarray(rule.is_valid(cells.reshape(T * n, D)), bool).reshape(T, n) & finite
    memorized = nn == 0
    if check:
        for name, ind in (("sample_acc", valid), ("sample_mem", memorized)):
            if name in ds:
                stored = np.asarray(ds[name].values, float)
                mean = ind.mean(axis=1) if n else np.full(T, np.nan)
                if not np.array_equal(mean, stored, equal_nan=True):
                    bad = int(np.flatnonzero(~((mean == stored) | (np.isnan(mean) & np.isnan(stored))))[0])
                    raise TwoclocksError(
                        f"per-seed indicators do not reproduce the stored {name} (step "
                        f"{int(ds['step'].values[bad])}: {mean[bad]!r} vs {stored[bad]!r}); recompute the "
                        "samples cube with `twoclocks-probe samples RUN --force`")
    base = float(ds["uniform_valid_sample_mem"]) if "uniform_valid_sample_mem" in ds else np.nan
    dims = ("step", "seed")
    out = xr.Dataset(
        {"valid": (dims, valid, {"long_name": "decoded sample is rule-valid (and finite)", "units": "1"}),
         "memorized": (dims, memorized, {"long_name": "sample equals a train sample (nn_hamming == 0)",
                                         "units": "1"}),
         "finite": (dims, finite, {"long_name": "sample is finite (nn_hamming >= 0)", "units": "1"}),
         "baseline": ((), base, {"long_name": "sample memorization of a uniform-valid sampler, N / |valid|",
                                 "units": "1"})},
        coords={"step": ds["step"].values, "seed": ds["seed"].values})
    if "state" in ds and "state_label" in ds.coords:   # per-seed states: the indicators of state_frac[LABEL]
        out["state"] = (dims, np.asarray(ds["state"].transpose("step", "seed").values, np.int64),
                        {"long_name": "sample state (index into state_label)", "units": "1"})
        out.attrs["state_labels"] = [str(v) for v in ds["state_label"].values]
    return out


# ----------------------------------------------------------------------------- the bootstrap
def bootstrap_indices(n_seeds: int, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> np.ndarray:
    """(n_boot, n_seeds) seed indices drawn with replacement: replicate b is the bank
    ``seeds[idx[b]]``. :func:`bootstrap_clocks` draws exactly these (``numpy.random.default_rng(seed)``)."""
    return np.random.default_rng(seed).integers(0, n_seeds, (n_boot, n_seeds))


def _count_weights(idx: np.ndarray, n_seeds: int) -> np.ndarray:
    """(n_seeds, B) multinomial counts: how often each seed is drawn in each replicate."""
    B = idx.shape[0]
    flat = (idx + (np.arange(B) * n_seeds)[:, None]).ravel()
    return np.bincount(flat, minlength=B * n_seeds).reshape(B, n_seeds).T


def _interval(boot: np.ndarray, level: float):
    """lo, hi, median of replicates with +inf for unreached (module docstring)."""
    if boot.size == 0:
        return np.nan, np.nan, np.nan
    a = (1 - level) / 2
    lo = float(np.quantile(boot, a, method="lower"))
    hi = float(np.quantile(boot, 1 - a, method="higher"))
    med = float(np.quantile(boot, 0.5, method="lower"))
    return lo, hi, med


def boot_curves(indicators: dict, W: np.ndarray) -> dict:
    """Replicate curves (B, T) of per-seed indicators (var -> (T, n) booleans): the means over each
    replicate's seeds, ``indicators @ W / n`` with the count weights W (n, B) (integer counts, exact in
    float32 below 2^24 seeds; the curves in float64 as a mean would give)."""
    out = {}
    for var, ind in indicators.items():
        n = ind.shape[1]
        out[var] = (np.asarray(ind, np.float32) @ W).T.astype(np.float64) / n
    return out


def bootstrap_clocks(steps, valid, memorized, baseline: float = np.nan, k: int | None = None,
                     acc_threshold: float | None = None, policy: MemThreshold | str | None = None,
                     n_boot: int = DEFAULT_N_BOOT, seed: int = 0, level: float = DEFAULT_LEVEL, clocks=None,
                     indicators: dict | None = None) -> dict:
    """Percentile-bootstrap intervals of the clocks over the noise-bank seeds (module docstring).

    ``valid``, ``memorized``: (n_steps, n_seeds) booleans (:func:`seed_indicators`), the per-seed
    indicators of ``sample_acc`` / ``sample_mem``; ``indicators``: those of further curves the
    definitions read (var -> (n_steps, n_seeds) booleans, e.g. ``state_frac[valid_novel]``: state ==
    valid_novel); ``steps``: the evaluated steps (any order; sorted here as ``clocks_from_curves``
    does); ``baseline``: the memorization baseline N/|support|. The clock definitions: ``clocks`` (a
    :class:`~twoclocks.probes.clockdefs.ClockSet`, preset name or ClockDefs; None: the default) with the
    shorthands ``k``, ``acc_threshold``, ``policy``
    (:func:`~twoclocks.probes.clockdefs.clockset_from_options`); every replicate is evaluated by the
    same :func:`~twoclocks.probes.clockdefs.evaluate_clocks` as the point clocks. Replicates:
    :func:`bootstrap_indices` (``n_boot``, ``seed``).

    Returns a dict: the point estimate (``clocks_from_curves`` on the full bank: ``tau_rule``,
    ``tau_mem``, their statuses, and any further clock), and per clock C: ``C_lo`` / ``C_hi`` (the
    interval at ``level``, +inf where beyond the last step), ``C_median``, ``C_reached`` (fraction of
    replicates reaching it), ``C_boot`` (B,) the replicates (NaN unreached), ``C_boot_status`` (B,)
    status codes (:data:`STATUS_NAMES`), ``C_counts`` (n_steps,) how many replicates have the clock at
    each step; ``tau_rule_discarded`` (fraction of replicates whose tau_rule came after their tau_mem);
    ``steps``, ``mem_threshold``, ``n_boot``, ``level``, ``n_seeds``, ``method``, ``clock_set``."""
    cs = clockset_from_options(clocks, k, acc_threshold, policy=policy)
    if not (0 < level < 1):
        raise TwoclocksError(f"--level must be in (0, 1), got {level}")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise TwoclocksError(f"--n-boot must be a positive integer, got {n_boot}")
    steps = np.asarray(steps)
    ind = {"sample_acc": np.asarray(valid, bool), "sample_mem": np.asarray(memorized, bool),
           **{key: np.asarray(v, bool) for key, v in (indicators or {}).items()}}
    for key, v in ind.items():
        if v.ndim != 2 or v.shape != ind["sample_acc"].shape or v.shape[0] != len(steps):
            raise TwoclocksError(f"the per-seed indicators of {key} {v.shape} must be (n_steps={len(steps)}, "
                                 f"n_seeds={ind['sample_acc'].shape[-1]})")
    missing = [v for v in cs.variables if v not in ind]
    if missing:
        raise TwoclocksError(f"the clock definitions need per-seed indicators of {', '.join(missing)} for the "
                             f"bootstrap (have {', '.join(ind)})")
    order = np.argsort(steps, kind="stable")
    steps = steps[order]
    ind = {key: v[order] for key, v in ind.items()}
    T, n = ind["sample_acc"].shape
    if n == 0:
        raise TwoclocksError("no seeds to resample")
    means = {key: v.mean(axis=1) for key, v in ind.items()}
    point = clocks_from_curves(steps, means.pop("sample_acc"), means.pop("sample_mem"), baseline, clocks=cs,
                               curves=means)
    W = _count_weights(bootstrap_indices(n, n_boot, seed), n).astype(np.float32)   # (n, B)
    ev = evaluate_clocks(cs, steps, boot_curves({v: ind[v] for v in cs.variables}, W), baseline)
    discarded = ev["tau_rule"]["status"] == DISCARDED

    out = {name: point[name] for name in cs.names}
    out.update({f"{name}_status": point[f"{name}_status"] for name in cs.names})
    for name in cs.names:
        boot, status = ev[name]["tau"], ev[name]["status"]
        reached = np.isfinite(boot)
        lo, hi, med = _interval(np.where(reached, boot, np.inf), level)
        counts = np.zeros(T, np.int64)
        np.add.at(counts, np.searchsorted(steps, boot[reached]), 1)
        out.update({f"{name}_lo": lo, f"{name}_hi": hi, f"{name}_median": med,
                    f"{name}_reached": float(reached.mean()), f"{name}_boot": boot,
                    f"{name}_boot_status": status, f"{name}_counts": counts})
    pol = cs.mem_policy()
    out.update({"tau_rule_discarded": float(discarded.mean()), "steps": steps, "mem_threshold": point["mem_threshold"],
                "mem_threshold_policy": pol.policy if pol else "custom", "mem_threshold_t": float(pol.t) if pol else np.nan,
                "mem_baseline": float(baseline), "k": int(cs["tau_mem"].sustain.k),
                "acc_threshold": float(next((c.threshold for c in cs["tau_rule"].conditions if c.var == "sample_acc"),
                                            np.nan)),
                "n_boot": int(n_boot), "seed": int(seed), "level": float(level), "n_seeds": int(n), "method": METHOD,
                "clock_set": cs})
    return out


# ----------------------------------------------------------------------------- the checkpoint grid
def grid_bracket(steps, tau):
    """(lo, hi) of the grid bracket (lo, hi] of a clock reached at the evaluated step ``tau`` (scalar or
    array): hi = tau = steps[i], lo = steps[i-1], -inf for the first step (module docstring); NaN for
    a NaN tau. A tau that is not an evaluated step raises TwoclocksError."""
    steps = np.sort(np.asarray(steps, dtype=float))
    tau = np.asarray(tau, dtype=float)
    ok = np.isfinite(tau)
    i = np.searchsorted(steps, np.where(ok, tau, -np.inf))
    if not np.isin(tau[ok], steps).all():
        raise TwoclocksError(f"clock {tau} is not an evaluated step")
    padded = np.concatenate([[-np.inf], steps])             # padded[i] = steps[i-1], -inf for i = 0
    lo = np.where(ok, padded[i], np.nan)
    hi = np.where(ok, tau, np.nan)
    return (float(lo), float(hi)) if lo.ndim == 0 else (lo, hi)


def clock_brackets(steps, tau_rule, tau_mem) -> dict:
    """Both clocks' grid brackets: {"tau_rule": (lo, hi), "tau_mem": (lo, hi)} (:func:`grid_bracket`)."""
    return {"tau_rule": grid_bracket(steps, tau_rule), "tau_mem": grid_bracket(steps, tau_mem)}


# ----------------------------------------------------------------------------- one run
def state_indicators(ind: xr.Dataset) -> dict:
    """The per-seed indicators of ``state_frac[LABEL]`` (state == LABEL) from :func:`seed_indicators`."""
    if "state" not in ind:
        return {}
    states = ind["state"].values
    return {f"state_frac[{lab}]": states == i for i, lab in enumerate(ind.attrs["state_labels"])}


def run_bootstrap(run, clocks=None, n_boot: int = DEFAULT_N_BOOT, seed: int = 0, level: float = DEFAULT_LEVEL,
                  baseline: float | None = None) -> dict:
    """:func:`bootstrap_clocks` of one run (a directory or an opened Run) from its
    ``probes/samples.zarr`` under the clock definitions ``clocks`` (anything
    :func:`~twoclocks.probes.clockdefs.clockset_from_options` takes), plus ``brackets``: each clock's
    grid bracket (:func:`grid_bracket`). ``baseline``: the memorization baseline (None: N/|support| of
    the run's rule, as the clocks)."""
    run = run if isinstance(run, Run) else open_run(run)
    ind = seed_indicators(run)
    if ind.sizes["step"] == 0:
        raise TwoclocksError(f"{run.probe_path('samples')} holds no checkpoint steps; run "
                             f"`twoclocks-probe samples {run.path}`")
    base = support_baseline(run.rule, run.config.n_train) if baseline is None else baseline
    r = bootstrap_clocks(ind["step"].values, ind["valid"].values, ind["memorized"].values, base, n_boot=n_boot,
                         seed=seed, level=level, clocks=clocks, indicators=state_indicators(ind))
    r["brackets"] = {name: grid_bracket(r["steps"], r[name]) for name in r["clock_set"].names}
    return r


def run_clock_uncertainty(run, k: int | None = None, acc_threshold: float | None = None,
                          mem_threshold: float | None = None, mem_adaptive: bool | None = None,
                          policy: MemThreshold | str | None = None, n_boot: int = DEFAULT_N_BOOT,
                          seed: int = 0, level: float = DEFAULT_LEVEL, clocks=None) -> xr.Dataset:
    """Clock uncertainty of one run (a directory or an opened Run) from its ``probes/samples.zarr``:
    the point clocks, the seed-bootstrap intervals and reached fractions (:func:`run_bootstrap`) and
    the grid brackets as a small Dataset (scalars, plus the bootstrap counts per evaluated step). The
    definitions: ``clocks`` with the shorthands ``k``, ``acc_threshold``, ``policy`` or
    ``mem_threshold`` / ``mem_adaptive`` (:func:`~twoclocks.probes.clockdefs.clockset_from_options`)."""
    run = run if isinstance(run, Run) else open_run(run)
    cs = clockset_from_options(clocks, k, acc_threshold, mem_threshold, mem_adaptive, policy)
    r = run_bootstrap(run, cs, n_boot, seed, level)
    br = r["brackets"]
    pct = f"{100 * (1 - level) / 2:g}-{100 * (1 + level) / 2:g}%"
    steps_attrs = lambda text: {"long_name": text, "units": "steps"}  # noqa: E731
    frac_attrs = lambda text: {"long_name": text, "units": "1"}  # noqa: E731
    data = {}
    for d in cs.clocks:
        c = d.name
        data[c] = ((), r[c], steps_attrs(f"{c} point estimate ({d.text()}; NaN: status {r[c + '_status']})"))
        data[f"{c}_lo"] = ((), r[f"{c}_lo"], steps_attrs(f"{c} seed-bootstrap {pct} interval, lower end "
                                                         "(+inf: beyond the last evaluated step)"))
        data[f"{c}_hi"] = ((), r[f"{c}_hi"], steps_attrs(f"{c} seed-bootstrap {pct} interval, upper end "
                                                         "(+inf: beyond the last evaluated step)"))
        data[f"{c}_median"] = ((), r[f"{c}_median"], steps_attrs(f"{c} seed-bootstrap median"))
        data[f"{c}_reached"] = ((), r[f"{c}_reached"], frac_attrs(f"fraction of bootstrap replicates "
                                                                  f"reaching {c}"))
        data[f"{c}_bracket_lo"] = ((), br[c][0], steps_attrs(
            f"{c} grid bracket (lo, hi]: the evaluated step before the point estimate (-inf: first step)"))
        data[f"{c}_bracket_hi"] = ((), br[c][1], steps_attrs(f"{c} grid bracket (lo, hi]: the point estimate"))
        data[f"{c}_boot_count"] = ("step", r[f"{c}_counts"], frac_attrs(
            f"number of bootstrap replicates with {c} at this step"))
    data["tau_rule_discarded"] = ((), r["tau_rule_discarded"], frac_attrs(
        "fraction of bootstrap replicates whose tau_rule came after their tau_mem (discarded)"))
    pol = cs.mem_policy()
    data["mem_threshold"] = ((), r["mem_threshold"], frac_attrs(
        f"sample memorization threshold ({pol.formula() if pol else cs['tau_mem'].text()})"))
    ds = xr.Dataset(data, coords={"step": ("step", r["steps"], {"long_name": "evaluated checkpoint step",
                                                                 "units": "steps"})})
    ds.attrs.update({
        "probe": "clock_uncertainty", "twoclocks_version": twoclocks.__version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(run.path), "method": METHOD, "n_boot": int(n_boot), "bootstrap_seed": int(seed),
        "level": float(level), "n_seeds": r["n_seeds"], "k": r["k"], "acc_threshold": r["acc_threshold"],
        "tau_rule_status": r["tau_rule_status"], "tau_mem_status": r["tau_mem_status"],
        **(pol.attrs(r["mem_baseline"]) if pol else {}),
        "mem_threshold_rule": pol.formula() if pol else cs["tau_mem"].text(), **cs.attrs()})
    return ds
