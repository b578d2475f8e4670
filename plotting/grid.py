"""Figures of a sweep's runs over its axes, from its clocks / collect Dataset (dim ``run``, the grid
axes as coords): final accuracy and memorization vs G (paper Fig. 1B-C), clock heatmaps over G x
architecture (Fig. 4B), clocks by rule family (Fig. 21), clocks vs learning rate or weight decay with
the innovation window (Figs. 24-27). Each run is a point; seeds of a grid point are drawn side by
side; a clock's seed-bootstrap interval ([CLOCK_lo, CLOCK_hi], when the Dataset has it) is a bar."""
from __future__ import annotations

import numpy as np
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.plotting.style import (
    BLUE,
    ORANGE,
    censored_at,
    constant_text,
    figure_and_ax,
    interval_bars,
    label,
    legend_outside,
    log_if_positive,
    make_figure,
    palette,
    plain_log_ticks,
    require_vars,
    root_figure,
    run_floats,
    run_series,
    run_values,
    styled,
    wrapped_suptitle,
)

__all__ = ["plot_final_vs_group", "plot_clock_heatmap", "plot_clocks_by_rule", "plot_clocks_vs_hparam",
           "run_categories"]

CLOCK_STYLE = {"tau_rule": dict(marker="o", color=BLUE), "tau_mem": dict(marker="s", color=ORANGE)}


def _group(clocks, what: str) -> np.ndarray:
    g = run_values(clocks, "group")
    if g is None:
        raise TwoclocksError(f"{what} needs the runs' group size G (a coord, or attrs constant_config)")
    return g.astype(float)


def run_categories(clocks: xr.Dataset, first: tuple[str, ...], exclude: tuple[str, ...] = ("seed",)
                   ) -> tuple[np.ndarray, list[str]]:
    """(category index per run, label per category): the runs grouped by the values of ``first`` (e.g.
    rule and rule_params) and of every other axis that varies, except ``exclude``; categories in the
    order of first appearance."""
    parts = []
    for name in first:
        v = run_values(clocks, name)
        if v is not None and (len(np.unique(v.astype(str))) > 1 or name == first[0]):
            parts.append((name, v.astype(str)))
    idx, names = run_series(clocks, tuple(exclude) + tuple(first))
    keys = []
    for i in range(clocks.sizes["run"]):
        head = " ".join(v[i] if k in ("rule", "arch", "model") else f"{k} {v[i]}" for k, v in parts)
        keys.append(head + (f"\n{names[idx[i]]}" if names[idx[i]] else ""))
    labels = list(dict.fromkeys(keys))
    return np.array([labels.index(k) for k in keys], dtype=int), labels


# ------------------------------------------------------------------------------------------ Fig. 1B-C
@styled
def plot_final_vs_group(clocks: xr.Dataset, fig=None):
    """End-of-training rule accuracy (solid, circles) and memorization (dashed, squares) against the
    group size G, at the sample level (left, ``final_sample_acc`` / ``final_sample_mem``) and the group
    level (right, ``final_group_*``), one colour per value of the other axes that vary (model size,
    architecture, N ...; paper Fig. 1B-C). Lines join the mean over seeds at each G; each run is a
    faint point. ``clocks``: collect's Dataset."""
    import matplotlib.lines as mlines
    require_vars(clocks, ["final_sample_acc", "final_sample_mem"], "plot_final_vs_group")
    g = _group(clocks, "plot_final_vs_group")
    idx, names = run_series(clocks, ("group", "seed"))
    cols = palette(len(names))
    levels = [lv for lv in ("sample", "group") if f"final_{lv}_acc" in clocks]
    fig = make_figure(fig, (4.6 * len(levels) + 2.2, 4.0))
    axes = np.atleast_1d(fig.subplots(1, len(levels), sharey=True))
    gv = np.unique(g)
    for ax, level in zip(axes, levels):
        for s, col in enumerate(cols):
            m = idx == s
            for var, ls, marker in (("acc", "-", "o"), ("mem", "--", "s")):
                y = run_floats(clocks, f"final_{level}_{var}")
                xs = np.array([x for x in gv if (m & (g == x)).any()])
                mean = np.array([np.nanmean(y[m & (g == x)]) if np.isfinite(y[m & (g == x)]).any() else np.nan
                                 for x in xs])
                ax.plot(xs, mean, ls=ls, marker=marker, color=col, lw=1.8, ms=6, gid=f"final_{level}_{var}")
                ax.plot(g[m], y[m], ls="none", marker=marker, color=col, alpha=0.35, ms=4)
        ax.set_xticks(gv, [f"{x:g}" for x in gv])
        ax.set_xlabel("group size G")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{level} level")
    axes[0].set_ylabel("fraction of samples at the last step")
    handles = [mlines.Line2D([], [], color="0.3", ls="-", marker="o"), mlines.Line2D([], [], color="0.3", ls="--",
                                                                                    marker="s")]
    labels = ["rule accuracy", "memorization"]
    if len(names) > 1 or names[0]:
        handles += [mlines.Line2D([], [], color=c, lw=6) for c in cols]
        labels += names
    legend_outside(fig, handles, labels, fontsize="small")
    sub = constant_text(clocks, ("group",))
    wrapped_suptitle(fig, "Final accuracy and memorization vs G (paper Fig. 1B-C)" + (f"\n{sub}" if sub else ""))
    return root_figure(fig)


