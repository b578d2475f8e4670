"""GPU-hour ESTIMATES for the paper-scale sweep specs in this directory (the numbers in their headers).

    python examples/paper/estimate_cost.py                 # every spec here
    python examples/paper/estimate_cost.py g_sweep.toml    # one spec
    python examples/paper/estimate_cost.py --rate 50e12    # another assumed throughput

Nothing here is a GPU measurement (no GPU was available when the specs were written). The model:

- training FLOPs per step = 6 * batch * T * (12 L h^2) + 12 * batch * L * T^2 * h
  (forward + backward of the per-token matmuls of L transformer blocks of width h -- attention
  projections 4 h^2 and a 4x MLP 8 h^2 -- plus the attention scores; T tokens per sample: the cells,
  times the one-hot channels do not add tokens; the DiT's adaLN and embeddings are per sample and small);
- seconds per step = max(FLOPs / RATE, FLOOR): RATE = 100 TFLOP/s is an ASSUMED sustained bf16
  throughput of one H100 for these small matmuls (about 10% of its dense peak), FLOOR = 4 ms an
  ASSUMED per-step overhead (kernel launches, optimizer, Python) that dominates for the small models;
- +10% for the probes of the spec's [probes] tables (the samples probe of a DiT-mini checkpoint is
  2048 x 69 forward passes, about 2 training steps' worth of FLOPs per 100 steps of checkpoint spacing).

For comparison, the trainer's MEASURED speed on the CPU of the machine the specs were written on (one
thread, quiet machine, batch 128, 6x6 images): DiT-tiny 16 steps/s; see docs/reproducing.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tomllib

HERE = Path(__file__).resolve().parent
RATE = 100e12
FLOOR = 0.004
PROBE_OVERHEAD = 1.10
#: (depth, hidden) per (arch, preset), paper Tables 1 and 3 (tiny: ours)
SIZES = {("dit", "tiny"): (2, 64), ("dit", "nano"): (3, 192), ("dit", "mini"): (6, 384), ("dit", "S"): (12, 384),
         ("dit", "B"): (12, 768), ("gpt", "tiny"): (2, 64), ("gpt", "nano"): (3, 384), ("gpt", "mini"): (6, 384),
         ("gpt", "S"): (12, 384), ("gpt", "B"): (12, 768)}
DEFAULTS = {"arch": "dit", "model": "mini", "side": 6, "batch": 256, "steps": 500_000}


def grid_points(spec: dict) -> list[dict]:
    """The grid's points as override dicts (flat keys, rule_params.* kept flat)."""
    import itertools
    grid = {}
    for k, v in spec.get("grid", {}).items():
        if isinstance(v, dict):
            grid.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            grid[k] = v
    keys = list(grid)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(grid[k] for k in keys))]


def step_seconds(arch: str, model: str, side: int, batch: int, rate: float = RATE, floor: float = FLOOR) -> float:
    depth, hidden = SIZES[(arch, model)]
    tokens = side * side
    flops = 6 * batch * tokens * 12 * depth * hidden ** 2 + 12 * batch * depth * tokens ** 2 * hidden
    return max(flops / rate, floor)


def estimate(path: Path, rate: float = RATE, floor: float = FLOOR) -> tuple[int, float]:
    """(runs, GPU-hours) of a spec."""
    spec = tomllib.loads(Path(path).read_text())
    base = {**DEFAULTS, **spec.get("base", {})}
    hours = 0.0
    points = grid_points(spec)
    for p in points:
        cfg = {**base, **p}
        hours += cfg["steps"] * step_seconds(cfg["arch"], cfg["model"], cfg["side"], cfg["batch"], rate, floor) / 3600
    return len(points), hours * PROBE_OVERHEAD


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("specs", nargs="*", help="spec files (default: every *.toml beside this script)")
    ap.add_argument("--rate", type=float, default=RATE, help="assumed sustained FLOP/s of one GPU")
    ap.add_argument("--floor", type=float, default=FLOOR, help="assumed minimum seconds per step")
    a = ap.parse_args(argv)
    paths = [Path(s) if Path(s).exists() else HERE / s for s in a.specs] or sorted(HERE.glob("*.toml"))
    for p in paths:
        runs, hours = estimate(p, a.rate, a.floor)
        print(f"{p.name:<32} {runs:>4} runs  ~{hours:,.0f} GPU-hours (estimate)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
