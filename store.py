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

Integrity: every array's chunks end with a crc32c checksum (zarr 3's ``crc32c`` codec after the
compressor), so a changed byte is detected when the chunk is read. :func:`open_cube` reads and checks
the whole cube and raises :class:`DamagedError` (a one-line :class:`twoclocks.TwoclocksError`) naming
the store and the command that recomputes it. The probe that owns a cube heals it
(:meth:`CubeStore.heal`): the damaged store is moved aside to ``NAME.zarr.damaged-TIMESTAMP`` (nothing is
deleted), the steps of every damaged chunk are dropped from the cube (a damaged piece is moved aside the
same way), and the next call computes them again as missing steps; damaged metadata (the root
``zarr.json``), a damaged coordinate or a damaged array without a ``step`` dim make the whole cube
missing. Every chunk is written, even one that holds only the fill value (``write_empty_chunks``), and
the store says so (:data:`COMPLETE_ATTR`), so a deleted chunk file is damage too, never read silently
as fill values. A lazy open (``open_cube(path, chunks={})``) checks each chunk when it is computed and
raises the same :class:`DamagedError`. A write that fails (a full disk) leaves no temporary store
behind; a full disk is a one-line error (:func:`disk_full`).

Provenance attrs of every cube (probe or derived): ``probe``, ``probe_params`` (JSON; the options that
define the cube, checked on every call), ``twoclocks_version``, ``created_at``, ``source_steps``,
``environment`` (JSON, :func:`twoclocks.environment.environment`: torch, CUDA, device and its name,
precision and compile mode of the call that last assembled the cube) and the run's ``run_dir``,
``run_config``, ``run_config_status``, ``trained_with_version``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

import twoclocks
from twoclocks import TwoclocksError
from twoclocks.environment import environment
from twoclocks.schema import SchemaError

__all__ = ["CubeStore", "concat_steps", "load_checked", "check_piece", "keyed_todo", "keyed_piece", "keyed_merge", "keyed_select", "complete_along", "fill_value", "jobs", "MASK", "stale_steps", "step_versions", "write_dataset", "open_cube", "check_store", "write_derived", "provenance", "CHUNK_BYTES",
           "jsonable", "metadata_problem", "fix_hint", "DamagedError", "disk_full", "write_text_atomic", "note", "is_disk_full", "move_aside", "alive", "remove_stale_tmp",
           "READ_ERRORS", "missing_chunks", "COMPLETE_ATTR"]

CHUNK_BYTES = 4 << 20  # target bytes per chunk along `step`
#: root attr of a store whose every chunk was written (a missing chunk file is then damage); absent in
#: stores written by twoclocks <= 0.2, where a chunk of fill values may legitimately be absent
COMPLETE_ATTR = "_twoclocks_all_chunks_written"
#: identity entries added after twoclocks 0.1, with the value every older cube was computed with
LEGACY_PARAMS = {"precision": "fp32"}
ZARR_FORMAT = 3
#: what reading a damaged store raises (zarr: checksum mismatch ValueError, codec RuntimeError, bad
#: JSON ValueError, a missing file OSError / KeyError)
READ_ERRORS = (ValueError, RuntimeError, OSError, KeyError, EOFError, TypeError)


class DamagedError(TwoclocksError):
    """A stored file that cannot be read back as written (checksum mismatch, undecodable chunk,
    unreadable metadata). ``path``: the file or store."""

    def __init__(self, message: str, path=None, reason: str = ""):
        super().__init__(message)
        self.path, self.reason = path, reason


