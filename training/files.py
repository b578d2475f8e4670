"""The files training writes into a run directory and every reader checks: checkpoints (written
atomically with their sha256, loaded weights-only and checked against it), ``data.zarr`` (built from the
config alone, with the digest of its values recorded in ``config.json``) and ``config.json``.
File names and the layout: :mod:`twoclocks.rundir`.

Integrity: every checkpoint is checked against its ``.sha256`` when loaded (a checkpoint without one,
from an older version or a save cut short after the rename, is loaded unchecked); ``config.json``
records ``data_sha256``, the digest of data.zarr's values (:func:`data_digest`), so a damaged
data.zarr is regenerated from the config when the regenerated values have that digest
(:func:`load_data`), else refused with a one-line error.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import twoclocks
from twoclocks import TwoclocksError
from twoclocks.data import make_encoding, make_rule, make_splits
from twoclocks.rundir import CKPT_RE, CONFIG_FILE, DATA_STORE, RESUME_FILE, checkpoint_steps, digest_path, read_meta
from twoclocks.store import (DamagedError, disk_full, is_disk_full, move_aside, note, open_cube, write_dataset,
                             write_text_atomic)
from twoclocks.training.config import SCHEMA_VERSION, TrainConfig

__all__ = ["write_json_atomic", "file_sha256", "save_atomic", "recorded_digest", "damage_advice",
           "checkpoint_problem", "read_checkpoint", "load_checkpoint", "build_data", "data_digest", "load_data",
           "read_config"]


def write_json_atomic(path, obj) -> None:
    """JSON to a temp file in the same directory, then a rename over ``path`` (no temp file left
    behind by a failure; a full disk is a one-line error)."""
    write_text_atomic(path, json.dumps(obj, indent=2))


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_atomic(obj, path: Path) -> None:
    """torch.save to a temp file in the same directory, fsync, then rename over ``path``; its sha256
    goes to ``path.sha256`` (the old one is removed before the rename, so a digest never describes
    another file). A failed save leaves no temp file; a full disk is a one-line error."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        digest = file_sha256(tmp)
        digest_path(path).unlink(missing_ok=True)
        os.replace(tmp, path)
        write_text_atomic(digest_path(path), f"{digest}  {path.name}\n")
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise disk_full(path, "rerun (train --resume)") from None
        raise


def recorded_digest(path: Path) -> str | None:
    side = digest_path(path)
    try:
        words = side.read_text().split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""
    return words[0] if words else ""


def damage_advice(path: Path) -> str:
    """What to do about a damaged checkpoint: depends on whether it is resume.pt, the last step's or
    an earlier one."""
    run_dir = path.parent.parent
    if path.name == RESUME_FILE:
        return (f"delete it and its .sha256, then `twoclocks-probe train {run_dir} --resume` trains again from "
                "step 0 (the same checkpoints, bit for bit on a CPU)")
    steps = checkpoint_steps(run_dir)
    m = CKPT_RE.match(path.name)
    if m and steps and int(m.group(1)) == steps[-1]:
        resume = path.parent / RESUME_FILE
        try:
            at = int(torch.load(resume, map_location="cpu", weights_only=True)["step"]) if resume.is_file() else None
        except Exception:  # noqa: BLE001 - only to choose the advice
            at = None
        if at == int(m.group(1)):
            return (f"it is the last checkpoint: delete it and its .sha256, then `twoclocks-probe train {run_dir} "
                    "--resume` writes it again from resume.pt")
        return (f"it is the last checkpoint: delete it and its .sha256, then `twoclocks-probe train {run_dir} "
                "--resume` continues from resume.pt (this step's weights come back only by training again)")
    return ("delete it and its .sha256 (the probes then skip this step); its weights come back only by training "
            "the run again from the start with the same config")


def checkpoint_problem(path) -> str | None:
    """Why a checkpoint file is damaged (digest mismatch, unreadable), None if it is sound: reads the
    file once."""
    path = Path(path)
    try:
        read_checkpoint(path, "cpu")
    except DamagedError as e:
        return e.reason
    except TwoclocksError as e:
        return str(e)
    return None


def read_checkpoint(path: Path, device):
    data = path.read_bytes()
    want = recorded_digest(path)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        reason = (f"its sha256 does not match {digest_path(path).name}" if want else
                  f"{digest_path(path).name} is unreadable")
        raise DamagedError(f"checkpoint {path} is damaged ({reason}); {damage_advice(path)}", path, reason)
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as e:  # truncated, corrupt, or containing non-tensor objects
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DamagedError(f"checkpoint {path} cannot be read ({reason}); it is truncated or corrupt: "
                           f"{damage_advice(path)}", path, reason) from None


