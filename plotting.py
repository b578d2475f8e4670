"""Figures over the probe cubes, after the paper's panels (``../shared/paper/figure-captions.txt``).

Every ``plot_*`` function takes xarray Datasets (a cube, or your own slice of one: select steps,
anchors, sigmas first and pass the result) and returns a :class:`matplotlib.figure.Figure`. Single-panel
functions accept ``ax=`` (draw into your Axes); multi-panel ones accept ``fig=`` (a Figure or SubFigure
to fill). Figures are made without pyplot (no global state, nothing shown); save them with
``fig.savefig``. Styling is seaborn's, applied only while a figure is drawn (no global rcParams change).

Conventions: colour-blind-safe palettes (seaborn ``colorblind``; magma / RdBu_r / Blues for fields);
training-step axes are symlog (linear below 1, so step 0 is shown, log above) when the evaluated steps
span two decades or more, linear otherwise; axis labels come from the variables' ``long_name`` (cut
at its first parenthesis or clause) and ``units``; legends sit outside the panels.

Figures and the cube variables they read:

============================  ===========  ==================================================================
function                      paper        cube variables
============================  ===========  ==================================================================
plot_learning_dynamics        2B, 4A, 1BC  samples: sample_acc, group_acc, sample_mem, group_mem, invalid_frac,
                                           chance_*_acc, uniform_valid_*_mem (+ clocks, else computed)
plot_state_raster             3A, 11 top   samples: state (step, seed), [state_count]
plot_transitions              3A, 11 mid   markov: window_prob, window_counts, window_start/end
plot_nn_hamming               12           samples: nn_hamming_mean (step, subset)
plot_dsm_spectrum             3C, 13       dsm_spectrum: loss, loss_se (step, split, sigma), [reference_loss]
plot_dsm_bands                3B, 14       dsm_spectrum: loss; [samples: state_frac for the top panel]
plot_dsm_gap                  15           dsm_spectrum: gap, gap_se (step, sigma) (or loss), [tau_mem_loss]
plot_ce                       4C, 4D       ce: ce_mean (step, split), ce (step, split, position), determined,
                                           [ce_ideal_mean]
plot_plane                    3D, 17-19    plane: score_norm, score_u, score_v, attraction (step, anchor,
                                           sigma, u, v), vertex_u, vertex_v
plot_basin                    3E, 16       basin: {exact_match,hamming,l2}_{mean,lo,hi} (step, sigma,
                                           direction, alpha)
plot_clock_scaling            2C, 2D, 10   clocks/collect: tau_rule, tau_mem (run), coords group, n_train;
                                           [fit_index, fit_c, fit_alpha, fit_r2, fit_label]
plot_memorization_collapse    2H, 8        samples (one per run): sample_mem, uniform_valid_sample_mem and
                                           attrs run_config (or clocks coords batch, n_train, group)
============================  ===========  ==================================================================

:func:`plot_run` draws every figure whose cube a run has; :func:`plot_runs` the across-runs ones.
"""
from __future__ import annotations

import contextlib
import functools
import json
import textwrap
from pathlib import Path

import numpy as np
import xarray as xr

from twoclocks import TwoclocksError

__all__ = ["plot_learning_dynamics", "plot_state_raster", "plot_transitions", "plot_nn_hamming",
           "plot_dsm_spectrum", "plot_dsm_bands", "plot_dsm_gap", "plot_ce", "plot_plane", "plot_basin",
           "plot_clock_scaling", "plot_memorization_collapse", "plot_run", "plot_runs", "PlotResult",
           "style", "STATE_COLORS", "SPLIT_COLORS"]

CB = ["#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc", "#ca9161", "#fbafe4", "#949494", "#ece133",
      "#56b4e9"]  # seaborn "colorblind"
BLUE, ORANGE, GREEN, RED, PURPLE, BROWN, PINK, GREY = CB[:8]
STATES = ("invalid_value", "rule_error", "valid_novel", "valid_memorized")
STATE_COLORS = {"invalid_value": GREY, "rule_error": RED, "valid_novel": BLUE, "valid_memorized": ORANGE}
STATE_NAMES = {"invalid_value": "invalid (not quantized)", "rule_error": "invalid (breaks the rule)",
               "valid_novel": "valid & novel", "valid_memorized": "valid & memorized"}
STATE_SHORT = {"invalid_value": "not quant.", "rule_error": "rule err.", "valid_novel": "novel",
               "valid_memorized": "memorized"}
SPLIT_COLORS = {"train": ORANGE, "heldout": BLUE, "hypercube": GREEN}
SPLIT_NAMES = {"train": "train", "heldout": "held-out valid", "hypercube": "random (hypercube)"}
REFERENCE_STYLES = {"ideal-rule": "--", "memorize": ":", "ideal-cube": "-."}
STEP_LABEL = "training step"


# ------------------------------------------------------------------------------------------ style
@contextlib.contextmanager
def style():
    """The figures' style (seaborn whitegrid, paper context), set only inside the ``with`` block."""
    import matplotlib as mpl
    import seaborn as sns
    rc = {"axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
          "grid.linestyle": ":", "grid.linewidth": 0.6, "image.cmap": "viridis",
          "axes.titlesize": "medium", "figure.titlesize": "large"}
    with sns.axes_style("whitegrid"), sns.plotting_context("paper", font_scale=1.15), mpl.rc_context(rc):
        yield


