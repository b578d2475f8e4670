"""The training loop, top to bottom: make the run directory, put the data on the device, train with
Adam on batches drawn with replacement, save checkpoints on a log-spaced schedule, resume exactly.

Exact resume: all randomness after initialisation (batch indices, noise levels, noises) comes from one
torch.Generator whose state is saved with the optimizer in ``checkpoints/resume.pt``; on CPU a killed
run resumed from there produces bit-identical weights to an uninterrupted run (also with compile on).

Speed: the step (:class:`TrainStep`) never waits for the device: the loss is summed on the device and
read once per log interval. The optimizer is the fused Adam(W) (else foreach). The loss
(forward + backward) is compiled with ``torch.compile`` only when asked ("compile": "on", or "graphs"
for CUDA graphs, mode "reduce-overhead"; the default "auto" is off everywhere until compiled training
is measured on a GPU); the random draws stay outside the compiled code, so every mode draws the same
numbers from the generator, and a compile failure falls back to eager, exactly.

Provenance: the environment record (:func:`twoclocks.environment.environment`: torch, CUDA, device
name, the precision and compile mode in use) is stored in every checkpoint (``"environment"``) and on
the first ``log.jsonl`` line of each training session (``"environment"``; a resumed session's line
also has ``"resume": {"from_step": S, "changed": {field: [old, new]}}``, changed null when the earlier
environment is unknown). A line whose environment differs from the previous line's (a compile
fallback) carries ``"environment"`` and ``"changed"``. A loss line's environment is the last one
recorded at or above it.

Preemption: SIGTERM, SIGUSR2 (SLURM's warning signal, submitit's requeue signal) and a first Ctrl-C
stop training at the next step boundary: the resume state of that step is saved, a previously
installed Python handler of the signal is called (submitit's requeues the job and exits), then
:class:`Preempted` (a KeyboardInterrupt) is raised; the command line exits with its ``exit_code``,
128 + the signal's number (143 SIGTERM, 140 SIGUSR2, 130 Ctrl-C). A signal during the last step
lets training finish normally. A second Ctrl-C interrupts at once (the last periodic save stands).
"""
from __future__ import annotations

import json
import shutil
import signal
import threading
import time
import warnings
from pathlib import Path

import torch

import twoclocks
from twoclocks import TwoclocksError
from twoclocks.data import make_encoding, make_rule
from twoclocks.environment import environment, environment_changes, resolve_device
from twoclocks.store import disk_full, is_disk_full, remove_stale_tmp, write_dataset
from twoclocks.progress import make_progress
from twoclocks.rundir import (CHECKPOINT_DIR, CONFIG_FILE, DATA_STORE, LOG_FILE, RESUME_FILE, RESUME_MAY_CHANGE,
                              checkpoint_name, read_meta)
from twoclocks.training.config import TrainConfig, config_json, save_schedule
from twoclocks.training.edm import edm_draw, edm_loss_at
from twoclocks.training.files import (build_data, data_digest, load_checkpoint, load_data, read_config, save_atomic,
                                      write_json_atomic)
from twoclocks.training.gpt import gpt_loss
from twoclocks.training.models import build_model, training_data

__all__ = ["train", "create_run", "Preempted", "TrainStep", "build_optimizer", "COMPILE_CHOICES"]

COMPILE_CHOICES = ("auto", "off", "on", "graphs")


class Preempted(KeyboardInterrupt):
    """Training stopped on a signal (SIGTERM, SIGUSR2, Ctrl-C) at a step boundary, after saving the
    resume state of ``step``: ``train(..., resume=True)`` continues exactly. A KeyboardInterrupt, so
    code that handles Ctrl-C handles it, and ``except Exception`` does not swallow it.
    ``exit_code`` = 128 + the signal's number, as a shell reports a process the signal killed."""

    def __init__(self, step: int, signum: int):
        self.step, self.signum = step, int(signum)
        self.exit_code = 128 + self.signum
        super().__init__(f"preempted by {signal.Signals(signum).name} at step {step}: state saved; "
                         "resume with --resume")

    def __reduce__(self):  # picklable (submitit stores a job's exception)
        return Preempted, (self.step, self.signum)


