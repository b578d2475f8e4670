"""Sweeps: spec expansion, a 2 G x 3 N local sweep that is interrupted and completed, the SLURM path
(submitit's sbatch script + a job run through submitit), probe fan-out, collect's tau_mem fits, lazy open."""
import dataclasses
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from twoclocks import TwoclocksError
from twoclocks.cli import app
from twoclocks.sweep import (RunTask, execute, expand, load_spec, open_sweep, plan_sweep, probe_all,
                             read_sweep, run_name, run_sweep, spec_from_options, submitit_folder)

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sweep_tiny.toml"
BASE = ["side=4", "model=tiny", "n_heldout=32", "n_hypercube=32", "n_noise=32", "batch=32", "lr=1e-3", "steps=12",
        "saves_per_decade=4", "log_every=4", "device='cpu'"]
GRID = ["group=2,4", "n_train=8,16,32"]
NAMES = [f"group={g}__n_train={n}" for g in (2, 4) for n in (8, 16, 32)]


def tiny_spec(**slurm):
    return spec_from_options(None, base=BASE, grid=GRID, slurm=[f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}"
                                                                 for k, v in slurm.items()])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from more threads; on a loaded machine 2 threads are several times slower."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------ spec
def test_spec_expansion_names_and_cli_equivalence():
    spec = load_spec(EXAMPLE)
    runs = expand(spec)
    assert [r["name"] for r in runs] == [f"group={g}__n_train={n}" for g in (2, 4) for n in (16, 32, 64)]
    assert runs[4]["overrides"] == {**spec.base, "group": 4, "n_train": 32}
    # the same sweep as CLI options
    opts = spec_from_options(None, base=[f"{k}={json.dumps(v)}" for k, v in spec.base.items()],
                             grid=["group=2,4", "n_train=[16, 32, 64]"])
    assert [r["overrides"] for r in expand(opts)] == [r["overrides"] for r in runs]
    # CLI options on top of a spec: replace an axis, add a nested one
    more = spec_from_options(spec, grid=["n_train=16", "rule_params.k=1,2"], base=["steps=10"])
    assert more.grid == {"group": [2, 4], "n_train": [16], "rule_params.k": [1, 2]}
    assert run_name({"lr": 1e-5, "model": "a/b c", "bf16": True, "rule_params.ks": [2, 3]}) == \
        "lr=1e-05__model=a-b-c__bf16=true__rule_params.ks=-2-3-"
    assert run_name({}) == "run"


@pytest.mark.parametrize("kw, match", [
    (dict(base=["nope=1"]), "not a config field"),
    (dict(grid=["group=[]"]), "non-empty list"),
    (dict(grid=["group=2,2"]), "twice"),
    (dict(base=["group=2"], grid=["group=2,4"]), "both in"),
    (dict(grid=["group=2,3"]), "run group=3: group size"),
    (dict(grid=["n_train"]), "KEY=VALUE"),
    (dict(slurm=["partitoin=gpu"]), "unknown \\[slurm\\] key"),
    (dict(probes=["nope.steps=last"]), "unknown probe"),
])
def test_spec_errors(kw, match):
    with pytest.raises(TwoclocksError, match=match):
        expand(spec_from_options(None, **{"base": BASE[:2], **kw} if "base" not in kw else kw))


def test_run_status_of_directories(tmp_path):
    from twoclocks.sweep import run_status
    assert run_status(tmp_path / "absent", {})[0] == "new"
    (tmp_path / "cut" / "data.zarr").mkdir(parents=True)  # a creation killed before config.json
    assert run_status(tmp_path / "cut", {}) == ("new", "restart an interrupted run creation")
    (tmp_path / "cut" / "notes.txt").write_text("mine")
    assert run_status(tmp_path / "cut", {})[0] == "conflict"  # not ours: never deleted


def test_probe_registry_declares_every_probe():
    from twoclocks.probes.registry import DerivedProbe, Probe, all_probes
    probes = [p for p in all_probes() if p.builtin]
    assert {"samples", "markov", "dsm-spectrum", "ce"} <= {p.name for p in probes}
    for p in probes:  # each is one kind, has a schema and a CLI command
        assert isinstance(p, Probe) != isinstance(p, DerivedProbe), p.name
        assert p.schema is not None and p.schema.name == p.cube, p.name
        assert runner.invoke(app, [p.name, "--help"]).exit_code == 0, p.name


