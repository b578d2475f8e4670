"""Issue 13, point 2 (and the ce --denoiser part of point 9): the exact references are exact for every
(rule, encoding) the CLI accepts, or refused with a one-line error.

Independent oracle: the posterior mean by brute force over the valid set (every image enumerated with
itertools and filtered with ``rule.is_valid``), E[x | y] = sum_v softmax_v(-||y - enc(v)||^2 / (2 s^2))
enc(v), in float64 numpy; and the sigma -> 0 limit on train samples, where an exact reference must
return the sample itself (loss 0). The autoregressive ideal rule model of the GPT references is checked
against prefix counts over the same enumerated valid set.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from twoclocks import TwoclocksError
from twoclocks.data import (ExactK, GlobalK, GroupParity, LatinSquare, RowK, RowLatin, RowVariableK, Sudoku,
                            make_encoding, unique_valid)
from twoclocks.ideal import reference_denoiser

ENCODINGS = [("binary", {}), ("scalar", {}), ("onehot", {}), ("onehot", {"zero_mean": True})]
SMALL = [GroupParity(2, 3, group=3), GroupParity(2, 2, group=2), GroupParity(1, 3, group=1), ExactK(2, 3, k=2),
         RowK(3, 3, k=1), RowVariableK(2, 3, ks=(0, 2)), GlobalK(3, 2, ks=(1, 2)), GlobalK(2, 3, ks=(0, 1, 3)),
         RowLatin(3), LatinSquare(3), Sudoku(4, 2, 2)]


def encodings_for(rule):
    """The encodings the CLI accepts for a rule: binary only for 2 symbols."""
    return [(n, kw) for n, kw in ENCODINGS if n != "binary" or rule.n_symbols == 2]


def combos(rules):
    return [(r, n, kw) for r in rules for n, kw in encodings_for(r)]


def ids(c):
    r, n, kw = c
    return f"{r!r}-{n}{'-zm' if kw else ''}"


def all_valid(rule):
    """Every valid image by brute force, independent of the rule's own enumerator."""
    if rule.n_symbols ** rule.D <= 1 << 20:
        cand = np.array(list(itertools.product(range(rule.n_symbols), repeat=rule.D)), np.uint8)
    else:  # Sudoku 4x4: every grid of permutation rows (24^4), then the rule's checks
        perms = np.array(list(itertools.permutations(range(rule.n))), np.uint8)
        idx = np.array(list(itertools.product(range(len(perms)), repeat=rule.n)))
        cand = perms[idx].reshape(len(idx), rule.D)
    return cand[rule.is_valid(cand)]


def sampler_support(rule):
    """The images the rule's training-data sampler draws (the ideal-rule reference's support), by brute
    force: every valid image, or, where the sampler covers only part of the valid set (Latin squares,
    Sudoku: the cyclic square's isotopy class), the distinct images of many draws (432 or fewer
    images, 40000 draws: none is missed in practice)."""
    valid = all_valid(rule)
    if rule.sampler_support_size == len(valid):
        return valid
    draws = np.unique(rule.sample(40000, np.random.default_rng(7)), axis=0)
    assert len(draws) == rule.sampler_support_size < len(valid)
    return draws


def all_images(rule):
    return np.array(list(itertools.product(range(rule.n_symbols), repeat=rule.D)), np.uint8)


def brute_mean(support_x, y, s):
    lw = -((y[:, None, :] - support_x[None]) ** 2).sum(-1) / (2 * s * s)
    w = np.exp(lw - lw.max(1, keepdims=True))
    return (w / w.sum(1, keepdims=True)) @ support_x


@pytest.mark.parametrize("combo", combos(SMALL), ids=ids)
def test_references_equal_brute_force_posterior_means(combo):
    rule, name, kw = combo
    enc = make_encoding(name, rule.n_symbols, **kw)
    rng = np.random.default_rng(0)
    valid = all_valid(rule)
    train = valid[rng.choice(len(valid), min(5, len(valid)), replace=False)]
    tx = enc.encode(train)
    refs = {"ideal-rule": enc.encode(sampler_support(rule)).astype(np.float64), "memorize": tx.astype(np.float64)}
    if rule.n_symbols ** rule.D <= 20000:
        refs["ideal-cube"] = enc.encode(all_images(rule)).astype(np.float64)
    for s in (0.15, 0.6, 2.0):
        start = enc.encode(rng.integers(0, rule.n_symbols, (6, rule.D)))   # valid and invalid points
        y = start + s * rng.standard_normal(start.shape)
        for ref, support in refs.items():
            got = reference_denoiser(ref, rule, tx)(torch.tensor(y), s).numpy()
            want = brute_mean(support, y, s)
            # float64 closed forms: 1e-9; the enumerated Latin / Sudoku reference is float32
            tol = 1e-9 if ref == "ideal-rule" and not isinstance(rule, LatinSquare) else 2e-5
            assert np.abs(got - want).max() < tol, (ref, s)


