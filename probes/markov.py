"""Markov view of the per-sample states (docs/science.md#markov).

From ``probes/samples.zarr``'s ``state`` (step, seed): counts C[i, j] of seeds in state i at one
evaluated step and state j at the next, per consecutive step pair; summed over windows of steps and
row-normalized into transition probabilities P[i, j] = C[i, j] / sum_j C[i, j] (NaN for a state no
seed was in). A step pair belongs to a window [a, b] when both of its steps lie in it (inclusive).
Default windows from the run's clocks: before tau_rule [first, tau_rule], the innovation window
[tau_rule, tau_mem], after tau_mem [tau_mem, last] (fewer where a clock is not reached); consecutive
windows share their boundary step, so every step pair falls in exactly one of them.

The result is cheap and derived: it is recomputed from samples.zarr on every call and written
atomically to ``probes/markov.zarr``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import numpy as np
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.data.rules import support_baseline
from twoclocks.probes.clockdefs import PRESETS, clockset_from_options
from twoclocks.probes.clocks import run_clocks
from twoclocks.probes.registry import DerivedProbe, deprecated, option, register
from twoclocks.probes.samples import STATES
from twoclocks.probes.uncertainty import samples_cube
from twoclocks.schema import CubeSchema, Var, coord

__all__ = ["transition_counts", "row_normalize", "parse_windows", "default_windows", "compute_markov",
           "format_markov", "PROBE", "SCHEMA"]


def transition_counts(states: np.ndarray, n_states: int = len(STATES)) -> np.ndarray:
    """(n_steps - 1, n_states, n_states) int64: C[p, i, j] = number of seeds in state i at step p and
    state j at step p + 1. ``states``: (n_steps, n_seeds) ints in [0, n_states)."""
    s = np.asarray(states, dtype=np.int64)
    if s.ndim != 2:
        raise ValueError(f"expected (n_steps, n_seeds) states, got shape {s.shape}")
    if s.size and (s.min() < 0 or s.max() >= n_states):
        raise ValueError(f"states must lie in [0, {n_states})")
    pairs = max(s.shape[0] - 1, 0)
    if pairs == 0:
        return np.zeros((0, n_states, n_states), np.int64)
    idx = (s[:-1] * n_states + s[1:]) + (np.arange(pairs) * n_states ** 2)[:, None]
    return np.bincount(idx.ravel(), minlength=pairs * n_states ** 2).reshape(pairs, n_states, n_states)


def row_normalize(counts: np.ndarray) -> np.ndarray:
    """Rows divided by their sums (last axis); NaN for rows with no counts."""
    c = np.asarray(counts, dtype=float)
    tot = c.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(tot > 0, c / np.where(tot > 0, tot, 1), np.nan)


def parse_windows(spec: str) -> list[tuple[str, int, int]]:
    """Parse ``--windows`` 'a:b,c:d' into [(name, a, b), ...] (inclusive step ranges; an empty
    end means the last step)."""
    out = []
    for part in str(spec).split(","):
        part = part.strip()
        try:
            lo, hi = part.split(":")
            lo = int(lo) if lo.strip() else 0
            hi = int(hi) if hi.strip() else np.iinfo(np.int64).max
        except ValueError:
            raise TwoclocksError(f"cannot parse --windows {spec!r}; use step ranges like '0:1000,1000:5000'") from None
        if hi < lo:
            raise TwoclocksError(f"--windows: range {part!r} ends before it starts")
        out.append((part, lo, hi))
    return out


def default_windows(steps, tau_rule: float, tau_mem: float) -> list[tuple[str, int, int]]:
    """Windows split at the clocks that were reached (see the module docstring)."""
    first, last = int(steps[0]), int(steps[-1])
    cuts = [(t, n) for t, n in ((tau_rule, "tau_rule"), (tau_mem, "tau_mem")) if np.isfinite(t)]
    if not cuts:
        return [("all", first, last)]
    out, lo, prev = [], first, None
    for t, n in cuts:
        out.append(("innovation_window" if prev == "tau_rule" else f"before_{n}", lo, int(t)))
        lo, prev = int(t), n
    out.append((f"after_{prev}", lo, last))
    return [w for w in out if w[2] > w[1] or len(out) == 1]


def compute_markov(run, windows: str | None = None, write: bool = True, **clock_options) -> xr.Dataset:
    """Deprecated (removal in 0.4): ``get_probe("markov")(run, write=..., ...)``. Transition counts and
    probabilities of a run's sample states (module docstring), written to
    ``probes/markov.zarr`` through the one derived-cube writer: ``PROBE(run, ...)``. ``windows``:
    '--windows' step ranges, default from the run's clocks (``clock_options``: k, acc_threshold,
    mem_threshold, mem_adaptive as in :func:`twoclocks.probes.clocks.run_clocks`)."""
    deprecated("compute_markov", "markov", "run, write=..., ...")
    return PROBE(run, write=write, windows=windows, **clock_options)


def _markov(run, opts) -> xr.Dataset:
    windows = opts.windows
    defaults = MarkovOptions()   # the shorthands change the preset only where they differ from their defaults
    cs = clockset_from_options(opts.clocks, *[getattr(opts, f) if getattr(opts, f) != getattr(defaults, f) or
                                              opts.clocks is None else None
                                              for f in ("k", "acc_threshold", "mem_threshold")], opts.mem_adaptive)
    policy = cs.mem_policy()
    cube = samples_cube(run)
    if "state" not in cube:
        raise TwoclocksError(f"{run.probe_path('samples')} has no `state`; recompute it with "
                             f"`twoclocks-probe samples {run.path} --force`")
    if cube.sizes["step"] < 2:
        raise TwoclocksError(f"{run.probe_path('samples')} has {cube.sizes['step']} evaluated step(s); "
                             "transitions need at least 2: train further or run `samples` on more checkpoints")
    steps = cube["step"].values.astype(np.int64)
    states = cube["state"].transpose("step", "seed").values
    n = len(STATES)
    counts = transition_counts(states, n)
    clocks = None
    if windows is None:
        clocks = run_clocks(run, clocks=cs)
        clocks.pop("clock_set")
        wins = default_windows(steps, clocks["tau_rule"], clocks["tau_mem"])
    else:
        wins = parse_windows(windows)
    s_from, s_to = steps[:-1], steps[1:]
    member = np.array([(s_from >= lo) & (s_to <= hi) for _, lo, hi in wins])   # (window, pair)
    wcounts = np.einsum("wp,pij->wij", member.astype(np.int64), counts)
    fr = np.stack([np.bincount(row, minlength=n) for row in states.astype(np.int64)]) / states.shape[1]
    ds = xr.Dataset(
        {
            "counts": (("step_pair", "state_from", "state_to"), counts),
            "prob": (("step_pair", "state_from", "state_to"), row_normalize(counts)),
            "window_counts": (("window", "state_from", "state_to"), wcounts),
            "window_prob": (("window", "state_from", "state_to"), row_normalize(wcounts)),
            "window_n_pairs": (("window",), member.sum(axis=1)),
            "state_frac": (("step", "state_label"), fr),
        },
        coords={
            "step_pair": ("step_pair", np.arange(len(s_from))),
            "step_from": ("step_pair", s_from),
            "step_to": ("step_pair", s_to),
            "state_from": ("state_from", list(STATES)),
            "state_to": ("state_to", list(STATES)),
            "state_label": ("state_label", list(STATES)),
            "step": ("step", steps),
            "window": ("window", [w[0] for w in wins]),
            "window_start": ("window", [w[1] for w in wins]),
            "window_end": ("window", [min(w[2], int(steps[-1])) for w in wins]),
        },
        attrs={"windows": json.dumps([list(w) for w in wins]), "windows_from": "clocks" if clocks else "user",
               "clocks": json.dumps({k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                                     for k, v in (clocks or {}).items()}),
               **(policy.attrs(support_baseline(run.rule, run.config.n_train)) if policy else {}), **cs.attrs()},
    )
    return ds


def format_markov(ds: xr.Dataset) -> str:
    """The window transition matrices as text."""
    short = {"invalid_value": "invalid", "rule_error": "rule_err", "valid_novel": "novel",
             "valid_memorized": "memorized"}
    lines = []
    for w in range(ds.sizes["window"]):
        d = ds.isel(window=w)
        lines.append(f"window {d.window.item()} (steps {int(d.window_start)}..{int(d.window_end)}, "
                     f"{int(d.window_n_pairs)} step pairs, {int(d.window_counts.sum())} moves): P[from -> to]")
        lines.append(" " * 10 + "".join(f"{short[s]:>10}" for s in STATES) + f"{'n':>8}")
        for i, s in enumerate(STATES):
            p = d.window_prob.values[i]
            lines.append(f"{short[s]:>10}" + "".join(f"{v:>10.3f}" if np.isfinite(v) else f"{'-':>10}" for v in p)
                         + f"{int(d.window_counts.values[i].sum()):>8}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- the probe
@dataclass(frozen=True)
class MarkovOptions:
    windows: Optional[str] = option(None, "Step ranges, e.g. '0:1000,1000:5000' [default: before tau_rule, the "
                                          "window, after tau_mem].", cli_type=Optional[str])
    clocks: Optional[str] = option(None, f"Clocks for the default windows: a preset of clock definitions "
                                         f"({', '.join(PRESETS)}) [default: adaptive].", cli_type=Optional[str])
    k: int = option(3, "Clocks for the default windows: consecutive evaluations.", min=1)
    acc_threshold: float = option(0.9, "Clocks for the default windows: sample accuracy threshold of tau_rule.",
                                  min=0, max=1)
    mem_threshold: float = option(0.1, "Clocks for the default windows: memorization threshold t.", min=0, max=1)
    mem_adaptive: Optional[bool] = option(None, "Clocks for the default windows: adaptive threshold b + t (1 - b) "
                                                "above the baseline b = N/|support| (default) or fixed t.",
                                          cli_type=Optional[bool], flag="--mem-adaptive/--mem-fixed")

    def __post_init__(self):
        if self.windows is not None:
            parse_windows(self.windows)
        if self.clocks is not None and self.clocks not in PRESETS:
            clockset_from_options(self.clocks)   # one-line error naming the presets


_L = coord("state_label")
SCHEMA = CubeSchema("markov", doc="Transitions between the per-sample states of consecutive checkpoints, per step "
                                  "pair and summed over windows of steps (docs/science.md#markov).", coords={
    "step": coord("step"), "state_label": _L,
    "state_from": Var(("state_from",), "str", "state at the first step of a pair", None),
    "state_to": Var(("state_to",), "str", "state at the second step of a pair", None),
    "step_pair": Var(("step_pair",), "int64", "consecutive evaluated step pair"),
    "step_from": Var(("step_pair",), "int64", "first step of the pair", "steps"),
    "step_to": Var(("step_pair",), "int64", "second step of the pair", "steps"),
    "window": Var(("window",), "str", "window of steps", None),
    "window_start": Var(("window",), "int64", "first step (inclusive)", "steps"),
    "window_end": Var(("window",), "int64", "last step (inclusive)", "steps"),
}, data_vars={
    "counts": Var(("step_pair", "state_from", "state_to"), "int64", "seeds moving from state_from to state_to "
                                                                     "between the pair's steps"),
    "prob": Var(("step_pair", "state_from", "state_to"), "float64", "transition probability per step pair "
                                                                     "(row-normalized counts)"),
    "window_counts": Var(("window", "state_from", "state_to"), "int64", "transition counts summed over the "
                                                                         "window's step pairs"),
    "window_prob": Var(("window", "state_from", "state_to"), "float64", "transition probability in the window "
                                                                         "(row-normalized)"),
    "window_n_pairs": Var(("window",), "int64", "number of step pairs in the window"),
    "state_frac": Var(("step", "state_label"), "float64", "fraction of samples per state"),
})


PROBE = register(DerivedProbe(
    name="markov", cube="markov", options=MarkovOptions, schema=SCHEMA, needs=("samples",), builtin=True,
    help="Transitions between the per-sample states of consecutive checkpoints -> probes/markov.zarr.",
    derive=_markov, summary=format_markov,
))
