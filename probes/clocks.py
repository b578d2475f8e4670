"""The two clocks (SPEC.md, "The two clocks"), per run and across runs.

- tau_rule: the first evaluated step at which sample accuracy >= ``acc_threshold`` (0.9), sustained:
  it holds at that evaluation and the k-1 following ones (k = 3 by default: a transient spike of one
  or two evaluations does not count).
- tau_mem: the first step at which sample memorization > its threshold, sustained likewise. The
  threshold is ``mem_threshold`` (0.1, the paper's Fig. 4) or, with ``mem_adaptive``, the adaptive
  threshold  thr = b + mem_threshold * (1 - b), where b = N / |valid| is the sample memorization of a
  uniform-valid sampler: "mem_threshold of the way from the rule-only baseline to full memorization".
  It equals the fixed threshold when b -> 0 and stays above b however large b is (a model that only
  learned the rule already memorizes a fraction b; with b >= 0.1 the fixed threshold would time rule
  learning instead of memorization). Where |valid| is unknown, the fixed threshold is used.
- A tau_rule later than tau_mem is discarded (paper) and reported as such. Innovation window =
  [tau_rule, tau_mem]; ``window`` is its length tau_mem - tau_rule in steps.
- A clock never reached is NaN with a status: ``never`` (not above threshold at the end), or
  ``pending`` (above threshold at the last j < k evaluations: more checkpoints may confirm it).
- Across runs, tau_mem = c N^alpha is fitted by least squares on log tau_mem vs log N
  (scipy.stats.linregress) per group of runs whose configs are equal in everything but N, the seed
  and bookkeeping fields (:data:`NOT_GROUPING`), plus any fields named in ``pool``.

Loss-based clocks: when a run has ``probes/dsm_spectrum.zarr`` holding ``tau_rule_loss`` /
``tau_mem_loss`` (scalar variables or attrs, written by the DSM probe), they are read and shown
beside the sample clocks (:func:`loss_clocks`).
"""
from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np
import xarray as xr

import twoclocks
from twoclocks import TwoclocksError

__all__ = ["sustained_onset", "mem_threshold_for", "clocks_from_curves", "loss_clocks", "run_clocks",
           "compute_clocks", "fit_power_law", "format_clocks_table", "NOT_GROUPING", "LOSS_CLOCKS"]

DEFAULT_K = 3
DEFAULT_ACC_THRESHOLD = 0.9
DEFAULT_MEM_THRESHOLD = 0.1
LOSS_CLOCKS = ("tau_rule_loss", "tau_mem_loss")
#: config fields that do not separate power-law groups (besides n_train): seeds and bookkeeping
NOT_GROUPING = ("n_train", "seed", "data_seed", "steps", "device", "bf16", "log_every", "resume_every",
                "saves_per_decade", "n_heldout", "n_hypercube", "n_noise")


def sustained_onset(steps, values, threshold: float, k: int = DEFAULT_K, strict: bool = False):
    """(step, status) of the first evaluation i with values[i..i+k-1] all >= threshold (> with
    ``strict``); NaN values count as below. status: 'reached', 'never', or 'pending: ...' when only
    the last j < k evaluations are above (not yet sustained)."""
    steps = np.asarray(steps)
    v = np.asarray(values, dtype=float)
    if k < 1:
        raise TwoclocksError(f"--k must be at least 1, got {k}")
    above = (v > threshold) if strict else (v >= threshold)
    above &= ~np.isnan(v)
    if len(v) >= k:
        run = np.convolve(above.astype(int), np.ones(k, int), mode="valid")  # window sums
        hit = np.flatnonzero(run == k)
        if hit.size:
            return float(steps[hit[0]]), "reached"
    tail = len(above) - (np.flatnonzero(~above)[-1] + 1 if (~above).any() else 0)
    if tail:
        return np.nan, f"pending: above threshold at the last {tail} of {k} evaluations needed"
    return np.nan, "never"


def mem_threshold_for(baseline: float, mem_threshold: float = DEFAULT_MEM_THRESHOLD,
                      adaptive: bool = False) -> float:
    """The memorization threshold: fixed, or adaptive b + t (1 - b) above the uniform-valid
    baseline b (module docstring). A NaN baseline falls back to the fixed threshold."""
    if adaptive and np.isfinite(baseline):
        return float(baseline + mem_threshold * (1.0 - baseline))
    return float(mem_threshold)


