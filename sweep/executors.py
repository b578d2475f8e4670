"""Executing tasks: the per-run jobs (train, probe) and the local / debug / SLURM executors (submitit)."""
from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import submitit
import torch
from submitit.core.utils import DelayedSubmission
from submitit.helpers import Checkpointable
from submitit.slurm.slurm import _make_sbatch_string

from twoclocks import TwoclocksError
from twoclocks.probes.registry import load_probe
from twoclocks.progress import make_progress, track
from twoclocks.rundir import read_meta
from twoclocks.run import last_checkpoint
from twoclocks.sweep.spec import EXECUTORS
from twoclocks.sweep.state import (clear_interrupted_creation, exclusive, record_jobs, run_status, submitit_folder,
                                   sweep_job_name)
from twoclocks.training.train import train

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # LocalExecutor kills a job after timeout_min (its default is 2 minutes)


# -------------------------------------------------------------------------------------- the tasks
def _limit_threads(n: int | None) -> None:
    """torch CPU threads of a job: ``n`` (set by the local executor to share the cores), else in a
    SLURM job the CPUs it was given (``cpus_per_task``; SLURM's default is one), so jobs sharing a
    node do not oversubscribe it."""
    if not n and os.environ.get("SUBMITIT_EXECUTOR") == "slurm" and "SLURM_JOB_ID" in os.environ:
        n = int(os.environ.get("SLURM_CPUS_PER_TASK") or 1)
    if n:
        torch.set_num_threads(n)


class RunTask(Checkpointable):
    """The job of one run: train it to completion (skip / resume / start, decided when it runs).
    Requeue (:meth:`checkpoint`) resubmits the same call, which resumes from disk."""

    threads: int | None = None  # torch CPU threads (set by the local executor to share the cores)

    def __init__(self, sweep_dir, name: str, overrides: dict):
        self.sweep_dir, self.name, self.overrides = str(sweep_dir), name, dict(overrides)

    def __call__(self) -> dict:
        run_dir = Path(self.sweep_dir) / self.name
        with exclusive(Path(self.sweep_dir), self.name):
            status, detail = run_status(run_dir, self.overrides)
            if status == "conflict":
                raise TwoclocksError(detail)
            if status == "done":
                return {"run": self.name, "action": "skipped", "step": last_checkpoint(run_dir)}
            if status == "new":
                clear_interrupted_creation(run_dir)
            _limit_threads(self.threads)
            train(run_dir, self.overrides, resume=status == "resume", progress=False)
        return {"run": self.name, "action": "resumed" if status == "resume" else "trained",
                "step": last_checkpoint(run_dir)}

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        """On timeout / preemption: requeue the same call (training resumes from its last save)."""
        return DelayedSubmission(self, *args, **kwargs)


class ProbeTask(Checkpointable):
    """The job of one run in probe-all: run the probes in order (each computes only its missing
    pieces: the one driver, twoclocks.probes.driver), as the single writer of the run's stores."""

    threads: int | None = None

    def __init__(self, sweep_dir, name: str, probes: dict, device: str | None = None):
        self.sweep_dir, self.name, self.probes, self.device = str(sweep_dir), name, dict(probes), device

    def __call__(self) -> dict:
        run_dir = Path(self.sweep_dir) / self.name
        _limit_threads(self.threads)
        arch = read_meta(run_dir).get("config", {}).get("arch", "dit")
        done = {}
        with exclusive(Path(self.sweep_dir), self.name):
            for name, opts in self.probes.items():
                probe = load_probe(name)  # a user probe (MODULE:OBJECT) is imported in the job too
                if not probe.applies_to(arch):
                    done[name] = f"skipped: needs a {' or '.join(probe.archs)} run"
                    continue
                opts = dict(opts)
                if self.device is not None and "device" in probe.common_options():
                    opts.setdefault("device", self.device)
                if "progress" in probe.common_options():
                    opts.setdefault("progress", False)
                probe(run_dir, **opts)
                done[name] = "done"
        return {"run": self.name, "probes": done}

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        """On timeout / preemption: requeue the same call (the cubes keep their finished pieces)."""
        return DelayedSubmission(self, *args, **kwargs)


# ------------------------------------------------------------------------------------------- SLURM
def slurm_parameters(slurm: dict, n_jobs: int, max_parallel: int | None = None, job_name: str = "twoclocks") -> dict:
    """submitit.SlurmExecutor parameters from a [slurm] table (module docstring, SLURM_KEYS)."""
    s = dict(slurm)
    cap = max_parallel or s.get("max_parallel") or max(n_jobs, 1)
    if int(cap) < 1:
        raise TwoclocksError(f"--max-parallel must be at least 1, got {cap}")
    p = {"job_name": s.get("job_name", job_name), "time": int(s.get("time_min", 1440)),
         "gpus_per_node": int(s.get("gpus_per_node", 1)), "array_parallelism": int(cap),
         "signal_delay_s": int(s.get("signal_delay_s", 120))}
    if p["gpus_per_node"] == 0:  # CPU jobs: no GPU request at all
        del p["gpus_per_node"]
    for key in ("partition", "account", "qos", "constraint", "cpus_per_task"):
        if key in s:
            p[key] = s[key]
    if "mem_gb" in s:
        mem = float(s["mem_gb"])
        p["mem"] = f"{int(mem)}GB" if mem == int(mem) else f"{int(mem * 1024)}MB"
    if "setup" in s:
        p["setup"] = list(s["setup"])
    extra = dict(s.get("extra", {}))
    if s.get("requeue", True):
        extra.setdefault("requeue", True)
    if extra:
        p["additional_parameters"] = extra
    return p


