"""Faces of the Boolean hypercube through a train sample, and the keyed store both landscape probes use.

Face geometry (SPEC.md, "Plane (2D)"): from an anchor train sample x_a choose a rule group and two bits
i < j in it so that

- x_b = x_a with bits i and j flipped (Hamming 2) is rule-valid and not a train sample,
- x_c = x_a with bit i flipped and x_d = x_a with bit j flipped (Hamming 1) break the rule.

The choice is deterministic: the first (group, i, j) in the rule's group order, then i, then j, that
passes. For group parity every pair inside a group keeps parity (two flips) and breaks it with one
flip, so only "x_b is not a train sample" can rule a pair out. The four vertices span a square face
of side 2 (in model space x = 2b - 1). Plane coordinates: origin at the face centre
m = (x_a + x_b)/2 = (x_c + x_d)/2, e_u = unit(x_b - x_a), e_v = the Gram-Schmidt rest of x_c - x_a.
In them the vertices sit at a = (-sqrt2, 0), b = (sqrt2, 0), c = (0, sqrt2), d = (0, -sqrt2).

Keyed pieces (:func:`piece_index`, :func:`complete_steps`, :func:`combine_request`): a landscape
probe stores one :class:`twoclocks.store.Cube` piece per (step, sigma) holding the anchors computed
so far; a new anchor rewrites that piece as the union (atomic), a new sigma or step adds a piece.
The assembled cube is the request (steps x anchors x sigmas), cut from the cached pieces.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.data import bits as _bits
from twoclocks.probes.common import step_key
from twoclocks.progress import track
from twoclocks.store import Cube

__all__ = ["Face", "choose_pairs", "face_geometry", "faces_from_cells", "parse_anchors", "check_anchors",
           "check_sigmas", "parse_sigmas", "piece_key", "piece_index", "write_anchors", "complete_steps",
           "combine_request", "run_keyed_probe", "as_run", "steps_spec", "VERTICES"]

VERTICES = ("a", "b", "c", "d")
GEOMETRY_VERSION = "first-valid-novel-pair-v1"


@dataclass
class Face:
    """The face through each anchor (arrays over anchors, model space rows of length P)."""
    anchor: np.ndarray   # (n,) train indices
    group: np.ndarray    # (n,) rule group index
    bit_i: np.ndarray    # (n,) flipped alone in x_c
    bit_j: np.ndarray    # (n,) flipped alone in x_d
    x_a: np.ndarray      # (n, P) the anchor train sample
    x_b: np.ndarray      # (n, P) Hamming-2 valid-novel neighbour
    x_c: np.ndarray      # (n, P) Hamming-1 invalid neighbour (bit i)
    x_d: np.ndarray      # (n, P) Hamming-1 invalid neighbour (bit j)
    origin: np.ndarray   # (n, P) face centre (x_a + x_b)/2
    e_u: np.ndarray      # (n, P) unit(x_b - x_a)
    e_v: np.ndarray      # (n, P) orthonormal in-plane direction towards x_c

    @property
    def vertices(self) -> np.ndarray:
        """(n, 4, P) the vertices a, b, c, d."""
        return np.stack([self.x_a, self.x_b, self.x_c, self.x_d], 1)

    def take(self, idx) -> "Face":
        """The faces of a subset of the anchors (positions ``idx`` into this Face)."""
        return Face(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})

    def coords(self, x: np.ndarray) -> np.ndarray:
        """(n, ..., 2) plane coordinates (u, v) of points x (n, ..., P) in each anchor's plane."""
        d = x - self.origin.reshape(len(self.anchor), *([1] * (x.ndim - 2)), -1)
        eu = self.e_u.reshape(d.shape[0], *([1] * (x.ndim - 2)), -1)
        ev = self.e_v.reshape(d.shape[0], *([1] * (x.ndim - 2)), -1)
        return np.stack([(d * eu).sum(-1), (d * ev).sum(-1)], -1)

    def to_coords(self) -> dict:
        """Per-anchor xarray coords: the chosen group and bits, the vertices' plane coordinates."""
        uv = self.coords(self.vertices)
        return {"group": ("anchor", self.group, {"long_name": "rule group of the face"}),
                "bit_i": ("anchor", self.bit_i, {"long_name": "bit flipped alone in x_c (flattened index)"}),
                "bit_j": ("anchor", self.bit_j, {"long_name": "bit flipped alone in x_d (flattened index)"}),
                "vertex_u": (("anchor", "vertex"), uv[..., 0].astype(np.float64),
                             {"long_name": "u coordinate of the face vertex", "units": "model space"}),
                "vertex_v": (("anchor", "vertex"), uv[..., 1].astype(np.float64),
                             {"long_name": "v coordinate of the face vertex", "units": "model space"}),
                "vertex": ("vertex", list(VERTICES),
                           {"long_name": "face vertex: a anchor, b H2 valid-novel, c/d H1 invalid (bit i / j)"})}


