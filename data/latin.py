"""Categorical rules (paper App. B.4.2): Latin square, row-only Latin square, Sudoku.

Cells hold symbols 0..n-1 on an n x n grid (n_symbols = n). Every constraint says that a line of n
cells (a row, a column or a block) is a permutation of 0..n-1.
"""
from __future__ import annotations

import logging
import itertools
from functools import lru_cache
from math import factorial, gcd

import numpy as np

from twoclocks import TwoclocksError
from twoclocks.data.rules import MAX_ENUMERATE, RULES, Rule, determined_from_valid

__all__ = ["LatinSquare", "RowLatin", "Sudoku", "LATIN_SQUARE_COUNTS", "cyclic_isotopic"]

log = logging.getLogger(__name__)

#: Number of n x n Latin squares L(n) = n! (n-1)! R(n), R(n) the reduced ones (OEIS A002860).
LATIN_SQUARE_COUNTS = {1: 1, 2: 2, 3: 12, 4: 576, 5: 161280, 6: 812851200, 7: 61479419904000}
#: Number of n x n Sudoku grids with br x bc blocks, keyed (n, br, bc).
SUDOKU_COUNTS = {(4, 2, 2): 288, (6, 2, 3): 28200960, (6, 3, 2): 28200960,
                 (9, 3, 3): 6670903752021072936960}
#: Number of those Sudokus in the isotopy class of the cyclic square (what :class:`Sudoku` samples),
#: counted by enumerating the class (tests/test_rules_extra.py checks n = 4).
SUDOKU_CYCLIC_SUPPORT = {(4, 2, 2): 192, (6, 2, 3): 311040, (6, 3, 2): 311040}


def _random_perms(rng: np.random.Generator, m: int, n: int) -> np.ndarray:
    """(m, n) i.i.d. uniform permutations of 0..n-1 (argsort of i.i.d. uniforms)."""
    return rng.random((m, n)).argsort(axis=1)


@lru_cache(maxsize=8)
def _grids(n: int, block_rows: int = 1, block_cols: int = 0, first_identity: bool = False) -> np.ndarray:
    """(M, n*n) uint8, lexicographic: every n x n grid whose rows and columns are permutations of
    0..n-1 (and, with ``block_cols`` > 0, whose block_rows x block_cols blocks are too), built row by
    row: each partial grid is extended by every permutation that repeats no symbol of a column (or
    block) above it (symbol sets as bit masks). ``first_identity``: only the grids whose first row is
    0..n-1 (1/n! of them: relabelling the symbols maps the grids with any first row onto these).
    Cached; read-only."""
    perms = np.array(list(itertools.permutations(range(n))), dtype=np.uint8)
    bit = (np.int64(1) << perms.astype(np.int64))                       # (P, n) one bit per cell's symbol
    n_blocks = n // block_cols if block_cols else 0
    pblock = np.stack([bit[:, b * block_cols:(b + 1) * block_cols].sum(1) for b in range(n_blocks)], 1) \
        if n_blocks else None                                            # (P, n_blocks) symbols per block
    rect = perms[:1, None, :] if first_identity else perms[:, None, :]
    for r in range(1, n):
        colmask = (np.int64(1) << rect.astype(np.int64)).sum(1)          # (M, n) symbols used per column
        ok = np.ones((len(rect), len(perms)), dtype=bool)
        for j in range(n):
            ok &= (colmask[:, j:j + 1] & bit[None, :, j]) == 0
        if n_blocks and r % block_rows:
            top = r - r % block_rows                                     # first row of the current band
            band = (np.int64(1) << rect[:, top:r].astype(np.int64))      # (M, rows in band, n)
            for b in range(n_blocks):
                used = band[:, :, b * block_cols:(b + 1) * block_cols].sum((1, 2))
                ok &= (used[:, None] & pblock[None, :, b]) == 0
        i, k = np.nonzero(ok)
        rect = np.concatenate([rect[i], perms[k][:, None, :]], axis=1)
    out = rect.reshape(len(rect), n * n)
    out.setflags(write=False)
    return out