DEFAULT_SIZES = [GroupParity(6, 6, group=3), ExactK(), RowK(), RowVariableK(), GlobalK(), RowLatin(6),
                 LatinSquare(4), Sudoku(4, 2, 2)]


@pytest.mark.parametrize("combo", combos(DEFAULT_SIZES), ids=ids)
def test_sigma_to_zero_limit_on_train_samples_is_zero(combo):
    """Measured on the old code (per coordinate): parity one-hot ideal-rule 0.5 / ideal-cube 0.5
    (zero-mean: 0.583 / 0.25), count rules one-hot ideal-cube 0.5 (zero-mean 0.25), every non-parity
    ideal-rule refused."""
    rule, name, kw = combo
    enc = make_encoding(name, rule.n_symbols, **kw)
    rng = np.random.default_rng(1)
    tx = enc.encode(unique_valid(rule, 16, rng))
    s = 1e-3
    y = torch.tensor(tx + s * rng.standard_normal(tx.shape), dtype=torch.float32)
    for ref in ("ideal-rule", "ideal-cube", "memorize"):
        out = reference_denoiser(ref, rule, tx)(y, s)
        assert out.dtype == y.dtype and out.shape == y.shape
        assert float(((out.double().numpy() - tx) ** 2).mean()) < 1e-10, ref


@pytest.mark.parametrize("rule", [LatinSquare(6), Sudoku(6, 2, 3)], ids=repr)
def test_ideal_rule_refused_with_one_line_error_where_not_exact(rule):
    from twoclocks.training.gpt import reference_model
    tx = make_encoding("scalar", rule.n_symbols).encode(rule.sample(4, np.random.default_rng(0)))
    for make in (lambda: reference_denoiser("ideal-rule", rule, tx),
                 lambda: reference_model("ideal-rule", rule, None)):
        with pytest.raises(TwoclocksError) as e:
            make()
        msg = str(e.value)
        assert "\n" not in msg and "memorize" in msg and repr(rule) in msg
    reference_denoiser("ideal-cube", rule, tx)   # the cube and memorize references still work
    reference_denoiser("memorize", rule, tx)


def test_encoding_is_inferred_or_refused():
    from twoclocks.ideal import infer_encoding
    rule = RowK(3, 3, k=1)
    for name, kw in ENCODINGS:
        enc = make_encoding(name, 2, **kw)
        got = infer_encoding(rule, enc.encode(rule.sample(8, np.random.default_rng(0))))
        np.testing.assert_array_equal(got.codes, enc.codes)
    with pytest.raises(TwoclocksError, match="encoding"):
        infer_encoding(rule, np.full((4, 9), 0.3, np.float32))


# ----------------------------------------------------------------------------- autoregressive ideal model
def brute_conditionals(valid, cells, K):
    """p(c_t = k | c_<t) = #valid with prefix c_<t and c_t = k / #valid with prefix c_<t; NaN rows where
    no valid image has the prefix."""
    n, D = cells.shape
    out = np.full((n, D, K), np.nan)
    for i in range(n):
        for t in range(D):
            m = (valid[:, :t] == cells[i, :t]).all(axis=1)
            if m.any():
                out[i, t] = np.bincount(valid[m, t], minlength=K) / m.sum()
    return out


AR_RULES = [GroupParity(2, 3, group=3), ExactK(2, 3, k=2), RowK(3, 3, k=1), RowVariableK(2, 3, ks=(0, 2)),
            GlobalK(3, 2, ks=(1, 2)), RowLatin(3), LatinSquare(3), Sudoku(4, 2, 2)]


@pytest.mark.parametrize("rule", AR_RULES, ids=repr)
def test_ideal_autoregressive_model_equals_prefix_counts(rule):
    """reference_model('ideal-rule', ...) works for every rule (old code: parity only) and equals the
    conditionals of the training distribution (uniform on the sampler's support: the valid set, or for
    Sudoku the cyclic square's isotopy class); on random sequences it is a distribution and gives
    probability 0 exactly where no image of the support continues the (valid) prefix that way."""
    from twoclocks.training.gpt import ideal_rule_logprobs, reference_model, sample_fixed
    K = rule.n_symbols
    valid = sampler_support(rule)
    rng = np.random.default_rng(2)
    seqs = valid[rng.choice(len(valid), 12)]
    want = brute_conditionals(valid, seqs, K)
    got = np.exp(ideal_rule_logprobs(rule, seqs))
    np.testing.assert_allclose(got, want, atol=1e-12)
    cube = rng.integers(0, K, (12, rule.D))
    lp = ideal_rule_logprobs(rule, cube)
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, atol=1e-12)
    bc = brute_conditionals(valid, cube, K)
    has_prefix = ~np.isnan(bc[..., 0])
    np.testing.assert_array_equal(np.isneginf(lp)[has_prefix], (bc == 0)[has_prefix])
    model = reference_model("ideal-rule", rule, valid[:4])
    x = sample_fixed(model, torch.tensor(rng.random((64, rule.D)), dtype=torch.float32)).numpy()
    assert rule.is_valid(x).all()
