"""Issue 13, point 7: determined positions for every rule, against brute force over the valid set.

A position p is determined iff no two valid images share cells 0..p-1 and differ at p. The oracle here
groups the valid images by prefix with np.unique (independent of ``data.rules.determined_from_valid``)
over valid sets enumerated independently (itertools over all images, filtered by ``rule.is_valid``).
The old code flagged nothing for the count rules, missed the centre of the 3x3 Latin square and two
cells of each Sudoku.
"""
from __future__ import annotations

import itertools
from math import factorial

import numpy as np
import pytest

from twoclocks import TwoclocksError
from twoclocks.data import ExactK, GlobalK, GroupParity, LatinSquare, RowK, RowLatin, RowVariableK, Sudoku
from twoclocks.data.latin import LATIN_SQUARE_COUNTS


def brute_determined(valid):
    D = valid.shape[1]
    det = np.zeros(D, bool)
    for p in range(D):
        _, inv = np.unique(valid[:, :p], axis=0, return_inverse=True) if p else (None, np.zeros(len(valid), int))
        inv = np.asarray(inv).ravel()
        lo = np.full(inv.max() + 1, 255)
        hi = np.zeros(inv.max() + 1, int)
        np.minimum.at(lo, inv, valid[:, p])
        np.maximum.at(hi, inv, valid[:, p])
        det[p] = (lo == hi).all()
    return det


def valid_by_itertools(rule):
    if rule.n_symbols ** rule.D <= 1 << 20:
        cand = np.array(list(itertools.product(range(rule.n_symbols), repeat=rule.D)), np.uint8)
    else:
        perms = np.array(list(itertools.permutations(range(rule.n))), np.uint8)
        idx = np.array(list(itertools.product(range(len(perms)), repeat=rule.n)))
        cand = perms[idx].reshape(len(idx), rule.D)
    return cand[rule.is_valid(cand)]


RULES = [GroupParity(2, 3, group=3), GroupParity(2, 4, group=2), GroupParity(1, 3, group=1),
         ExactK(2, 3, k=2), ExactK(3, 3, k=1), ExactK(2, 2, k=0), ExactK(2, 2, k=4),
         RowK(3, 3, k=1), RowK(2, 4, k=2), RowK(3, 3, k=3), RowK(2, 3, k=0),
         RowVariableK(3, 3, ks=(1, 2)), RowVariableK(2, 4, ks=(0, 2)), RowVariableK(2, 3, ks=(0, 3)),
         RowVariableK(2, 4, ks=(0, 1, 4)),
         GlobalK(3, 3, ks=(1, 2)), GlobalK(3, 3, ks=(0, 2)), GlobalK(2, 4, ks=(0, 4)), GlobalK(3, 3, ks=(0, 1, 3)),
         RowLatin(2), RowLatin(3), LatinSquare(2), LatinSquare(3), LatinSquare(4), Sudoku(4, 2, 2),
         Sudoku(4, 1, 4)]


@pytest.mark.parametrize("rule", RULES, ids=repr)
def test_determined_positions_equal_brute_force(rule):
    valid = valid_by_itertools(rule)
    if rule.valid_set_size is not None:
        assert len(valid) == rule.valid_set_size
    np.testing.assert_array_equal(rule.determined_positions, brute_determined(valid))


def first_differences(valid):
    """Second oracle, for large sets: sort lexicographically; p is free iff some neighbours first differ at p."""
    rows = valid[np.lexsort(valid.T[::-1])]
    diff = rows[1:] != rows[:-1]
    keep = diff.any(axis=1)
    det = np.ones(valid.shape[1], bool)
    det[diff[keep].argmax(axis=1)] = False
    return det


def test_determined_positions_latin_5():
    """n = 5 (161280 squares, from the rule's enumerator, checked complete): only the last row and column."""
    rule = LatinSquare(5)
    valid = rule.enumerate_valid()
    assert len(valid) == LATIN_SQUARE_COUNTS[5] and rule.is_valid(valid).all()
    det = first_differences(valid)
    np.testing.assert_array_equal(rule.determined_positions, det)
    assert det.reshape(5, 5)[:, 4].all() and det.reshape(5, 5)[4].all() and det.sum() == 9


def test_determined_positions_sudoku_6x6():
    """The paper's 6x6 Sudoku with 2x3 blocks, by brute force over the 39168 grids with first row 0..5
    (table from an independent offline enumeration; the 3x2 blocking gives (2, 1), (2, 3), (3, 4), (4, 4)
    extra). Beyond the Latin-square cells and the last cell of each block, (4, 3) and (4, 4) are
    determined: once the bottom-left block's first row is known, the columns above force the rest."""
    want = np.array([[0, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 1],
                     [0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(Sudoku(6, 2, 3).determined_positions.reshape(6, 6), want)


def test_default_size_closed_forms():
    assert np.flatnonzero(ExactK().determined_positions).tolist() == [35]
    np.testing.assert_array_equal(RowK().determined_positions.reshape(6, 6), np.eye(6, dtype=bool)[[5] * 6])
    # ks (2, 3, 4): no cell of a free-count row is forced (after 5 cells with 2 or 3 ones either bit
    # fits); the first row fixes K, so the last cell of every later row is determined
    want = np.zeros((6, 6), bool)
    want[1:, 5] = True
    np.testing.assert_array_equal(GlobalK().determined_positions.reshape(6, 6), want)
    assert not RowVariableK().determined_positions.any()
    det = LatinSquare(6).determined_positions.reshape(6, 6)
    assert det[5].all() and det[:, 5].all() and det.sum() == 11


def test_enumerate_valid_refuses_large_sets():
    with pytest.raises(TwoclocksError, match="cannot enumerate"):
        LatinSquare(6).enumerate_valid()
    with pytest.raises(TwoclocksError, match="cannot enumerate"):
        GroupParity(6, 6, group=3).enumerate_valid()
    assert len(RowLatin(3).enumerate_valid()) == factorial(3) ** 3
