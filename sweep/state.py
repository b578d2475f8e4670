"""A sweep on disk: run states read from the run directories, sweep.json, jobs.json, per-run locks."""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from submitit.core.utils import JobPaths, pickle_load

import twoclocks
from twoclocks import TwoclocksError
from twoclocks.rundir import CHECKPOINT_DIR, CONFIG_FILE, DATA_STORE, RESUME_MAY_CHANGE, is_run, read_meta
from twoclocks.run import last_checkpoint  # this package's checkpoints or, for a foreign run, your own code's
from twoclocks.store import write_text_atomic
from twoclocks.sweep.spec import SweepSpec

SCHEMA_VERSION = 1
#: the sweep directory's own files (sweep/__init__.py); each run directory's are twoclocks.rundir's
SWEEP_FILE, JOBS_FILE, LOCK_DIR, SUBMITIT_DIR, COLLECT_STORE = (
    "sweep.json", "jobs.json", ".locks", ".submitit", "collect.zarr")
#: what an interrupted run creation (training.train.create_run) leaves before config.json exists
_CREATE_LEFTOVERS = (DATA_STORE, CHECKPOINT_DIR, f".{CONFIG_FILE}.tmp", f".{DATA_STORE}.")


def write_json_atomic(path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2))


# ------------------------------------------------------------------------------- run states on disk
# the run directory's rules (file names, config.json, the fields a resume may change) are twoclocks.rundir's


def run_status(run_dir, overrides: dict) -> tuple[str, str]:
    """(status, detail) of one run directory against its overrides: 'done' (last checkpoint >= steps),
    'resume' (config.json present), 'new' (nothing, or a creation that was interrupted), or 'conflict'
    (a stored config that disagrees with the spec, or a directory that is not a run)."""
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        if run_dir.is_dir():
            foreign = [p.name for p in run_dir.iterdir() if not p.name.startswith(_CREATE_LEFTOVERS)]
            if foreign:
                has = ", ".join(sorted(foreign)[:3])
                return "conflict", f"{run_dir} exists but is not a twoclocks run (has {has}); move it away"
            if any(run_dir.iterdir()):
                return "new", "restart an interrupted run creation"
        return "new", ""
    meta = read_meta(run_dir)
    stored = meta.get("config", {})
    for k, v in overrides.items():
        if k not in RESUME_MAY_CHANGE and stored.get(k) != v:
            return "conflict", (f"{run_dir} was trained with {k}={stored.get(k)!r} but the spec says {v!r}; "
                                "change the spec back or move the run away")
    target = overrides.get("steps", stored.get("steps"))
    last = last_checkpoint(run_dir)
    if meta.get("foreign") is not None:  # checkpoints from your own code: done once there are any
        return ("done", f"step {last} (foreign)") if last is not None else (
            "resume", "no checkpoints yet (foreign: your trainer fills checkpoints/)")
    if last is not None and last >= target:
        return "done", f"step {last}"
    return "resume", f"last checkpoint {last if last is not None else '-'} of {target}"


def clear_interrupted_creation(run_dir: Path) -> None:
    """Remove what an interrupted creation left in a run directory that has no config.json yet."""
    if run_dir.is_dir() and not (run_dir / CONFIG_FILE).exists():
        shutil.rmtree(run_dir)


@contextlib.contextmanager
def exclusive(sweep_dir: Path, name: str):
    """Hold ``SWEEP_DIR/.locks/NAME.lock`` (flock) while writing a run: one writer per run directory.
    Released by the kernel when the job dies. Filesystems without locks: no lock."""
    lock_dir = Path(sweep_dir) / LOCK_DIR
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
def write_sweep(sweep_dir, spec: SweepSpec, runs: list[dict]) -> Path:
    sweep_dir = Path(sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / SWEEP_FILE
    write_json_atomic(path, {"schema_version": SCHEMA_VERSION, "twoclocks_version": twoclocks.__version__,
                       "written_at": _now(), "spec": spec.to_dict(),
                       "runs": [{k: r[k] for k in ("name", "point", "overrides")} for r in runs]})
    return path


def read_sweep(sweep_dir) -> tuple[SweepSpec, list[dict]]:
    """The spec and runs of a sweep directory (its sweep.json)."""
    path = Path(sweep_dir) / SWEEP_FILE
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
    return (Path(sweep_dir) / SUBMITIT_DIR / "%j").absolute()


def sweep_job_name(sweep_dir) -> str:
    """The SLURM job name of a sweep's jobs."""
    return f"twoclocks-{Path(sweep_dir).resolve().name}"


# ------------------------------------------------------------------------------- SLURM job states
ACTIVE_SLURM_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED",
                       "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT", "STOPPED")