def _determined_by_relabelling(n: int, normalized: np.ndarray) -> np.ndarray:
    """Determined positions of a symbol-relabelling-invariant set of n x n grids whose first rows are
    all the permutations, from its members with first row 0..n-1 (``normalized``): two grids sharing
    a prefix that covers the first row are relabelled by the same permutation, so positions >= n
    are decided on ``normalized``; in the first row (any permutation) only the last cell is fixed."""
    det = determined_from_valid(normalized)
    det[:n - 1] = False
    det[n - 1] = True
    return det


def cyclic_isotopic(squares: np.ndarray) -> np.ndarray:
    """(m,) bool: is each n x n Latin square (m, n*n) in the isotopy class of the cyclic square
    (i + j) mod n, i.e. can :meth:`LatinSquare.sample` draw it. Its principal loop isotope
    T[L[i, 0], L[0, j]] = L[i, j] (identity e = L[0, 0]) is isotopic to it, and a loop isotopic to a
    group is isomorphic to that group (Albert), so the square is in the class iff T is a cyclic
    group: associative, with an element of order n. Vectorized over the squares (n^3 checks each)."""
    sq = np.asarray(squares).astype(np.int64)
    m = len(sq)
    if m == 0:
        return np.zeros(0, bool)
    n = int(round(np.sqrt(sq.shape[1])))
    L = sq.reshape(m, n, n)
    T = np.empty_like(L)
    T[np.arange(m)[:, None, None], L[:, :, :1], L[:, None, 0, :]] = L
    idx = np.arange(m)[:, None, None, None]
    a, b, c = np.arange(n)[:, None, None], np.arange(n)[None, :, None], np.arange(n)[None, None, :]
    ab = T[np.arange(m)[:, None, None], a[..., 0], b[..., 0]]             # (m, n, n) a*b
    left = T[idx, ab[:, :, :, None], c[None]]                             # (a*b)*c
    bc = T[np.arange(m)[:, None, None], b[0], c[0]]                       # (m, n, n) b*c over (b, c)
    right = T[idx, a[None], bc[:, None, :, :]]                            # a*(b*c)
    assoc = (left == right).all(axis=(1, 2, 3))
    e = L[:, 0, 0]
    power = np.broadcast_to(np.arange(n), (m, n)).copy()                  # g^1 for every element g
    early = np.zeros((m, n), bool)                                        # g^k = e for some k < n
    for _ in range(n - 2):                                                # g^2 .. g^(n-1)
        early |= power == e[:, None]
        power = T[np.arange(m)[:, None], power, np.arange(n)[None]]
    early |= power == e[:, None]
    return assoc & (~early).any(axis=1)


def _is_perm(lines: np.ndarray) -> np.ndarray:
    """(..., n) -> (...) bool: the last axis is a permutation of 0..n-1."""
    n = lines.shape[-1]
    return (np.sort(lines, axis=-1) == np.arange(n)).all(axis=-1)


class _PermutationRule(Rule):
    """n x n grid of symbols 0..n-1 whose lines (rows, columns, blocks) must be permutations."""

    default_encoding = "scalar"
    families: tuple[str, ...] = ("row",)

    def __init__(self, n: int = 6):
        if int(n) != n or n < 2:
            raise TwoclocksError(f"n must be an integer >= 2, got {n}")
        super().__init__(int(n), int(n))
        self.n = self.n_symbols = int(n)

    def lines(self, cells, family: str) -> np.ndarray:
        """(m, n_lines, n) cells of each row / col / block."""
        g = np.asarray(cells).reshape(-1, self.n, self.n)
        if family not in ("row", "col"):
            raise ValueError(f"unknown line family {family!r}")
        return g if family == "row" else g.transpose(0, 2, 1)

    def _ok(self, cells) -> dict[str, np.ndarray]:
        return {f: _is_perm(self.lines(cells, f)) for f in self.families}

    @property
    def constraint_names(self):
        return [f"{f}{i}" for f in self.families for i in range(self.n)]   # n lines per family

    def constraints(self, cells):
        return np.concatenate(list(self._ok(cells).values()), axis=1)

    def breakdown(self, cells) -> dict[str, np.ndarray]:
        """``{family}_ratio`` (m,): the fraction of rows / cols / blocks that are permutations."""
        return {f"{f}_ratio": ok.mean(axis=1) for f, ok in self._ok(cells).items()}

    def to_dict(self):
        return {"name": self.name, "n": self.n}


