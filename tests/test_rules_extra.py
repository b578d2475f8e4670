"""Other rule families (count rules, Latin squares, Sudoku) and the scalar / one-hot encodings."""
import itertools
import json
import logging
from math import factorial

import numpy as np
import pytest
from scipy.stats import chisquare

from twoclocks import TwoclocksError
from twoclocks.data import (RULES, ExactK, GlobalK, GroupParity, LatinSquare, RowK, RowLatin,
                            RowVariableK, Sudoku, make_encoding, make_rule, make_splits)


# ----------------------------------------------------------------------------- helpers
def all_images(n_symbols, D):
    """Every image in range(n_symbols)^D, (n_symbols^D, D) uint8."""
    return np.array(list(itertools.product(range(n_symbols), repeat=D)), dtype=np.uint8)


def all_row_perm_squares(n):
    """Every n x n grid whose rows are permutations: (n!)^n of them."""
    P = np.array(list(itertools.permutations(range(n))), dtype=np.uint8)
    idx = np.array(list(itertools.product(range(len(P)), repeat=n)))
    return P[idx].reshape(len(idx), n * n)


def keys(cells, n_symbols):
    """One int64 per image: its cells read as a base-n_symbols number."""
    cells = np.asarray(cells, dtype=np.int64)
    return cells @ (n_symbols ** np.arange(cells.shape[1], dtype=np.int64))


def cyclic_class_normalized(n):
    """The isotopy class of the cyclic square, s[(r_i + c_j) mod n] for all permutations r, c, s,
    with symbols relabelled so the first row reads 0..n-1: the class is {sigma(N)} over these N and
    all symbol permutations sigma, so it has n! times as many squares."""
    P = np.array(list(itertools.permutations(range(n))))
    r, c = np.repeat(P, len(P), 0), np.tile(P, (len(P), 1))
    sq = ((r[:, :, None] + c[:, None, :]) % n).reshape(len(r), n * n)
    return np.unique(np.take_along_axis(np.argsort(sq[:, :n], axis=1), sq, axis=1), axis=0)


def cyclic_class(n):
    """The whole isotopy class of the cyclic square (small n)."""
    N = cyclic_class_normalized(n)
    P = np.array(list(itertools.permutations(range(n))))
    return P[np.arange(len(P))[None, :, None], N[:, None, :]].reshape(-1, n * n)


def single_cell_corruptions(x, n_symbols):
    """Every image at Hamming distance 1 from x (each cell set to each other symbol)."""
    out = []
    for d in range(x.size):
        for s in range(n_symbols):
            if s != x[d]:
                y = x.copy()
                y[d] = s
                out.append(y)
    return np.array(out)


def assert_uniform(rule, support, n_per_pattern=100, seed=0):
    """All samples lie in ``support`` and hit each of its patterns equally often (chi-square)."""
    ref = np.sort(keys(support, rule.n_symbols))
    s = rule.sample(len(ref) * n_per_pattern, np.random.default_rng(seed))
    assert rule.is_valid(s).all()
    k = keys(s, rule.n_symbols)
    pos = np.searchsorted(ref, k)
    assert (pos < len(ref)).all() and (ref[np.minimum(pos, len(ref) - 1)] == k).all()
    counts = np.bincount(pos, minlength=len(ref))
    p = chisquare(counts).pvalue
    assert p > 1e-3, f"{rule!r}: sampler not uniform over {len(ref)} patterns (p = {p:.2g})"


DEFAULT_RULES = [ExactK(), RowK(), RowVariableK(), GlobalK(), LatinSquare(5), LatinSquare(6),
                 RowLatin(6), Sudoku()]
SMALL_RULES = [ExactK(3, 4, k=5), RowK(3, 4, k=2), RowVariableK(3, 4, ks=(1, 3)),
               GlobalK(3, 4, ks=(0, 2, 4)), LatinSquare(4), RowLatin(3), Sudoku(4, 2, 2)]


# ----------------------------------------------------------------------------- rules
@pytest.mark.parametrize("rule", DEFAULT_RULES + SMALL_RULES, ids=repr)
def test_samples_are_valid_and_well_formed(rule):
    s = rule.sample(500, np.random.default_rng(1))
    assert s.shape == (500, rule.D) and s.dtype == np.uint8
    assert s.max() < rule.n_symbols
    c = rule.constraints(s)
    assert c.shape == (500, len(rule.constraint_names)) and c.all()
    assert rule.validate(s)["valid"].all()
    assert rule.determined_positions.shape == (rule.D,)


