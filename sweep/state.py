"""A sweep on disk: run states read from the run directories, sweep.json, jobs.json, per-run locks."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
from pathlib import Path

from twoclocks import TwoclocksError
from twoclocks.sweep.spec import SweepSpec

SCHEMA_VERSION = 1
#: config fields a resumed run may change (training/train.py prepare_run_dir)
CHANGEABLE = {"steps", "device", "bf16", "log_every", "resume_every"}
_CREATE_LEFTOVERS = ("data.zarr", "checkpoints", ".config.json.tmp", ".data.zarr.")  # create_run's files


# ------------------------------------------------------------------------------- run states on disk
_CKPT = re.compile(r"^step_(\d+)\.pt$")


def last_checkpoint(run_dir) -> int | None:
    """The step of a run's last saved checkpoint file (None: none yet). No torch needed."""
    d = Path(run_dir) / "checkpoints"
    steps = [int(m.group(1)) for p in d.iterdir() if (m := _CKPT.match(p.name))] if d.is_dir() else []
    return max(steps) if steps else None


def _read_meta(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise TwoclocksError(f"{run_dir}/config.json cannot be read ({e}); move the run away to start it "
                             "over") from None


def run_status(run_dir, overrides: dict) -> tuple[str, str]:
    """(status, detail) of one run directory against its overrides: 'done' (last checkpoint >= steps),
    'resume' (config.json present), 'new' (nothing, or a creation that was interrupted), or 'conflict'
    (a stored config that disagrees with the spec, or a directory that is not a run)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        if run_dir.is_dir():
            foreign = [p.name for p in run_dir.iterdir() if not p.name.startswith(_CREATE_LEFTOVERS)]
            if foreign:
                has = ", ".join(sorted(foreign)[:3])
                return "conflict", f"{run_dir} exists but is not a twoclocks run (has {has}); move it away"
            if any(run_dir.iterdir()):
                return "new", "restart an interrupted run creation"
        return "new", ""
    stored = _read_meta(run_dir).get("config", {})
    for k, v in overrides.items():
        if k not in CHANGEABLE and stored.get(k) != v:
            return "conflict", (f"{run_dir} was trained with {k}={stored.get(k)!r} but the spec says {v!r}; "
                                "change the spec back or move the run away")
    target = overrides.get("steps", stored.get("steps"))
    last = last_checkpoint(run_dir)
    if last is not None and last >= target:
        return "done", f"step {last}"
    return "resume", f"last checkpoint {last if last is not None else '-'} of {target}"


def _clear_interrupted_creation(run_dir: Path) -> None:
    import shutil
    if run_dir.is_dir() and not (run_dir / "config.json").exists():
        shutil.rmtree(run_dir)


@contextlib.contextmanager
def _exclusive(sweep_dir: Path, name: str):
    """Hold ``SWEEP_DIR/.locks/NAME.lock`` (flock) while writing a run: one writer per run directory.
    Released by the kernel when the job dies. Filesystems without locks: no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_dir = Path(sweep_dir) / ".locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    path = lock_dir / f"{name}.lock"
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TwoclocksError(f"run {name} is being written by another job (lock {path} is held); wait for "
                                 "that job to finish") from None
        except OSError:
            pass  # no locking on this filesystem
        yield


# ------------------------------------------------------------------------------------- sweep.json
def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def write_sweep(sweep_dir, spec: SweepSpec, runs: list[dict]) -> Path:
    import twoclocks
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / "sweep.json"
    _write_json(path, {"schema_version": SCHEMA_VERSION, "twoclocks_version": twoclocks.__version__,
                       "written_at": _now(), "spec": spec.to_dict(),
                       "runs": [{k: r[k] for k in ("name", "point", "overrides")} for r in runs]})
    return path


def read_sweep(sweep_dir) -> tuple[SweepSpec, list[dict]]:
    """The spec and runs of a sweep directory (its sweep.json)."""
    path = Path(sweep_dir) / "sweep.json"
    if not path.is_file():
        raise TwoclocksError(f"{sweep_dir} is not a sweep (no sweep.json); create it with "
                             "`twoclocks-probe sweep SPEC.toml`")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TwoclocksError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise TwoclocksError(f"{path} has schema version {meta.get('schema_version')}; this twoclocks reads "
                             f"version {SCHEMA_VERSION}")
    d = meta["spec"]
    spec = SweepSpec(d.get("base", {}), d.get("grid", {}), d.get("slurm", {}), d.get("probes", {}))
    return spec, meta["runs"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def submitit_folder(sweep_dir: Path) -> Path:
    return (Path(sweep_dir) / ".submitit" / "%j").absolute()


def _job_name(sweep_dir) -> str:
    return f"twoclocks-{Path(sweep_dir).resolve().name}"


ACTIVE_SLURM_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                       "REQUEUE_HOLD", "REQUEUE_FED")


def active_jobs(sweep_dir, kind: str) -> dict[str, str]:
    """Runs of ``kind`` ('train' / 'probe') whose recorded SLURM job is still queued or running:
    {name: 'job_id STATE'}. Empty without jobs.json."""
    path = Path(sweep_dir) / "jobs.json"
    if not path.is_file():
        return {}
    from submitit.slurm.slurm import SlurmJob
    recs = {n: r for n, r in json.loads(path.read_text()).get(kind, {}).items()}
    jobs = {n: SlurmJob(folder=submitit_folder(sweep_dir), job_id=r["job_id"]) for n, r in recs.items()}
    out = {}
    for n, job in jobs.items():
        try:
            state = job.state
        except Exception:  # noqa: BLE001 - no sacct: treat as finished
            continue
        if state.split()[0] in ACTIVE_SLURM_STATES:
            out[n] = f"job {job.job_id} {state}"
    return out


def _record_jobs(sweep_dir: Path, kind: str, jobs: dict[str, str]) -> None:
    path = sweep_dir / "jobs.json"
    rec = json.loads(path.read_text()) if path.is_file() else {}
    rec.setdefault(kind, {}).update({n: {"job_id": j, "submitted_at": _now()} for n, j in jobs.items()})
    _write_json(path, rec)


