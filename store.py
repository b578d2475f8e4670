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
missing. A write that fails (a full disk) leaves no temporary store behind; a full disk is a one-line
error (:func:`disk_full`).

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

__all__ = ["CubeStore", "write_dataset", "open_cube", "check_store", "write_derived", "provenance", "CHUNK_BYTES",
           "jsonable", "metadata_problem", "fix_hint", "DamagedError", "disk_full", "write_text_atomic", "note", "is_disk_full", "move_aside", "alive", "remove_stale_tmp",
           "READ_ERRORS"]

CHUNK_BYTES = 4 << 20  # target bytes per chunk along `step`
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
def _quiet_zarr():
    """zarr 3 warns that fixed-length strings and consolidated metadata are not (yet) in the zarr v3
    spec; twoclocks reads its own cubes with the same library, so these are noise to a user."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        warnings.filterwarnings("ignore", message=".*Consolidated metadata is currently not part.*")
        yield


def _encoding(ds: xr.Dataset, chunk_bytes: int = CHUNK_BYTES, checksum: bool = True) -> dict:
    """Chunks along ``step`` of about ``chunk_bytes`` per variable; whole along other dims. With
    ``checksum`` every array's chunks are zstd-compressed then end with a crc32c checksum."""
    enc = {}
    for name, da in ds.variables.items():
        if checksum and da.dtype.kind != "O":
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
    ds = ds.load()
    for v in ds.variables.values():
        v.encoding = {}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with _quiet_zarr():
            ds.to_zarr(tmp, mode="w", zarr_format=ZARR_FORMAT, consolidated=True,
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
    with _quiet_zarr():
        try:
            return xr.open_zarr(path, consolidated=True, chunks=chunks)
        except (KeyError, ValueError, FileNotFoundError):
            return xr.open_zarr(path, consolidated=False, chunks=chunks)


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
        ds = _open_lazy(path, chunks)
        return ds if chunks is not None else ds.load()
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
        with _quiet_zarr():
            arr = zarr.open_array(str(path / name), mode="r")
        axis = list(var.dims).index("step")
        size = int(arr.chunks[axis])
    except READ_ERRORS:
        return set(range(n_steps))
    bad = set()
    for lo in range(0, n_steps, size):
        sel = tuple(slice(lo, lo + size) if a == axis else slice(None) for a in range(arr.ndim))
        try:
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
        self._cache = None
        _recover(self.path)
        if force:
            _discard(self.parts)
            _discard(self.path)
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
            cube = self._cache if self._cache is not None else open_cube(self.path)
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
    def write_piece(self, key: str, ds: xr.Dataset) -> None:
        """Store one computed piece (atomic). The first piece also records the cube's options."""
        self.parts.mkdir(parents=True, exist_ok=True)
        pfile = self.parts / "params.json"
        if not pfile.exists():
            write_text_atomic(pfile, json.dumps(self.params, indent=1, sort_keys=True))
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
