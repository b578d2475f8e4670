"""One way to write a probe cube: crash-safe parts, assembled into one zarr store.

A probe computes its cube piece by piece (one checkpoint step, or one (step, anchor, sigma) key) and
hands each piece to :meth:`Cube.write`, which stores it as its own small zarr store, written to a temp
name and renamed (atomic). ``RUN/probes/NAME.zarr`` is then (re)assembled from all pieces, again
through a temp store and a rename. So an interrupted probe never leaves a corrupt cube: the next call
sees which pieces exist, computes only the missing ones, and assembles. The probe options that define
the cube live in ``.NAME.parts/params.json``; running again with different options is refused unless
``--force`` (which discards the old pieces).

Every assembled cube carries provenance in its attrs: the probe and its options, the run's config,
the package version, the source checkpoint steps and the creation time.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from pathlib import Path

import numpy as np
import xarray as xr

import twoclocks
from twoclocks import TwoclocksError

__all__ = ["Cube", "write_dataset", "open_cube"]

ZARR_KW = dict(zarr_format=2, consolidated=True)


def write_dataset(ds: xr.Dataset, path: Path) -> None:
    """Write ``ds`` to ``path`` atomically (temp store + rename; the old store is replaced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ds.to_zarr(tmp, mode="w", **ZARR_KW)
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def open_cube(path) -> xr.Dataset:
    path = Path(path)
    if not path.exists():
        raise TwoclocksError(f"{path} does not exist; run the probe that writes it first")
    return xr.open_zarr(path, consolidated=True)


def _jsonable(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.ndarray, tuple)):
        return [_jsonable(x) for x in list(v)]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


class Cube:
    """The pieces of one probe's cube for one run (see the module docstring)."""

    def __init__(self, run, name: str, params: dict, force: bool = False):
        self.run, self.name = run, name
        self.params = _jsonable(params)
        self.path = run.probe_path(name)
        self.parts = self.path.with_name(f".{name}.parts")
        if force:
            shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True, exist_ok=True)
        pfile = self.parts / "params.json"
        if pfile.exists():
            stored = json.loads(pfile.read_text())
            if stored != self.params:
                diff = sorted(k for k in set(stored) | set(self.params) if stored.get(k) != self.params.get(k))
                raise TwoclocksError(
                    f"{self.path.name} was computed with other options ({', '.join(diff)}: "
                    f"{[stored.get(k) for k in diff]} vs {[self.params.get(k) for k in diff]}); "
                    "re-run with --force to recompute it with the new ones")
        else:
            pfile.write_text(json.dumps(self.params, indent=1))

    def done(self) -> set[str]:
        return {p.name[:-5] for p in self.parts.iterdir() if p.name.endswith(".zarr") and not p.name.startswith(".")}

    def write(self, key: str, ds: xr.Dataset) -> None:
        write_dataset(ds, self.parts / f"{key}.zarr")

    def pieces(self) -> list[xr.Dataset]:
        return [xr.open_zarr(self.parts / f"{k}.zarr", consolidated=True).load() for k in sorted(self.done())]

    def assemble(self, combine=None, steps=None, extra_attrs: dict | None = None,
                 finalize=None) -> xr.Dataset | None:
        """Combine all pieces (default: concatenate along ``step``), add provenance and write the cube.
        ``finalize(ds) -> ds`` may add derived variables (summaries over steps) before writing."""
        pieces = self.pieces()
        if not pieces:
            return None
        if combine is None:
            ds = xr.concat(pieces, dim="step", data_vars="minimal", coords="minimal",
                           compat="override", join="outer").sortby("step")
        else:
            ds = combine(pieces)
        if finalize is not None:
            ds = finalize(ds)
        if steps is None and "step" in ds.coords:
            steps = ds["step"].values
        ds.attrs.update(self.provenance(steps))
        if extra_attrs:
            ds.attrs.update(_jsonable(extra_attrs))
        write_dataset(ds, self.path)
        return ds

    def provenance(self, steps) -> dict:
        return {
            "probe": self.name,
            "probe_params": json.dumps(self.params),
            "twoclocks_version": twoclocks.__version__,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source_steps": json.dumps(_jsonable(list(steps)) if steps is not None else []),
            **self.run.provenance(),
        }
