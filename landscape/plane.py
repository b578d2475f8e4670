"""2D vector-field planes through a face of the hypercube (SPEC.md, "Plane (2D)").

On a grid over the plane of the face x_a, x_b, x_c, x_d (see :mod:`twoclocks.landscape.geometry`:
origin at the face centre m, u along x_b - x_a, v towards x_c) the denoiser is evaluated at each noise
level s, and per point x:

- score = (D(x; s) - x) / s^2; ``score_norm`` = ||score|| (all dimensions), ``score_u`` = <score, e_u>,
  ``score_v`` = <score, e_v> (its in-plane components);
- ``attraction`` = <D(x; s) - (x_a + x_b)/2, unit(x_b - x_a)>: negative pulls toward x_a, positive
  toward x_b.

Cube ``probes/plane.zarr`` (``plane-DENOISER.zarr`` for a reference), dims (step, anchor, sigma, u, v).
"""
from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.landscape.geometry import (GEOMETRY_VERSION, Face, as_run, check_anchors, check_sigmas,
                                          face_geometry, run_keyed_probe, steps_spec)
from twoclocks.probes.common import resolve_sources

__all__ = ["run_plane", "plane_fields", "plane_grid", "PLANE_SIGMAS", "FIELDS", "plane_summary"]

PLANE_SIGMAS = (0.2, 0.5, 1.0, 2.0)
#: Default half-width of the grid: the vertices sit at distance sqrt(2) = 1.41 from the centre, so
#: 2.0 shows all four with a margin of 0.59 (0.41 of the centre-vertex distance) on every side.
DEFAULT_EXTENT = 2.0

FIELDS = {
    "score_norm": ("norm of the score (D(x; s) - x) / s^2 over all dimensions", "1 / model-space unit"),
    "score_u": ("score component along u = unit(x_b - x_a)", "1 / model-space unit"),
    "score_v": ("score component along v (in-plane, toward x_c)", "1 / model-space unit"),
    "attraction": ("<D(x; s) - (x_a + x_b)/2, unit(x_b - x_a)>: negative toward x_a, positive toward x_b",
                   "model-space unit"),
}


def plane_grid(grid: int, extent: float) -> np.ndarray:
    """``grid`` points from -extent to extent, exactly antisymmetric (u[k] = -u[grid-1-k])."""
    return (np.arange(grid) - (grid - 1) / 2) * (2.0 * extent / (grid - 1))


