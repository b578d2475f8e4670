"""DSM spectrum: the denoising loss by noise level on train, held-out and hypercube data (docs/science.md,
"Probes over checkpoints: DSM spectrum"), with the exact reference denoisers and loss-based clocks.

For each checkpoint, split in (train, heldout, hypercube) and sigma on a fixed log grid,

    loss(split, s) = mean over a fixed subset of the split of  (1/P) ||D(x + s n; s) - x||^2,

unweighted (P = model-space coordinates per sample), with its standard error over the subset items
(std / sqrt(n)) and the EDM-weighted loss lambda(s) loss(s), lambda = (s^2 + sd^2) / (s sd)^2.

Fixed randomness, so differences between checkpoints are not sampling noise:
- the subset of each split is the first ``n = min(n_subset, size)`` entries of a permutation drawn from
  ``np.random.default_rng([data_seed, 5, 0, split_number])`` (nested: a smaller n_subset takes a prefix);
  its indices are stored in the cube (``subset_index``, ``subset_size``);
- a split smaller than n_subset gets ``d = n_subset // n`` noise draws per item (``noise_draws``), so
  every split is estimated from about n_subset rows (a small train set is not the noisiest estimate);
  row j of a split is item ``j % n``, draw ``j // n``;
- the noise of (row j, sigma index i) is ``standard_normal((max rows, n_sigma, P))[j, i]`` from
  ``np.random.default_rng([data_seed, 5, 1])``, shared by the three splits (common random numbers:
  the split differences have less noise) and identical at every checkpoint.
The loss is the mean over rows; its standard error is over items (std of the per-item means over
their draws / sqrt(n)), the sampling unit.

All (split, item, sigma) rows are stacked and evaluated in batches of ``batch_size`` (inference
mode), so a checkpoint costs little more than its bare forward passes (benchmarks/bench_dsm.py).

References (computed once per cube, one piece; exact for every rule and encoding, ``twoclocks.ideal``):
ideal-rule (the training distribution: uniform on the sampler's support), ideal-cube and memorize,
on the same rows: ``reference_loss`` (reference, split, sigma). A reference that has no exact form for
the run (ideal-rule of Latin squares with n >= 6 and of 6x6 Sudoku: no closed form and too many images
to enumerate) is left out and named, with the reason, in the cube's ``references_omitted`` attr.

Derived views (recomputed at every assembly, see :class:`LossClockCriterion`):
- ``gap`` = loss[heldout] - loss[train] (step, sigma) and its standard error;
- ``rel_gap_mem`` = (heldout - train) / max(heldout, train) (= gap / heldout where heldout is larger),
  ``rel_gap_rule`` = (hypercube - heldout) / max(hypercube, heldout); finite, in [-1, 1];
- ``significant_mem`` / ``significant_rule`` (step, sigma): where that split is significant (below);
- loss-based clocks ``tau_mem_loss``, ``tau_rule_loss``: the first evaluated step from which the split
  stays separated for ``k`` consecutive evaluated checkpoints. "Separated" at a checkpoint: at some
  sigma in the band, the relative gap exceeds ``threshold`` AND the absolute gap exceeds ``z`` standard
  errors of the difference. Why this is a learning signal: the untrained DiT's output layer is zero,
  so D(y; s) = c_skip y, whose expected loss depends on x only through |x|^2, the same for every split
  of a binary or one-hot encoding: at initialisation the three splits coincide (up to the sampling
  noise the z-test allows for) and a separation must be learned (with a scalar encoding |x|^2 can
  differ between splits, so check the first step's ``separated_*`` flags). The rule compares hypercube with
  *held-out* (valid and novel) data, so a model that only memorizes train does not pass it through
  its train loss; but a memorizing model also denoises held-out valid data better than random data
  (the memorize reference shows it), so, as with the science document's sample clocks, a tau_rule_loss later than
  tau_mem_loss is discarded (NaN; the raw step is kept in its attrs). The small-sigma end is outside
  the bands: there every D tends to the identity and all losses to 0, relative gaps of tiny numbers.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Optional

import numpy as np
import torch
import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.ideal import REFERENCES
from twoclocks.probes.clockdefs import sustained_onset
from twoclocks.probes.registry import Probe, concat_steps, deprecated, option, register
from twoclocks.schema import CubeSchema, Var, coord
from twoclocks.training.edm import edm_weight

__all__ = ["SPLITS", "DsmRows", "LossClockCriterion", "DsmOptions", "make_rows", "row_losses", "split_stats",
           "run_dsm_spectrum", "add_derived", "summary_lines", "summary_text", "NAME", "PROBE", "SCHEMA"]

NAME = "dsm_spectrum"
SPLITS = ("train", "heldout", "hypercube")
SEED_TAG = 5  # keeps this probe's random streams apart from the run's others
REF_KEY = "references"
LOSS_UNITS = "model-space units squared, per coordinate"


@dataclass(frozen=True)
class LossClockCriterion:
    """When a loss split counts as separated (module docstring): relative gap > threshold and
    absolute gap > z standard errors at some sigma of the band, sustained for k evaluations."""
    band_mem: tuple[float, float] = (0.2, 2.0)
    band_rule: tuple[float, float] = (0.2, 2.0)
    threshold_mem: float = 0.1
    threshold_rule: float = 0.1
    z: float = 3.0
    k: int = 3


@dataclass
class DsmRows:
    """Every (split, item, draw, sigma) row a checkpoint is evaluated on, fixed for a run and options.
    Rows are ordered by split, then row j of the split (item j % n, draw j // n), then sigma."""
    sigmas: np.ndarray  # (S,) float64
    subsets: dict  # split -> (n_split,) int64 indices into the split
    draws: dict  # split -> noise draws per item
    y: torch.Tensor  # (R, P) float32: x + s n
    x: torch.Tensor  # (R, P) float32
    s: torch.Tensor  # (R,) float32

    @property
    def sizes(self) -> dict:
        return {k: len(v) for k, v in self.subsets.items()}

    def to(self, device) -> "DsmRows":
        return DsmRows(self.sigmas, self.subsets, self.draws, self.y.to(device), self.x.to(device),
                       self.s.to(device))


def sigma_levels(n_sigma: int, sigma_min: float, sigma_max: float) -> np.ndarray:
    """The fixed log grid: n_sigma levels from sigma_min to sigma_max (both included)."""
    return np.geomspace(sigma_min, sigma_max, n_sigma)


def make_rows(run, n_sigma: int = 50, sigma_min: float = 0.002, sigma_max: float = 80.0,
              n_subset: int = 1024) -> DsmRows:
    """The fixed subsets and noise draws of the run (module docstring), stacked into rows."""
    seed = int(run.config.data_seed)
    sigmas = sigma_levels(n_sigma, sigma_min, sigma_max)
    xs, subsets = {}, {}
    for i, split in enumerate(SPLITS):
        x = run.x(split)
        if len(x) < 2:
            raise TwoclocksError(f"split {split!r} of {run.path} has {len(x)} samples; the DSM spectrum needs "
                                 "at least 2 per split (re-create the run with a larger split)")
        idx = np.random.default_rng([seed, SEED_TAG, 0, i]).permutation(len(x))[:n_subset].astype(np.int64)
        subsets[split], xs[split] = idx, x[idx].astype(np.float32)
    draws = {k: max(1, n_subset // len(v)) for k, v in subsets.items()}
    n_rows = max(len(subsets[k]) * draws[k] for k in SPLITS)
    P = xs["train"].shape[1]
    noise = np.random.default_rng([seed, SEED_TAG, 1]).standard_normal((n_rows, n_sigma, P), dtype=np.float32)
    s32 = sigmas.astype(np.float32)
    ys, xr_, ss = [], [], []
    for split in SPLITS:
        x = np.tile(xs[split], (draws[split], 1))  # row j: item j % n, draw j // n
        m = len(x)
        xx = np.broadcast_to(x[:, None, :], (m, n_sigma, P))
        ys.append((xx + s32[None, :, None] * noise[:m]).reshape(-1, P))
        xr_.append(xx.reshape(-1, P))
        ss.append(np.broadcast_to(s32[None, :], (m, n_sigma)).reshape(-1))
    return DsmRows(sigmas, subsets, draws, torch.from_numpy(np.concatenate(ys)),
                   torch.from_numpy(np.concatenate(xr_)), torch.from_numpy(np.concatenate(ss)))


def row_losses(D, rows: DsmRows, batch_size: int = 8192) -> np.ndarray:
    """(1/P) ||D(y; s) - x||^2 for every row, in batches of ``batch_size`` rows (R,) float64.
    ``rows`` must already be on D's device; results stay there until one copy at the end."""
    R = rows.y.shape[0]
    with torch.inference_mode():
        out = torch.empty(R, dtype=torch.float32, device=rows.y.device)
        for i in range(0, R, batch_size):
            j = min(i + batch_size, R)
            d = D(rows.y[i:j], rows.s[i:j])
            out[i:j] = (d.float() - rows.x[i:j]).square_().mean(1)
        return out.cpu().numpy().astype(np.float64)


def split_stats(rows: DsmRows, per_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over items: (split, sigma) arrays."""
    S = len(rows.sigmas)
    mean, se, k = np.empty((len(SPLITS), S)), np.empty((len(SPLITS), S)), 0
    for i, split in enumerate(SPLITS):
        n, d = rows.sizes[split], rows.draws[split]
        v = per_row[k:k + d * n * S].reshape(d, n, S).mean(0)  # per-item means over the draws
        k += d * n * S
        mean[i] = v.mean(0)
        se[i] = v.std(0, ddof=1) / np.sqrt(n)
    return mean, se


def _weight(sigmas: np.ndarray, sigma_data: float) -> np.ndarray:
    return edm_weight(torch.as_tensor(sigmas, dtype=torch.float64), sigma_data).numpy()


def _loss_vars(prefix: str, dims: tuple, mean, se, w) -> dict:
    return {
        f"{prefix}loss": (dims, mean),
        f"{prefix}loss_se": (dims, se),
        f"{prefix}loss_weighted": (dims, mean * w),
    }


def _common(rows: DsmRows) -> tuple[dict, dict]:
    n_max = max(rows.sizes.values())
    sub = np.full((len(SPLITS), n_max), -1, dtype=np.int64)
    for i, split in enumerate(SPLITS):
        sub[i, :rows.sizes[split]] = rows.subsets[split]
    coords = {
        "split": ("split", list(SPLITS)),
        "sigma": ("sigma", rows.sigmas),
        "item": ("item", np.arange(n_max)),
    }
    data = {
        "subset_index": (("split", "item"), sub),
        "subset_size": ("split", np.array([rows.sizes[s] for s in SPLITS], dtype=np.int64)),
        "noise_draws": ("split", np.array([rows.draws[s] for s in SPLITS], dtype=np.int64)),
    }
    return data, coords


def step_piece(rows: DsmRows, per_row: np.ndarray, step: int, sigma_data: float) -> xr.Dataset:
    mean, se = split_stats(rows, per_row)
    w = _weight(rows.sigmas, sigma_data)
    data, coords = _common(rows)
    data.update(_loss_vars("", ("step", "split", "sigma"), mean[None], se[None], w))
    coords["step"] = ("step", [int(step)])
    return xr.Dataset(data, coords=coords)


def reference_piece(run, rows: DsmRows, batch_size: int) -> xr.Dataset:
    """All applicable reference denoisers on the same rows (one piece; no checkpoint involved)."""
    names, means, ses, omitted = [], [], [], []
    for ref in REFERENCES:
        try:
            D = run.denoiser(ref)
        except TwoclocksError as e:
            omitted.append(f"{ref}: {e}")
            continue
        m, s = split_stats(rows, row_losses(D, rows, batch_size))
        names.append(ref)
        means.append(m)
        ses.append(s)
    data, coords = _common(rows)
    w = _weight(rows.sigmas, run.config.sigma_data)
    data.update(_loss_vars("reference_", ("reference", "split", "sigma"), np.array(means), np.array(ses), w))
    coords["reference"] = ("reference", np.array(names, dtype=str))
    return xr.Dataset(data, coords=coords, attrs={"references_omitted": "; ".join(omitted) or "none"})


def _merge(parts: list[xr.Dataset]) -> xr.Dataset:
    """The stored cube and new pieces (step pieces, the references piece) as one cube, before add_derived
    (the store drops the derived variables, declared ``derived`` in :data:`SCHEMA`, from every part)."""
    ds = concat_steps(parts)
    for p in parts:  # the references piece carries the note on omitted references (cubes of twoclocks < 0.3:
        if "references_omitted" in p.attrs:  # on the reference coordinate)
            ds.attrs["references_omitted"] = p.attrs["references_omitted"]
        elif "reference" in p.coords and "omitted" in p["reference"].attrs:
            ds.attrs["references_omitted"] = p["reference"].attrs["omitted"]
    return ds


def _first_sustained(flags: np.ndarray, steps: np.ndarray, k: int) -> float:
    """The first step from which ``flags`` holds for k consecutive evaluations (NaN if never): the
    package's one sustained-onset rule, :func:`twoclocks.probes.clocks.sustained_onset`."""
    return sustained_onset(steps, flags, None, k)[0]


def _rel(a: xr.DataArray, b: xr.DataArray) -> xr.DataArray:
    """(a - b) / max(a, b), in [-1, 1]; 0 where both are 0. Where a > b it is (a - b) / a."""
    den = np.maximum(a, b)
    return xr.where(den > 0, (a - b) / den.where(den > 0), 0.0)


def add_derived(ds: xr.Dataset, crit: LossClockCriterion | None = None) -> xr.Dataset:
    """Add the gap views and the loss-based clocks (module docstring) to a DSM spectrum cube (their attrs:
    the schema's, stamped by the framework; none is carried over from the losses)."""
    with xr.set_options(keep_attrs=False):
        return _add_derived(ds, crit or LossClockCriterion())


def _add_derived(ds: xr.Dataset, crit: LossClockCriterion) -> xr.Dataset:
    ds = ds.copy()
    crit_attrs = {f"criterion_{k}": (list(v) if isinstance(v, tuple) else v) for k, v in asdict(crit).items()}
    if "reference_loss" in ds:
        L = ds["reference_loss"]
        ds["reference_gap"] = L.sel(split="heldout") - L.sel(split="train")
    if "loss" not in ds:
        return ds
    L, E = ds["loss"], ds["loss_se"]
    tr, he, hy = (L.sel(split=s, drop=True) for s in SPLITS)
    e_tr, e_he, e_hy = (E.sel(split=s, drop=True) for s in SPLITS)
    ds["gap"] = he - tr
    ds["gap_se"] = np.sqrt(e_he ** 2 + e_tr ** 2)
    ds["rel_gap_mem"] = _rel(he, tr)
    ds["rel_gap_rule"] = _rel(hy, he)
    sig = ds["sigma"]
    steps = ds["step"].values
    clocks = {}
    for kind, diff, se, rel, band, thr in (
            ("mem", he - tr, ds["gap_se"], ds["rel_gap_mem"], crit.band_mem, crit.threshold_mem),
            ("rule", hy - he, np.sqrt(e_hy ** 2 + e_he ** 2), ds["rel_gap_rule"], crit.band_rule, crit.threshold_rule)):
        inband = (sig >= band[0]) & (sig <= band[1])
        sig_s = (rel > thr) & (diff > crit.z * se)
        ds[f"significant_{kind}"] = sig_s
        sep = (sig_s & inband).any("sigma")
        ds[f"separated_{kind}"] = sep
        ok = steps >= 0
        clocks[kind] = _first_sustained(sep.values[ok], steps[ok], crit.k) if ok.any() else float("nan")
    raw_rule = clocks["rule"]
    discarded = bool(np.isfinite(raw_rule) and np.isfinite(clocks["mem"]) and raw_rule > clocks["mem"])
    if discarded:
        clocks["rule"] = float("nan")
    note = ("reference cube: no training steps, no clock" if not (steps >= 0).any()
            else "NaN: never separated for k consecutive evaluations")
    ds["tau_mem_loss"] = xr.DataArray(clocks["mem"])
    ds["tau_rule_loss"] = xr.DataArray(clocks["rule"])
    crit_attrs.update({"tau_rule_loss_raw_step": raw_rule, "tau_rule_loss_discarded_after_tau_mem": int(discarded),
                       "loss_clock_note": note})
    ds.attrs.update(crit_attrs)
    return ds


#: 'auto' sizes (n_sigma, n_subset) per device type: about 150k rows per checkpoint on a GPU, 18k on a CPU
AUTO_SIZES = {"cuda": (50, 1024), "cpu": (24, 256)}


@dataclass(frozen=True)
class DsmOptions:
    n_sigma: Optional[int] = option(None, "Noise levels on the log grid [default auto: 50 on a GPU, 24 on a CPU].",
                                    cli_type=Optional[int], min=2)
    sigma_min: float = option(0.002, "Smallest noise level.", gt=0, lt=math.inf)
    sigma_max: float = option(80.0, "Largest noise level.", gt=0, lt=math.inf)
    n_subset: Optional[int] = option(None, "Items per split (a fixed subset drawn from the run seed; all of a smaller "
                                           "split) [default auto: 1024 on a GPU, 256 on a CPU: a 400-step tiny run "
                                           "(45 checkpoints) takes about 3 minutes on 2 CPU cores].",
                                     cli_type=Optional[int], min=2)
    batch_size: int = option(8192, "Rows (item, sigma) per network call.", identity=False, min=1)
    criterion: LossClockCriterion = option(LossClockCriterion(), "When a loss split counts as separated "
                                           "(Python API only; shapes the derived clocks).", identity=False, cli=False)

    def __post_init__(self):
        if not self.sigma_min < self.sigma_max:
            raise TwoclocksError(f"need --sigma-min < --sigma-max, got {self.sigma_min} and {self.sigma_max}")


def _resolve(opts, ctx):
    """Fill the 'auto' sizes for the device in use (they define the cube, so they are stored resolved)."""
    n_sigma, n_subset = AUTO_SIZES["cuda" if ctx.device.type == "cuda" else "cpu"]
    return replace(opts, n_sigma=n_sigma if opts.n_sigma is None else opts.n_sigma,
                   n_subset=n_subset if opts.n_subset is None else opts.n_subset)


def _params(ctx) -> dict:
    return {"noise_seed": [int(ctx.run.config.data_seed), SEED_TAG]}


def _setup(ctx):
    o = ctx.opts
    return make_rows(ctx.run, o.n_sigma, o.sigma_min, o.sigma_max, o.n_subset).to(ctx.device)


def _compute(ctx, rows, source, step, todo):
    per_row = row_losses(ctx.D(source), rows, ctx.opts.batch_size)
    return step_piece(rows, per_row, step, ctx.run.config.sigma_data)


def _references(ctx, rows):
    """The exact references, once per cube (not for a cube computed on a reference itself)."""
    return {} if ctx.denoiser is not None else {REF_KEY: reference_piece(ctx.run, rows, ctx.opts.batch_size)}


def _finalize(ds, ctx):
    ds = add_derived(ds, ctx.opts.criterion)
    ds.attrs.update({"splits": list(SPLITS), "sigma_data": float(ctx.run.config.sigma_data),
                     "definitions": "see the twoclocks.probes.dsm module docstring and docs/science.md#dsm"})
    return ds


def run_dsm_spectrum(run, steps: str | None = None, denoiser: str | None = None, n_sigma: int | None = None,
                     sigma_min: float = 0.002, sigma_max: float = 80.0, n_subset: int | None = None,
                     batch_size: int = 8192, device: str = "auto", force: bool = False, progress: bool = True,
                     criterion: LossClockCriterion | None = None, **common) -> xr.Dataset:
    """Deprecated (removal in 0.4): ``get_probe("dsm-spectrum")(run, ...)``. Compute (or complete)
    ``RUN/probes/dsm_spectrum.zarr`` and return it: ``PROBE(run, ...)``
    (module docstring). ``denoiser``: a reference (ideal-rule, ideal-cube, memorize) instead of
    checkpoints, written to ``dsm_spectrum-DENOISER.zarr`` at step -1 (no ``reference`` dim).
    ``criterion`` only shapes the derived clocks, recomputed at each assembly."""
    deprecated("run_dsm_spectrum", "dsm-spectrum")
    return PROBE(run, steps=steps, denoiser=denoiser, n_sigma=n_sigma, sigma_min=sigma_min, sigma_max=sigma_max,
                 n_subset=n_subset, batch_size=batch_size, device=device, force=force, progress=progress,
                 criterion=criterion or LossClockCriterion(), **common)


def summary_lines(ds: xr.Dataset) -> list[str]:
    """A short text summary: the loss-based clocks and, at the last step, the largest held-out minus
    train gap and the sigma range where the split is significant (relative gap > threshold, > z SE)."""
    lines = []
    trained = "step" in ds.coords and bool((ds["step"].values >= 0).any())
    a = ds.attrs
    for v, kind in (("tau_rule_loss", "rule"), ("tau_mem_loss", "mem")) if trained else ():
        val = float(ds[v])
        txt = "not reached" if not np.isfinite(val) else f"step {int(val)}"
        if v == "tau_rule_loss" and a.get("tau_rule_loss_discarded_after_tau_mem"):
            txt += f" (raw step {int(a['tau_rule_loss_raw_step'])} discarded: after tau_mem_loss)"
        lines.append(f"{v}: {txt}  [sigma band {list(a[f'criterion_band_{kind}'])}, relative gap > "
                     f"{a[f'criterion_threshold_{kind}']} and > {a['criterion_z']} SE, for {a['criterion_k']} "
                     "consecutive checkpoints]")
    if "loss" in ds and ds.sizes.get("step", 0):
        last = ds.isel(step=-1)
        sig = ds["sigma"].values
        lo, hi = ds.attrs["criterion_band_mem"]
        gap = np.where((sig >= lo) & (sig <= hi), last["gap"].values, np.nan)
        where = sig[last["significant_mem"].values]
        band = f"sigma in [{where.min():.3g}, {where.max():.3g}]" if len(where) else "at no sigma"
        if np.isfinite(gap).any():
            i = int(np.nanargmax(gap))
            lines.append(f"step {int(last.step)}: max heldout - train gap in [{lo}, {hi}] {gap[i]:.4f} (relative "
                         f"{float(last['rel_gap_mem'][i]):.3f}) at sigma {sig[i]:.3g}")
        lines.append(f"step {int(last.step)}: heldout > train significantly {band}")
        j = int(np.argmin(np.abs(np.log(sig))))
        lines.append(f"step {int(last.step)}, sigma {sig[j]:.3g}: loss " + ", ".join(
            f"{sp} {float(last['loss'].sel(split=sp)[j]):.4f}" for sp in SPLITS))
    if "reference_loss" in ds:
        j = int(np.argmin(np.abs(np.log(ds["sigma"].values))))
        for r in ds["reference"].values:
            lines.append(f"  reference {r}: " + ", ".join(
                f"{sp} {float(ds['reference_loss'].sel(reference=r, split=sp)[j]):.4f}" for sp in SPLITS))
    omitted = ds.attrs.get("references_omitted", "none") if "reference" in ds.coords else "none"
    if omitted != "none":
        lines.append(f"references omitted: {omitted}")
    return lines


def summary_text(ds: xr.Dataset) -> str:
    return "\n".join(summary_lines(ds))


# ---------------------------------------------------------------------------------------- the probe
_L = LOSS_UNITS
_SSV = ("step", "split", "sigma")
_RSV = ("reference", "split", "sigma")
SCHEMA = CubeSchema(NAME, doc="DSM loss by noise level on the train, held-out and hypercube splits, with the exact "
                              "reference denoisers and the loss-based clocks (docs/science.md#dsm).", coords={
    "step": coord("step"), "split": coord("split"), "sigma": coord("sigma", long_name="noise level s (log grid)"),
    "reference": coord("reference"), "item": Var(("item",), "int64", "position in the fixed subset"),
}, data_vars={
    "loss": Var(_SSV, "float64", "unweighted DSM loss (1/P)||D(x + s n; s) - x||^2, mean over the fixed subset", _L),
    "loss_se": Var(_SSV, "float64", "standard error of loss over subset items", _L),
    "loss_weighted": Var(_SSV, "float64", "EDM-weighted DSM loss lambda(s) loss, lambda = (s^2 + sd^2)/(s sd)^2", _L),
    "reference_loss": Var(_RSV, "float64", "unweighted DSM loss of the exact reference denoiser", _L),
    "reference_loss_se": Var(_RSV, "float64", "standard error of reference_loss over subset items", _L),
    "reference_loss_weighted": Var(_RSV, "float64", "EDM-weighted DSM loss of the exact reference denoiser", _L),
    "reference_gap": Var(("reference", "sigma"), "float64", "reference heldout minus train loss", _L, derived=True),
    "subset_index": Var(("split", "item"), "int64", "index into the split of each subset item (-1: the split is "
                                                    "smaller than n_subset)"),
    "subset_size": Var(("split",), "int64", "number of items of the split evaluated"),
    "noise_draws": Var(("split",), "int64", "fixed noise draws per item and sigma"),
    "gap": Var(("step", "sigma"), "float64", "held-out minus train loss (memorization gap)", _L, derived=True),
    "gap_se": Var(("step", "sigma"), "float64", "standard error of gap (items treated as independent; "
                                                "conservative with the shared noise)", _L, derived=True),
    "rel_gap_mem": Var(("step", "sigma"), "float64", "relative memorization gap (heldout - train) / "
                                                     "max(heldout, train) (0 where both are 0)", derived=True),
    "rel_gap_rule": Var(("step", "sigma"), "float64", "relative rule gap (hypercube - heldout) / "
                                                      "max(hypercube, heldout) (0 where both are 0)", derived=True),
    "significant_mem": Var(("step", "sigma"), "bool", "train vs held-out loss split at this sigma (relative gap "
                                                      "> threshold and > z SE)", derived=True),
    "significant_rule": Var(("step", "sigma"), "bool", "held-out vs hypercube loss split at this sigma (relative "
                                                       "gap > threshold and > z SE)", derived=True),
    "separated_mem": Var(("step",), "bool", "train vs held-out loss split at some sigma of the band", derived=True),
    "separated_rule": Var(("step",), "bool", "held-out vs hypercube loss split at some sigma of the band", derived=True),
    "tau_mem_loss": Var((), "float64", "loss-based memorization clock: first step from which held-out loss exceeds "
                                       "train loss at some sigma of the band, for k consecutive checkpoints", "steps", derived=True),
    "tau_rule_loss": Var((), "float64", "loss-based rule clock: first step from which hypercube loss exceeds "
                                        "held-out loss at some sigma of the band, for k consecutive checkpoints; "
                                        "NaN when later than tau_mem_loss", "steps", derived=True),
})


PROBE = register(Probe(
    name="dsm-spectrum", cube=NAME, options=DsmOptions, schema=SCHEMA, archs=("dit",), builtin=True,
    help="Denoising loss by noise level on train / heldout / hypercube, with the exact reference denoisers and "
         "loss-based clocks -> probes/dsm_spectrum.zarr.",
    references=REFERENCES, setup=_setup, compute=_compute, extra_pieces=_references,
    extra_done=lambda ds: "reference_loss" in ds, merge=_merge, finalize=_finalize, params=_params, resolve=_resolve,
    summary=summary_text,
    bf16_target=("dsm_loss_rel_diff_max", "max", 0.01),  # relative change of the loss, worst noise level
))
