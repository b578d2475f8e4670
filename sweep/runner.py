"""`sweep` and `probe-all`: plan what each run needs and hand the jobs to an executor."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from twoclocks import TwoclocksError
from twoclocks.probes.registry import load_probe
from twoclocks.rundir import parts_dir, probe_path, read_meta
from twoclocks.run import checkpoint_steps
from twoclocks.store import open_cube, stale_steps
from twoclocks.sweep.executors import ProbeTask, RunTask, execute, slurm_script
from twoclocks.sweep.spec import EXECUTORS, SweepSpec, check_probe_options, expand
from twoclocks.sweep.state import job_states, read_sweep, run_status, write_sweep


# ------------------------------------------------------------------------------------------- sweep
def plan_sweep(sweep_dir, runs: list[dict], executor: str | None = None) -> list[dict]:
    """Each run with its status ('done', 'resume', 'new', 'conflict', or 'queued' when a recorded
    SLURM job of it is still pending/running, 'failed' when that job failed: detail has its last error
    line and log) and a detail string."""
    sweep_dir = Path(sweep_dir)
    jobs = job_states(sweep_dir, "train") if executor == "slurm" else {}
    queued = {n: js.describe() for n, js in jobs.items() if js.active}
    failed = {n: js.describe() for n, js in jobs.items() if js.failed}
    stopped = {n: js.describe() for n, js in jobs.items() if js.stopped}  # cancelled, preempted, timed out
    plan = []
    for r in runs:
        status, detail = run_status(sweep_dir / r["name"], r["overrides"])
        if r["name"] in queued and status in ("new", "resume"):
            status, detail = "queued", queued[r["name"]]
        elif r["name"] in failed and status in ("new", "resume"):
            status, detail = "failed", failed[r["name"]]
        elif r["name"] in stopped and status in ("new", "resume"):
            detail = "; ".join(d for d in (detail, stopped[r["name"]]) if d)
        plan.append({**r, "status": status, "detail": detail})
    return plan


def run_sweep(spec: SweepSpec, sweep_dir, executor: str = "local", max_parallel: int | None = None,
              dry_run: bool = False, progress: bool = True) -> dict:
    """Expand ``spec`` into runs under ``sweep_dir``, write sweep.json and train what is missing with
    ``executor``: finished runs are skipped, unfinished ones resumed, new ones started. ``dry_run``:
    only the plan (and, for slurm, the sbatch script). Returns {sweep_dir, plan, outcomes, script}."""
    if executor not in EXECUTORS:
        raise TwoclocksError(f"unknown executor {executor!r}; choose {', '.join(EXECUTORS)}")
    sweep_dir = Path(sweep_dir)
    if sweep_dir.exists() and not sweep_dir.is_dir():
        raise TwoclocksError(f"{sweep_dir} is a file; give a directory for the sweep")
    runs = expand(spec)
    if spec.probes:
        check_probe_options(spec.probes)
    plan = plan_sweep(sweep_dir, runs, executor)
    conflicts = [p for p in plan if p["status"] == "conflict"]
    if conflicts:
        raise TwoclocksError(f"{len(conflicts)} run(s) conflict with the spec, nothing was submitted: "
                             f"{conflicts[0]['detail']}")
    todo = [p for p in plan if p["status"] in ("new", "resume", "failed")]  # failed: submitted again
    script = (slurm_script(sweep_dir, spec.slurm, len(todo), max_parallel)
              if executor == "slurm" and todo else None)
    report = {"sweep_dir": str(sweep_dir), "plan": plan, "outcomes": [], "script": script, "executor": executor}
    if dry_run:
        return report
    write_sweep(sweep_dir, spec, runs)
    tasks = [(p["name"], RunTask(sweep_dir, p["name"], p["overrides"])) for p in todo]
    report["outcomes"] = execute(tasks, executor, sweep_dir, spec.slurm, max_parallel, progress, "train")
    return report


# --------------------------------------------------------------------------------------- probe-all
def cube_coverage(run_dir, cube: str, version: int | None = None) -> str:
    """How much of a run's checkpoints a cube holds (its step coordinate; nothing else is read), and how
    many of them an older version of its probe computed (stale): 'new' (no cube, no pieces), 'partial
    (not assembled)' (pieces only), 'S/N checkpoints[, K stale]'."""
    run_dir = Path(run_dir)
    path = probe_path(run_dir, cube)
    if not path.exists():
        return "new" if not parts_dir(run_dir, cube).exists() else "partial (not assembled)"
    try:
        ds = open_cube(path, chunks={})
        stored = {int(s) for s in np.atleast_1d(ds["step"].values)} if "step" in ds.coords else set()
        stale = stale_steps(ds, version) if version is not None else []
    except TwoclocksError:
        return "present (unreadable: info --verify)"
    have = set(checkpoint_steps(run_dir))
    return f"{len(stored & have)}/{len(have)} checkpoints" + (f", {len(stale)} stale" if stale else "")


