"""Count rules on binary images (paper App. B.4.1): exact-K, row-K, row-variable-K, global-K.

Cells are bits b in {0,1}; every rule constrains numbers of ones: over the whole image (exact-K) or
per row of the ``height x width`` grid (the row rules). All samplers are exact and uniform over the
valid set; they draw a uniform K-subset of a row by ranking i.i.d. uniforms (rank < K -> one).
"""
from __future__ import annotations

from math import comb

import numpy as np

from twoclocks import TwoclocksError
from twoclocks.data.rules import RULES, Rule

__all__ = ["ExactK", "RowK", "RowVariableK", "GlobalK", "RowCountRule", "line_determined"]


def _k_subsets(k: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Bits of shape k.shape + (size,): a uniform random subset of k[...] of the ``size`` slots is 1.

    rank(u) of i.i.d. uniforms is a uniform random permutation, so {slots with rank < k} is a
    uniform k-subset, independently for every entry of ``k``."""
    u = rng.random(np.shape(k) + (size,))
    ranks = u.argsort(axis=-1).argsort(axis=-1)
    return (ranks < np.asarray(k)[..., None]).astype(np.uint8)


def line_determined(width: int, ks) -> np.ndarray:
    """(width,) bool, closed form for one line of ``width`` bits whose count of ones must lie in ``ks``:
    bit j is determined by the bits before it iff for every reachable count c of ones among bits
    0..j-1 (some allowed k has c <= k <= c + width - j) only one value v of bit j keeps a completion
    (some allowed k has c + v <= k <= c + v + width - j - 1). E.g. a fixed count 0 < k < width fixes
    only the last bit; k = 0 or k = width fixes every bit."""
    ks = np.asarray(sorted(set(int(k) for k in ks)))
    det = np.ones(width, dtype=bool)
    for j in range(width):
        rest = width - j
        for c in range(j + 1):
            if not ((ks >= c) & (ks <= c + rest)).any():
                continue                                   # no valid line has this prefix count
            options = sum(bool(((ks >= c + v) & (ks <= c + v + rest - 1)).any()) for v in (0, 1))
            if options > 1:
                det[j] = False
                break
    return det


def _check_ks(ks, lo: int, hi: int, what: str) -> tuple[int, ...]:
    ks = (ks,) if np.isscalar(ks) else tuple(ks)
    if not ks or any(int(k) != k or not lo <= k <= hi for k in ks):
        raise TwoclocksError(f"{what} must be integers in [{lo}, {hi}], got {ks}")
    return tuple(sorted({int(k) for k in ks}))


class ExactK(Rule):
    """Exactly K of the D cells are ones: sum_i b_i = K.  |valid set| = C(D, K).

    Sampling is uniform (a uniform random K-subset of the D positions)."""

    name = "exact-k"

    def __init__(self, height: int = 6, width: int | None = None, k: int = 18):
        super().__init__(height, height if width is None else width)
        (self.k,) = _check_ks((k,), 0, self.D, f"k for a {self.height}x{self.width} image")

    @property
    def constraint_names(self):
        return ["count"]

    @property
    def valid_set_size(self):
        return comb(self.D, self.k)

    @property
    def determined_positions(self):
        """Closed form (:func:`line_determined` over all D cells): the last cell when 0 < K < D,
        every cell when K is 0 or D."""
        return line_determined(self.D, (self.k,))

    def sample(self, n, rng):
        return _k_subsets(np.full(n, self.k), self.D, rng)

    def constraints(self, cells):
        return (np.asarray(cells).reshape(-1, self.D).sum(axis=1) == self.k)[:, None]

    def breakdown(self, cells) -> dict[str, np.ndarray]:
        """``count`` (n,) number of ones; ``count_error`` (n,) = count - K."""
        count = np.asarray(cells).reshape(-1, self.D).sum(axis=1).astype(np.int64)
        return {"count": count, "count_error": count - self.k}

    def to_dict(self):
        return {**super().to_dict(), "k": self.k}


class RowCountRule(Rule):
    """Base of the row rules: a constraint on c_r = sum_j b_{r,j}, the ones in row r."""

    ks: tuple[int, ...]

    def __init__(self, height: int, width: int | None):
        super().__init__(height, height if width is None else width)

    def row_counts(self, cells) -> np.ndarray:
        """(n, height) number of ones in each row."""
        return np.asarray(cells).reshape(-1, self.height, self.width).sum(axis=2).astype(np.int64)

    def _row_ok(self, counts: np.ndarray) -> np.ndarray:
        return np.isin(counts, self.ks)

    @property
    def groups(self) -> np.ndarray:
        """The rows: (height, width) cell positions."""
        return np.arange(self.D).reshape(self.height, self.width)

    @property
    def constraint_names(self):
        return [f"row{r}" for r in range(self.height)]

    @property
    def determined_positions(self):
        """Closed form: rows are independent lines whose count lies in ``ks`` (:func:`line_determined`):
        for a fixed 0 < k < width the last cell of each row."""
        return np.tile(line_determined(self.width, self.ks), self.height)

    def constraints(self, cells):
        return self._row_ok(self.row_counts(cells))

    def breakdown(self, cells) -> dict[str, np.ndarray]:
        """``row_counts`` (n, h) ones per row, ``count`` (n,) ones in total, ``row_ratio`` (n,)
        fraction of rows whose count is allowed."""
        rc = self.row_counts(cells)
        return {"row_counts": rc, "count": rc.sum(axis=1), "row_ratio": self._row_ok(rc).mean(axis=1)}


class RowK(RowCountRule):
    """Every row has exactly k ones: c_r = k for all r.  |valid set| = C(w, k)^h.

    Sampling is uniform (rows are independent uniform k-subsets)."""

    name = "row-k"

    def __init__(self, height: int = 6, width: int | None = None, k: int = 3):
        super().__init__(height, width)
        (self.k,) = self.ks = _check_ks((k,), 0, self.width, "k")

    @property
    def valid_set_size(self):
        return comb(self.width, self.k) ** self.height

    def sample(self, n, rng):
        return _k_subsets(np.full((n, self.height), self.k), self.width, rng).reshape(n, self.D)

    def to_dict(self):
        return {**super().to_dict(), "k": self.k}


class RowVariableK(RowCountRule):
    """Each row's count is in the set ks, independently: c_r in ks for all r.
    |valid set| = (sum_{k in ks} C(w, k))^h.

    Sampling is uniform over the valid set: each row independently draws its count k with
    P(k) = C(w, k) / sum_{k' in ks} C(w, k'), then a uniform k-subset (drawing k uniformly from ks
    instead would over-weight the rare counts)."""

    name = "row-var-k"

    def __init__(self, height: int = 6, width: int | None = None, ks=(2, 3, 4)):
        super().__init__(height, width)
        self.ks = _check_ks(ks, 0, self.width, "ks")

    @property
    def valid_set_size(self):
        return sum(comb(self.width, k) for k in self.ks) ** self.height

    def sample(self, n, rng):
        w = np.array([comb(self.width, k) for k in self.ks], dtype=float)
        k = rng.choice(self.ks, size=(n, self.height), p=w / w.sum())
        return _k_subsets(k, self.width, rng).reshape(n, self.D)

    def to_dict(self):
        return {**super().to_dict(), "ks": list(self.ks)}


class GlobalK(RowCountRule):
    """One K per image, shared by all rows: c_r = K for all r, with K in ks.
    |valid set| = sum_{K in ks} C(w, K)^h.

    Sampling is uniform over the valid set: K is drawn with P(K) proportional to C(w, K)^h, then
    every row is an independent uniform K-subset. Constraints: per row "c_r in ks", plus
    "rows_equal" (all c_r equal)."""

    name = "global-k"

    def __init__(self, height: int = 6, width: int | None = None, ks=(2, 3, 4)):
        super().__init__(height, width)
        self.ks = _check_ks(ks, 0, self.width, "ks")

    @property
    def valid_set_size(self):
        return sum(comb(self.width, k) ** self.height for k in self.ks)

    @property
    def constraint_names(self):
        return super().constraint_names + ["rows_equal"]

    @property
    def determined_positions(self):
        """Closed form: the first row is a line with its count in ``ks``; it fixes K, so every later row
        is a line with count K, determined where it is so for every K in ``ks``
        (:func:`line_determined`)."""
        later = np.logical_and.reduce([line_determined(self.width, (k,)) for k in self.ks])
        return np.concatenate([line_determined(self.width, self.ks), np.tile(later, self.height - 1)])

    def sample(self, n, rng):
        sizes = [comb(self.width, k) ** self.height for k in self.ks]  # exact ints, maybe huge
        p = np.array([s / sum(sizes) for s in sizes])
        k = rng.choice(self.ks, size=n, p=p / p.sum())
        k = np.repeat(k[:, None], self.height, axis=1)
        return _k_subsets(k, self.width, rng).reshape(n, self.D)

    def constraints(self, cells):
        rc = self.row_counts(cells)
        return np.concatenate([self._row_ok(rc), (rc == rc[:, :1]).all(axis=1, keepdims=True)], 1)

    def breakdown(self, cells):
        """As the row rules, plus ``rows_equal`` (n,) bool and ``n_distinct_counts`` (n,)."""
        out = super().breakdown(cells)
        rc = np.sort(out["row_counts"], axis=1)
        out["rows_equal"] = rc[:, 0] == rc[:, -1]
        out["n_distinct_counts"] = 1 + (np.diff(rc, axis=1) != 0).sum(axis=1)
        return out

    def to_dict(self):
        return {**super().to_dict(), "ks": list(self.ks)}


RULES.update({r.name: r for r in (ExactK, RowK, RowVariableK, GlobalK)})