def _styled(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style():
            return fn(*args, **kwargs)
    return wrapper


def _figure(fig=None, size=(6.4, 4.0)):
    """``fig`` or a new constrained-layout Figure (not registered with pyplot)."""
    if fig is not None:
        return fig
    from matplotlib.figure import Figure
    return Figure(figsize=size, layout="constrained")


def _root(fig):
    return fig.get_figure(root=True)


def _one_ax(ax, size=(6.4, 4.0)):
    if ax is not None:
        return ax.get_figure(root=False), ax
    fig = _figure(None, size)
    return fig, fig.add_subplot()


# ------------------------------------------------------------------------------------------ labels
def short_name(long_name: str) -> str:
    """A long_name cut to its head: before the first ' (' or clause separator (', ', ': ', '; ')."""
    s = long_name.strip()
    for sep in (" (", ": ", "; ", ", "):
        i = s.find(sep)
        if i > 0:
            s = s[:i]
    return s


def label(da, name: str | None = None, width: int = 38) -> str:
    """Axis label from ``long_name`` (shortened, or ``name``) and ``units`` (omitted when '1')."""
    attrs = getattr(da, "attrs", {})
    text = name or short_name(attrs.get("long_name", getattr(da, "name", "") or ""))
    units = attrs.get("units", "")
    if units and units != "1":
        text = f"{text} [{units}]"
    return textwrap.fill(text, width)


def _steps(ds) -> np.ndarray:
    return np.asarray(ds["step"].values)


def _trained(ds):
    """Drop the reference pseudo-step (-1) if present."""
    if "step" in ds.dims and (ds["step"] < 0).any():
        return ds.sel(step=ds["step"] >= 0)
    return ds


def log_steps(steps) -> bool:
    """Steps span two decades or more: use a symlog step axis."""
    pos = np.asarray(steps, float)
    pos = pos[pos > 0]
    return len(pos) >= 2 and pos.max() / pos.min() >= 100


def step_axis(ax, steps, which: str = "x", label_it: bool = True) -> None:
    """Set a step axis: symlog (linthresh 1, so step 0 is shown) when ``steps`` span decades."""
    import matplotlib.ticker as mticker
    axis = ax.xaxis if which == "x" else ax.yaxis
    if log_steps(steps):
        (ax.set_xscale if which == "x" else ax.set_yscale)("symlog", linthresh=1, linscale=0.3)
        axis.set_minor_locator(mticker.SymmetricalLogLocator(linthresh=1, base=10, subs=np.arange(2, 10)))
    if label_it:
        (ax.set_xlabel if which == "x" else ax.set_ylabel)(STEP_LABEL)
    s = np.asarray(steps, float)
    if len(s) > 1 and s.max() > s.min():  # limits: the data plus 2% in the axis's scale (no negative decades)
        tr = axis.get_transform()
        t = tr.transform(np.array([[s.min()], [s.max()]])).ravel()
        pad = 0.02 * (t[1] - t[0])
        lim = tr.inverted().transform(np.array([[t[0] - pad], [t[1] + pad]])).ravel()
        (ax.set_xlim if which == "x" else ax.set_ylim)(*lim)


def _edges(axis, centers) -> np.ndarray:
    """Cell edges around ``centers``, midway in the axis's (already set) scale."""
    c = np.asarray(centers, float)
    tr = axis.get_transform()
    t = tr.transform(c.reshape(-1, 1)).ravel()
    if len(t) == 1:
        e = np.array([t[0] - 0.5, t[0] + 0.5])
    else:
        mid = (t[1:] + t[:-1]) / 2
        e = np.concatenate([[2 * t[0] - mid[0]], mid, [2 * t[-1] - mid[-1]]])
    return tr.inverted().transform(e.reshape(-1, 1)).ravel()


def pick(values, n: int) -> np.ndarray:
    """At most ``n`` of ``values``, evenly spaced by index, first and last included."""
    values = np.asarray(values)
    if len(values) <= n:
        return values
    return values[np.unique(np.linspace(0, len(values) - 1, n).round().astype(int))]


def _nearest(values, targets) -> np.ndarray:
    values = np.asarray(values, float)
    return np.unique([values[np.argmin(np.abs(np.log(values) - np.log(t)))] for t in targets])


def _scalar(ds, name, default=np.nan) -> float:
    if name in ds.variables and ds[name].size == 1:
        return float(ds[name].values.ravel()[0])
    return default


def _need(ds, names, what: str):
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise TwoclocksError(f"{what} needs {', '.join(missing)} in the Dataset; pass the cube (or a selection "
                             "of it) written by the probe")


def _suptitle(fig, text: str, **kw):
    """A figure title wrapped to the figure's width (each given line separately)."""
    width = max(30, int(_root(fig).get_figwidth() * 11.5))
    lines = [textwrap.fill(line, width) for line in text.split("\n")]
    return fig.suptitle("\n".join(lines), **{"fontsize": "medium", **kw})


def plain_log_ticks(axis, values=None):
    """Plain-number labels on a log axis: at 1, 2, 5 x 10^k when the data span at most two decades,
    else at the powers of ten (written as numbers while they are short)."""
    import matplotlib.ticker as mticker
    v = np.asarray(values if values is not None else axis.get_view_interval(), float)
    v = v[np.isfinite(v) & (v > 0)]
    narrow = v.size and v.max() / v.min() <= 100
    axis.set_major_locator(mticker.LogLocator(subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    axis.set_major_formatter(mticker.FuncFormatter(
        lambda x, _: f"{x:g}" if 1e-3 <= x <= 1e4 else f"$10^{{{int(round(np.log10(x)))}}}$"))
    axis.set_minor_formatter(mticker.NullFormatter())


def _log_colorbar_ticks(cb):
    plain_log_ticks(cb.ax.yaxis if cb.orientation == "vertical" else cb.ax.xaxis, [cb.vmin, cb.vmax])


def _legend_outside(fig, handles, labels, **kw):
    return fig.legend(handles, labels, loc="outside right center", **kw)


def _positive(a):
    a = np.asarray(a, float)
    return np.where(a > 0, a, np.nan)


# ------------------------------------------------------------------------------------------ samples
def _clock_values(samples, clocks, mem_adaptive=None) -> dict:
    """tau_rule, tau_mem and their status strings from ``clocks`` (a mapping or a one-run Dataset)
    or, by default, computed from the curves with :func:`twoclocks.probes.clocks.clocks_from_curves`
    (``mem_adaptive`` None: adaptive when the uniform-valid baseline is above the fixed threshold)."""
    if clocks is None:
        from twoclocks.probes import clocks as C
        base = _scalar(samples, "uniform_valid_sample_mem")
        adaptive = bool(np.isfinite(base) and base >= C.DEFAULT_MEM_THRESHOLD) if mem_adaptive is None \
            else bool(mem_adaptive)
        clocks = C.clocks_from_curves(_steps(samples), samples["sample_acc"].values, samples["sample_mem"].values,
                                      base, mem_adaptive=adaptive)
        clocks["how"] = (f"default clocks: sustained {C.DEFAULT_K} evaluations, accuracy >= "
                         f"{C.DEFAULT_ACC_THRESHOLD:g}, memorization > {clocks['mem_threshold']:.3g}"
                         + ((" (adaptive)" if mem_adaptive else " (adaptive: the uniform-valid baseline is above "
                             f"{C.DEFAULT_MEM_THRESHOLD:g})") if adaptive else ""))
    out = {"how": clocks.get("how", ""), "mem_threshold": float(np.asarray(clocks.get("mem_threshold", np.nan)))}
    for k in ("tau_rule", "tau_mem"):
        out[k] = float(np.asarray(clocks[k]).ravel()[0])
        status = clocks[f"{k}_status"] if f"{k}_status" in clocks else "not reached"
        out[f"{k}_status"] = str(np.asarray(status).ravel()[0])
    return out


def _mark_clocks(ax, c, last):
    """The clocks as vertical lines; the innovation window [tau_rule, tau_mem] (or to the last step
    while tau_mem is not reached) shaded."""
    tr, tm = c["tau_rule"], c["tau_mem"]
    if np.isfinite(tr):
        ax.axvspan(tr, tm if np.isfinite(tm) else last, color=GREEN, alpha=0.12, lw=0, zorder=0)
        ax.axvline(tr, color=BLUE, lw=1, zorder=1)
    if np.isfinite(tm):
        ax.axvline(tm, color=ORANGE, lw=1, zorder=1)


@_styled
def plot_learning_dynamics(samples: xr.Dataset, clocks=None, eps: float | None = None, fig=None,
                           mem_adaptive: bool | None = None):
    """Sample- and group-level rule accuracy, memorization and the invalid (unquantized) fraction vs
    step, with chance and uniform-valid baselines and the innovation window [tau_rule, tau_mem] shaded
    (paper Figs. 2B, 4A; 1B-C). ``clocks``: a mapping with tau_rule / tau_mem (e.g. one run of the
    clocks Dataset: ``clocks.sel(run=...)``); default: :func:`twoclocks.probes.clocks.clocks_from_curves`
    with its defaults, except that the adaptive memorization threshold is used when the uniform-valid
    baseline N/|valid| is already above the fixed one, or as ``mem_adaptive`` says (the title says which).
    ``eps``: the quantization threshold of the invalid fraction (default: the cube's eps_state)."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    _need(samples, ["sample_acc", "sample_mem", "group_acc", "group_mem"], "plot_learning_dynamics")
    ds = _trained(samples)
    steps = _steps(ds)
    c = _clock_values(ds, clocks, mem_adaptive)
    tau_rule, tau_mem = c["tau_rule"], c["tau_mem"]
    fig = _figure(fig, (10.5, 3.8))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    eps_val = None
    if "invalid_frac" in ds:
        e = ds["eps"].values
        want = float(eps if eps is not None else ds.attrs.get("eps_state", 0.1))
        eps_val = float(e[np.argmin(np.abs(e - want))])
    for ax, level in zip(axes, ("sample", "group")):
        acc, mem = ds[f"{level}_acc"], ds[f"{level}_mem"]
        ax.plot(steps, acc, color=BLUE, lw=2, marker="o", ms=2.5)
        ax.plot(steps, mem, color=ORANGE, lw=2, ls="--", marker="s", ms=2.5)
        if eps_val is not None:
            ax.plot(steps, ds["invalid_frac"].sel(eps=eps_val), color=GREY, lw=1.5, ls="-.")
        chance = _scalar(ds, f"chance_{level}_acc")
        base = _scalar(ds, f"uniform_valid_{level}_mem")
        if np.isfinite(chance):
            ax.axhline(chance, color=BLUE, lw=0.9, ls=":")
        if np.isfinite(base):
            ax.axhline(base, color=ORANGE, lw=0.9, ls=":")
        _mark_clocks(ax, c, steps[-1] if len(steps) else np.nan)
        if level == "sample" and np.isfinite(c["mem_threshold"]):
            ax.axhline(c["mem_threshold"], color=ORANGE, lw=0.9, ls=(0, (5, 3)))
        step_axis(ax, steps)
        ax.set_title(f"{level} level")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("fraction of samples")
    handles = [mlines.Line2D([], [], color=BLUE, lw=2, marker="o", ms=3), mlines.Line2D([], [], color=ORANGE, lw=2,
               ls="--", marker="s", ms=3), mlines.Line2D([], [], color=BLUE, lw=0.9, ls=":"),
               mlines.Line2D([], [], color=ORANGE, lw=0.9, ls=":")]
    labels = ["rule accuracy", "memorization", "chance accuracy", "memorization of a\nuniform-valid sampler"]
    if eps_val is not None:
        handles.append(mlines.Line2D([], [], color=GREY, lw=1.5, ls="-."))
        labels.append(f"not quantized\n(q(x) > {eps_val:g})")
    if np.isfinite(tau_rule):
        handles += [mpatches.Patch(color=GREEN, alpha=0.25), mlines.Line2D([], [], color=BLUE, lw=1)]
        labels += ["innovation window" + ("" if np.isfinite(tau_mem) else "\n(tau_mem not reached)"), "tau_rule"]
    if np.isfinite(tau_mem):
        handles.append(mlines.Line2D([], [], color=ORANGE, lw=1))
        labels.append("tau_mem")
    if np.isfinite(c["mem_threshold"]):
        handles.append(mlines.Line2D([], [], color=ORANGE, lw=0.9, ls=(0, (5, 3))))
        labels.append("memorization threshold")
    _legend_outside(fig, handles, labels)
    fmt = (lambda k: f"{c[k]:g}" if np.isfinite(c[k]) else c[f"{k}_status"])
    _suptitle(fig, f"Learning dynamics: tau_rule = {fmt('tau_rule')}, tau_mem = {fmt('tau_mem')}"
              + (f"\n{c['how']}" if c["how"] else ""))
    return _root(fig)


def _state_matrix(samples):
    """(seed order, states (n_seed, n_step)) with seeds sorted by their first memorized step, then
    first valid step, then first quantized step (never: last)."""
    st = samples["state"].transpose("seed", "step").values.astype(int)
    n_step = st.shape[1]

    def first(mask):
        hit = mask.any(1)
        return np.where(hit, mask.argmax(1), n_step)
    order = np.lexsort((first(st >= 1), first(st >= 2), first(st == 3)))
    return order, st[order]


@_styled
def plot_state_raster(samples: xr.Dataset, fig=None):
    """Per-sample states across training (paper Figs. 3A, 11 top): the number of samples in each
    state per step (top) and one row per seed (bottom), seeds sorted by the step at which they first
    become memorized (then first valid, then first quantized)."""
    import matplotlib.patches as mpatches
    from matplotlib.colors import BoundaryNorm, ListedColormap
    _need(samples, ["state"], "plot_state_raster")
    ds = _trained(samples)
    steps = _steps(ds)
    _, st = _state_matrix(ds)
    n_seed = st.shape[0]
    counts = np.stack([(st == k).sum(0) for k in range(len(STATES))])
    colors = [STATE_COLORS[s] for s in STATES]
    fig = _figure(fig, (9.0, 6.2))
    top, bot = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2.2])
    step_axis(top, steps, label_it=False)
    step_axis(bot, steps)
    edges = _edges(bot.xaxis, steps)
    below = np.zeros(len(steps))
    for k, col in enumerate(colors):  # stacked columns aligned with the raster's
        top.bar(edges[:-1], counts[k], width=np.diff(edges), bottom=below, align="edge", color=col, lw=0)
        below = below + counts[k]
    top.set_ylim(0, n_seed)
    top.set_ylabel("samples per state")
    cmap, norm = ListedColormap(colors), BoundaryNorm(np.arange(-0.5, len(STATES)), len(STATES))
    bot.pcolormesh(edges, np.arange(n_seed + 1), st, cmap=cmap, norm=norm, rasterized=True)
    bot.set_xlim(edges[0], edges[-1])
    bot.set_ylim(n_seed, 0)
    bot.set_ylabel("seed (sorted by first\nmemorized step)")
    bot.grid(False)
    handles = [mpatches.Patch(color=STATE_COLORS[s]) for s in STATES]
    _legend_outside(fig, handles, [STATE_NAMES[s] for s in STATES], title="sample state")
    _suptitle(fig, f"Per-sample states of {n_seed} fixed noise seeds")
    return _root(fig)


@_styled
def plot_transitions(markov: xr.Dataset, fig=None):
    """Transition matrices between sample states, one per window of steps (paper Fig. 11 middle):
    colour = row-normalized probability, text = probability and (count)."""
    _need(markov, ["window_prob", "window_counts"], "plot_transitions")
    n_win = markov.sizes["window"]
    fig = _figure(fig, (3.3 * n_win + 1.4, 3.6))
    axes = np.atleast_1d(fig.subplots(1, n_win, sharey=True))
    labels = [STATE_SHORT.get(str(s), str(s)) for s in markov["state_from"].values]
    mesh = None
    for w, ax in enumerate(axes):
        d = markov.isel(window=w)
        p, c = d["window_prob"].values, d["window_counts"].values
        mesh = ax.imshow(np.ma.masked_invalid(p), cmap="Blues", vmin=0, vmax=1)
        ax.set_facecolor("0.9")
        for i in range(p.shape[0]):
            for j in range(p.shape[1]):
                txt = "–" if not np.isfinite(p[i, j]) else f"{p[i, j]:.2f}\n({int(c[i, j])})"
                ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                        color="white" if np.isfinite(p[i, j]) and p[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.grid(False)
        rng = ""
        if "window_start" in d.coords:
            rng = f"\nsteps {int(d['window_start'])}–{int(d['window_end'])}"
        ax.set_title(f"{d['window'].item()}{rng}", fontsize="small")
        ax.set_xlabel("state at the next step")
    axes[0].set_ylabel("state at a step")
    cb = fig.colorbar(mesh, ax=list(axes), shrink=0.85)
    cb.set_label("transition probability\nP(from → to), (count)")
    _suptitle(fig, "State transitions between consecutive checkpoints, per window")
    return _root(fig)


@_styled
def plot_nn_hamming(samples: xr.Dataset, ax=None, stat: str = "mean", min_count: int = 10):
    """Nearest-train Hamming distance vs step for all, rule-valid and rule-valid-novel samples (paper
    Fig. 12). ``stat``: 'mean' or 'median'. Points summarizing fewer than ``min_count`` samples
    (``subset_count``) are left out."""
    var = f"nn_hamming_{stat}"
    _need(samples, [var], "plot_nn_hamming")
    ds = _trained(samples)
    steps = _steps(ds)
    fig, ax = _one_ax(ax, (7.2, 3.8))
    colors = {"all": "black", "valid": BLUE, "valid_novel": RED}
    names = {"all": "all samples", "valid": "rule-valid", "valid_novel": "rule-valid, not memorized"}
    for s in ds["subset"].values:
        s = str(s)
        y = ds[var].sel(subset=s).values.astype(float)
        if "subset_count" in ds:
            y = np.where(ds["subset_count"].sel(subset=s).values >= min_count, y, np.nan)
        ax.plot(steps, y, color=colors.get(s), lw=2, marker="o", ms=2.5, label=names.get(s, s))
    step_axis(ax, steps)
    ax.set_ylabel(label(ds[var]))
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title("Distance of generations to the nearest train sample"
                 + (f"\n(points from fewer than {min_count} samples left out)" if "subset_count" in ds else ""))
    return _root(fig)


# ------------------------------------------------------------------------------------------ DSM
def _loss_var(weighted: bool) -> str:
    return "loss_weighted" if weighted else "loss"


@_styled
def plot_dsm_spectrum(dsm: xr.Dataset, steps=None, weighted: bool = False, fig=None, n_steps: int = 4):
    """DSM loss vs noise level on log-log axes for train, held-out and random data at selected steps,
    with the exact reference denoisers as thin lines (paper Figs. 3C, 13). ``steps``: which (default:
    ``n_steps`` evenly spaced evaluated steps); ``weighted``: the EDM-weighted loss."""
    import matplotlib.lines as mlines
    var = _loss_var(weighted)
    _need(dsm, [var], "plot_dsm_spectrum")
    ds = _trained(dsm)
    chosen = pick(_steps(ds), n_steps) if steps is None else np.atleast_1d(steps)
    fig = _figure(fig, (2.9 * len(chosen) + 1.8, 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(chosen), sharex=True, sharey=True))
    sig = ds["sigma"].values
    ref = f"reference_{var}"
    refs = [str(r) for r in ds["reference"].values] if ref in ds else []
    model = _positive(ds[var].sel(step=chosen).values)
    floor = np.nanmin(model) / 3 if np.isfinite(model).any() else None
    for ax, s in zip(axes, chosen):
        d = ds.sel(step=s)
        for k, split in enumerate(ds["split"].values):
            split = str(split)
            col = SPLIT_COLORS.get(split)
            y = _positive(d[var].sel(split=split))
            ax.plot(sig, y, color=col, lw=3.0 - 0.8 * k)  # thinner on top: coinciding splits stay visible
            if "loss_se" in d and not weighted:
                se = d["loss_se"].sel(split=split).values
                ax.fill_between(sig, _positive(y - 2 * se), y + 2 * se, color=col, alpha=0.2, lw=0)
            for r in refs:
                ax.plot(sig, _positive(ds[ref].sel(reference=r, split=split)), color=col, lw=0.9,
                        ls=REFERENCE_STYLES.get(r, "--"), alpha=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        plain_log_ticks(ax.xaxis, sig)
        if floor:
            ax.set_ylim(bottom=floor)
        ax.set_title(f"step {int(s)}")
        ax.set_xlabel(label(ds["sigma"], "noise level σ"))
    axes[0].set_ylabel(label(ds[var], "EDM-weighted DSM loss" if weighted else "DSM loss"))
    handles = [mlines.Line2D([], [], color=SPLIT_COLORS.get(str(s)), lw=2) for s in ds["split"].values]
    labels = [SPLIT_NAMES.get(str(s), str(s)) for s in ds["split"].values]
    for r in refs:
        handles.append(mlines.Line2D([], [], color="0.3", lw=0.9, ls=REFERENCE_STYLES.get(r, "--")))
        labels.append(f"reference: {r}")
    _legend_outside(fig, handles, labels)
    _suptitle(fig, "Denoising loss by noise level (band: ±2 SE over the fixed subset; references below the "
                 "model's smallest loss are cut)", fontsize="medium")
    return _root(fig)


def _default_bands(sig) -> list[tuple[float, float]]:
    lo, hi = float(np.min(sig)), float(np.max(sig))
    cuts = [10.0 ** k for k in range(int(np.floor(np.log10(lo))) + 1, int(np.ceil(np.log10(hi))))]
    edges = [lo, *[c for c in cuts if lo < c < hi], hi]
    return list(zip(edges[:-1], edges[1:]))


@_styled
def plot_dsm_bands(dsm: xr.Dataset, samples: xr.Dataset | None = None, bands=None, weighted: bool = False,
                   fig=None):
    """DSM loss vs step, averaged over the noise levels of each band (default: decades), one panel
    per band, for the three splits (paper Figs. 3B, 14); with ``samples``, the state fractions on
    top."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    var = _loss_var(weighted)
    _need(dsm, [var], "plot_dsm_bands")
    ds = _trained(dsm)
    steps, sig = _steps(ds), ds["sigma"].values
    bands = _default_bands(sig) if bands is None else [tuple(map(float, b)) for b in bands]
    n = len(bands) + (samples is not None)
    fig = _figure(fig, (7.6, 1.75 * n + 0.9))
    axes = np.atleast_1d(fig.subplots(n, 1, sharex=True))
    handles, labels = [], []
    if samples is not None:
        _need(samples, ["state_frac"], "plot_dsm_bands(samples=...)")
        sm = _trained(samples)
        ax = axes[0]
        ax.stackplot(_steps(sm), sm["state_frac"].transpose("state_label", "step").values,
                     colors=[STATE_COLORS[str(s)] for s in sm["state_label"].values], lw=0)
        ax.set_ylim(0, 1)
        ax.set_ylabel("state\nfraction")
        handles += [mpatches.Patch(color=STATE_COLORS[str(s)]) for s in sm["state_label"].values]
        labels += [STATE_NAMES.get(str(s), str(s)) for s in sm["state_label"].values]
    for ax, (lo, hi) in zip(axes[n - len(bands):], bands):
        last = (lo, hi) == bands[-1]
        inband = (sig >= lo) & ((sig <= hi) if last else (sig < hi))
        if not inband.any():
            raise TwoclocksError(f"band [{lo:g}, {hi:g}] holds no sigma of the cube ({sig.min():g}..{sig.max():g})")
        d = ds[var].isel(sigma=np.flatnonzero(inband)).mean("sigma")
        for k, split in enumerate(ds["split"].values):
            ax.plot(steps, d.sel(split=split), color=SPLIT_COLORS.get(str(split)), lw=2.6 - 0.6 * k, marker="o", ms=2)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useOffset=False)
        ax.set_ylabel(f"σ ∈ [{lo:.3g}, {hi:.3g}{']' if last else ')'}")
    for ax in axes:
        step_axis(ax, steps, label_it=ax is axes[-1])
    handles += [mlines.Line2D([], [], color=SPLIT_COLORS.get(str(s)), lw=2) for s in ds["split"].values]
    labels += [SPLIT_NAMES.get(str(s), str(s)) for s in ds["split"].values]
    _legend_outside(fig, handles, labels)
    what = "EDM-weighted DSM loss" if weighted else "DSM loss"
    fig.supylabel(label(ds[var], f"{what}, mean over the band's noise levels", width=60), fontsize="medium")
    _suptitle(fig, f"{what} per noise band", fontsize="medium")
    return _root(fig)


@_styled
def plot_dsm_gap(dsm: xr.Dataset, sigmas=(0.2, 0.5, 1.0, 2.0), sigma_range=(0.1, 5.0), fig=None):
    """Held-out minus train DSM loss: a heatmap over step x sigma in ``sigma_range`` (None: all; the
    paper zooms into the critical noise levels, where the gap opens) (left), and vs step at the noise
    levels nearest to ``sigmas`` with ±2 SE bands (right) (paper Fig. 15). The loss-based
    memorization clock's sigma band is dotted, tau_mem_loss a dashed vertical line."""
    ds = _trained(dsm)
    if "gap" in ds:
        gap = ds["gap"]
        se = ds["gap_se"] if "gap_se" in ds else None
    else:
        _need(ds, ["loss"], "plot_dsm_gap")
        gap = (ds["loss"].sel(split="heldout") - ds["loss"].sel(split="train")).assign_attrs(
            long_name="held-out minus train loss", units=ds["loss"].attrs.get("units", ""))
        se = None
    steps, sig = _steps(ds), ds["sigma"].values
    if sigma_range is not None:
        keep = (sig >= sigma_range[0]) & (sig <= sigma_range[1])
        if keep.sum() >= 1:
            gap, sig = gap.isel(sigma=np.flatnonzero(keep)), sig[keep]
            se = se.isel(sigma=np.flatnonzero(keep)) if se is not None else None
    fig = _figure(fig, (11.0, 4.0))
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1.25, 1])
    step_axis(ax, steps)
    ax.set_yscale("log")
    g = gap.transpose("sigma", "step").values
    vmax = np.nanpercentile(np.abs(g), 99) if np.isfinite(g).any() else 1.0
    vmax = vmax if vmax > 0 else 1.0
    xe, ye = _edges(ax.xaxis, steps), _edges(ax.yaxis, sig)
    mesh = ax.pcolormesh(xe, ye, g, cmap="RdBu_r", vmin=-vmax, vmax=vmax, rasterized=True)
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.grid(False)
    ax.set_ylabel(label(ds["sigma"], "noise level σ"))
    plain_log_ticks(ax.yaxis, sig)
    band = ds["tau_mem_loss"].attrs.get("band") if "tau_mem_loss" in ds else None
    for b in (band or ()):
        ax.axhline(float(b), color="k", lw=0.8, ls=":")
    tau = _scalar(ds, "tau_mem_loss")
    cb = fig.colorbar(mesh, ax=ax, extend="both")
    cb.set_label(label(gap, "held-out − train loss", width=30))
    ax.set_title("memorization gap over step × σ")
    picked = _nearest(sig, sigmas)
    colors = _seq_colors(len(picked))
    for col, s in zip(colors, picked):
        y = gap.sel(sigma=s).values
        ax2.plot(steps, y, color=col, lw=2, label=f"σ = {s:.3g}")
        if se is not None:
            e = se.sel(sigma=s).values
            ax2.fill_between(steps, y - 2 * e, y + 2 * e, color=col, alpha=0.12, lw=0)
    ax2.axhline(0, color="k", lw=0.8)
    step_axis(ax2, steps)
    ax2.set_ylabel(label(gap, "held-out − train loss"))
    ax2.set_title("at fixed σ (band: ±2 SE)")
    if np.isfinite(tau):
        for a in (ax, ax2):
            a.axvline(tau, color=ORANGE, lw=1.2, ls="--")
        ax2.plot([], [], color=ORANGE, lw=1.2, ls="--", label="tau_mem (loss)")
    ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _root(fig)


