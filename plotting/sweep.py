"""Across-run figures: the clocks against G and N (with the power-law fit), and the memorization
collapse in steps per example.

- :func:`plot_clock_scaling` (Figs. 2C, 2D, 10): both clocks vs G and vs N with the least-squares fits;
- :func:`plot_rule_vs_group` (Fig. 2C): tau_rule and tau_mem vs G, clocks not reached drawn as censored,
  with the estimated per-unit-G factor of tau_rule (``twoclocks.plotting.load.rule_group_fit``, line and band);
- :func:`plot_mem_vs_n` (Fig. 2D, Table 4): tau_mem vs N with the least-squares and the censored
  maximum-likelihood fits (alpha's interval), runs that never memorized drawn as censored;
- :func:`plot_memorization_collapse` (Figs. 2H, 8): memorization vs step and vs steps per example.

The fits come computed (:mod:`twoclocks.plotting.load`: ``rule_group_fit``, ``mem_fits``); these
functions only draw.
"""
from __future__ import annotations

import json
import textwrap

import numpy as np
import xarray as xr
from twoclocks import TwoclocksError
from twoclocks.plotting.style import (
    memorization_baseline,
    make_figure,
    legend_outside,
    require_vars,
    figure_and_ax,
    root_figure,
    scalar_value,
    seq_colors,
    step_values,
    styled,
    drop_reference,
    censored_at,
    constant_text,
    interval_bars,
    label,
    log_if_positive,
    palette,
    plain_log_ticks,
    run_floats,
    run_series,
    run_values,
    step_axis,
)


# ------------------------------------------------------------------------------------------ across runs
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
    pooled = (np.array([bool(str(p)) for p in clocks["fit_pooled_over"].values], dtype=bool) if "fit_pooled_over" in clocks
              else np.zeros(len(m), bool))
    return m[:n_fit], pooled[:n_fit]


@styled
def plot_clock_scaling(clocks: xr.Dataset, fig=None):
    """tau_rule and tau_mem across runs: vs the group size G (semilog; colour: N) and vs the train
    set size N (log-log; colour: power-law fit group) with the fits tau_mem = c N^alpha as dashed
    lines (paper Figs. 2C, 2D, 10). ``clocks``: the Dataset of :func:`twoclocks.probes.clocks.
    compute_clocks` (or the sweep's collect), dim ``run`` with coords ``n_train`` and (for the first
    panel) ``group``; fits from its ``fit_*`` variables when present."""
    import matplotlib.lines as mlines
    require_vars(clocks, ["tau_rule", "tau_mem"], "plot_clock_scaling")
    tr, tm = clocks["tau_rule"].values.astype(float), clocks["tau_mem"].values.astype(float)
    n = run_values(clocks, "n_train")
    if n is None:
        raise TwoclocksError("plot_clock_scaling needs the runs' n_train (a coord, or attrs constant_config)")
    n = n.astype(float)
    g = run_values(clocks, "group")
    fig = make_figure(fig, (5.2 * (2 if g is not None else 1) + 0.4, 4.6))
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
        for col, nv in zip(palette(len(ns)), ns):
            points(ax, g.astype(float), n == nv, col)
            handles.append(mlines.Line2D([], [], color=col, marker="s", ls="none"))
            labels.append(f"N = {int(nv)}")
        gv = np.unique(g.astype(float))
        ax.set_xticks(gv, [f"{x:g}" for x in gv])
        ax.set_xlabel(label(clocks.get("group"), "group size G"))
        ax.set_ylabel("onset step")
        log_if_positive(ax, "y", np.r_[tr, tm])
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
    for k, col in zip(groups, palette(len(groups))):
        points(ax, n, own == k, col)
        name = fit_line(k, col, "--") if k >= 0 else "no fit"
        handles.append(mlines.Line2D([], [], color=col, marker="s", ls="--" if k >= 0 else "none"))
        labels.append(textwrap.fill(name, 48))
    for k in np.flatnonzero(pooled):
        labels.append(textwrap.fill(fit_line(k, "black", "-."), 48))
        handles.append(mlines.Line2D([], [], color="black", ls="-."))
    log_if_positive(ax, "x", n)
    log_if_positive(ax, "y", np.r_[tr, tm])
    _n_axis(ax, n, clocks)
    ax.set_ylabel("onset step")
    ax.set_title("clocks vs data (dashed: tau_mem = c N^α)" + note)
    below(ax, handles, labels)
    return root_figure(fig)


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
        elif clocks is not None and run_values(clocks, key) is not None:
            out[key] = run_values(clocks, key)[i].item()
    if "n_train" not in out or "batch" not in out:
        raise TwoclocksError(f"run {i}: cannot tell its N and batch size (no run_config attrs in the samples cube "
                             "and no n_train / batch coords in the clocks Dataset)")
    return out