# ------------------------------------------------------------------------------------------ Fig. 4B
def _row_axis(clocks, rows):
    if rows is not None:
        return rows
    for name in ("arch", "model", "depth"):
        v = run_values(clocks, name)
        if v is not None and len(np.unique(v.astype(str))) > 1:
            return name
    return "arch"


@styled
def plot_clock_heatmap(clocks: xr.Dataset, rows: str | None = None, clock_names=("tau_rule", "tau_mem"),
                       fig=None):
    """One heatmap per clock over G (columns) x architecture (rows; or ``rows``: model, depth, ...),
    colour the clock on a log scale (paper Fig. 4B). A cell is the geometric mean over its runs that
    reached the clock (seeds, and any other axis that varies), written in the cell with the count
    reached / runs; a cell none of whose runs reached the clock is grey, marked '>' with the last step
    evaluated."""
    from matplotlib.colors import LogNorm
    require_vars(clocks, list(clock_names), "plot_clock_heatmap")
    g = _group(clocks, "plot_clock_heatmap")
    rows = _row_axis(clocks, rows)
    r = run_values(clocks, rows)
    if r is None:
        raise TwoclocksError(f"plot_clock_heatmap: the runs have no {rows!r} (a coord, or attrs constant_config)")
    r = r.astype(str)
    gv, rv = np.unique(g), list(dict.fromkeys(r))
    last = run_floats(clocks, "last_step")
    fig = make_figure(fig, (1.0 * len(gv) * len(clock_names) + 2.5, 0.7 * len(rv) + 2.0))
    axes = np.atleast_1d(fig.subplots(1, len(clock_names)))
    vals = np.concatenate([run_floats(clocks, c) for c in clock_names])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    norm = LogNorm(vals.min(), max(vals.max(), vals.min() * 1.0001)) if vals.size else LogNorm(1, 10)
    mesh = None
    for ax, clock in zip(axes, clock_names):
        tau = run_floats(clocks, clock)
        grid = np.full((len(rv), len(gv)), np.nan)
        for i, rr in enumerate(rv):
            for j, gg in enumerate(gv):
                m = (r == rr) & (g == gg)
                ok = m & np.isfinite(tau) & (tau > 0)
                if ok.any():
                    grid[i, j] = np.exp(np.mean(np.log(tau[ok])))
                if m.any():
                    text = (f"{grid[i, j]:.3g}\n{ok.sum()}/{m.sum()}" if ok.any()
                            else f">{np.nanmax(last[m]):.3g}" if np.isfinite(last[m]).any() else "–")
                    ax.text(j, i, text, ha="center", va="center", fontsize=7,
                            color="white" if ok.any() and norm(grid[i, j]) < 0.5 else "black")
        ax.set_facecolor("0.85")
        mesh = ax.imshow(np.ma.masked_invalid(grid), norm=norm, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(gv)), [f"{x:g}" for x in gv])
        ax.set_yticks(range(len(rv)), rv)
        ax.set_xlabel("group size G")
        ax.grid(False)
        ax.set_title(clock)
    axes[0].set_ylabel(rows)
    cb = fig.colorbar(mesh, ax=list(axes), shrink=0.9)
    cb.set_label("onset step (geometric mean over runs)")
    sub = constant_text(clocks, ("group", rows))
    wrapped_suptitle(fig, f"Clocks over G x {rows} (paper Fig. 4B)" + (f"\n{sub}" if sub else ""))
    return root_figure(fig)