#: ended by SLURM or a user without an error of the run itself (the trainer saves on SIGTERM): a re-run
#: submits it again
STOPPED_SLURM_STATES = ("CANCELLED", "PREEMPTED", "DEADLINE", "REVOKED", "TIMEOUT")
#: ended badly without a Python result (killed): reported as failed, with the log
FAILED_SLURM_STATES = ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL")
#: the last error line of a task stopped by a signal (training/train.py Preempted, KeyboardInterrupt)
_STOPPED_ERRORS = ("Preempted", "KeyboardInterrupt")


@dataclass
class JobState:
    """What is known about the recorded SLURM job of one run: its SLURM ``state`` (squeue, else sacct;
    'UNKNOWN' once SLURM has forgotten it), ``result`` of submitit's result file ('success' / 'error' /
    None: none yet), ``error`` the last line of the error, ``log`` the job's stderr log."""
    name: str
    job_id: str
    state: str = "UNKNOWN"
    elapsed: str = ""
    reason: str = ""
    result: str | None = None
    error: str = ""
    log: Path | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_SLURM_STATES

    @property
    def failed(self) -> bool:
        if self.active:
            return False
        if self.result == "error":
            return not self.error.split(":")[0].endswith(_STOPPED_ERRORS)
        return self.result is None and self.state in FAILED_SLURM_STATES

    @property
    def stopped(self) -> bool:
        """Ended without finishing and without an error of its own (cancelled, preempted, forgotten)."""
        return not self.active and not self.failed and self.result != "success"

    def describe(self) -> str:
        """One line: 'job 12_3 RUNNING 1:05', 'job 12_3 FAILED: ValueError: ...; log PATH', ..."""
        if self.active:
            extra = f" {self.elapsed}" if self.state == "RUNNING" and self.elapsed else ""
            why = f" ({self.reason})" if self.state == "PENDING" and self.reason not in ("", "None") else ""
            return f"job {self.job_id} {self.state}{extra}{why}"
        log = f"; log {self.log}" if self.log is not None else ""
        if self.failed:
            state = self.state if self.state not in ("UNKNOWN", "COMPLETED") else "FAILED"
            return f"job {self.job_id} {state}: {self.error or 'no error message'}{log}"
        if self.stopped:
            if self.state == "UNKNOWN":  # SLURM forgot it (no accounting): e.g. cancelled before it started
                if self.log is None or not self.log.exists():
                    return f"job {self.job_id} left the queue without starting (cancelled?)"
                return f"job {self.job_id} ended without a result{log}"
            return f"job {self.job_id} {self.state}" + (f" ({self.error})" if self.error else "")
        return f"job {self.job_id} {self.state if self.state != 'UNKNOWN' else 'finished'}"


def _recorded_jobs(sweep_dir, kind: str) -> dict[str, str]:
    path = Path(sweep_dir) / JOBS_FILE
    if not path.is_file():
        return {}
    try:
        recs = json.loads(path.read_text()).get(kind, {})
    except json.JSONDecodeError as e:
        raise TwoclocksError(f"{path} is not valid JSON ({e.msg}); move it away (queued jobs are then not "
                             "recognised)") from None
    return {n: str(r["job_id"]) for n, r in recs.items()}


def _run(cmd: list[str]) -> str | None:
    """stdout of a SLURM client command, None when it is missing or fails."""
    try:
        return subprocess.check_output(cmd, stderr=subprocess.DEVNULL, timeout=60).decode(errors="replace")
    except (OSError, subprocess.SubprocessError, ValueError):  # ValueError: submitit's test mock
        return None


