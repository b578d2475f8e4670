"""Training curves of several runs on shared axes, from the curves Dataset (dims run, step; the
runs' config values as coords on ``run``; :func:`twoclocks.plotting.load.run_curves` builds it from a
sweep): DiT and GPT overlaid with their innovation windows (paper Fig. 4A), the seed-to-seed spread
(Fig. 28), the valid-novel fraction with its onset (Fig. 23)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.plotting.style import (
    BLUE,
    GREEN,
    ORANGE,
    PURPLE,
    constant_text,
    legend_outside,
    log_if_positive,
    make_figure,
    palette,
    require_vars,
    root_figure,
    run_floats,
    run_series,
    run_values,
    step_axis,
    styled,
    wrapped_suptitle,
)

__all__ = ["plot_arch_overlay", "plot_seed_spread", "plot_novel_fraction", "ARCH_COLORS"]

#: the paper's colours (Fig. 4A): DiT green, GPT purple
ARCH_COLORS = {"dit": GREEN, "gpt": PURPLE}


def _panels(curves, exclude) -> tuple[np.ndarray, list[str]]:
    idx, names = run_series(curves, tuple(exclude))
    return idx, names


def _grid(fig, n, width=4.2, height=3.4):
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig = make_figure(fig, (width * cols + 2.2, height * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _clock(clocks, run, name) -> float:
    if clocks is None or name not in clocks:
        return np.nan
    return float(clocks[name].sel(run=run)) if run in clocks["run"].values else np.nan


# ------------------------------------------------------------------------------------------ Fig. 4A
@styled
def plot_arch_overlay(curves: xr.Dataset, clocks: xr.Dataset | None = None, fig=None):
    """Sample rule accuracy (solid) and memorization (dashed) vs step, DiT (green) and GPT (purple) on
    shared axes, one panel per value of the other axes that vary (G, N ...; seeds drawn as separate
    thin lines), with each run's innovation window [tau_rule, tau_mem] shaded in its architecture's
    colour when ``clocks`` (same run names) is given (paper Fig. 4A)."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    require_vars(curves, ["sample_acc", "sample_mem"], "plot_arch_overlay")
    arch = run_values(curves, "arch")
    if arch is None:
        raise TwoclocksError("plot_arch_overlay needs the runs' arch (a coord on run)")
    arch = arch.astype(str)
    idx, names = _panels(curves, ("arch", "seed"))
    fig, axes = _grid(fig, len(names))
    steps = curves["step"].values.astype(float)
    archs = list(dict.fromkeys(arch))
    cols = {a: ARCH_COLORS.get(a, c) for a, c in zip(archs, palette(len(archs) + 2)[2:])}
    many = len(np.unique(run_values(curves, "seed").astype(str))) > 1 if run_values(curves, "seed") is not None else False
    for p, ax in enumerate(axes):
        for i in np.flatnonzero(idx == p):
            col, run = cols[arch[i]], curves["run"].values[i]
            acc, mem = curves["sample_acc"].values[i], curves["sample_mem"].values[i]
            ok = np.isfinite(acc)
            lw = 1.2 if many else 2.0
            ax.plot(steps[ok], acc[ok], color=col, lw=lw, gid=f"acc {run}")
            ok = np.isfinite(mem)
            ax.plot(steps[ok], mem[ok], color=col, lw=lw, ls="--", gid=f"mem {run}")
            tr, tm = _clock(clocks, run, "tau_rule"), _clock(clocks, run, "tau_mem")
            if np.isfinite(tr):
                end = tm if np.isfinite(tm) else np.nanmax(steps[np.isfinite(acc)])
                ax.axvspan(tr, end, color=col, alpha=0.10 if many else 0.15, lw=0, zorder=0, gid=f"window {run}")
        step_axis(ax, steps)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(names[p] or "", fontsize="small")
    axes[0].set_ylabel("fraction of samples")
    handles = [mlines.Line2D([], [], color=cols[a], lw=6) for a in archs]
    labels = [a.upper() if a in ARCH_COLORS else a for a in archs]
    handles += [mlines.Line2D([], [], color="0.3", lw=2), mlines.Line2D([], [], color="0.3", lw=2, ls="--")]
    labels += ["rule accuracy", "memorization"]
    if clocks is not None:
        handles.append(mpatches.Patch(color="0.3", alpha=0.2))
        labels.append("innovation window")
    legend_outside(fig, handles, labels)
    sub = constant_text(curves, ("arch",))
    wrapped_suptitle(fig, "DiT and GPT on shared axes (paper Fig. 4A)" + (f"\n{sub}" if sub else ""))
    return root_figure(fig)


