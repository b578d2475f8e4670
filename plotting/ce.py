"""Figures of the GPT ce cube: per-position cross-entropy, and its difference between splits."""
from __future__ import annotations

import numpy as np
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.plotting.style import (
    RED,
    SPLIT_COLORS,
    SPLIT_NAMES,
    cell_edges,
    make_figure,
    require_vars,
    root_figure,
    step_values,
    styled,
    drop_reference,
    label,
    step_axis,
)


# ------------------------------------------------------------------------------------------ GPT CE
@styled
def plot_ce(ce: xr.Dataset, split: str = "heldout", fig=None):
    """GPT next-token cross-entropy: the mean over positions vs step per split with the ideal rule
    model's value dotted (paper Fig. 4C), and the per-position heatmap (step x position) of ``split``
    with the determined positions (last bit of each group) marked (Fig. 4D)."""
    import matplotlib.transforms as mtransforms
    require_vars(ce, ["ce", "ce_mean"], "plot_ce")
    ds = drop_reference(ce)
    steps = step_values(ds)
    fig = make_figure(fig, (11.5, 4.0))
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
    xe = cell_edges(ax2.xaxis, steps)
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
    return root_figure(fig)




@styled
def plot_ce_difference(ce: xr.Dataset, split: str = "hypercube", minus: str = "train", fig=None):
    """The per-position cross-entropy difference ``split`` minus ``minus`` (default hypercube - train,
    paper Fig. 4C-D): left, its mean over the determined positions (last bit of each group, when the
    cube marks them), over the others and over all positions vs step; right, the difference per position
    and step (diverging colours, 0 white), the determined positions marked."""
    import matplotlib.transforms as mtransforms
    from matplotlib.colors import TwoSlopeNorm
    require_vars(ce, ["ce"], "plot_ce_difference")
    have = [str(s) for s in ce["split"].values]
    for s in (split, minus):
        if s not in have:
            raise TwoclocksError(f"plot_ce_difference: the ce cube has no split {s!r} (it has {', '.join(have)})")
    ds = drop_reference(ce)
    steps = step_values(ds)
    diff = (ds["ce"].sel(split=split) - ds["ce"].sel(split=minus)).transpose("step", "position").values.astype(float)
    pos = ds["position"].values
    det = np.asarray(ds["determined"].values, bool) if "determined" in ds.coords else np.zeros(len(pos), bool)
    fig = make_figure(fig, (11.5, 4.0))
    ax, ax2 = fig.subplots(1, 2, width_ratios=[1, 1.2])
    parts = [("all positions", np.ones(len(pos), bool), "0.2", "-")]
    if det.any():
        parts += [("determined by the prefix", det, RED, "--"), ("free", ~det, SPLIT_COLORS.get(split, "0.5"), ":")]
    for name, m, col, ls in parts:
        ax.plot(steps, np.nanmean(diff[:, m], axis=1), color=col, ls=ls, lw=2, label=name, gid=f"mean {name}")
    ax.axhline(0, color="0.5", lw=0.8)
    step_axis(ax, steps)
    ax.set_ylabel(f"cross-entropy {SPLIT_NAMES.get(split, split)}\nminus {SPLIT_NAMES.get(minus, minus)}")
    ax.set_title("mean over positions")
    ax.legend(loc="best", fontsize="small")
    step_axis(ax2, steps)
    finite = diff[np.isfinite(diff)]
    vmax = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
    vmax = max(vmax, 1e-6)
    xe = cell_edges(ax2.xaxis, steps)
    mesh = ax2.pcolormesh(xe, np.arange(len(pos) + 1) - 0.5, diff.T, cmap="RdBu_r",
                          norm=TwoSlopeNorm(0.0, -vmax, vmax), rasterized=True)
    ax2.set_xlim(xe[0], xe[-1])
    ax2.set_ylim(len(pos) - 0.5, -0.5)
    ax2.grid(False)
    ax2.set_ylabel(label(ds["position"], "position t (cell, 0-based)"))
    if det.any():
        tr = mtransforms.blended_transform_factory(ax2.transAxes, ax2.transData)
        ax2.plot(np.full(det.sum(), -0.015), pos[det], ls="none", marker=">", ms=4, color=RED, transform=tr,
                 clip_on=False)
    ax2.set_title("per position" + (" (▶ determined by its prefix)" if det.any() else ""))
    cb = fig.colorbar(mesh, ax=ax2, extend="both")
    cb.set_label(f"{split} - {minus} [{ds['ce'].attrs.get('units', 'nats')}]")
    return root_figure(fig)
