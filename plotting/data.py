"""Training samples as images: montages of a run's (or several runs') training split, from the
montage Dataset of :func:`twoclocks.plotting.load.train_montage` (paper Figs. 5-6)."""
from __future__ import annotations

import numpy as np
import xarray as xr

from twoclocks.plotting.style import make_figure, require_vars, root_figure, styled, wrapped_suptitle

__all__ = ["plot_montage", "tile"]


def tile(cells: np.ndarray, per_row: int | None = None, gap: int = 1) -> np.ndarray:
    """(n, h, w) images -> one (rows (h + gap) - gap, cols (w + gap) - gap) float image, ``per_row``
    images per row (default ceil(sqrt(n))), NaN in the gaps and for missing (negative) cells."""
    cells = np.asarray(cells, float)
    n, h, w = cells.shape
    per_row = per_row or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / per_row))
    out = np.full((rows * (h + gap) - gap, per_row * (w + gap) - gap), np.nan)
    for i in range(n):
        r, c = divmod(i, per_row)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = np.where(cells[i] < 0, np.nan, cells[i])
    return out


@styled
def plot_montage(montage: xr.Dataset, fig=None, per_row: int | None = None):
    """One panel per run: its training samples tiled as images (paper Figs. 5-6), binary rules in black
    and white, categorical ones (Latin squares, Sudoku) with one colour per symbol. ``montage``:
    ``cells`` (panel, sample, row, col) and ``n_symbols`` (panel)."""
    import matplotlib as mpl
    require_vars(montage, ["cells"], "plot_montage")
    panels = [str(p) for p in montage["panel"].values]
    n = len(panels)
    cols = min(n, 4)
    rows = int(np.ceil(n / cols))
    fig = make_figure(fig, (2.6 * cols + 0.4, 2.8 * rows + 0.6))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    for p, ax in enumerate(axes[:n]):
        img = tile(montage["cells"].values[p], per_row)
        k = int(montage["n_symbols"].values[p]) if "n_symbols" in montage else int(np.nanmax(img)) + 1
        cmap = mpl.colormaps["gray_r"] if k <= 2 else mpl.colors.ListedColormap(mpl.colormaps["tab10"].colors[:k])
        cmap = cmap.with_extremes(bad="white")
        ax.imshow(np.ma.masked_invalid(img), cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
        ax.set_xticks([]), ax.set_yticks([])
        ax.grid(False)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(panels[p], fontsize="small")
    wrapped_suptitle(fig, "Training samples (paper Figs. 5-6)")
    return root_figure(fig)