def slurm_states(job_ids) -> dict[str, tuple[str, str, str]]:
    """{job id: (STATE, elapsed, reason)} for array tasks ('12_3') and plain jobs: squeue for the jobs
    SLURM still holds in memory, sacct (if there is accounting) for the others. Unknown ids are left out."""
    ids = sorted(set(map(str, job_ids)))
    if not ids:
        return {}
    base = sorted({i.split("_")[0] for i in ids})
    out: dict[str, tuple[str, str, str]] = {}
    if shutil.which("squeue"):
        # -r: one line per array task; -t all: also jobs that ended within MinJobAge
        text = _run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T|%M|%r", "-j", ",".join(base)])
        for line in (text or "").splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4 and parts[0] in ids:
                out[parts[0]] = (parts[1].split()[0], parts[2], parts[3])
    missing = [i for i in ids if i not in out or out[i][0] not in ACTIVE_SLURM_STATES]
    if missing:
        text = _run(["sacct", "-o", "JobID,State,Elapsed", "--parsable2", "-X", "-j", ",".join(missing)])
        for line in (text or "").splitlines():
            parts = line.strip().split("|")
            if len(parts) >= 2 and parts[0] in missing and parts[1] and parts[0] != "JobID":
                out[parts[0]] = (parts[1].split()[0], parts[2] if len(parts) > 2 else "", "")
    return out


def _job_result(folder: Path, job_id: str) -> tuple[str | None, str]:
    """(outcome, last error line) of submitit's result file of a job's task 0 ((None, '') if none)."""
    path = JobPaths(folder, job_id=job_id, task_id=0).result_pickle
    if not path.is_file():
        return None, ""
    try:
        outcome, value = pickle_load(path)
    except Exception as e:  # noqa: BLE001 - a result written by another submitit, or truncated
        return "error", f"unreadable result file {path} ({type(e).__name__})"
    if outcome == "error":
        lines = [ln.strip() for ln in str(value).strip().splitlines() if ln.strip()]
        return "error", (lines[-1] if lines else "error")[:300]
    return str(outcome), ""


def job_states(sweep_dir, kind: str) -> dict[str, JobState]:
    """The recorded (latest) SLURM job of every run of ``kind`` ('train' / 'probe'), from jobs.json,
    with its state (:class:`JobState`). Empty without jobs.json."""
    recs = _recorded_jobs(sweep_dir, kind)
    if not recs:
        return {}
    folder = submitit_folder(sweep_dir)
    states = slurm_states(recs.values())
    out = {}
    for name, job_id in recs.items():
        state, elapsed, reason = states.get(job_id, ("UNKNOWN", "", ""))
        js = JobState(name, job_id, state, elapsed, reason, log=JobPaths(folder, job_id=job_id, task_id=0).stderr)
        if not js.active:
            js.result, js.error = _job_result(folder, job_id)
        if js.result is None and state in FAILED_SLURM_STATES:
            js.error = _log_error(js.log) or f"SLURM state {state}"
        out[name] = js
    return out


def _log_error(log: Path | None) -> str:
    """The last line of a job's stderr log that looks like an error (killed jobs leave no result)."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except (OSError, AttributeError):
        return ""
    hits = [ln for ln in lines if re.search(r"error|killed|oom|cancelled|due to", ln, re.IGNORECASE)]
    return (hits or lines or [""])[-1][:300]


def active_jobs(sweep_dir, kind: str) -> dict[str, str]:
    """Runs of ``kind`` ('train' / 'probe') whose recorded SLURM job is still queued or running:
    {name: 'job 12_3 RUNNING 1:05'}. Empty without jobs.json."""
    return {n: js.describe() for n, js in job_states(sweep_dir, kind).items() if js.active}


def record_jobs(sweep_dir: Path, kind: str, jobs: dict[str, str]) -> None:
    """Add submitted jobs ({run name: job id}) of ``kind`` ('train' / 'probe') to jobs.json."""
    path = sweep_dir / JOBS_FILE
    rec = json.loads(path.read_text()) if path.is_file() else {}
    rec.setdefault(kind, {}).update({n: {"job_id": j, "submitted_at": _now()} for n, j in jobs.items()})
    write_json_atomic(path, rec)


