"""The training loop, top to bottom: make the run directory, put the data on the device, train with
Adam on batches drawn with replacement, save checkpoints on a log-spaced schedule, resume exactly.

Exact resume: all randomness after initialisation (batch indices, noise levels, noises) comes from one
torch.Generator whose state is saved with the optimizer in ``checkpoints/resume.pt``; on CPU a killed
run resumed from there produces bit-identical weights to an uninterrupted run.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import twoclocks
from twoclocks import TwoclocksError
from twoclocks.data import make_encoding, make_rule, make_splits
from twoclocks.store import write_dataset
from twoclocks.run import checkpoint_name, load_checkpoint, read_config, resolve_device, save_atomic
from twoclocks.training.config import TrainConfig, config_json, save_schedule
from twoclocks.training.models import build_model, loss_fn, training_data

__all__ = ["train", "create_run"]


def create_run(run_dir: Path, cfg: TrainConfig, user_set: set[str]) -> None:
    """Write config.json and data.zarr (splits + fixed sampling bank) into a new run directory."""
    rule = make_rule(cfg.rule_spec())
    enc = make_encoding(cfg.encoding, rule.n_symbols, **cfg.encoding_params)
    splits = make_splits(rule, cfg.n_train, cfg.n_heldout, cfg.n_hypercube, cfg.data_seed)
    rng = np.random.default_rng([cfg.data_seed, 3])
    p = rule.D * enc.channels
    ds = xr.Dataset(
        {
            "train": (("train_index", "cell"), splits["train"], {"long_name": "train samples (cells)"}),
            "heldout": (("heldout_index", "cell"), splits["heldout"],
                        {"long_name": "held-out valid samples not in train (cells)"}),
            "hypercube": (("hypercube_index", "cell"), splits["hypercube"],
                          {"long_name": "uniform random images, no rule (cells)"}),
        },
        coords={"cell": np.arange(rule.D)},
        attrs={"rule": json.dumps(rule.to_dict()), "encoding": json.dumps(enc.to_dict()),
               "twoclocks_version": twoclocks.__version__},
    )
    if cfg.arch == "dit":
        ds["noise"] = (("seed", "feature"), rng.standard_normal((cfg.n_noise, p)).astype(np.float32),
                       {"long_name": "fixed sampler noise bank z (x_0 = z * sigma_max)"})
    else:
        ds["uniforms"] = (("seed", "cell"), rng.random((cfg.n_noise, rule.D)).astype(np.float32),
                          {"long_name": "fixed sampling uniforms (symbol chosen by inverse CDF at u)"})
    ds = ds.assign_coords(seed=np.arange(cfg.n_noise))
    run_dir.mkdir(parents=True, exist_ok=True)
    write_dataset(ds, run_dir / "data.zarr")
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    # config.json last: its presence marks a complete run directory
    cfg_tmp = run_dir / ".config.json.tmp"
    cfg_tmp.write_text(config_json(cfg, user_set, twoclocks.__version__))
    cfg_tmp.replace(run_dir / "config.json")


def prepare_run_dir(run_dir, overrides: dict, resume: bool, force: bool) -> TrainConfig:
    """Resolve the config for a new run, a resumed one, or a forced restart."""
    run_dir = Path(run_dir)
    is_run = (run_dir / "config.json").is_file()
    if resume:
        if not is_run:
            raise TwoclocksError(f"--resume: {run_dir} is not a run (no config.json); drop --resume to start one")
        cfg, meta = read_config(run_dir)
        stored = cfg.to_dict()
        changeable = {"steps", "device", "bf16", "log_every", "resume_every"}
        clash = {k: v for k, v in overrides.items() if k not in changeable and stored.get(k) != v}
        if clash:
            k, v = next(iter(clash.items()))
            raise TwoclocksError(f"--resume: {run_dir} was trained with {k}={stored[k]!r}, not {v!r}; "
                                 "drop the option, or use --force to start over")
        for k in changeable & overrides.keys():
            setattr(cfg, k, overrides[k])
        if overrides.keys() & changeable:
            meta["config"] = cfg.to_dict()
            (run_dir / "config.json").write_text(json.dumps(meta, indent=2))
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


def train(run_dir, overrides: dict | None = None, resume: bool = False, force: bool = False,
          progress: bool = True, callback=None) -> Path:
    """Train (or resume) the run in ``run_dir``; returns its path. ``callback(step, loss)`` is called
    after every optimizer step (used by tests to interrupt)."""
    run_dir = Path(run_dir)
    cfg = prepare_run_dir(run_dir, dict(overrides or {}), resume, force)
    device = resolve_device(cfg.device)
    rule = make_rule(cfg.rule_spec())
    enc = make_encoding(cfg.encoding, rule.n_symbols, **cfg.encoding_params)
    ckpt_dir = run_dir / "checkpoints"
    cells = xr.open_zarr(run_dir / "data.zarr", consolidated=True)["train"].values

    # --- model, optimizer, randomness
    model = build_model(cfg, rule, enc).to(device)
    opt_cls = torch.optim.AdamW if cfg.weight_decay > 0 or cfg.arch == "gpt" else torch.optim.Adam
    params = model.optim_groups(cfg.weight_decay) if hasattr(model, "optim_groups") else model.parameters()
    opt = opt_cls(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed + 1)
    step = 0
    if resume and (ckpt_dir / "resume.pt").exists():
        state = load_checkpoint(ckpt_dir / "resume.pt", device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"].cpu() if device.type == "cpu" else state["rng"].cpu())
        step = int(state["step"])
        _truncate_log(run_dir / "log.jsonl", step)

    # --- the whole train set lives on the device; batches are drawn with replacement
    data = training_data(cfg, cells, enc, device)
    compute_loss = loss_fn(cfg)
    schedule = set(save_schedule(cfg.steps, cfg.saves_per_decade))
    use_bf16 = device.type == "cuda" and cfg.bf16

    def save(step):
        if step in schedule:
            save_atomic({"step": step, "model": model.state_dict()}, ckpt_dir / checkpoint_name(step))
        save_atomic({"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "rng": gen.get_state()}, ckpt_dir / "resume.pt")

    if step == 0:
        save(0)
    log = open(run_dir / "log.jsonl", "a")
    bar = _progress(progress, cfg.steps, step)
    running, count, t0 = 0.0, 0, time.time()
    try:
        model.train()
        while step < cfg.steps:
            idx = torch.randint(data.shape[0], (cfg.batch,), device=device, generator=gen)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss = compute_loss(model, data[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            running += loss.item()
            count += 1
            if callback is not None:
                callback(step, loss.item())
            if step % cfg.log_every == 0 or step == cfg.steps:
                log.write(json.dumps({"step": step, "loss": running / count, "time": time.time() - t0}) + "\n")
                log.flush()
                bar.update(step, running / count)
                running, count = 0.0, 0
            if step in schedule or step % cfg.resume_every == 0:
                save(step)
    except KeyboardInterrupt:
        save(step)  # keep finished work: --resume continues from here
        raise
    finally:
        bar.close()
        log.close()
    return run_dir


def _truncate_log(path: Path, step: int) -> None:
    if path.exists():
        keep = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
        path.write_text("".join(k + "\n" for k in keep))


class _progress:
    """A rich progress bar on stderr (or nothing)."""

    def __init__(self, enabled: bool, total: int, start: int):
        self.p = None
        if enabled:
            from twoclocks.progress import make_progress
            self.p = make_progress()
            self.p.start()
            self.task = self.p.add_task("train", total=total, completed=start, loss=float("nan"))

    def update(self, step, loss):
        if self.p:
            self.p.update(self.task, completed=step, loss=loss)

    def close(self):
        if self.p:
            self.p.stop()