class RowLatin(_PermutationRule):
    """Row-only Latin square: each row is a permutation of 0..n-1 (columns are free).

    |valid set| = (n!)^n. Sampling is uniform (i.i.d. uniform row permutations). The last cell of
    each row is determined by the row's other cells."""

    name = "row-latin"

    @property
    def valid_set_size(self):
        return factorial(self.n) ** self.n

    @property
    def determined_positions(self):
        det = np.zeros((self.n, self.n), dtype=bool)
        det[:, -1] = True
        return det.ravel()

    def enumerate_valid(self, limit=None):
        """Every grid of permutation rows, (n!)^n of them (lexicographic)."""
        limit = MAX_ENUMERATE if limit is None else int(limit)
        if self.valid_set_size > limit:
            raise TwoclocksError(f"cannot enumerate the valid set of {self!r}: {self.valid_set_size} valid "
                                 f"images (limit {limit}); use a smaller n")
        perms = np.array(list(itertools.permutations(range(self.n))), dtype=np.uint8)
        idx = np.array(list(itertools.product(range(len(perms)), repeat=self.n)), dtype=np.int64)
        return perms[idx].reshape(len(idx), self.D)

    def sample(self, m, rng):
        return _random_perms(rng, m * self.n, self.n).reshape(m, self.D).astype(np.uint8)


class LatinSquare(_PermutationRule):
    """Latin square: every row and every column is a permutation of 0..n-1.

    |valid set| = L(n) (1, 2, 12, 576, 161280, 812851200 for n = 1..6; :data:`LATIN_SQUARE_COUNTS`).

    Sampling (as in the paper): L[i, j] = s[(r_i + c_j) mod n] with uniform random permutations
    r, c, s of rows, columns and symbols of the cyclic square (i + j) mod n. This is uniform over
    the isotopy class of the cyclic square but NOT over all Latin squares: by orbit-stabilizer
    (the autotopism group of the Cayley table of Z_n has n^2 phi(n) elements) it reaches
    ``sampler_support_size`` = (n!)^3 / (n^2 phi(n)) squares, i.e. all of them for n <= 3, 432 of 576
    for n = 4, 17280 of 161280 (10.7%) for n = 5 and 5184000 of 812851200 (0.64%) for n = 6;
    squares outside that class have probability 0. Cells determined by their raster prefix: the
    last cell of each row and the whole last row (and, for n <= 3, more: :attr:`determined_positions`)."""

    name = "latin"
    families = ("row", "col")

    @property
    def valid_set_size(self):
        return LATIN_SQUARE_COUNTS.get(self.n)

    @property
    def sampler_support_size(self) -> int:
        phi = sum(gcd(a, self.n) == 1 for a in range(1, self.n + 1))
        return factorial(self.n) ** 3 // (self.n ** 2 * phi)

    def in_support(self, cells):
        """Valid and in the cyclic square's isotopy class (:func:`cyclic_isotopic`)."""
        cells = np.asarray(cells)
        ok = self.is_valid(cells)
        ok[ok] = cyclic_isotopic(cells[ok])
        return ok

    def enumerate_support(self, limit=None):
        """Every square the sampler can draw, ``sampler_support_size`` of them (lexicographic): the
        squares s[(r_i + c_j) mod n] over all permutations r, c, s (n <= 5; 17280 for n = 5)."""
        limit = MAX_ENUMERATE if limit is None else int(limit)
        n = self.n
        if self.sampler_support_size > limit or factorial(n) ** 2 > limit:
            raise TwoclocksError(f"cannot enumerate the sampler support of {self!r}: {self.sampler_support_size} "
                                 f"squares (limit {limit}); use a smaller n")
        perms = np.array(list(itertools.permutations(range(n))), dtype=np.uint8)
        weights = n ** np.arange(n * n - 1, -1, -1, dtype=np.int64)          # base-n keys (n^(n*n) < 2^63)

        def distinct(grids):                                                 # unique rows, lexicographic
            _, first = np.unique(grids @ weights, return_index=True)
            return grids[first]
        rc = (perms[:, None, :, None].astype(np.int64) + perms[None, :, None, :]) % n   # (P, P, n, n)
        rc = distinct(rc.reshape(-1, n * n))                                            # row/column isotopes
        sq = perms.astype(np.int64)[:, rc].reshape(-1, n * n)                           # every symbol relabelling
        return distinct(sq).astype(np.uint8)

    @property
    def determined_positions(self):
        """The last cell of each row and the whole last row; for n <= 3 more (n = 3: also the centre,
        as the second row is one of two cyclic shifts of the first, told apart by its first cell),
        found by brute force over the valid set. For n = 4, 5 (brute force, tests/test_correctness_rules.py)
        and n = 6 (brute force over the 1128960 squares with first row 0..5) no other cell is
        determined; for n > 6 this closed form is assumed to continue."""
        if self.n <= 3:
            return _determined_by_relabelling(self.n, _grids(self.n, first_identity=True))
        det = np.zeros((self.n, self.n), dtype=bool)
        det[:, -1] = det[-1, :] = True
        return det.ravel()

    def enumerate_valid(self, limit=None):
        """Every Latin square (lexicographic); n <= 5 (161280 squares for n = 5)."""
        limit = MAX_ENUMERATE if limit is None else int(limit)
        size = self.valid_set_size
        if size is None or size > limit:
            raise TwoclocksError(f"cannot enumerate the valid set of {self!r}: {size or 'too many'} valid "
                                 f"images (limit {limit}); use a smaller n")
        return _grids(self.n)

    def sample(self, m, rng):
        n = self.n
        r, c, s = (_random_perms(rng, m, n) for _ in range(3))
        idx = (r[:, :, None] + c[:, None, :]) % n
        return np.take_along_axis(s, idx.reshape(m, self.D), axis=1).astype(np.uint8)