def load_checkpoint(path: Path, device="cpu") -> dict:
    """Load a checkpoint safely (weights_only=True: no code runs), checked against its recorded
    sha256, with a one-line error naming the file and what to do if it is damaged."""
    path = Path(path)
    if not path.is_file():
        raise TwoclocksError(f"checkpoint {path} does not exist")
    obj = read_checkpoint(path, device)
    if not isinstance(obj, dict) or "model" not in obj:
        raise TwoclocksError(f"checkpoint {path} is not a twoclocks checkpoint (no 'model' entry)")
    return obj


def build_data(cfg: TrainConfig) -> xr.Dataset:
    """data.zarr's Dataset, from the config alone: the splits (cells) and the fixed sampling bank
    (dit: standard-normal noises; gpt: uniforms), all drawn from ``cfg.data_seed``."""
    rule = make_rule(cfg.rule_spec())
    enc = make_encoding(cfg.encoding, rule.n_symbols, **cfg.encoding_params)
    splits = make_splits(rule, cfg.n_train, cfg.n_heldout, cfg.n_hypercube, cfg.data_seed)
    rng = np.random.default_rng([cfg.data_seed, 3])
    p = rule.D * enc.channels
    ds = xr.Dataset(
        {
            "train": (("train_index", "cell"), splits["train"], {"long_name": "train samples (cells)"}),
            "heldout": (("heldout_index", "cell"), splits["heldout"],
                        {"long_name": "held-out valid samples not in train (cells)"}),
            "hypercube": (("hypercube_index", "cell"), splits["hypercube"],
                          {"long_name": "uniform random images, no rule (cells)"}),
        },
        coords={"cell": np.arange(rule.D)},
        attrs={"rule": json.dumps(rule.to_dict()), "encoding": json.dumps(enc.to_dict()),
               "twoclocks_version": twoclocks.__version__},
    )
    if cfg.arch == "dit":
        ds["noise"] = (("seed", "feature"), rng.standard_normal((cfg.n_noise, p)).astype(np.float32),
                       {"long_name": "fixed sampler noise bank z (x_0 = z * sigma_max)"})
    else:
        ds["uniforms"] = (("seed", "cell"), rng.random((cfg.n_noise, rule.D)).astype(np.float32),
                          {"long_name": "fixed sampling uniforms (symbol chosen by inverse CDF at u)"})
    return ds.assign_coords(seed=np.arange(cfg.n_noise))


def data_digest(ds: xr.Dataset) -> str:
    """sha256 of a data Dataset's values: every variable and coordinate (name, dims, dtype, shape,
    bytes) in name order; attrs and the storage format do not enter."""
    h = hashlib.sha256()
    for name in sorted(ds.variables):
        v = ds.variables[name]
        a = np.ascontiguousarray(v.values)
        h.update(json.dumps([name, list(v.dims), a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def load_data(run_dir, cfg: TrainConfig, meta: dict) -> xr.Dataset:
    """data.zarr, read and checked; a damaged one is moved aside and regenerated from the config when
    the regenerated values have the digest recorded in config.json, else a one-line error."""
    store = Path(run_dir) / DATA_STORE
    if not store.exists():
        raise TwoclocksError(f"{run_dir} has no data.zarr; the run was not fully created, "
                             f"re-create it with `twoclocks-probe train {run_dir} --force`")
    want = meta.get("data_sha256")
    try:
        ds = open_cube(store)
        if want is None or data_digest(ds) == want:
            return ds
        reason = "its values do not match data_sha256 in config.json"
    except DamagedError as e:
        reason = e.reason
    redo = f"restore it from a backup, or start the run over with `twoclocks-probe train {run_dir} --force`"
    if want is None:
        raise DamagedError(f"{store} is damaged ({reason}) and config.json records no digest to prove a "
                           f"regenerated copy identical (a run created before twoclocks 0.3): {redo}", store, reason)
    fresh = build_data(cfg)
    if data_digest(fresh) != want:
        raise DamagedError(f"{store} is damaged ({reason}) and the data regenerated from the config differs from "
                           f"the recorded digest (another numpy or twoclocks version?): {redo}", store, reason)
    aside = move_aside(store)
    write_dataset(fresh, store)
    note(f"damaged {store} ({reason}): moved to {aside.name}; regenerated from the config "
         f"(same sha256 {want[:12]} as recorded)")
    return open_cube(store)


def read_config(path: Path) -> tuple[TrainConfig, dict]:
    """The run's TrainConfig and config.json, checked against the schema version this package reads."""
    cfg_path = Path(path) / CONFIG_FILE
    meta = read_meta(path)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise TwoclocksError(f"{cfg_path} has schema version {meta.get('schema_version')}, this twoclocks "
                             f"reads version {SCHEMA_VERSION}")
    return TrainConfig.from_dict(meta["config"]), meta
