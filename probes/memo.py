"""Memorization at scale: exact membership and nearest-neighbour Hamming distance to a train set.

docs/science.md#samples: sample memorization = a binarized sample equals a training
sample; nearest-neighbour Hamming distance of each sample to the train set. Cells are turned into
bits (themselves for binary rules, one-hot for categorical ones, ``data.splits.as_bits``), packed
into uint64 words once per train set, and queried with sort + searchsorted (membership) and
XOR + popcount (distance, ``data.bits``). Distances are in *cells*: a changed categorical cell flips
two one-hot bits, so the bit distance is halved.
"""
from __future__ import annotations

import numpy as np

from twoclocks.data.bits import isin_packed, nn_hamming_packed, pack, row_keys
from twoclocks.data.splits import as_bits

__all__ = ["TrainIndex", "group_codes", "GroupIndex"]


class TrainIndex:
    """A train set of (N, D) cells, indexed for membership and nearest-neighbour queries."""

    def __init__(self, cells: np.ndarray, n_symbols: int = 2):
        cells = np.asarray(cells)
        self.n_symbols = int(n_symbols)
        self.D = cells.shape[1]
        self.bits_per_cell = 2 if self.n_symbols > 2 else 1   # one-hot: a cell change = 2 bit flips
        self.packed = pack(as_bits(cells, self.n_symbols))
        self.keys = np.sort(row_keys(self.packed))
        self.n = len(cells)

    def _pack(self, cells):
        cells = np.asarray(cells)
        if cells.ndim != 2 or cells.shape[1] != self.D:
            raise ValueError(f"expected (n, {self.D}) cells, got shape {cells.shape}")
        return pack(as_bits(cells, self.n_symbols))

    def contains(self, cells: np.ndarray) -> np.ndarray:
        """(n,) bool: is each row of ``cells`` a train sample (sample memorization)."""
        return isin_packed(self._pack(cells), self.keys)

    def nn_hamming(self, cells: np.ndarray, chunk_elems: int = 1 << 19) -> np.ndarray:
        """(n,) int32 Hamming distance (in cells) of each row to its nearest train sample.

        Exact. Duplicate queries are searched once and train members get 0 without a search, so
        late, memorizing checkpoints are cheaper than early ones."""
        q = self._pack(cells)
        if self.n == 0:
            raise ValueError("the train set is empty")
        if len(q) == 0:
            return np.zeros(0, dtype=np.int32)
        keys = row_keys(q)
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        member = isin_packed(q[first], self.keys)
        d = np.zeros(len(uniq), dtype=np.int32)
        todo = np.flatnonzero(~member)
        if todo.size:
            d[todo] = nn_hamming_packed(q[first[todo]], self.packed, chunk_elems)
        return d[inverse.ravel()] // self.bits_per_cell


def group_codes(cells: np.ndarray, groups: np.ndarray, n_symbols: int) -> np.ndarray:
    """(n, n_groups) int64: one integer per (sample, group position) that identifies the group's
    cell pattern *at that position*: g * K^G + sum_j cell_j K^j (K symbols, G cells per group).
    Needs n_groups * K^G < 2^62 (true for every rule here); raises ValueError otherwise."""
    groups = np.asarray(groups)
    n_groups, g = groups.shape
    k = int(n_symbols)
    if n_groups * float(k) ** g >= 2.0 ** 62:
        raise ValueError(f"group patterns too large to encode: {n_groups} groups of {g} cells, {k} symbols")
    gc = np.asarray(cells)[:, groups].astype(np.int64)            # (n, n_groups, G)
    code = gc @ (k ** np.arange(g, dtype=np.int64))               # (n, n_groups)
    return code + np.arange(n_groups, dtype=np.int64) * k ** g


class GroupIndex:
    """The (position, pattern) pairs of a train set's groups, for group memorization (docs/science.md: the
    fraction of (sample, group position) whose pattern occurs at that position in the train set)."""

    def __init__(self, train_cells: np.ndarray, groups: np.ndarray, n_symbols: int):
        self.groups = np.asarray(groups)
        self.n_symbols = int(n_symbols)
        self.codes = np.unique(group_codes(train_cells, self.groups, self.n_symbols))
        g = self.groups.shape[1]
        self.patterns_per_position = self.n_symbols ** g
        pos = self.codes // self.patterns_per_position
        self.distinct = np.bincount(pos, minlength=len(self.groups))   # distinct train patterns per position

    def contains(self, cells: np.ndarray) -> np.ndarray:
        """(n, n_groups) bool: does each group's pattern occur at its position in the train set."""
        c = group_codes(cells, self.groups, self.n_symbols)
        pos = np.minimum(np.searchsorted(self.codes, c), self.codes.size - 1)
        return self.codes[pos] == c
