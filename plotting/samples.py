"""Figures of the samples and markov cubes: learning dynamics with the two clocks, the state raster,
transitions between states, nearest-neighbour Hamming distances."""
from __future__ import annotations

import numpy as np
import xarray as xr
from twoclocks.plotting.style import (
    memorization_baseline,
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    RED,
    STATE_COLORS,
    STATE_NAMES,
    STATE_SHORT,
    STATES,
    cell_edges,
    make_figure,
    legend_outside,
    require_vars,
    figure_and_ax,
    root_figure,
    scalar_value,
    step_values,
    styled,
    wrapped_suptitle,
    drop_reference,
    label,
    step_axis,
)


# ------------------------------------------------------------------------------------------ samples
def _clock_mapping(clocks) -> dict:
    """tau_rule, tau_mem, their status, the memorization threshold and ``how`` from a mapping or a
    one-run Dataset (NaN / empty where absent)."""
    clocks = {} if clocks is None else clocks

    def get(key, default):
        return np.asarray(clocks[key]).ravel()[0] if key in clocks else default
    out = {"how": str(get("how", "")), "mem_threshold": float(get("mem_threshold", np.nan))}
    for key in ("tau_rule", "tau_mem"):
        out[key] = float(get(key, np.nan))
        out[f"{key}_status"] = str(get(f"{key}_status", "not given" if key not in clocks else "not reached"))
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


@styled
def plot_learning_dynamics(samples: xr.Dataset, clocks=None, eps: float | None = None, fig=None):
    """Sample- and group-level rule accuracy, memorization and the invalid (unquantized) fraction vs
    step, with chance and uniform-valid baselines and the innovation window [tau_rule, tau_mem] shaded
    (paper Figs. 2B, 4A; 1B-C). ``clocks``: a mapping with tau_rule / tau_mem (and optionally their
    ``*_status``, ``mem_threshold`` and ``how``, a line naming the clock options for the title), e.g.
    :func:`twoclocks.plotting.load.run_clock_values` (what `plot` draws) or one run of a clocks Dataset,
    ``clocks.sel(run=...)``; None: no clocks drawn.
    ``eps``: the quantization threshold of the invalid fraction (default: the cube's eps_state)."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    require_vars(samples, ["sample_acc", "sample_mem", "group_acc", "group_mem"], "plot_learning_dynamics")
    ds = drop_reference(samples)
    steps = step_values(ds)
    c = _clock_mapping(clocks)
    tau_rule, tau_mem = c["tau_rule"], c["tau_mem"]
    fig = make_figure(fig, (10.5, 3.8))
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
        chance = scalar_value(ds, f"chance_{level}_acc")
        base = memorization_baseline(ds) if level == "sample" else scalar_value(ds, "uniform_valid_group_mem")
        if np.isfinite(chance):
            ax.axhline(chance, color=BLUE, lw=0.9, ls=":")
        if np.isfinite(base):
            ax.axhline(base, color=ORANGE, lw=0.9, ls=":")
        _mark_clocks(ax, c, steps[-1] if len(steps) else np.nan)
        if level == "sample" and np.isfinite(c["mem_threshold"]):
            ax.axhline(c["mem_threshold"], color=ORANGE, lw=0.9, ls=(0, (5, 3)), gid="mem_threshold")
        step_axis(ax, steps)
        ax.set_title(f"{level} level")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("fraction of samples")
    handles = [mlines.Line2D([], [], color=BLUE, lw=2, marker="o", ms=3), mlines.Line2D([], [], color=ORANGE, lw=2,
               ls="--", marker="s", ms=3), mlines.Line2D([], [], color=BLUE, lw=0.9, ls=":"),
               mlines.Line2D([], [], color=ORANGE, lw=0.9, ls=":")]
    labels = ["rule accuracy", "memorization", "chance accuracy", "memorization of a perfect\nmodel of the data, N/|support|"]
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
    legend_outside(fig, handles, labels)
    fmt = (lambda k: f"{c[k]:g}" if np.isfinite(c[k]) else c[f"{k}_status"])
    head = ("Learning dynamics" if clocks is None
            else f"Learning dynamics: tau_rule = {fmt('tau_rule')}, tau_mem = {fmt('tau_mem')}")
    wrapped_suptitle(fig, head + (f"\n{c['how']}" if c["how"] else ""))
    return root_figure(fig)


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


@styled
def plot_state_raster(samples: xr.Dataset, fig=None):
    """Per-sample states across training (paper Figs. 3A, 11 top): the number of samples in each
    state per step (top) and one row per seed (bottom), seeds sorted by the step at which they first
    become memorized (then first valid, then first quantized)."""
    import matplotlib.patches as mpatches
    from matplotlib.colors import BoundaryNorm, ListedColormap
    require_vars(samples, ["state"], "plot_state_raster")
    ds = drop_reference(samples)
    steps = step_values(ds)
    _, st = _state_matrix(ds)
    n_seed = st.shape[0]
    counts = np.stack([(st == k).sum(0) for k in range(len(STATES))])
    colors = [STATE_COLORS[s] for s in STATES]
    fig = make_figure(fig, (9.0, 6.2))
    top, bot = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2.2])
    step_axis(top, steps, label_it=False)
    step_axis(bot, steps)
    edges = cell_edges(bot.xaxis, steps)
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
    legend_outside(fig, handles, [STATE_NAMES[s] for s in STATES], title="sample state")
    wrapped_suptitle(fig, f"Per-sample states of {n_seed} fixed noise seeds")
    return root_figure(fig)


@styled
def plot_transitions(markov: xr.Dataset, fig=None):
    """Transition matrices between sample states, one per window of steps (paper Fig. 11 middle):
    colour = row-normalized probability, text = probability and (count)."""
    require_vars(markov, ["window_prob", "window_counts"], "plot_transitions")
    n_win = markov.sizes["window"]
    fig = make_figure(fig, (3.3 * n_win + 1.4, 3.6))
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
    wrapped_suptitle(fig, "State transitions between consecutive checkpoints, per window")
    return root_figure(fig)


@styled
def plot_nn_hamming(samples: xr.Dataset, ax=None, stat: str = "mean", min_count: int = 10):
    """Nearest-train Hamming distance vs step for all, rule-valid and rule-valid-novel samples (paper
    Fig. 12). ``stat``: 'mean' or 'median'. Points summarizing fewer than ``min_count`` samples
    (``subset_count``) are left out."""
    var = f"nn_hamming_{stat}"
    require_vars(samples, [var], "plot_nn_hamming")
    ds = drop_reference(samples)
    steps = step_values(ds)
    fig, ax = figure_and_ax(ax, (7.2, 3.8))
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
    return root_figure(fig)