# ------------------------------------------------------------------------------------------ Fig. 21
def _clock_points(ax, x, clocks, clock, col=None, label_it=True):
    """One clock of every run at ``x``: reached as filled markers, not reached as open up-triangles at the
    step it is known to exceed, its interval as a bar; returns the y values drawn."""
    st = dict(CLOCK_STYLE[clock])
    if col is not None:
        st["color"] = col
    tau = run_floats(clocks, clock)
    cen = censored_at(clocks, clock)
    ok = np.isfinite(tau)
    ax.plot(x[ok], tau[ok], ls="none", ms=7, gid=clock, **st)
    c = ~ok & np.isfinite(cen)
    ax.plot(x[c], cen[c], ls="none", marker="^", mfc="none", mec=st["color"], mew=1.5, ms=8, gid=f"{clock}_censored")
    interval_bars(ax, x, clocks, clock, st["color"])
    return np.r_[tau[ok], cen[c]]


@styled
def plot_clocks_by_rule(clocks: xr.Dataset, ax=None):
    """tau_rule (circles) and tau_mem (squares) per rule family and its parameters (paper Fig. 21), one
    column per category (the rule, its rule_params when they vary, and any other axis that varies but
    the seed); seeds side by side; a clock not reached is an open triangle at the step it is known to
    exceed; bars: the seed-bootstrap intervals the Dataset carries."""
    import matplotlib.lines as mlines
    require_vars(clocks, ["tau_rule", "tau_mem"], "plot_clocks_by_rule")
    cat, names = run_categories(clocks, ("rule", "rule_params"))
    fig, ax = figure_and_ax(ax, (max(5.0, 1.1 * len(names) + 2.5), 4.4))
    x = cat.astype(float)
    for c in range(len(names)):  # runs of a category side by side
        m = np.flatnonzero(cat == c)
        x[m] += (np.arange(len(m)) - (len(m) - 1) / 2) * min(0.12, 0.6 / max(len(m), 1))
    ys = [_clock_points(ax, x - 0.04, clocks, "tau_rule"), _clock_points(ax, x + 0.04, clocks, "tau_mem")]
    log_if_positive(ax, "y", np.concatenate(ys))
    ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 4 else 0,
                  ha="right" if len(names) > 4 else "center", fontsize="small")
    ax.set_ylabel("onset step")
    ax.set_xlim(-0.6, len(names) - 0.4)
    sub = constant_text(clocks, ("rule",))
    ax.set_title("Clocks by rule family (paper Fig. 21)" + (f"\n{sub}" if sub else ""), fontsize="medium")
    handles = [mlines.Line2D([], [], ls="none", ms=7, **CLOCK_STYLE["tau_rule"]),
               mlines.Line2D([], [], ls="none", ms=7, **CLOCK_STYLE["tau_mem"]),
               mlines.Line2D([], [], ls="none", marker="^", mfc="none", mec="0.3", ms=8)]
    legend_outside(fig, handles, ["tau_rule", "tau_mem", "not reached\n(> this step)"], fontsize="small")
    return root_figure(fig)