@pytest.mark.parametrize("rule, support", [
    (ExactK(2, 3, k=2), None), (RowK(2, 3, k=1), None), (RowVariableK(2, 4, ks=(0, 2)), None),
    (GlobalK(2, 4, ks=(1, 2)), None), (GlobalK(3, 3, ks=(0, 1, 2)), None), (RowLatin(3), None),
    (LatinSquare(3), None), (LatinSquare(4), "cyclic"), (Sudoku(4, 2, 2), "cyclic")], ids=repr)
def test_sampler_uniform(rule, support):
    """Uniform over the valid set; Latin / Sudoku: uniform over the cyclic isotopy class only."""
    if rule.n_symbols == 2:
        imgs = all_images(2, rule.D)
    elif rule.n == 3:
        imgs = all_images(3, rule.D)
    else:
        imgs = cyclic_class(rule.n)
    valid = imgs[rule.is_valid(imgs)]
    if support is None:
        assert len(valid) == rule.valid_set_size
    else:
        assert len(valid) == rule.sampler_support_size < rule.valid_set_size
    assert_uniform(rule, valid)


@pytest.mark.parametrize("rule", [ExactK(3, 4, k=5), ExactK(2, 2, k=0), RowK(3, 4, k=2),
                                  RowVariableK(3, 4, ks=(1, 3)), RowVariableK(3, 4, ks=(1, 2)),
                                  GlobalK(3, 4, ks=(0, 2, 4)), GlobalK(3, 4, ks=(1, 2)),
                                  RowLatin(3), LatinSquare(3), Sudoku(3, 1, 3)], ids=repr)
def test_valid_set_size_brute_force(rule):
    imgs = all_images(rule.n_symbols, rule.D)
    assert rule.is_valid(imgs).sum() == rule.valid_set_size


def test_valid_set_size_n4_via_row_permutations():
    sq = all_row_perm_squares(4)                      # 24^4 = 331776 grids, every row a permutation
    assert RowLatin(4).is_valid(sq).all() and len(sq) == RowLatin(4).valid_set_size
    assert LatinSquare(4).is_valid(sq).sum() == LatinSquare(4).valid_set_size == 576
    assert Sudoku(4, 2, 2).is_valid(sq).sum() == Sudoku(4, 2, 2).valid_set_size == 288


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_latin_sampler_support_formula(n):
    """(n!)^3 / (n^2 phi(n)) squares in the cyclic isotopy class; the sampler reaches them all."""
    rule = LatinSquare(n)
    assert len(cyclic_class_normalized(n)) * factorial(n) == rule.sampler_support_size
    if n <= 4:
        cls = cyclic_class(n)
        assert len(np.unique(keys(cls, n))) == len(cls) == rule.sampler_support_size
        assert rule.is_valid(cls).all()
        s = rule.sample(20 * len(cls), np.random.default_rng(2))
        assert len(np.unique(keys(s, n))) == len(cls)


def test_sudoku_support_and_acceptance_6x6(caplog):
    rule = Sudoku()
    P = np.array(list(itertools.permutations(range(6))))
    r, c = np.repeat(P, 720, 0), np.tile(P, (720, 1))
    ok = rule.is_valid(((r[:, :, None] + c[:, None, :]) % 6).reshape(-1, 36))
    assert ok.mean() == pytest.approx(0.06)                    # exact acceptance rate
    assert rule.sampler_support_size == round(0.06 * LatinSquare(6).sampler_support_size)
    with caplog.at_level(logging.INFO, logger="twoclocks.data.latin"):
        s = rule.sample(5000, np.random.default_rng(3))
    assert len(s) == 5000 and rule.is_valid(s).all()
    assert abs(rule.last_acceptance_rate - 0.06) < 0.01
    assert "acceptance rate" in caplog.text
    assert len(rule.sample(0, np.random.default_rng(0))) == 0


@pytest.mark.parametrize("rule", [r for r in DEFAULT_RULES if not isinstance(r, RowVariableK)]
                         + SMALL_RULES + [RowVariableK(6, 6, ks=(1, 3, 5))], ids=repr)
def test_every_single_cell_corruption_is_rejected(rule):
    """(Row-var-k with consecutive ks, e.g. the default (2, 3, 4), is excluded: there a one-bit
    flip can stay valid; see the next test.)"""
    for x in rule.sample(3, np.random.default_rng(4)):
        bad = single_cell_corruptions(x, rule.n_symbols)
        assert not rule.is_valid(bad).any()