@styled
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
    cols = dict(zip(ns, seq_colors(len(ns), "viridis")))
    styles = dict(zip(gs, ["-", "--", ":", "-."] * 4))
    fig = make_figure(fig, (11.0, 4.0))
    ax, ax2 = fig.subplots(1, 2, sharey=True)
    all_steps = []
    for s, m in zip(samples, metas):
        require_vars(s, ["sample_mem"], "plot_memorization_collapse")
        d = drop_reference(s)
        st = step_values(d)
        all_steps.append(st)
        col, ls = cols[m["n_train"]], styles[m.get("group")]
        ax.plot(st, d["sample_mem"], color=col, ls=ls, lw=1.8)
        ax2.plot((st + 1) * m["batch"] / m["n_train"], d["sample_mem"], color=col, ls=ls, lw=1.8)
        base = memorization_baseline(d)
        if np.isfinite(base):
            for a in (ax, ax2):
                a.axhline(base, color=col, lw=1.1, ls=(0, (1, 2)))
    step_axis(ax, np.concatenate(all_steps))
    ax2.set_xscale("log")
    plain_log_ticks(ax2.xaxis, ax2.get_xlim())
    ax2.set_xlabel("examples seen per train sample,\n(step + 1) × batch / N")
    thrs = (clocks["mem_threshold"].values.astype(float) if clocks is not None and "mem_threshold" in clocks
            else np.full(len(samples), 0.1))
    same = len(np.unique(np.round(thrs[np.isfinite(thrs)], 6))) <= 1
    thr = float(np.nanmean(thrs)) if np.isfinite(thrs).any() else 0.1
    for a in (ax, ax2):
        if same:
            a.axhline(thr, color="k", lw=0.8, ls="--", gid="mem_threshold")
        else:  # each run's own threshold (adaptive thresholds with different baselines), in its colour
            for t, m in zip(thrs, metas):
                a.axhline(t, color=cols[m["n_train"]], lw=0.8, ls="--", gid="mem_threshold")
    ax.set_ylabel(label(samples[0]["sample_mem"], "sample memorization"))
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("vs step")
    ax2.set_title("vs steps per training example")
    handles = [mlines.Line2D([], [], color=cols[nv], lw=2) for nv in ns]
    labels = [f"N = {nv}" for nv in ns]
    if len(gs) > 1:
        handles += [mlines.Line2D([], [], color="0.3", ls=styles[gv]) for gv in gs]
        labels += [f"G = {gv}" for gv in gs]
    handles += [mlines.Line2D([], [], color="k" if same else "0.3", lw=0.8, ls="--"),
                mlines.Line2D([], [], color="0.3", lw=1.1, ls=(0, (1, 2)))]
    labels += [f"threshold {thr:.3g}" if same else "each run's threshold", "baseline N/|support|"]
    legend_outside(fig, handles, labels)
    return root_figure(fig)




