"""Sweeps: grids of runs trained and probed through submitit (local, debug or SLURM), resumable,
collected into one labelled Dataset (issue 9).

A sweep spec is a TOML file (or the same thing as CLI options, see ``twoclocks-probe sweep --help``)::

    [base]                 # TrainConfig fields shared by every run (training/config.py)
    side = 4
    model = "tiny"
    steps = 2000
    [grid]                 # lists: one run per point of their cartesian product (in this order)
    group = [2, 4]
    n_train = [16, 32, 64]
    [grid.rule_params]     # a dict-valued field's entries are axes too ("rule_params.k")
    # k = [2, 3]
    [slurm]                # only for --executor slurm (see SLURM_KEYS)
    partition = "gpu"
    time_min = 240
    gpus_per_node = 1
    max_parallel = 16
    [probes.samples]       # defaults of `probe-all`: one table per probe, holding its options
    steps = "all"

Layout of a sweep directory::

    SWEEP_DIR/sweep.json   the expanded spec: the spec, and per run its name, grid point, config overrides
    SWEEP_DIR/NAME/        one run directory per grid point (training/train.py), NAME e.g. group=2__n_train=16
    SWEEP_DIR/jobs.json    SLURM job ids per run (so a re-run does not submit a run that is still queued)
    SWEEP_DIR/collect.zarr the cross-run Dataset (`collect`)
    SWEEP_DIR/.submitit/   submitit's pickles, logs and sbatch scripts;  SWEEP_DIR/.locks/  one lock per run

Run names: ``key=value`` for every grid axis, joined by ``__`` in the grid's order; floats in their
shortest round-trip form (1e-05, 0.0003), characters other than ``A-Za-z0-9._+=-`` replaced by ``-``.
They depend only on the point, so a re-run (or an extended grid) finds the same directories.

What each run's job does (decided when the job runs, so a requeued job simply continues): finished
(last checkpoint >= steps) -> skip; config.json present -> ``train(..., resume=True)``; otherwise
start it. A config.json that disagrees with the spec (other than steps / device / bookkeeping) is a
conflict, reported before anything is submitted. One job per run is the single writer of the run
directory (an flock in ``.locks``; a second job on the same run fails with a clear message).

Executors (``--executor``): ``local`` runs each run as a subprocess on this machine through
``submitit.LocalExecutor``, at most ``max_parallel`` at a time (default: one per visible GPU, else 1;
each job gets its own GPU), and waits; ``debug`` runs them one after the other in this process
through ``submitit.DebugExecutor`` (tests, debugging; same task objects); ``slurm`` submits one job
array through ``submitit.SlurmExecutor`` with ``%max_parallel`` as its concurrency cap and returns
(re-running it then skips runs whose recorded job is still pending or running). Local CPU jobs share
the cores: each gets ``cpu_count // max_parallel`` torch threads.
SLURM requeue: the tasks are ``submitit.helpers.Checkpointable``; on timeout (USR2 ``signal_delay_s``
before the limit) or preemption submitit requeues the same call, which resumes from the run's last
``resume.pt`` (at most ``resume_every`` steps of work are redone); ``--requeue`` is set in the sbatch
script so SLURM itself may requeue preempted jobs too.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import inspect
import itertools
import json
import os
import re
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from submitit.core.utils import DelayedSubmission
from submitit.helpers import Checkpointable

from twoclocks import TwoclocksError

__all__ = ["SweepSpec", "load_spec", "spec_from_dict", "spec_from_options", "expand", "run_name", "run_status",
           "plan_sweep", "run_sweep", "read_sweep", "RunTask", "ProbeTask", "Probe", "PROBES", "probe_all",
           "collect", "fit_groups", "open_sweep", "execute", "write_sweep", "last_checkpoint", "active_jobs",
           "slurm_parameters", "slurm_script", "format_plan", "format_outcomes", "format_collect", "EXECUTORS"]

SCHEMA_VERSION = 1
EXECUTORS = ("local", "debug", "slurm")
#: config fields a resumed run may change (training/train.py prepare_run_dir)
CHANGEABLE = {"steps", "device", "bf16", "log_every", "resume_every"}
DICT_FIELDS = ("rule_params", "encoding_params")
#: [slurm] keys -> meaning (defaults in brackets)
SLURM_KEYS = {
    "partition": "partition name", "time_min": "time limit per job in minutes [1440]",
    "gpus_per_node": "GPUs per job [1]", "mem_gb": "memory per job in GB", "cpus_per_task": "CPUs per job",
    "max_parallel": "array concurrency cap (%K) [all]", "account": "account", "qos": "quality of service",
    "constraint": "node constraint", "setup": "shell lines run before the job (list)",
    "requeue": "add #SBATCH --requeue [true]", "max_num_timeout": "requeues after timeouts [10]",
    "signal_delay_s": "seconds between the USR2 signal and the time limit [120]", "job_name": "job name",
    "extra": "table of further sbatch options, e.g. {mail-type = 'END'}",
}
LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # LocalExecutor kills a job after timeout_min (its default is 2 minutes)
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")
_CREATE_LEFTOVERS = ("data.zarr", "checkpoints", ".config.json.tmp", ".data.zarr.")  # create_run's files


# ----------------------------------------------------------------------------------------- the spec
@dataclass
class SweepSpec:
    """A sweep: ``base`` overrides shared by every run, ``grid`` axes (flat keys, 'rule_params.k' for
    dict fields) -> value lists, ``slurm`` settings, ``probes`` name -> options for probe-all."""
    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    slurm: dict = field(default_factory=dict)
    probes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"base": self.base, "grid": self.grid, "slurm": self.slurm, "probes": self.probes}


def _config_fields() -> list[str]:
    from twoclocks.training.config import TrainConfig
    return list(TrainConfig.__dataclass_fields__)


def _flatten_grid(grid: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in grid.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            if prefix or k not in DICT_FIELDS:
                raise TwoclocksError(f"[grid] {key}: only {' and '.join(DICT_FIELDS)} may hold a table of axes; "
                                     "give a list of values, e.g. n_train = [16, 32]")
            out.update(_flatten_grid(v, key + "."))
        else:
            out[key] = v
    return out


def spec_from_dict(d: dict, source: str = "the sweep spec") -> SweepSpec:
    """Validate a spec dict (TOML tables base, grid, slurm, probes) into a :class:`SweepSpec`."""
    unknown = set(d) - {"base", "grid", "slurm", "probes"}
    if unknown:
        raise TwoclocksError(f"{source}: unknown table(s) {sorted(unknown)}; use [base], [grid], [slurm] and "
                             "[probes]")
    fields = _config_fields()
    base = dict(d.get("base", {}))
    grid = _flatten_grid(dict(d.get("grid", {})))
    for key in list(base) + [k.split(".")[0] for k in grid]:
        if key not in fields:
            raise TwoclocksError(f"{source}: {key!r} is not a config field; choose from {', '.join(fields)}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise TwoclocksError(f"{source}: [grid] {key} must be a non-empty list of values, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) < len(values):
            raise TwoclocksError(f"{source}: [grid] {key} lists a value twice: {values!r}")
        top, _, sub = key.partition(".")
        if key in base or (sub and sub in base.get(top, {})):
            raise TwoclocksError(f"{source}: {key} is both in [base] and in [grid]; keep one")
    slurm = dict(d.get("slurm", {}))
    bad = sorted(set(slurm) - set(SLURM_KEYS))
    if bad:
        raise TwoclocksError(f"{source}: unknown [slurm] key(s) {bad}; choose from {', '.join(SLURM_KEYS)}")
    probes = d.get("probes", {})
    if isinstance(probes, list):  # probes = ["samples", "dsm-spectrum"]: defaults
        probes = {p: {} for p in probes}
    if not isinstance(probes, dict) or not all(isinstance(v, dict) for v in probes.values()):
        raise TwoclocksError(f"{source}: [probes] must hold one table of options per probe, e.g. [probes.samples]")
    for name in probes:
        _probe(name)
    return SweepSpec(base, grid, slurm, {k: dict(v) for k, v in probes.items()})


def load_spec(path) -> SweepSpec:
    """Read a TOML sweep spec (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise TwoclocksError(f"sweep spec {path} does not exist")
    try:
        d = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TwoclocksError(f"{path} is not valid TOML ({e})") from None
    return spec_from_dict(d, str(path))


def parse_value(text: str):
    """A CLI value as TOML (2 -> int, 1e-4 -> float, true -> bool, [1, 2] -> list), else the string."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def _assignment(text: str, what: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip() or not value.strip():
        raise TwoclocksError(f"{what} {text!r}: use KEY=VALUE, e.g. {what} n_train=16")
    return key.strip(), value


def _set(d: dict, key: str, value) -> None:
    top, _, sub = key.partition(".")
    if sub:
        d.setdefault(top, {})[sub] = value
    else:
        d[key] = value


def spec_from_options(spec: SweepSpec | None = None, base=(), grid=(), slurm=(), probes=()) -> SweepSpec:
    """A spec from CLI options, on top of ``spec`` (options win): ``base`` 'KEY=VALUE', ``grid``
    'KEY=V1,V2,...' (or 'KEY=[...]' in TOML), ``slurm`` 'KEY=VALUE', ``probes`` 'PROBE.KEY=VALUE'."""
    d = {k: json.loads(json.dumps(v)) for k, v in (spec or SweepSpec()).to_dict().items()}
    nested_grid = {}
    for k, v in d["grid"].items():
        _set(nested_grid, k, v)
    d["grid"] = nested_grid
    for text in base:
        k, v = _assignment(text, "--base")
        _set(d["base"], k, parse_value(v))
    for text in grid:
        k, v = _assignment(text, "--grid")
        values = parse_value(v) if v.strip().startswith("[") else [parse_value(x) for x in v.split(",")]
        _set(d["grid"], k, values)
    for text in slurm:
        k, v = _assignment(text, "--slurm")
        d["slurm"][k] = parse_value(v)
    for text in probes:
        k, v = _assignment(text, "--option")
        name, dot, opt = k.partition(".")
        if not dot:
            raise TwoclocksError(f"--option {text!r}: use PROBE.KEY=VALUE, e.g. --option samples.steps=last")
        d["probes"].setdefault(name, {})[opt] = parse_value(v)
    return spec_from_dict(d, "the sweep options")


def _fmt_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # shortest round-trip form: stable and unique
    if isinstance(v, (int, str)):
        return str(v)
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def run_name(point: dict) -> str:
    """The run directory name of a grid point (module docstring); 'run' for an empty grid."""
    if not point:
        return "run"
    return "__".join(f"{k}={_NAME_UNSAFE.sub('-', _fmt_value(v))}" for k, v in point.items())


def expand(spec: SweepSpec) -> list[dict]:
    """The runs of a spec: [{name, point, overrides}] in cartesian-product order (first axis slowest).
    Every point is validated by building its TrainConfig."""
    from twoclocks.training.config import TrainConfig
    keys = list(spec.grid)
    runs, names = [], {}
    for values in itertools.product(*(spec.grid[k] for k in keys)):
        point = dict(zip(keys, values))
        overrides = json.loads(json.dumps(spec.base))
        for k, v in point.items():
            _set(overrides, k, v)
        name = run_name(point)
        if name in names:
            raise TwoclocksError(f"grid points {names[name]} and {point} both give the run name {name!r}; "
                                 "make the values distinct")
        names[name] = point
        try:
            TrainConfig.from_dict(overrides)
        except TwoclocksError as e:
            raise TwoclocksError(f"run {name}: {e}") from None
        except TypeError as e:
            raise TwoclocksError(f"run {name}: {e}") from None
        runs.append({"name": name, "point": point, "overrides": overrides})
    return runs


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


# -------------------------------------------------------------------------------------- the tasks
def _limit_threads(n: int | None) -> None:
    if n:
        import torch
        torch.set_num_threads(n)


class RunTask(Checkpointable):
    """The job of one run: train it to completion (skip / resume / start, decided when it runs).
    Requeue (:meth:`checkpoint`) resubmits the same call, which resumes from disk."""

    threads: int | None = None  # torch CPU threads (set by the local executor to share the cores)

    def __init__(self, sweep_dir, name: str, overrides: dict):
        self.sweep_dir, self.name, self.overrides = str(sweep_dir), name, dict(overrides)

    def __call__(self) -> dict:
        run_dir = Path(self.sweep_dir) / self.name
        with _exclusive(Path(self.sweep_dir), self.name):
            status, detail = run_status(run_dir, self.overrides)
            if status == "conflict":
                raise TwoclocksError(detail)
            if status == "done":
                return {"run": self.name, "action": "skipped", "step": last_checkpoint(run_dir)}
            if status == "new":
                _clear_interrupted_creation(run_dir)
            train = importlib.import_module("twoclocks.training.train").train  # torch only when training
            _limit_threads(self.threads)
            train(run_dir, self.overrides, resume=status == "resume", progress=False)
        return {"run": self.name, "action": "resumed" if status == "resume" else "trained",
                "step": last_checkpoint(run_dir)}

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        """On timeout / preemption: requeue the same call (training resumes from its last save)."""
        return DelayedSubmission(self, *args, **kwargs)


class ProbeTask(Checkpointable):
    """The job of one run in probe-all: run the probes in order (each computes only its missing
    pieces, store.Cube), as the single writer of the run's stores."""

    threads: int | None = None

    def __init__(self, sweep_dir, name: str, probes: dict, device: str | None = None):
        self.sweep_dir, self.name, self.probes, self.device = str(sweep_dir), name, dict(probes), device

    def __call__(self) -> dict:
        run_dir = Path(self.sweep_dir) / self.name
        _limit_threads(self.threads)
        arch = _read_meta(run_dir).get("config", {}).get("arch", "dit")
        done = {}
        with _exclusive(Path(self.sweep_dir), self.name):
            for name, opts in self.probes.items():
                probe = _probe(name)
                need = getattr(probe, "arch", None)
                if need and need != arch:
                    done[name] = f"skipped: needs a {need} run"
                    continue
                opts = dict(opts)
                if self.device is not None and "device" in _signature(probe):
                    opts.setdefault("device", self.device)
                probe(run_dir, **opts)
                done[name] = "done"
        return {"run": self.name, "probes": done}

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        """On timeout / preemption: requeue the same call (the cubes keep their finished pieces)."""
        return DelayedSubmission(self, *args, **kwargs)


# ---------------------------------------------------------------------------------- probe registry
@dataclass(frozen=True)
class Probe:
    """A per-run probe, imported lazily: ``module.function(run_dir, **options)`` writing
    ``RUN/probes/cube.zarr``; ``arch``: the only architecture it applies to (None: any)."""
    module: str
    function: str
    cube: str
    arch: str | None = None

    def resolve(self):
        try:
            mod = importlib.import_module(self.module)
        except ImportError as e:
            raise TwoclocksError(f"probe module {self.module} cannot be imported ({e})") from None
        fn = getattr(mod, self.function, None)
        if fn is None:
            raise TwoclocksError(f"{self.module} has no function {self.function}; the probe is not available yet")
        return fn

    def __call__(self, run_dir, **opts):
        fn = self.resolve()
        if "progress" in inspect.signature(fn).parameters:
            opts.setdefault("progress", False)
        return fn(str(run_dir), **opts)


#: probe name (as on the command line) -> the per-run function probe-all calls
PROBES = {
    "samples": Probe("twoclocks.probes.samples", "run_samples", "samples"),
    "dsm-spectrum": Probe("twoclocks.probes.dsm", "run_dsm_spectrum", "dsm_spectrum", arch="dit"),
    "ce": Probe("twoclocks.probes.ce", "ce_probe", "ce", arch="gpt"),
    "basin": Probe("twoclocks.landscape.basin", "run_basin", "basin", arch="dit"),
    "plane": Probe("twoclocks.landscape.plane", "run_plane", "plane", arch="dit"),
    "markov": Probe("twoclocks.probes.markov", "compute_markov", "markov"),  # needs samples first
}


def _probe(name: str):
    if name not in PROBES:
        raise TwoclocksError(f"unknown probe {name!r}; choose from {', '.join(PROBES)}")
    return PROBES[name]


def _signature(probe) -> set[str]:
    fn = probe.resolve() if isinstance(probe, Probe) else probe
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return {"*"} | set(params)
    return set(list(params)[1:])


def _check_probe_options(probes: dict) -> None:
    for name, opts in probes.items():
        accepted = _signature(_probe(name))
        bad = sorted(k for k in opts if k not in accepted and "*" not in accepted)
        if bad:
            raise TwoclocksError(f"probe {name} has no option {', '.join(bad)}; its options: "
                                 f"{', '.join(sorted(accepted - {'progress'}))}")


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


def _submitit_folder(sweep_dir: Path) -> Path:
    return (Path(sweep_dir) / ".submitit" / "%j").absolute()


def slurm_script(sweep_dir, slurm: dict, n_jobs: int, max_parallel: int | None = None) -> str:
    """The sbatch script a slurm submission of ``n_jobs`` tasks writes (without submitting: the same
    function and parameters submitit's SlurmExecutor uses)."""
    import shlex
    import sys
    from submitit.slurm.slurm import _make_sbatch_string
    folder = _submitit_folder(sweep_dir)
    params = slurm_parameters(slurm, n_jobs, max_parallel, _job_name(sweep_dir))
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=n_jobs if n_jobs > 1 else None,
                               **params)


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
    jobs = {n: SlurmJob(folder=_submitit_folder(sweep_dir), job_id=r["job_id"]) for n, r in recs.items()}
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


