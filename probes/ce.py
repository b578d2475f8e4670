"""Per-position next-token cross-entropy of a GPT run (docs/science.md#ce: GPT
cross-entropy per position on the same three splits).

For every checkpoint and split (train / held-out / hypercube, a fixed subset of each drawn once from the
run seed) the cube holds CE_t = mean over sequences of -ln p(c_t | c_<t), nats, at every position t
(0-based cell index, raster order). The positions whose cell is fixed by its prefix for every valid
sequence (the last bit of each parity group: the science document's positions G, 2G, ... counting from 1) are flagged
by the coordinate ``determined``; they should collapse first.

Reference: the ideal rule model p*, the training distribution as an autoregressive model, exact for
every rule (``training.gpt.ideal_rule_logprobs``; group parity: fair coins on free bits, the prefix's
parity on the determined bit), evaluated on the same sequences: for parity ln 2 on free positions and 0
on determined ones for valid sequences. On hypercube sequences p* gives probability 0 to a determined bit that breaks its group,
so its CE there is +inf (stored as inf); the finite companion ``ideal_violation`` is the fraction of the
sequences whose symbol has p* = 0 at that position (about 1/2 at determined positions on the hypercube,
0 on valid data). It is NaN only where no exact model exists (Latin squares with n >= 6, 6x6 Sudoku:
no closed form and too many images to enumerate).
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from dataclasses import dataclass

import torch

from twoclocks import TwoclocksError
from twoclocks.probes.registry import Probe, deprecated, option, register
from twoclocks.schema import CubeSchema, Var, coord
from twoclocks.training.gpt import ideal_rule_logprobs, next_logprobs, reference_model

__all__ = ["ce_probe", "per_position_ce", "ideal_reference", "ce_subsets", "SPLITS", "PROBE", "SCHEMA"]

SPLITS = ("train", "heldout", "hypercube")
SUBSET_SALT = 41  # the subsets are rng([run seed, SUBSET_SALT]) draws: fixed for a run


def ce_subsets(run, n: int) -> dict[str, np.ndarray]:
    """The fixed sequences of each split: min(n, split size) rows drawn without replacement from
    ``default_rng([seed, SUBSET_SALT])``, kept in their stored order. Same for every checkpoint."""
    rng = np.random.default_rng([run.config.seed, SUBSET_SALT])
    out = {}
    for split in SPLITS:
        cells = run.cells(split)
        idx = np.sort(rng.choice(cells.shape[0], size=min(n, cells.shape[0]), replace=False))
        out[split] = cells[idx]
    return out


def per_position_ce(model, cells, batch_size: int = 4096) -> np.ndarray:
    """(n, D) float64 -ln p(c_t | c_<t) of each sequence at each position under an autoregressive
    model (teacher forcing: inputs [start, c_1..c_{D-1}], targets c_1..c_D)."""
    cells = np.asarray(cells).astype(np.int64)
    lp = next_logprobs(model, cells, batch_size).numpy()
    return -np.take_along_axis(lp, cells[..., None], axis=2)[..., 0]


def ideal_reference(rule, cells) -> tuple[np.ndarray, np.ndarray]:
    """Per-position (ce, violation) of the ideal rule model on ``cells`` (D,) each: the mean over the
    sequences of -ln p*(c_t | c_<t) (inf if any sequence has p* = 0 there) and the fraction of sequences
    with p* = 0. p* is exact for every rule (``training.gpt.ideal_rule_logprobs``: the uniform
    distribution on the sampler's support); NaN only where no exact model exists (Latin squares n >= 6, 6x6
    Sudoku: too many to enumerate)."""
    cells = np.asarray(cells).astype(np.int64)
    try:
        lp_all = ideal_rule_logprobs(rule, cells)
    except TwoclocksError:
        nan = np.full(rule.D, np.nan)
        return nan, nan.copy()
    lp = np.take_along_axis(lp_all, cells[..., None], axis=2)[..., 0]
    return 0.0 - lp.mean(axis=0), np.isneginf(lp).mean(axis=0)


def _piece(step: int, ce: dict[str, np.ndarray]) -> xr.Dataset:
    data = np.stack([ce[s] for s in SPLITS])[None]  # (1, split, position)
    return xr.Dataset({"ce": (("step", "split", "position"), data)},
                      coords={"step": [step], "split": list(SPLITS), "position": np.arange(data.shape[2])})


def _finalize(run, subsets):
    """Add the coordinates, split means and the ideal reference to the concatenated pieces."""
    rule = run.rule
    det = rule.determined_positions

    def finalize(ds: xr.Dataset) -> xr.Dataset:
        ds = ds.assign_coords(determined=("position", det))
        ce = ds["ce"]
        ds["ce_mean"] = ce.mean("position")
        nan = xr.full_like(ds["ce_mean"], np.nan)
        ds["ce_determined"] = ce.isel(position=det).mean("position") if det.any() else nan
        ds["ce_free"] = ce.isel(position=~det).mean("position") if (~det).any() else nan.copy()
        ref = [ideal_reference(rule, subsets[s]) for s in SPLITS]
        ds["ce_ideal"] = (("split", "position"), np.stack([r[0] for r in ref]))
        ds["ideal_violation"] = (("split", "position"), np.stack([r[1] for r in ref]))
        ds["ce_ideal_mean"] = ds["ce_ideal"].mean("position")
        ds["n_sequences"] = ("split", np.array([subsets[s].shape[0] for s in SPLITS]))
        return ds
    return finalize


@dataclass(frozen=True)
class CeOptions:
    n: int = option(1024, "Sequences per split (a fixed subset drawn from the run seed).", min=1)
    batch_size: int = option(4096, "Sequences per network call.", identity=False, min=1)


def _setup(ctx):
    return ce_subsets(ctx.run, ctx.opts.n)


def _compute(ctx, subsets, source, step, todo):
    model = (reference_model(source, ctx.run.rule, ctx.run.cells("train")) if isinstance(source, str)
             else ctx.model(source))
    with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=ctx.precision == "bf16"
                        and not isinstance(source, str)):
        ce = {s: per_position_ce(model, subsets[s], ctx.opts.batch_size).mean(axis=0) for s in SPLITS}
    return _piece(step, ce)


def _finalize_cube(ds, ctx):
    run = ctx.run
    ds = _finalize(run, ce_subsets(run, ctx.opts.n))(ds)
    ds.attrs.update({
        "ideal_reference": "ideal rule model p*: the uniform distribution on the valid set as an autoregressive "
                           "model; on hypercube sequences a cell that breaks the rule has p* = 0, so ce_ideal is "
                           "+inf there (ideal_violation gives the finite fraction of such sequences)",
        "subset": f"min(n, split size) sequences per split, rng([seed, {SUBSET_SALT}]) without replacement",
        "subset_salt": SUBSET_SALT})
    return ds


def ce_probe(run_or_path, steps: str | None = None, n: int = 1024, device: str = "auto", force: bool = False,
             progress: bool = True, batch_size: int = 4096, **common) -> xr.Dataset:
    """Deprecated (removal in 0.4): ``get_probe("ce")(run, ...)``. Compute (or complete)
    ``probes/ce.zarr`` for a GPT run: ``PROBE(run, ...)``; one piece per
    checkpoint step, resumable; returns the assembled cube (module docstring). ``denoiser=`` (one of
    ideal-rule, ideal-cube, memorize) evaluates the autoregressive reference instead (``ce-DENOISER.zarr``)."""
    deprecated("ce_probe", "ce")
    return PROBE(run_or_path, steps=steps, n=n, device=device, force=force, progress=progress,
                 batch_size=batch_size, **common)


def summarize(ds: xr.Dataset) -> str:
    """A few lines for the CLI: the last step's mean CE per split, determined vs free positions."""
    last = ds.isel(step=-1)
    lines = [f"step {int(last.step)}: CE nats/cell (determined | free positions; ideal mean)"]
    for s in SPLITS:
        r = last.sel(split=s)
        lines.append(f"  {s:9s} {float(r.ce_mean):.4f} ({float(r.ce_determined):.4f} | {float(r.ce_free):.4f}; "
                     f"{float(r.ce_ideal_mean):.4f})")
    return "\n".join(lines)



