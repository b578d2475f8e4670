"""The run directory: the contract between the trainer and every probe.

:func:`open_run` opens one; the :class:`Run` it returns reads the config, data, checkpoints and cubes
(probes use only these). The layout and its file names: :mod:`twoclocks.rundir`; the checkpoint and
data files and their integrity checks: :mod:`twoclocks.training.files`.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.data import make_encoding, make_rule
from twoclocks.environment import resolve_device
from twoclocks.ideal import reference_denoiser
from twoclocks.interop.conventions import is_diffusion
from twoclocks.interop.factory import build_foreign_model, convention_problem, read_checkpoint_file
from twoclocks.interop.spec import ForeignSpec, describe, foreign_checkpoints, foreign_spec
from twoclocks.rundir import checkpoint_steps as native_checkpoint_steps
from twoclocks.rundir import (CHECKPOINT_DIR, CKPT_RE, CONFIG_FILE, DATA_STORE, LOG_FILE, PROBE_DIR, RESUME_FILE,
                              RESUME_MAY_CHANGE, checkpoint_name, cube_names, digest_path, probe_path, read_meta)
from twoclocks.store import DamagedError, check_store, fix_hint, open_cube
from twoclocks.training.files import (build_data, checkpoint_problem, damage_advice, data_digest, file_sha256,
                                      load_checkpoint, load_data, read_checkpoint, read_config, recorded_digest,
                                      save_atomic, write_json_atomic)
from twoclocks.training.gpt import reference_model
from twoclocks.training.models import build_model, sample_dit, sample_gpt

# file names and checkpoint I/O live below this module (rundir, training.files); they stay importable from here
__all__ = ["Run", "open_run", "checkpoint_name", "checkpoint_steps", "last_checkpoint", "save_atomic",
           "write_json_atomic", "load_checkpoint", "read_config", "read_meta", "resolve_device", "RESUME_MAY_CHANGE",
           "CONFIG_FILE", "DATA_STORE", "CHECKPOINT_DIR", "RESUME_FILE", "LOG_FILE", "PROBE_DIR", "digest_path",
           "file_sha256", "build_data", "data_digest", "load_data", "checkpoint_problem", "verify_run", "CKPT_RE",
           "checkpoint_files", "run_foreign"]


def run_foreign(run_dir) -> ForeignSpec | None:
    """The run's ``foreign`` section (checkpoints from your own code, :mod:`twoclocks.interop`), parsed
    without importing anything; None for a run this package trained (or no readable config.json)."""
    try:
        section = json.loads((Path(run_dir) / CONFIG_FILE).read_text()).get("foreign")
    except (OSError, ValueError, AttributeError):
        return None
    return None if section is None else foreign_spec(section, str(Path(run_dir) / CONFIG_FILE))


def checkpoint_files(run_dir, foreign: ForeignSpec | None = None) -> dict[int, Path]:
    """{step: checkpoint file} of a run, sorted by step: the ``step_XXXXXXXX.pt`` this package saved
    (:mod:`twoclocks.rundir`) or, for a run with a ``foreign`` section, the files its pattern and step
    regex select (:func:`twoclocks.interop.spec.foreign_checkpoints`). Reads only the directory listing
    and config.json."""
    foreign = run_foreign(run_dir) if foreign is None else foreign
    if foreign is not None:
        return foreign_checkpoints(run_dir, foreign)
    return {s: Path(run_dir) / CHECKPOINT_DIR / checkpoint_name(s) for s in native_checkpoint_steps(run_dir)}


def checkpoint_steps(run_dir) -> list[int]:
    """Sorted steps of a run's checkpoint files, this package's or your own code's (:func:`checkpoint_files`)."""
    return list(checkpoint_files(run_dir))


def last_checkpoint(run_dir) -> int | None:
    """The step of a run's last checkpoint (None: none yet), this package's or your own code's."""
    steps = checkpoint_steps(run_dir)
    return steps[-1] if steps else None


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
        if recorded_digest(path) is None:
            out["unchecked"].append(path)
        try:
            if foreign:  # weights only, as loaded for the probes; the factory is not imported
                read_checkpoint_file(path, foreign.loader)
            else:
                read_checkpoint(path, "cpu")
        except DamagedError as e:
            out["damaged"].append((path, e.reason, "copy it again from your trainer's output" if foreign
                                   else damage_advice(path)))
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
            m = build_foreign_model(self, self.foreign, self.checkpoint_path(step), device, *self._trust)
        elif key not in self._models:
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
        dev = torch.device(device)
        idx = np.arange(self.n_seeds) if seeds is None else np.asarray(seeds)
        bf16 = precision == "bf16" and not isinstance(source, str)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            if self.config.arch == "dit":
                return sample_dit(self.denoiser(source, dev), torch.as_tensor(self.noise[idx], device=dev),
                                  self.config, batch_size)
            # a reference on a GPT run is its autoregressive counterpart, sampled with the same uniforms
            model = (reference_model(source, self.rule, self.cells("train")) if isinstance(source, str)
                     else self.model(source, dev))
            cells, finite = sample_gpt(model, torch.as_tensor(self.uniforms[idx], device=dev), batch_size)
        x = self.encoding.encode(cells)
        x[~finite] = np.nan  # met a NaN / +inf logit: a non-finite sample, as a diverged DiT's
        return x

    def probe_path(self, name: str) -> Path:
        return probe_path(self.path, name)

    # ---- cubes
    @property
    def cubes(self) -> list[str]:
        """The names of the cubes the run holds (``probes/NAME.zarr``), sorted."""
        return cube_names(self.path)

    def cube(self, name: str, chunks=None) -> xr.Dataset:
        """One cube by name (:func:`twoclocks.store.open_cube`: ``chunks`` None reads and checks every value
        now, ``{}`` gives lazy dask arrays)."""
        return open_cube(self.probe_path(name), chunks)

    def tree(self, chunks=None) -> xr.DataTree:
        """The run's cubes as one :class:`xarray.DataTree`: a group per cube (``probes/NAME.zarr`` is
        ``tree["NAME"]``), the root named after the run directory and holding its provenance
        (:meth:`provenance`) as attrs. ``chunks`` as for :meth:`cube`."""
        groups = {"/": xr.Dataset(attrs=self.provenance())}
        groups.update({f"/{name}": self.cube(name, chunks) for name in self.cubes})
        return xr.DataTree.from_dict(groups, name=self.path.name)

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