def test_row_var_k_consecutive_ks_matches_definition():
    rule = RowVariableK()                                        # ks = (2, 3, 4)
    for x in rule.sample(3, np.random.default_rng(5)):
        bad = single_cell_corruptions(x, 2)
        counts = bad.reshape(-1, 6, 6).sum(axis=2)
        np.testing.assert_array_equal(rule.is_valid(bad), np.isin(counts, (2, 3, 4)).all(axis=1))


@pytest.mark.parametrize("rule", [RowLatin(3), LatinSquare(4), Sudoku(4, 2, 2), GroupParity(2, 3, 3)],
                         ids=repr)
def test_determined_positions(rule):
    """Every claimed position is a function of the cells before it, over the whole valid set."""
    imgs = all_row_perm_squares(rule.n) if rule.n_symbols == 4 else all_images(rule.n_symbols, rule.D)
    valid = imgs[rule.is_valid(imgs)]
    det = rule.determined_positions
    assert det.any()
    for p in np.flatnonzero(det):
        _, first, inv = np.unique(valid[:, :p], axis=0, return_index=True, return_inverse=True)
        assert (valid[first[inv.ravel()], p] == valid[:, p]).all(), p


def test_determined_positions_layout():
    assert RowLatin(4).determined_positions.reshape(4, 4)[:, 3].all()
    assert RowLatin(4).determined_positions.sum() == 4
    assert LatinSquare(5).determined_positions.sum() == 9
    det = Sudoku().determined_positions.reshape(6, 6)
    # brute force also finds cells (4, 3) and (4, 4) determined (13 -> 15 cells)
    assert det[5].all() and det[:, 5].all() and det[1, 2] and det[3, 2] and det[4, 3] and det[4, 4]
    assert det.sum() == 15
    # the count rules fix their last cell (exact-K) / the last cell of each row (row-K)
    assert np.flatnonzero(ExactK().determined_positions).tolist() == [35]
    assert RowK().determined_positions.reshape(6, 6)[:, 5].all() and RowK().determined_positions.sum() == 6


def test_breakdown():
    rng = np.random.default_rng(6)
    x = ExactK(k=10).sample(2, rng)
    x[0, np.flatnonzero(x[0] == 0)[0]] = 1
    b = ExactK(k=10).breakdown(x)
    np.testing.assert_array_equal(b["count"], [11, 10])
    np.testing.assert_array_equal(b["count_error"], [1, 0])

    rule = GlobalK(ks=(3,))
    x = rule.sample(2, rng)
    x[0, np.flatnonzero(x[0, :6] == 0)[0]] = 1                  # row 0 gets 4 ones
    b = rule.breakdown(x)
    np.testing.assert_array_equal(b["row_counts"], [[4, 3, 3, 3, 3, 3], [3] * 6])
    np.testing.assert_allclose(b["row_ratio"], [5 / 6, 1])
    np.testing.assert_array_equal(b["rows_equal"], [False, True])
    np.testing.assert_array_equal(b["n_distinct_counts"], [2, 1])
    assert RowK().groups.shape == (6, 6) and ExactK().groups is None and LatinSquare().groups is None

    rule = Sudoku()
    x = rule.sample(2, rng)
    x[0, 0] = (x[0, 0] + 1) % 6
    b = rule.breakdown(x)
    assert set(b) == {"row_ratio", "col_ratio", "block_ratio"}
    for v in b.values():
        np.testing.assert_allclose(v, [5 / 6, 1])
    hyper = rng.integers(0, 6, (100, 36))
    np.testing.assert_allclose(LatinSquare().breakdown(hyper)["col_ratio"],
                               LatinSquare().constraints(hyper)[:, 6:].mean(axis=1))
    assert RowLatin().breakdown(hyper).keys() == {"row_ratio"}


@pytest.mark.parametrize("rule", DEFAULT_RULES + SMALL_RULES + [GroupParity()], ids=repr)
def test_make_rule_round_trip(rule):
    d = json.loads(json.dumps(rule.to_dict()))
    again = make_rule(d)
    assert type(again) is type(rule) and again.to_dict() == rule.to_dict()
    assert RULES[d["name"]] is type(rule)


def test_bad_parameters():
    for spec in [{"name": "exact-k", "k": 37}, {"name": "row-k", "k": 7}, {"name": "row-var-k", "ks": []},
                 {"name": "global-k", "ks": [2, 9]}, {"name": "sudoku", "block_rows": 4},
                 {"name": "latin", "n": 1}, {"name": "latin", "k": 3}]:
        with pytest.raises(TwoclocksError):
            make_rule(spec)


@pytest.mark.parametrize("rule", [ExactK(), RowK(), RowVariableK(), GlobalK(), LatinSquare(5), RowLatin(4),
                                  Sudoku()], ids=repr)