# ------------------------------------------------------------------- a local sweep, killed and re-run
class Crash(Exception):
    pass


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """The 2 G x 3 N tiny sweep, in process (debug executor): the first run's job crashes at step 5
    (the sweep goes on), the sweep is killed (Ctrl-C) in the third run at step 7; then re-run."""
    import twoclocks.sweep.executors as T  # the trainer as the run jobs call it
    d = tmp_path_factory.mktemp("sweeps") / "tiny"
    real, calls = T.train, []

    def train(run_dir, overrides=None, resume=False, **kw):
        name = Path(run_dir).name
        calls.append((name, resume))
        fail = {NAMES[0]: (5, Crash), NAMES[2]: (7, KeyboardInterrupt)}.get(name)
        if fail and not resume:
            def die(step, loss):
                if step == fail[0]:
                    raise fail[1]()
            kw["callback"] = die
        return real(run_dir, overrides, resume=resume, **kw)

    spec = tiny_spec()
    info = {"dir": d, "spec": spec}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(T, "train", train)
        with pytest.raises(KeyboardInterrupt):
            run_sweep(spec, d, executor="debug", progress=False)
        info["calls1"], calls[:] = list(calls), []
        info["plan1"] = {p["name"]: p["status"] for p in plan_sweep(d, expand(spec))}
        info["mtimes1"] = {p: p.stat().st_mtime_ns for p in (d / NAMES[1]).rglob("*") if p.is_file()}
        info["report2"] = run_sweep(spec, d, executor="debug", progress=False)
        info["calls2"] = list(calls)
        info["mtimes2"] = {p: p.stat().st_mtime_ns for p in (d / NAMES[1]).rglob("*") if p.is_file()}
    return info


def test_interrupted_sweep_completes_only_what_was_missing(sweep_dir):
    s = sweep_dir
    assert s["calls1"] == [(n, False) for n in NAMES[:3]]  # killed in the third run: the rest never started
    assert s["plan1"] == {NAMES[0]: "resume", NAMES[1]: "done", NAMES[2]: "resume",
                          **{n: "new" for n in NAMES[3:]}}
    # the re-run resumes the two cut runs, starts the three missing, and leaves the finished one alone
    assert s["calls2"] == [(NAMES[0], True), (NAMES[2], True)] + [(n, False) for n in NAMES[3:]]
    assert [o["state"] for o in s["report2"]["outcomes"]] == ["done"] * 5
    assert s["mtimes2"] == s["mtimes1"] and len(s["mtimes1"]) > 5
    for name in NAMES:
        steps = sorted(int(p.stem[5:]) for p in (s["dir"] / name / "checkpoints").glob("step_*.pt"))
        assert steps == [0, 1, 2, 3, 6, 10, 12], name
    spec, runs = read_sweep(s["dir"])
    assert [r["name"] for r in runs] == NAMES and spec.grid == s["spec"].grid
    # a requeue is the same call again: here the run is finished, so it is skipped (no training)
    task = RunTask(s["dir"], NAMES[0], runs[0]["overrides"])
    again = task.checkpoint()
    assert again.function is task and again.result()["action"] == "skipped"


