"""The layout of a run directory: its file names and where each thing lives (the bottom layer).

    RUN_DIR/
      config.json                      resolved config, schema version, package version, paper/assumed status
      data.zarr                        splits as cells (train / heldout / hypercube) and the fixed sampling bank
      checkpoints/step_XXXXXXXX.pt     model weights at that step (torch.load(..., weights_only=True))
      checkpoints/resume.pt            model + optimizer + RNG state of the latest save (for --resume)
      checkpoints/*.pt.sha256          the sha256 of each checkpoint file, written with it (sha256sum format)
      log.jsonl                        training loss, one JSON line per log interval (the first line of
                                       each training session also holds its environment record)
      probes/NAME.zarr                 a probe's cube (NAME-DENOISER.zarr: computed on a reference)
      probes/.NAME.parts/KEY.zarr      pieces written but not yet merged into the cube (KEY: step_key)

Training (:mod:`twoclocks.training`), the run reader (:mod:`twoclocks.run`), the probes and the sweep
take every name from here. Only the standard library: reading a layout costs no torch, xarray or zarr.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from twoclocks import TwoclocksError

__all__ = ["CONFIG_FILE", "DATA_STORE", "CHECKPOINT_DIR", "RESUME_FILE", "LOG_FILE", "PROBE_DIR", "CKPT_RE",
           "RESUME_MAY_CHANGE", "REFERENCE_STEP", "checkpoint_name", "checkpoint_steps", "last_checkpoint",
           "digest_path", "read_meta", "step_key", "probe_path", "parts_dir", "cube_names", "pending_cubes",
           "is_run"]

CONFIG_FILE, DATA_STORE, CHECKPOINT_DIR, RESUME_FILE, LOG_FILE, PROBE_DIR = (
    "config.json", "data.zarr", "checkpoints", "resume.pt", "log.jsonl", "probes")
CKPT_RE = re.compile(r"^step_(\d+)\.pt$")
#: config fields a resumed run may change; every other field must equal the stored config
RESUME_MAY_CHANGE = frozenset({"steps", "device", "bf16", "log_every", "resume_every", "compile"})
REFERENCE_STEP = -1  # the `step` coordinate of a cube computed on a reference denoiser


def checkpoint_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def checkpoint_steps(run_dir) -> list[int]:
    """Sorted steps of a run's saved checkpoint files (reads only the directory listing)."""
    d = Path(run_dir) / CHECKPOINT_DIR
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for p in d.iterdir() if (m := CKPT_RE.match(p.name)))


def last_checkpoint(run_dir) -> int | None:
    """The step of a run's last saved checkpoint (None: none yet)."""
    steps = checkpoint_steps(run_dir)
    return steps[-1] if steps else None


def digest_path(path) -> Path:
    """The sidecar holding a checkpoint's sha256: ``step_XXXXXXXX.pt.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def is_run(run_dir) -> bool:
    """Whether a directory holds a run's config.json (a run, possibly not trained yet)."""
    return (Path(run_dir) / CONFIG_FILE).is_file()


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


def step_key(step: int) -> str:
    """The key of one step's piece in ``probes/.NAME.parts`` (``reference``: a reference denoiser)."""
    return "reference" if step < 0 else f"step_{step:08d}"


def probe_path(run_dir, name: str) -> Path:
    """``RUN_DIR/probes/NAME.zarr``: the cube of probe (or cube) ``name``."""
    return Path(run_dir) / PROBE_DIR / f"{name}.zarr"


def parts_dir(run_dir, name: str) -> Path:
    """``RUN_DIR/probes/.NAME.parts``: the pieces of cube ``name`` not yet merged into it."""
    return Path(run_dir) / PROBE_DIR / f".{name}.parts"


def cube_names(run_dir) -> list[str]:
    """The names of the cubes a run holds (``probes/NAME.zarr``), sorted."""
    d = Path(run_dir) / PROBE_DIR
    return sorted(p.name[:-len(".zarr")] for p in d.glob("*.zarr")) if d.is_dir() else []


def pending_cubes(run_dir) -> list[str]:
    """The names of the cubes with pieces not yet merged (``probes/.NAME.parts``), sorted; a cube that
    does not exist yet (only pieces) is listed too."""
    d = Path(run_dir) / PROBE_DIR
    return sorted(p.name[1:-len(".parts")] for p in d.glob(".*.parts") if p.is_dir()) if d.is_dir() else []
