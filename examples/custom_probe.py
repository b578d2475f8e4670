"""A probe of your own, in one file: the mean displacement ||D(y; s) - y|| of the denoiser, by noise level
and split, at every checkpoint.

Nothing in twoclocks changes to add it. Declaring it (options, schema, one-piece computation, summary,
figure) gives it what every built-in probe has: resume after an interrupt, provenance attrs, a progress
bar, reference denoisers, `probe-all` over a sweep and `plot`:

    twoclocks-probe probe examples/custom_probe.py:PROBE RUN_DIR -o n_items=128
    twoclocks-probe probe-all SWEEP_DIR --probes samples,examples/custom_probe.py:PROBE
    twoclocks-probe plot RUN_DIR --probe examples/custom_probe.py:PROBE

or, from a package of yours, register it once as an entry point and it becomes a command of its own
(`twoclocks-probe denoise-norm RUN_DIR`)::

    [project.entry-points."twoclocks.probes"]
    denoise-norm = "my_package.custom_probe:PROBE"

Why this quantity: the denoiser's displacement at noise level s is s^2 times the score. A model that
has learned the rule pulls held-out valid points as strongly as train points; one that memorizes pulls
train points harder (docs/science.md#dsm).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from twoclocks.probes import FigureSpec, Probe, option, register
from twoclocks.schema import CubeSchema, Var, coord

SPLITS = ("train", "heldout", "hypercube")


@dataclass(frozen=True)
class Options:
    # each option: its default, help text and constraints, checked by twoclocks (one-line errors)
    n_items: int = option(256, "Items per split (the first n of the split: the splits are stored in random order).",
                          min=1)
    sigmas: tuple = option((0.1, 0.3, 1.0, 3.0), "Noise levels, comma-separated.", parse="list", gt=0)
    seed: int = option(0, "Seed of the fixed noise draws (the same at every checkpoint).")


@dataclass
class Rows:
    """Every (split, item, sigma) row, stacked: one batched network call per checkpoint."""
    y: torch.Tensor      # (R, P) noisy inputs x + s n
    s: torch.Tensor      # (R,) noise levels
    shape: tuple         # (split, item, sigma) before stacking


def setup(ctx) -> Rows:
    """The fixed items and noise draws, the same at every checkpoint (so differences are the model's)."""
    o, run = ctx.opts, ctx.run
    xs = [run.x(split)[:o.n_items] for split in SPLITS]
    n = min(len(x) for x in xs)
    x = np.stack([v[:n] for v in xs])                                       # (split, item, P)
    s = np.asarray(o.sigmas, dtype=np.float32)
    noise = np.random.default_rng([run.config.data_seed, o.seed, 777]).standard_normal(
        (len(SPLITS), n, len(s), x.shape[-1]), dtype=np.float32)            # (split, item, sigma, P)
    y = x[:, :, None, :] + s[None, None, :, None] * noise
    ss = np.broadcast_to(s[None, None, :], y.shape[:3])
    return Rows(torch.from_numpy(y.reshape(-1, x.shape[-1])).to(ctx.device),
                torch.from_numpy(np.ascontiguousarray(ss).reshape(-1)).to(ctx.device), y.shape[:3])


def compute(ctx, rows: Rows, source, step: int, todo) -> xr.Dataset:
    """One checkpoint (or reference): the mean displacement per (split, sigma), a length-1 step dim."""
    D = ctx.D(source)
    with torch.inference_mode():
        disp = (D(rows.y, rows.s).float() - rows.y).norm(dim=1).cpu().numpy().astype(np.float64)
    mean = disp.reshape(rows.shape).mean(axis=1)                             # (split, sigma)
    return xr.Dataset({"displacement": (("step", "split", "sigma"), mean[None])},
                      coords={"step": [step], "split": list(SPLITS), "sigma": np.asarray(ctx.opts.sigmas)})


SCHEMA = CubeSchema("denoise_norm", doc="Mean denoiser displacement ||D(y; s) - y|| by split and noise level "
                                        "(examples/custom_probe.py).", coords={
    "step": coord("step"), "split": coord("split"), "sigma": coord("sigma"),
}, data_vars={
    "displacement": Var(("step", "split", "sigma"), "float64", "mean ||D(x + s n; s) - (x + s n)|| over the fixed "
                                                               "items", "model-space units"),
})


def summary(ds: xr.Dataset) -> str:
    last = ds.isel(step=-1)
    rows = [f"step {int(last.step)}: mean ||D(y; s) - y||  " + "  ".join(f"s={s:g}" for s in ds.sigma.values)]
    rows += [f"  {sp:9s} " + "  ".join(f"{v:.3f}" for v in last.displacement.sel(split=sp).values) for sp in SPLITS]
    return "\n".join(rows)


def figures():
    def draw(cubes):
        from matplotlib.figure import Figure
        ds = cubes["denoise_norm"]
        fig = Figure(figsize=(3.2 * ds.sizes["sigma"], 3.0))
        for ax, s in zip(fig.subplots(1, ds.sizes["sigma"], squeeze=False)[0], ds.sigma.values):
            for sp in SPLITS:
                ax.plot(ds.step, ds.displacement.sel(split=sp, sigma=s), label=sp)
            ax.set_xscale("symlog")
            ax.set_title(f"s = {s:g}")
            ax.set_xlabel("training step")
        ax.legend()
        return fig
    return (FigureSpec("denoise_norm", ("denoise_norm",), draw),)


PROBE = register(Probe(
    name="denoise-norm", cube="denoise_norm", options=Options, schema=SCHEMA, archs=("dit",),
    help="Mean denoiser displacement ||D(y; s) - y|| by split and noise level -> probes/denoise_norm.zarr.",
    references=("ideal-rule", "ideal-cube", "memorize"), setup=setup, compute=compute, summary=summary,
    figures=figures,
))
