"""The run directory: the contract between the trainer and every probe.

    RUN_DIR/
      config.json            resolved config, schema version, package version, paper/assumed status
      data.zarr              splits as cells (train / heldout / hypercube) and the fixed sampling bank
      checkpoints/step_XXXXXXXX.pt   model weights at that step (torch.load(..., weights_only=True))
      checkpoints/resume.pt  model + optimizer + RNG state of the latest save (for --resume)
      checkpoints/*.pt.sha256  the sha256 of each checkpoint file, written with it (sha256sum format)
      log.jsonl              training loss, one JSON line per log interval (the first line of each
                             training session also holds its environment record)
      probes/*.zarr          probe outputs (xarray Datasets)

Probes use only :func:`open_run` and the :class:`Run` it returns.

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
import re
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import twoclocks
from twoclocks import TwoclocksError
from twoclocks.store import (DamagedError, check_store, disk_full, fix_hint, is_disk_full, move_aside, note,
                             open_cube, write_dataset, write_text_atomic)
from twoclocks.data import make_encoding, make_rule, make_splits
from twoclocks.interop.spec import ForeignSpec, describe, foreign_checkpoints, foreign_spec
from twoclocks.training.config import SCHEMA_VERSION, TrainConfig

__all__ = ["Run", "open_run", "checkpoint_name", "checkpoint_steps", "last_checkpoint", "save_atomic",
           "write_json_atomic", "load_checkpoint", "read_config", "read_meta", "resolve_device", "RESUME_MAY_CHANGE",
           "CONFIG_FILE", "DATA_STORE", "CHECKPOINT_DIR", "RESUME_FILE", "LOG_FILE", "PROBE_DIR", "digest_path",
           "file_sha256", "build_data", "data_digest", "load_data", "checkpoint_problem", "verify_run",
           "checkpoint_files", "run_foreign"]

CONFIG_FILE, DATA_STORE, CHECKPOINT_DIR, RESUME_FILE, LOG_FILE, PROBE_DIR = (
    "config.json", "data.zarr", "checkpoints", "resume.pt", "log.jsonl", "probes")
CKPT_RE = re.compile(r"^step_(\d+)\.pt$")
#: config fields a resumed run may change; every other field must equal the stored config
RESUME_MAY_CHANGE = frozenset({"steps", "device", "bf16", "log_every", "resume_every", "compile"})


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def run_foreign(run_dir) -> ForeignSpec | None:
    """The run's ``foreign`` section (checkpoints from your own code, :mod:`twoclocks.interop`), parsed
    without importing anything; None for a run this package trained (or no readable config.json)."""
    try:
        section = json.loads((Path(run_dir) / CONFIG_FILE).read_text()).get("foreign")
    except (OSError, ValueError, AttributeError):
        return None
    return None if section is None else foreign_spec(section, str(Path(run_dir) / CONFIG_FILE))


def checkpoint_files(run_dir, foreign: ForeignSpec | None = None) -> dict[int, Path]:
    """{step: checkpoint file} of a run, sorted by step (reads only the directory listing and, for
    foreign checkpoints, the pattern and step regex in config.json)."""
    d = Path(run_dir) / CHECKPOINT_DIR
    foreign = run_foreign(run_dir) if foreign is None else foreign
    if foreign is not None:
        return foreign_checkpoints(run_dir, foreign)
    if not d.is_dir():
        return {}
    return dict(sorted((int(m.group(1)), p) for p in d.iterdir() if (m := CKPT_RE.match(p.name))))


def checkpoint_steps(run_dir) -> list[int]:
    """Sorted steps of a run's saved checkpoint files (reads only the directory listing)."""
    return list(checkpoint_files(run_dir))


def last_checkpoint(run_dir) -> int | None:
    """The step of a run's last saved checkpoint (None: none yet)."""
    steps = checkpoint_steps(run_dir)
    return steps[-1] if steps else None