def plane_fields(D, face: Face, job_anchor, job_sigma, u: np.ndarray, v: np.ndarray, device="cpu",
                 batch_size: int = 16384) -> np.ndarray:
    """The four fields at every (job, u, v): (n_jobs, len(u), len(v), 4) in the order of :data:`FIELDS`.

    A job is a (face position, sigma) pair; all jobs x grid points are stacked into denoiser calls of
    ``batch_size`` rows (the points are built on the device chunk by chunk, no Python loop over points).
    """
    dev = torch.device(device)
    f32 = dict(dtype=torch.float32, device=dev)
    origin, e_u, e_v = (torch.as_tensor(z, **f32) for z in (face.origin, face.e_u, face.e_v))
    ja = torch.as_tensor(np.asarray(job_anchor), dtype=torch.long, device=dev)
    js = torch.as_tensor(np.asarray(job_sigma), **f32)
    ut, vt = torch.as_tensor(u, **f32), torch.as_tensor(v, **f32)
    nu, nv = len(u), len(v)
    total = len(ja) * nu * nv
    out = torch.empty((total, 4), **f32)
    with torch.inference_mode():
        for lo in range(0, total, batch_size):
            idx = torch.arange(lo, min(lo + batch_size, total), device=dev)
            job, r = idx // (nu * nv), idx % (nu * nv)
            a, s = ja[job], js[job]
            x = origin[a] + ut[r // nv, None] * e_u[a] + vt[r % nv, None] * e_v[a]   # SPEC plane point
            d = D(x, s).to(torch.float32)
            score = (d - x) / s[:, None] ** 2                                       # (D - x) / s^2
            out[lo:lo + len(idx)] = torch.stack([score.norm(dim=1), (score * e_u[a]).sum(1),
                                                 (score * e_v[a]).sum(1), ((d - origin[a]) * e_u[a]).sum(1)], 1)
    return out.cpu().numpy().reshape(len(ja), nu, nv, 4)


def _piece(face: Face, step: int, sigma: float, vals: np.ndarray, u, v) -> xr.Dataset:
    """One (step, sigma) piece for the anchors of ``face``; vals (n_anchor, nu, nv, 4)."""
    data = {k: (("step", "anchor", "sigma", "u", "v"), vals[None, :, None, :, :, n].astype(np.float32),
                {"long_name": ln, "units": un}) for n, (k, (ln, un)) in enumerate(FIELDS.items())}
    coords = {"step": ("step", [step], {"long_name": "training step (-1: the reference denoiser)"}),
              "anchor": ("anchor", face.anchor, {"long_name": "train sample index of x_a"}),
              "sigma": ("sigma", [sigma], {"long_name": "noise level s", "units": "model-space unit"}),
              "u": ("u", u, {"long_name": "plane coordinate along unit(x_b - x_a) from the face centre",
                             "units": "model-space unit"}),
              "v": ("v", v, {"long_name": "plane coordinate toward x_c, orthogonal to u, from the face centre",
                             "units": "model-space unit"}),
              **face.to_coords()}
    return xr.Dataset(data, coords=coords)


def run_plane(run, anchors=(0,), sigmas=PLANE_SIGMAS, steps=None, denoiser: str | None = None,
              grid: int = 81, extent: float = DEFAULT_EXTENT, device: str = "auto", force: bool = False,
              batch_size: int = 16384, progress: bool = True) -> xr.Dataset:
    """Evaluate the plane fields for ``anchors`` (train indices) x ``sigmas`` at the chosen checkpoints
    (``steps``: a ``--steps`` spec or a list of steps) or a reference ``denoiser``; store and return the cube
    (dims step, anchor, sigma, u, v). Pieces already stored are reused; the cube is the request."""
    if int(grid) < 3:
        raise TwoclocksError(f"--grid must be at least 3 points per axis, got {grid}")
    if not np.isfinite(extent) or extent <= 0:
        raise TwoclocksError(f"--extent must be a positive number, got {extent}")
    run = as_run(run)
    name, sources = resolve_sources(run, "plane", steps_spec(steps), denoiser)
    anchors = check_anchors(anchors, len(run.cells("train")))
    sigmas = check_sigmas(sigmas)
    face = face_geometry(run, anchors)
    u = v = plane_grid(int(grid), float(extent))

    def compute(D, step, todo, dev):
        jobs = [(p, sg) for sg, ps in todo.items() for p in ps]
        vals = plane_fields(D, face, [p for p, _ in jobs], [sg for _, sg in jobs], u, v, dev, batch_size)
        out, k = {}, 0
        for sg, ps in todo.items():
            out[sg] = _piece(face.take(ps), step, sg, vals[k:k + len(ps)], u, v)
            k += len(ps)
        return out

    attrs = {"description": "denoiser vector field on the plane of a hypercube face through a train sample "
                            "(SPEC.md Plane 2D)",
             "geometry": GEOMETRY_VERSION + ": first (group, i<j) whose double flip is valid and not a train "
                         "sample; origin at the face centre, a=(-sqrt2,0) b=(sqrt2,0) c=(0,sqrt2) d=(0,-sqrt2)",
             "denoiser": denoiser or "checkpoint"}
    return run_keyed_probe(run, name, {"grid": int(grid), "extent": float(extent), "geometry": GEOMETRY_VERSION},
                           sources, anchors, sigmas, compute, device=device, force=force, progress=progress,
                           extra_attrs=attrs)


def plane_summary(ds: xr.Dataset) -> str:
    """A few lines: the faces of (the first 5) anchors, and per step and sigma the attraction at the face
    centre averaged over anchors (negative: x_a wins over x_b)."""
    lines = []
    for a in ds["anchor"].values[:5]:
        f = ds.sel(anchor=a)
        lines.append(f"anchor {int(a)}: group {int(f['group'])}, bits {int(f['bit_i'])} and {int(f['bit_j'])}")
    if ds.sizes["anchor"] > 5:
        lines.append(f"... and {ds.sizes['anchor'] - 5} more anchors")
    centre = ds["attraction"].sel(u=0.0, v=0.0, method="nearest").mean("anchor")
    for s in ds["step"].values:
        vals = ", ".join(f"s={sg:g}: {float(centre.sel(step=s, sigma=sg)):+.3f}" for sg in ds["sigma"].values)
        lines.append(f"step {int(s)}: attraction at the face centre (+ toward x_b) {vals}")
    return "\n".join(lines)
