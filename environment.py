"""Where numbers were computed: the environment record of a training session or a probe call, and the
recorded bf16 measurements that let ``--precision auto`` use bf16 on a device.

- :func:`environment` is the one record (:data:`ENVIRONMENT_FIELDS`): torch version, CUDA version (None
  on the CPU), device type and name (the GPU's name, or the CPU model), and the precision and compile
  mode actually used. Training writes it to ``log.jsonl`` and into every checkpoint; every cube carries
  it in its ``environment`` attr (JSON).
- :func:`environment_differences` names the fields that differ across a set of records (runs pooled
  in a fit, a resumed run).
- bf16 measurements (docs/science.md#precision): entries ``{device_name, probe, arch, metric, value,
  torch, cuda, measured_at, source}`` in the package's :data:`MEASUREMENTS_FILE` and, when set, the JSON
  file named by the environment variable :data:`MEASUREMENTS_ENV`. ``benchmarks/gpu_check.py --record``
  adds them. :func:`bf16_measured_ok` is what ``--precision auto`` asks: bf16 only where every recorded
  measurement of this device, probe and architecture meets the probe's target.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from functools import lru_cache
from pathlib import Path

import torch

from twoclocks import TwoclocksError

__all__ = ["environment", "device_name", "resolve_device", "environment_differences", "ENVIRONMENT_FIELDS", "MEASUREMENTS_FILE",
           "MEASUREMENTS_ENV", "load_measurements", "bf16_measured_ok", "meets_target", "record_measurements",
           "environment_changes", "pooled_environment_note"]

#: the fields of an environment record, in order
ENVIRONMENT_FIELDS = ("torch", "cuda", "device", "device_name", "precision", "compile")
#: the package's record of bf16 measurements (shipped in the wheel)
MEASUREMENTS_FILE = Path(__file__).with_name("precision_measurements.json")
#: environment variable naming a further measurements file of the user's
MEASUREMENTS_ENV = "TWOCLOCKS_PRECISION_MEASUREMENTS"


@lru_cache(maxsize=None)
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device) -> str:
    """The GPU's name (``torch.cuda.get_device_name``) or the CPU model."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return _cpu_model()


def environment(device, precision: str | None = None, compile: str | None = None) -> dict:
    """The environment record (:data:`ENVIRONMENT_FIELDS`) of computing on ``device`` with ``precision``
    (fp32 / bf16; None: no network calls) and ``compile`` (the mode in use; None: nothing compiled)."""
    device = torch.device(device)
    return {"torch": str(torch.__version__), "cuda": str(torch.version.cuda) if device.type == "cuda" else None,
            "device": device.type, "device_name": device_name(device), "precision": precision,
            "compile": compile}


def environment_differences(records) -> list[str]:
    """The environment fields whose values differ across ``records`` (dicts; None or missing entries,
    e.g. runs trained before records existed, count as unknown and are skipped), one line each:
    ``"field: a, b"``. Empty when all known records agree."""
    known = [r for r in records if r]
    out = []
    for field in ENVIRONMENT_FIELDS:
        values = sorted({json.dumps(r.get(field)) for r in known})
        if len(values) > 1:
            out.append(f"{field}: " + ", ".join(json.loads(v) if json.loads(v) is not None else "None"
                                                for v in values))
    return out


def _read(path: Path) -> list[dict]:
    try:
        obj = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return []
    except (OSError, json.JSONDecodeError) as e:
        raise TwoclocksError(f"precision measurements {path} cannot be read ({e}); fix or remove it") from None
    entries = obj.get("measurements") if isinstance(obj, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TwoclocksError(f"precision measurements {path}: expected {{\"measurements\": [...]}}")
    return entries


def load_measurements() -> list[dict]:
    """The recorded bf16 measurements: the package's file, then the user's (:data:`MEASUREMENTS_ENV`)."""
    user = os.environ.get(MEASUREMENTS_ENV)
    return _read(MEASUREMENTS_FILE) + (_read(Path(user)) if user else [])


def meets_target(entry: dict, target) -> bool:
    """Whether a measurement meets a probe's ``bf16_target`` (metric, "min" | "max", bound)."""
    if not target:
        return False
    metric, kind, bound = target
    value = entry.get("value")
    if entry.get("metric") != metric or not isinstance(value, (int, float)):
        return False
    return value >= bound if kind == "min" else value <= bound


def bf16_measured_ok(name: str, probe: str, arch: str, target, measurements=None) -> bool:
    """True when the device ``name`` has recorded measurements for ``probe`` on ``arch`` and every one
    meets ``target`` (no record: False)."""
    entries = load_measurements() if measurements is None else measurements
    mine = [e for e in entries if (e.get("device_name"), e.get("probe"), e.get("arch")) == (name, probe, arch)]
    return bool(mine) and all(meets_target(e, target) for e in mine)


def record_measurements(path, entries: list[dict], device) -> list[dict]:
    """Add ``entries`` ({probe, arch, metric, value, source}) measured on ``device`` to the measurements
    file ``path`` (created if missing), replacing earlier entries of the same device name, probe, arch,
    metric and torch version. Returns the entries as written."""
    env = environment(device)
    stamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    new = [{"device_name": env["device_name"], "probe": e["probe"], "arch": e["arch"], "metric": e["metric"],
            "value": float(e["value"]), "torch": env["torch"], "cuda": env["cuda"], "measured_at": stamp,
            "source": e.get("source", "")} for e in entries]
    key = lambda e: (e.get("device_name"), e.get("probe"), e.get("arch"), e.get("metric"), e.get("torch"))  # noqa: E731
    replaced = {key(e) for e in new}
    kept = [e for e in _read(Path(path)) if key(e) not in replaced]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"measurements": kept + new}, indent=2) + "\n")
    os.replace(tmp, path)
    return new


def environment_changes(old: dict | None, new: dict) -> dict | None:
    """{field: [old value, new value]} for the fields that changed (None: no earlier record)."""
    if not old:
        return None
    return {f: [old.get(f), new.get(f)] for f in ENVIRONMENT_FIELDS if old.get(f) != new.get(f)}


def pooled_environment_note(training, probes=()) -> str:
    """One line saying how the environments of pooled runs differ (empty when they agree): ``training``
    one list of records per run (its sessions), ``probes`` one record per run (the cube's)."""
    parts = []
    for what, records in (("training", [r for run in training for r in run]), ("probe", list(probes))):
        diff = environment_differences(records)
        if diff:
            parts.append(f"{what} " + "; ".join(diff))
    return ("runs computed in differing environments: " + " | ".join(parts)) if parts else ""


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TwoclocksError(f"--device {device} asked for but CUDA is not available; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise TwoclocksError(f"unknown device {device!r}; use auto, cpu or cuda") from None
