"""1D basin profiles from a train sample toward its neighbours (SPEC.md, "Basin (1D)").

Lines x(alpha) = x_a + alpha (x_end - x_a), alpha from -0.5 to 1.5 (beyond both ends), toward three
ends per anchor x_a (a train sample):

- ``h1_invalid``: x_c, the Hamming-1 rule-violating neighbour (bit i of the face, see
  :mod:`twoclocks.landscape.geometry`);
- ``h2_valid_novel``: x_b, the Hamming-2 rule-valid neighbour that is not a train sample;
- ``nearest_train``: the nearest other train sample by Hamming distance (ties: lowest index).

At each point, with the denoiser output D = D(x(alpha); s): ``exact_match`` = [sign(D) == x_a at every
pixel], ``hamming`` = #{pixels: sign(D) != x_a}, ``l2`` = ||D - x_a||. Over the anchors: the mean and a
percentile-bootstrap 5-95% interval (scipy.stats.bootstrap, fixed seed), and ``basin_radius`` = the
first alpha >= 0 on the grid at which the mean exact match is below 0.5 (NaN: never within the grid).

Cube ``probes/basin.zarr`` (``basin-DENOISER.zarr`` for a reference), per-anchor variables with dims
(step, anchor, sigma, direction, alpha).
"""
from __future__ import annotations

import numpy as np
import torch
import xarray as xr
from scipy import stats

from twoclocks import TwoclocksError
from twoclocks.data import bits as _bits
from twoclocks.landscape.geometry import (GEOMETRY_VERSION, as_run, check_anchors, check_sigmas,
                                          face_geometry, run_keyed_probe, steps_spec)
from twoclocks.probes.common import resolve_sources

__all__ = ["run_basin", "basin_profiles", "basin_ends", "nearest_other_train", "summarize", "bootstrap_mean",
           "basin_radius", "basin_summary", "alpha_grid", "DIRECTIONS", "BASIN_SIGMAS", "DEFAULT_N_ANCHORS"]

DIRECTIONS = ("h1_invalid", "h2_valid_novel", "nearest_train")
BASIN_SIGMAS = (0.2, 0.5, 1.0, 2.0)
DEFAULT_N_ANCHORS = 64
VARS = {
    "exact_match": ("sign(D(x; s)) equals x_a at every pixel", "1"),
    "hamming": ("Hamming distance of sign(D(x; s)) to x_a (a zero output counts as a mismatch)", "pixels"),
    "l2": ("||D(x; s) - x_a||", "model-space unit"),
}


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
    coords["nearest_index"] = ("anchor", nn, {"long_name": "train index of the nearest other train sample "
                                                           "(ties: lowest index)"})
    coords["nearest_hamming"] = ("anchor", nn_d, {"long_name": "Hamming distance to that sample", "units": "pixels"})
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


def _piece(anchors, coords, step, sigma, vals, alphas) -> xr.Dataset:
    dims = ("step", "anchor", "sigma", "direction", "alpha")
    data = {k: (dims, vals[k][None, :, None], {"long_name": ln, "units": un}) for k, (ln, un) in VARS.items()}
    c = {"step": ("step", [step], {"long_name": "training step (-1: the reference denoiser)"}),
         "anchor": ("anchor", np.asarray(anchors), {"long_name": "train sample index of x_a"}),
         "sigma": ("sigma", [sigma], {"long_name": "noise level s", "units": "model-space unit"}),
         "direction": ("direction", list(DIRECTIONS), {"long_name": "end of the line: h1_invalid = x_c, "
                       "h2_valid_novel = x_b, nearest_train = nearest other train sample"}),
         "alpha": ("alpha", alphas, {"long_name": "position on the line x_a + alpha (x_end - x_a)", "units": "1"}),
         **coords}
    return xr.Dataset(data, coords=c)


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


def run_basin(run, anchors=None, sigmas=BASIN_SIGMAS, steps=None, denoiser: str | None = None,
              n_alpha: int = 41, alpha_range=(-0.5, 1.5), device: str = "auto", force: bool = False,
              batch_size: int = 16384, n_resamples: int = 1000, seed: int = 0,
              progress: bool = True) -> xr.Dataset:
    """Basin profiles for ``anchors`` (train indices; default: the first 64, which are a uniform random
    subset since the train set is stored in draw order) x ``sigmas`` at the chosen checkpoints
    (``steps``: a ``--steps`` spec or a list of steps) or a reference ``denoiser``; store and return the cube with the
    summaries over anchors. Pieces already stored are reused; the cube is the request."""
    lo, hi = (float(a) for a in alpha_range)
    if int(n_alpha) < 2 or not lo < 0 <= hi:
        raise TwoclocksError(f"need --n-alpha >= 2 and an alpha range with lo < 0 <= hi, got {n_alpha} "
                             f"points over [{lo}, {hi}]")
    run = as_run(run)
    name, sources = resolve_sources(run, "basin", steps_spec(steps), denoiser)
    n_train = len(run.cells("train"))
    anchors = check_anchors(range(min(DEFAULT_N_ANCHORS, n_train)) if anchors is None else anchors, n_train)
    sigmas = check_sigmas(sigmas)
    x_a, ends, coords = basin_ends(run, anchors)
    alphas = alpha_grid(int(n_alpha), lo, hi)

    def compute(D, step, todo, dev):
        jobs = [(p, sg) for sg, ps in todo.items() for p in ps]
        vals = basin_profiles(D, x_a, ends, [p for p, _ in jobs], [sg for _, sg in jobs], alphas, dev,
                              batch_size)
        out, k = {}, 0
        for sg, ps in todo.items():
            sub = {c: (v[0], np.asarray(v[1])[ps], *v[2:]) for c, v in coords.items()}
            out[sg] = _piece(np.asarray(anchors)[ps], sub, step, sg, {n: a[k:k + len(ps)] for n, a in vals.items()},
                             alphas)
            k += len(ps)
        return out

    attrs = {"description": "denoiser basins along lines from a train sample to its neighbours (SPEC.md Basin 1D)",
             "geometry": GEOMETRY_VERSION, "denoiser": denoiser or "checkpoint"}
    params = {"n_alpha": int(n_alpha), "alpha_range": [lo, hi], "directions": list(DIRECTIONS),
              "geometry": GEOMETRY_VERSION}
    return run_keyed_probe(run, name, params, sources, anchors, sigmas, compute, device=device, force=force,
                           progress=progress, finalize=lambda d: summarize(d, n_resamples, seed=seed),
                           extra_attrs=attrs)


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