def slurm_script(sweep_dir, slurm: dict, n_jobs: int, max_parallel: int | None = None) -> str:
    """The sbatch script a slurm submission of ``n_jobs`` tasks writes (without submitting: the same
    function and parameters submitit's SlurmExecutor uses)."""
    folder = submitit_folder(sweep_dir)
    params = slurm_parameters(slurm, n_jobs, max_parallel, sweep_job_name(sweep_dir))
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=n_jobs if n_jobs > 1 else None,
                               **params)


# --------------------------------------------------------------------------------------- executing
def _last_line(err) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(err).__name__)[:1000]


def execute(tasks: list[tuple[str, Checkpointable]], executor: str, sweep_dir, slurm: dict | None = None,
            max_parallel: int | None = None, progress: bool = True, kind: str = "train") -> list[dict]:
    """Run or submit ``tasks`` ([(run name, task)]) with an executor (module docstring). Returns one
    outcome per task: {run, state: done|failed|submitted, info}."""
    sweep_dir = Path(sweep_dir)
    if executor not in EXECUTORS:
        raise TwoclocksError(f"unknown executor {executor!r}; choose {', '.join(EXECUTORS)}")
    if max_parallel is not None and max_parallel < 1:
        raise TwoclocksError(f"--max-parallel must be at least 1, got {max_parallel}")
    if not tasks:
        return []
    folder = submitit_folder(sweep_dir)
    if executor == "debug":
        ex = submitit.DebugExecutor(folder)
        out = []
        for name, task in track(tasks, f"{kind} (in process)", total=len(tasks), enabled=progress):
            err = ex.submit(task).exception()  # runs it here; exception() does not start pdb
            out.append({"run": name, "state": "failed" if err else "done",
                        "info": _last_line(f"{type(err).__name__}: {err}") if err else ""})
        return out
    if executor == "slurm":
        try:
            ex = submitit.SlurmExecutor(folder, max_num_timeout=int((slurm or {}).get("max_num_timeout", 10)))
        except RuntimeError as e:
            raise TwoclocksError(f"--executor slurm: {e} (run on a SLURM login node, or use --executor local)"
                                 ) from None
        ex.update_parameters(**slurm_parameters(slurm or {}, len(tasks), max_parallel, sweep_job_name(sweep_dir)))
        try:
            with ex.batch():  # one job array for all tasks
                jobs = [ex.submit(task) for _, task in tasks]
        except Exception as e:  # noqa: BLE001 - sbatch refused it (partition, limits, ...): one line
            raise TwoclocksError(f"--executor slurm: sbatch failed: {_last_line(e)}") from None
        record_jobs(sweep_dir, kind, {name: job.job_id for (name, _), job in zip(tasks, jobs)})
        return [{"run": name, "state": "submitted", "info": f"job {job.job_id}"} for (name, _), job in zip(tasks, jobs)]
    return _execute_local(tasks, folder, max_parallel, progress, kind)


def _visible_gpus() -> int:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return len([g for g in env.split(",") if g.strip()])
    return torch.cuda.device_count()


def _execute_local(tasks, folder, max_parallel, progress, kind) -> list[dict]:
    """LocalExecutor: at most ``max_parallel`` subprocesses at a time, each on its own GPU if any."""
    n_gpu = _visible_gpus()
    cap = max_parallel or max(n_gpu, 1)
    threads = None if n_gpu else max(1, (os.cpu_count() or 1) // cap)  # CPU jobs share the cores
    if threads and os.environ.get("OMP_NUM_THREADS", "").isdigit():  # ... and never more than the user allows
        threads = min(threads, max(1, int(os.environ["OMP_NUM_THREADS"])))
    ex = submitit.LocalExecutor(folder)
    pending, running, out = list(tasks), {}, {}
    bar = None
    if progress:
        bar = make_progress(with_loss=False)
        bar.start()
        tid = bar.add_task(f"{kind} ({cap} at a time)", total=len(tasks))
    try:
        while pending or running:
            while pending and len(running) < cap:
                name, task = pending.pop(0)
                slot = min(set(range(cap)) - {s for _, s in running.values()})
                gpus = dict(gpus_per_node=1, visible_gpus=(slot % n_gpu,)) if n_gpu else dict(gpus_per_node=0)
                ex.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, **gpus)
                task.threads = threads
                running[name] = (ex.submit(task), slot)
            for name, (job, _) in list(running.items()):
                if job.done():
                    try:
                        err = job.exception()
                    except Exception as e:  # noqa: BLE001 - e.g. killed without a result
                        err = e
                    out[name] = {"run": name, "state": "failed" if err else "done",
                                 "info": _last_line(err) if err else ""}
                    del running[name]
                    if bar:
                        bar.update(tid, advance=1)
            time.sleep(0.2)
    except KeyboardInterrupt:
        for job, _ in running.values():
            job.cancel()  # SIGINT: the training saves its state and stops
        raise
    finally:
        if bar:
            bar.stop()
    return [out[name] for name, _ in tasks]


