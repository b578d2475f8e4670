"""Across-run figures: the clocks against G and N (with the power-law fit), and the memorization
collapse in steps per example."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import xarray as xr
from twoclocks import TwoclocksError
from twoclocks.plotting.style import (
    _seq_colors,
    _figure,
    _legend_outside,
    _need,
    _root,
    _scalar,
    _steps,
    _styled,
    _trained,
    label,
    plain_log_ticks,
    step_axis,
)


# ------------------------------------------------------------------------------------------ across runs
def _coord(ds, name):
    """A per-run config value: the coord, or (collect drops constant ones) attrs['constant_config']."""
    if name in ds.variables:
        return np.asarray(ds[name].values)
    try:
        const = json.loads(ds.attrs.get("constant_config", "{}"))
    except (TypeError, ValueError):
        const = {}
    if name in const and "run" in ds.sizes:
        return np.full(ds.sizes["run"], const[name])
    return None


def _fit_members(clocks) -> tuple[np.ndarray, np.ndarray]:
    """(members (fit, run) bool, pooled (fit,) bool) from collect's fit_member / fit_pooled_over or the
    clocks Dataset's fit_index."""
    n_run = clocks.sizes["run"]
    n_fit = clocks.sizes.get("fit", 0) if "fit_c" in clocks else 0
    if "fit_member" in clocks:
        m = clocks["fit_member"].transpose("fit", "run").values.astype(bool)
    elif "fit_index" in clocks:
        m = np.arange(n_fit)[:, None] == clocks["fit_index"].values[None, :]
    else:
        m = np.zeros((0, n_run), bool)
    pooled = (np.array([bool(str(p)) for p in clocks["fit_pooled_over"].values]) if "fit_pooled_over" in clocks
              else np.zeros(len(m), bool))
    return m[:n_fit], pooled[:n_fit]


@_styled
def plot_clock_scaling(clocks: xr.Dataset, fig=None):
    """tau_rule and tau_mem across runs: vs the group size G (semilog; colour: N) and vs the train
    set size N (log-log; colour: power-law fit group) with the fits tau_mem = c N^alpha as dashed
    lines (paper Figs. 2C, 2D, 10). ``clocks``: the Dataset of :func:`twoclocks.probes.clocks.
    compute_clocks` (or the sweep's collect), dim ``run`` with coords ``n_train`` and (for the first
    panel) ``group``; fits from its ``fit_*`` variables when present."""
    import matplotlib.lines as mlines
    _need(clocks, ["tau_rule", "tau_mem"], "plot_clock_scaling")
    tr, tm = clocks["tau_rule"].values.astype(float), clocks["tau_mem"].values.astype(float)
    n = _coord(clocks, "n_train")
    if n is None:
        raise TwoclocksError("plot_clock_scaling needs the runs' n_train (a coord, or attrs constant_config)")
    n = n.astype(float)
    g = _coord(clocks, "group")
    fig = _figure(fig, (5.2 * (2 if g is not None else 1) + 0.4, 4.6))
    axes = np.atleast_1d(fig.subplots(1, 2 if g is not None else 1))
    kinds = [mlines.Line2D([], [], color="0.3", marker="o", mfc="none", mew=1.5, ls="none"),
             mlines.Line2D([], [], color="0.3", marker="s", ls="none")]
    kind_labels = ["tau_rule", "tau_mem"]

    def points(ax, x, m, col):
        ax.plot(x[m], tr[m], ls="none", marker="o", mfc="none", mec=col, mew=1.5, ms=7)
        ax.plot(x[m], tm[m], ls="none", marker="s", color=col, ms=6)

    def below(ax, handles, labels):
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, fontsize="small")
    missing = int((~np.isfinite(tm)).sum())
    note = f"\n({missing} of {len(tm)} runs without tau_mem: not shown)" if missing else ""
    if g is not None:
        ax = axes[0]
        ns = np.unique(n)
        handles, labels = list(kinds), list(kind_labels)
        for col, nv in zip(_palette(len(ns)), ns):
            points(ax, g.astype(float), n == nv, col)
            handles.append(mlines.Line2D([], [], color=col, marker="s", ls="none"))
            labels.append(f"N = {int(nv)}")
        gv = np.unique(g.astype(float))
        ax.set_xticks(gv, [f"{x:g}" for x in gv])
        ax.set_xlabel(label(clocks.get("group"), "group size G"))
        ax.set_ylabel("onset step")
        _log_if_positive(ax, "y", np.r_[tr, tm])
        ax.set_title("clocks vs rule complexity" + note)
        below(ax, handles, labels)
    ax = axes[-1]
    members, pooled = _fit_members(clocks)
    own = np.full(len(n), -1)  # each run's colour: its first unpooled fit group
    for k in np.flatnonzero(~pooled)[::-1]:
        own[members[k]] = k
    handles, labels = list(kinds), list(kind_labels)

    def fit_line(k, col, ls):
        f = clocks.isel(fit=k)
        name = str(f["fit_label"].item()) if "fit_label" in f else f"fit {k}"
        c, a = float(f["fit_c"]), float(f["fit_alpha"])
        m = members[k] & np.isfinite(n) & (n > 0)
        if np.isfinite(c) and np.isfinite(a) and m.any():
            xs = np.geomspace(n[m].min(), n[m].max(), 20)
            ax.plot(xs, c * xs ** a, color=col, lw=1.3, ls=ls)
            r2 = float(f["fit_r2"]) if "fit_r2" in f else np.nan
            name += f": α = {a:.2f}, R² = {r2:.2f}"
        return name
    groups = sorted(set(own.tolist()))
    for k, col in zip(groups, _palette(len(groups))):
        points(ax, n, own == k, col)
        name = fit_line(k, col, "--") if k >= 0 else "no fit"
        handles.append(mlines.Line2D([], [], color=col, marker="s", ls="--" if k >= 0 else "none"))
        labels.append(textwrap.fill(name, 48))
    for k in np.flatnonzero(pooled):
        labels.append(textwrap.fill(fit_line(k, "black", "-."), 48))
        handles.append(mlines.Line2D([], [], color="black", ls="-."))
    _log_if_positive(ax, "x", n)
    _log_if_positive(ax, "y", np.r_[tr, tm])
    if ax.get_xscale() == "log":
        import matplotlib.ticker as mticker
        nv = np.unique(n[n > 0])
        ax.xaxis.set_minor_locator(mticker.NullLocator())
        ax.set_xticks(nv, [f"{int(x)}" for x in nv])
    ax.set_xlabel(label(clocks.get("n_train"), "train set size N"))
    ax.set_ylabel("onset step")
    ax.set_title("clocks vs data (dashed: tau_mem = c N^α)" + note)
    below(ax, handles, labels)
    return _root(fig)