def clocks_from_curves(steps, sample_acc, sample_mem, baseline: float = np.nan, k: int = DEFAULT_K,
                       acc_threshold: float = DEFAULT_ACC_THRESHOLD,
                       mem_threshold: float = DEFAULT_MEM_THRESHOLD, mem_adaptive: bool = False) -> dict:
    """Both clocks and the innovation window from one run's curves (module docstring)."""
    steps = np.asarray(steps)
    order = np.argsort(steps)
    steps, acc, mem = steps[order], np.asarray(sample_acc, float)[order], np.asarray(sample_mem, float)[order]
    thr = mem_threshold_for(baseline, mem_threshold, mem_adaptive)
    tau_rule, rule_status = sustained_onset(steps, acc, acc_threshold, k)
    tau_mem, mem_status = sustained_onset(steps, mem, thr, k, strict=True)
    tau_rule_raw = tau_rule
    if np.isfinite(tau_rule) and np.isfinite(tau_mem) and tau_rule > tau_mem:
        tau_rule, rule_status = np.nan, "discarded: after tau_mem"
    last = float(steps[-1]) if len(steps) else np.nan
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
        notes.append(f"uniform-valid memorization {baseline:.3g} >= threshold {thr:.3g}: tau_mem may time rule "
                     "learning (use --mem-adaptive)")
    elif np.isfinite(baseline) and not mem_adaptive and baseline >= thr / 2:
        notes.append(f"uniform-valid memorization {baseline:.3g} is close to the threshold {thr:.3g}")
    return {"tau_rule": tau_rule, "tau_rule_status": rule_status, "tau_rule_raw": tau_rule_raw,
            "tau_mem": tau_mem, "tau_mem_status": mem_status, "window": window, "window_status": wstatus,
            "mem_threshold": thr, "mem_baseline": float(baseline), "last_step": last,
            "n_evals": int(len(steps)), "notes": "; ".join(notes)}


def loss_clocks(run) -> dict:
    """Loss-based clocks of a run from ``probes/dsm_spectrum.zarr`` (scalar variables or attrs
    ``tau_rule_loss`` / ``tau_mem_loss``), NaN where absent."""
    out = {name: np.nan for name in LOSS_CLOCKS}
    path = run.probe_path("dsm_spectrum")
    if not path.exists():
        return out
    try:
        ds = xr.open_zarr(path, consolidated=True)
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
    ds = xr.open_zarr(path, consolidated=True)
    missing = [v for v in ("sample_acc", "sample_mem") if v not in ds]
    if missing:
        raise TwoclocksError(f"{path} lacks {', '.join(missing)}; recompute it with "
                             f"`twoclocks-probe samples {run.path} --force`")
    return ds.sel(step=ds["step"] >= 0)


def run_clocks(run, k: int = DEFAULT_K, acc_threshold: float = DEFAULT_ACC_THRESHOLD,
               mem_threshold: float = DEFAULT_MEM_THRESHOLD, mem_adaptive: bool = False) -> dict:
    """The clocks of one run (a directory or an opened Run) from its samples.zarr, plus its
    loss-based clocks when the DSM probe stored them."""
    from twoclocks.run import Run, open_run
    run = run if isinstance(run, Run) else open_run(run)
    ds = _samples_cube(run)
    if ds.sizes["step"] == 0:
        raise TwoclocksError(f"{run.probe_path('samples')} holds no checkpoint steps; run "
                             f"`twoclocks-probe samples {run.path}`")
    base = float(ds["uniform_valid_sample_mem"]) if "uniform_valid_sample_mem" in ds else np.nan
    out = clocks_from_curves(ds["step"].values, ds["sample_acc"].values, ds["sample_mem"].values, base, k,
                             acc_threshold, mem_threshold, mem_adaptive)
    out.update(loss_clocks(run))
    return out


