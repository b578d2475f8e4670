"""2D vector-field planes through a face of the hypercube (docs/science.md#landscape).

On a grid over the plane of the face x_a, x_b, x_c, x_d (see :mod:`twoclocks.landscape.geometry`:
origin at the face centre m, u along x_b - x_a, v towards x_c) the denoiser is evaluated at each noise
level s, and per point x:

- score = (D(x; s) - x) / s^2; ``score_norm`` = ||score|| (all dimensions), ``score_u`` = <score, e_u>,
  ``score_v`` = <score, e_v> (its in-plane components);
- ``attraction`` = <D(x; s) - (x_a + x_b)/2, unit(x_b - x_a)>: negative pulls toward x_a, positive
  toward x_b.

Cube ``probes/plane.zarr`` (``plane-DENOISER.zarr`` for a reference), dims (step, anchor, sigma, u, v):
the union of every (step, anchor, sigma) ever computed with its grid, with the ``computed`` mask (see
:mod:`twoclocks.landscape.geometry`, keyed cubes). A call returns its request (steps x anchors x sigmas).
The probe: ``twoclocks-probe plane`` or :data:`PROBE`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import xarray as xr

from twoclocks.landscape.geometry import (COMPUTED, FACE_COORDS, GEOMETRY_VERSION, KEYED_COORDS, KEYS, MASK,
                                          MODEL_UNITS, VERTICES, Face, LandscapeOptions, anchor_spec,
                                          face_geometry, keyed_piece, keyed_select, keyed_todo,
                                          request, resolve_anchors, steps_spec)
from twoclocks.store import jobs
from twoclocks.probes.registry import Probe, deprecated, option, register
from twoclocks.schema import CubeSchema, Var

__all__ = ["run_plane", "plane_fields", "plane_grid", "PLANE_SIGMAS", "FIELDS", "plane_summary", "PlaneOptions",
           "SCHEMA", "PROBE"]

PLANE_SIGMAS = (0.2, 0.5, 1.0, 2.0)
#: Default half-width of the grid: the vertices sit at distance sqrt(2) = 1.41 from the centre, so
#: 2.0 shows all four with a margin of 0.59 (0.41 of the centre-vertex distance) on every side.
DEFAULT_EXTENT = 2.0

FIELDS = {
    "score_norm": ("norm of the score (D(x; s) - x) / s^2 over all dimensions", f"1 / {MODEL_UNITS}"),
    "score_u": ("score component along u = unit(x_b - x_a)", f"1 / {MODEL_UNITS}"),
    "score_v": ("score component along v (in-plane, toward x_c)", f"1 / {MODEL_UNITS}"),
    "attraction": ("<D(x; s) - (x_a + x_b)/2, unit(x_b - x_a)>: negative toward x_a, positive toward x_b",
                   MODEL_UNITS),
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


# ---------------------------------------------------------------------------------------- the probe
@dataclass(frozen=True)
class PlaneOptions(LandscapeOptions):
    """Options of the plane probe: the request (anchors, noise levels; :class:`LandscapeOptions`), and the
    grid, which defines the cube."""
    grid: int = option(81, "Grid points per axis.", min=3)
    extent: float = option(DEFAULT_EXTENT, "The grid spans -extent..extent on both plane axes (vertices at "
                                           "distance sqrt(2) = 1.41 from the face centre).", gt=0, lt=np.inf)
    batch_size: int = option(16384, "Grid points per network call.", identity=False, min=1)


@dataclass
class _State:
    anchors: tuple
    face: Face
    u: np.ndarray
    anchor_coords: dict


def _setup(ctx):
    req = request(ctx)
    face = face_geometry(ctx.run, req.anchors)
    c = face.to_coords()
    anchor_coords = {k: (v[0] if isinstance(v[0], tuple) else (v[0],), v[1]) for k, v in c.items() if k != "vertex"}
    return _State(req.anchors, face, plane_grid(ctx.opts.grid, ctx.opts.extent), anchor_coords)


def _compute(ctx, st, source, step, todo):
    order = jobs(todo)
    vals = plane_fields(ctx.D(source), st.face, [p for p, _ in order], [s for _, s in order], st.u, st.u,
                        ctx.device, ctx.opts.batch_size)
    return keyed_piece(step, st.anchors, todo, {k: vals[..., n] for n, k in enumerate(FIELDS)},
                       {"u": st.u, "v": st.u}, SCHEMA, st.anchor_coords, {"vertex": ("vertex", list(VERTICES))})


def _attrs(ctx) -> dict:
    return {"description": "denoiser vector field on the plane of a hypercube face through a train sample "
                           "(docs/science.md#landscape)",
            "geometry": GEOMETRY_VERSION + ": first (group, i<j) whose double flip is valid and not a train "
                        "sample; origin at the face centre, a=(-sqrt2,0) b=(sqrt2,0) c=(0,sqrt2) d=(0,-sqrt2)",
            "denoiser": ctx.denoiser or "checkpoint"}


def _finalize(ds, ctx):
    ds.attrs.update(_attrs(ctx))
    return ds


def _select(ds, ctx):
    return keyed_select(ds, ctx)


_FIELD_DIMS = KEYS + ("u", "v")
SCHEMA = CubeSchema("plane", doc="The denoiser field on the plane of a hypercube face through each anchor train "
                                 "sample (docs/science.md#landscape): the union of every (step, anchor, "
                                 "sigma) computed so far, `computed` saying which cells hold values.", coords={
    **KEYED_COORDS,
    "u": Var(("u",), "float64", "plane coordinate along unit(x_b - x_a) from the face centre", MODEL_UNITS),
    "v": Var(("v",), "float64", "plane coordinate toward x_c, orthogonal to u, from the face centre", MODEL_UNITS),
    **FACE_COORDS,
}, data_vars={
    **{k: Var(_FIELD_DIMS, "float32", ln, un) for k, (ln, un) in FIELDS.items()},
    MASK: COMPUTED,
})


PROBE = register(Probe(
    name="plane", cube="plane", options=PlaneOptions, schema=SCHEMA, builtin=True,
    help="Denoiser vector field on the plane of a hypercube face through a train sample -> probes/plane.zarr.",
    archs=("dit",), references=("ideal-rule", "ideal-cube", "memorize"),
    resolve=resolve_anchors, setup=_setup, compute=_compute, todo=keyed_todo, keys=KEYS,
    finalize=_finalize, select=_select, params=lambda ctx: {"geometry": GEOMETRY_VERSION},
    summary=lambda ds: plane_summary(ds),
))


def run_plane(run, anchors=(0,), sigmas=PLANE_SIGMAS, steps=None, denoiser: str | None = None,
              grid: int = 81, extent: float = DEFAULT_EXTENT, device: str = "auto", force: bool = False,
              batch_size: int = 16384, progress: bool = True, **common) -> xr.Dataset:
    """Deprecated (removal in 0.4): ``get_probe("plane")(run, anchors=..., sigma=..., ...)``. Evaluate the
    plane fields for ``anchors`` (train indices) x ``sigmas`` at the chosen checkpoints
    (``steps``: a ``--steps`` spec or a list of steps) or a reference ``denoiser``; store them and return
    the request (dims step, anchor, sigma, u, v): ``PROBE(run, ...)``. Cells already stored are reused
    (only new anchors, noise levels or steps are evaluated); ``force`` recomputes everything."""
    deprecated("run_plane", "plane", "run, anchors=..., sigma=..., ...")
    return PROBE(run, anchors=anchor_spec(anchors), sigma=sigmas, steps=steps_spec(steps), denoiser=denoiser,
                 grid=grid, extent=extent, device=device, force=force, batch_size=batch_size, progress=progress,
                 **common)


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
