"""One way to write a cube: crash-safe pieces, compacted into one chunked zarr store.

A probe computes its cube piece by piece (a checkpoint step, or a step's missing keys) and hands each
piece to :meth:`CubeStore.write_piece`, which writes it as a small zarr store under
``RUN/probes/.NAME.parts/`` (temp name, then an atomic rename). :meth:`CubeStore.compact` merges the
cube already on disk with the pending pieces, checks the result against the probe's schema, stamps
provenance, writes ``RUN/probes/NAME.zarr`` through a temp store and a rename, and only then deletes
the pieces it merged. So the data exists once at rest (no lasting second copy), and a kill at any
moment leaves either the old cube plus pieces or the new cube (plus pieces it already holds, merged
again harmlessly): the next call completes it and the result equals an uninterrupted run.

Cubes are zarr format 3 with consolidated metadata, chunked for reading: along ``step`` so that a chunk
holds about :data:`CHUNK_BYTES` (many steps per chunk), whole along every other dimension.
Cubes written by older versions (zarr format 2, one chunk per step) open as they are.

Provenance attrs of every cube (probe or derived): ``probe``, ``probe_params`` (JSON; the options that
define the cube, checked on every call), ``twoclocks_version``, ``created_at``, ``source_steps``,
``environment`` (JSON, :func:`twoclocks.environment.environment`: torch, CUDA, device and its name,
precision and compile mode of the call that last assembled the cube) and the run's ``run_dir``,
``run_config``, ``run_config_status``, ``trained_with_version``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

import twoclocks
from twoclocks import TwoclocksError
from twoclocks.environment import environment

__all__ = ["CubeStore", "write_dataset", "open_cube", "write_derived", "provenance", "CHUNK_BYTES", "jsonable"]

CHUNK_BYTES = 4 << 20  # target bytes per chunk along `step`
#: identity entries added after twoclocks 0.1, with the value every older cube was computed with
LEGACY_PARAMS = {"precision": "fp32"}
ZARR_FORMAT = 3


def jsonable(v):
    """Numpy scalars/arrays, tuples and dicts as plain JSON-serialisable values."""
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, (np.ndarray, tuple, list)):
        return [jsonable(x) for x in list(v)]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return v


@contextlib.contextmanager
def _quiet_zarr():
    """zarr 3 warns that fixed-length strings and consolidated metadata are not (yet) in the zarr v3
    spec; twoclocks reads its own cubes with the same library, so these are noise to a user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message=".*Consolidated metadata is currently not part.*")
        yield