def test_make_splits(rule):
    s = make_splits(rule, n_train=300, n_heldout=200, n_hypercube=50, seed=0)
    train, held = s["train"], s["heldout"]
    assert len(train) == 300 and len(held) == 200 and s["hypercube"].shape == (50, rule.D)
    assert rule.is_valid(train).all() and rule.is_valid(held).all()
    k_train, k_held = keys(train, rule.n_symbols), keys(held, rule.n_symbols)
    assert len(np.unique(k_train)) == 300 and len(np.unique(k_held)) == 200
    assert not np.isin(k_held, k_train).any()
    assert s["hypercube"].max() < rule.n_symbols


def test_group_parity_untouched():
    rule = GroupParity(2, 3, group=3)
    assert rule.to_dict() == {"name": "parity", "height": 2, "width": 3, "group": 3}
    assert rule.is_valid(all_images(2, 6)).sum() == rule.valid_set_size == 16
    assert rule.default_encoding == "binary" and rule.n_symbols == 2


# ----------------------------------------------------------------------------- encodings
ENCODING_CASES = [("binary", 2, {})] + [
    (name, K, kw) for K in (2, 3, 5, 6)
    for name, kw in [("scalar", {}), ("onehot", {"zero_mean": False}), ("onehot", {"zero_mean": True})]]


@pytest.mark.parametrize("name, K, kw", ENCODING_CASES, ids=str)
def test_encoding_round_trip_and_qdist(name, K, kw):
    enc = make_encoding(name, K, **kw)
    cells = np.random.default_rng(7).integers(0, K, (200, 36)).astype(np.uint8)
    x = enc.encode(cells)
    assert x.dtype == np.float32 and x.shape == (200, 36 * enc.channels)
    np.testing.assert_array_equal(enc.decode(x), cells)
    assert enc.qdist(x).max() < 1e-6
    eps = 0.3 / (K - 1) if name == "scalar" else 0.1      # keeps every value in its own basin
    noise = np.random.default_rng(8).uniform(-eps, eps, x.shape)
    y = x + noise
    np.testing.assert_array_equal(enc.decode(y), cells)
    q = enc.qdist(y)
    assert (q > 0).all() and (q <= eps + 1e-6).all()
    if name != "onehot":
        np.testing.assert_allclose(q, np.abs(noise).max(axis=1), atol=1e-6)
    d = enc.to_dict()
    assert make_encoding(d.pop("name"), K, **d).to_dict() == enc.to_dict()


@pytest.mark.parametrize("zero_mean", [False, True])
def test_onehot_layout_and_qdist_brute_force(zero_mean):
    K, rng = 4, np.random.default_rng(9)
    enc = make_encoding("onehot", K, zero_mean=zero_mean)
    cells = rng.integers(0, K, (5, 7))
    x = enc.encode(cells)
    off = 1 / K if zero_mean else 0.0
    for d in range(7):
        for k in range(K):
            np.testing.assert_allclose(x[:, d * K + k], (cells[:, d] == k) - off, atol=1e-7)
    np.testing.assert_allclose(x.reshape(5, 7, K).sum(axis=2), 0 if zero_mean else 1, atol=1e-6)
    y = rng.normal(0, 1, (50, 7 * K))
    codes = np.eye(K) - off
    brute = np.abs(y.reshape(50, 7, 1, K) - codes).max(axis=3).min(axis=2).max(axis=1)
    np.testing.assert_allclose(enc.qdist(y), brute, atol=1e-12)
    y = x.astype(np.float64)
    y[0, 3] += 0.05                                       # one channel moved by 0.05
    assert enc.qdist(y)[0] == pytest.approx(0.05) and enc.qdist(y)[1:].max() < 1e-6


def test_scalar_snaps_and_binary_matches():
    enc = make_encoding("scalar", 6)
    np.testing.assert_allclose(enc.encode(np.arange(6)[None]), [[-1, -0.6, -0.2, 0.2, 0.6, 1]],
                               atol=1e-7)
    np.testing.assert_array_equal(enc.decode(np.array([[-3.0, -0.45, 0.05, 2.0]])), [[0, 1, 3, 5]])
    np.testing.assert_allclose(enc.qdist(np.array([[-3.0, -0.45]])), [2.0])
    bits = np.random.default_rng(10).integers(0, 2, (20, 36))
    np.testing.assert_array_equal(make_encoding("scalar", 2).encode(bits),
                                  make_encoding("binary", 2).encode(bits))
    with pytest.raises(TwoclocksError):
        make_encoding("binary", 6)
    with pytest.raises(TwoclocksError):
        make_encoding("scalar", 6, zero_mean=True)