# ------------------------------------------------------------------------------------------ Fig. 28
@styled
def plot_seed_spread(curves: xr.Dataset, clocks: xr.Dataset | None = None,
                     variables=("sample_acc", "sample_mem"), band: str = "sd", fig=None):
    """Seed-to-seed consistency (paper Fig. 28): per grid point (runs equal except their seed) one
    panel, each seed's curve thin and faded, the mean over seeds thick and the spread shaded: mean +- one
    sample standard deviation (``band='sd'``) or the range over seeds (``'range'``); accuracy blue,
    memorization orange dashed. With ``clocks``, each seed's tau_rule / tau_mem as short ticks on top."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    require_vars(curves, list(variables), "plot_seed_spread")
    if band not in ("sd", "range"):
        raise TwoclocksError(f"plot_seed_spread: band must be 'sd' or 'range', got {band!r}")
    idx, names = _panels(curves, ("seed",))
    fig, axes = _grid(fig, len(names))
    steps = curves["step"].values.astype(float)
    styles = {"sample_acc": (BLUE, "-"), "sample_mem": (ORANGE, "--"), "group_acc": (BLUE, ":"),
              "group_mem": (ORANGE, ":"), "novel_frac": (GREEN, "-.")}
    for p, ax in enumerate(axes):
        m = np.flatnonzero(idx == p)
        for var in variables:
            col, ls = styles.get(var, ("0.3", "-"))
            y = curves[var].values[m].astype(float)
            for row in y:
                ok = np.isfinite(row)
                ax.plot(steps[ok], row[ok], color=col, ls=ls, lw=0.8, alpha=0.35, gid=f"seed {var}")
            n = np.isfinite(y).sum(0)
            with np.errstate(invalid="ignore"):
                mean = np.where(n > 0, np.nansum(y, 0) / np.maximum(n, 1), np.nan)
                if band == "sd":
                    sd = np.sqrt(np.where(n > 1, np.nansum((y - mean) ** 2, 0) / np.maximum(n - 1, 1), np.nan))
                    lo, hi = mean - sd, mean + sd
                else:
                    lo = np.where(n > 0, np.nanmin(np.where(np.isfinite(y), y, np.inf), 0), np.nan)
                    hi = np.where(n > 0, np.nanmax(np.where(np.isfinite(y), y, -np.inf), 0), np.nan)
            ok = np.isfinite(mean)
            ax.plot(steps[ok], mean[ok], color=col, ls=ls, lw=2.2, gid=f"mean {var}")
            both = ok & np.isfinite(lo) & np.isfinite(hi)
            ax.fill_between(steps[both], lo[both], hi[both], color=col, alpha=0.18, lw=0, gid=f"band {var}")
        if clocks is not None:
            for clock, col in (("tau_rule", BLUE), ("tau_mem", ORANGE)):
                ts = [_clock(clocks, r, clock) for r in curves["run"].values[m]]
                ts = [t for t in ts if np.isfinite(t)]
                if ts:
                    ax.vlines(ts, 0.97, 1.02, color=col, lw=1.5, gid=f"{clock} ticks")
        step_axis(ax, steps)
        ax.set_ylim(-0.02, 1.04)
        ax.set_title(f"{names[p] or 'all runs'} ({len(m)} seeds)", fontsize="small")
    axes[0].set_ylabel("fraction of samples")
    handles, labels = [], []
    for var in variables:
        col, ls = styles.get(var, ("0.3", "-"))
        handles.append(mlines.Line2D([], [], color=col, ls=ls, lw=2.2))
        labels.append(var.replace("_", " "))
    handles += [mlines.Line2D([], [], color="0.4", lw=0.8, alpha=0.5), mpatches.Patch(color="0.3", alpha=0.2)]
    labels += ["one seed", "mean ± sd over seeds" if band == "sd" else "range over seeds"]
    legend_outside(fig, handles, labels)
    sub = constant_text(curves, ("seed",))
    wrapped_suptitle(fig, "Seed-to-seed consistency (paper Fig. 28)" + (f"\n{sub}" if sub else ""))
    return root_figure(fig)


# ------------------------------------------------------------------------------------------ Fig. 23
def _extra_clock(clocks, name) -> np.ndarray:
    if clocks is None:
        return np.array([])
    if name in clocks:
        return run_floats(clocks, name)
    if "extra_tau" in clocks and name in [str(c) for c in clocks["extra_clock"].values]:
        return clocks["extra_tau"].sel(extra_clock=name).values.astype(float)
    return np.full(clocks.sizes["run"], np.nan)


@styled
def plot_novel_fraction(curves: xr.Dataset, clocks: xr.Dataset | None = None, threshold: float = 0.5, fig=None):
    """The valid-novel fraction (rule-valid samples not in the train set, ``novel_frac``) vs step, one
    line per run, its onset tau_novel marked (left), and the three onsets per run, tau_rule (circles),
    tau_novel (squares) and tau_mem (triangles), on a log step axis (right; paper Fig. 23). ``clocks``:
    the runs' clocks with tau_novel (a variable, :func:`twoclocks.plotting.load.novel_clocks`, or an
    ``extra_tau`` of `clocks` with the ``valid-novel`` preset), same run names; ``threshold``: the dotted level."""
    import matplotlib.lines as mlines
    require_vars(curves, ["novel_frac"], "plot_novel_fraction")
    idx, names = run_series(curves, ())
    cols = palette(len(names))
    fig = make_figure(fig, (11.5, 4.2))
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1.4, 1])
    steps = curves["step"].values.astype(float)
    runs = [str(r) for r in curves["run"].values]
    tn = np.full(len(runs), np.nan)
    if clocks is not None:
        order = [list(map(str, clocks["run"].values)).index(r) if r in list(map(str, clocks["run"].values)) else -1
                 for r in runs]
        got = _extra_clock(clocks, "tau_novel")
        tn = np.array([got[o] if o >= 0 else np.nan for o in order])
    for i, run in enumerate(runs):
        y = curves["novel_frac"].values[i].astype(float)
        ok = np.isfinite(y)
        ax.plot(steps[ok], y[ok], color=cols[idx[i]], lw=1.8, gid=f"novel {run}")
        if np.isfinite(tn[i]):
            ax.plot([tn[i]], [np.interp(tn[i], steps[ok], y[ok])], ls="none", marker="s", ms=8, mfc="none",
                    mec=cols[idx[i]], mew=1.8, gid=f"tau_novel {run}")
    ax.axhline(threshold, color="0.4", ls=":", lw=1)
    step_axis(ax, steps)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("valid-novel fraction")
    ax.set_title("valid and not in the train set (□ tau_novel)", fontsize="medium")
    ys = []
    if clocks is not None:
        ci = np.array([list(map(str, clocks["run"].values)).index(r) if r in list(map(str, clocks["run"].values))
                       else -1 for r in runs])
        for k, (clock, marker, col) in enumerate((("tau_rule", "o", BLUE), ("tau_novel", "s", ORANGE),
                                                  ("tau_mem", "^", GREEN))):
            vals = _extra_clock(clocks, clock)
            v = np.array([vals[c] if c >= 0 else np.nan for c in ci])
            x = np.arange(len(runs)) + (k - 1) * 0.12
            ok = np.isfinite(v)
            ax2.plot(x[ok], v[ok], ls="none", marker=marker, color=col, ms=7, gid=clock)
            ys.append(v[ok])
        log_if_positive(ax2, "y", np.concatenate(ys))
        ax2.legend([mlines.Line2D([], [], ls="none", marker=m, color=c) for m, c in (("o", BLUE), ("s", ORANGE),
                                                                                     ("^", GREEN))],
                   ["tau_rule", "tau_novel", "tau_mem"], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax2.set_xticks(range(len(runs)), [names[i] or runs[j] for j, i in enumerate(idx)], rotation=30, ha="right",
                   fontsize="small")
    ax2.set_ylabel("onset step")
    ax2.set_title("onsets per run", fontsize="medium")
    legend_outside(fig, [mlines.Line2D([], [], color=c, lw=2) for c in cols], [n or "all runs" for n in names],
                   fontsize="small")
    sub = constant_text(curves)
    wrapped_suptitle(fig, "Valid-novel fraction and its onset (paper Fig. 23)" + (f"\n{sub}" if sub else ""))
    return root_figure(fig)