def is_disk_full(e: BaseException) -> bool:
    """Whether ``e`` (or an exception it was raised from) is a full disk or an exceeded quota."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(e, RuntimeError) and "No space left on device" in str(e):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def disk_full(path, rerun: str = "rerun") -> TwoclocksError:
    """The one-line error of a write that met a full disk."""
    return TwoclocksError(f"no space left on device writing {path}; finished work is kept: free space and {rerun}")


def _reason(e: BaseException) -> str:
    text = (str(e).strip().splitlines() or [""])[0][:160]
    if "computed checksum do not match" in text:
        return "crc32c checksum mismatch"
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%dT%H%M%S")


def move_aside(path: Path) -> Path:
    """Rename a damaged file or store to ``NAME.damaged-TIMESTAMP`` beside it (kept for inspection,
    ignored by every reader); returns the new path."""
    path = Path(path)
    target = path.with_name(f"{path.name}.damaged-{_stamp()}")
    n = 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.damaged-{_stamp()}-{n}"), n + 1
    path.rename(target)
    return target


def note(text: str) -> None:
    """A line for the user on stderr (what was healed)."""
    print(text, file=sys.stderr, flush=True)


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
def _quiet_zarr(reading: bool = False):
    """zarr 3 notes that consolidated metadata is not (yet) in the zarr v3 spec; twoclocks reads its own
    cubes with the same library, so that is noise to a user. ``reading``: also quiet the note on the
    fixed-length strings of cubes written by twoclocks 0.3.0.dev (never written any more: labels are
    stored as zarr v3 ``string``, :func:`_vlen_strings`)."""
    with warnings.catch_warnings():
        if reading:
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message=".*Consolidated metadata is currently not part.*")
        yield


def _vlen_strings(ds: xr.Dataset) -> xr.Dataset:
    """Text arrays (numpy ``<U``) as object arrays, which zarr 3 stores in its specified variable-length
    ``string`` data type (not the unspecified fixed-length one)."""
    fix = {n: v for n, v in ds.variables.items() if v.dtype.kind in "UT"}
    if not fix:
        return ds
    new = {n: xr.Variable(v.dims, np.asarray(v.values).astype(object), v.attrs) for n, v in fix.items()}
    ds = ds.assign_coords({n: v for n, v in new.items() if n in ds.coords})
    return ds.assign({n: v for n, v in new.items() if n not in ds.coords})


def _decode_strings(ds: xr.Dataset) -> xr.Dataset:
    """Text arrays read back (numpy's variable-width ``StringDType`` or objects) as ``<U``, as written."""
    fix = {n: v for n, v in ds.variables.items() if v.dtype.kind in "TO"}
    if not fix:
        return ds
    new = {n: xr.Variable(v.dims, np.asarray(v.values).astype(object).astype(str), v.attrs, encoding=v.encoding)
           for n, v in fix.items()}
    ds = ds.assign_coords({n: v for n, v in new.items() if n in ds.coords})
    return ds.assign({n: v for n, v in new.items() if n not in ds.coords})


def _encoding(ds: xr.Dataset, chunk_bytes: int = CHUNK_BYTES, checksum: bool = True) -> dict:
    """Chunks along ``step`` of about ``chunk_bytes`` per variable; whole along other dims. With
    ``checksum`` every array's chunks are zstd-compressed then end with a crc32c checksum."""
    enc = {}
    for name, da in ds.variables.items():
        if checksum:
            enc[name] = {"compressors": (ZstdCodec(level=0), Crc32cCodec())}
        if da.ndim == 0 or da.dtype.kind in "UO":
            continue
        if "step" in da.dims and name != "step":
            per_step = max(1, da.nbytes // max(1, da.sizes["step"]))
            n = int(min(da.sizes["step"], max(1, chunk_bytes // per_step)))
            enc.setdefault(name, {})["chunks"] = tuple(n if d == "step" else da.sizes[d] for d in da.dims)
        else:
            enc.setdefault(name, {})["chunks"] = tuple(max(1, s) for s in da.shape)
    return enc


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
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
        elif p.suffix in (".tmp", ".trash") and parts[-2].isdigit() and not alive(int(parts[-2])):
            shutil.rmtree(p, ignore_errors=True)


def _recover(path: Path) -> None:
    _clean_dir(Path(path).parent)
    _rollback(Path(path))


def remove_stale_tmp(folder) -> list[Path]:
    """Delete the temporary files (``.NAME.PID.tmp``) that processes no longer alive left in
    ``folder`` (a crash or a full disk mid-write); returns them."""
    folder, gone = Path(folder), []
    if not folder.is_dir():
        return gone
    for p in folder.glob(".*.tmp"):
        parts = p.name.split(".")
        if len(parts) >= 3 and parts[-2].isdigit() and not alive(int(parts[-2])):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            gone.append(p)
    return gone


def write_text_atomic(path, text: str) -> None:
    """Text to a temp file beside ``path``, then a rename over it; a failed write leaves no temp
    file (a full disk: a one-line error)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path) from None
        raise


def write_dataset(ds: xr.Dataset, path: Path, chunk_bytes: int = CHUNK_BYTES, checksum: bool = True) -> None:
    """Write ``ds`` to ``path`` atomically: a temp store, then a rename (the old store is replaced).
    Loads ``ds`` first, so it may be a lazy view of the store it replaces. ``checksum``: crc32c per
    chunk (module docstring; off only to measure its cost). A failed write removes its temp store; a
    full disk is a one-line error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _recover(path)
    ds = _vlen_strings(ds.load())
    for v in ds.variables.values():
        v.encoding = {}
    ds = ds.assign_attrs({COMPLETE_ATTR: 1})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with _quiet_zarr():
            ds.to_zarr(tmp, mode="w", zarr_format=ZARR_FORMAT, consolidated=True, write_empty_chunks=True,
                       encoding=_encoding(ds, chunk_bytes, checksum))
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if is_disk_full(e):
            raise disk_full(path) from None
        raise
    old = path.with_name(f".{path.name}.old")
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _open_lazy(path: Path, chunks=None) -> xr.Dataset:
    """The store's Dataset, values not read; its :data:`COMPLETE_ATTR` moved to ``ds.encoding``."""
    with _quiet_zarr(reading=True):
        try:
            ds = xr.open_zarr(path, consolidated=True, chunks=chunks)
        except (KeyError, ValueError, FileNotFoundError):
            ds = xr.open_zarr(path, consolidated=False, chunks=chunks)
        ds = _decode_strings(ds)
    if ds.attrs.pop(COMPLETE_ATTR, None):
        ds.encoding[COMPLETE_ATTR] = True
    return ds


def _chunk_keys(arr, axis: int | None = None, lo: int = 0, hi: int | None = None):
    """The chunk keys of zarr array ``arr`` (only the chunks of items ``lo:hi`` along ``axis``)."""
    grid = [range(-(-n // c)) for n, c in zip(arr.shape, arr.chunks)]
    if axis is not None:
        c = arr.chunks[axis]
        grid[axis] = range(lo // c, -(-(arr.shape[axis] if hi is None else hi) // c))
    for idx in np.ndindex(*[len(g) for g in grid]) if grid else [()]:
        yield arr.metadata.encode_chunk_key(tuple(g[i] for g, i in zip(grid, idx)))


def missing_chunks(path, name: str) -> list[str]:
    """The chunk files of array ``name`` absent from a complete store (:data:`COMPLETE_ATTR`)."""
    path = Path(path)
    with _quiet_zarr(reading=True):
        arr = zarr.open_array(str(path / name), mode="r")
    return [k for k in _chunk_keys(arr) if not (path / name / k).exists()]


class MissingChunk(ValueError):
    """A chunk file absent from a store that wrote every chunk (one of :data:`READ_ERRORS`)."""


def _check_complete(path: Path, ds: xr.Dataset, names=None) -> None:
    if not ds.encoding.get(COMPLETE_ATTR):
        return
    for name in names if names is not None else ds.variables:
        gone = missing_chunks(path, name)
        if gone:
            raise MissingChunk(f"chunk {name}/{gone[0]} is missing")


class _Checked:
    """A lazily indexed variable whose reads raise :class:`DamagedError` naming the store."""

    def __init__(self, var: xr.Variable, path: Path, name: str, complete: bool):
        self.var, self.path, self.name, self.complete = var, path, name, complete
        self.shape, self.dtype, self.ndim = var.shape, var.dtype, var.ndim

    def __getitem__(self, key):
        try:
            if self.complete:
                self._check(key)
            return np.asarray(self.var[key].values)
        except READ_ERRORS as e:
            raise DamagedError(f"{self.path} is damaged ({_reason(e)}); {fix_hint(self.path)}", self.path,
                               _reason(e)) from None

    def _check(self, key):
        with _quiet_zarr(reading=True):
            arr = zarr.open_array(str(self.path / self.name), mode="r")
        key = key if isinstance(key, tuple) else (key,)
        ranges = [k.indices(n)[:2] if isinstance(k, slice) else (0, n) for k, n in zip(key, self.shape)]
        grid = [range(lo // c, -(-hi // c)) for (lo, hi), c in zip(ranges, arr.chunks)]
        for idx in np.ndindex(*[len(g) for g in grid]) if grid else [()]:
            k = arr.metadata.encode_chunk_key(tuple(g[i] for g, i in zip(grid, idx)))
            if not (self.path / self.name / k).exists():
                raise MissingChunk(f"chunk {self.name}/{k} is missing")


def _guarded(path: Path, chunks) -> xr.Dataset:
    """``open_zarr(chunks=chunks)`` whose dask arrays read through :class:`_Checked`."""
    import dask.array as da  # dask: only for lazy opens
    ds = _open_lazy(path, chunks)
    lazy = _open_lazy(path, None)
    complete = bool(ds.encoding.get(COMPLETE_ATTR))
    out = {}
    for name, var in ds.variables.items():
        if name in ds.indexes or not isinstance(var.data, da.Array):
            continue
        data = da.from_array(_Checked(lazy[name].variable, path, name, complete), chunks=var.data.chunks,
                             name=False, asarray=False)
        out[name] = var.copy(data=data)
    ds = ds.assign(out) if out else ds
    return ds


def fix_hint(path: Path) -> str:
    """How to recompute a damaged store: its probe's command for ``RUN/probes/NAME.zarr``."""
    if path.parent.name == "probes":
        name = path.name[:-len(".zarr")] if path.name.endswith(".zarr") else path.name
        base, _, ref = name.partition("-")
        cmd = base.replace("_", "-") + (f" --denoiser {ref}" if ref else "")
        return (f"run `twoclocks-probe {cmd} {path.parent.parent}` (the probe that writes it) to move it "
                "aside and recompute what is damaged")
    if path.name.startswith(".") or path.parent.name.endswith(".parts"):
        return "run the probe again to move it aside and recompute it"
    return "recompute it with the command that wrote it (move the damaged store away first)"


def open_cube(path, chunks=None) -> xr.Dataset:
    """Open a cube (zarr format 3, or 2 as written by twoclocks < 0.2). ``chunks`` None (the default):
    every value is read now and its checksum checked, so a damaged cube is a :class:`DamagedError`
    naming the store and how to recompute it, never data used silently. ``chunks``: as for
    ``xarray.open_zarr`` (e.g. ``{}`` for dask arrays of the stored chunks, read and checked when
    computed)."""
    path = Path(path)
    _recover(path)
    if not path.exists():
        raise TwoclocksError(f"{path} does not exist; run the probe that writes it first")
    try:
        if chunks is not None:
            return _guarded(path, chunks)
        ds = _open_lazy(path).load()
        _check_complete(path, ds)
        return ds
    except READ_ERRORS as e:
        raise DamagedError(f"{path} is damaged ({_reason(e)}); {fix_hint(path)}", path, _reason(e)) from None


def metadata_problem(path) -> str | None:
    """Why a store's metadata cannot be read (None: it can; cheap: values are not read)."""
    try:
        _open_lazy(Path(path))
    except READ_ERRORS as e:
        return _reason(e)
    return None


def check_store(path) -> tuple[xr.Dataset | None, list[str], set]:
    """Read a store chunk by chunk: ``(salvage, problems, bad_steps)``. ``problems``: one line per
    damaged part (empty: intact). ``salvage``: the readable cube without the steps of damaged chunks
    (loaded), or None when the metadata, a coordinate or an array without a ``step`` dim is damaged
    (or every step is). ``bad_steps``: the steps dropped."""
    path = Path(path)
    try:
        ds = _open_lazy(path)
    except READ_ERRORS as e:
        return None, [f"metadata: {_reason(e)}"], set()
    problems, bad_idx, whole = [], set(), False
    for name, var in ds.variables.items():
        try:
            var.load()
            _check_complete(path, ds, [name])
            continue
        except READ_ERRORS as e:
            reason = _reason(e)
        if "step" not in var.dims or name in ds.coords:
            problems.append(f"{name}: {reason}")
            whole = True
            continue
        idx = _bad_step_indices(path, name, var, ds.sizes["step"])
        steps = [int(s) for s in np.asarray(ds["step"].values)[sorted(idx)]] if "step" in ds.coords else []
        where = f"steps {steps[0]}..{steps[-1]}" if steps else "steps ?"
        problems.append(f"{name} ({where}): {reason}")
        if not idx:
            whole = True
        bad_idx |= idx
    if whole or not problems:
        return (None if whole else ds.load()), problems, set()
    n = ds.sizes["step"]
    keep = [i for i in range(n) if i not in bad_idx]
    bad_steps = {int(s) for s in np.asarray(ds["step"].values)[sorted(bad_idx)]}
    if not keep:
        return None, problems, bad_steps
    clean = ds.isel(step=keep)
    try:
        return clean.load(), problems, bad_steps
    except READ_ERRORS as e:
        return None, problems + [f"{_reason(e)}"], bad_steps


def _bad_step_indices(path: Path, name: str, var, n_steps: int) -> set:
    """Step indices of the unreadable chunks of array ``name`` (chunked along ``step``)."""
    try:
        with _quiet_zarr(reading=True):
            arr = zarr.open_array(str(path / name), mode="r")
        axis = list(var.dims).index("step")
        size = int(arr.chunks[axis])
    except READ_ERRORS:
        return set(range(n_steps))
    complete = bool(_open_lazy(path).encoding.get(COMPLETE_ATTR))
    bad = set()
    for lo in range(0, n_steps, size):
        sel = tuple(slice(lo, lo + size) if a == axis else slice(None) for a in range(arr.ndim))
        try:
            if complete and any(not (path / name / k).exists() for k in _chunk_keys(arr, axis, lo, lo + size)):
                raise MissingChunk(name)
            arr[sel]
        except READ_ERRORS:
            bad.update(range(lo, min(lo + size, n_steps)))
    return bad


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
    atomic write. Returns the Dataset as written; ``path`` None: as it would be written (nothing is)."""
    if schema is not None:
        ds = schema.apply(ds)
        name = name or schema.name
    if steps is None and "step" in ds.coords:
        steps = ds["step"].values
    prov = provenance(run, name or (Path(path).stem if path is not None else "derived"), params or {}, steps)
    if steps is None and "source_steps" in ds.attrs:  # a cross-run cube names its sources itself
        prov.pop("source_steps")
    ds = ds.assign_attrs(prov)
    if path is not None:
        write_dataset(ds, path)
    return ds


# ----------------------------------------------------------------------------- pieces checked when written
def check_piece(schema, ds, like: xr.Dataset | None = None, keys: tuple = (), what: str = "a piece") -> xr.Dataset:
    """``ds`` as a piece of a cube of ``schema``, checked before anything is written: a
    :class:`twoclocks.schema.SchemaError` (one line, naming the variable and what is wrong) for an
    undeclared array, other dims, another dtype kind or other units, a piece without ``step`` that holds
    per-step arrays, or a dim whose length (or coordinate values) differ from the cube's (``like``: the
    stored cube or an earlier piece; ``keys``: dims that may grow, those of a keyed cube). Derived
    arrays (:meth:`CubeSchema.derived`) are dropped: the store recomputes them."""
    if not isinstance(ds, xr.Dataset):
        raise SchemaError(f"{what} of cube {schema.name!r} must be an xarray.Dataset, got {type(ds).__name__}; "
                          "fix the probe's compute")
    ds = ds.drop_vars([v for v in schema.derived() if v in ds.variables])
    try:
        schema.check(ds)
    except SchemaError as e:
        raise SchemaError(f"{what}: {e}; nothing was written (fix the probe's compute)") from None
    stepped = [n for n in ds.data_vars if "step" in (schema.data_vars.get(n).dims if n in schema.data_vars else ())]
    if stepped and "step" not in ds.coords:
        raise SchemaError(f"{what} of cube {schema.name!r}: variable {stepped[0]!r} needs a 'step' coordinate "
                          "(a length-1 step dim); nothing was written (fix the probe's compute)")
    if like is not None:
        for name, var in ds.variables.items():
            for d in var.dims:
                if d == "step" or d in keys or d not in like.sizes:
                    continue
                if like.sizes[d] != ds.sizes[d]:
                    raise SchemaError(f"{what} of cube {schema.name!r}: variable {name!r} has {d} of length "
                                      f"{ds.sizes[d]}, the cube has {like.sizes[d]}; nothing was written "
                                      "(fix the probe's compute, or --force to recompute the cube)")
                if d in ds.coords and d in like.coords and not np.array_equal(
                        np.asarray(ds[d].values), np.asarray(like[d].values)):
                    raise SchemaError(f"{what} of cube {schema.name!r}: coordinate {d!r} differs from the cube's "
                                      "(other values); nothing was written (fix the probe's compute, or --force)")
    return ds


# ----------------------------------------------------------------------------- per-step cubes
def concat_steps(parts: list[xr.Dataset]) -> xr.Dataset:
    """The default merge of a per-checkpoint cube: concatenate along ``step``; a later part wins a step
    given twice; variables without a ``step`` dim are taken from the first part that has them."""
    seen, keep = set(), []
    loose = [p for p in parts if "step" not in p.dims]
    parts = [p for p in parts if "step" in p.dims]
    for p in reversed(parts):
        steps = [int(s) for s in p["step"].values]
        new = [i for i, s in enumerate(steps) if s not in seen]
        seen.update(steps)
        if new:
            keep.append(p.isel(step=new) if len(new) < len(steps) else p)
    keep.reverse()
    if not keep:
        return xr.merge(loose, combine_attrs="override") if loose else xr.Dataset()
    stepped = [p[[v for v in p.data_vars if "step" in p[v].dims]] for p in keep]
    ds = xr.concat(stepped, dim="step", data_vars="minimal", coords="minimal", compat="override",
                   join="outer", combine_attrs="override").sortby("step")
    for p in parts + loose:
        for name in p.data_vars:
            if "step" not in p[name].dims and name not in ds:
                ds[name] = p[name]
    return ds


def load_checked(ds: xr.Dataset, path) -> xr.Dataset:
    """``ds`` (a lazy view of the store at ``path``) with every value read and its checksum checked: a
    damaged chunk is a one-line :class:`DamagedError`."""
    try:
        return ds.load()
    except READ_ERRORS as e:
        raise DamagedError(f"{path} is damaged ({_reason(e)}); {fix_hint(Path(path))}", path, _reason(e)) from None


# ----------------------------------------------------------------------------- keyed cubes
#: the boolean variable over a keyed cube's keys that says which cells hold computed values
MASK = "computed"


def fill_value(dtype):
    """The value of a cell not computed: NaN (floats), False (booleans), -1 (signed ints), 0 (unsigned)."""
    dtype = np.dtype(dtype)
    return {"f": np.nan, "c": np.nan, "b": False, "i": -1, "u": 0}.get(dtype.kind, None)


def jobs(todo: dict) -> list[tuple]:
    """The (position along the second key, value of the third key) pairs of a todo {value: [positions]},
    in evaluation order."""
    return [(p, sg) for sg in sorted(todo) for p in todo[sg]]


def keyed_todo(existing, step: int, want: dict, keys: tuple):
    """For a keyed cube (``keys`` = ("step", A, B), e.g. step, anchor, sigma): ``{b: [positions into
    want[A]]}`` the cube lacks at ``step`` for the request ``want`` = {A: values, B: values} (None:
    complete). Reads only the keys and the ``computed`` mask."""
    _, ka, kb = keys
    everything = {b: list(range(len(want[ka]))) for b in want[kb]}
    if existing is None or "step" not in existing.dims:
        return everything
    steps = [int(s) for s in existing["step"].values]
    if int(step) not in steps:
        return everything
    if MASK in existing:
        comp = np.asarray(existing[MASK].sel(step=int(step)).transpose(ka, kb).values).astype(bool)
    else:  # a cube without the mask holds computed values everywhere
        comp = np.ones((existing.sizes[ka], existing.sizes[kb]), bool)
    have_a = {a.item() if hasattr(a, "item") else a: k for k, a in enumerate(np.asarray(existing[ka].values))}
    have_b = {float(b): k for k, b in enumerate(np.asarray(existing[kb].values))}
    ai = np.array([have_a.get(a, -1) for a in want[ka]])
    out = {}
    for b in want[kb]:
        j = have_b.get(float(b))
        ok = np.zeros(len(ai), bool) if j is None else (ai >= 0) & comp[np.maximum(ai, 0), j]
        missing = np.flatnonzero(~ok).tolist()
        if missing:
            out[b] = missing
    return out or None


def keyed_piece(step: int, a_values, todo: dict, values: dict, tail: dict, schema, keys: tuple,
                a_coords: dict | None = None, coords: dict | None = None) -> xr.Dataset:
    """One piece of a keyed cube (a length-1 ``step`` dim) holding the cells of ``todo`` ({b: [positions
    into a_values]}). ``values``: name -> array (n_jobs, *tail sizes) in :func:`jobs` order; ``tail``:
    the trailing dims of those arrays -> their coordinate values; ``a_coords``: name -> (dims, array over
    ``a_values``, first dim the second key); ``coords``: further coordinates as they are. Cells of the
    rectangle not in ``todo`` hold :func:`fill_value` and are False in the ``computed`` mask. Dtypes are
    the schema's."""
    _, ka, kb = keys
    pos = sorted({p for ps in todo.values() for p in ps})
    sig = sorted(todo)
    a_of, s_of = {p: k for k, p in enumerate(pos)}, {s: k for k, s in enumerate(sig)}
    order = jobs(todo)
    ja = np.array([a_of[p] for p, _ in order], np.int64)
    js = np.array([s_of[s] for _, s in order], np.int64)
    head = (1, len(pos), len(sig))
    mask = np.zeros(head, bool)
    mask[0, ja, js] = True
    data = {MASK: (keys, mask)}
    for name, v in values.items():
        v = np.asarray(v)
        dt = np.dtype(schema.data_vars[name].dtype)
        arr = np.full(head + v.shape[1:], fill_value(dt), dt)
        arr[0, ja, js] = v
        data[name] = (keys + tuple(tail), arr)
    c = {"step": ("step", np.array([int(step)], np.int64)),
         ka: (ka, np.asarray(a_values)[pos]),
         kb: (kb, np.asarray(sig, np.float64))}
    c.update({d: (d, np.asarray(vals)) for d, vals in tail.items()})
    for name, (dims, arr) in (a_coords or {}).items():
        c[name] = (dims, np.asarray(arr)[pos])
    c.update(coords or {})
    return xr.Dataset(data, coords=c)


def keyed_merge(schema, keys: tuple):
    """The merge of a keyed cube: the union over ``keys`` of the parts (the stored cube first, then the
    pieces), overlaying each part where its ``computed`` mask is True (a later part wins a cell computed
    twice: pieces merged again after an interrupted compaction change nothing).

    Variables over all keys are overlaid cell by cell, allocated with the schema's dtype and
    :func:`fill_value` (so int and bool arrays never turn float); variables over the second key without
    the others (e.g. the face of each anchor) are constants of it, later part wins; variables over
    ``step`` alone (``probe_version``) are per step, later part wins; other variables over some of the
    keys are derived and dropped (``finalize`` recomputes them); variables without any key come from
    the first part."""
    declared = {**schema.coords, **schema.data_vars}
    _, ka, _ = keys

    def dtype_of(name, fallback):
        spec = declared.get(name)
        return np.dtype(spec.dtype) if spec is not None and spec.dtype != "str" else fallback

    def merge(parts: list[xr.Dataset]) -> xr.Dataset:
        parts = [p for p in parts if all(k in p.dims for k in keys)]
        if not parts:
            return xr.Dataset()
        kv = {k: np.unique(np.concatenate([np.asarray(p[k].values) for p in parts])) for k in keys}
        shape = tuple(len(kv[k]) for k in keys)
        arrays, dims, as_coord, other = {}, {}, {}, {}
        attrs = {}
        for p in parts:
            attrs.update(p.attrs)
            idx = {k: np.searchsorted(kv[k], p[k].values) for k in keys}
            cells = np.ix_(*(idx[k] for k in keys))
            m = (p[MASK].transpose(*keys).values.astype(bool) if MASK in p.variables
                 else np.ones(tuple(p.sizes[k] for k in keys), bool))
            every = bool(m.all())
            for name, var in p.variables.items():
                if name in keys:
                    continue
                vd = var.dims
                if all(k in vd for k in keys):
                    rest = tuple(d for d in vd if d not in keys)
                    v = var.transpose(*keys, *rest).values
                    if name not in arrays:
                        dt = dtype_of(name, v.dtype)
                        arrays[name] = np.full(shape + v.shape[3:], fill_value(dt), dt)
                        dims[name], as_coord[name] = keys + rest, name in p.coords
                    if every:
                        arrays[name][cells] = v
                    else:
                        sub = arrays[name][cells]
                        sub[m] = v[m]
                        arrays[name][cells] = sub
                elif vd == ("step",) or (ka in vd and not any(k in vd for k in keys if k != ka)):
                    key = vd[0] if vd == ("step",) else ka
                    rest = tuple(d for d in vd if d != key)
                    v = var.transpose(key, *rest).values
                    if name not in arrays:
                        dt = dtype_of(name, v.dtype)
                        arrays[name] = np.full((len(kv[key]),) + v.shape[1:], fill_value(dt), dt)
                        dims[name], as_coord[name] = (key,) + rest, name in p.coords
                    arrays[name][idx[key]] = v
                elif not any(k in vd for k in keys) and name not in other:
                    other[name] = (var, name in p.coords)
                # else: derived over some of the keys (summaries): dropped, finalize recomputes it
        coords = {k: (k, kv[k]) for k in keys}
        data = {}
        for name, arr in arrays.items():
            (coords if as_coord[name] else data)[name] = (dims[name], arr)
        for name, (var, is_coord) in other.items():
            (coords if is_coord else data)[name] = var
        return xr.Dataset(data, coords=coords, attrs=attrs)
    return merge


def complete_along(ds: xr.Dataset, keys: tuple) -> np.ndarray:
    """The values of the second key computed at every (step, third key) of ``ds`` (all of them for a
    cube without the mask)."""
    _, ka, kb = keys
    if MASK not in ds:
        return np.asarray(ds[ka].values)
    full = ds[MASK].all(("step", kb)).values
    return np.asarray(ds[ka].values)[full]


def keyed_select(ds: xr.Dataset, steps, want: dict, drop=()) -> xr.Dataset:
    """The request (``steps`` x ``want`` = {key: values}) cut from a keyed cube, loaded, without the
    mask (and the variables in ``drop``); a one-line error when a requested cell is missing."""
    sub = ds.sel(step=[int(s) for s in steps], **{k: list(v) for k, v in want.items()})
    if MASK in sub:
        m = sub[MASK].values
        if not m.all():
            raise TwoclocksError(f"{int((~m).sum())} of {m.size} requested cells are missing from the cube "
                                 "(an interrupted call?); run the same command again to complete them")
    gone = [v for v in (MASK, *drop) if v in sub.variables]
    return sub.drop_vars(gone).load()


# ----------------------------------------------------------------------------- versions
#: the version of a step stored before versions were recorded (every probe started at version 1)
LEGACY_VERSION = 1


def step_versions(ds: xr.Dataset) -> dict:
    """{step: version of the probe that computed it} of a cube (:data:`LEGACY_VERSION` for steps
    stored before versions were recorded)."""
    if ds is None or "step" not in ds.coords:
        return {}
    steps = [int(s) for s in np.atleast_1d(ds["step"].values)]
    if "probe_version" not in ds.variables:
        return dict.fromkeys(steps, LEGACY_VERSION)
    return dict(zip(steps, (int(v) for v in np.atleast_1d(ds["probe_version"].values))))


def stale_steps(ds: xr.Dataset, version: int) -> list[int]:
    """The steps of a cube computed by a version of its probe older than ``version`` (a probe raises its
    version only when a fix changes its numbers)."""
    return sorted(s for s, v in step_versions(ds).items() if v < int(version))


# ----------------------------------------------------------------------------- growth journal
def _journal(path: Path) -> Path:
    """The journal of a growth of the store at ``path``: a folder beside it holding ``journal.json``
    (who grows it, its steps and arrays before) and ``before.zarr`` (the arrays rewritten whole)."""
    return Path(path).with_name(f".{Path(path).name}.journal")


def _begin(path: Path, disk: xr.Dataset, whole: list, keys: list) -> None:
    """Record what a growth of the store at ``path`` (opened lazily: ``disk``) may change, before it
    changes anything."""
    j = _journal(path)
    shutil.rmtree(j, ignore_errors=True)
    j.mkdir()
    keep = [n for n in whole if n in disk.variables]
    if keep:
        before = disk[keep]
        write_dataset(before.drop_vars([c for c in before.coords if c not in keep]), j / "before.zarr")
    write_text_atomic(j / "journal.json", json.dumps(
        {"pid": os.getpid(), "n_steps": int(disk.sizes["step"]), "arrays": sorted(_array_names(path)),
         "attrs": {**jsonable(disk.attrs), **({COMPLETE_ATTR: 1} if disk.encoding.get(COMPLETE_ATTR) else {})},
         "pieces": keys}))


def _rollback(path: Path) -> None:
    """Undo a growth that a killed writer left half done (its journal is still there): every array is
    cut back to the steps the cube had before, arrays the growth created are removed, those it rewrote
    whole get their values back, and the metadata is consolidated again. The pieces of that growth are
    still pending, so the next compaction redoes it. (A step computed again was overwritten in place
    with its new values, which the redo writes again.)"""
    j = _journal(path)
    if not j.exists():
        return
    jfile = j / "journal.json"
    info = None
    if jfile.exists():
        try:
            info = json.loads(jfile.read_text())
            pid, n, arrays = int(info["pid"]), int(info["n_steps"]), set(info["arrays"])
        except (ValueError, KeyError, TypeError, OSError):
            info = {}
        if info and pid != os.getpid() and alive(pid):
            return  # being grown now by a live process
    if info is not None and path.exists():
        if not info:
            aside = move_aside(path)
            note(f"{path}: its growth journal is damaged; moved to {aside.name}; the whole cube will be computed again")
        else:
            with _quiet_zarr(reading=True):
                g = zarr.open_group(str(path), mode="r+")
                for name, arr in list(g.arrays()):
                    if name not in arrays:
                        del g[name]
                        continue
                    dims = tuple(arr.metadata.dimension_names or ())
                    if "step" in dims and arr.shape[dims.index("step")] != n:
                        shape = list(arr.shape)
                        shape[dims.index("step")] = n
                        arr.resize(tuple(shape))
                if (j / "before.zarr").exists():
                    before = open_cube(j / "before.zarr")
                    for name, var in before.variables.items():
                        if name in arrays:
                            vals = np.asarray(var.values)
                            g[name][...] = vals.astype(object) if vals.dtype.kind == "U" else vals
                g.attrs.put(info["attrs"])
                zarr.consolidate_metadata(str(path))
    _discard(j)


class CubeStore:
    """The cube ``RUN/probes/NAME.zarr`` of one probe on one run, with its pending pieces.

    ``params``: the options that define the cube; a stored cube (or pieces) computed with other
    options is refused with a one-line error unless ``force`` (which deletes both). ``schema``: pieces
    are checked against it when written (:func:`check_piece`) and its derived arrays are recomputed at
    every assembly. ``keys``: the keys of a keyed cube (e.g. ("step", "anchor", "sigma"); empty: one
    piece per step). ``version``: the probe's version, recorded per step (``probe_version``).

    Growth: a per-step cube grows by regions: :meth:`compact` appends the new steps along ``step`` and
    overwrites the steps computed again in place (zarr regions), then rewrites only the derived arrays
    and the arrays without ``step`` that the pieces bring; a journal beside the store
    (``.NAME.zarr.journal``) makes a kill mid-way harmless (:func:`_rollback` cuts the cube back, the
    pending pieces redo it). A keyed cube, or a growth that does not fit the stored layout (steps before
    the last stored one, other dims), is rewritten whole through a temp store and a rename."""

    def __init__(self, run, name: str, params: dict, force: bool = False, schema=None, keys: tuple = (),
                 version: int | None = None):
        self.run, self.name = run, name
        self.params = jsonable(params)
        self.schema, self.keys, self.version = schema, tuple(keys), version
        self.path = run.probe_path(name)
        self.parts = self.path.with_name(f".{name}.parts")
        self._cache = self._layout = None
        _recover(self.path)
        if force:
            _discard(self.parts)
            _discard(self.path)
            _discard(_journal(self.path))
        _clean_dir(self.parts)
        self.heal()
        self._check_params()

    # ---- integrity
    def heal(self) -> set:
        """Check the stored cube and its pieces chunk by chunk (module docstring: a damaged store is
        moved aside, the steps of its damaged chunks become missing); tells on stderr and returns
        those lines (empty: nothing damaged)."""
        notes = []
        if self.path.exists():
            salvage, problems, bad = check_store(self.path)
            self._cache = salvage
            if problems:
                aside = move_aside(self.path)
                if salvage is not None:
                    write_dataset(salvage, self.path)
                    what = f"steps {', '.join(map(str, sorted(bad)))} will be computed again"
                else:
                    what = "the whole cube will be computed again"
                notes.append(f"damaged {self.path} ({'; '.join(problems)}): moved to {aside.name}; {what}")
        for k in self.piece_keys():
            piece = self.parts / f"{k}.zarr"
            _, problems, _ = check_store(piece)
            if problems:
                aside = move_aside(piece)
                target = self.path.with_name(f"{self.name}.{aside.name}")
                aside.rename(target)
                notes.append(f"damaged piece {piece} ({'; '.join(problems)}): moved to {target.name}; "
                             "it will be computed again")
        pfile = self.parts / "params.json"
        if pfile.exists():
            try:
                json.loads(pfile.read_text())
            except (ValueError, OSError) as e:
                target = self.path.with_name(f"{self.name}.{move_aside(pfile).name}")
                self.parts.joinpath(target.name[len(self.name) + 1:]).rename(target)
                notes.append(f"damaged {pfile} ({_reason(e)}): moved to {target.name}")
        for line in notes:
            note(line)
        return notes

    # ---- identity
    def _stored_params(self):
        pfile = self.parts / "params.json"
        if pfile.exists():
            return json.loads(pfile.read_text())
        if self.path.exists():
            cube = self._cache if self._cache is not None else open_cube(self.path, chunks={})
            raw = cube.attrs.get("probe_params")
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
        cached, self._cache = self._cache, None  # read and checked by heal() just before
        if cached is not None:
            return cached
        return open_cube(self.path) if self.path.exists() else None

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
    def _like(self) -> xr.Dataset | None:
        """What a new piece must agree with: the stored cube (metadata and coordinates only), else the
        first pending piece with a ``step`` dim."""
        if self._cache is not None:
            return self._cache
        if self._layout is not None:
            return self._layout
        if self.path.exists():
            try:
                self._layout = _open_lazy(self.path, chunks={})
                return self._layout
            except READ_ERRORS:
                return None
        for k in self.piece_keys():
            try:
                ds = _open_lazy(self.parts / f"{k}.zarr", chunks={})
            except READ_ERRORS:
                continue
            if "step" in ds.dims:
                return ds
        return None

    def write_piece(self, key: str, ds: xr.Dataset) -> None:
        """Store one computed piece (atomic), checked against the schema first (:func:`check_piece`:
        a wrong piece is a one-line error and nothing is written). The first piece also records the
        cube's options. A piece with a ``step`` dim is stamped with the probe's version."""
        if self.schema is not None:
            ds = check_piece(self.schema, ds, self._like(), self.keys[1:], f"piece {key}")
        if self.version is not None and "step" in ds.dims and "step" in ds.coords:
            ds = ds.assign(probe_version=("step", np.full(ds.sizes["step"], int(self.version), np.int64)))
        self.parts.mkdir(parents=True, exist_ok=True)
        pfile = self.parts / "params.json"
        if not pfile.exists():
            write_text_atomic(pfile, json.dumps(self.params, indent=1, sort_keys=True))
        write_dataset(ds, self.parts / f"{key}.zarr", chunk_bytes=1 << 30)

    def _prepare(self, parts: list[xr.Dataset]) -> list[xr.Dataset]:
        """Parts as the merge takes them: derived arrays dropped (recomputed after the merge); a part with
        steps but no ``probe_version`` (stored before versions were recorded) gets :data:`LEGACY_VERSION`."""
        derived = self.schema.derived() if self.schema is not None else ()
        out = []
        for p in parts:
            p = p.drop_vars([v for v in derived if v in p.variables])
            if self.version is not None and "step" in p.dims and "step" in p.coords and "probe_version" not in p:
                p = p.assign(probe_version=("step", np.full(p.sizes["step"], LEGACY_VERSION, np.int64)))
            out.append(p)
        return out

    def compact(self, merge, finalize=None, schema=None, attrs: dict | None = None) -> xr.Dataset | None:
        """Merge the stored cube with every pending piece (``merge(list of Datasets) -> Dataset``, the
        stored cube first), add derived variables (``finalize``), check the schema, stamp provenance,
        write the cube (by regions where it can: class docstring) and delete the merged pieces. Returns
        the cube (None if there is nothing)."""
        schema = schema if schema is not None else self.schema
        if self.schema is None:
            self.schema = schema
        keys = self.piece_keys()
        if not keys:
            return self.existing()
        pieces = self._prepare(self.pieces(keys))
        grown = None
        if self.path.exists() and not self.keys:
            grown = self._grow(pieces, merge, finalize, schema, attrs, keys)
        if grown is None:
            base = self.existing()
            parts = ([] if base is None else self._prepare([base])) + pieces
            ds = self._assemble(merge(parts), finalize, schema, attrs)
            write_dataset(ds, self.path)
        self._cache = self._layout = None
        for k in keys:
            _discard(self.parts / f"{k}.zarr")
        if not self.piece_keys():
            _discard(self.parts)
        return open_cube(self.path, chunks={})

    def _assemble(self, ds, finalize, schema, attrs):
        if finalize is not None:
            ds = finalize(ds)
        if schema is not None:
            ds = schema.apply(ds)
        steps = ds["step"].values if "step" in ds.coords else None
        ds.attrs.update(provenance(self.run, self.name, self.params, steps))
        if attrs:  # the call's own attrs (precision, environment) after the defaults
            ds.attrs.update(jsonable(attrs))
        return ds

    def _grow(self, pieces, merge, finalize, schema, attrs, keys) -> bool | None:  # noqa: C901
        """Add the pieces to the stored per-step cube by regions (class docstring); None (nothing
        written) when they do not fit its layout, and the caller rewrites the cube whole."""
        try:
            disk = _open_lazy(self.path, chunks={})
            fmt = zarr.open_group(str(self.path), mode="r").metadata.zarr_format
        except READ_ERRORS:
            return None
        if "step" not in disk.dims or fmt != ZARR_FORMAT:
            return None
        old = np.asarray(disk["step"].values).astype(np.int64)
        if len(old) == 0 or np.any(np.diff(old) <= 0):
            return None
        steps = sorted({int(s) for p in pieces if "step" in p.coords for s in np.atleast_1d(p["step"].values)})
        new = [s for s in steps if s not in set(old.tolist())]
        if new and new[0] <= old[-1]:
            return None
        stored = set(disk.variables)
        full = self._assemble(merge(self._prepare([disk]) + pieces), finalize, schema, attrs)
        derived = set(schema.derived()) if schema is not None else set()
        for name, var in full.variables.items():  # the stored layout must hold: same dims, same other sizes
            if name not in stored:
                if name in full.coords and name not in full.dims:
                    return None
                continue
            have = disk[name]
            if tuple(have.dims) != tuple(var.dims) or any(have.sizes[d] != var.sizes[d] for d in var.dims if d != "step"):
                return None
            if name in full.dims and name != "step" and not np.array_equal(np.asarray(have.values), np.asarray(var.values)):
                return None
        if any(n not in full.variables for n in stored):
            return None
        piece_vars = {n for p in pieces for n in p.variables}
        stepped = [n for n, v in full.data_vars.items() if "step" in v.dims and n in stored]
        whole = [n for n in full.data_vars if n in derived or n not in stored
                 or ("step" not in full[n].dims and n in piece_vars)]
        redo = [s for s in steps if s not in new]
        path = str(self.path)
        try:
            _begin(self.path, disk, whole, keys)
            with _quiet_zarr():
                at = {int(s): i for i, s in enumerate(old)}
                for s in redo:  # steps computed again: their region, in place
                    i = at[s]
                    rows = _vlen_strings(full[[n for n in stepped if n not in derived]].sel(step=[s]).load())
                    rows.drop_vars([c for c in rows.coords if "step" not in rows[c].dims]).to_zarr(
                        path, region={"step": slice(i, i + 1)}, consolidated=False, write_empty_chunks=True)
                if new:
                    rows = full[stepped].sel(step=new).load()
                    rows = _vlen_strings(rows.drop_vars([c for c in rows.coords if "step" not in rows[c].dims]))
                    for v in rows.variables.values():
                        v.encoding = {}
                    rows.to_zarr(path, append_dim="step", consolidated=False, write_empty_chunks=True)
                rest = _vlen_strings(full[whole].load())
                rest = rest.drop_vars([c for c in rest.coords if c in stored])
                for v in rest.variables.values():
                    v.encoding = {}
                fresh = [n for n in rest.variables if n not in stored]
                enc = {k: v for k, v in _encoding(rest).items() if k in fresh}
                rest.attrs = dict(jsonable(full.attrs))
                rest.to_zarr(path, mode="a", consolidated=False, encoding=enc, write_empty_chunks=True)
                g = zarr.open_group(path, mode="r+")
                marker = {COMPLETE_ATTR: 1} if disk.encoding.get(COMPLETE_ATTR) else {}
                g.attrs.put({**dict(jsonable(full.attrs)), **marker})
                zarr.consolidate_metadata(path)
        except BaseException as e:
            _rollback(self.path)
            if is_disk_full(e):
                raise disk_full(self.path) from None
            raise
        _discard(_journal(self.path))
        return True


def _array_names(path: Path) -> set:
    with _quiet_zarr(reading=True):
        return {name for name, _ in zarr.open_group(str(path), mode="r").arrays()}
