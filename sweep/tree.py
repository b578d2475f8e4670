"""A sweep as one :class:`xarray.DataTree`: a group per run, in it a group per cube."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.run import open_run
from twoclocks.rundir import is_run
from twoclocks.store import open_cube
from twoclocks.sweep.state import COLLECT_STORE, read_sweep

__all__ = ["tree"]


def tree(sweep_dir, chunks=None, collect: bool = True) -> xr.DataTree:
    """The cubes of a sweep as one DataTree: ``tree[RUN][CUBE]`` is ``SWEEP_DIR/RUN/probes/CUBE.zarr``
    (each run's group is :meth:`twoclocks.run.Run.tree`, with its grid point as attr ``point``, JSON),
    and ``tree["collect"]`` the cross-run Dataset when ``collect.zarr`` exists and ``collect`` is True.
    Runs of sweep.json not created yet are left out (attr ``missing_runs``, JSON). ``chunks``: None
    (default) gives lazy dask arrays of the stored chunks (needs dask: ``pip install twoclocks[sweep]``),
    otherwise as for :func:`twoclocks.store.open_cube` (e.g. ``{"step": 64}``)."""
    sweep_dir = Path(sweep_dir)
    if chunks is None:
        if importlib.util.find_spec("dask") is None:
            raise TwoclocksError("sweep.tree opens the cubes lazily, which needs dask: pip install dask (or "
                                 "twoclocks[sweep])")
        chunks = {}
    spec, runs = read_sweep(sweep_dir)
    have = [r for r in runs if is_run(sweep_dir / r["name"])]
    attrs = {"sweep_dir": str(sweep_dir.resolve()), "sweep_spec": json.dumps(spec.to_dict()),
             "missing_runs": json.dumps([r["name"] for r in runs if r not in have])}
    root = xr.DataTree(xr.Dataset(attrs=attrs), name=sweep_dir.name)
    for r in have:
        node = open_run(sweep_dir / r["name"]).tree(chunks)
        node.attrs["point"] = json.dumps(r["point"])
        root[r["name"]] = node
    if collect and (sweep_dir / COLLECT_STORE).exists():
        root["collect"] = xr.DataTree(open_cube(sweep_dir / COLLECT_STORE, chunks))
    return root
