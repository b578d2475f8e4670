"""Every name a module lists in ``__all__`` exists in it (a stale entry breaks ``from M import *``)."""
from __future__ import annotations

import importlib
import pkgutil

import twoclocks


def test_every_name_in_all_exists():
    missing = []
    for info in pkgutil.walk_packages(twoclocks.__path__, "twoclocks."):
        parts = info.name.split(".")
        if parts[-1] == "__main__" or parts[1] in ("tests", "benchmarks", "examples"):
            continue
        module = importlib.import_module(info.name)
        missing += [f"{info.name}.{name}" for name in getattr(module, "__all__", ()) if not hasattr(module, name)]
    assert not missing, f"names in __all__ that do not exist: {missing}"
