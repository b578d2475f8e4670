"""Bit vectors packed into machine words: exact matching and nearest-neighbour Hamming distance.

Binary samples (n, D) in {0,1} are packed row-wise into (n, W) uint64 words, W = ceil(D / 64).
Exact match uses a sort + searchsorted over the packed rows (one scalar key per row: the word itself
when W = 1, a void view over the row's bytes otherwise). Hamming distance is XOR + popcount
(numpy.bitwise_count) over cache-sized (query x reference) blocks, so memory stays bounded and the
blocks stay in cache; large searches are split over threads (numpy releases the GIL).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["pack", "unique_rows", "isin_rows", "nn_hamming", "row_keys", "isin_packed",
           "nn_hamming_packed"]

_ROWS = 64            # query rows per block: a block (_ROWS x cols words) stays in cache
_THREAD_PAIRS = 1 << 23  # split a search over threads above this many (query, reference) pairs


def pack(bits: np.ndarray) -> np.ndarray:
    """Pack (n, D) 0/1 bits into (n, ceil(D/64)) uint64 words (bit order: position p -> word p//64)."""
    bits = np.asarray(bits)
    if bits.ndim != 2:
        raise ValueError(f"expected a 2D (n, D) array of bits, got shape {bits.shape}")
    n, d = bits.shape
    w = max(1, -(-d // 64))
    padded = np.zeros((n, w * 64), dtype=np.uint8)
    padded[:, :d] = bits != 0
    by = np.packbits(padded, axis=1, bitorder="little")  # (n, 8w) bytes
    return np.ascontiguousarray(by).view("<u8").reshape(n, w)


def row_keys(packed: np.ndarray) -> np.ndarray:
    """One sortable scalar key per packed row: the uint64 word itself when rows are one word wide,
    else a void view over the row's bytes. Equal rows <=> equal keys."""
    packed = np.ascontiguousarray(packed)
    if packed.shape[1] == 1:
        return packed[:, 0]
    return packed.view(np.dtype((np.void, packed.dtype.itemsize * packed.shape[1]))).ravel()


def unique_rows(bits: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct row, in their original order."""
    _, first = np.unique(row_keys(pack(bits)), return_index=True)
    return np.sort(first)


def isin_packed(query: np.ndarray, ref_sorted_keys: np.ndarray) -> np.ndarray:
    """(n_query,) bool: is each packed query row's key in the sorted reference keys."""
    q = row_keys(query)
    if ref_sorted_keys.size == 0:
        return np.zeros(q.shape[0], dtype=bool)
    pos = np.minimum(np.searchsorted(ref_sorted_keys, q), ref_sorted_keys.size - 1)
    return ref_sorted_keys[pos] == q


def isin_rows(query_bits: np.ndarray, ref_bits: np.ndarray) -> np.ndarray:
    """(n_query,) bool: is each query row equal to some reference row. O((n+m) log m)."""
    return isin_packed(pack(query_bits), np.sort(row_keys(pack(ref_bits))))


def _nn_range(q, rT, lo, hi, rows, cols, best, arg):
    """Fill best[lo:hi] (and arg, if given) with the nearest reference of query rows lo..hi.
    ``rT`` is the reference transposed to (W, n_ref), so each word is a contiguous row."""
    w, nr = rT.shape
    xbuf = np.empty((rows, cols), np.uint64)
    acc = np.empty((rows, cols), best.dtype)
    cnt = np.empty((rows, cols), np.uint8) if w > 1 else None
    for i in range(lo, hi, rows):
        n = min(rows, hi - i)
        bi = best[i:i + n]
        for j in range(0, nr, cols):
            m = min(cols, nr - j)
            x, a = xbuf[:n, :m], acc[:n, :m]
            for k in range(w):   # distance = sum over words of popcount(q_k ^ r_k)
                np.bitwise_xor(q[i:i + n, k:k + 1], rT[k:k + 1, j:j + m], out=x)
                if k == 0:
                    np.bitwise_count(x, out=a, casting="unsafe")
                else:
                    c = cnt[:n, :m]
                    np.bitwise_count(x, out=c)
                    np.add(a, c, out=a, casting="unsafe")
            if arg is None:
                np.minimum(bi, a.min(axis=1), out=bi)
            else:
                kk = a.argmin(axis=1)
                d = a[np.arange(n), kk]
                better = d < bi
                bi[better] = d[better]
                arg[i:i + n][better] = kk[better] + j


def nn_hamming_packed(query: np.ndarray, ref: np.ndarray, chunk_elems: int = 1 << 19,
                      return_index: bool = False, threads: int | None = None):
    """Exact nearest-neighbour Hamming distance of packed query rows (n, W) to packed reference
    rows (m, W): brute force by XOR + popcount over blocks of at most ``chunk_elems`` pairs.
    Ties go to the lowest reference index. ``threads`` (default: up to 2 CPU cores) split the
    queries when the search is large."""
    q = np.ascontiguousarray(query, dtype=np.uint64)
    r = np.ascontiguousarray(ref, dtype=np.uint64)
    nq, nr = q.shape[0], r.shape[0]
    if nr == 0:
        raise ValueError("reference set is empty")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"query and reference widths differ: {q.shape[1]} vs {r.shape[1]} words")
    # the largest possible distance: the number of bit positions set in any row (padding never is)
    used = np.bitwise_or.reduce(q, axis=0) | np.bitwise_or.reduce(r, axis=0)
    dt = np.uint8 if int(np.bitwise_count(used).sum()) <= 255 else np.uint16
    best = np.full(nq, np.iinfo(dt).max, dtype=dt)
    arg = np.zeros(nq, dtype=np.int64) if return_index else None
    if nq:
        rows = min(_ROWS, nq, max(1, chunk_elems))
        cols = max(1, min(nr, chunk_elems // rows))
        rT = np.ascontiguousarray(r.T)
        threads = threads or min(2, os.cpu_count() or 1)
        parts = min(threads, max(1, nq * nr // _THREAD_PAIRS), -(-nq // rows))
        bounds = np.linspace(0, nq, parts + 1).astype(int)
        if parts == 1:
            _nn_range(q, rT, 0, nq, rows, cols, best, arg)
        else:
            with ThreadPoolExecutor(parts) as ex:
                list(ex.map(lambda b: _nn_range(q, rT, b[0], b[1], rows, cols, best, arg),
                            zip(bounds[:-1], bounds[1:])))
    best = best.astype(np.int32)
    return (best, arg) if return_index else best


def nn_hamming(query_bits: np.ndarray, ref_bits: np.ndarray, chunk_elems: int = 1 << 19,
               return_index: bool = False):
    """Hamming distance from each query row to its nearest reference row (exact, brute force).

    Works on packed words with XOR + popcount; the (query x ref) distance block is built in chunks
    of at most ``chunk_elems`` pairs, so memory is O(chunk_elems) whatever the sizes. With
    ``return_index`` also the index of that nearest row (the lowest one among ties)."""
    return nn_hamming_packed(pack(query_bits), pack(ref_bits), chunk_elems, return_index)