# ------------------------------------------------------------------------------------------ Figs. 24-27
@styled
def plot_clocks_vs_hparam(clocks: xr.Dataset, axis: str = "lr", ax=None):
    """tau_rule (circles) and tau_mem (squares) against a training hyperparameter, ``axis`` 'lr' or
    'weight_decay' (log scale; symlog when 0 is among the values), with the innovation window
    [tau_rule, tau_mem] shaded between the lines (paper Figs. 24-27): per series (the other axes that
    vary, seeds pooled) the lines join the geometric mean over the runs that reached the clock; the
    window is drawn where both means exist, and to the censoring step (lighter) where tau_mem was not
    reached. Not reached: open triangles at the step the clock is known to exceed; bars: intervals."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    require_vars(clocks, ["tau_rule", "tau_mem"], "plot_clocks_vs_hparam")
    xv = run_values(clocks, axis)
    if xv is None:
        raise TwoclocksError(f"plot_clocks_vs_hparam: the runs have no {axis!r}; choose lr or weight_decay")
    xv = xv.astype(float)
    idx, names = run_series(clocks, (axis, "seed"))
    cols = palette(len(names))
    fig, ax = figure_and_ax(ax, (7.8, 4.4))
    tr, tm, cen = run_floats(clocks, "tau_rule"), run_floats(clocks, "tau_mem"), censored_at(clocks)
    ys = []
    for s, col in enumerate(cols):
        m = idx == s
        ux = np.unique(xv[m])

        def gmean(v, x):
            sel = m & (xv == x) & np.isfinite(v) & (v > 0)
            return np.exp(np.mean(np.log(v[sel]))) if sel.any() else np.nan
        r_line = np.array([gmean(tr, x) for x in ux])
        m_line = np.array([gmean(tm, x) for x in ux])
        c_line = np.array([gmean(cen, x) for x in ux])
        ax.plot(ux, r_line, color=col, lw=1.6, marker="o", gid="tau_rule_line")
        ax.plot(ux, m_line, color=col, lw=1.6, ls="--", marker="s", gid="tau_mem_line")
        closed = np.isfinite(r_line) & np.isfinite(m_line) & (m_line > r_line)
        ax.fill_between(ux, r_line, m_line, where=closed, color=col, alpha=0.18, lw=0, gid="window")
        open_ = np.isfinite(r_line) & ~np.isfinite(m_line) & np.isfinite(c_line)
        ax.fill_between(ux, r_line, np.where(open_, c_line, np.nan), where=open_, color=col, alpha=0.07, lw=0,
                        hatch="//", gid="window_open")
        sub = clocks.isel(run=np.flatnonzero(m))
        ys += [_clock_points(ax, xv[m], sub, "tau_rule", col), _clock_points(ax, xv[m], sub, "tau_mem", col)]
    pos = xv[xv > 0]
    if pos.size and (xv == 0).any():
        ax.set_xscale("symlog", linthresh=pos.min(), linscale=0.5)
    elif pos.size and pos.max() / pos.min() >= 10:
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis, pos)
    ax.set_xticks(np.unique(xv), [f"{x:g}" for x in np.unique(xv)])
    log_if_positive(ax, "y", np.concatenate(ys) if ys else [])
    ax.set_xlabel(label(clocks.get(axis), {"lr": "learning rate", "weight_decay": "weight decay"}.get(axis, axis)))
    ax.set_ylabel("onset step")
    fig_no = {"lr": "24, 26", "weight_decay": "25, 27"}.get(axis, "24-27")
    sub = constant_text(clocks, (axis,))
    ax.set_title(f"Clocks vs {axis} (paper Figs. {fig_no})" + (f"\n{sub}" if sub else ""), fontsize="medium")
    handles = [mlines.Line2D([], [], color="0.3", marker="o"), mlines.Line2D([], [], color="0.3", ls="--", marker="s"),
               mpatches.Patch(color="0.3", alpha=0.25),
               mlines.Line2D([], [], ls="none", marker="^", mfc="none", mec="0.3", ms=8)]
    labels = ["tau_rule", "tau_mem", "innovation window", "not reached (> this step)"]
    if len(names) > 1 or names[0]:
        handles += [mlines.Line2D([], [], color=c, lw=6) for c in cols]
        labels += names
    legend_outside(fig, handles, labels, fontsize="small")
    return root_figure(fig)

