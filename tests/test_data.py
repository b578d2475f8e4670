"""Group parity, splits and bit operations against brute force."""
import itertools

import numpy as np
import pytest

from twoclocks import TwoclocksError
from twoclocks.data import GroupParity, make_encoding, make_rule, make_splits
from twoclocks.data.bits import isin_rows, nn_hamming, pack, unique_rows


def all_images(d):
    return np.array(list(itertools.product([0, 1], repeat=d)), dtype=np.uint8)


@pytest.mark.parametrize("h,w,g", [(2, 2, 1), (2, 2, 2), (2, 3, 3), (3, 3, 3), (2, 4, 4), (3, 4, 6), (3, 4, 12)])
def test_valid_set_size_matches_brute_force(h, w, g):
    rule = GroupParity(h, w, group=g)
    imgs = all_images(h * w)
    brute = np.all(imgs.reshape(len(imgs), -1, g).sum(2) % 2 == 0, axis=1)
    assert rule.is_valid(imgs).sum() == brute.sum() == rule.valid_set_size


def test_sampler_uniform_over_even_patterns():
    from scipy.stats import chisquare
    rule = GroupParity(1, 3, group=3)
    s = rule.sample(40000, np.random.default_rng(0))
    codes = s @ np.array([4, 2, 1])
    counts = np.bincount(codes, minlength=8)
    even = [c for c in range(8) if bin(c).count("1") % 2 == 0]
    assert counts[[c for c in range(8) if c not in even]].sum() == 0
    assert chisquare(counts[even]).pvalue > 1e-3


def test_splits_valid_unique_disjoint_deterministic():
    rule = GroupParity(6, group=3)
    s = make_splits(rule, 2000, 500, 300, seed=7)
    assert rule.is_valid(s["train"]).all() and rule.is_valid(s["heldout"]).all()
    assert len(unique_rows(s["train"])) == 2000 and len(unique_rows(s["heldout"])) == 500
    assert not isin_rows(s["heldout"], s["train"]).any()
    assert s["hypercube"].shape == (300, 36) and s["hypercube"].max() == 1
    s2 = make_splits(rule, 2000, 500, 300, seed=7)
    assert all(np.array_equal(s[k], s2[k]) for k in s)
    assert not np.array_equal(make_splits(rule, 2000, 500, 300, seed=8)["train"], s["train"])


def test_split_takes_whole_valid_set_and_caps_heldout():
    rule = GroupParity(2, 2, group=2)  # 4 valid images
    s = make_splits(rule, 4, 10, 5, seed=0)
    assert len(unique_rows(s["train"])) == 4 and len(s["heldout"]) == 0
    with pytest.raises(TwoclocksError, match="only 4"):
        make_splits(rule, 5, 0, 0, seed=0)


def test_rule_errors_are_one_line():
    for bad in [dict(name="parity", height=6, width=6, group=5), dict(name="nope", height=6, width=6)]:
        with pytest.raises(TwoclocksError) as e:
            make_rule(bad)
        assert "\n" not in str(e.value)


def test_binary_encoding_roundtrip_and_qdist():
    enc = make_encoding("binary", 2)
    b = np.random.default_rng(0).integers(0, 2, (50, 36)).astype(np.uint8)
    x = enc.encode(b)
    assert set(np.unique(x)) == {-1.0, 1.0} and np.array_equal(enc.decode(x), b)
    assert np.all(enc.qdist(x) == 0)
    x2 = x.copy()
    x2[:, 3] *= 0.7
    assert np.allclose(enc.qdist(x2), 0.3)


@pytest.mark.parametrize("d", [5, 64, 100])
def test_bits_against_brute_force(d):
    rng = np.random.default_rng(d)
    q = rng.integers(0, 2, (77, d)).astype(np.uint8)
    r = rng.integers(0, 2, (1001, d)).astype(np.uint8)
    r[:5] = q[:5]
    brute = (q[:, None, :] != r[None]).sum(2)
    dist, idx = nn_hamming(q, r, chunk_elems=5000, return_index=True)
    assert np.array_equal(dist, brute.min(1))
    assert np.array_equal(brute[np.arange(len(q)), idx], dist)
    assert np.array_equal(isin_rows(q, r), (brute == 0).any(1))
    assert pack(q).shape == (77, -(-d // 64))