def _binary_check(run):
    rule, enc = run.rule, run.encoding
    if rule.n_symbols != 2 or enc.channels != 1:
        raise TwoclocksError(f"the face geometry needs binary cells in one channel (x = 2b - 1); this run has "
                             f"{rule.n_symbols} symbols with the {enc.name} encoding: use a group-parity run")
    if rule.groups is None:
        raise TwoclocksError(f"the face geometry needs a rule with bit groups (a group-parity run); "
                             f"{rule.name!r} has none")


def choose_pairs(rule, train_cells: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, ...]:
    """(group, i, j) for each anchor: the first pair, in rule group order, whose double flip x_b is valid
    and not a train sample and whose single flips are invalid. Vectorized over anchors; loops over the
    candidate pairs only while some anchor is unresolved."""
    groups = np.asarray(rule.groups)
    cand = [(g, groups[g, p], groups[g, q]) for g in range(len(groups))
            for p in range(groups.shape[1]) for q in range(p + 1, groups.shape[1])]
    cells = np.asarray(train_cells)[anchors]
    out = np.full((len(anchors), 3), -1, dtype=np.int64)
    todo = np.arange(len(anchors))
    for g, i, j in cand:
        if not len(todo):
            break
        base = cells[todo]
        xb, xc, xd = base.copy(), base.copy(), base.copy()
        xb[:, [i, j]] ^= 1
        xc[:, i] ^= 1
        xd[:, j] ^= 1
        ok = (rule.is_valid(xb) & ~rule.is_valid(xc) & ~rule.is_valid(xd)
              & ~_bits.isin_rows(xb, train_cells))
        out[todo[ok]] = (g, i, j)
        todo = todo[~ok]
    if len(todo):
        bad = np.asarray(anchors)[todo]
        raise TwoclocksError(f"train sample(s) {bad[:5].tolist()} have no pair of bits in one group whose double "
                             "flip is rule-valid and novel and whose single flips break the rule; "
                             "choose other anchors")
    return out[:, 0], out[:, 1], out[:, 2]


def faces_from_cells(rule, encoding, train_cells: np.ndarray, anchors) -> Face:
    """The :class:`Face` of each anchor (train index) from the train cells."""
    anchors = np.asarray(anchors, dtype=np.int64)
    g, i, j = choose_pairs(rule, train_cells, anchors)
    a = np.asarray(train_cells)[anchors].astype(np.uint8)
    r = np.arange(len(anchors))
    b, c, d = a.copy(), a.copy(), a.copy()
    b[r, i] ^= 1
    b[r, j] ^= 1
    c[r, i] ^= 1
    d[r, j] ^= 1
    xa, xb, xc, xd = (encoding.encode(z).astype(np.float64) for z in (a, b, c, d))
    e_u = (xb - xa) / np.linalg.norm(xb - xa, axis=1, keepdims=True)
    w = (xc - xa) - ((xc - xa) * e_u).sum(1, keepdims=True) * e_u
    e_v = w / np.linalg.norm(w, axis=1, keepdims=True)
    return Face(anchor=anchors, group=g, bit_i=i, bit_j=j, x_a=xa, x_b=xb, x_c=xc, x_d=xd,
                origin=(xa + xb) / 2, e_u=e_u, e_v=e_v)