def fit_power_law(n, tau) -> dict:
    """tau = c N^alpha by linear regression of log tau on log N (scipy.stats.linregress): c, alpha,
    r2 and n (the number of points used: finite, positive). NaN when fewer than 2 distinct N."""
    from scipy.stats import linregress
    n, tau = np.asarray(n, float), np.asarray(tau, float)
    ok = np.isfinite(n) & np.isfinite(tau) & (n > 0) & (tau > 0)
    if len(np.unique(n[ok])) < 2:
        return {"c": np.nan, "alpha": np.nan, "r2": np.nan, "n": int(ok.sum())}
    fit = linregress(np.log(n[ok]), np.log(tau[ok]))
    return {"c": float(np.exp(fit.intercept)), "alpha": float(fit.slope), "r2": float(fit.rvalue ** 2),
            "n": int(ok.sum())}


def _coord_value(v):
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True)
    return "none" if v is None else v


def compute_clocks(run_dirs, k: int = DEFAULT_K, acc_threshold: float = DEFAULT_ACC_THRESHOLD,
                   mem_threshold: float = DEFAULT_MEM_THRESHOLD, mem_adaptive: bool = False,
                   pool=(), out: str | Path | None = None) -> xr.Dataset:
    """Clocks of several runs as a Dataset with dim ``run`` (the run directories as its coordinate,
    every config value as a coordinate), and the power-law fits of tau_mem vs N (dim ``fit``).
    ``pool``: config fields to pool over in the fits (e.g. ('group',) as the paper's Table 4).
    Writes the Dataset to ``out`` (zarr) when given."""
    from twoclocks.run import open_run
    from twoclocks.training.config import TrainConfig
    if not run_dirs:
        raise TwoclocksError("give at least one run directory")
    if not (0 < acc_threshold <= 1) or not (0 <= mem_threshold < 1):
        raise TwoclocksError(f"thresholds must be in (0, 1]: got --acc-threshold {acc_threshold}, "
                             f"--mem-threshold {mem_threshold}")
    fields = list(TrainConfig.__dataclass_fields__)
    bad = [p for p in pool if p not in fields]
    if bad:
        raise TwoclocksError(f"--pool {', '.join(bad)}: not a config field; choose from {', '.join(fields)}")
    runs = [open_run(d) for d in run_dirs]
    rows = [run_clocks(r, k, acc_threshold, mem_threshold, mem_adaptive) for r in runs]
    cfgs = [r.config.to_dict() for r in runs]

    def col(key, dtype=float):
        return np.array([row[key] for row in rows], dtype=dtype)
    step_attrs = lambda name: {"long_name": name, "units": "steps"}  # noqa: E731
    data = {
        "tau_rule": ("run", col("tau_rule"), step_attrs(f"rule clock: first step with sample accuracy >= "
                                                        f"{acc_threshold} for {k} evaluations (NaN: see status)")),
        "tau_mem": ("run", col("tau_mem"), step_attrs(f"memorization clock: first step with sample "
                                                      f"memorization > threshold for {k} evaluations")),
        "window": ("run", col("window"), step_attrs("innovation window length tau_mem - tau_rule")),
        "tau_rule_raw": ("run", col("tau_rule_raw"), step_attrs("tau_rule before discarding it when after "
                                                                 "tau_mem")),
        "tau_rule_status": ("run", col("tau_rule_status", str), {"long_name": "tau_rule status"}),
        "tau_mem_status": ("run", col("tau_mem_status", str), {"long_name": "tau_mem status"}),
        "window_status": ("run", col("window_status", str), {"long_name": "innovation window status"}),
        "mem_threshold": ("run", col("mem_threshold"), {"long_name": "sample memorization threshold used",
                                                        "units": "1"}),
        "mem_baseline": ("run", col("mem_baseline"), {"long_name": "uniform-valid sample memorization N/|valid|",
                                                      "units": "1"}),
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

    # power-law fits per group of runs equal in everything but N, seeds, bookkeeping and `pool`
    skip = set(NOT_GROUPING) | set(pool)
    keys = [tuple((f, json.dumps(_coord_value(c[f]))) for f in fields if f not in skip) for c in cfgs]
    groups = list(dict.fromkeys(keys))
    varying = [f for f in fields if f not in skip and len({dict(kk)[f] for kk in groups}) > 1]
    fits, labels, index = [], [], np.full(len(runs), -1)
    for key in groups:
        members = [i for i, kk in enumerate(keys) if kk == key]
        n = np.array([cfgs[i]["n_train"] for i in members], float)
        if len(np.unique(n)) < 2:
            continue
        index[members] = len(fits)
        fits.append(fit_power_law(n, col("tau_mem")[members]))
        labels.append(", ".join(f"{f}={json.loads(dict(key)[f])}" for f in varying) or "all runs")
    ds["fit_index"] = ("run", index, {"long_name": "index of the run's power-law fit group (-1: none)",
                                      "units": "1"})
    ds = ds.assign_coords(fit=("fit", np.arange(len(fits)), {"long_name": "power-law fit group"}))
    ds["fit_label"] = ("fit", np.array(labels, dtype=str), {"long_name": "what the group's runs share"})
    for key, long in (("c", "prefactor c of tau_mem = c N^alpha"), ("alpha", "exponent alpha of tau_mem = c N^alpha"),
                      ("r2", "R^2 of the log-log fit"), ("n", "number of runs in the fit")):
        ds[f"fit_{key}"] = ("fit", np.array([f[key] for f in fits], int if key == "n" else float),
                            {"long_name": long, "units": "steps" if key == "c" else "1"})
    ds.attrs.update({
        "probe": "clocks", "twoclocks_version": twoclocks.__version__,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "k": k, "acc_threshold": acc_threshold, "mem_threshold": mem_threshold, "mem_adaptive": int(mem_adaptive),
        "mem_threshold_rule": ("adaptive: b + mem_threshold * (1 - b), b = N/|valid|" if mem_adaptive
                               else "fixed"),
        "fit_pooled_over": json.dumps(sorted(skip)),
        "source_steps": json.dumps({str(r.path): int(row["n_evals"]) for r, row in zip(runs, rows)}),
    })
    if out is not None:
        from twoclocks.store import write_dataset
        out = Path(out)
        if out.suffix != ".zarr":
            raise TwoclocksError(f"--out {out}: give a path ending in .zarr")
        write_dataset(ds, out)
    return ds


def _fmt(v):
    return "-" if not np.isfinite(v) else f"{v:g}"


def format_clocks_table(ds: xr.Dataset) -> str:
    """The clocks Dataset as a plain-text table (one line per run), then the fits."""
    from twoclocks.training.config import TrainConfig
    fields = [f for f in TrainConfig.__dataclass_fields__ if f in ds.coords
              and f not in ("device", "data_seed") and len(np.unique(ds[f].values)) > 1]
    loss = [n for n in LOSS_CLOCKS if n in ds]
    head = ["run", *fields, "tau_rule", "tau_mem", "window", *loss, "mem_thr", "status"]
    rows = []
    for i in range(ds.sizes["run"]):
        d = ds.isel(run=i)
        status = []
        if d.tau_rule_status.item() != "reached":
            status.append(f"tau_rule {d.tau_rule_status.item()}")
        if d.tau_mem_status.item() != "reached":
            status.append(f"tau_mem {d.tau_mem_status.item()}")
        if d.window_status.item() != "open":
            status.append(f"window {d.window_status.item()}")
        if d.notes.item():
            status.append(d.notes.item())
        if np.isfinite(d.tau_rule_raw) and not np.isfinite(d.tau_rule):
            status.append(f"(raw tau_rule {float(d.tau_rule_raw):g})")
        rows.append([Path(str(d.run.item())).name, *[str(d[f].item()) for f in fields],
                     _fmt(float(d.tau_rule)), _fmt(float(d.tau_mem)), _fmt(float(d.window)),
                     *[_fmt(float(d[n])) for n in loss], f"{float(d.mem_threshold):.3g}",
                     "; ".join(status) or "ok"])
    widths = [max(len(r[j]) for r in [head, *rows]) for j in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in [head, *rows]]
    for j in range(ds.sizes.get("fit", 0)):
        f = ds.isel(fit=j)
        lines.append(f"fit tau_mem = c N^alpha [{f.fit_label.item()}]: c = {float(f.fit_c):.3g}, "
                     f"alpha = {float(f.fit_alpha):.3g}, R^2 = {float(f.fit_r2):.3g}, n = {int(f.fit_n)}")
    return "\n".join(lines)
