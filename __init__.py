"""twoclocks: when does a generative model learn a rule, and when does it memorize?

Layout: ``twoclocks.data`` (rules and splits), ``twoclocks.training`` (DiT/GPT, EDM, trainer),
``twoclocks.ideal`` (exact reference denoisers), ``twoclocks.run`` (open a run directory),
``twoclocks.probes`` and ``twoclocks.landscape`` (analyses writing xarray/zarr cubes).
"""
from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("twoclocks")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0+unknown"


class TwoclocksError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it (one line)."""