def face_geometry(run, anchors) -> Face:
    """The face through each anchor (train index) of an opened run (group-parity / binary grouped rules)."""
    _binary_check(run)
    return faces_from_cells(run.rule, run.encoding, run.cells("train"), anchors)


# ----------------------------------------------------------------------------- options
def steps_spec(steps):
    """A --steps spec from a spec string, None, or a list of checkpoint steps."""
    if steps is None or isinstance(steps, str):
        return steps
    return ",".join(str(int(s)) for s in np.atleast_1d(steps))


def as_run(run):
    """An opened :class:`twoclocks.run.Run` from a Run or a run directory path."""
    from twoclocks.run import Run, open_run
    return run if isinstance(run, Run) else open_run(run)


def parse_anchors(n_train: int, anchor: int | None = None, anchors: str | None = None,
                  n_anchors: int | None = None, default_n: int = 1) -> list[int]:
    """Anchors (train indices) from exactly one of ``anchor`` (one index), ``anchors`` ('0:64' python
    range, '3,5,9' list, or a mix '0:4,17') and ``n_anchors`` (the first n train samples: the train
    set is stored in random draw order, so this is a uniform random subset, and nested: 32 within 64).
    With none given: the first ``default_n``."""
    given = [v is not None for v in (anchor, anchors, n_anchors)]
    if sum(given) > 1:
        raise TwoclocksError("give only one of --anchor, --anchors and --n-anchors")
    rng_msg = f"valid anchors are train indices 0..{n_train - 1} (N = {n_train})"
    if anchor is not None:
        out = [int(anchor)]
    elif anchors is not None:
        out = []
        try:
            for part in str(anchors).split(","):
                part = part.strip()
                if ":" in part:
                    lo, hi = part.split(":", 1)
                    out.extend(range(int(lo) if lo else 0, int(hi) if hi else n_train))
                elif part:
                    out.append(int(part))
        except ValueError:
            raise TwoclocksError(f"cannot parse --anchors {anchors!r}; use e.g. '0:64' or '3,5,17'") from None
    else:
        n = default_n if n_anchors is None else int(n_anchors)
        if n < 1:
            raise TwoclocksError(f"--n-anchors must be at least 1, got {n}")
        out = list(range(min(n, n_train)))
    if not out:
        raise TwoclocksError(f"--anchors {anchors!r} selects no anchor; {rng_msg}")
    return check_anchors(out, n_train)


def check_anchors(anchors, n_train: int) -> list[int]:
    """Sorted distinct anchors, each a train index in 0..n_train-1 (else a one-line error)."""
    try:
        out = sorted({int(a) for a in np.atleast_1d(anchors)})
    except (TypeError, ValueError):
        raise TwoclocksError(f"anchors must be train indices (integers), got {anchors!r}") from None
    bad = [a for a in out if not 0 <= a < n_train]
    if not out or bad:
        raise TwoclocksError(f"anchor {bad[0] if bad else '(none)'} is outside the train set; "
                             f"valid anchors are train indices 0..{n_train - 1} (N = {n_train})")
    return out


def parse_sigmas(values, default) -> list[float]:
    """A --sigma option: repeated and/or comma-separated numbers ('0.2,0.5,1,2'); ``default`` if none."""
    if not values:
        return check_sigmas(default)
    parts = [p for v in values for p in str(v).replace(" ", ",").split(",") if p]
    try:
        return check_sigmas([float(p) for p in parts])
    except ValueError:
        raise TwoclocksError(f"cannot parse --sigma {','.join(map(str, values))!r}; use e.g. '0.2,0.5,1,2'") from None


