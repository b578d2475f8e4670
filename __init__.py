"""twoclocks: when does a generative model learn a rule, and when does it memorize?

Layout: ``twoclocks.data`` (rules and splits), ``twoclocks.training`` (DiT/GPT, EDM, trainer),
``twoclocks.ideal`` (exact reference denoisers), ``twoclocks.run`` (open a run directory),
``twoclocks.probes`` and ``twoclocks.landscape`` (analyses writing xarray/zarr cubes).
"""
#: the version stamped on every cube (``twoclocks_version``); pyproject.toml declares the same (a test checks),
#: so a checkout whose installed metadata is older still stamps the version of the code that ran
__version__ = "0.3.0"


class TwoclocksError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it (one line)."""
