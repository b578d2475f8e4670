"""Across-run figures: the clocks against G and N (with the power-law fit), and the memorization
collapse in steps per example.

- :func:`plot_clock_scaling` (Figs. 2C, 2D, 10): both clocks vs G and vs N with the least-squares fits;
- :func:`plot_rule_vs_group` (Fig. 2C): tau_rule and tau_mem vs G, clocks not reached drawn as censored,
  with the estimated per-unit-G factor of tau_rule (:func:`rule_group_fit`, line and band);
- :func:`plot_mem_vs_n` (Fig. 2D, Table 4): tau_mem vs N with the least-squares and the censored
  maximum-likelihood fits (alpha's interval), runs that never memorized drawn as censored;
- :func:`plot_memorization_collapse` (Figs. 2H, 8): memorization vs step and vs steps per example;
- :func:`plot_sweep`: the figures that apply to a sweep directory (:func:`sweep_figures`), into files.
"""
from __future__ import annotations

import functools
import json
import textwrap

import numpy as np
import xarray as xr
from twoclocks import TwoclocksError
from twoclocks.probes.fits import fit_clocks, fit_line, fit_rows
from twoclocks.plotting.style import (
    memorization_baseline,
    _figure,
    _legend_outside,
    _need,
    _one_ax,
    _root,
    _scalar,
    _seq_colors,
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
    pooled = (np.array([bool(str(p)) for p in clocks["fit_pooled_over"].values], dtype=bool) if "fit_pooled_over" in clocks
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
    _n_axis(ax, n, clocks)
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
    _legend_outside(fig, handles, labels)
    return _root(fig)




# ------------------------------------------------------------------ the paper's cross-run figures
# tau_rule vs G (Fig. 2C), tau_mem vs N with both fits (Fig. 2D, Table 4), and the driver that draws
# the cross-run figures of a sweep directory (docs/reproducing.md). Runs whose clock was not reached are
# drawn as up-pointing triangles at the step the clock is known to exceed (right-censored).
_OTHER_AXES = ("arch", "model", "n_train", "lr", "weight_decay", "batch", "rule", "encoding", "side", "seed")


def _floats(clocks, name):
    return clocks[name].values.astype(float) if name in clocks else np.full(clocks.sizes["run"], np.nan)


def _censored_at(clocks) -> np.ndarray:
    """Per run, the step tau_mem is known to exceed where it was not reached (NaN where reached):
    ``tau_mem_censored_at`` when the Dataset has it, else the last evaluated step."""
    tm = _floats(clocks, "tau_mem")
    cen = _floats(clocks, "tau_mem_censored_at") if "tau_mem_censored_at" in clocks else _floats(clocks, "last_step")
    return np.where(np.isfinite(tm), np.nan, cen)


def _series(clocks, exclude: tuple[str, ...]) -> tuple[np.ndarray, list[str]]:
    """(series index per run, label per series) over the config values that vary between runs,
    other than ``exclude``."""
    n_run = clocks.sizes["run"]
    cols = []
    for name in _OTHER_AXES:
        if name in exclude:
            continue
        v = _coord(clocks, name)
        if v is not None and len(np.unique(v.astype(str))) > 1:
            cols.append((name, v.astype(str)))
    keys = [", ".join(f"{'N' if k == 'n_train' else k} = {v[i]}" for k, v in cols) for i in range(n_run)]
    labels = list(dict.fromkeys(keys))
    return np.array([labels.index(k) for k in keys]), labels


def _constants(clocks, exclude: tuple[str, ...] = ()) -> str:
    """'arch gpt, model tiny, N = 1024, ...': the config values shared by every run (coords with one
    value, or attrs['constant_config']), for a figure's subtitle."""
    parts = []
    for name in ("arch", "model", "rule", "group", "n_train", "batch", "lr"):
        if name in exclude:
            continue
        v = _coord(clocks, name)
        if v is not None and len(v) and len(np.unique(v.astype(str))) == 1:
            val = v[0].item() if hasattr(v[0], "item") else v[0]
            parts.append({"n_train": f"N = {val}", "group": f"G = {val}"}.get(name, f"{name} {val}"))
    return ", ".join(parts)


@_styled
def plot_rule_vs_group(clocks: xr.Dataset, ax=None, fit: xr.Dataset | None = None, per_unit_g: float | None = None):
    """tau_rule (circles) and tau_mem (squares) against the group size G on a log step axis (paper
    Fig. 2C), one colour per combination of the other config values that vary (N, model, arch ...).
    A clock not reached is an up-pointing triangle at the last evaluated step (it lies beyond); a
    tau_rule discarded for coming after tau_mem is a grey-filled circle at its raw step.
    ``fit``: the estimated tau_rule = c exp(slope G) (:func:`twoclocks.probes.fits.fit_clocks` with
    y="tau_rule", x="group", model="loglinear"; :func:`rule_group_fit`), drawn per fit group as its
    least-squares line with the pointwise confidence band, the per-unit-G factor and its interval in the
    legend (None: no fit). ``per_unit_g``: a fixed dotted guide growing by this factor per unit of G from
    the earliest tau_rule of the smallest G (None, the default: no guide). ``clocks``: collect's Dataset
    (or compute_clocks'), with ``group`` a coord (or in attrs['constant_config'])."""
    import matplotlib.lines as mlines
    _need(clocks, ["tau_rule", "tau_mem"], "plot_rule_vs_group")
    g = _coord(clocks, "group")
    if g is None:
        raise TwoclocksError("plot_rule_vs_group needs the runs' group size G (a coord, or attrs constant_config)")
    g = g.astype(float)
    tr, tm, raw = _floats(clocks, "tau_rule"), _floats(clocks, "tau_mem"), _floats(clocks, "tau_rule_raw")
    last, cen = _floats(clocks, "last_step"), _censored_at(clocks)
    idx, names = _series(clocks, ("group",))
    cols = _palette(len(names))
    fig, ax = _one_ax(ax, (7.6, 4.4))
    offs = (np.arange(len(names)) - (len(names) - 1) / 2) * 0.08  # small x offsets so series do not overlap
    ys = []
    for s, col in enumerate(cols):
        m = idx == s
        x = g + offs[s]
        got = m & np.isfinite(tr)
        ax.plot(x[got], tr[got], ls="-", marker="o", color=col, ms=7, lw=1.2)
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
        for j, (lab, f) in enumerate(fit_rows(fit)):
            m = np.isin(runs, [str(r) for r in fit["run"].values[fit["fit_member"].values[j]]])
            if not np.isfinite(f["slope"]) or not m.any():
                continue
            own = np.unique(idx[m])
            col = cols[own[0]] if len(own) == 1 else "black"
            dash = ("--", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))[j % 4]
            gx = np.linspace(np.nanmin(g[m]), np.nanmax(g[m]), 50)
            mid, lo, hi = fit_line(fit, j, gx)
            ax.plot(gx, mid, color=col, lw=1.4, ls=dash)
            if np.isfinite(lo).all():
                ax.fill_between(gx, lo, hi, color=col, alpha=0.15, lw=0)
            ci = (f" [{f['factor_lo']:.3g}, {f['factor_hi']:.3g}] ({f['level']:.0%})"
                  if np.isfinite(f["factor_lo"]) else "")
            fit_handles.append(mlines.Line2D([], [], color=col, ls=dash))
            fit_labels.append(f"fit ×{f['factor']:.3g}{ci} per unit of G"
                              + (f"\n{textwrap.fill(lab, 40)}" if lab != "all runs" else ""))
            yv = np.r_[yv, mid]
    _log_if_positive(ax, "y", yv)
    gv = np.unique(g)
    ax.set_xticks(gv, [f"{x:g}" for x in gv])
    ax.set_xlabel(label(clocks.get("group"), "group size G"))
    ax.set_ylabel("onset step")
    sub = _constants(clocks, ("group",))
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
    _legend_outside(fig, handles, labels, fontsize="small")
    return _root(fig)


def _n_axis(ax, n, clocks) -> None:
    """The train-set-size axis: a tick at each N (plain numbers on a log axis) and its label."""
    if ax.get_xscale() == "log":
        import matplotlib.ticker as mticker
        nv = np.unique(n[n > 0])
        ax.xaxis.set_minor_locator(mticker.NullLocator())
        ax.set_xticks(nv, [f"{int(x)}" for x in nv])
    ax.set_xlabel(label(clocks.get("n_train"), "train set size N"))


def _ml_fit(n, tm, cen) -> dict:
    """probes.clocks.fit_power_law with the censoring steps (both fits)."""
    from twoclocks.probes.clocks import fit_power_law
    return fit_power_law(n, tm, cen)


def _group_fits(clocks, n, tm, cen) -> list[dict]:
    """The tau_mem fits to draw: collect's ``fit_*`` variables when present (its censored ML fit when
    it stored one, else that fit computed here over the same group), else one fit over all runs
    computed here (probes.clocks.fit_power_law)."""
    members, pooled = _fit_members(clocks)
    out = []
    if len(members):
        ml_keys = ("c_ml", "alpha_ml", "alpha_ml_lo", "alpha_ml_hi", "level")
        def value(f, key):
            return float(f[f"fit_{key}"]) if f"fit_{key}" in f else np.nan
        for k in range(len(members)):
            f = clocks.isel(fit=k)
            get = functools.partial(value, f)
            out.append({"members": members[k], "pooled": bool(pooled[k]),
                        "label": str(f["fit_label"].item()) if "fit_label" in f else f"fit {k}",
                        "c": get("c"), "alpha": get("alpha"), "alpha_lo": get("alpha_lo"),
                        "alpha_hi": get("alpha_hi"), "r2": get("r2"),
                        "n": int(get("n")) if np.isfinite(get("n")) else int((members[k] & np.isfinite(tm)).sum()),
                        "c_ml": get("c_ml"), "alpha_ml": get("alpha_ml"), "alpha_ml_lo": get("alpha_ml_lo"),
                        "alpha_ml_hi": get("alpha_ml_hi"), "level": get("level")})
            if "fit_alpha_ml" not in clocks:
                m = members[k]
                fit = _ml_fit(n[m], tm[m], cen[m])
                out[-1].update({key: fit.get(key, np.nan) for key in ml_keys})
        return out
    return [{"members": np.ones(len(n), bool), "pooled": False, "label": "all runs", **_ml_fit(n, tm, cen)}]


@_styled
def plot_mem_vs_n(clocks: xr.Dataset, ax=None, reference_alpha: float | None = 1.0):
    """tau_mem against the train-set size N on log-log axes with the fits tau_mem = c N^alpha (paper
    Fig. 2D(ii), Fig. 10, Table 4): per fit group (colour) the least-squares line over the runs that
    reached tau_mem (dashed) and the right-censored maximum-likelihood line (solid) with alpha's
    interval; runs that never memorized are up-pointing triangles at the step tau_mem is known to
    exceed. Pooled fits (e.g. over G) are black. ``reference_alpha``: a grey dotted line of that slope
    through the data's centre (None: none). ``clocks``: collect's Dataset (fits from its ``fit_*``
    variables; without them one fit over all runs is computed)."""
    import matplotlib.lines as mlines
    _need(clocks, ["tau_mem"], "plot_mem_vs_n")
    n = _coord(clocks, "n_train")
    if n is None:
        raise TwoclocksError("plot_mem_vs_n needs the runs' n_train (a coord, or attrs constant_config)")
    n = n.astype(float)
    tm, cen = _floats(clocks, "tau_mem"), _censored_at(clocks)
    fits = _group_fits(clocks, n, tm, cen)
    own = np.full(len(n), -1)
    for k in [i for i, f in enumerate(fits) if not f["pooled"]][::-1]:
        own[fits[k]["members"]] = k
    groups = sorted(set(own.tolist()))
    cols = dict(zip(groups, _palette(len(groups))))
    fig, ax = _one_ax(ax, (8.4, 4.6))
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
    _log_if_positive(ax, "x", n)
    _log_if_positive(ax, "y", pos)
    _n_axis(ax, n, clocks)
    ax.set_ylabel("tau_mem (step)")
    title = "tau_mem = c N^α (paper Fig. 2D, Table 4)"
    if "mem_threshold" in clocks:
        t = clocks["mem_threshold"].values.astype(float)
        lo, hi = f"{np.nanmin(t):.3g}", f"{np.nanmax(t):.3g}"
        title += f"\nmemorization threshold {lo}" + (f" to {hi}" if hi != lo else "")
    if _constants(clocks, ("n_train",)):
        title += f"; {_constants(clocks, ('n_train',))}"
    ax.set_title(title, fontsize="medium")
    _legend_outside(fig, handles, labels, fontsize="small")
    return _root(fig)


def rule_group_fit(clocks: xr.Dataset, level: float = 0.95) -> xr.Dataset | str | None:
    """The fit tau_rule = c exp(slope G) that :func:`plot_rule_vs_group` draws
    (:func:`twoclocks.probes.fits.fit_clocks`, loglinear, per group of runs equal but for G and seeds):
    None when fewer than 3 G values have a tau_rule, the reason (a line) when the fit is refused."""
    g = _coord(clocks, "group")
    if g is None or "tau_rule" not in clocks:
        return None
    have = np.isfinite(_floats(clocks, "tau_rule"))
    if len(np.unique(g[have].astype(float))) < 3:
        return None
    try:
        return fit_clocks(clocks, y="tau_rule", x="group", model="loglinear", level=level)
    except TwoclocksError as e:
        return f"no tau_rule vs G fit: {e}"


def sweep_figures(clocks: xr.Dataset) -> list[str]:
    """The cross-run figures that apply to a sweep's collect Dataset: 'rule_vs_group' when G varies,
    'mem_vs_n' and 'memorization_collapse' when N varies, 'clock_scaling' when both do."""
    def varies(name):
        v = _coord(clocks, name)
        return v is not None and len(np.unique(v.astype(str))) > 1
    out = []
    if varies("group"):
        out.append("rule_vs_group")
    if varies("n_train"):
        out += ["mem_vs_n", "memorization_collapse"]
    if varies("group") and varies("n_train"):
        out.append("clock_scaling")
    return out


def plot_sweep(sweep_dir, out=None, formats=("png",), clocks: xr.Dataset | None = None, dpi: int = 150,
               **collect_options):
    """Draw the cross-run figures of a sweep directory into ``out`` (default SWEEP_DIR/figures):
    :func:`sweep_figures` decides which (rule_vs_group.png, mem_vs_n.png, memorization_collapse.png,
    clock_scaling.png). The clocks come from ``clocks``, else SWEEP_DIR/collect.zarr when it exists
    (what `collect` printed), else ``twoclocks.sweep.collect(..., write=False, **collect_options)``;
    the memorization curves from each run's probes/samples.zarr. Returns a PlotResult (paths, notes)."""
    from pathlib import Path

    from twoclocks.plotting.figures import PlotResult, parse_formats
    from twoclocks.store import open_cube
    sweep_dir = Path(sweep_dir)
    formats = parse_formats(formats)
    out = Path(out) if out is not None else sweep_dir / "figures"
    result = PlotResult()
    if clocks is None:
        if (sweep_dir / "collect.zarr").exists() and not collect_options:
            clocks = open_cube(sweep_dir / "collect.zarr").load()
            result.notes.append(f"clocks from {sweep_dir / 'collect.zarr'}")
        else:
            from twoclocks.sweep import collect
            clocks = collect(sweep_dir, write=False, **collect_options)
    names = sweep_figures(clocks)
    if not names:
        result.notes.append("no grid axis of group or n_train varies: no cross-run figure (plot a run with "
                            "`twoclocks-probe plot SWEEP_DIR/RUN`)")
        return result
    def run_dir(value):  # collect: run names (and run_dir paths); compute_clocks: run directories
        p = Path(str(value))
        return p if (p / "probes").is_dir() else sweep_dir / p.name
    run_dirs = [run_dir(d) for d in (clocks["run_dir"] if "run_dir" in clocks else clocks["run"]).values]
    for name in names:
        if name == "rule_vs_group":
            fit = rule_group_fit(clocks)
            if isinstance(fit, str):
                result.notes.append(fit)
                fit = None
            fig = plot_rule_vs_group(clocks, fit=fit)
        elif name == "mem_vs_n":
            fig = plot_mem_vs_n(clocks)
        elif name == "clock_scaling":
            fig = plot_clock_scaling(clocks)
        else:
            fig = plot_memorization_collapse(clocks, [open_cube(d / "probes" / "samples.zarr") for d in run_dirs])
        out.mkdir(parents=True, exist_ok=True)
        for f in formats:
            p = out / f"{name}.{f}"
            fig.savefig(p, dpi=dpi, bbox_inches="tight", pad_inches=0.08)
            result.append(p)
    return result