def check_sigmas(sigmas) -> list[float]:
    """Sorted distinct positive noise levels, normalised to 6 significant digits (they are piece keys)."""
    try:
        out = sorted({float(f"{float(s):.6g}") for s in sigmas})
    except (TypeError, ValueError):
        raise TwoclocksError(f"noise levels must be numbers, got {sigmas!r}") from None
    if not out or out[0] <= 0 or not np.all(np.isfinite(out)):
        raise TwoclocksError(f"noise levels must be positive and finite, got {list(sigmas)}")
    return out


# ----------------------------------------------------------------------------- keyed pieces
def piece_key(step: int, sigma: float) -> str:
    return f"{step_key(step)}_sigma{sigma:.6g}"


def piece_index(cube) -> dict[str, set[int]]:
    """{piece key: anchors it holds}, read from the pieces' coords only (lazy open)."""
    out = {}
    for k in cube.done():
        with xr.open_zarr(cube.parts / f"{k}.zarr", consolidated=True) as ds:
            out[k] = set(int(a) for a in ds["anchor"].values)
    return out


def write_anchors(cube, index: dict, key: str, ds: xr.Dataset) -> None:
    """Store new anchors of one (step, sigma) piece: the union with what the piece already holds."""
    if key in index:
        with xr.open_zarr(cube.parts / f"{key}.zarr", consolidated=True) as old:
            old = old.load()
        keep = old.sel(anchor=sorted(index[key] - set(int(a) for a in ds["anchor"].values)))
        ds = xr.concat([keep, ds], dim="anchor", data_vars="all", coords="different",
                       compat="equals").sortby("anchor") if keep.sizes["anchor"] else ds
    cube.write(key, ds)
    index[key] = set(int(a) for a in ds["anchor"].values)


def complete_steps(index: dict, steps, sigmas, anchors) -> list[int]:
    """The steps whose pieces hold every requested (sigma, anchor)."""
    want = set(anchors)
    return [s for s in steps if all(want <= index.get(piece_key(s, sg), set()) for sg in sigmas)]


def combine_request(steps, sigmas, anchors):
    """A ``combine`` for :meth:`Cube.assemble`: cut the request (steps x anchors x sigmas) from the pieces."""
    def combine(pieces):
        by = {(int(p["step"].values[0]), float(p["sigma"].values[0])): p for p in pieces}
        rows = [xr.concat([by[(s, sg)].sel(anchor=list(anchors)) for sg in sigmas], dim="sigma",
                          data_vars="minimal", coords="minimal", compat="override") for s in steps]
        return xr.concat(rows, dim="step", data_vars="minimal", coords="minimal", compat="override")
    return combine


def run_keyed_probe(run, name: str, params: dict, sources, anchors, sigmas, compute, *, device,
                    force: bool = False, progress: bool = True, finalize=None, extra_attrs=None):
    """The loop both landscape probes share. For each (step, source) it asks ``compute(D, step, todo)``
    for the (sigma -> anchor positions) not yet stored, all in one batched evaluation, and stores one
    piece per (step, sigma); in a ``finally`` it assembles the request from the steps that are complete
    (so an interrupt leaves a valid cube of the finished steps). Returns the assembled Dataset."""
    from twoclocks.run import resolve_device
    cube = Cube(run, name, params, force=force)
    index = piece_index(cube)
    dev = resolve_device(device)
    pos = {a: k for k, a in enumerate(anchors)}
    ds = None
    try:
        for step, source in track(sources, name, total=len(sources), enabled=progress):
            todo = {sg: [pos[a] for a in anchors if a not in index.get(piece_key(step, sg), set())]
                    for sg in sigmas}
            todo = {sg: v for sg, v in todo.items() if v}
            if todo:
                for sg, piece in compute(run.denoiser(source, dev), step, todo, dev).items():
                    write_anchors(cube, index, piece_key(step, sg), piece)
    finally:
        done = complete_steps(index, [s for s, _ in sources], sigmas, anchors)
        if done:
            ds = cube.assemble(combine=combine_request(done, sigmas, anchors), finalize=finalize,
                               extra_attrs=extra_attrs)
    return ds
