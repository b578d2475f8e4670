"""Figures of the GPT ce cube: per-position cross-entropy."""
from __future__ import annotations

import numpy as np
import xarray as xr
from twoclocks.plotting.style import (
    RED,
    SPLIT_COLORS,
    SPLIT_NAMES,
    _edges,
    _figure,
    _need,
    _root,
    _steps,
    _styled,
    _trained,
    label,
    step_axis,
)


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