# ------------------------------------------------------------------ the paper's cross-run figures
# tau_rule vs G (Fig. 2C), tau_mem vs N with both fits (Fig. 2D, Table 4), and the driver that draws
# the cross-run figures of a sweep directory (docs/reproducing.md). Runs whose clock was not reached are
# drawn as up-pointing triangles at the step the clock is known to exceed (right-censored).
@styled
def plot_rule_vs_group(clocks: xr.Dataset, ax=None, fit: xr.Dataset | None = None, per_unit_g: float | None = None):
    """tau_rule (circles) and tau_mem (squares) against the group size G on a log step axis (paper
    Fig. 2C), one colour per combination of the other config values that vary (N, model, arch ...).
    A clock not reached is an up-pointing triangle at the last evaluated step (it lies beyond); a
    tau_rule discarded for coming after tau_mem is a grey-filled circle at its raw step.
    ``fit``: the estimated tau_rule = c exp(slope G) (:func:`twoclocks.probes.fits.fit_clocks` with
    y="tau_rule", x="group", model="loglinear", with the line and band variables ``line_x``, ``line_mid``,
    ``line_lo``, ``line_hi`` of :func:`twoclocks.plotting.load.rule_group_fit`), drawn per fit group as its
    least-squares line with the pointwise confidence band, the per-unit-G factor and its interval in the
    legend (None: no fit). ``per_unit_g``: a fixed dotted guide growing by this factor per unit of G from
    the earliest tau_rule of the smallest G (None, the default: no guide). ``clocks``: collect's Dataset
    (or compute_clocks'), with ``group`` a coord (or in attrs['constant_config'])."""
    import matplotlib.lines as mlines
    require_vars(clocks, ["tau_rule", "tau_mem"], "plot_rule_vs_group")
    g = run_values(clocks, "group")
    if g is None:
        raise TwoclocksError("plot_rule_vs_group needs the runs' group size G (a coord, or attrs constant_config)")
    g = g.astype(float)
    tr, tm, raw = run_floats(clocks, "tau_rule"), run_floats(clocks, "tau_mem"), run_floats(clocks, "tau_rule_raw")
    last, cen = run_floats(clocks, "last_step"), censored_at(clocks)
    idx, names = run_series(clocks, ("group",))
    cols = palette(len(names))
    fig, ax = figure_and_ax(ax, (7.6, 4.4))
    offs = (np.arange(len(names)) - (len(names) - 1) / 2) * 0.08  # small x offsets so series do not overlap
    ys = []
    for s, col in enumerate(cols):
        m = idx == s
        x = g + offs[s]
        got = m & np.isfinite(tr)
        ax.plot(x[got], tr[got], ls="-", marker="o", color=col, ms=7, lw=1.2)
        sub = clocks.isel(run=np.flatnonzero(m))
        interval_bars(ax, x[m], sub, "tau_rule", col)
        interval_bars(ax, x[m], sub, "tau_mem", col, alpha=0.5)
        disc = m & ~np.isfinite(tr) & np.isfinite(raw)
        ax.plot(x[disc], raw[disc], ls="none", marker="o", mfc="0.75", mec=col, mew=1.5, ms=7)
        never = m & ~np.isfinite(tr) & ~np.isfinite(raw) & np.isfinite(last)
        ax.plot(x[never], last[never], ls="none", marker="^", mfc="none", mec=col, mew=1.5, ms=8)
        ok = m & np.isfinite(tm)
        ax.plot(x[ok], tm[ok], ls=":", marker="s", color=col, ms=6, lw=1.0)
        c_m = m & np.isfinite(cen)
        ax.plot(x[c_m], cen[c_m], ls="none", marker="^", color=col, ms=8, alpha=0.55)
        ys += [tr[got], raw[disc], last[never], tm[ok], cen[c_m]]
    yv = np.concatenate(ys) if ys else np.array([])
    if per_unit_g and np.isfinite(tr).any():
        g0 = np.nanmin(np.where(np.isfinite(tr), g, np.nan))
        t0 = np.nanmin(np.where(np.isfinite(tr) & (g == g0), tr, np.nan))
        gx = np.linspace(g0, np.nanmax(g), 50)
        top = np.nanmax(yv) * 3 if yv.size else t0 * 100
        guide = t0 * per_unit_g ** (gx - g0)
        keep = guide <= top
        ax.plot(gx[keep], guide[keep], color="0.45", ls=(0, (1, 2)), lw=1.2)
    fit_handles, fit_labels = [], []
    if fit is not None:
        runs = [str(r) for r in clocks["run"].values]
        for j in range(fit.sizes["fit"]):
            f = fit.isel(fit=j)
            m = np.isin(runs, [str(r) for r in fit["run"].values[f["fit_member"].values.astype(bool)]])
            if not np.isfinite(float(f["fit_slope"])) or not m.any() or "line_mid" not in f:
                continue
            own = np.unique(idx[m])
            col = cols[own[0]] if len(own) == 1 else "black"
            dash = ("--", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))[j % 4]
            gx, mid = f["line_x"].values.astype(float), f["line_mid"].values.astype(float)
            lo, hi = f["line_lo"].values.astype(float), f["line_hi"].values.astype(float)
            ax.plot(gx, mid, color=col, lw=1.4, ls=dash, gid="fit_line")
            if np.isfinite(lo).all():
                ax.fill_between(gx, lo, hi, color=col, alpha=0.15, lw=0, gid="fit_band")
            flo, fhi, lvl = float(f["fit_factor_lo"]), float(f["fit_factor_hi"]), float(f["fit_level"])
            ci = f" [{flo:.3g}, {fhi:.3g}] ({lvl:.0%})" if np.isfinite(flo) else ""
            lab = str(f["fit_label"].item())
            fit_handles.append(mlines.Line2D([], [], color=col, ls=dash))
            fit_labels.append(f"fit ×{float(f['fit_factor']):.3g}{ci} per unit of G"
                              + (f"\n{textwrap.fill(lab, 40)}" if lab != "all runs" else ""))
            yv = np.r_[yv, mid]
    log_if_positive(ax, "y", yv)
    gv = np.unique(g)
    ax.set_xticks(gv, [f"{x:g}" for x in gv])
    ax.set_xlabel(label(clocks.get("group"), "group size G"))
    ax.set_ylabel("onset step")
    sub = constant_text(clocks, ("group",))
    ax.set_title("Rule clock vs rule complexity (paper Fig. 2C)" + (f"\n{sub}" if sub else ""), fontsize="medium")
    kinds = [(mlines.Line2D([], [], color="0.3", marker="o", ls="-"), "tau_rule", np.isfinite(tr).any()),
             (mlines.Line2D([], [], color="0.3", marker="s", ls=":"), "tau_mem", np.isfinite(tm).any()),
             (mlines.Line2D([], [], color="0.3", marker="^", mfc="none", ls="none"),
              "tau_rule not reached\n(> last step)", (~np.isfinite(tr) & ~np.isfinite(raw)).any()),
             (mlines.Line2D([], [], color="0.3", marker="^", alpha=0.55, ls="none"),
              "tau_mem not reached\n(> this step)", np.isfinite(cen).any()),
             (mlines.Line2D([], [], marker="o", mfc="0.75", mec="0.3", ls="none"),
              "tau_rule after tau_mem\n(discarded; raw step)", (~np.isfinite(tr) & np.isfinite(raw)).any())]
    handles = [h for h, _, used in kinds if used]
    labels = [lab for _, lab, used in kinds if used]
    handles += fit_handles
    labels += fit_labels
    if per_unit_g:
        handles.append(mlines.Line2D([], [], color="0.45", ls=(0, (1, 2))))
        labels.append(f"×{per_unit_g:g} per unit of G")
    if len(names) > 1 or names[0]:
        handles += [mlines.Line2D([], [], color=c, lw=6) for c in cols]
        labels += names
    legend_outside(fig, handles, labels, fontsize="small")
    return root_figure(fig)