def probe_all(sweep_dir, probes: dict | list | None = None, executor: str = "local", max_parallel: int | None = None,
              device: str | None = None, runs: list[str] | None = None, dry_run: bool = False,
              progress: bool = True) -> dict:
    """Run per-run probes over the finished runs of a sweep: one task per run (the single writer of its
    stores) running ``probes`` in order (name -> options; default: the spec's [probes]). Each probe
    computes only its missing pieces, so re-running completes what an interrupted call left.
    Returns {plan, outcomes, script}; plan rows: run, status (ready / not trained / queued), detail."""
    sweep_dir = Path(sweep_dir)
    spec, all_runs = read_sweep(sweep_dir)
    if probes is None:
        probes = spec.probes
    if isinstance(probes, (list, tuple)):
        probes = {p: dict(spec.probes.get(p, {})) for p in probes}
    if not probes:
        raise TwoclocksError("no probes given: use --probes samples,dsm-spectrum,... or a [probes] table in the spec")
    check_probe_options(probes)
    probes = {(load_probe(p).source or p): opts for p, opts in probes.items()}  # a job imports a user probe by its spec
    if runs is not None:
        unknown = sorted(set(runs) - {r["name"] for r in all_runs})
        if unknown:
            raise TwoclocksError(f"run(s) {unknown} are not in {sweep_dir}/sweep.json")
        all_runs = [r for r in all_runs if r["name"] in runs]
    jobs = job_states(sweep_dir, "probe") if executor == "slurm" else {}
    queued = {n: js.describe() for n, js in jobs.items() if js.active}
    plan = []
    for r in all_runs:
        run_dir = sweep_dir / r["name"]
        status, detail = run_status(run_dir, r["overrides"])
        if status != "done":
            plan.append({"name": r["name"], "status": "not trained", "detail": f"{status} {detail}".strip()})
        elif r["name"] in queued:
            plan.append({"name": r["name"], "status": "queued", "detail": queued[r["name"]]})
        else:
            arch = read_meta(run_dir).get("config", {}).get("arch", "dit")
            loaded = {p: load_probe(p) for p in probes}
            cov = ", ".join(f"{p} " + (f"n/a ({'/'.join(pr.archs)} only)" if not pr.applies_to(arch)
                                       else cube_coverage(run_dir, pr.cube, pr.version))
                            for p, pr in loaded.items())
            js = jobs.get(r["name"])
            if js is not None and js.failed:  # its last probe job failed: shown, and submitted again
                plan.append({"name": r["name"], "status": "failed", "detail": f"{cov}; {js.describe()}"})
            else:
                plan.append({"name": r["name"], "status": "ready", "detail": cov})
    todo = [p for p in plan if p["status"] in ("ready", "failed")]
    script = slurm_script(sweep_dir, spec.slurm, len(todo), max_parallel) if executor == "slurm" and todo else None
    report = {"sweep_dir": str(sweep_dir), "plan": plan, "outcomes": [], "script": script, "executor": executor}
    if dry_run:
        return report
    tasks = [(p["name"], ProbeTask(sweep_dir, p["name"], probes, device)) for p in todo]
    report["outcomes"] = execute(tasks, executor, sweep_dir, spec.slurm, max_parallel, progress, "probe")
    return report


