"""Encodings: integer cells (n, D) <-> model space (n, D * channels)."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from twoclocks import TwoclocksError

__all__ = ["Encoding", "BinaryEncoding", "ScalarEncoding", "OneHotEncoding", "ENCODINGS",
           "make_encoding"]


class Encoding(ABC):
    """Map integer cells (n, D) to model space (n, D * channels) and back."""

    name: str = "?"
    channels: int = 1

    def __init__(self, n_symbols: int):
        self.n_symbols = n_symbols

    @abstractmethod
    def encode(self, cells: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def decode(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def qdist(self, x: np.ndarray) -> np.ndarray:
        """(n,) L-inf distance of each sample to the nearest valid code (a cube vertex for binary)."""

    @property
    def codes(self) -> np.ndarray:
        """(n_symbols, channels) float64: the model-space code of each symbol (row k = cell value k).
        A cell's model-space values are always one of these rows; the exact reference denoisers
        (``twoclocks.ideal``) work from them, so they are exact for every encoding."""
        return self.encode(np.arange(self.n_symbols)[:, None]).astype(np.float64).reshape(
            self.n_symbols, self.channels)

    def to_dict(self) -> dict:
        return {"name": self.name}


class BinaryEncoding(Encoding):
    """Bits b in {0,1} -> x = 2b - 1 in {-1,+1}; decode b = x > 0; q(x) = max_i ||x_i| - 1|."""

    name = "binary"

    def __init__(self, n_symbols: int = 2):
        if n_symbols != 2:
            raise TwoclocksError(f"the binary encoding needs 2 symbols, the rule has {n_symbols}; "
                                 "use --encoding scalar or onehot")
        super().__init__(2)

    def encode(self, cells):
        return (2.0 * np.asarray(cells, dtype=np.float32) - 1.0).astype(np.float32)

    def decode(self, x):
        return (np.asarray(x) > 0).astype(np.uint8)

    def qdist(self, x):
        x = np.asarray(x)
        return np.abs(np.abs(x) - 1.0).max(axis=1)


class ScalarEncoding(Encoding):
    """Symbol s in {0..K-1} -> one channel x = -1 + 2 s / (K-1) (levels evenly spaced in [-1, 1]).

    decode: snap to the nearest level, s = clip(round((x + 1) (K-1) / 2), 0, K-1);
    q(x) = max_i |x_i - level(s_i)|, the L-inf distance to the nearest grid of levels.
    For K = 2 this is the binary encoding."""

    name = "scalar"

    def __init__(self, n_symbols: int):
        if n_symbols < 2:
            raise TwoclocksError(f"the scalar encoding needs at least 2 symbols, got {n_symbols}")
        super().__init__(int(n_symbols))

    def encode(self, cells):
        return (np.asarray(cells, dtype=np.float64) * (2.0 / (self.n_symbols - 1)) - 1.0
                ).astype(np.float32)

    def decode(self, x):
        s = np.rint((np.asarray(x, dtype=np.float64) + 1.0) * ((self.n_symbols - 1) / 2.0))
        return np.clip(s, 0, self.n_symbols - 1).astype(np.uint8)

    def qdist(self, x):
        x = np.asarray(x, dtype=np.float64)
        return np.abs(x - self.encode(self.decode(x))).max(axis=1)


class OneHotEncoding(Encoding):
    """Symbol s in {0..K-1} -> K channels e_s (1 at the symbol, 0 elsewhere); with ``zero_mean``
    every entry is shifted by -1/K (so each cell's K-vector sums to 0).

    Model-space layout is cell-major: x[:, d*K + k] is channel k of cell d. decode: argmax over each
    cell's K channels. q(x) = max_d min_k ||x_d - code_k||_inf, the L-inf distance of each cell's
    K-vector to the nearest one-hot code, maximized over cells."""

    name = "onehot"

    def __init__(self, n_symbols: int, zero_mean: bool = False):
        if n_symbols < 2:
            raise TwoclocksError(f"the one-hot encoding needs at least 2 symbols, got {n_symbols}")
        super().__init__(int(n_symbols))
        self.channels = self.n_symbols
        self.zero_mean = bool(zero_mean)
        self.offset = 1.0 / self.n_symbols if self.zero_mean else 0.0

    def encode(self, cells):
        cells = np.asarray(cells)
        x = (cells[..., None] == np.arange(self.n_symbols)).astype(np.float64) - self.offset
        return x.reshape(cells.shape[0], -1).astype(np.float32)

    def _cells(self, x):
        x = np.asarray(x, dtype=np.float64)
        return x.reshape(x.shape[0], -1, self.n_symbols)

    def decode(self, x):
        return self._cells(x).argmax(axis=2).astype(np.uint8)

    def qdist(self, x):
        u = self._cells(x) + self.offset                          # back to the 0/1 codes
        a = np.abs(u)                                             # distance to 0 per channel
        top2 = np.sort(a, axis=2)[..., -2:]                       # two largest |u_j|
        others = np.where(a >= top2[..., 1:], top2[..., :1], top2[..., 1:])   # max_{j != k} |u_j|
        dist = np.maximum(np.abs(u - 1.0), others).min(axis=2)    # min over codes e_k
        return dist.max(axis=1)

    def to_dict(self):
        return {**super().to_dict(), "zero_mean": self.zero_mean}


ENCODINGS: dict[str, type[Encoding]] = {"binary": BinaryEncoding, "scalar": ScalarEncoding,
                                        "onehot": OneHotEncoding}


def make_encoding(name: str, n_symbols: int, **kw) -> Encoding:
    if name not in ENCODINGS:
        raise TwoclocksError(f"unknown encoding {name!r}; choose one of {', '.join(ENCODINGS)}")
    try:
        return ENCODINGS[name](n_symbols, **kw)
    except TypeError as e:
        raise TwoclocksError(f"bad options for encoding {name!r}: {e}") from None


