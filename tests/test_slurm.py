"""End-to-end sweeps on a real single-node SLURM cluster (.ci/slurm.sh): one job array with a
concurrency cap, a status view while it runs, scancel + re-run, probe-all and collect equal to the
local executor's, a real time-limit signal (USR2) with requeue and bit-identical checkpoints, and a
failing run reported with its log. Marked ``slurm``; skipped where the cluster cannot be started
(not root and no SLURM running, no apt-get). About 4 minutes on 2 cores."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "slurm.sh"
# tiny 4x4 parity runs (tests/conftest.py TINY, smaller sampling banks)
BASE = dict(rule="parity", side=4, group=2, model="tiny", n_heldout=32, n_hypercube=32, n_noise=32, batch=32,
            lr=1e-3, saves_per_decade=3, log_every=25, device="cpu")
CPUS = max(1, (os.cpu_count() or 2) // 2)  # per job: two jobs share the node, as the local executor's threads


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running single-node SLURM cluster: .ci/slurm.sh start (installs it as root via apt when
    missing). Skips when it cannot be started here. It is left running (idle daemons; another test
    session may be using it): `.ci/slurm.sh stop` stops it."""
    if sys.platform != "linux" or shutil.which("bash") is None:
        pytest.skip("SLURM tests need Linux and bash")
    try:
        r = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail(".ci/slurm.sh start took over 15 minutes")
    msg = (r.stderr.strip().splitlines() or [""])[-1]
    if r.returncode == 3:
        pytest.skip(f"SLURM cannot be started here: {msg}")
    if r.returncode != 0:
        pytest.fail(f".ci/slurm.sh start failed (exit {r.returncode}): {r.stderr.strip()[-2000:]}")
    return subprocess.run(["sinfo", "-V"], capture_output=True, text=True).stdout.strip()


