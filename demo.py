"""The demo: the whole story on a tiny parity task, on a laptop CPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from twoclocks.run import open_run


def run_demo(out_dir: Path, arch: str = "dit", steps: int | None = None) -> None:
    from twoclocks.cli import DEMO_CONFIG
    from twoclocks.training.train import train

    out_dir = Path(out_dir)
    cfg = {**DEMO_CONFIG, "arch": arch}
    if arch == "gpt":
        cfg.update(lr=1e-3, steps=3000)
    if steps is not None:
        cfg["steps"] = steps
    resume = (out_dir / "config.json").is_file()
    typer.echo(f"[1/2] training a tiny {arch} on {cfg['side']}x{cfg['side']} parity, G={cfg['group']}, "
               f"N={cfg['n_train']} into {out_dir}" + (" (resuming)" if resume else ""), err=True)
    train(out_dir, cfg if not resume else {"steps": cfg["steps"]}, resume=resume)
    run = open_run(out_dir)
    last = run.steps[-1]
    typer.echo(f"[2/2] sampling the fixed bank at the last checkpoint (step {last})", err=True)
    cells = run.encoding.decode(run.generate(last))
    from twoclocks.data.bits import isin_rows
    acc = run.rule.is_valid(cells).mean()
    mem = isin_rows(cells, run.cells("train")).mean()
    typer.echo(f"step {last}: sample accuracy {acc:.3f} (chance {2.0 ** -run.rule.n_groups:.3g}), "
               f"sample memorization {mem:.3f} (uniform-valid baseline "
               f"{run.config.n_train / run.rule.valid_set_size:.3f})")
