"""Figures of the dsm_spectrum cube: loss by noise level, loss in sigma bands, the train/held-out gap."""
from __future__ import annotations

import numpy as np
import xarray as xr
from twoclocks import TwoclocksError
from twoclocks.plotting.style import (
    seq_colors,
    ORANGE,
    REFERENCE_STYLES,
    SPLIT_COLORS,
    SPLIT_NAMES,
    STATE_COLORS,
    STATE_NAMES,
    cell_edges,
    make_figure,
    legend_outside,
    nearest_log,
    require_vars,
    positive_or_nan,
    root_figure,
    scalar_value,
    step_values,
    styled,
    wrapped_suptitle,
    drop_reference,
    label,
    pick,
    plain_log_ticks,
    step_axis,
)


# ------------------------------------------------------------------------------------------ DSM
def _loss_var(weighted: bool) -> str:
    return "loss_weighted" if weighted else "loss"


@styled
def plot_dsm_spectrum(dsm: xr.Dataset, steps=None, weighted: bool = False, fig=None, n_steps: int = 4):
    """DSM loss vs noise level on log-log axes for train, held-out and random data at selected steps,
    with the exact reference denoisers as thin lines (paper Figs. 3C, 13). ``steps``: which (default:
    ``n_steps`` evenly spaced evaluated steps); ``weighted``: the EDM-weighted loss."""
    import matplotlib.lines as mlines
    var = _loss_var(weighted)
    require_vars(dsm, [var], "plot_dsm_spectrum")
    ds = drop_reference(dsm)
    chosen = pick(step_values(ds), n_steps) if steps is None else np.atleast_1d(steps)
    fig = make_figure(fig, (2.9 * len(chosen) + 1.8, 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(chosen), sharex=True, sharey=True))
    sig = ds["sigma"].values
    ref = f"reference_{var}"
    refs = [str(r) for r in ds["reference"].values] if ref in ds else []
    model = positive_or_nan(ds[var].sel(step=chosen).values)
    floor = np.nanmin(model) / 3 if np.isfinite(model).any() else None
    for ax, s in zip(axes, chosen):
        d = ds.sel(step=s)
        for k, split in enumerate(ds["split"].values):
            split = str(split)
            col = SPLIT_COLORS.get(split)
            y = positive_or_nan(d[var].sel(split=split))
            ax.plot(sig, y, color=col, lw=3.0 - 0.8 * k)  # thinner on top: coinciding splits stay visible
            if "loss_se" in d and not weighted:
                se = d["loss_se"].sel(split=split).values
                ax.fill_between(sig, positive_or_nan(y - 2 * se), y + 2 * se, color=col, alpha=0.2, lw=0)
            for r in refs:
                ax.plot(sig, positive_or_nan(ds[ref].sel(reference=r, split=split)), color=col, lw=0.9,
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
    legend_outside(fig, handles, labels)
    wrapped_suptitle(fig, "Denoising loss by noise level (band: ±2 SE over the fixed subset; references below the "
                 "model's smallest loss are cut)", fontsize="medium")
    return root_figure(fig)


def _default_bands(sig) -> list[tuple[float, float]]:
    lo, hi = float(np.min(sig)), float(np.max(sig))
    cuts = [10.0 ** k for k in range(int(np.floor(np.log10(lo))) + 1, int(np.ceil(np.log10(hi))))]
    edges = [lo, *[c for c in cuts if lo < c < hi], hi]
    return list(zip(edges[:-1], edges[1:]))


@styled
def plot_dsm_bands(dsm: xr.Dataset, samples: xr.Dataset | None = None, bands=None, weighted: bool = False,
                   fig=None):
    """DSM loss vs step, averaged over the noise levels of each band (default: decades), one panel
    per band, for the three splits (paper Figs. 3B, 14); with ``samples``, the state fractions on
    top."""
    import matplotlib.lines as mlines
    import matplotlib.patches as mpatches
    var = _loss_var(weighted)
    require_vars(dsm, [var], "plot_dsm_bands")
    ds = drop_reference(dsm)
    steps, sig = step_values(ds), ds["sigma"].values
    bands = _default_bands(sig) if bands is None else [tuple(map(float, b)) for b in bands]
    n = len(bands) + (samples is not None)
    fig = make_figure(fig, (7.6, 1.75 * n + 0.9))
    axes = np.atleast_1d(fig.subplots(n, 1, sharex=True))
    handles, labels = [], []
    if samples is not None:
        require_vars(samples, ["state_frac"], "plot_dsm_bands(samples=...)")
        sm = drop_reference(samples)
        ax = axes[0]
        ax.stackplot(step_values(sm), sm["state_frac"].transpose("state_label", "step").values,
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
    legend_outside(fig, handles, labels)
    what = "EDM-weighted DSM loss" if weighted else "DSM loss"
    fig.supylabel(label(ds[var], f"{what}, mean over the band's noise levels", width=60), fontsize="medium")
    wrapped_suptitle(fig, f"{what} per noise band", fontsize="medium")
    return root_figure(fig)


@styled
def plot_dsm_gap(dsm: xr.Dataset, sigmas=(0.2, 0.5, 1.0, 2.0), sigma_range=(0.1, 5.0), fig=None):
    """Held-out minus train DSM loss: a heatmap over step x sigma in ``sigma_range`` (None: all; the
    paper zooms into the critical noise levels, where the gap opens) (left), and vs step at the noise
    levels nearest to ``sigmas`` with ±2 SE bands (right) (paper Fig. 15). The loss-based
    memorization clock's sigma band is dotted, tau_mem_loss a dashed vertical line."""
    ds = drop_reference(dsm)
    if "gap" in ds:
        gap = ds["gap"]
        se = ds["gap_se"] if "gap_se" in ds else None
    else:
        require_vars(ds, ["loss"], "plot_dsm_gap")
        gap = (ds["loss"].sel(split="heldout") - ds["loss"].sel(split="train")).assign_attrs(
            long_name="held-out minus train loss", units=ds["loss"].attrs.get("units", ""))
        se = None
    steps, sig = step_values(ds), ds["sigma"].values
    if sigma_range is not None:
        keep = (sig >= sigma_range[0]) & (sig <= sigma_range[1])
        if keep.sum() >= 1:
            gap, sig = gap.isel(sigma=np.flatnonzero(keep)), sig[keep]
            se = se.isel(sigma=np.flatnonzero(keep)) if se is not None else None
    fig = make_figure(fig, (11.0, 4.0))
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1.25, 1])
    step_axis(ax, steps)
    ax.set_yscale("log")
    g = gap.transpose("sigma", "step").values
    vmax = np.nanpercentile(np.abs(g), 99) if np.isfinite(g).any() else 1.0
    vmax = vmax if vmax > 0 else 1.0
    xe, ye = cell_edges(ax.xaxis, steps), cell_edges(ax.yaxis, sig)
    mesh = ax.pcolormesh(xe, ye, g, cmap="RdBu_r", vmin=-vmax, vmax=vmax, rasterized=True)
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.grid(False)
    ax.set_ylabel(label(ds["sigma"], "noise level σ"))
    plain_log_ticks(ax.yaxis, sig)
    band = ds.attrs.get("criterion_band_mem") if "tau_mem_loss" in ds else None
    for b in (band or ()):
        ax.axhline(float(b), color="k", lw=0.8, ls=":")
    tau = scalar_value(ds, "tau_mem_loss")
    cb = fig.colorbar(mesh, ax=ax, extend="both")
    cb.set_label(label(gap, "held-out − train loss", width=30))
    ax.set_title("memorization gap over step × σ")
    picked = nearest_log(sig, sigmas)
    colors = seq_colors(len(picked))
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
    return root_figure(fig)