def read_meta(run_dir) -> dict:
    """config.json as stored (config, schema version, package version, paper/assumed status), with a
    one-line error when it cannot be read."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TwoclocksError(f"{run_dir} is not a twoclocks run (no {CONFIG_FILE}); "
                             "create one with `twoclocks-probe train RUN_DIR`") from None
    except (OSError, json.JSONDecodeError) as e:
        raise TwoclocksError(f"{path} cannot be read ({e}); move the run away to start it over") from None


def write_json_atomic(path, obj) -> None:
    """JSON to a temp file in the same directory, then a rename over ``path`` (no temp file left
    behind by a failure; a full disk is a one-line error)."""
    write_text_atomic(path, json.dumps(obj, indent=2))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TwoclocksError(f"--device {device} asked for but CUDA is not available; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise TwoclocksError(f"unknown device {device!r}; use auto, cpu or cuda") from None


def digest_path(path) -> Path:
    """The sidecar holding a checkpoint's sha256: ``step_XXXXXXXX.pt.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


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


def _recorded_digest(path: Path) -> str | None:
    side = digest_path(path)
    try:
        words = side.read_text().split()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""
    return words[0] if words else ""


def _damage_advice(path: Path) -> str:
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
        _read_checkpoint(path, "cpu")
    except DamagedError as e:
        return e.reason
    except TwoclocksError as e:
        return str(e)
    return None


def _read_checkpoint(path: Path, device):
    data = path.read_bytes()
    want = _recorded_digest(path)
    if want is not None and hashlib.sha256(data).hexdigest() != want:
        reason = (f"its sha256 does not match {digest_path(path).name}" if want else
                  f"{digest_path(path).name} is unreadable")
        raise DamagedError(f"checkpoint {path} is damaged ({reason}); {_damage_advice(path)}", path, reason)
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except Exception as e:  # truncated, corrupt, or containing non-tensor objects
        reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise DamagedError(f"checkpoint {path} cannot be read ({reason}); it is truncated or corrupt: "
                           f"{_damage_advice(path)}", path, reason) from None


def load_checkpoint(path: Path, device="cpu") -> dict:
    """Load a checkpoint safely (weights_only=True: no code runs), checked against its recorded
    sha256, with a one-line error naming the file and what to do if it is damaged."""
    path = Path(path)
    if not path.is_file():
        raise TwoclocksError(f"checkpoint {path} does not exist")
    obj = _read_checkpoint(path, device)
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


