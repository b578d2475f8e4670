"""Train / held-out / hypercube splits, deterministic from a seed, vectorized (no loop per sample)."""
from __future__ import annotations

import numpy as np

from twoclocks import TwoclocksError
from twoclocks.data import bits as _bits
from twoclocks.data.rules import Rule

__all__ = ["unique_valid", "make_splits"]

MAX_ROUNDS = 64


def as_bits(cells: np.ndarray, n_symbols: int) -> np.ndarray:
    """Cells as 0/1 bits for exact matching and Hamming distance: themselves when binary, one-hot
    (n, D * K) otherwise (then a Hamming distance of 2 is one changed cell)."""
    cells = np.asarray(cells)
    if n_symbols <= 2:
        return cells
    return (cells[..., None] == np.arange(n_symbols)).reshape(len(cells), -1)


def support_size(rule: Rule) -> int | None:
    """Number of images the rule's sampler can produce (smaller than the valid set for samplers that
    are not uniform over it, e.g. Latin squares from the cyclic square's isotopy class)."""
    return getattr(rule, "sampler_support_size", None) or rule.valid_set_size


def unique_valid(rule: Rule, n: int, rng: np.random.Generator, exclude: np.ndarray | None = None,
                 what: str = "train") -> np.ndarray:
    """``n`` distinct valid examples (not in ``exclude``) by rejection, in order of first draw."""
    size = support_size(rule)
    n_excl = 0 if exclude is None else len(exclude)
    if size is not None and n + n_excl > size:
        raise TwoclocksError(
            f"asked for {n} unique {what} samples but the rule {rule!r} can produce only {size} images"
            + (f" ({n_excl} already used by train)" if n_excl else "")
            + "; lower --n-train or choose a rule with a larger valid set")
    have = np.zeros((0, rule.D), dtype=np.uint8)
    k = rule.n_symbols
    for _ in range(MAX_ROUNDS):
        need = n - len(have)
        if need <= 0:
            break
        batch = rule.sample(max(2 * need, 256), rng)
        if exclude is not None and len(exclude):
            batch = batch[~_bits.isin_rows(as_bits(batch, k), as_bits(exclude, k))]
        merged = np.concatenate([have, batch])
        have = merged[_bits.unique_rows(as_bits(merged, k))][:n]
    if len(have) < n:
        raise TwoclocksError(
            f"could only find {len(have)} of {n} unique {what} samples by rejection after "
            f"{MAX_ROUNDS} rounds: N is too close to the size of the valid set ({size}); lower it")
    return have


def make_splits(rule: Rule, n_train: int, n_heldout: int, n_hypercube: int, seed: int) -> dict:
    """Three splits as (n, D) uint8 cells: ``train`` (unique valid), ``heldout`` (unique valid,
    disjoint from train) and ``hypercube`` (uniform random cells, no rule)."""
    if n_train < 1:
        raise TwoclocksError(f"--n-train must be at least 1, got {n_train}")
    rng = np.random.default_rng([seed, 1])
    train = unique_valid(rule, n_train, rng, what="train")
    size = support_size(rule)
    if size is not None:
        n_heldout = min(n_heldout, size - n_train)
    heldout = (unique_valid(rule, n_heldout, rng, exclude=train, what="held-out")
               if n_heldout > 0 else np.zeros((0, rule.D), np.uint8))
    hyper = np.random.default_rng([seed, 2]).integers(0, rule.n_symbols, (n_hypercube, rule.D),
                                                      dtype=np.uint8)
    return {"train": train, "heldout": heldout, "hypercube": hyper}
