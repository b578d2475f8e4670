"""Rules: the constraint a dataset obeys, and how its examples are encoded for a model.

A rule works on *cells*: integer arrays of shape (n, D) with values in range(n_symbols), D cells of an
image of shape (height, width), flattened row-major. An encoding maps cells to model space (floats
of shape (n, D * channels)) and back. Every method is vectorized over the batch.

To add a rule, subclass :class:`Rule`, implement ``sample`` and ``constraints`` (and ``groups`` /
``valid_set_size`` where they make sense) and register it in :data:`RULES`.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np

from twoclocks import TwoclocksError

__all__ = ["Rule", "GroupParity", "RULES", "make_rule", "determined_from_valid", "MAX_ENUMERATE",
           "support_for_reference", "restricted_support", "support_baseline"]

#: the most valid images :meth:`Rule.enumerate_valid` returns (brute-force references and checks)
MAX_ENUMERATE = 1 << 18


def support_for_reference(rule, what: str) -> np.ndarray:
    """The support of the rule's sampler (the training distribution, uniform over it; the valid set for
    every rule whose sampler reaches all valid images), enumerated, for an exact reference (``what``)
    of a rule without closed-form marginals; a one-line error where it is too large to enumerate."""
    try:
        return rule.enumerate_support()
    except TwoclocksError:
        raise TwoclocksError(f"no exact {what} for {rule!r}: no closed form, and its sampler's support "
                             f"({rule.sampler_support_size or 'size unknown'}) is too large to enumerate "
                             f"(limit {MAX_ENUMERATE}); use the memorize or ideal-cube reference") from None


def determined_from_valid(valid: np.ndarray) -> np.ndarray:
    """(D,) bool, brute force: position p is determined iff every two rows of ``valid`` (all the valid
    images) that agree on columns 0..p-1 also agree on column p. Sorting the rows lexicographically
    puts the rows that share a prefix next to each other, so p is free iff some two neighbours first
    differ exactly at p."""
    valid = np.asarray(valid)
    if valid.ndim != 2:
        raise ValueError(f"expected (M, D) valid images, got shape {valid.shape}")
    det = np.ones(valid.shape[1], dtype=bool)
    if len(valid) < 2:
        return det
    rows = np.unique(valid, axis=0)                      # sorted lexicographically, distinct
    diff = rows[1:] != rows[:-1]
    det[np.unique(diff.argmax(axis=1))] = False          # first differing column of each neighbour pair
    return det


# ----------------------------------------------------------------------------- rules
class Rule(ABC):
    """A rule over images of ``height x width`` cells with ``n_symbols`` symbols per cell."""

    name: str = "?"
    n_symbols: int = 2
    default_encoding: str = "binary"

    def __init__(self, height: int, width: int):
        if height < 1 or width < 1:
            raise TwoclocksError(f"image size must be positive, got {height}x{width}")
        self.height, self.width = int(height), int(width)

    @property
    def D(self) -> int:
        """Number of cells (pixels)."""
        return self.height * self.width

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, D) uint8 cells of valid examples (i.i.d.; uniform over the valid set where stated)."""

    @abstractmethod
    def constraints(self, cells: np.ndarray) -> np.ndarray:
        """(n, n_constraints) bool: which constraints each example satisfies."""

    @property
    @abstractmethod
    def constraint_names(self) -> list[str]: ...

    def is_valid(self, cells: np.ndarray) -> np.ndarray:
        return self.constraints(cells).all(axis=1)

    def validate(self, cells: np.ndarray) -> dict[str, np.ndarray]:
        """Per-example validity with its breakdown: ``valid`` (n,), ``constraints`` (n, c),
        ``constraint_frac`` (n,) the fraction of constraints met."""
        c = self.constraints(cells)
        return {"valid": c.all(axis=1), "constraints": c, "constraint_frac": c.mean(axis=1)}

    @property
    def valid_set_size(self) -> int | None:
        """Number of valid images, or None when unknown."""
        return None

    # The training distribution (docs/science.md#rules): every sampler draws uniformly from its support,
    # which is the whole valid set unless a rule says otherwise (Latin squares and Sudoku: the isotopy
    # class of the cyclic square). Baselines, thresholds and references use the support.
    @property
    def sampler_support_size(self) -> int | None:
        """Number of images :meth:`sample` can draw (uniformly), or None when unknown; the valid set
        unless the rule's sampler is restricted."""
        return self.valid_set_size

    def in_support(self, cells: np.ndarray) -> np.ndarray:
        """(n,) bool: can :meth:`sample` draw each image (the valid set unless restricted)."""
        return self.is_valid(cells)

    def enumerate_support(self, limit: int | None = None) -> np.ndarray:
        """(M, D) uint8: every image :meth:`sample` can draw, lexicographic (the valid set unless
        restricted); TwoclocksError beyond ``limit`` images."""
        return self.enumerate_valid(limit)

    @property
    def groups(self) -> np.ndarray | None:
        """(n_groups, group_size) cell positions of the rule's groups, when it has local groups
        (used for group accuracy and group memorization); None otherwise."""
        return None

    @property
    def determined_positions(self) -> np.ndarray:
        """(D,) bool: the cells whose value is fixed by the cells before them in raster order, in
        every valid example: position p is determined iff no two valid images share cells 0..p-1
        and differ at p (over the rule's whole valid set, not only what its sampler draws). Used by
        the GPT cross-entropy probe. Rules give it in closed form where one exists; this default
        is brute force over :meth:`enumerate_valid` (:func:`determined_from_valid`)."""
        return determined_from_valid(self.enumerate_valid())

    def enumerate_valid(self, limit: int | None = None) -> np.ndarray:
        """(M, D) uint8: every valid image, in lexicographic order of the cells. The default walks all
        n_symbols^D images (in chunks) and keeps the valid ones; it refuses (TwoclocksError) when
        that exceeds ``limit`` images (default :data:`MAX_ENUMERATE`) to check or to return."""
        limit = MAX_ENUMERATE if limit is None else int(limit)
        K, D = self.n_symbols, self.D
        if K ** D > 16 * limit:
            raise TwoclocksError(f"cannot enumerate the valid set of {self!r}: {K}^{D} images to check "
                                 f"(limit {16 * limit}); use a smaller image")
        size = self.valid_set_size
        if size is not None and size > limit:
            raise TwoclocksError(f"cannot enumerate the valid set of {self!r}: {size} valid images "
                                 f"(limit {limit}); use a smaller image")
        weights = K ** np.arange(D - 1, -1, -1, dtype=np.int64)
        out, chunk = [], 1 << 16
        for lo in range(0, K ** D, chunk):
            idx = np.arange(lo, min(lo + chunk, K ** D), dtype=np.int64)
            cells = ((idx[:, None] // weights) % K).astype(np.uint8)
            out.append(cells[self.is_valid(cells)])
        valid = np.concatenate(out) if out else np.zeros((0, D), np.uint8)
        if len(valid) > limit:
            raise TwoclocksError(f"cannot enumerate the valid set of {self!r}: {len(valid)} valid images "
                                 f"(limit {limit}); use a smaller image")
        return valid

    def to_dict(self) -> dict:
        return {"name": self.name, "height": self.height, "width": self.width}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.to_dict().items() if k != "name")
        return f"{type(self).__name__}({args})"


class GroupParity(Rule):
    """Contiguous groups of G bits (flattened row-major) each hold an even number of ones.

    |valid set| = 2^(D - D/G). Sampling is exact and uniform: the first G-1 bits of each group are
    i.i.d. fair coins and the last bit makes the count even.
    """

    name = "parity"

    def __init__(self, height: int = 6, width: int | None = None, group: int = 3):
        super().__init__(height, height if width is None else width)
        self.G = int(group)
        if self.G < 1 or self.D % self.G != 0:
            divisors = [g for g in range(1, self.D + 1) if self.D % g == 0]
            raise TwoclocksError(f"group size G={group} must divide D={self.D} "
                                 f"({self.height}x{self.width}); valid G: {divisors}")

    @property
    def n_groups(self) -> int:
        return self.D // self.G

    @property
    def groups(self) -> np.ndarray:
        return np.arange(self.D).reshape(self.n_groups, self.G)

    @property
    def constraint_names(self) -> list[str]:
        return [f"group{i}" for i in range(self.n_groups)]

    @property
    def valid_set_size(self) -> int:
        return 2 ** (self.D - self.n_groups)

    @property
    def determined_positions(self) -> np.ndarray:
        """Closed form: the last bit of each group (its parity is fixed); with G = 1 every bit (0)."""
        det = np.zeros(self.D, dtype=bool)
        det[self.G - 1::self.G] = True
        return det

    def sample(self, n, rng):
        b = rng.integers(0, 2, size=(n, self.n_groups, self.G), dtype=np.uint8)
        b[:, :, -1] = b[:, :, :-1].sum(axis=2) % 2
        return b.reshape(n, self.D)

    def constraints(self, cells):
        cells = np.asarray(cells).reshape(-1, self.n_groups, self.G)
        return (cells.sum(axis=2) % 2) == 0

    def to_dict(self):
        return {**super().to_dict(), "group": self.G}


RULES: dict[str, type[Rule]] = {"parity": GroupParity}


def make_rule(spec: dict) -> Rule:
    """Build a rule from its ``to_dict()`` form (as stored in config.json)."""
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in RULES:
        raise TwoclocksError(f"unknown rule {name!r}; choose one of {', '.join(RULES)}")
    try:
        return RULES[name](**spec)
    except TypeError as e:
        raise TwoclocksError(f"bad parameters for rule {name!r}: {e}") from None


def support_baseline(rule: Rule, n_train: int) -> float:
    """Sample memorization of a perfect model of the training distribution, which draws uniformly from
    the sampler's support: N / |support| (docs/science.md#samples); NaN when the size is unknown. The
    baseline of the adaptive memorization threshold (docs/science.md#clocks)."""
    size = rule.sampler_support_size
    return float(n_train / size) if size else float("nan")


def restricted_support(rule: Rule) -> bool:
    """Whether the rule's sampler draws from a strict subset of its valid set (by their sizes; where a size
    is unknown, whether the rule declares its own support)."""
    support, valid = rule.sampler_support_size, rule.valid_set_size
    if support is not None and valid is not None:
        return support < valid
    return type(rule).in_support is not Rule.in_support


def log2_valid_fraction(rule: Rule) -> float | None:
    n = rule.valid_set_size
    return None if n is None else math.log2(n) - rule.D * math.log2(rule.n_symbols)