def verify_run(run_dir) -> dict:
    """Read every file of a run and check it (read only: nothing is healed or moved): config.json,
    data.zarr against its recorded digest, every checkpoint against its sha256, every probe cube and
    pending piece chunk by chunk. Returns ``{"damaged": [(path, problem, fix)], "checked": [paths],
    "unchecked": [checkpoints without a digest], "aside": [stores moved aside earlier]}``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TwoclocksError(f"run directory {run_dir} does not exist")
    out = {"damaged": [], "checked": [], "unchecked": [], "aside": []}
    try:
        cfg, meta = read_config(run_dir)
    except TwoclocksError as e:
        out["damaged"].append((run_dir / CONFIG_FILE, str(e), "it cannot be recomputed: restore it from a backup"))
        return out
    out["checked"].append(run_dir / CONFIG_FILE)
    store, want = run_dir / DATA_STORE, meta.get("data_sha256")
    problem = None
    try:
        if want is not None and data_digest(open_cube(store)) != want:
            problem = "its values do not match data_sha256 in config.json"
    except DamagedError as e:
        problem = e.reason
    except TwoclocksError as e:
        problem = str(e)
    if problem is not None:
        if want is not None and data_digest(build_data(cfg)) == want:
            fix = ("regenerable from the config (same sha256): any command that reads the run (e.g. "
                   f"`twoclocks-probe info {run_dir}`) moves it aside and regenerates it")
        else:
            fix = f"restore it from a backup, or start the run over with `twoclocks-probe train {run_dir} --force`"
        out["damaged"].append((store, problem, fix))
    out["checked"].append(store)
    foreign = meta.get("foreign") and run_foreign(run_dir)
    ckpts = list(checkpoint_files(run_dir, foreign or None).values())
    resume = run_dir / CHECKPOINT_DIR / RESUME_FILE
    for path in ckpts + ([resume] if resume.is_file() and not foreign else []):
        if _recorded_digest(path) is None:
            out["unchecked"].append(path)
        try:
            if foreign:  # weights only, as loaded for the probes; the factory is not imported
                from twoclocks.interop.factory import read_checkpoint_file
                read_checkpoint_file(path, foreign.loader)
            else:
                _read_checkpoint(path, "cpu")
        except DamagedError as e:
            out["damaged"].append((path, e.reason, "copy it again from your trainer's output" if foreign
                                   else _damage_advice(path)))
        out["checked"].append(path)
    probes = run_dir / PROBE_DIR
    stores = sorted(probes.glob("*.zarr")) + sorted(probes.glob(".*.parts/*.zarr")) if probes.is_dir() else []
    for path in stores:
        _, problems, _ = check_store(path)
        if problems:
            out["damaged"].append((path, "; ".join(problems), fix_hint(path)))
        out["checked"].append(path)
    if probes.is_dir():
        out["aside"] += sorted(probes.glob("*.damaged-*"))
    out["aside"] += sorted(run_dir.glob("*.damaged-*"))
    return out


class Run:
    """An opened run directory. Cheap to create; data and models load on first use."""

    def __init__(self, path, model_factory: str | None = None, trust_code: bool | None = None):
        self.path = Path(path)
        self.config, self.meta = read_config(self.path)
        #: checkpoints from your own code (twoclocks.interop): the parsed ``foreign`` section, else None
        self.foreign = (foreign_spec(self.meta["foreign"], str(self.path / CONFIG_FILE))
                        if self.meta.get("foreign") is not None else None)
        if self.foreign is not None:
            from twoclocks.interop.conventions import is_diffusion
            want = "dit" if is_diffusion(self.foreign.convention) else "gpt"
            if self.config.arch != want:
                raise TwoclocksError(f"{self.path / CONFIG_FILE}: convention {self.foreign.convention['type']!r} is "
                                     f"for {want} runs but the config says arch {self.config.arch!r}")
        self._trust = (model_factory, trust_code)
        self._checked = False
        self.rule = make_rule(self.config.rule_spec())
        self.encoding = make_encoding(self.config.encoding, self.rule.n_symbols, **self.config.encoding_params)
        self._models: dict = {}

    # ---- data
    @cached_property
    def data(self) -> xr.Dataset:
        return load_data(self.path, self.config, self.meta)

    def cells(self, split: str) -> np.ndarray:
        """(n, D) uint8 cells of a split: 'train', 'heldout' or 'hypercube'."""
        if split not in ("train", "heldout", "hypercube"):
            raise TwoclocksError(f"unknown split {split!r}; choose train, heldout or hypercube")
        return self.data[split].values

    def x(self, split: str) -> np.ndarray:
        """A split in model space, float32 (n, P)."""
        return self.encoding.encode(self.cells(split))

    @property
    def noise(self) -> np.ndarray:
        """The fixed bank of standard-normal noises (n_noise, P) every DiT sample starts from."""
        return self.data["noise"].values

    @property
    def uniforms(self) -> np.ndarray:
        """The fixed bank of uniforms (n_noise, D) that drives GPT sampling."""
        return self.data["uniforms"].values

    @property
    def n_seeds(self) -> int:
        return int(self.data.sizes["seed"])

    # ---- checkpoints
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def steps(self) -> list[int]:
        """Sorted steps of the saved checkpoints."""
        return list(checkpoint_files(self.path, self.foreign))

    def checkpoint_path(self, step: int) -> Path:
        if self.foreign is not None:
            path = checkpoint_files(self.path, self.foreign).get(int(step))
            if path is None:
                raise TwoclocksError(f"step {step} has no checkpoint in {self.checkpoint_dir} "
                                     f"(foreign.checkpoints.pattern {self.foreign.pattern!r})")
            return path
        return self.checkpoint_dir / checkpoint_name(step)

    def select_steps(self, spec: str | None = None) -> list[int]:
        """Parse a --steps option: None/'all', a comma list '0,100,2000', a range 'a:b', or 'last'."""
        have = self.steps
        if not have:
            raise TwoclocksError(f"{self.path} has no checkpoints yet; train it first")
        if spec is None or spec == "all":
            return have
        if spec == "last":
            return have[-1:]
        chosen = set()
        for part in str(spec).split(","):
            part = part.strip()
            try:
                if ":" in part:
                    lo, hi = part.split(":", 1)
                    lo, hi = (int(lo) if lo else 0), (int(hi) if hi else have[-1])
                    chosen.update(s for s in have if lo <= s <= hi)
                else:
                    s = int(part)
                    if s not in have:
                        raise TwoclocksError(f"step {s} has no checkpoint in {self.path}; "
                                             f"available: {have[0]}..{have[-1]} ({len(have)} steps)")
                    chosen.add(s)
            except ValueError:
                raise TwoclocksError(f"cannot parse --steps {spec!r}; use e.g. 'all', 'last', "
                                     "'0,100,2000' or '100:5000'") from None
        if not chosen:
            raise TwoclocksError(f"--steps {spec!r} selects no checkpoint; available {have[0]}..{have[-1]}")
        return sorted(chosen)

    def model(self, step: int, device="cpu"):
        """The trained network at ``step`` in eval mode (cached)."""
        key = (step, str(device))
        if key not in self._models and self.foreign is not None:  # your own code: D(x, s) or logits
            from twoclocks.interop.factory import build_foreign_model
            m = build_foreign_model(self, self.foreign, self.checkpoint_path(step), device, *self._trust)
        elif key not in self._models:
            from twoclocks.training.models import build_model
            ckpt = load_checkpoint(self.checkpoint_path(step), device)
            m = build_model(self.config, self.rule, self.encoding)
            try:
                m.load_state_dict(ckpt["model"])
            except RuntimeError as e:
                raise TwoclocksError(f"checkpoint {self.checkpoint_path(step)} does not match the run's "
                                     f"model config ({str(e).splitlines()[0]})") from None
        if key not in self._models:
            # keep two models: the one in use and the next one a probe prefetches
            self._models = {**dict(list(self._models.items())[-1:]), key: m.to(device).eval()}
        return self._models[key]

    def preflight(self, step: int, device="cpu") -> None:
        """Before a probe writes anything: for checkpoints from your own code, load the network of
        ``step`` (the factory trusted, the weights matching) and, for diffusion, sanity-check the
        convention on the last checkpoint (:func:`twoclocks.interop.factory.convention_problem`).
        Nothing to do for checkpoints this package trained."""
        if self.foreign is None or isinstance(step, str):
            return
        if self.config.arch == "dit":
            self.denoiser(step, device)
        else:
            self.model(step, device)

    def denoiser(self, source, device="cpu", precision: str = "fp32"):
        """D(x, sigma) at a checkpoint step (int) or a reference ('ideal-rule', 'ideal-cube', 'memorize').
        ``precision`` 'bf16' runs the network under bf16 autocast (outputs float32); references are exact
        float computations and ignore it."""
        if isinstance(source, str):
            from twoclocks.ideal import reference_denoiser
            return reference_denoiser(source, self.rule, self.x("train"), encoding=self.encoding)
        if self.config.arch != "dit":
            raise TwoclocksError(f"{self.path} is a {self.config.arch} run; this probe needs a diffusion (dit) run")
        net = self.model(source, device)
        dev = torch.device(device)
        use_bf16 = precision == "bf16"

        @torch.inference_mode()
        def D(x, sigma):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
                return net(x, sigma).float()
        if self.foreign is not None and self.foreign.check and not self._checked:
            self._checked = True  # once per opened run, on its last (most trained) checkpoint
            from twoclocks.interop.factory import convention_problem
            last = self.steps[-1]
            problem = convention_problem(self, D if last == source else self.denoiser(last, device), last, dev)
            if problem:
                raise TwoclocksError(f"{self.path}: {problem}")
        return D

    def generate(self, source, device="cpu", batch_size: int = 4096, seeds=None,
                 precision: str = "fp32") -> np.ndarray:
        """The sample bank at a checkpoint step (or a reference denoiser): one sample per fixed seed,
        in model space (n_seeds, P). Same seeds, same randomness at every step: a seed's sample
        differs between steps only because the model changed. dit: Heun sampling of the denoiser from
        the noise bank; gpt: autoregressive sampling driven by the uniform bank (a reference name
        samples the matching autoregressive reference model). The cells are encoded with the run's
        encoding; a non-finite sample (a NaN / inf coordinate, or a NaN / +inf logit met while
        sampling) comes back with NaN coordinates, which the samples probe scores as invalid."""
        from twoclocks.training.models import sample_dit, sample_gpt
        dev = torch.device(device)
        idx = np.arange(self.n_seeds) if seeds is None else np.asarray(seeds)
        bf16 = precision == "bf16" and not isinstance(source, str)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            if self.config.arch == "dit":
                return sample_dit(self.denoiser(source, dev), torch.as_tensor(self.noise[idx], device=dev),
                                  self.config, batch_size)
            from twoclocks.training.gpt import reference_model
            # a reference on a GPT run is its autoregressive counterpart, sampled with the same uniforms
            model = (reference_model(source, self.rule, self.cells("train")) if isinstance(source, str)
                     else self.model(source, dev))
            cells, finite = sample_gpt(model, torch.as_tensor(self.uniforms[idx], device=dev), batch_size)
        x = self.encoding.encode(cells)
        x[~finite] = np.nan  # met a NaN / +inf logit: a non-finite sample, as a diverged DiT's
        return x

    def probe_path(self, name: str) -> Path:
        return self.path / PROBE_DIR / f"{name}.zarr"

    def training_environments(self) -> list[dict]:
        """The environment records of the run's training sessions, in order, from ``log.jsonl``
        (:mod:`twoclocks.training.train`; empty for runs trained before records existed)."""
        path = self.path / LOG_FILE
        if not path.is_file():
            return []
        lines = (json.loads(ln) for ln in path.read_text().splitlines() if ln.strip())
        return [d["environment"] for d in lines if "environment" in d]

    def provenance(self) -> dict:
        """Attrs every probe output carries (JSON-serialisable)."""
        return {"run_dir": str(self.path.resolve()), "run_config": json.dumps(self.meta["config"]),
                "run_config_status": json.dumps(self.meta.get("status", {})),
                "trained_with_version": self.meta.get("twoclocks_version", "?"),
                **({"foreign_model": describe(self.foreign)} if self.foreign is not None else {})}


def open_run(path=".", model_factory: str | None = None, trust_code: bool | None = None) -> Run:
    """Open a run directory (see the module docstring for its layout). ``model_factory`` /
    ``trust_code``: for a run of foreign checkpoints, the factory you trust, or trust the one its
    config names (default: the TWOCLOCKS_MODEL_FACTORY / TWOCLOCKS_TRUST_CODE environment)."""
    path = Path(path)
    if not path.is_dir():
        raise TwoclocksError(f"run directory {path} does not exist")
    return Run(path, model_factory, trust_code)