def _seq_colors(n: int, cmap: str = "viridis"):
    import matplotlib as mpl
    return [mpl.colormaps[cmap](x) for x in (np.linspace(0.0, 0.78, n) if n > 1 else [0.35])]


# ------------------------------------------------------------------------------------------ GPT CE
@_styled
def plot_ce(ce: xr.Dataset, split: str = "heldout", fig=None):
    """GPT next-token cross-entropy: the mean over positions vs step per split with the ideal rule
    model's value dotted (paper Fig. 4C), and the per-position heatmap (step x position) of ``split``
    with the determined positions (last bit of each group) marked (Fig. 4D)."""
    import matplotlib.transforms as mtransforms
    _need(ce, ["ce", "ce_mean"], "plot_ce")
    ds = _trained(ce)
    steps = _steps(ds)
    fig = _figure(fig, (11.5, 4.0))
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.2])
    for s in ds["split"].values:
        s = str(s)
        col = SPLIT_COLORS.get(s)
        ax.plot(steps, ds["ce_mean"].sel(split=s), color=col, lw=2, marker="o", ms=2, label=SPLIT_NAMES.get(s, s))
        ideal = float(ds["ce_ideal_mean"].sel(split=s)) if "ce_ideal_mean" in ds else np.nan
        if np.isfinite(ideal):
            ax.axhline(ideal, color=col, lw=0.9, ls=":")
    if "ce_ideal_mean" in ds:
        ax.plot([], [], color="0.3", lw=0.9, ls=":", label="ideal rule model (where finite)")
    step_axis(ax, steps)
    ax.set_ylabel(label(ds["ce_mean"], "cross-entropy per cell"))
    ax.set_ylim(bottom=0)
    ax.set_title("mean over positions")
    d = ds["ce"].sel(split=split).transpose("position", "step").values
    pos = ds["position"].values
    step_axis(ax2, steps)
    vmax = np.nanpercentile(d, 99) if np.isfinite(d).any() else 1.0
    xe = _edges(ax2.xaxis, steps)
    mesh = ax2.pcolormesh(xe, np.arange(len(pos) + 1) - 0.5, d, cmap="viridis", vmin=0, vmax=max(vmax, 1e-6),
                          rasterized=True)
    ax2.set_xlim(xe[0], xe[-1])
    ax2.set_ylim(len(pos) - 0.5, -0.5)
    ax2.grid(False)
    ax2.set_ylabel(label(ds["position"], "position t (cell, 0-based)"))
    if "determined" in ds.coords:
        det = np.asarray(ds["determined"].values, bool)
        tr = mtransforms.blended_transform_factory(ax2.transAxes, ax2.transData)
        ax2.plot(np.full(det.sum(), -0.015), pos[det], ls="none", marker=">", ms=4, color=RED, transform=tr,
                 clip_on=False)
        ax2.set_title(f"{SPLIT_NAMES.get(split, split)} per position (▶ determined by its prefix)")
    else:
        ax2.set_title(f"{SPLIT_NAMES.get(split, split)} per position")
    cb = fig.colorbar(mesh, ax=ax2, extend="max")
    cb.set_label(label(ds["ce"], "cross-entropy"))
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels))
    return _root(fig)


