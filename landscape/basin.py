"""1D basin profiles from a train sample toward its neighbours (docs/science.md#landscape).

Lines x(alpha) = x_a + alpha (x_end - x_a), alpha from -0.5 to 1.5 (beyond both ends), toward three
ends per anchor x_a (a train sample):

- ``h1_invalid``: x_c, the Hamming-1 rule-violating neighbour (bit i of the face, see
  :mod:`twoclocks.landscape.geometry`);
- ``h2_valid_novel``: x_b, the Hamming-2 rule-valid neighbour that is not a train sample;
- ``nearest_train``: the nearest other train sample by Hamming distance (ties: lowest index).

At each point, with the denoiser output D = D(x(alpha); s): ``exact_match`` = [sign(D) == x_a at every
cell], ``hamming`` = #{cells: sign(D) != x_a}, ``l2`` = ||D - x_a||. Over the anchors: the mean and a
percentile-bootstrap 5-95% interval (scipy.stats.bootstrap, fixed seed), and ``basin_radius`` = the
first alpha >= 0 on the grid at which the mean exact match is below 0.5 (NaN: never within the grid).

Cube ``probes/basin.zarr`` (``basin-DENOISER.zarr`` for a reference), per-anchor variables with dims
(step, anchor, sigma, direction, alpha): the union of every (step, anchor, sigma) ever computed, with the
``computed`` mask (:mod:`twoclocks.landscape.geometry`, keyed cubes). In the stored cube the summaries
over anchors are over the anchors computed at every (step, sigma) of the cube (``summarized``; none:
NaN); a call returns its request (steps x anchors x sigmas) with the summaries over the requested
anchors. The probe: ``twoclocks-probe basin`` or :data:`PROBE`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np
import torch
import xarray as xr
from scipy import stats

from twoclocks import TwoclocksError
from twoclocks.data import bits as _bits
from twoclocks.landscape.geometry import (COMPUTED, FACE_COORDS, GEOMETRY_VERSION, KEYED_COORDS, KEYS, MASK,
                                          MODEL_UNITS, LandscapeOptions, anchor_spec, complete_anchors, face_geometry,
                                          keyed_piece, keyed_select, keyed_todo, request,
                                          resolve_anchors, steps_spec)
from twoclocks.store import jobs
from twoclocks.probes.registry import Probe, deprecated, option, register
from twoclocks.schema import CubeSchema, Var

__all__ = ["run_basin", "basin_profiles", "basin_ends", "nearest_other_train", "summarize", "bootstrap_mean",
           "basin_radius", "basin_summary", "alpha_grid", "DIRECTIONS", "BASIN_SIGMAS", "DEFAULT_N_ANCHORS",
           "BasinOptions", "SCHEMA", "PROBE"]

DIRECTIONS = ("h1_invalid", "h2_valid_novel", "nearest_train")
BASIN_SIGMAS = (0.2, 0.5, 1.0, 2.0)
DEFAULT_N_ANCHORS = 64
VARS = {
    "exact_match": ("sign(D(x; s)) equals x_a at every cell", "1"),
    "hamming": ("Hamming distance of sign(D(x; s)) to x_a (a zero output counts as a mismatch)", "cells"),
    "l2": ("||D(x; s) - x_a||", MODEL_UNITS),
}
CONFIDENCE = 0.9  # of the bootstrap intervals: 5% and 95% bounds


def alpha_grid(n_alpha: int = 41, lo: float = -0.5, hi: float = 1.5) -> np.ndarray:
    """``n_alpha`` points from lo to hi (exact at 0 and 0.5 for the default grid)."""
    return lo + (hi - lo) * np.arange(n_alpha) / (n_alpha - 1)


def nearest_other_train(train_cells: np.ndarray, anchors, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(index, Hamming distance) of each anchor's nearest *other* train sample; ties: lowest index."""
    pt = _bits.pack(train_cells)
    anchors = np.asarray(anchors)
    if len(pt) < 2:
        raise TwoclocksError("the nearest_train direction needs at least 2 train samples")
    idx, dist = np.empty(len(anchors), np.int64), np.empty(len(anchors), np.int64)
    for k in range(0, len(anchors), chunk):  # memory O(chunk * N), not a loop over samples
        a = anchors[k:k + chunk]
        d = np.bitwise_count(pt[a][:, None, :] ^ pt[None, :, :]).sum(2, dtype=np.int64)
        d[np.arange(len(a)), a] = np.iinfo(np.int64).max
        idx[k:k + chunk] = d.argmin(1)  # first minimum = lowest index
        dist[k:k + chunk] = d[np.arange(len(a)), idx[k:k + chunk]]
    return idx, dist