def _n_axis(ax, n, clocks) -> None:
    """The train-set-size axis: a tick at each N (plain numbers on a log axis) and its label."""
    if ax.get_xscale() == "log":
        import matplotlib.ticker as mticker
        nv = np.unique(n[n > 0])
        ax.xaxis.set_minor_locator(mticker.NullLocator())
        ax.set_xticks(nv, [f"{int(x)}" for x in nv])
    ax.set_xlabel(label(clocks.get("n_train"), "train set size N"))


@styled
def plot_mem_vs_n(clocks: xr.Dataset, ax=None, reference_alpha: float | None = 1.0, fits=None):
    """tau_mem against the train-set size N on log-log axes with the fits tau_mem = c N^alpha (paper
    Fig. 2D(ii), Fig. 10, Table 4): per fit group (colour) the least-squares line over the runs that
    reached tau_mem (dashed) and the right-censored maximum-likelihood line (solid) with alpha's
    interval; runs that never memorized are up-pointing triangles at the step tau_mem is known to
    exceed. Pooled fits (e.g. over G) are black. ``reference_alpha``: a grey dotted line of that slope
    through the data's centre (None: none). ``clocks``: collect's Dataset. ``fits``: the fits to draw,
    one dict per fit group with ``members`` (bool per run), ``pooled``, ``label`` and the keys of
    :func:`twoclocks.probes.clocks.fit_power_law` (:func:`twoclocks.plotting.load.mem_fits` reads them
    from the Dataset and adds the censored fit where it lacks one; None: points only)."""
    import matplotlib.lines as mlines
    require_vars(clocks, ["tau_mem"], "plot_mem_vs_n")
    n = run_values(clocks, "n_train")
    if n is None:
        raise TwoclocksError("plot_mem_vs_n needs the runs' n_train (a coord, or attrs constant_config)")
    n = n.astype(float)
    tm, cen = run_floats(clocks, "tau_mem"), censored_at(clocks)
    fits = list(fits or ())
    own = np.full(len(n), -1)
    for k in [i for i, f in enumerate(fits) if not f["pooled"]][::-1]:
        own[fits[k]["members"]] = k
    groups = sorted(set(own.tolist()))
    cols = dict(zip(groups, palette(len(groups))))
    fig, ax = figure_and_ax(ax, (8.4, 4.6))
    handles, labels = [], []
    for k in groups:
        m, col = own == k, cols[k]
        ok = m & np.isfinite(tm)
        ax.plot(n[ok], tm[ok], ls="none", marker="s", color=col, ms=7)
        c_m = m & np.isfinite(cen)
        ax.plot(n[c_m], cen[c_m], ls="none", marker="^", mfc="none", mec=col, mew=1.5, ms=9)
        if k < 0:
            handles.append(mlines.Line2D([], [], color=col, marker="s", ls="none"))
            labels.append("runs in no fit group")

    def lines(f, col, pooled):
        m = f["members"] & np.isfinite(n) & (n > 0)
        if not m.any():
            return
        xs = np.geomspace(n[m].min(), n[m].max(), 30)
        head = textwrap.fill(f["label"], 40)
        if np.isfinite(f["c"]) and np.isfinite(f["alpha"]):
            ax.plot(xs, f["c"] * xs ** f["alpha"], color=col, lw=1.3, ls="-." if pooled else "--")
            handles.append(mlines.Line2D([], [], color=col, ls="-." if pooled else "--"))
            r2 = f"R² = {f['r2']:.2f}, " if np.isfinite(f.get("r2", np.nan)) else ""
            ls_ci = (f" [{f['alpha_lo']:.2f}, {f['alpha_hi']:.2f}]" if np.isfinite(f.get("alpha_lo", np.nan))
                     and np.isfinite(f.get("alpha_hi", np.nan)) else "")
            labels.append(f"{head}\nleast squares: α = {f['alpha']:.2f}{ls_ci}\n({r2}n = {f['n']} reached)")
        if np.isfinite(f.get("c_ml", np.nan)) and np.isfinite(f.get("alpha_ml", np.nan)):
            ax.plot(xs, f["c_ml"] * xs ** f["alpha_ml"], color=col, lw=2.0, ls="-", alpha=0.8)
            handles.append(mlines.Line2D([], [], color=col, ls="-", lw=2.0))
            lvl = f.get("level", np.nan)
            ci = (f" [{f['alpha_ml_lo']:.2f}, {f['alpha_ml_hi']:.2f}]"
                  if np.isfinite(f.get("alpha_ml_lo", np.nan)) and np.isfinite(f.get("alpha_ml_hi", np.nan)) else "")
            lv = f" ({lvl:.0%})" if np.isfinite(lvl) and ci else ""
            none = "" if np.isfinite(cen[m]).any() else "\n(no run censored: the same line)"
            labels.append(f"censored ML: α = {f['alpha_ml']:.2f}{ci}{lv}{none}")
    for k, f in enumerate(fits):
        lines(f, "black" if f["pooled"] else cols.get(k, "0.3"), f["pooled"])
    pos = np.r_[tm[np.isfinite(tm)], cen[np.isfinite(cen)]]
    if reference_alpha is not None and np.isfinite(tm).sum() >= 1:
        ok = np.isfinite(tm)
        x0, y0 = np.exp(np.mean(np.log(n[ok]))), np.exp(np.mean(np.log(tm[ok])))
        xs = np.geomspace(np.nanmin(n), np.nanmax(n), 10)
        ax.plot(xs, y0 * (xs / x0) ** reference_alpha, color="0.55", ls=(0, (1, 2)), lw=1.2)
        handles.append(mlines.Line2D([], [], color="0.55", ls=(0, (1, 2))))
        labels.append(f"slope α = {reference_alpha:g}")
    handles.append(mlines.Line2D([], [], color="0.3", marker="s", ls="none"))
    labels.append("tau_mem reached")
    if np.isfinite(cen).any():
        handles.append(mlines.Line2D([], [], color="0.3", marker="^", mfc="none", ls="none"))
        labels.append("never memorized:\ntau_mem > this step")
    log_if_positive(ax, "x", n)
    log_if_positive(ax, "y", pos)
    _n_axis(ax, n, clocks)
    ax.set_ylabel("tau_mem (step)")
    title = "tau_mem = c N^α (paper Fig. 2D, Table 4)"
    if "mem_threshold" in clocks:
        t = clocks["mem_threshold"].values.astype(float)
        lo, hi = f"{np.nanmin(t):.3g}", f"{np.nanmax(t):.3g}"
        title += f"\nmemorization threshold {lo}" + (f" to {hi}" if hi != lo else "")
    if constant_text(clocks, ("n_train",)):
        title += f"; {constant_text(clocks, ('n_train',))}"
    ax.set_title(title, fontsize="medium")
    legend_outside(fig, handles, labels, fontsize="small")
    return root_figure(fig)