# ------------------------------------------------------------------------------------------ landscape
@_styled
def plot_plane(plane: xr.Dataset, anchor=None, steps=None, sigmas=None, fig=None, n_steps: int = 4,
               arrows: int = 11):
    """Denoiser vector field on the plane of a hypercube face (paper Figs. 3D, 17-19). For each step
    two rows: the score magnitude (magma, log colour scale) with arrows of the in-plane score direction,
    and the attraction toward x_a (blue, < 0) or x_b (red, > 0); a column per sigma; the four
    vertices marked (a: anchor, b: valid-novel, c/d: invalid). ``anchor``: a train index of the
    cube's anchors (default: the first), or 'mean' to average over anchors (their planes share
    coordinates); ``steps`` default: ``n_steps`` evenly spaced steps."""
    from matplotlib.colors import LogNorm
    _need(plane, ["score_norm", "score_u", "score_v", "attraction"], "plot_plane")
    if anchor == "mean":
        ds, what = plane.mean("anchor", keep_attrs=True), f"mean over {plane.sizes['anchor']} anchors"
        vu, vv = plane["vertex_u"].isel(anchor=0), plane["vertex_v"].isel(anchor=0)
    else:
        a = plane["anchor"].values[0] if anchor is None else anchor
        ds, what = plane.sel(anchor=a), f"anchor (train index) {int(a)}"
        vu, vv = plane["vertex_u"].sel(anchor=a), plane["vertex_v"].sel(anchor=a)
    chosen = pick(_steps(ds), n_steps) if steps is None else np.atleast_1d(steps)
    sig = ds["sigma"].values if sigmas is None else np.atleast_1d(sigmas)
    ds = ds.sel(step=chosen, sigma=sig).load()
    u, v = ds["u"].values, ds["v"].values
    nr, nc = 2 * len(chosen), len(sig)
    fig = _figure(fig, (2.35 * nc + 1.6, 2.15 * nr + 0.6))
    axes = np.array(fig.subplots(nr, nc, sharex=True, sharey=True, squeeze=False))
    sn = ds["score_norm"].values
    pos = sn[np.isfinite(sn) & (sn > 0)]
    hi = float(pos.max()) if pos.size else 1.0
    lo = max(float(np.percentile(pos, 1)) if pos.size else hi * 1e-3, hi * 1e-4)
    snorm = LogNorm(vmin=lo, vmax=hi)
    at = np.abs(ds["attraction"].values)
    amax = float(np.nanmax(at)) if np.isfinite(at).any() else 1.0
    k = max(1, int(np.ceil(len(u) / arrows)))
    n_arrows = len(u[::k])
    meshes = {}
    for i, s in enumerate(chosen):
        for j, sg in enumerate(sig):
            d = ds.sel(step=s, sigma=sg)
            ax_s, ax_a = axes[2 * i, j], axes[2 * i + 1, j]
            meshes["s"] = ax_s.pcolormesh(u, v, np.clip(d["score_norm"].values.T, lo, None), cmap="magma",
                                          norm=snorm, shading="nearest", rasterized=True)
            su, sv = d["score_u"].values[::k, ::k].T, d["score_v"].values[::k, ::k].T
            nrm = np.hypot(su, sv)
            nrm = np.where(nrm > 0, nrm, 1)
            ax_s.quiver(u[::k], v[::k], su / nrm, sv / nrm, color="white", alpha=0.8, scale=n_arrows / 0.55,
                        width=0.008, headwidth=4, headlength=4, headaxislength=3.5, pivot="mid")
            meshes["a"] = ax_a.pcolormesh(u, v, d["attraction"].values.T, cmap="RdBu_r", vmin=-amax, vmax=amax,
                                          shading="nearest", rasterized=True)
            for ax in (ax_s, ax_a):
                _mark_vertices(ax, vu, vv)
                ax.set_aspect("equal")
                ax.grid(False)
            if i == 0:
                ax_s.set_title(f"σ = {sg:g}")
        axes[2 * i, 0].set_ylabel(f"step {int(s)}: |score|\nv (toward x_c)")
        axes[2 * i + 1, 0].set_ylabel(f"step {int(s)}: attraction\nv (toward x_c)")
    for ax in axes[-1]:
        ax.set_xlabel("u (toward x_b)")
    for r in range(nr):  # one colorbar per row (same scale in all rows of a kind): keeps panels aligned
        cb = fig.colorbar(meshes["s" if r % 2 == 0 else "a"], ax=list(axes[r]), pad=0.02, shrink=0.9)
        cb.set_label("|score| (log scale)" if r % 2 == 0 else "attraction")
        if r % 2 == 0:
            _log_colorbar_ticks(cb)
    _suptitle(fig, f"Denoiser field on a cube face through a train sample ({what})\n|score| = |(D − x)/σ²|, "
                 "arrows: its in-plane direction; attraction = ⟨D − (x_a + x_b)/2, û⟩, < 0 (blue): toward x_a, "
                 "> 0 (red): toward x_b\n○ valid vertices (a: the train sample, b: valid-novel), ✕ invalid (c, d)")
    return _root(fig)