def basin_ends(run, anchors):
    """x_a (n, P), the three ends (n, 3, P) in :data:`DIRECTIONS` order, and per-anchor coords."""
    face = face_geometry(run, anchors)
    nn, nn_d = nearest_other_train(run.cells("train"), anchors)
    x_nn = run.x("train")[nn].astype(np.float64)
    coords = {k: v for k, v in face.to_coords().items() if not k.startswith("vertex")}
    coords["nearest_index"] = ("anchor", nn, NEAREST_COORDS["nearest_index"].attrs())
    coords["nearest_hamming"] = ("anchor", nn_d, NEAREST_COORDS["nearest_hamming"].attrs())
    return face.x_a, np.stack([face.x_c, face.x_b, x_nn], 1), coords


def basin_profiles(D, x_a: np.ndarray, ends: np.ndarray, job_anchor, job_sigma, alphas: np.ndarray,
                   device="cpu", batch_size: int = 16384) -> dict[str, np.ndarray]:
    """exact_match / hamming / l2 at every (job, direction, alpha), arrays (n_jobs, n_dir, n_alpha).

    A job is an (anchor position, sigma) pair. All jobs x directions x alphas are stacked into denoiser
    calls of ``batch_size`` rows (points built on the device chunk by chunk)."""
    dev = torch.device(device)
    f32 = dict(dtype=torch.float32, device=dev)
    xa, xe = torch.as_tensor(x_a, **f32), torch.as_tensor(ends, **f32)
    ja = torch.as_tensor(np.asarray(job_anchor), dtype=torch.long, device=dev)
    js = torch.as_tensor(np.asarray(job_sigma), **f32)
    al = torch.as_tensor(alphas, **f32)
    n_dir, n_al = ends.shape[1], len(alphas)
    total = len(ja) * n_dir * n_al
    ham = torch.empty(total, dtype=torch.int32, device=dev)
    l2 = torch.empty(total, **f32)
    with torch.inference_mode():
        for lo in range(0, total, batch_size):
            idx = torch.arange(lo, min(lo + batch_size, total), device=dev)
            job, r = idx // (n_dir * n_al), idx % (n_dir * n_al)
            a, d_, k = ja[job], r // n_al, r % n_al
            x0 = xa[a]
            x = x0 + al[k, None] * (xe[a, d_] - x0)                 # x(alpha) = x_a + alpha (x_end - x_a)
            out = D(x, js[job]).to(torch.float32)
            ham[lo:lo + len(idx)] = (torch.sign(out) != x0).sum(1, dtype=torch.int32)
            l2[lo:lo + len(idx)] = (out - x0).norm(dim=1)
    shape = (len(ja), n_dir, n_al)
    ham = ham.cpu().numpy().reshape(shape)
    return {"exact_match": ham == 0, "hamming": ham, "l2": l2.cpu().numpy().reshape(shape)}