def create_run(run_dir: Path, cfg: TrainConfig, user_set: set[str]) -> None:
    """Write data.zarr (splits + fixed sampling bank, :func:`twoclocks.run.build_data`) and config.json
    (with ``data_sha256``, the digest of the data's values) into a new run directory."""
    ds = build_data(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_dataset(ds, run_dir / DATA_STORE)
    (run_dir / CHECKPOINT_DIR).mkdir(exist_ok=True)
    # config.json last: its presence marks a complete run directory
    meta = json.loads(config_json(cfg, user_set, twoclocks.__version__))
    meta["data_sha256"] = data_digest(ds)
    write_json_atomic(run_dir / CONFIG_FILE, meta)


def prepare_run_dir(run_dir, overrides: dict, resume: bool, force: bool) -> TrainConfig:
    """Resolve the config for a new run, a resumed one, or a forced restart."""
    run_dir = Path(run_dir)
    is_run = (run_dir / CONFIG_FILE).is_file()
    if resume:
        if not is_run:
            raise TwoclocksError(f"--resume: {run_dir} is not a run (no config.json); drop --resume to start one")
        cfg, meta = read_config(run_dir)
        if meta.get("foreign") is not None:
            raise TwoclocksError(f"{run_dir} holds checkpoints from your own code (a 'foreign' section in config.json); "
                                 "twoclocks does not train it: probe it, or train a new run")
        stored = cfg.to_dict()
        changeable = RESUME_MAY_CHANGE
        clash = {k: v for k, v in overrides.items() if k not in changeable and stored.get(k) != v}
        if clash:
            k, v = next(iter(clash.items()))
            raise TwoclocksError(f"--resume: {run_dir} was trained with {k}={stored[k]!r}, not {v!r}; "
                                 "drop the option, or use --force to start over")
        for k in changeable & overrides.keys():
            setattr(cfg, k, overrides[k])
        if overrides.keys() & changeable:
            meta["config"] = cfg.to_dict()
            write_json_atomic(run_dir / CONFIG_FILE, meta)
        return cfg
    if run_dir.exists() and any(run_dir.iterdir()):
        if not force:
            raise TwoclocksError(f"{run_dir} is not empty; use --resume to continue that run or --force to "
                                 "overwrite it")
        if not is_run:
            raise TwoclocksError(f"--force refuses to wipe {run_dir}: it is not a twoclocks run; "
                                 "choose an empty or new directory")
        shutil.rmtree(run_dir)
    cfg = TrainConfig(**overrides)
    create_run(run_dir, cfg, set(overrides))
    return cfg


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    """Adam (dit without weight decay) or AdamW (gpt, or weight decay > 0), the fused implementation
    (one kernel over all parameters; on the CPU too since torch 2.4, where its step is 3.6x faster than
    the per-parameter loop's for DiT-mini), else the multi-tensor (foreach) one."""
    opt_cls = torch.optim.AdamW if cfg.weight_decay > 0 or cfg.arch == "gpt" else torch.optim.Adam
    groups = model.optim_groups(cfg.weight_decay) if hasattr(model, "optim_groups") else [
        {"params": list(model.parameters())}]
    kw = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    try:
        return opt_cls(groups, fused=True, **kw)
    except (RuntimeError, ValueError):  # no fused kernel for this device in this torch
        return opt_cls(groups, foreach=True, **kw)


def loss_parts(cfg: TrainConfig):
    """The training loss in two parts: ``draw(x, gen)`` takes the step's random numbers from the
    generator (dit: noise levels, then noises; gpt: none), and ``loss_of(model, x, *draws)`` is the
    deterministic rest, the part that gets compiled (compiled code must not own the generator)."""
    if cfg.arch == "dit":
        return (lambda x, gen: edm_draw(x, gen, cfg.p_mean, cfg.p_std),
                lambda model, x, sigma, n: edm_loss_at(model, x, sigma, n, cfg.sigma_data))
    return (lambda x, gen: (), lambda model, x: gpt_loss(model, x))


class TrainStep:
    """One optimizer step: ``loss = step()`` draws a batch (with replacement) and its noise from ``gen``,
    computes the loss (bf16 autocast on CUDA when ``cfg.bf16``), backpropagates and steps ``opt``.
    The loss comes back as a 0-d tensor on the device; nothing here waits for the device.

    ``compile``: "off" (eager), "on" (torch.compile of forward + backward), "graphs" (torch.compile
    with CUDA graphs, mode "reduce-overhead"; on the CPU the same as "on"), "auto" ("off": compiled
    training has not been measured on a GPU, so it is opt-in). If compiling fails in the first steps it
    falls back (graphs -> on -> off) with a
    warning, redoing the same draws, so nothing is lost; ``self.mode`` is the mode in use."""

    FALLBACK = {"graphs": "on", "on": "off"}
    TRIAL_CALLS = 3  # compiling and CUDA-graph recording happen in the first calls

    def __init__(self, cfg: TrainConfig, model, opt, data: torch.Tensor, gen: torch.Generator,
                 compile: str = "auto", bf16: bool | None = None):
        self.model, self.opt, self.data, self.gen, self.batch = model, opt, data, gen, cfg.batch
        self.device = data.device
        self.bf16 = self.device.type == "cuda" and cfg.bf16 if bf16 is None else bf16  # benchmarks set it
        self.draw, self.loss_of = loss_parts(cfg)
        self.mode = resolve_compile(compile, self.device)
        self.fn = self._build(self.mode)
        self.calls = 0

    def _build(self, mode: str):
        device_type, bf16, loss_of = self.device.type, self.bf16, self.loss_of

        def forward(model, x, *draws):
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
                return loss_of(model, x, *draws)
        if mode == "off":
            return forward
        return torch.compile(forward, mode="reduce-overhead" if mode == "graphs" else "default")

    def __call__(self) -> torch.Tensor:
        idx = torch.randint(self.data.shape[0], (self.batch,), device=self.device, generator=self.gen)
        x = self.data[idx]
        draws = self.draw(x, self.gen)
        while True:
            self.opt.zero_grad(set_to_none=True)
            try:
                if self.mode == "graphs":  # (CUDA only, see resolve_compile)
                    torch.compiler.cudagraph_mark_step_begin()
                loss = self.fn(self.model, x, *draws)
                loss.backward()
                break
            except Exception as e:  # a compiler or CUDA-graph failure: fall back, same draws
                if self.mode == "off" or self.calls >= self.TRIAL_CALLS:
                    raise
                fallback = self.FALLBACK[self.mode]
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                warnings.warn(f"compile={self.mode} failed ({type(e).__name__}: {reason}); "
                              f"training continues with compile={fallback}", RuntimeWarning, stacklevel=2)
                self.mode, self.fn = fallback, self._build(fallback)
        self.opt.step()
        self.calls += 1
        return loss.detach().clone()  # a copy: CUDA graphs overwrite their outputs at the next step


def resolve_compile(setting, device: torch.device) -> str:
    """The compile mode in use: "off", "on" or "graphs" (see :class:`TrainStep`)."""
    if isinstance(setting, bool) or setting is None:  # tolerate a boolean config field
        setting = "auto" if setting is None else ("graphs" if setting else "off")
    if setting not in COMPILE_CHOICES:
        raise TwoclocksError(f"unknown compile setting {setting!r}; choose one of {', '.join(COMPILE_CHOICES)}")
    if setting == "auto":  # opt-in until compiled training is measured on a GPU (docs/science.md#precision)
        return "off"
    return "on" if setting == "graphs" and device.type != "cuda" else setting


def train(run_dir, overrides: dict | None = None, resume: bool = False, force: bool = False,
          progress: bool = True, callback=None) -> Path:
    """Train (or resume) the run in ``run_dir``; returns its path.

    ``callback(step, loss)`` is called after every optimizer step (after its log line and saves) with
    the loss as a 0-d tensor on the device (``float(loss)`` waits for the device); tests use it to
    interrupt. Raises :class:`Preempted`, after saving, when SIGTERM, SIGUSR2 or Ctrl-C stopped it."""
    run_dir = Path(run_dir)
    cfg = prepare_run_dir(run_dir, dict(overrides or {}), resume, force)
    device = resolve_device(cfg.device)
    rule = make_rule(cfg.rule_spec())
    enc = make_encoding(cfg.encoding, rule.n_symbols, **cfg.encoding_params)
    ckpt_dir = run_dir / CHECKPOINT_DIR
    if resume:  # temp files of an earlier session that crashed or met a full disk
        for folder in (run_dir, ckpt_dir):
            remove_stale_tmp(folder)
    cells = load_data(run_dir, cfg, read_meta(run_dir))["train"].values

    # --- model, optimizer, randomness; the loss of the current log interval is summed on the device
    model = build_model(cfg, rule, enc).to(device)
    opt = build_optimizer(cfg, model, device)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed + 1)
    step, loss_sum, loss_count = 0, torch.zeros((), dtype=torch.float64, device=device), 0
    previous_env, resumed = None, False
    if resume and (ckpt_dir / RESUME_FILE).exists():
        state = load_checkpoint(ckpt_dir / RESUME_FILE, device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"].cpu())
        step = int(state["step"])
        if "loss_sum" in state:  # the unfinished log interval (older resume files lack it)
            loss_sum, loss_count = state["loss_sum"].to(device), int(state["loss_count"])
        logged_env = _truncate_log(run_dir / LOG_FILE, step)
        previous_env = state.get("environment") or logged_env
        resumed = True
    elif resume:  # no resume state (deleted when damaged): train again from step 0, identically
        _truncate_log(run_dir / LOG_FILE, 0)

    # --- the whole train set lives on the device; batches are drawn with replacement
    data = training_data(cfg, cells, enc, device)
    train_step = TrainStep(cfg, model, opt, data, gen, getattr(cfg, "compile", "auto"))

    def current_env():
        return environment(device, "bf16" if train_step.bf16 else "fp32", train_step.mode)
    env = current_env()
    # the first log line of this session records the environment (and, resumed, what changed)
    pending = {"environment": env}
    if resumed:
        pending["resume"] = {"from_step": step, "changed": environment_changes(previous_env, env)}
    schedule = set(save_schedule(cfg.steps, cfg.saves_per_decade))
    saved = -1

    def save(step):
        nonlocal saved
        if step in schedule:
            save_atomic({"step": step, "model": model.state_dict(), "environment": env},
                        ckpt_dir / checkpoint_name(step))
        save_atomic({"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "rng": gen.get_state(), "loss_sum": loss_sum, "loss_count": loss_count,
                     "environment": env}, ckpt_dir / RESUME_FILE)
        saved = step

    if step == 0 or (step in schedule and not (ckpt_dir / checkpoint_name(step)).exists()):
        save(step)  # (a resumed run whose checkpoint of this step was deleted gets it back from resume.pt)
    log = open(run_dir / LOG_FILE, "a")
    bar = _progress(progress, cfg.steps, step)
    t0, at_boundary = time.time(), True
    try:
        with _StopSignals() as stop:
            model.train()
            while step < cfg.steps and not stop.signum:
                at_boundary = False
                loss = train_step()
                if train_step.mode != env["compile"]:  # a compile fallback in the first steps
                    env, old = current_env(), env
                    if "resume" in pending:  # not logged yet: the session's record is the new one
                        pending["resume"]["changed"] = environment_changes(previous_env, env)
                    elif "environment" not in pending:
                        pending["changed"] = environment_changes(old, env)
                    pending["environment"] = env
                step += 1
                loss_sum += loss
                loss_count += 1
                at_boundary = True
                if step % cfg.log_every == 0 or step == cfg.steps:
                    mean = (loss_sum / loss_count).item()  # the one wait for the device per interval
                    log.write(json.dumps({"step": step, "loss": mean, "time": time.time() - t0, **pending}) + "\n")
                    pending = {}
                    log.flush()
                    bar.update(step, mean)
                    loss_sum, loss_count = torch.zeros_like(loss_sum), 0
                if step in schedule or step % cfg.resume_every == 0:
                    save(step)
                if callback is not None:
                    callback(step, loss)
            if stop.signum and step < cfg.steps:  # stopped early by a signal: save, tell, stop
                if saved != step:
                    save(step)
                stop.restore()
                stop.chain()  # e.g. submitit's USR2 handler: requeue the job and exit
                raise Preempted(step, stop.signum)
    except KeyboardInterrupt:
        if at_boundary and saved != step:
            save(step)  # keep finished work: --resume continues from here
        raise
    except OSError as e:  # the log line (a checkpoint save raises its own one-line error)
        if is_disk_full(e):
            raise disk_full(run_dir / LOG_FILE, "rerun (train --resume)") from None
        raise
    finally:
        bar.close()
        log.close()
    return run_dir


class _StopSignals:
    """While training: SIGTERM, SIGUSR2 and a first SIGINT only record ``signum``; the loop stops at
    the next step boundary. A second SIGINT raises KeyboardInterrupt at once. Installed only from the
    main thread (Python's rule), not for a signal that is ignored (SIG_IGN); the previous handlers come
    back on exit, and :meth:`chain` calls a previous Python handler (e.g. submitit's) of the signal."""

    NAMES = ("SIGTERM", "SIGUSR2", "SIGINT")  # SIGUSR2 does not exist on Windows

    def __enter__(self):
        self.signum, self.frame, self.previous = 0, None, {}
        if threading.current_thread() is threading.main_thread():
            for sig in (getattr(signal, n) for n in self.NAMES if hasattr(signal, n)):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self.previous[sig] = signal.signal(sig, self._handle)
        self.installed = True
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signum, self.frame = signum, frame

    def restore(self):
        for sig, handler in self.previous.items() if self.installed else ():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        self.installed = False

    def chain(self):
        handler = self.previous.get(self.signum)
        if callable(handler) and handler is not signal.default_int_handler:
            handler(self.signum, self.frame)

    def __exit__(self, *exc):
        self.restore()


def _truncate_log(path: Path, step: int) -> dict | None:
    """Drop the log lines after ``step``; returns the last environment record kept (None: none)."""
    env = None
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        path.write_text("".join(k + "\n" for k in keep))
        env = next((d["environment"] for d in map(json.loads, reversed(keep)) if "environment" in d), None)
    return env


class _progress:
    """A rich progress bar on stderr (or nothing)."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.p = None
        if enabled:
            self.p = make_progress()
            self.p.start()
            self.task = self.p.add_task("train", total=total, completed=start, loss=float("nan"))

    def update(self, step, loss):
        if self.p:
            self.p.update(self.task, completed=step, loss=loss)

    def close(self):
        if self.p:
            self.p.stop()