def _mark_vertices(ax, vu, vv):
    names = [str(n) for n in vu["vertex"].values]
    for n, x, y in zip(names, vu.values, vv.values):
        valid = n in ("a", "b")
        ax.plot(x, y, marker="o" if valid else "X", ms=6, mfc="white" if valid else "black", mec="black", mew=1,
                ls="none", zorder=5)
        ax.annotate(n, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8, fontweight="bold",
                    color="black", zorder=6, bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.7))


BASIN_TITLES = {"h1_invalid": "toward the Hamming-1 invalid\nneighbour x_c",
                "h2_valid_novel": "toward the Hamming-2 valid-novel\nneighbour x_b",
                "nearest_train": "toward the nearest other\ntrain sample"}
BASIN_ROWS = {"exact_match": "exact match of sign(D) to x_a", "hamming": "Hamming distance of sign(D) to x_a",
              "l2": "‖D − x_a‖"}


@_styled
def plot_basin(basin: xr.Dataset, sigma: float | None = None, steps=None, fig=None, n_steps: int = 6):
    """1D basin profiles along lines x_a + alpha (x_end - x_a) toward the three ends (columns): exact
    match, Hamming distance and l2 distance of the denoiser output to x_a (rows), the mean over
    anchors with its bootstrap interval as a band, one line per step (paper Figs. 3E, 16).
    ``sigma``: the noise level (default: the one nearest 1)."""
    import matplotlib.lines as mlines
    rows = [r for r in BASIN_ROWS if f"{r}_mean" in basin]
    if not rows:
        _need(basin, ["exact_match_mean"], "plot_basin")
    sg = float(_nearest(basin["sigma"].values, [1.0 if sigma is None else sigma])[0])
    ds = basin.sel(sigma=sg)
    chosen = pick(_steps(ds), n_steps) if steps is None else np.atleast_1d(steps)
    ds = ds.sel(step=chosen)
    dirs = [str(d) for d in ds["direction"].values]
    fig = _figure(fig, (3.4 * len(dirs) + 1.8, 2.5 * len(rows) + 0.7))
    axes = np.array(fig.subplots(len(rows), len(dirs), sharex=True, sharey="row", squeeze=False))
    alpha = ds["alpha"].values
    colors = _seq_colors(len(chosen))
    for i, r in enumerate(rows):
        for j, dname in enumerate(dirs):
            ax = axes[i, j]
            for col, s in zip(colors, chosen):
                d = ds.sel(step=s, direction=dname)
                ax.plot(alpha, d[f"{r}_mean"], color=col, lw=1.8)
                if f"{r}_lo" in d:
                    ax.fill_between(alpha, d[f"{r}_lo"], d[f"{r}_hi"], color=col, alpha=0.18, lw=0)
            for x in (0, 1):
                ax.axvline(x, color="k", lw=0.8, ls=":")
            if i == 0:
                ax.set_title(BASIN_TITLES.get(dname, dname))
        axes[i, 0].set_ylabel(label(ds[f"{r}_mean"], BASIN_ROWS[r], width=24))
    for ax in axes[-1]:
        ax.set_xlabel(label(ds["alpha"], "α  (0: x_a, 1: the end)"))
    handles = [mlines.Line2D([], [], color=c, lw=2) for c in colors]
    _legend_outside(fig, handles, [f"step {int(s)}" for s in chosen], title="checkpoint")
    n = basin.sizes.get("anchor", 0)
    _suptitle(fig, f"Basins around train samples at σ = {sg:g}: mean over {n} anchors (band: bootstrap "
                 "interval)", fontsize="medium")
    return _root(fig)


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


