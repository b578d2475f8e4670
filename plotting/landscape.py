"""Figures of the landscape cubes: plane vector fields and basin profiles."""
from __future__ import annotations

import numpy as np
import xarray as xr
from twoclocks.plotting.style import (
    seq_colors,
    make_figure,
    legend_outside,
    log_colorbar_ticks,
    nearest_log,
    require_vars,
    root_figure,
    step_values,
    styled,
    wrapped_suptitle,
    label,
    pick,
)


# ------------------------------------------------------------------------------------------ landscape
@styled
def plot_plane(plane: xr.Dataset, anchor=None, steps=None, sigmas=None, fig=None, n_steps: int = 4,
               arrows: int = 11):
    """Denoiser vector field on the plane of a hypercube face (paper Figs. 3D, 17-19). For each step
    two rows: the score magnitude (magma, log colour scale) with arrows of the in-plane score direction,
    and the attraction toward x_a (blue, < 0) or x_b (red, > 0); a column per sigma; the four
    vertices marked (a: anchor, b: valid-novel, c/d: invalid). ``anchor``: a train index of the
    cube's anchors (default: the first), or 'mean' to average over anchors (their planes share
    coordinates); ``steps`` default: ``n_steps`` evenly spaced steps."""
    from matplotlib.colors import LogNorm
    require_vars(plane, ["score_norm", "score_u", "score_v", "attraction"], "plot_plane")
    if anchor == "mean":
        ds, what = plane.mean("anchor", keep_attrs=True), f"mean over {plane.sizes['anchor']} anchors"
        vu, vv = plane["vertex_u"].isel(anchor=0), plane["vertex_v"].isel(anchor=0)
    else:
        a = plane["anchor"].values[0] if anchor is None else anchor
        ds, what = plane.sel(anchor=a), f"anchor (train index) {int(a)}"
        vu, vv = plane["vertex_u"].sel(anchor=a), plane["vertex_v"].sel(anchor=a)
    chosen = pick(step_values(ds), n_steps) if steps is None else np.atleast_1d(steps)
    sig = ds["sigma"].values if sigmas is None else np.atleast_1d(sigmas)
    ds = ds.sel(step=chosen, sigma=sig).load()
    u, v = ds["u"].values, ds["v"].values
    nr, nc = 2 * len(chosen), len(sig)
    fig = make_figure(fig, (2.35 * nc + 1.6, 2.15 * nr + 0.6))
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
            log_colorbar_ticks(cb)
    wrapped_suptitle(fig, f"Denoiser field on a cube face through a train sample ({what})\n|score| = |(D − x)/σ²|, "
                 "arrows: its in-plane direction; attraction = ⟨D − (x_a + x_b)/2, û⟩, < 0 (blue): toward x_a, "
                 "> 0 (red): toward x_b\n○ valid vertices (a: the train sample, b: valid-novel), ✕ invalid (c, d)")
    return root_figure(fig)


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


@styled
def plot_basin(basin: xr.Dataset, sigma: float | None = None, steps=None, fig=None, n_steps: int = 6):
    """1D basin profiles along lines x_a + alpha (x_end - x_a) toward the three ends (columns): exact
    match, Hamming distance and l2 distance of the denoiser output to x_a (rows), the mean over
    anchors with its bootstrap interval as a band, one line per step (paper Figs. 3E, 16).
    ``sigma``: the noise level (default: the one nearest 1)."""
    import matplotlib.lines as mlines
    rows = [r for r in BASIN_ROWS if f"{r}_mean" in basin]
    if not rows:
        require_vars(basin, ["exact_match_mean"], "plot_basin")
    sg = float(nearest_log(basin["sigma"].values, [1.0 if sigma is None else sigma])[0])
    ds = basin.sel(sigma=sg)
    chosen = pick(step_values(ds), n_steps) if steps is None else np.atleast_1d(steps)
    ds = ds.sel(step=chosen)
    dirs = [str(d) for d in ds["direction"].values]
    fig = make_figure(fig, (3.4 * len(dirs) + 1.8, 2.5 * len(rows) + 0.7))
    axes = np.array(fig.subplots(len(rows), len(dirs), sharex=True, sharey="row", squeeze=False))
    alpha = ds["alpha"].values
    colors = seq_colors(len(chosen))
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
    legend_outside(fig, handles, [f"step {int(s)}" for s in chosen], title="checkpoint")
    n = basin.sizes.get("anchor", 0)
    wrapped_suptitle(fig, f"Basins around train samples at σ = {sg:g}: mean over {n} anchors (band: bootstrap "
                 "interval)", fontsize="medium")
    return root_figure(fig)