# --------------------------------------------------------------------------------------- executing
def _last_line(err) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(err).__name__)[:300]


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
    import submitit
    folder = _submitit_folder(sweep_dir)
    if executor == "debug":
        from twoclocks.progress import track
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
        ex.update_parameters(**slurm_parameters(slurm or {}, len(tasks), max_parallel, _job_name(sweep_dir)))
        with ex.batch():
            jobs = [ex.submit(task) for _, task in tasks]
        _record_jobs(sweep_dir, kind, {name: job.job_id for (name, _), job in zip(tasks, jobs)})
        return [{"run": name, "state": "submitted", "info": f"job {job.job_id}"} for (name, _), job in zip(tasks, jobs)]
    return _execute_local(tasks, folder, max_parallel, progress, kind, submitit)


def _visible_gpus() -> int:
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return len([g for g in env.split(",") if g.strip()])
    import torch
    return torch.cuda.device_count()


def _execute_local(tasks, folder, max_parallel, progress, kind, submitit) -> list[dict]:
    """LocalExecutor: at most ``max_parallel`` subprocesses at a time, each on its own GPU if any."""
    n_gpu = _visible_gpus()
    cap = max_parallel or max(n_gpu, 1)
    threads = None if n_gpu else max(1, (os.cpu_count() or 1) // cap)  # CPU jobs share the cores
    ex = submitit.LocalExecutor(folder)
    pending, running, out = list(tasks), {}, {}
    bar = None
    if progress:
        from twoclocks.progress import make_progress
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


# ------------------------------------------------------------------------------------------- sweep
def plan_sweep(sweep_dir, runs: list[dict], executor: str | None = None) -> list[dict]:
    """Each run with its status ('done', 'resume', 'new', 'conflict', or 'queued' when a recorded
    SLURM job of it is still pending/running) and a detail string."""
    sweep_dir = Path(sweep_dir)
    queued = active_jobs(sweep_dir, "train") if executor == "slurm" else {}
    plan = []
    for r in runs:
        status, detail = run_status(sweep_dir / r["name"], r["overrides"])
        if r["name"] in queued and status in ("new", "resume"):
            status, detail = "queued", queued[r["name"]]
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
        _check_probe_options(spec.probes)
    plan = plan_sweep(sweep_dir, runs, executor)
    conflicts = [p for p in plan if p["status"] == "conflict"]
    if conflicts:
        raise TwoclocksError(f"{len(conflicts)} run(s) conflict with the spec, nothing was submitted: "
                             f"{conflicts[0]['detail']}")
    todo = [p for p in plan if p["status"] in ("new", "resume")]
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
def _cube_coverage(run_dir: Path, cube: str) -> str:
    path = run_dir / "probes" / f"{cube}.zarr"
    if not path.exists():
        return "new" if not (run_dir / "probes" / f".{cube}.parts").exists() else "partial (not assembled)"
    try:
        stored = set(json.loads(json.loads((path / ".zattrs").read_text()).get("source_steps", "[]")))
    except (OSError, ValueError):
        return "present"
    have = set(int(m.group(1)) for p in (run_dir / "checkpoints").iterdir() if (m := _CKPT.match(p.name)))
    return f"{len(stored & have)}/{len(have)} checkpoints"


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
    _check_probe_options(probes)
    if runs is not None:
        unknown = sorted(set(runs) - {r["name"] for r in all_runs})
        if unknown:
            raise TwoclocksError(f"run(s) {unknown} are not in {sweep_dir}/sweep.json")
        all_runs = [r for r in all_runs if r["name"] in runs]
    queued = active_jobs(sweep_dir, "probe") if executor == "slurm" else {}
    plan = []
    for r in all_runs:
        run_dir = sweep_dir / r["name"]
        status, detail = run_status(run_dir, r["overrides"])
        if status != "done":
            plan.append({"name": r["name"], "status": "not trained", "detail": f"{status} {detail}".strip()})
        elif r["name"] in queued:
            plan.append({"name": r["name"], "status": "queued", "detail": queued[r["name"]]})
        else:
            arch = _read_meta(run_dir).get("config", {}).get("arch", "dit")
            cov = ", ".join(f"{p} " + (f"n/a ({need} only)" if (need := getattr(_probe(p), "arch", None))
                                       and need != arch else _cube_coverage(run_dir, getattr(_probe(p), "cube", p)))
                            for p in probes)
            plan.append({"name": r["name"], "status": "ready", "detail": cov})
    todo = [p for p in plan if p["status"] == "ready"]
    script = slurm_script(sweep_dir, spec.slurm, len(todo), max_parallel) if executor == "slurm" and todo else None
    report = {"sweep_dir": str(sweep_dir), "plan": plan, "outcomes": [], "script": script, "executor": executor}
    if dry_run:
        return report
    tasks = [(p["name"], ProbeTask(sweep_dir, p["name"], probes, device)) for p in todo]
    report["outcomes"] = execute(tasks, executor, sweep_dir, spec.slurm, max_parallel, progress, "probe")
    return report


# ----------------------------------------------------------------------------------------- collect
def _final_metrics(run_dir: Path) -> dict:
    import xarray as xr
    ds = xr.open_zarr(run_dir / "probes" / "samples.zarr", consolidated=True)
    ds = ds.sel(step=ds["step"] >= 0)
    last = ds.isel(step=-1)
    out = {"final_step": float(last["step"])}
    for v in ("sample_acc", "sample_mem", "group_acc", "group_mem"):
        out[f"final_{v}"] = float(last[v]) if v in ds else np.nan
    out["final_loss"] = np.nan
    log = run_dir / "log.jsonl"
    if log.is_file():
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        if lines:
            out["final_loss"] = float(json.loads(lines[-1])["loss"])
    return out


def fit_groups(cfgs: list[dict], tau, pools=((),)) -> list[dict]:
    """tau = c N^alpha fits (probes.clocks.fit_power_law: least squares of ln tau on ln N) over groups
    of runs whose configs are equal in everything but N, seeds and bookkeeping (clocks.NOT_GROUPING)
    and the fields of a pool level: one list of fits per level (e.g. () per model and G, ('group',)
    pooled over G as in the paper's Table 4). A group needs >= 2 distinct N; a pooled group equal to
    an unpooled one is not repeated. Returns [{label, pooled_over, members (bool mask), c, alpha, r2, n}]."""
    from twoclocks.probes.clocks import NOT_GROUPING, fit_power_law
    tau = np.asarray(tau, float)
    fields = list(cfgs[0]) if cfgs else []
    enc = [{f: json.dumps(c.get(f), sort_keys=True) for f in fields} for c in cfgs]
    fits, seen = [], set()
    for pool in pools:
        skip = set(NOT_GROUPING) | set(pool)
        keys = [tuple((f, e[f]) for f in fields if f not in skip) for e in enc]
        groups = list(dict.fromkeys(keys))
        varying = [f for f in fields if f not in skip and len({dict(k)[f] for k in groups}) > 1]
        for key in groups:
            members = np.array([k == key for k in keys])
            n = np.array([c["n_train"] for c in cfgs], float)[members]
            if len(np.unique(n)) < 2 or members.tobytes() in seen:
                continue
            seen.add(members.tobytes())
            label = ", ".join(f"{f}={json.loads(dict(key)[f])}" for f in varying) or "all runs"
            if pool:
                label += f" (pooled over {', '.join(pool)})"
            fits.append({"label": label, "pooled_over": ",".join(pool), "members": members,
                         **fit_power_law(n, tau[members])})
    return fits


def collect(sweep_dir, out=None, pool=("group",), k: int | None = None, acc_threshold: float | None = None,
            mem_threshold: float | None = None, mem_adaptive: bool = False, write: bool = True):
    """One Dataset over the runs of a sweep that have probes/samples.zarr: dim ``run`` (the run names;
    ``run_dir`` and the config values that vary as coords), the clocks and window
    (probes.clocks.compute_clocks), the final sample accuracy / memorization / training loss, and the
    tau_mem = c N^alpha fits (dim ``fit``: per group of runs equal in everything but N and seeds, and
    pooled over ``pool``; natural-log least squares, c the prefactor in steps). Written to ``out``
    (default SWEEP_DIR/collect.zarr) unless ``write`` is False."""
    from twoclocks.probes import clocks as C
    from twoclocks.store import write_dataset
    sweep_dir = Path(sweep_dir)
    spec, runs = read_sweep(sweep_dir)
    have = [r for r in runs if (sweep_dir / r["name"] / "probes" / "samples.zarr").exists()]
    missing = [r["name"] for r in runs if r not in have]
    if not have:
        raise TwoclocksError(f"no run of {sweep_dir} has probes/samples.zarr yet; run "
                             f"`twoclocks-probe probe-all {sweep_dir} --probes samples` first")
    if out is not None and Path(out).suffix != ".zarr":
        raise TwoclocksError(f"--out {out}: give a path ending in .zarr")
    opts = {"k": k, "acc_threshold": acc_threshold, "mem_threshold": mem_threshold}
    dirs = [sweep_dir / r["name"] for r in have]
    ds = C.compute_clocks([str(d) for d in dirs], mem_adaptive=mem_adaptive,
                          **{key: v for key, v in opts.items() if v is not None})
    ds = ds.drop_vars([v for v in ds.variables if str(v).startswith("fit")])
    ds = ds.assign_coords(run_dir=("run", [str(d) for d in dirs], {"long_name": "run directory"}),
                          run=("run", [r["name"] for r in have], {"long_name": "run name (its grid point)"}))
    cfgs = [_read_meta(d)["config"] for d in dirs]
    fields = [f for f in _config_fields() if f in ds.coords]
    axes = {key.split(".")[0] for key in spec.grid}
    constant = [f for f in fields if f not in axes and len(np.unique(ds[f].values)) == 1]
    ds.attrs["constant_config"] = json.dumps({f: cfgs[0][f] for f in constant})
    ds = ds.drop_vars(constant)
    metrics = [_final_metrics(d) for d in dirs]
    longs = {"final_step": ("last evaluated checkpoint step", "steps"),
             "final_sample_acc": ("sample accuracy at the last evaluated step", "1"),
             "final_sample_mem": ("sample memorization at the last evaluated step", "1"),
             "final_group_acc": ("group accuracy at the last evaluated step", "1"),
             "final_group_mem": ("group memorization at the last evaluated step", "1"),
             "final_loss": ("training loss at the last log interval (EDM loss for dit, cross-entropy for gpt)",
                            "1")}
    for key, (long, units) in longs.items():
        ds[key] = ("run", np.array([m[key] for m in metrics], float), {"long_name": long, "units": units})
    pools = [()] + ([tuple(pool)] if pool else [])
    bad = [p for p in (pool or ()) if p not in _config_fields()]
    if bad:
        raise TwoclocksError(f"--pool {', '.join(bad)}: not a config field")
    fits = fit_groups(cfgs, ds["tau_mem"].values, pools)
    ds = ds.assign_coords(fit=("fit", np.arange(len(fits)), {"long_name": "power-law fit group"}))
    ds["fit_label"] = ("fit", np.array([f["label"] for f in fits], dtype=str), {"long_name": "the group's runs"})
    ds["fit_pooled_over"] = ("fit", np.array([f["pooled_over"] for f in fits], dtype=str),
                             {"long_name": "config fields pooled over (empty: none)"})
    ds["fit_member"] = (("fit", "run"), np.array([f["members"] for f in fits], bool).reshape(len(fits), len(have)),
                        {"long_name": "run is in the fit group", "units": "1"})
    for key, long, units in (("c", "prefactor c of tau_mem = c N^alpha", "steps"),
                             ("alpha", "exponent alpha of tau_mem = c N^alpha", "1"),
                             ("r2", "R^2 of the ln tau_mem vs ln N least-squares line", "1"),
                             ("n", "number of runs with a finite tau_mem in the fit", "1")):
        ds[f"fit_{key}"] = ("fit", np.array([f[key] for f in fits], int if key == "n" else float),
                            {"long_name": long, "units": units})
    import twoclocks
    ds.attrs.update({"sweep_dir": str(sweep_dir.resolve()), "sweep_spec": json.dumps(spec.to_dict()),
                     "missing_samples": json.dumps(missing), "twoclocks_version": twoclocks.__version__,
                     "fit_method": "scipy.stats.linregress of ln tau_mem on ln n_train; c = exp(intercept)",
                     "created_at": _now()})
    if write:
        write_dataset(ds, Path(out) if out is not None else sweep_dir / "collect.zarr")
    return ds


# -------------------------------------------------------------------------------------- lazy open
def open_sweep(sweep_dir, probe: str = "samples", chunks=None):
    """All cubes ``probes/PROBE.zarr`` of a sweep as one lazy xr.Dataset (dask arrays; ``chunks`` as in
    xr.open_zarr, default the stores' own chunks), concatenated along ``run`` (the run names, with each
    grid axis as a coordinate). Runs without the cube are left out (attrs ``missing_runs``); coordinates
    that differ between runs (e.g. ``step``) are outer-joined, so values absent from a run are NaN and
    integer variables become float there; attrs that differ between runs are dropped. Needs dask
    (``pip install twoclocks[sweep]``)."""
    import importlib.util
    if importlib.util.find_spec("dask") is None:
        raise TwoclocksError("open_sweep needs dask for lazy arrays: pip install dask (or twoclocks[sweep])")
    import xarray as xr
    sweep_dir = Path(sweep_dir)
    spec, runs = read_sweep(sweep_dir)
    cube = getattr(PROBES.get(probe), "cube", probe)
    have = [r for r in runs if (sweep_dir / r["name"] / "probes" / f"{cube}.zarr").exists()]
    if not have:
        raise TwoclocksError(f"no run of {sweep_dir} has probes/{cube}.zarr; run `twoclocks-probe probe-all "
                             f"{sweep_dir} --probes {probe}` first")
    parts = [xr.open_zarr(sweep_dir / r["name"] / "probes" / f"{cube}.zarr", consolidated=True,
                          chunks={} if chunks is None else chunks).expand_dims(run=[r["name"]]) for r in have]
    ds = xr.concat(parts, dim="run", data_vars="all", coords="different", compat="equals", join="outer",
                   combine_attrs="drop_conflicts")
    ds["run"].attrs.update(long_name="run name (its grid point)")
    for key in spec.grid:
        ds = ds.assign_coords({key: ("run", [r["point"][key] for r in have], {"long_name": f"config: {key}"})})
    ds.attrs.update({"sweep_dir": str(sweep_dir.resolve()), "probe": cube,
                     "missing_runs": json.dumps([r["name"] for r in runs if r not in have])})
    return ds


# -------------------------------------------------------------------------------------- formatting
def format_plan(report: dict) -> str:
    rows = [(p["name"], p["status"], p.get("detail", "")) for p in report["plan"]]
    w = max([len(r[0]) for r in rows] + [3])
    lines = [f"{n.ljust(w)}  {s:<11} {d}".rstrip() for n, s, d in rows]
    counts = {}
    for _, s, _ in rows:
        counts[s] = counts.get(s, 0) + 1
    lines.append(f"{len(rows)} runs in {report['sweep_dir']}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return "\n".join(lines)


def format_outcomes(report: dict) -> str:
    outs = report["outcomes"]
    if not outs:
        return "nothing to do"
    lines = [f"{o['run']}: {o['state']}" + (f" ({o['info']})" if o["info"] else "") for o in outs
             if o["state"] != "done"]
    counts = {}
    for o in outs:
        counts[o["state"]] = counts.get(o["state"], 0) + 1
    lines.append(", ".join(f"{v} {k}" for k, v in counts.items()) + f" ({report['executor']} executor)")
    return "\n".join(lines)


def format_collect(ds) -> str:
    from twoclocks.probes.clocks import format_clocks_table
    lines = [format_clocks_table(ds), "", f"{'run':<30} {'final_step':>10} {'sample_acc':>10} {'sample_mem':>10} "
             f"{'loss':>8}"]
    for i in range(ds.sizes["run"]):
        d = ds.isel(run=i)
        lines.append(f"{str(d.run.item()):<30} {float(d.final_step):>10g} {float(d.final_sample_acc):>10.3f} "
                     f"{float(d.final_sample_mem):>10.3f} {float(d.final_loss):>8.4f}")
    missing = json.loads(ds.attrs.get("missing_samples", "[]"))
    if missing:
        lines.append(f"{len(missing)} run(s) without probes/samples.zarr left out: {', '.join(missing[:5])}")
    return "\n".join(lines)
