"""Faces of the Boolean hypercube through a train sample, and the keyed store both landscape probes use.

Face geometry (docs/science.md#landscape): from an anchor train sample x_a choose a rule group and two bits
i < j in it so that

- x_b = x_a with bits i and j flipped (Hamming 2) is rule-valid and not a train sample,
- x_c = x_a with bit i flipped and x_d = x_a with bit j flipped (Hamming 1) break the rule.

The choice is deterministic: the first (group, i, j) in the rule's group order, then i, then j, that
passes. For group parity every pair inside a group keeps parity (two flips) and breaks it with one
flip, so only "x_b is not a train sample" can rule a pair out. The four vertices span a square face
of side 2 (in model space x = 2b - 1). Plane coordinates: origin at the face centre
m = (x_a + x_b)/2 = (x_c + x_d)/2, e_u = unit(x_b - x_a), e_v = the Gram-Schmidt rest of x_c - x_a.
In them the vertices sit at a = (-sqrt2, 0), b = (sqrt2, 0), c = (0, sqrt2), d = (0, -sqrt2).

Keyed cubes: both landscape probes store ONE cube over the union of what was ever computed, keyed by
(step, anchor, sigma) (``keys=KEYS`` in their declaration: the store's keyed model,
:mod:`twoclocks.store`), with a boolean ``computed`` mask over those keys. A call asks for steps x
anchors x sigmas (the anchors and noise levels are request options, not part of the cube's identity):
:func:`keyed_todo` finds the (sigma -> anchors) a step still lacks, the probe evaluates them in one
batched call and returns them as one piece (:func:`keyed_piece`, a length-1 ``step`` dim), the store's
:func:`twoclocks.store.keyed_merge` overlays the stored cube and the pieces (later parts win where they
computed a cell; int and bool arrays keep their dtype, holes are filled explicitly) and
:func:`keyed_select` cuts the call's request from the cube. So a second call with other anchors or
noise levels reuses every cell already computed and evaluates only the new ones.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import ClassVar, List, Optional

import numpy as np
import xarray as xr

from twoclocks import TwoclocksError, store
from twoclocks.data import bits as _bits
from twoclocks.probes.registry import option
from twoclocks.schema import Var, coord

__all__ = ["Face", "choose_pairs", "face_geometry", "faces_from_cells", "parse_anchors", "check_anchors",
           "check_sigmas", "parse_sigmas", "anchor_spec", "range_spec", "steps_spec", "VERTICES",
           "GEOMETRY_VERSION", "LandscapeOptions", "Request", "request", "resolve_anchors", "keyed_todo",
           "keyed_piece", "keyed_select", "complete_anchors", "KEYS", "MASK",
           "MODEL_UNITS", "KEYED_COORDS", "FACE_COORDS"]

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
        return {"group": ("anchor", self.group, FACE_COORDS["group"].attrs()),
                "bit_i": ("anchor", self.bit_i, FACE_COORDS["bit_i"].attrs()),
                "bit_j": ("anchor", self.bit_j, FACE_COORDS["bit_j"].attrs()),
                "vertex_u": (("anchor", "vertex"), uv[..., 0].astype(np.float64), FACE_COORDS["vertex_u"].attrs()),
                "vertex_v": (("anchor", "vertex"), uv[..., 1].astype(np.float64), FACE_COORDS["vertex_v"].attrs()),
                "vertex": ("vertex", list(VERTICES), FACE_COORDS["vertex"].attrs())}


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


# ----------------------------------------------------------------------------- shared declarations
#: model-space quantities (positions, distances, noise levels) carry these units everywhere
MODEL_UNITS = coord("sigma").units
#: the keys of a landscape cube, in the order of its per-anchor arrays
KEYS = ("step", "anchor", "sigma")
#: the boolean variable over :data:`KEYS` that says which cells hold computed values
MASK = store.MASK

KEYED_COORDS = {"step": coord("step"), "anchor": coord("anchor"), "sigma": coord("sigma")}
FACE_COORDS = {
    "group": Var(("anchor",), "int64", "rule group of the face"),
    "bit_i": Var(("anchor",), "int64", "bit flipped alone in x_c (flattened cell index)"),
    "bit_j": Var(("anchor",), "int64", "bit flipped alone in x_d (flattened cell index)"),
    "vertex": Var(("vertex",), "str", "face vertex: a anchor, b H2 valid-novel, c/d H1 invalid (bit i / j)", None),
    "vertex_u": Var(("anchor", "vertex"), "float64", "u coordinate of the face vertex", MODEL_UNITS),
    "vertex_v": Var(("anchor", "vertex"), "float64", "v coordinate of the face vertex", MODEL_UNITS),
}
COMPUTED = Var(KEYS, "bool", "the cell (step, anchor, sigma) holds computed values (elsewhere: NaN for floats, "
                             "-1 for integers, False for booleans)")


def anchor_spec(anchors) -> str:
    """An ``--anchors`` spec ('3,5,9') from integers (a list, range or array); a spec string is kept."""
    if isinstance(anchors, str):
        return anchors
    try:
        vals = [int(a) for a in (np.atleast_1d(anchors) if np.isscalar(anchors) else list(anchors))]
    except (TypeError, ValueError):
        raise TwoclocksError(f"anchors must be train indices (integers), got {anchors!r}") from None
    if not vals:
        raise TwoclocksError("no anchor given; give train indices, e.g. anchors=[0, 5]")
    return ",".join(str(a) for a in vals)


# ----------------------------------------------------------------------------- options and request
def _opt_int(value, flag: str, lo: int | None = None):
    if value is None:
        return None
    try:
        ok = not isinstance(value, bool) and float(value) == int(value)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise TwoclocksError(f"{flag} must be an integer, got {value!r}")
    if lo is not None and int(value) < lo:
        raise TwoclocksError(f"{flag} must be at least {lo}, got {value}")
    return int(value)


@dataclass(frozen=True)
class LandscapeOptions:
    """The request options both landscape probes share: which anchors (one of ``anchor``, ``anchors``,
    ``n_anchors``; resolved against the run's train set when the probe runs) and which noise levels.
    They are not part of the cube's identity (``identity=False``): a call with other anchors or noise
    levels reuses the cells already computed and evaluates only the new ones."""
    DEFAULT_N: ClassVar[int] = 1
    DEFAULT_SIGMAS: ClassVar[tuple] = (0.2, 0.5, 1.0, 2.0)

    anchor: Optional[int] = option(None, "One anchor: a train sample index (0..N-1).", cli_type=Optional[int],
                                   identity=False)
    anchors: Optional[str] = option(None, "Anchors as a range or list: '0:64' (python range), '3,5,17', or a mix "
                                          "'0:4,17'.", identity=False)
    n_anchors: Optional[int] = option(None, "The first n train samples (a uniform random subset: the train set is "
                                            "stored in draw order). [default: 1]", cli_type=Optional[int],
                                      identity=False)
    sigma: tuple = option(None, "Noise levels, comma-separated or repeated: '0.2,0.5,1,2'. [default: 0.2,0.5,1,2]",
                          cli_type=Optional[List[str]], identity=False)

    def __post_init__(self):
        if sum(v is not None for v in (self.anchor, self.anchors, self.n_anchors)) > 1:
            raise TwoclocksError("give only one of --anchor, --anchors and --n-anchors")
        object.__setattr__(self, "anchor", _opt_int(self.anchor, "--anchor"))
        object.__setattr__(self, "n_anchors", _opt_int(self.n_anchors, "--n-anchors", 1))
        if self.anchors is not None:
            object.__setattr__(self, "anchors", anchor_spec(self.anchors))
        sig = self.sigma
        if sig is not None and (isinstance(sig, (str, int, float)) or np.isscalar(sig)):
            sig = [sig]
        object.__setattr__(self, "sigma", tuple(parse_sigmas(list(sig) if sig is not None else None,
                                                             self.DEFAULT_SIGMAS)))


@dataclass(frozen=True)
class Request:
    """What one call asks for: anchors (sorted train indices) and noise levels (sorted)."""
    anchors: tuple
    sigmas: tuple


def range_spec(anchors) -> str:
    """A compact ``--anchors`` spec of sorted distinct indices: runs as python ranges ('0:64,70,72:75')."""
    out, a = [], list(anchors)
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and a[j + 1] == a[j] + 1:
            j += 1
        out.append(f"{a[i]}:{a[j] + 1}" if j - i >= 2 else ",".join(str(x) for x in a[i:j + 1]))
        i = j + 1
    return ",".join(out)


@functools.lru_cache(maxsize=16)
def _anchors(n_train: int, anchor, anchors, n_anchors, default_n: int) -> tuple:
    return tuple(parse_anchors(n_train, anchor, anchors, n_anchors, default_n=default_n))


def _request_anchors(opts, run) -> tuple:
    return _anchors(len(run.cells("train")), opts.anchor, opts.anchors, opts.n_anchors, type(opts).DEFAULT_N)


def resolve_anchors(opts, ctx):
    """The probes' ``resolve`` hook: the anchor options resolved against the run's train set (N), as the
    exact sorted train indices in ``anchors`` (a compact spec; ``anchor`` and ``n_anchors`` cleared).
    Errors (an anchor outside 0..N-1) come before anything is read or computed."""
    return dataclasses.replace(opts, anchor=None, anchors=range_spec(_request_anchors(opts, ctx.run)), n_anchors=None)


def request(ctx) -> Request:
    """The call's :class:`Request` (anchors resolved against the run's train set, noise levels)."""
    return Request(_request_anchors(ctx.opts, ctx.run), tuple(ctx.opts.sigma))


# ----------------------------------------------------------------------------- keyed cubes
# The keyed store itself (todo, pieces, merge, select) is twoclocks.store's: both landscape probes
# declare ``keys=KEYS``; these wrappers only turn a call's request into the store's terms.
def _want(ctx) -> dict:
    req = request(ctx)
    return {"anchor": req.anchors, "sigma": req.sigmas}


def keyed_todo(existing, step: int, ctx):
    """{sigma: [positions into the request's anchors]} the cube lacks at ``step`` (None: complete)."""
    return store.keyed_todo(existing, step, _want(ctx), KEYS)


def keyed_piece(step: int, anchors, todo: dict, values: dict, tail: dict, schema, anchor_coords: dict | None = None,
                coords: dict | None = None) -> xr.Dataset:
    """One piece of a landscape cube (:func:`twoclocks.store.keyed_piece` over :data:`KEYS`)."""
    return store.keyed_piece(step, np.asarray(anchors, np.int64), todo, values, tail, schema, KEYS, anchor_coords,
                             coords)


def complete_anchors(ds: xr.Dataset) -> np.ndarray:
    """The anchors computed at every (step, sigma) of ``ds`` (all anchors of a cube without the mask)."""
    return store.complete_along(ds, KEYS)


def keyed_select(ds: xr.Dataset, ctx, drop=()) -> xr.Dataset:
    """The call's request (its steps x anchors x sigmas) cut from the cube, loaded, without the mask
    (and the variables in ``drop``)."""
    return store.keyed_select(ds, ctx.steps, _want(ctx), drop)