def cli(*args, check: int | None = 0) -> subprocess.CompletedProcess:
    """``twoclocks-probe ARGS`` in a subprocess (the console script's module), as a user runs it."""
    r = subprocess.run([sys.executable, "-m", "twoclocks.cli", *map(str, args)], capture_output=True, text=True,
                       timeout=600, cwd=REPO)
    if check is not None:
        assert r.returncode == check, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def toml_value(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(v)


def write_spec(path: Path, base: dict, grid: dict, slurm: dict, probes: dict | None = None) -> Path:
    lines = ["[base]"] + [f"{k} = {toml_value(v)}" for k, v in base.items()]
    lines += ["[grid]"] + [f"{k} = {toml_value(v)}" for k, v in grid.items()]
    lines += ["[slurm]"] + [f"{k} = {toml_value(v)}" for k, v in slurm.items()]
    for name, opts in (probes or {}).items():
        lines += [f"[probes.{name}]"] + [f"{k} = {toml_value(v)}" for k, v in opts.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_jobs(sweep_dir: Path, kind: str, timeout: float) -> dict:
    """Poll the recorded jobs of ``kind`` until none is pending or running; their JobStates."""
    from twoclocks.sweep.state import job_states
    t0 = time.time()
    while time.time() - t0 < timeout:
        states = job_states(sweep_dir, kind)
        if states and not any(js.active for js in states.values()):
            return states
        time.sleep(1)
    out = subprocess.run(["squeue", "-r", "-t", "all"], capture_output=True, text=True).stdout
    pytest.fail(f"{kind} jobs of {sweep_dir} still running after {timeout:.0f} s:\n{out}")


def job_log(sweep_dir: Path, job_id: str) -> str:
    from submitit.core.utils import JobPaths

    from twoclocks.sweep.state import submitit_folder
    paths = JobPaths(submitit_folder(sweep_dir), job_id=job_id, task_id=0)
    return "".join(p.read_text(errors="replace") for p in (paths.stdout, paths.stderr) if p.is_file())


def recorded(sweep_dir: Path, kind: str = "train") -> dict[str, str]:
    return {n: r["job_id"] for n, r in json.loads((sweep_dir / "jobs.json").read_text())[kind].items()}


# ---------------------------------------------------------------------- a 2x2 grid as one job array
def test_grid_as_one_array_status_scancel_probe_all_collect_equal_local(slurm_cluster, tmp_path):
    import numpy as np
    import xarray as xr

    from twoclocks.sweep import read_sweep
    base = dict(BASE, steps=150, saves_per_decade=2)  # checkpoints 0, 1, 3, 10, 32, 100, 150
    spec = write_spec(tmp_path / "grid.toml", base, {"n_train": [8, 16], "seed": [0, 1]},
                      dict(time_min=10, gpus_per_node=0, cpus_per_task=CPUS, max_parallel=2, signal_delay_s=60),
                      {"samples": {"steps": "all"}})
    d, local = tmp_path / "cluster", tmp_path / "local"
    out = cli("sweep", spec, "--dir", d, "--executor", "slurm", "--quiet").stdout
    assert "4 submitted (slurm executor)" in out, out  # the command returns after submitting
    ids = recorded(d)
    array = {j.split("_")[0] for j in ids.values()}
    assert len(array) == 1 and sorted(j.split("_")[1] for j in ids.values()) == ["0", "1", "2", "3"], ids
    script = next((d / ".submitit").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --array=0-3%2" in script.splitlines() and "#SBATCH --signal=USR2@60" in script

    # cancel one task (still pending behind the %2 cap): the status view shows the others' states
    names = [r["name"] for r in read_sweep(d)[1]]
    cancelled = names[3]
    subprocess.run(["scancel", ids[cancelled]], check=True)
    time.sleep(1)
    status = cli("sweep", spec, "--dir", d, "--executor", "slurm", "--dry-run").stdout
    rows = {ln.split()[0]: ln for ln in status.splitlines() if ln.split() and ln.split()[0] in names}
    assert all(" queued " in rows[n] and ("RUNNING" in rows[n] or "PENDING" in rows[n] or "COMPLETING" in rows[n])
               or " done " in rows[n] for n in names[:3]), status
    assert " new " in rows[cancelled] and f"job {ids[cancelled]} " in rows[cancelled], status
    # re-running the sweep submits only the cancelled run
    again = cli("sweep", spec, "--dir", d, "--executor", "slurm", "--quiet").stdout
    assert f"{cancelled}: submitted" in again and "1 submitted" in again, again
    assert recorded(d)[cancelled] != ids[cancelled] and {n: recorded(d)[n] for n in names[:3]} == \
        {n: ids[n] for n in names[:3]}

    # the same grid with the local executor, meanwhile
    cli("sweep", spec, "--dir", local, "--executor", "local", "--max-parallel", "2", "--quiet")
    states = wait_jobs(d, "train", 300)
    assert all(js.result == "success" for js in states.values()), {n: js.describe() for n, js in states.items()}
    done = cli("sweep", spec, "--dir", d, "--executor", "slurm", "--dry-run").stdout
    assert done.count(" done ") == 4 and "4 done" in done, done

    # probe-all on the cluster, collect: the same Dataset as the local executor's
    out = cli("probe-all", d, "--executor", "slurm", "--quiet").stdout
    assert "4 submitted" in out, out
    cli("probe-all", local, "--executor", "local", "--max-parallel", "2", "--quiet")
    states = wait_jobs(d, "probe", 300)
    assert all(js.result == "success" for js in states.values()), {n: js.describe() for n, js in states.items()}
    cli("collect", d)
    cli("collect", local)
    a, b = (xr.open_zarr(x / "collect.zarr").load() for x in (d, local))
    for ds in (a, b):  # where the sweep lies and when it was collected differ; run dirs -> run names
        for key in ("sweep_dir", "created_at"):
            ds.attrs.pop(key, None)
        if "source_steps" in ds.attrs:
            ds.attrs["source_steps"] = {Path(k).name: v for k, v in json.loads(ds.attrs["source_steps"]).items()}
    a, b = a.drop_vars("run_dir"), b.drop_vars("run_dir")
    xr.testing.assert_identical(a, b)
    assert a.sizes["run"] == 4 and np.isfinite(a["final_loss"].values).all()


# ------------------------------------------------------------- preemption: a real time-limit signal
def _steps_for(seconds: float, tmp_path: Path) -> int:
    """Training steps that take about ``seconds`` on one thread here (timed on a throwaway run)."""
    from twoclocks.training.train import train
    marks = {}
    train(tmp_path / "calibrate", dict(BASE, n_train=16, steps=400), progress=False,
          callback=lambda step, loss: marks.setdefault(step, time.perf_counter()))
    rate = 300 / (marks[400] - marks[100])
    return int(min(max(rate * seconds, 1500), 60000) // 100 * 100)


def test_time_limit_signal_requeues_and_checkpoints_match_a_local_run(slurm_cluster, tmp_path):
    import torch

    from twoclocks.sweep.state import last_checkpoint
    from twoclocks.training.train import train
    assert torch.get_num_threads() == 1  # tests/conftest.py: the reference run on one thread, as the job
    # a 1-minute limit, USR2 10 s before it. slurmctld checks limits coarsely and sends the signal up to
    # 30 s early (22.05: 10-30 s after the start with USR2@20 or @30), here some 20-50 s after the start:
    # 50 s of training are interrupted at least once, whatever this machine's speed
    steps = _steps_for(50, tmp_path)
    base = dict(BASE, n_train=16, steps=steps, saves_per_decade=2, log_every=100)
    spec = write_spec(tmp_path / "long.toml", base, {"seed": [0]},
                      dict(time_min=1, signal_delay_s=10, gpus_per_node=0, cpus_per_task=1, max_num_timeout=20))
    d = tmp_path / "cluster"
    cli("sweep", spec, "--dir", d, "--executor", "slurm", "--quiet")
    (name, job_id), = recorded(d).items()
    t0 = time.time()
    train(tmp_path / "reference", base | {"seed": 0}, progress=False)  # uninterrupted, meanwhile
    states = wait_jobs(d, "train", 420)
    wall = time.time() - t0
    assert states[name].result == "success", states[name].describe()

    log = job_log(d, job_id)
    starts = log.count("Starting with JobEnvironment")
    assert "Caught signal SIGUSR2" in log and starts >= 2, log[-3000:]  # slurmd's USR2, then a requeue
    assert "Requeued job" in log or "requeued" in log.lower()
    run, ref = d / name, tmp_path / "reference"
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))
    assert ckpts == sorted(p.name for p in (ref / "checkpoints").glob("*.pt")) and last_checkpoint(run) == steps
    for f in ckpts:  # bit-identical weights (and optimizer / generator state in resume.pt)
        x, y = (torch.load(r / "checkpoints" / f, map_location="cpu", weights_only=False) for r in (run, ref))
        assert _flat(x) == _flat(y), f
    losses = [[json.loads(ln)["loss"] for ln in (r / "log.jsonl").read_text().splitlines()] for r in (run, ref)]
    assert losses[0] == losses[1]
    print(f"{steps} steps, {starts} job starts, {wall:.0f} s")


def _flat(obj, prefix=""):
    """A nested checkpoint as {path: bytes} (tensors by their exact bits)."""
    import torch
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _flat(val, f"{prefix}/{key}").items()}
    if isinstance(obj, (list, tuple)):
        return {k: v for i, val in enumerate(obj) for k, v in _flat(val, f"{prefix}/{i}").items()}
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        return {prefix: (str(t.dtype), tuple(t.shape), t.view(-1).view(torch.uint8).numpy().tobytes()
                         if t.numel() else b"")}
    return {prefix: repr(obj)}


# ----------------------------------------------------------------------------- failures are reported
def test_failed_run_is_reported_with_its_log_and_error(slurm_cluster, tmp_path):
    import torch
    # a valid config that cannot run on this CPU node: the job fails when it moves to the device
    device, why = ("cuda:1000", "device") if torch.cuda.is_available() else ("cuda", "CUDA is not available")
    spec = write_spec(tmp_path / "bad.toml", dict(BASE, steps=20, n_train=16, device=device), {"seed": [0]},
                      dict(time_min=5, gpus_per_node=0))
    d = tmp_path / "cluster"
    cli("sweep", spec, "--dir", d, "--executor", "slurm", "--quiet")
    (name, job_id), = recorded(d).items()
    states = wait_jobs(d, "train", 120)
    assert states[name].failed, states[name].describe()
    r = cli("sweep", spec, "--dir", d, "--executor", "slurm", "--dry-run", check=2)
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith(name))
    log = states[name].log
    assert " failed " in row and f"job {job_id}" in row and str(log) in row, r.stdout
    assert why in row, row
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 1 run(s) failed on the cluster") and str(log) in err[0], err
    assert log.is_file() and why in log.read_text()