# ------------------------------------------------------------------------------------------ drivers
class PlotResult(list):
    """The written figure paths (a list of Path), with ``notes``: one line per figure skipped."""

    def __init__(self, paths=(), notes=()):
        super().__init__(paths)
        self.notes = list(notes)


#: (figure name, cubes it needs, architectures the cubes exist for, drawing function)
RUN_FIGURES = [
    ("learning_dynamics", ("samples",), ("dit", "gpt"),
     lambda c: plot_learning_dynamics(c["samples"], mem_adaptive=c.get("mem_adaptive"))),
    ("state_raster", ("samples",), ("dit", "gpt"), lambda c: plot_state_raster(c["samples"])),
    ("nn_hamming", ("samples",), ("dit", "gpt"), lambda c: plot_nn_hamming(c["samples"])),
    ("transitions", ("markov",), ("dit", "gpt"), lambda c: plot_transitions(c["markov"])),
    ("dsm_spectrum", ("dsm_spectrum",), ("dit",), lambda c: plot_dsm_spectrum(c["dsm_spectrum"])),
    ("dsm_bands", ("dsm_spectrum",), ("dit",), lambda c: plot_dsm_bands(c["dsm_spectrum"], c.get("samples"))),
    ("dsm_gap", ("dsm_spectrum",), ("dit",), lambda c: plot_dsm_gap(c["dsm_spectrum"])),
    ("ce", ("ce",), ("gpt",), lambda c: plot_ce(c["ce"])),
    ("plane", ("plane",), ("dit",), lambda c: plot_plane(c["plane"])),
    ("basin", ("basin",), ("dit",), lambda c: plot_basin(c["basin"])),
]
PROBE_COMMAND = {"samples": "samples", "markov": "markov", "dsm_spectrum": "dsm-spectrum", "ce": "ce",
                 "plane": "plane", "basin": "basin"}


