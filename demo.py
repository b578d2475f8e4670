"""The demo: the whole story on a tiny parity task, on a laptop CPU.

Train a tiny model, sample its fixed seed bank at every checkpoint, find the two clocks, the Markov
transitions between sample states, the DSM spectrum (DiT) or per-position cross-entropy (GPT), the basin
of attraction around train samples (DiT), and draw the figures. Every stage is resumable: running the
demo again continues where it stopped and recomputes nothing that is already stored.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import typer

from twoclocks import TwoclocksError
from twoclocks.probes import get_probe
from twoclocks.probes.clocks import compute_clocks, format_clocks_table
from twoclocks.run import open_run
from twoclocks.rundir import is_run
from twoclocks.training.train import train

# 4x4 images, parity groups of 2 (|valid| = 256), N = 16 train samples (uniform-valid memorization
# baseline 16/256 = 0.0625, adaptive memorization threshold 0.156). Measured on 2 CPU cores: sample
# accuracy passes 0.9 near step 250, sample memorization passes the threshold near step 1000 and climbs
# to about 0.5 by step 2000. 256 seeds and ~28 checkpoints keep the whole demo within 5 minutes.
DEMO_CONFIG = dict(side=4, group=2, n_train=16, n_heldout=192, n_hypercube=512, n_noise=256, model="tiny",
                   batch=128, lr=1e-3, steps=2000, saves_per_decade=8, device="cpu")
# The GPT learns and memorizes much faster: N = 64, 1000 steps show the whole story.
GPT_OVERRIDES = dict(n_train=64, lr=1e-3, steps=1000)


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


def _pick_steps(steps, targets) -> list[int]:
    steps = np.asarray(steps)
    out = {int(steps[np.argmin(np.abs(steps - t))]) for t in targets if np.isfinite(t)}
    return sorted(out)


def run_demo(out_dir: Path, arch: str = "dit", steps: int | None = None, figures: bool = True) -> dict:
    """Run the demo into ``out_dir``; returns what it found (clocks and final metrics)."""
    torch.set_num_threads(1)  # a tiny model: one thread is as fast, and never spin-waits on a busy CPU
    t0 = time.time()
    out_dir = Path(out_dir)
    cfg = {**DEMO_CONFIG, "arch": arch, **(GPT_OVERRIDES if arch == "gpt" else {})}
    if steps is not None:
        cfg["steps"] = steps
    resume = is_run(out_dir)
    if resume and open_run(out_dir).config.arch != arch:
        raise TwoclocksError(f"{out_dir} holds a {open_run(out_dir).config.arch} demo; give another OUT_DIR "
                             f"for --arch {arch}")
    stages = 5 if arch == "gpt" else 6
    _say(f"[1/{stages}] training a tiny {arch} on {cfg['side']}x{cfg['side']} parity, G={cfg['group']}, "
         f"N={cfg['n_train']}, {cfg['steps']} steps, into {out_dir}" + (" (resuming)" if resume else ""))
    train(out_dir, {"steps": cfg["steps"]} if resume else cfg, resume=resume)
    run = open_run(out_dir)

    _say(f"[2/{stages}] sampling the fixed bank of {run.n_seeds} seeds at {len(run.steps)} checkpoints")
    samples = get_probe("samples")(run, device="cpu")
    typer.echo(get_probe("samples").summary(samples))
    clocks = compute_clocks([out_dir])
    typer.echo(format_clocks_table(clocks))
    tau_rule, tau_mem = float(clocks["tau_rule"][0]), float(clocks["tau_mem"][0])

    _say(f"[3/{stages}] Markov transitions between sample states")
    typer.echo(get_probe("markov").summary(get_probe("markov")(run)))

    if arch == "gpt":
        _say(f"[4/{stages}] per-position cross-entropy on train / heldout / hypercube")
        typer.echo(get_probe("ce").summary(get_probe("ce")(run, n=256, device="cpu")))
    else:
        dsm, basin, plane = get_probe("dsm-spectrum"), get_probe("basin"), get_probe("plane")
        _say(f"[4/{stages}] DSM loss by noise scale on train / heldout / hypercube")
        typer.echo(dsm.summary(dsm(run, n_sigma=20, n_subset=96, device="cpu")))
        chosen = _pick_steps(run.steps, [0, tau_rule, tau_mem, run.steps[-1]])
        _say(f"[5/{stages}] landscape around train samples at steps {chosen}")
        typer.echo(basin.summary(basin(run, anchors="0:16", sigma=(0.2, 0.5, 1.0), steps=chosen, device="cpu",
                                       n_resamples=500)))
        plane(run, anchors="0", sigma=(0.2, 0.5, 1.0), steps=chosen, grid=41, device="cpu")

    if figures:
        from twoclocks.plotting import plot_run
        _say(f"[{stages}/{stages}] figures")
        paths = plot_run(out_dir)
        for p in paths:
            typer.echo(f"figure: {p}")
        for note in paths.notes:
            typer.echo(note, err=True)
    last = samples.sel(step=samples["step"].values[-1])
    found = {"tau_rule": tau_rule, "tau_mem": tau_mem, "sample_acc": float(last.sample_acc),
             "sample_mem": float(last.sample_mem), "seconds": time.time() - t0}
    typer.echo(f"done in {found['seconds']:.0f} s: tau_rule = {tau_rule:g}, tau_mem = {tau_mem:g}; final sample "
               f"accuracy {found['sample_acc']:.3f}, memorization {found['sample_mem']:.3f}. "
               f"Results: {out_dir}/probes/*.zarr")
    return found