class Sudoku(LatinSquare):
    """Sudoku: a Latin square whose ``block_rows x block_cols`` blocks are permutations too
    (n = block_rows * block_cols; 6x6 with 2x3 blocks: 28200960 grids).

    Sampling: rejection from the :class:`LatinSquare` sampler, so it is uniform over the Sudokus
    in the isotopy class of the cyclic square only, ``sampler_support_size`` of them (6x6, 2x3:
    311040 of 28200960 = 1.1%; 4x4, 2x2: 192 of 288), not over all Sudokus. The exact acceptance
    rate is 0.06 for 6x6 with 2x3 blocks (4/9 for 4x4); the measured rate of the last
    :meth:`sample` call is in ``last_acceptance_rate`` (also logged at INFO). Determined cells: see
    :attr:`determined_positions`."""

    name = "sudoku"
    families = ("row", "col", "block")
    max_draws = 50_000_000   # give up when this many Latin squares gave no Sudoku

    def __init__(self, n: int = 6, block_rows: int = 2, block_cols: int = 3):
        super().__init__(n)
        self.br, self.bc = int(block_rows), int(block_cols)
        if self.br < 1 or self.bc < 1 or self.br * self.bc != self.n:
            raise TwoclocksError(f"Sudoku blocks {block_rows}x{block_cols} must tile n={n} "
                                 "(block_rows * block_cols == n)")
        self.last_acceptance_rate: float | None = None

    def lines(self, cells, family):
        if family != "block":
            return super().lines(cells, family)
        n, br, bc = self.n, self.br, self.bc
        g = np.asarray(cells).reshape(-1, n // br, br, n // bc, bc)
        return g.transpose(0, 1, 3, 2, 4).reshape(-1, n, n)

    @property
    def valid_set_size(self):
        if self.br == 1 or self.bc == 1:      # blocks are rows or columns: plain Latin squares
            return LATIN_SQUARE_COUNTS.get(self.n)
        return SUDOKU_COUNTS.get((self.n, self.br, self.bc))

    @property
    def sampler_support_size(self) -> int | None:
        if self.br == 1 or self.bc == 1:
            return super().sampler_support_size
        return SUDOKU_CYCLIC_SUPPORT.get((self.n, self.br, self.bc))

    def enumerate_support(self, limit=None):
        """Every Sudoku the sampler can draw: the Latin-square support filtered by the blocks (4x4:
        192; 6x6 has too many)."""
        if self.br == 1 or self.bc == 1:
            return super().enumerate_support(limit)
        limit = MAX_ENUMERATE if limit is None else int(limit)
        size = self.sampler_support_size
        if size is None or size > limit:
            raise TwoclocksError(f"cannot enumerate the sampler support of {self!r}: {size or 'too many'} grids "
                                 f"(limit {limit}); use a smaller n")
        sq = super().enumerate_support(16 * limit)
        return sq[_is_perm(self.lines(sq, "block")).all(axis=1)]

    @property
    def determined_positions(self):
        """Brute force over the valid set (via the grids with first row 0..n-1, as relabelling symbols
        maps Sudokus onto Sudokus): for 6x6 with 2x3 blocks, the Latin-square cells (last column, last
        row), the last cell of each block and also cells (4, 3), (4, 4), whose values the columns above
        force once the bottom-left block's first row is known. Blocks of one row or column: a Latin
        square. Where the grids are too many to enumerate (n > 6), the cells known in closed form (the
        Latin-square ones and the last cell of each block), a subset of the determined ones (logged)."""
        if self.br == 1 or self.bc == 1:
            return super().determined_positions
        size = self.valid_set_size
        if size is not None and size // factorial(self.n) <= MAX_ENUMERATE:
            return _determined_by_relabelling(self.n, _grids(self.n, self.br, self.bc, first_identity=True))
        log.warning("%r: too many grids to find the determined cells by brute force; using the Latin-square "
                    "cells and the last cell of each block, which may miss some", self)
        det = np.zeros((self.n, self.n), dtype=bool)
        det[:, -1] = det[-1, :] = True
        det[self.br - 1::self.br, self.bc - 1::self.bc] = True   # last cell of each block
        return det.ravel()

    def enumerate_valid(self, limit=None):
        """Every Sudoku (lexicographic), when there are at most ``limit`` (4x4: 288; 6x6: too many)."""
        if self.br == 1 or self.bc == 1:
            return super().enumerate_valid(limit)
        limit = MAX_ENUMERATE if limit is None else int(limit)
        size = self.valid_set_size
        if size is None or size > limit:
            raise TwoclocksError(f"cannot enumerate the valid set of {self!r}: {size or 'too many'} valid "
                                 f"images (limit {limit}); use a smaller n")
        return _grids(self.n, self.br, self.bc)

    def sample(self, m, rng):
        if m <= 0:
            return np.zeros((0, self.D), np.uint8)
        got, n_got, drawn, rate = [], 0, 0, self.last_acceptance_rate or 0.05
        while n_got < m:
            if drawn >= self.max_draws:
                raise TwoclocksError(f"{self!r}: no Sudoku found in {drawn} Latin squares from the "
                                     "cyclic-isotopy sampler; choose other block sizes")
            k = int(min(max(1.25 * (m - n_got) / max(rate, 1e-4), 256), 500_000))
            sq = super().sample(k, rng)
            sq = sq[_is_perm(self.lines(sq, "block")).all(axis=1)]
            got.append(sq)
            n_got, drawn = n_got + len(sq), drawn + k
            rate = n_got / drawn
        self.last_acceptance_rate = rate
        log.info("sudoku %dx%d (%dx%d blocks): rejection acceptance rate %.4f (%d of %d Latin squares)",
                 self.n, self.n, self.br, self.bc, rate, n_got, drawn)
        return np.concatenate(got)[:m]

    def to_dict(self):
        return {**super().to_dict(), "block_rows": self.br, "block_cols": self.bc}


RULES.update({r.name: r for r in (LatinSquare, RowLatin, Sudoku)})