def parse_formats(formats) -> tuple[str, ...]:
    """'png,pdf' or a sequence -> ('png', 'pdf'); only formats matplotlib can write."""
    from matplotlib.figure import Figure
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in items if f.strip()))
    known = Figure().canvas.get_supported_filetypes()
    bad = [f for f in out if f not in known]
    if not out or bad:
        raise TwoclocksError(f"--format {','.join(bad) or formats!r}: choose from {', '.join(sorted(known))} "
                             "(comma-separated, e.g. png,pdf)")
    return out


def save(fig, out: Path, name: str, formats) -> list[Path]:
    """Write ``fig`` as out/name.FORMAT for each format; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in formats:
        p = out / f"{name}.{f}"
        fig.savefig(p, dpi=150, bbox_inches="tight", pad_inches=0.08)
        paths.append(p)
    return paths


def plot_run(run_dir, out=None, formats=("png",), mem_adaptive: bool | None = None) -> PlotResult:
    """Draw every figure whose cube ``run_dir/probes`` holds into ``out`` (default RUN_DIR/figures),
    as each of ``formats``. Returns the written paths (a list) whose ``.notes`` hold one line per
    cube missing (cubes that do not apply to the run's architecture are not mentioned).
    ``mem_adaptive``: the memorization threshold of the clocks drawn (see plot_learning_dynamics)."""
    from twoclocks.run import open_run
    from twoclocks.store import open_cube
    run = open_run(run_dir)
    formats = parse_formats(formats)
    out = Path(out) if out is not None else run.path / "figures"
    arch = run.config.arch
    cubes, result = {"mem_adaptive": mem_adaptive}, PlotResult()
    for name in PROBE_COMMAND:
        p = run.probe_path(name)
        if p.exists():
            cubes[name] = open_cube(p)
    noted = set()
    for fig_name, needs, archs, draw in RUN_FIGURES:
        if arch not in archs:
            continue
        missing = [n for n in needs if n not in cubes]
        if missing:
            for n in missing:
                if n not in noted:
                    noted.add(n)
                    pre = [f"`twoclocks-probe samples {run.path}` then "] if n == "markov" and "samples" not in cubes \
                        else [""]
                    result.notes.append(f"skipped {n}: no probes/{n}.zarr; run {pre[0]}`twoclocks-probe "
                                        f"{PROBE_COMMAND[n]} {run.path}`")
            continue
        fig = draw(cubes)
        result.extend(save(fig, out, fig_name, formats))
    return result


def plot_runs(run_dirs, out, formats=("png",), **clock_options) -> PlotResult:
    """The across-runs figures (clock scaling and the memorization collapse) of several runs with
    samples cubes, into ``out``. ``clock_options`` go to :func:`twoclocks.probes.clocks.compute_clocks`."""
    from twoclocks.probes.clocks import compute_clocks
    from twoclocks.run import open_run
    from twoclocks.store import open_cube
    formats = parse_formats(formats)
    clocks = compute_clocks([str(d) for d in run_dirs], **clock_options)
    samples = [open_cube(open_run(d).probe_path("samples")) for d in run_dirs]
    out = Path(out)
    res = PlotResult()
    res.extend(save(plot_clock_scaling(clocks), out, "clock_scaling", formats))
    res.extend(save(plot_memorization_collapse(clocks, samples), out, "memorization_collapse", formats))
    return res