def basin_radius(mean_exact: xr.DataArray) -> xr.DataArray:
    """The first alpha >= 0 on the grid at which the mean exact match is below 0.5 (NaN if none)."""
    alpha = mean_exact["alpha"]
    below = (mean_exact < 0.5) & (alpha >= 0)
    first = alpha.where(below).min("alpha")  # alphas are increasing: min = first crossing
    first.attrs = {"long_name": "basin radius: first alpha >= 0 where the mean exact match over anchors "
                                "drops below 0.5 (NaN: not within the alpha grid)", "units": "1"}
    return first


def bootstrap_mean(arr: np.ndarray, n_resamples: int = 1000, confidence: float = 0.9, seed: int = 0):
    """Percentile-bootstrap interval of the mean over the last axis of ``arr`` (..., n), for every
    leading index at once, with :func:`scipy.stats.bootstrap` (vectorized, fixed seed).

    scipy resamples the anchor *indices*; the statistic turns each batch of resampled indices into
    counts W (batch, n) and returns arr @ W.T / n, so all cells share the resamples and the cost is
    one matrix product per block of cells (the same numbers as bootstrapping each cell with np.mean and
    the same seed). n = 1 gives the degenerate interval (mean, mean)."""
    lead, n = arr.shape[:-1], arr.shape[-1]
    flat = arr.reshape(-1, n).astype(np.float64)
    mean = flat.mean(1)
    if n < 2:
        return mean.reshape(lead), mean.reshape(lead), mean.reshape(lead)

    def interval(block):
        def stat(idx, axis=-1):
            idx = np.asarray(idx, dtype=np.int64)
            rows = idx.reshape(-1, n)
            b = len(rows)
            w = np.bincount((np.arange(b)[:, None] * n + rows).ravel(), minlength=b * n).reshape(b, n)
            return (block @ w.T.astype(np.float64) / n).reshape(len(block), *idx.shape[:-1])

        res = stats.bootstrap((np.arange(n, dtype=np.float64),), stat, vectorized=True, axis=-1,
                              n_resamples=n_resamples, batch=n_resamples, confidence_level=confidence,
                              method="percentile", rng=np.random.default_rng(seed))
        return res.confidence_interval.low, res.confidence_interval.high

    rows = max(1, (1 << 24) // n_resamples)  # cells per call: the (cells, resamples) block stays ~128 MB
    lo, hi = (np.concatenate(z) for z in zip(*[interval(flat[k:k + rows]) for k in range(0, len(flat), rows)]))
    return mean.reshape(lead), lo.reshape(lead), hi.reshape(lead)


def summarize(ds: xr.Dataset, n_resamples: int = 1000, confidence: float = 0.9, seed: int = 0) -> xr.Dataset:
    """Add, over anchors, ``VAR_mean``, ``VAR_lo``, ``VAR_hi`` (:func:`bootstrap_mean`: percentile
    bootstrap, scipy.stats.bootstrap, fixed seed; with one anchor the interval is degenerate:
    lo = hi = mean) and ``basin_radius`` (step, sigma, direction)."""
    ds = ds.copy()
    q = (1 - confidence) / 2
    parts = [ds[k].astype(np.float64).transpose(..., "anchor") for k in VARS]
    stacked = np.concatenate([p.values.reshape(-1, ds.sizes["anchor"]) for p in parts])
    mean, lo, hi = bootstrap_mean(stacked, n_resamples, confidence, seed)
    start = 0
    for (k, (ln, un)), p in zip(VARS.items(), parts):
        tmpl = p.isel(anchor=0, drop=True)
        sl = slice(start, start + tmpl.size)
        start += tmpl.size
        for suffix, vals, what in (("mean", mean, "mean over anchors of"),
                                   ("lo", lo, f"bootstrap {100 * q:g}% bound of the mean of"),
                                   ("hi", hi, f"bootstrap {100 * (1 - q):g}% bound of the mean of")):
            ds[f"{k}_{suffix}"] = tmpl.copy(data=vals[sl].reshape(tmpl.shape)).assign_attrs(
                long_name=f"{what}: {ln}", units=un)
    ds["basin_radius"] = basin_radius(ds["exact_match_mean"])
    ds.attrs.update(n_anchors=int(ds.sizes["anchor"]),
                    bootstrap=f"scipy.stats.bootstrap percentile over anchors, {n_resamples} resamples, "
                              f"confidence {confidence}, seed {seed}; one anchor: lo = hi = mean")
    return ds


# ---------------------------------------------------------------------------------------- the probe
@dataclass(frozen=True)
class BasinOptions(LandscapeOptions):
    """Options of the basin probe: the request (anchors, noise levels; :class:`LandscapeOptions`, 64
    anchors by default), the alpha grid and the bootstrap of the summaries, which define the cube."""
    DEFAULT_N: ClassVar[int] = DEFAULT_N_ANCHORS

    n_anchors: Optional[int] = option(None, "The first n train samples (a uniform random subset: the train set "
                                            f"is stored in draw order). [default: {DEFAULT_N_ANCHORS}]",
                                      cli_type=Optional[int], identity=False)
    n_alpha: int = option(41, "Points on each line, alpha from -0.5 to 1.5.", min=2)
    alpha_range: tuple = option((-0.5, 1.5), "The alpha grid's ends (lo < 0 <= hi).", cli=False, parse="list")
    n_resamples: int = option(1000, "Bootstrap resamples of the intervals over anchors.", cli=False, min=1)
    bootstrap_seed: int = option(0, "Seed of the bootstrap resamples.", cli=False)
    batch_size: int = option(16384, "Points per network call.", identity=False, min=1)

    def __post_init__(self):
        super().__post_init__()
        if len(self.alpha_range) != 2 or not self.alpha_range[0] < 0 <= self.alpha_range[1]:
            raise TwoclocksError(f"alpha_range must be two numbers lo < 0 <= hi, got {self.alpha_range!r}")


@dataclass
class _State:
    anchors: tuple
    x_a: np.ndarray
    ends: np.ndarray
    anchor_coords: dict
    alphas: np.ndarray


def _alphas(opts) -> np.ndarray:
    return alpha_grid(opts.n_alpha, *opts.alpha_range)


def _setup(ctx):
    req = request(ctx)
    x_a, ends, coords = basin_ends(ctx.run, req.anchors)
    return _State(req.anchors, x_a, ends, {k: (("anchor",), v[1]) for k, v in coords.items()}, _alphas(ctx.opts))


def _compute(ctx, st, source, step, todo):
    order = jobs(todo)
    vals = basin_profiles(ctx.D(source), st.x_a, st.ends, [p for p, _ in order], [s for _, s in order], st.alphas,
                          ctx.device, ctx.opts.batch_size)
    return keyed_piece(step, st.anchors, todo, vals, {"direction": list(DIRECTIONS), "alpha": st.alphas}, SCHEMA,
                       st.anchor_coords)


DERIVED = tuple(f"{k}_{s}" for k in VARS for s in ("mean", "lo", "hi")) + ("basin_radius", "summarized")


def _bootstrap_note(opts) -> str:
    return (f"scipy.stats.bootstrap percentile over anchors, {opts.n_resamples} resamples, confidence {CONFIDENCE}, "
            f"seed {opts.bootstrap_seed}; one anchor: lo = hi = mean")


def _summaries(ds: xr.Dataset, anchors, opts) -> xr.Dataset:
    """``ds`` (no derived variables) with the summaries over ``anchors`` (every (step, sigma) computed)."""
    if len(anchors):
        s = summarize(ds[list(VARS)].sel(anchor=list(anchors)), opts.n_resamples, CONFIDENCE, opts.bootstrap_seed)
        for name in DERIVED[:-1]:
            ds[name] = s[name].reset_coords(drop=True)
    else:  # no anchor computed everywhere: the summaries are undefined
        tmpl = ds["l2"].isel(anchor=0, drop=True).astype(np.float64)
        for name in DERIVED[:-2]:
            ds[name] = xr.full_like(tmpl, np.nan).reset_coords(drop=True)
        ds["basin_radius"] = ds["exact_match_mean"].isel(alpha=0, drop=True)
    return ds


def _attrs(ctx, n_summarized: int) -> dict:
    return {"description": "denoiser basins along lines from a train sample to its neighbours (docs/science.md#landscape)",
            "geometry": GEOMETRY_VERSION, "denoiser": ctx.denoiser or "checkpoint", "n_anchors": int(n_summarized),
            "bootstrap": _bootstrap_note(ctx.opts)}


def _finalize(ds, ctx):
    """The stored cube's summaries: over the anchors computed at every (step, sigma) of the cube."""
    keep = complete_anchors(ds)
    ds = _summaries(ds, keep, ctx.opts)  # the store dropped the derived variables (SCHEMA: derived=True)
    ds["summarized"] = ("anchor", np.isin(ds["anchor"].values, keep))
    ds.attrs.update(_attrs(ctx, len(keep)))
    return ds


def _select(ds, ctx):
    """The request, with the summaries over the requested anchors (the stored ones when the cube
    summarizes exactly these anchors: every (step, sigma) cell is bootstrapped with the same resamples,
    so recomputing them gives the same intervals up to floating-point rounding)."""
    req = request(ctx)
    stored = ds["anchor"].values[ds["summarized"].values] if "summarized" in ds else None
    reuse = stored is not None and [int(a) for a in stored] == list(req.anchors)
    out = keyed_select(ds, ctx, drop=("summarized",) if reuse else DERIVED)
    if not reuse:
        out = _summaries(out, req.anchors, ctx.opts)
    out.attrs.update(_attrs(ctx, len(req.anchors)))
    return SCHEMA.apply(out)


NEAREST_COORDS = {
    "nearest_index": Var(("anchor",), "int64", "train index of the nearest other train sample (ties: lowest index)"),
    "nearest_hamming": Var(("anchor",), "int64", "Hamming distance to that sample", "cells"),
}
_Q = (1 - CONFIDENCE) / 2
_PER_ANCHOR = KEYS + ("direction", "alpha")
_SUMMARY = ("step", "sigma", "direction", "alpha")
SCHEMA = CubeSchema("basin", doc="Denoiser basins along lines from each anchor train sample toward its "
                                 "Hamming-1 invalid, Hamming-2 valid-novel and nearest train neighbours "
                                 "(docs/science.md#landscape): the union of every (step, anchor, sigma) computed so far "
                                 "(`computed`), with means and bootstrap intervals over the anchors computed at "
                                 "every (step, sigma) (`summarized`).", coords={
    **KEYED_COORDS,
    "direction": Var(("direction",), "str", "end of the line: h1_invalid = x_c, h2_valid_novel = x_b, "
                                            "nearest_train = nearest other train sample", None),
    "alpha": Var(("alpha",), "float64", "position on the line x_a + alpha (x_end - x_a)"),
    **{k: FACE_COORDS[k] for k in ("group", "bit_i", "bit_j")},
    **NEAREST_COORDS,
}, data_vars={
    "exact_match": Var(_PER_ANCHOR, "bool", VARS["exact_match"][0], VARS["exact_match"][1]),
    "hamming": Var(_PER_ANCHOR, "int32", VARS["hamming"][0], VARS["hamming"][1]),
    "l2": Var(_PER_ANCHOR, "float32", VARS["l2"][0], VARS["l2"][1]),
    **{f"{k}_{suffix}": Var(_SUMMARY, "float64", f"{what}: {ln}", un, derived=True)
       for k, (ln, un) in VARS.items()
       for suffix, what in (("mean", "mean over anchors of"),
                            ("lo", f"bootstrap {100 * _Q:g}% bound of the mean of"),
                            ("hi", f"bootstrap {100 * (1 - _Q):g}% bound of the mean of"))},
    "basin_radius": Var(("step", "sigma", "direction"), "float64", "basin radius: first alpha >= 0 where the mean "
                        "exact match over anchors drops below 0.5 (NaN: not within the alpha grid)", derived=True),
    MASK: COMPUTED,
    "summarized": Var(("anchor",), "bool", "the anchor enters the summaries over anchors (computed at every step "
                                           "and sigma of the cube)", derived=True),
})


PROBE = register(Probe(
    name="basin", cube="basin", options=BasinOptions, schema=SCHEMA, builtin=True,
    help="1D basin profiles from train samples toward their H1-invalid, H2-valid-novel and nearest train "
         "neighbours -> probes/basin.zarr, with means over anchors and the basin radius.",
    archs=("dit",), references=("ideal-rule", "ideal-cube", "memorize"),
    resolve=resolve_anchors, setup=_setup, compute=_compute, todo=keyed_todo,
    keys=KEYS,
    finalize=_finalize, select=_select,
    params=lambda ctx: {"geometry": GEOMETRY_VERSION, "directions": list(DIRECTIONS)},
    summary=lambda ds: basin_summary(ds),
))


def run_basin(run, anchors=None, sigmas=BASIN_SIGMAS, steps=None, denoiser: str | None = None,
              n_alpha: int = 41, alpha_range=(-0.5, 1.5), device: str = "auto", force: bool = False,
              batch_size: int = 16384, n_resamples: int = 1000, seed: int = 0,
              progress: bool = True, **common) -> xr.Dataset:
    """Deprecated (removal in 0.4): ``get_probe("basin")(run, anchors=..., sigma=..., ...)``. Basin profiles
    for ``anchors`` (train indices; default: the first 64, which are a uniform random
    subset since the train set is stored in draw order) x ``sigmas`` at the chosen checkpoints
    (``steps``: a ``--steps`` spec or a list of steps) or a reference ``denoiser``; store them and return
    the request with the summaries over its anchors: ``PROBE(run, ...)``. Cells already stored are reused
    (only new anchors, noise levels or steps are evaluated); ``force`` recomputes everything."""
    deprecated("run_basin", "basin", "run, anchors=..., sigma=..., ...")
    chosen = {} if anchors is None else {"anchors": anchor_spec(anchors)}
    return PROBE(run, **chosen, sigma=sigmas, steps=steps_spec(steps), denoiser=denoiser, n_alpha=n_alpha,
                 alpha_range=tuple(alpha_range), device=device, force=force, batch_size=batch_size,
                 n_resamples=n_resamples, bootstrap_seed=seed, progress=progress, **common)


def basin_summary(ds: xr.Dataset, direction: str = "h2_valid_novel") -> str:
    """Small tables per step (rows) and sigma (columns): the basin radius toward ``direction`` and, when
    alpha = 0.5 is on the grid, the mean exact match there (the midpoint between x_a and the end: about
    0.5 when the denoiser has no preference, 1 when x_a wins as for a memorizer)."""
    sig = [float(s) for s in ds["sigma"].values]
    cols = " ".join(f"{'s=' + format(s, 'g'):>8}" for s in sig)

    def table(da, title):
        rows = [f"{int(st):>10} " + " ".join(f"{float(da.sel(step=st, sigma=s)):>8.2f}" for s in sig)
                for st in ds["step"].values]
        return [title, f"{'step':>10} {cols}", *rows]

    lines = table(ds["basin_radius"].sel(direction=direction),
                  f"basin radius toward {direction} (first alpha >= 0 where the mean exact match over "
                  f"{ds.sizes['anchor']} anchors < 0.5; NaN: never)")
    if np.isclose(ds["alpha"].values, 0.5).any():
        mid = ds["exact_match_mean"].sel(direction=direction).sel(alpha=0.5, method="nearest")
        lines += table(mid, f"mean exact match at the midpoint alpha = 0.5 toward {direction} "
                            "(0.5: no preference; 1: the train sample wins)")
    return "\n".join(lines)
