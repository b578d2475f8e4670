"""Sweeps: grids of runs trained and probed through submitit (local, debug or SLURM), resumable,
collected into one labelled Dataset.

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

Modules: ``spec`` (the spec and its grid), ``state`` (what is on disk: run states, sweep.json,
jobs.json, locks), ``executors`` (the per-run jobs and submitit's executors), ``runner`` (`sweep` and
`probe-all`), ``collect`` (the cross-run Dataset), ``tree`` (the sweep's cubes as one DataTree of runs).
"""
from twoclocks.probes.clocks import fit_groups
from twoclocks.sweep.collect import collect, open_sweep
from twoclocks.sweep.executors import ProbeTask, RunTask, execute, slurm_parameters, slurm_script
from twoclocks.sweep.runner import plan_sweep, probe_all, run_sweep
from twoclocks.sweep.spec import EXECUTORS, SweepSpec, expand, load_spec, run_name, spec_from_dict, spec_from_options
from twoclocks.sweep.state import active_jobs, last_checkpoint, read_sweep, run_status, submitit_folder, write_sweep
from twoclocks.sweep.tree import tree

__all__ = ["SweepSpec", "load_spec", "spec_from_dict", "spec_from_options", "expand", "run_name", "run_status",
           "plan_sweep", "run_sweep", "read_sweep", "RunTask", "ProbeTask", "probe_all",
           "collect", "fit_groups", "open_sweep", "execute", "write_sweep", "last_checkpoint", "active_jobs",
           "slurm_parameters", "slurm_script", "submitit_folder", "EXECUTORS", "tree"]