def _palette(n):
    import seaborn as sns
    return sns.color_palette("colorblind", n) if n <= 10 else sns.color_palette("husl", n)


def _log_if_positive(ax, which, values):
    v = np.asarray(values, float)
    if (np.isfinite(v) & (v > 0)).any():
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")


def _run_meta(samples: xr.Dataset, clocks, i: int) -> dict:
    """N, batch and G of the i-th run: from the cube's run_config attrs, else the clocks coords."""
    cfg = {}
    if "run_config" in samples.attrs:
        try:
            cfg = json.loads(samples.attrs["run_config"])
        except (TypeError, ValueError):
            cfg = {}
    out = {}
    for key in ("n_train", "batch", "group"):
        if key in cfg:
            out[key] = cfg[key]
        elif clocks is not None and _coord(clocks, key) is not None:
            out[key] = _coord(clocks, key)[i].item()
    if "n_train" not in out or "batch" not in out:
        raise TwoclocksError(f"run {i}: cannot tell its N and batch size (no run_config attrs in the samples cube "
                             "and no n_train / batch coords in the clocks Dataset)")
    return out


@_styled
def plot_memorization_collapse(clocks, samples, fig=None):
    """Sample memorization vs step (left) and vs (step + 1) x batch / N, the training examples seen per
    train sample (right), one line per run coloured by N (paper Figs. 2H, 8): runs of different N
    should collapse on the right. ``samples``: the runs' samples cubes; ``clocks`` (optional): the
    clocks Dataset of the same runs in the same order (memorization threshold; N and batch when the
    cubes lack run_config)."""
    import matplotlib.lines as mlines
    samples = list(samples)
    if not samples:
        raise TwoclocksError("plot_memorization_collapse needs at least one samples cube")
    metas = [_run_meta(s, clocks, i) for i, s in enumerate(samples)]
    ns = sorted({m["n_train"] for m in metas})
    gs = sorted({m.get("group") for m in metas}, key=str)
    cols = dict(zip(ns, _seq_colors(len(ns), "viridis")))
    styles = dict(zip(gs, ["-", "--", ":", "-."] * 4))
    fig = _figure(fig, (11.0, 4.0))
    ax, ax2 = fig.subplots(1, 2, sharey=True)
    all_steps = []
    for s, m in zip(samples, metas):
        _need(s, ["sample_mem"], "plot_memorization_collapse")
        d = _trained(s)
        st = _steps(d)
        all_steps.append(st)
        col, ls = cols[m["n_train"]], styles[m.get("group")]
        ax.plot(st, d["sample_mem"], color=col, ls=ls, lw=1.8)
        ax2.plot((st + 1) * m["batch"] / m["n_train"], d["sample_mem"], color=col, ls=ls, lw=1.8)
        base = _scalar(d, "uniform_valid_sample_mem")
        if np.isfinite(base):
            for a in (ax, ax2):
                a.axhline(base, color=col, lw=1.1, ls=(0, (1, 2)))
    step_axis(ax, np.concatenate(all_steps))
    ax2.set_xscale("log")
    plain_log_ticks(ax2.xaxis, ax2.get_xlim())
    ax2.set_xlabel("examples seen per train sample,\n(step + 1) × batch / N")
    thr = float(np.nanmean(clocks["mem_threshold"].values)) if clocks is not None and "mem_threshold" in clocks \
        else 0.1
    for a in (ax, ax2):
        a.axhline(thr, color="k", lw=0.8, ls="--")
    ax.set_ylabel(label(samples[0]["sample_mem"], "sample memorization"))
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("vs step")
    ax2.set_title("vs steps per training example")
    handles = [mlines.Line2D([], [], color=cols[nv], lw=2) for nv in ns]
    labels = [f"N = {nv}" for nv in ns]
    if len(gs) > 1:
        handles += [mlines.Line2D([], [], color="0.3", ls=styles[gv]) for gv in gs]
        labels += [f"G = {gv}" for gv in gs]
    handles += [mlines.Line2D([], [], color="k", lw=0.8, ls="--"), mlines.Line2D([], [], color="0.3", lw=1.1,
                                                                                  ls=(0, (1, 2)))]
    labels += [f"threshold {thr:g}", "uniform-valid\nbaseline N/|valid|"]
    _legend_outside(fig, handles, labels)
    return _root(fig)