def test_sweep_cli(sweep_dir):
    res = runner.invoke(app, ["sweep", str(sweep_dir["dir"]), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "6 runs in" in res.output and "6 done" in res.output
    res = runner.invoke(app, ["sweep", str(sweep_dir["dir"]), "--base", "lr=0.5", "--dry-run"])
    assert res.exit_code == 2 and "lr=0.001 but the spec says 0.5" in res.output  # conflict: nothing submitted
    res = runner.invoke(app, ["sweep", "missing.toml"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "does not exist" in res.output
    res = runner.invoke(app, ["sweep", str(sweep_dir["dir"] / "new"), "--grid", "group=2,3", "--base", "side=4",
                              "--dry-run"])
    assert res.exit_code == 2 and "run group=3" in res.output
    res = runner.invoke(app, ["probe-all", str(sweep_dir["dir"]), "--probes", "nope"])
    assert res.exit_code == 2 and "unknown probe" in res.output


def test_local_executor_runs_a_job_in_a_subprocess(sweep_dir):
    d = sweep_dir["dir"]
    overrides = read_sweep(d)[1][1]["overrides"]
    out = execute([(NAMES[1], RunTask(d, NAMES[1], overrides))], "local", d, progress=False)
    assert out == [{"run": NAMES[1], "state": "done", "info": ""}]
    assert len(list((d / ".submitit").rglob("*_result.pkl"))) == 1  # it went through submitit's pickles


# ----------------------------------------------------------------------------------------- SLURM
def test_slurm_array_script_and_job(tmp_path):
    from submitit.core import submission, utils
    from submitit.slurm.slurm import SlurmJob
    mocked = pytest.importorskip("submitit.core.test_core")  # submitit's own sbatch/sacct mock
    d = tmp_path / "slurm"
    spec = tiny_spec(partition="gpu", time_min=90, gpus_per_node=2, mem_gb=16, cpus_per_task=4)
    dry = run_sweep(spec, d, executor="slurm", max_parallel=4, dry_run=True)
    assert not d.exists() and [p["status"] for p in dry["plan"]] == ["new"] * 6
    mock = mocked.MockedSubprocess(known_cmds=["srun"])
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGCONT, signal.SIGUSR2)}
    try:
        with mock.context():
            report = run_sweep(spec, d, executor="slurm", max_parallel=4)
            assert [o["info"] for o in report["outcomes"]] == [f"job 12_{i}" for i in range(6)]
            script = next((d / ".submitit").rglob("*_submission.sh")).read_text()
            lines = set(script.splitlines())
            for want in ("#SBATCH --array=0-5%4", "#SBATCH --gpus-per-node=2", "#SBATCH --time=90",
                         "#SBATCH --partition=gpu", "#SBATCH --mem=16GB", "#SBATCH --cpus-per-task=4",
                         "#SBATCH --requeue", "#SBATCH --signal=USR2@120"):
                assert want in lines, want
            assert script == dry["script"]  # --dry-run shows exactly what is submitted
            # run array task 3 the way SLURM would: submitit's entry point, in this process
            with mock.job_context("12_3"):
                submission.process_job(submitit_folder(d))
            job = SlurmJob(folder=submitit_folder(d), job_id="12_3")
            assert job.result() == {"run": NAMES[3], "action": "trained", "step": 12}
            delayed = utils.DelayedSubmission.load(job.paths.submitted_pickle)
            assert isinstance(delayed.function, RunTask) and delayed.function.checkpoint().function is delayed.function
            # re-running the sweep submits nothing while the other jobs are still queued / running
            again = run_sweep(spec, d, executor="slurm", max_parallel=4)
            assert again["outcomes"] == [] and mock.job_count == 13
            assert [p["status"] for p in again["plan"]] == ["queued"] * 3 + ["done"] + ["queued"] * 2
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    # a real probe fanned out over that sweep: only the trained run is probed
    rep = probe_all(d, {"samples": {"steps": "last"}}, executor="debug", progress=False)
    assert [p["status"] for p in rep["plan"]] == ["not trained"] * 3 + ["ready"] + ["not trained"] * 2
    assert rep["outcomes"] == [{"run": NAMES[3], "state": "done", "info": ""}]
    cube = xr.open_zarr(d / NAMES[3] / "probes" / "samples.zarr")
    assert cube["step"].values.tolist() == [12] and "sample_mem" in cube


# ---------------------------------------------------------------------- probe fan-out and collect
GRID_STEPS = np.unique(np.round(np.logspace(0, 4, 49)).astype(int))


def designed_tau(group, n_train):
    """A designed tau_mem on the evaluation grid: c N^alpha with a G-dependent prefactor."""
    target = (2.0 if group == 2 else 5.0) * n_train ** 1.3
    return int(GRID_STEPS[GRID_STEPS >= target][0])


@dataclasses.dataclass(frozen=True)
class NoOptions:
    pass


def fake_samples_probe():
    """A stand-in samples probe (registered in place of the real one) writing designed curves."""
    from twoclocks.probes.registry import DerivedProbe
    return DerivedProbe(name="samples", cube="samples", help="fake", options=NoOptions, schema=None,
                        derive=lambda run, opts: fake_samples(run.path))


def fake_samples(run_dir, progress=False):
    """Designed curves: memorization 0.5 from tau_mem on, accuracy 0.95 from tau_mem / 4 on (a real
    probe on 12-step runs never memorizes)."""
    cfg = json.loads((Path(run_dir) / "config.json").read_text())["config"]
    tau = designed_tau(cfg["group"], cfg["n_train"])
    mem = np.where(GRID_STEPS >= tau, 0.5, 0.0)
    acc = np.where(GRID_STEPS >= tau / 4, 0.95, 0.1)
    ds = xr.Dataset({"sample_mem": ("step", mem, {"long_name": "m", "units": "1"}),
                     "sample_acc": ("step", acc, {"long_name": "a", "units": "1"}),
                     "group_acc": ("step", acc, {"long_name": "g", "units": "1"}),
                     "group_mem": ("step", mem, {"long_name": "g", "units": "1"})},
                    coords={"step": GRID_STEPS}, attrs={"source_steps": json.dumps(GRID_STEPS.tolist())})
    fake_samples.calls.append(Path(run_dir).name)
    return ds


def test_probe_all_collect_and_open(sweep_dir, monkeypatch, tmp_path):
    d = sweep_dir["dir"]
    from twoclocks.probes import registry
    registry.all_probes()  # the built-ins are loaded: the fake replaces the real samples probe
    fake_samples.calls = []
    monkeypatch.setitem(registry._REGISTRY, "samples", fake_samples_probe())
    rep = probe_all(d, ["samples"], executor="debug", progress=False)
    assert sorted(fake_samples.calls) == sorted(NAMES)  # one task per run
    assert all(o["state"] == "done" for o in rep["outcomes"])

    res = runner.invoke(app, ["collect", str(d), "--out", str(tmp_path / "c.zarr")])
    assert res.exit_code == 0, res.output
    assert "fit tau_mem = c N^alpha [group=2]" in res.output and "pooled over group" in res.output
    ds = xr.open_zarr(tmp_path / "c.zarr").load()
    assert ds["run"].values.tolist() == NAMES
    assert {"group", "n_train"} <= set(ds.coords) and "model" not in ds.coords  # only varying config values
    assert json.loads(ds.attrs["constant_config"])["model"] == "tiny"
    tau = ds["tau_mem"].values
    assert tau.tolist() == [designed_tau(g, n) for g, n in zip(ds.group.values, ds.n_train.values)]
    assert np.allclose(ds["final_sample_acc"], 0.95) and np.allclose(ds["final_sample_mem"], 0.5)
    assert np.isfinite(ds["final_loss"]).all() and (ds["window"] > 0).all()
    # the fits against an independent hand fit (numpy.polyfit on log10) of the collected numbers
    labels = ds["fit_label"].values.tolist()
    assert labels == ["group=2", "group=4", "all runs (pooled over group)"]
    for j, members in enumerate([ds.group.values == 2, ds.group.values == 4, np.ones(6, bool)]):
        assert ds["fit_member"].values[j].tolist() == members.tolist()
        x, y = np.log10(ds.n_train.values[members].astype(float)), np.log10(tau[members])
        slope, intercept = np.polyfit(x, y, 1)
        r2 = np.corrcoef(x, y)[0, 1] ** 2
        f = ds.isel(fit=j)
        assert np.isclose(float(f.fit_alpha), slope) and np.isclose(float(f.fit_c), 10 ** intercept)
        assert np.isclose(float(f.fit_r2), r2) and int(f.fit_n) == members.sum()
    assert abs(float(ds.fit_alpha[0]) - 1.3) < 0.15  # and it recovers the designed exponent

    lazy = open_sweep(d, "samples")
    assert lazy["sample_mem"].chunks is not None and lazy.sizes["run"] == 6  # dask-backed
    assert lazy["group"].values.tolist() == [2, 2, 2, 4, 4, 4]
    one = xr.open_zarr(d / NAMES[4] / "probes" / "samples.zarr")
    assert np.array_equal(lazy["sample_mem"].sel(run=NAMES[4]).values, one["sample_mem"].values)