# ---------------------------------------------------------------------------------------- the probe
_SP = ("split", "position")
SCHEMA = CubeSchema("ce", doc="GPT per-position next-token cross-entropy on the train, held-out and hypercube "
                              "splits, with the ideal rule model's (docs/science.md#ce).", coords={
    "step": coord("step"), "split": coord("split"), "position": coord("position"),
    "determined": Var(("position",), "bool", "cell fixed by its prefix in every valid sequence (e.g. the last bit "
                                             "of each parity group)"),
}, data_vars={
    "ce": Var(("step", "split", "position"), "float64", "per-position next-token cross-entropy -ln p(c_t | c_<t), "
                                                        "mean over the split's fixed subset", "nats"),
    "ce_mean": Var(("step", "split"), "float64", "cross-entropy averaged over positions (nats per cell)", "nats"),
    "ce_determined": Var(("step", "split"), "float64", "cross-entropy averaged over the determined positions", "nats"),
    "ce_free": Var(("step", "split"), "float64", "cross-entropy averaged over the free (not determined) positions",
                   "nats"),
    "ce_ideal": Var(_SP, "float64", "ideal rule model's per-position cross-entropy on the same sequences (inf where "
                                    "some sequence breaks the rule)", "nats"),
    "ideal_violation": Var(_SP, "float64", "fraction of the sequences given probability 0 by the ideal rule model at "
                                           "this position (finite companion of ce_ideal)"),
    "ce_ideal_mean": Var(("split",), "float64", "ideal rule model's cross-entropy averaged over positions", "nats"),
    "n_sequences": Var(("split",), "int64", "number of sequences of the split's fixed subset"),
})


PROBE = register(Probe(
    name="ce", cube="ce", options=CeOptions, schema=SCHEMA, archs=("gpt",), builtin=True,
    help="GPT runs: per-position next-token cross-entropy on train / heldout / hypercube -> probes/ce.zarr.",
    references=("ideal-rule", "ideal-cube", "memorize"), setup=_setup, compute=_compute,
    finalize=_finalize_cube, summary=summarize,
    params=lambda ctx: {"splits": list(SPLITS), "subset_salt": SUBSET_SALT},
    bf16_target=("ce_abs_diff_max", "max", 0.01),  # nats per position, worst position and split
))