def _encoding(ds: xr.Dataset, chunk_bytes: int = CHUNK_BYTES) -> dict:
    """Chunks along ``step`` of about ``chunk_bytes`` per variable; whole along other dims."""
    enc = {}
    for name, da in ds.variables.items():
        if da.ndim == 0 or da.dtype.kind in "UO":
            continue
        if "step" in da.dims and name != "step":
            per_step = max(1, da.nbytes // max(1, da.sizes["step"]))
            n = int(min(da.sizes["step"], max(1, chunk_bytes // per_step)))
            enc[name] = {"chunks": tuple(n if d == "step" else da.sizes[d] for d in da.dims)}
        else:
            enc[name] = {"chunks": tuple(max(1, s) for s in da.shape)}
    return enc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _discard(path: Path) -> None:
    """Delete a store so that a kill mid-way never leaves a half-deleted one under its name: rename it
    to a hidden trash name first (atomic), then delete that."""
    if not path.exists():
        return
    trash = path.with_name(f".{path.name}.{os.getpid()}.trash")
    path.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)


def _clean_dir(folder: Path) -> None:
    """Finish what a killed writer left in ``folder``: a store moved aside (``.NAME.old``) whose
    replacement is not in place comes back; half-deleted stores and temp stores of dead processes go."""
    if not folder.is_dir():
        return
    for p in folder.glob(".*"):
        parts = p.name.split(".")
        if p.suffix == ".old":
            live = folder / p.name[1:-len(".old")]
            if live.exists():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.rename(live)
        elif p.suffix in (".tmp", ".trash") and parts[-2].isdigit() and not _alive(int(parts[-2])):
            shutil.rmtree(p, ignore_errors=True)


def _recover(path: Path) -> None:
    _clean_dir(Path(path).parent)


def write_dataset(ds: xr.Dataset, path: Path, chunk_bytes: int = CHUNK_BYTES) -> None:
    """Write ``ds`` to ``path`` atomically: a temp store, then a rename (the old store is replaced).
    Loads ``ds`` first, so it may be a lazy view of the store it replaces."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    ds = ds.load()
    for v in ds.variables.values():
        v.encoding = {}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet_zarr():
        ds.to_zarr(tmp, mode="w", zarr_format=ZARR_FORMAT, consolidated=True, encoding=_encoding(ds, chunk_bytes))
    old = path.with_name(f".{path.name}.old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def open_cube(path, chunks=None) -> xr.Dataset:
    """Open a cube lazily (zarr format 3, or 2 as written by twoclocks < 0.2): values are read when
    used. ``chunks``: as for ``xarray.open_zarr`` (e.g. ``{}`` for dask arrays of the stored chunks)."""
    path = Path(path)
    _recover(path)
    if not path.exists():
        raise TwoclocksError(f"{path} does not exist; run the probe that writes it first")
    with _quiet_zarr():
        try:
            return xr.open_zarr(path, consolidated=True, chunks=chunks)
        except (KeyError, ValueError, FileNotFoundError):
            return xr.open_zarr(path, consolidated=False, chunks=chunks)


def provenance(run, name: str, params: dict, steps) -> dict:
    """The provenance attrs every cube carries (module docstring)."""
    out = {"probe": name, "probe_params": json.dumps(jsonable(params), sort_keys=True),
           "twoclocks_version": twoclocks.__version__,
           "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "source_steps": json.dumps(jsonable(list(steps)) if steps is not None else []),
           "environment": json.dumps(environment("cpu"))}  # a probe's call replaces it with its own (compact)
    if run is not None:
        out.update(run.provenance())
    return out


def write_derived(ds: xr.Dataset, path, schema=None, run=None, name: str | None = None, params: dict | None = None,
                  steps=None) -> xr.Dataset:
    """The one writer of derived cubes (clocks, markov, collect): schema check and attrs, provenance,
    atomic write. Returns the Dataset as written."""
    if schema is not None:
        ds = schema.apply(ds)
        name = name or schema.name
    if steps is None and "step" in ds.coords:
        steps = ds["step"].values
    prov = provenance(run, name or Path(path).stem, params or {}, steps)
    if steps is None and "source_steps" in ds.attrs:  # a cross-run cube names its sources itself
        prov.pop("source_steps")
    ds = ds.assign_attrs(prov)
    write_dataset(ds, path)
    return ds


class CubeStore:
    """The cube ``RUN/probes/NAME.zarr`` of one probe on one run, with its pending pieces.

    ``params``: the options that define the cube; a stored cube (or pieces) computed with other
    options is refused with a one-line error unless ``force`` (which deletes both)."""

    def __init__(self, run, name: str, params: dict, force: bool = False):
        self.run, self.name = run, name
        self.params = jsonable(params)
        self.path = run.probe_path(name)
        self.parts = self.path.with_name(f".{name}.parts")
        _recover(self.path)
        if force:
            _discard(self.parts)
            _discard(self.path)
        _clean_dir(self.parts)
        self._check_params()

    # ---- identity
    def _stored_params(self):
        pfile = self.parts / "params.json"
        if pfile.exists():
            return json.loads(pfile.read_text())
        if self.path.exists():
            raw = open_cube(self.path).attrs.get("probe_params")
            return json.loads(raw) if raw else None
        return None

    def _check_params(self) -> None:
        stored = self._stored_params()
        if stored is not None:  # cubes written before an option existed were computed with its old value
            stored = {**{k: v for k, v in LEGACY_PARAMS.items() if k in self.params}, **stored}
        if stored is None or stored == self.params:
            return
        diff = sorted(k for k in set(stored) | set(self.params) if stored.get(k) != self.params.get(k))
        raise TwoclocksError(
            f"{self.path.name} was computed with other options ({', '.join(diff)}: "
            f"{[stored.get(k) for k in diff]} now {[self.params.get(k) for k in diff]}); "
            "re-run with --force to recompute it with the new ones")

    # ---- reading
    def existing(self) -> xr.Dataset | None:
        """The stored cube, loaded (None if there is none)."""
        return open_cube(self.path).load() if self.path.exists() else None

    def piece_keys(self) -> list[str]:
        if not self.parts.is_dir():
            return []
        return sorted(p.name[:-5] for p in self.parts.iterdir() if p.name.endswith(".zarr")
                      and not p.name.startswith("."))

    def pieces(self, keys=None) -> list[xr.Dataset]:
        out = []
        for k in (self.piece_keys() if keys is None else keys):
            with open_cube(self.parts / f"{k}.zarr") as ds:
                out.append(ds.load())
        return out

    # ---- writing
    def write_piece(self, key: str, ds: xr.Dataset) -> None:
        """Store one computed piece (atomic). The first piece also records the cube's options."""
        self.parts.mkdir(parents=True, exist_ok=True)
        pfile = self.parts / "params.json"
        if not pfile.exists():
            tmp = pfile.with_name(f".params.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.params, indent=1, sort_keys=True))
            os.replace(tmp, pfile)
        write_dataset(ds, self.parts / f"{key}.zarr", chunk_bytes=1 << 30)

    def compact(self, merge, finalize=None, schema=None, attrs: dict | None = None) -> xr.Dataset | None:
        """Merge the stored cube with every pending piece (``merge(list of Datasets) -> Dataset``, the
        stored cube first), add derived variables (``finalize``), check the schema, stamp provenance,
        write the cube and delete the merged pieces. Returns the cube (None if there is nothing)."""
        keys = self.piece_keys()
        base = self.existing()
        if not keys:
            return base
        parts = ([] if base is None else [base]) + self.pieces(keys)
        ds = merge(parts)
        if finalize is not None:
            ds = finalize(ds)
        if schema is not None:
            ds = schema.apply(ds)
        steps = ds["step"].values if "step" in ds.coords else None
        ds.attrs.update(provenance(self.run, self.name, self.params, steps))
        if attrs:  # the call's own attrs (precision, environment) after the defaults
            ds.attrs.update(jsonable(attrs))
        write_dataset(ds, self.path)
        for k in keys:
            _discard(self.parts / f"{k}.zarr")
        if not self.piece_keys():
            _discard(self.parts)
        return open_cube(self.path)
