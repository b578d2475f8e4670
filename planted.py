"""Planted truth: synthetic runs whose clocks are known by construction (docs/science.md#planted).

A *planted run* is a real run directory (``training.train.create_run``: config, data splits, noise or
uniform bank; no checkpoints) with a ``probes/samples.zarr`` written by the package's own machinery
(:class:`~twoclocks.probes.samples.SampleEvaluator` scores, :class:`~twoclocks.store.CubeStore` writes,
with the samples probe's merge, finalize and schema), so ``run_clocks``, ``compute_clocks``,
``run_clock_uncertainty`` and the plots read it like any other run.

Each "checkpoint" at step t is a mixture of the three exact reference generators (``Run.generate``
of ``ideal-cube``, ``ideal-rule``, ``memorize``: Heun sampling of the reference denoisers from the noise
bank for DiT, the autoregressive references driven by the fixed uniforms for GPT). The bank is sampled
once through each reference; per seed j a fixed latent u_j ~ U(0, 1) picks the reference of that seed's
sample at step t:

    memorize   if u_j < w_mem(t) = F_rule(t) F_mem(t)
    ideal-rule if w_mem(t) <= u_j < F_rule(t)          (w_rule(t) = F_rule(t) (1 - F_mem(t)))
    ideal-cube otherwise                               (w_cube(t) = 1 - F_rule(t))

with logistic schedules in ln t, F(t) = expit((ln t - m) / w) (:class:`Schedule`). Both F increase,
so a seed moves cube -> rule -> memorized and never back, as in a real run.

**Planted clocks.** From the references' own properties (:class:`ReferenceRates`: an ideal-rule sample
is valid and memorized with probability b = N/|support|; an ideal-cube sample is valid with the chance
probability |valid|/K^D and memorized with N/K^D; a memorize sample is valid and memorized) the
population curves are

    A(t) = F_rule + (1 - F_rule) chance,        M(t) = w_mem + w_rule b + w_cube N/K^D

(:func:`population_curves`). The continuous clocks are the crossings A = acc_threshold and
M = b + t (1 - b) (:func:`continuous_crossings`); the planted grid clocks are the first evaluated steps
at or after them (:func:`grid_clock`; the curves are increasing, so "sustained over k evaluations" only
needs k - 1 further evaluations). :func:`plant_schedule` solves for the schedule whose crossings are
exactly the wanted clocks.

Layering: this module sits at the package top (beside ``demo.py``): it creates runs
(``training.train``), generates through ``run.Run`` and writes a probe's cube, so it is above both the
training and the probe layers and none of them imports it.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr
from scipy.optimize import brentq
from scipy.special import expit, logit
from scipy.stats import chi2, linregress
from scipy.stats import t as student_t

from twoclocks import TwoclocksError
from twoclocks.data.rules import support_baseline
from twoclocks.environment import environment
from twoclocks.probes.clocks import clocks_from_curves, fit_power_law
from twoclocks.probes.driver import Context
from twoclocks.probes.samples import PROBE as SAMPLES_PROBE
from twoclocks.probes.samples import SampleEvaluator
from twoclocks.probes.uncertainty import bootstrap_clocks, grid_bracket
from twoclocks.run import Run, open_run
from twoclocks.rundir import CONFIG_FILE
from twoclocks.store import CubeStore
from twoclocks.training.config import TrainConfig, save_schedule
from twoclocks.training.train import create_run

__all__ = ["REFERENCE_ORDER", "Schedule", "ReferenceRates", "population_curves", "continuous_crossings",
           "grid_clock", "plant_schedule", "planted_threshold", "choose_references", "reference_bank",
           "reference_indicators", "mixture_indicators", "PlantedRun", "make_planted_run", "planted_truth",
           "write_planted_samples", "planted_grid", "run_coverage", "sweep_truth", "sweep_clocks",
           "sweep_coverage", "t_interval", "profile_coverage"]

#: the references in the order of the codes 0, 1, 2 of :func:`choose_references`
REFERENCE_ORDER = ("ideal-cube", "ideal-rule", "memorize")
CUBE, RULE, MEM = 0, 1, 2


# ----------------------------------------------------------------------------- schedule and truth
@dataclass(frozen=True)
class Schedule:
    """Logistic schedules in ln t: F_rule(t) = expit((ln t - rule_mid) / rule_width), F_mem likewise
    (module docstring); F = 0 at t = 0."""
    rule_mid: float
    rule_width: float
    mem_mid: float
    mem_width: float

    def __post_init__(self):
        if not (self.rule_width > 0 and self.mem_width > 0):
            raise TwoclocksError(f"schedule widths must be positive, got {self.rule_width}, {self.mem_width}")

    def fractions(self, steps) -> tuple[np.ndarray, np.ndarray]:
        """(F_rule, F_mem) at ``steps`` (float arrays)."""
        with np.errstate(divide="ignore"):
            ln = np.log(np.asarray(steps, float))
        return expit((ln - self.rule_mid) / self.rule_width), expit((ln - self.mem_mid) / self.mem_width)

    def weights(self, steps) -> np.ndarray:
        """(3, T) mixture weights in :data:`REFERENCE_ORDER` (cube, rule, memorize); columns sum to 1."""
        fr, fm = self.fractions(steps)
        return np.stack([1 - fr, fr * (1 - fm), fr * fm])

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ReferenceRates:
    """Population validity and memorization of the three references of a run (module docstring)."""
    chance_acc: float   # ideal-cube sample valid: |valid| / K^D
    rule_mem: float     # ideal-rule sample memorized: b = N / |support|
    cube_mem: float     # ideal-cube sample memorized: N / K^D

    @classmethod
    def from_rule(cls, rule, n_train: int) -> "ReferenceRates":
        if rule.valid_set_size is None or not np.isfinite(support_baseline(rule, n_train)):
            raise TwoclocksError(f"rule {rule.name!r} has no known valid-set or support size; planted runs need both")
        cube = float(rule.n_symbols) ** rule.D
        return cls(float(rule.valid_set_size / cube), support_baseline(rule, n_train), float(n_train / cube))

    def acc(self) -> np.ndarray:
        """Validity per reference, :data:`REFERENCE_ORDER`."""
        return np.array([self.chance_acc, 1.0, 1.0])

    def mem(self) -> np.ndarray:
        """Memorization per reference, :data:`REFERENCE_ORDER`."""
        return np.array([self.cube_mem, self.rule_mem, 1.0])


def planted_threshold(rates: ReferenceRates, t: float = 0.1) -> float:
    """The adaptive memorization threshold b + t (1 - b) (docs/science.md#clocks), computed here."""
    return rates.rule_mem + t * (1 - rates.rule_mem)


def population_curves(schedule: Schedule, rates: ReferenceRates, steps) -> tuple[np.ndarray, np.ndarray]:
    """The population sample accuracy A(t) and memorization M(t) at ``steps`` (module docstring)."""
    w = schedule.weights(steps)
    return rates.acc() @ w, rates.mem() @ w


def continuous_crossings(schedule: Schedule, rates: ReferenceRates, acc_threshold: float = 0.9,
                         mem_threshold: float | None = None, lo: float = 1e-3, hi: float = 1e9) -> dict:
    """The continuous planted clocks: the steps t where A(t) = acc_threshold and M(t) = mem_threshold
    (default :func:`planted_threshold`), by bracketing root finding on ln t (NaN: not crossed in
    [lo, hi])."""
    thr = planted_threshold(rates) if mem_threshold is None else mem_threshold
    out = {}
    for name, idx, level in (("tau_rule", 0, acc_threshold), ("tau_mem", 1, thr)):
        f = lambda z: population_curves(schedule, rates, [math.exp(z)])[idx][0] - level  # noqa: E731
        a, b = math.log(lo), math.log(hi)
        out[name] = float(math.exp(brentq(f, a, b, xtol=1e-12))) if f(a) < 0 < f(b) else np.nan
    return out


def grid_clock(steps, tau, k: int = 3) -> np.ndarray:
    """The first evaluated step >= the continuous clock ``tau`` (scalar or array) with k - 1 evaluations
    after it (an increasing curve holds from there on); NaN where there is none."""
    steps = np.sort(np.asarray(steps, float))
    tau = np.asarray(tau, float)
    i = np.searchsorted(steps, np.where(np.isfinite(tau), tau, np.inf), side="left")
    ok = np.isfinite(tau) & (i + k - 1 < len(steps))
    return np.where(ok, steps[np.minimum(i, len(steps) - 1)], np.nan)


def plant_schedule(tau_rule: float, tau_mem: float, rates: ReferenceRates, acc_threshold: float = 0.9,
                   mem_threshold: float | None = None, rule_width: float = 0.05,
                   mem_width: float = 0.05) -> Schedule:
    """The schedule whose population crossings (:func:`continuous_crossings`) are exactly ``tau_rule``
    and ``tau_mem``: A(tau_rule) = acc_threshold gives F_rule(tau_rule) = (acc_threshold - chance) /
    (1 - chance); M(tau_mem) = thr gives F_mem(tau_mem) = (thr - F_r b - (1 - F_r) q) / (F_r (1 - b))
    with F_r = F_rule(tau_mem), q = N/K^D."""
    thr = planted_threshold(rates) if mem_threshold is None else mem_threshold
    if not (0 < tau_rule < tau_mem):
        raise TwoclocksError(f"planted clocks need 0 < tau_rule < tau_mem, got {tau_rule}, {tau_mem}")
    fr_star = (acc_threshold - rates.chance_acc) / (1 - rates.chance_acc)
    if not (0 < fr_star < 1):
        raise TwoclocksError(f"acc_threshold {acc_threshold} is not above the chance accuracy {rates.chance_acc:.3g}")
    rule_mid = math.log(tau_rule) - rule_width * float(logit(fr_star))
    fr = float(expit((math.log(tau_mem) - rule_mid) / rule_width))
    fm_star = (thr - fr * rates.rule_mem - (1 - fr) * rates.cube_mem) / (fr * (1 - rates.rule_mem))
    if not (0 < fm_star < 1):
        raise TwoclocksError(f"cannot plant tau_mem {tau_mem:g}: the threshold {thr:.3g} is not crossed by "
                             "memorization alone there (tau_rule too close, or the baseline above it)")
    return Schedule(rule_mid, rule_width, math.log(tau_mem) - mem_width * float(logit(fm_star)), mem_width)


def planted_grid(total: int, per_decade: int) -> np.ndarray:
    """The evaluated steps of a planted run: the training checkpoint schedule (``save_schedule``)."""
    return np.asarray(save_schedule(total, per_decade), np.int64)


# ----------------------------------------------------------------------------- the mixture
def choose_references(schedule: Schedule, steps, u) -> np.ndarray:
    """(T, n) int8 codes (:data:`REFERENCE_ORDER`) of the reference each seed's sample comes from at each
    step, from the seeds' latents ``u`` (n,) (module docstring); vectorized."""
    fr, fm = schedule.fractions(steps)
    u = np.asarray(u, float)[None, :]
    return ((u < fr[:, None]).astype(np.int8) + (u < (fr * fm)[:, None]))


def reference_bank(run: Run, device: str = "cpu", batch_size: int = 4096) -> np.ndarray:
    """(3, n_seeds, P) model-space samples of the whole bank through each reference
    (:data:`REFERENCE_ORDER`), with the real samplers (``Run.generate``)."""
    return np.stack([run.generate(name, device, batch_size) for name in REFERENCE_ORDER])


def reference_indicators(ev: SampleEvaluator, bank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid, memorized), each (3, n) bool: per reference and seed, as the samples probe scores them."""
    valid, mem = [], []
    for x in bank:
        d = ev.evaluate(x)
        nn = d["nn_hamming"].values
        valid.append(ev.rule.is_valid(d["sample"].values) & (nn >= 0))
        mem.append(nn == 0)
    return np.array(valid), np.array(mem)


def mixture_indicators(choice: np.ndarray, ref_valid: np.ndarray, ref_mem: np.ndarray, seeds=None):
    """Per-step per-seed (valid, memorized) (T, n) of the mixture: the reference indicators of the chosen
    reference; ``seeds`` (n,) picks the bank columns (default all)."""
    seeds = np.arange(ref_valid.shape[1]) if seeds is None else np.asarray(seeds)
    return ref_valid[choice, seeds[None, :]], ref_mem[choice, seeds[None, :]]


def planted_truth(schedule: Schedule, rates: ReferenceRates, steps, acc_threshold: float = 0.9,
                  k: int = 3, t: float = 0.1) -> dict:
    """The planted clocks: continuous crossings and their grid clocks on ``steps``."""
    thr = planted_threshold(rates, t)
    cont = continuous_crossings(schedule, rates, acc_threshold, thr)
    return {"tau_rule_planted": cont["tau_rule"], "tau_mem_planted": cont["tau_mem"],
            "tau_rule_planted_grid": float(grid_clock(steps, cont["tau_rule"], k)),
            "tau_mem_planted_grid": float(grid_clock(steps, cont["tau_mem"], k)),
            "mem_threshold": thr, "acc_threshold": acc_threshold, "k": k}


def write_planted_samples(run: Run, bank: np.ndarray, schedule: Schedule, steps, u,
                          attrs: dict | None = None, ev: SampleEvaluator | None = None) -> xr.Dataset:
    """Select each step's samples from the reference ``bank`` (3, n, P) by :func:`choose_references`,
    score them with the samples probe's evaluator and write ``probes/samples.zarr`` through the
    package's writer (``CubeStore``: one piece for the steps; the probe's merge, finalize (which adds
    the run's baselines) and schema), with ``attrs`` (the planted schedule and clocks) added. Returns the cube."""
    ev = SampleEvaluator(run.rule, run.encoding, run.cells("train")) if ev is None else ev
    opts = SAMPLES_PROBE.make_options()
    steps = np.asarray(steps, np.int64)
    choice = choose_references(schedule, steps, u)
    x = bank[choice, np.arange(bank.shape[1])[None, :]]                    # (T, n, P)
    pieces = [ev.evaluate(x[i], opts.eps, opts.eps_state).expand_dims(step=[int(s)]) for i, s in enumerate(steps)]
    params = {**SAMPLES_PROBE.identity(opts), "precision": "fp32"}
    store = CubeStore(run, SAMPLES_PROBE.cube, params, force=True)
    store.write_piece("planted_steps", xr.concat(pieces, dim="step"))
    ctx = Context(run, opts, torch.device("cpu"), "fp32", None, tuple(int(s) for s in steps))
    extra = {"precision": "fp32", "environment": json.dumps(environment(torch.device("cpu"), "fp32"))}
    extra.update(attrs or {})
    return store.compact(SAMPLES_PROBE.merge, finalize=lambda ds: SAMPLES_PROBE.finalize(ds, ctx),
                         schema=SAMPLES_PROBE.schema, attrs=extra)


@dataclass
class PlantedRun:
    """A planted run: its directory, grid, reference rates, schedule, latents, reference indicators
    (``ref_valid``, ``ref_mem`` (3, n)) and planted clocks."""
    path: Path
    steps: np.ndarray
    rates: ReferenceRates
    schedule: Schedule
    u: np.ndarray
    ref_valid: np.ndarray
    ref_mem: np.ndarray
    truth: dict
    bank: np.ndarray | None = None

    @property
    def run(self) -> Run:
        return open_run(self.path)


def make_planted_run(path, tau_rule: float, tau_mem: float, u_seed: int = 0, rule_width: float = 0.05,
                     mem_width: float = 0.05, keep_bank: bool = False, **config) -> PlantedRun:
    """Create a planted run at ``path`` (module docstring): ``config`` are :class:`TrainConfig` fields
    (``steps`` and ``saves_per_decade`` set the evaluated grid, ``save_schedule``); the clocks
    ``tau_rule`` < ``tau_mem`` are planted as continuous crossings (:func:`plant_schedule`), the seeds'
    latents drawn with ``numpy.random.default_rng(u_seed)``. Writes the samples cube with attrs
    ``planted`` (JSON: schedule, rates, clocks, u_seed) and the four planted clocks as numbers."""
    path = Path(path)
    if (path / CONFIG_FILE).exists() or (path.exists() and any(path.iterdir())):
        raise TwoclocksError(f"{path} is not empty; give a new directory for the planted run")
    cfg = TrainConfig(**config)
    create_run(path, cfg, set(config))
    run = open_run(path)
    steps = planted_grid(cfg.steps, cfg.saves_per_decade)
    rates = ReferenceRates.from_rule(run.rule, cfg.n_train)
    schedule = plant_schedule(tau_rule, tau_mem, rates, rule_width=rule_width, mem_width=mem_width)
    truth = planted_truth(schedule, rates, steps)
    u = np.random.default_rng(u_seed).random(run.n_seeds)
    ev = SampleEvaluator(run.rule, run.encoding, run.cells("train"))
    bank = reference_bank(run)
    ref_valid, ref_mem = reference_indicators(ev, bank)
    attrs = {"planted": json.dumps({"schedule": schedule.to_dict(), "rates": asdict(rates), "u_seed": int(u_seed),
                                    "references": list(REFERENCE_ORDER), **truth}),
             **{key: float(v) for key, v in truth.items() if key.startswith("tau_")}}
    write_planted_samples(run, bank, schedule, steps, u, attrs, ev)
    return PlantedRun(path, steps, rates, schedule, u, ref_valid, ref_mem, truth, bank if keep_bank else None)


# ----------------------------------------------------------------------------- coverage of one run
def run_coverage(prun: PlantedRun, n_rep: int, n_seeds: int, seed: int = 0, n_boot: int = 1000,
                 level: float = 0.9, rule_width: float | None = None, mem_width: float | None = None) -> dict:
    """Coverage of the per-run clock intervals (seed bootstrap joined with the grid bracket,
    docs/science.md#clock-uncertainty) over ``n_rep`` planted repetitions of ``prun`` (the references
    reused): each draws ``n_seeds`` of the bank's seeds without replacement and fresh latents u, and
    optionally re-plants with other widths. The statement "the clock lies in (step before lo, hi]"
    covers when the planted continuous crossing is in it. Returns per clock the coverage, the share of
    repetitions whose point clock equals the planted grid clock, the mean ln(point clock / planted
    crossing) (``mean_log_ratio``: the grid alone gives half a grid step), the mean interval width in
    grid steps, and the raw arrays."""
    rng = np.random.default_rng(seed)
    sched = prun.schedule
    if rule_width is not None or mem_width is not None:
        sched = plant_schedule(prun.truth["tau_rule_planted"], prun.truth["tau_mem_planted"], prun.rates,
                               rule_width=rule_width or sched.rule_width, mem_width=mem_width or sched.mem_width)
    truth = planted_truth(sched, prun.rates, prun.steps)
    steps = prun.steps
    n_bank = prun.ref_valid.shape[1]
    if n_seeds > n_bank:
        raise TwoclocksError(f"n_seeds {n_seeds} exceeds the run's bank of {n_bank}")
    rec = {c: {"lo": [], "hi": [], "point": []} for c in ("tau_rule", "tau_mem")}
    for _ in range(n_rep):
        seeds = rng.choice(n_bank, n_seeds, replace=False)
        choice = choose_references(sched, steps, rng.random(n_seeds))
        valid, mem = mixture_indicators(choice, prun.ref_valid, prun.ref_mem, seeds)
        r = bootstrap_clocks(steps, valid, mem, prun.rates.rule_mem, n_boot=n_boot,
                             seed=int(rng.integers(1 << 31)), level=level)
        for c in rec:
            rec[c]["lo"].append(r[f"{c}_lo"])
            rec[c]["hi"].append(r[f"{c}_hi"])
            rec[c]["point"].append(r[c])
    out = {"truth": truth, "n_rep": n_rep, "n_seeds": n_seeds, "level": level}
    padded = np.concatenate([[-np.inf], steps.astype(float)])
    for c, d in rec.items():
        lo, hi, point = (np.array(d[key], float) for key in ("lo", "hi", "point"))
        finite_lo = np.isfinite(lo)
        below = np.full(len(lo), -np.inf)
        below[finite_lo] = grid_bracket(steps, lo[finite_lo])[0] if finite_lo.any() else below[finite_lo]
        tau = truth[f"{c}_planted"]
        covered = (below < tau) & (tau <= hi)
        idx_lo = np.searchsorted(padded, lo) - 1
        idx_hi = np.searchsorted(padded, np.where(np.isfinite(hi), hi, padded[-1])) - 1
        reached = np.isfinite(point)
        out[c] = {"coverage": float(covered.mean()),
                  "mean_log_ratio": float(np.mean(np.log(point[reached] / tau))) if reached.any() else np.nan,
                  "point_equals_grid": float(np.mean(point == truth[f"{c}_planted_grid"])),
                  "mean_width_steps": float(np.mean(idx_hi - idx_lo + 1)),
                  "lo": lo, "hi": hi, "point": point, "covered": covered}
    return out


# ----------------------------------------------------------------------------- sweeps over N and G
def sweep_truth(ns, groups, c: float, alpha: float, tau_rule0: float, rule_factor: float, g0: int,
                sigma: float = 0.0, rng=None) -> list[dict]:
    """The planted clocks of a sweep: tau_mem = c N^alpha exp(e), e ~ Normal(0, sigma^2) per run, and
    tau_rule = tau_rule0 rule_factor^(G - g0) exp(e') (same sigma); one dict per (G, N)."""
    rng = np.random.default_rng(0) if rng is None else rng
    out = []
    for g in groups:
        for n in ns:
            e, e2 = rng.normal(0.0, sigma, 2) if sigma > 0 else (0.0, 0.0)
            out.append({"group": int(g), "n_train": int(n), "tau_mem": float(c * n ** alpha * math.exp(e)),
                        "tau_rule": float(tau_rule0 * rule_factor ** (g - g0) * math.exp(e2))})
    return out


def sweep_clocks(pruns: list[PlantedRun], truths: list[dict], rng, n_seeds: int | None = None,
                 width: float = 0.05) -> list[dict]:
    """One repetition of a planted sweep without writing cubes: per run re-plant the clocks of
    ``truths`` (its references reused), fresh latents, and the point clocks by ``clocks_from_curves``
    (the function ``run_clocks`` applies to the samples cube)."""
    rows = []
    for pr, tr in zip(pruns, truths):
        sched = plant_schedule(tr["tau_rule"], tr["tau_mem"], pr.rates, rule_width=width, mem_width=width)
        n_bank = pr.ref_valid.shape[1]
        seeds = np.arange(n_bank) if n_seeds is None else rng.choice(n_bank, n_seeds, replace=False)
        choice = choose_references(sched, pr.steps, rng.random(len(seeds)))
        valid, mem = mixture_indicators(choice, pr.ref_valid, pr.ref_mem, seeds)
        rows.append(clocks_from_curves(pr.steps, valid.mean(1), mem.mean(1), pr.rates.rule_mem))
    return rows


def t_interval(x, y, level: float = 0.95) -> tuple[float, float, float]:
    """(slope, lo, hi): the least-squares slope of y on x with its Student-t interval (n - 2 df)."""
    fit = linregress(x, y)
    q = float(student_t.ppf((1 + level) / 2, len(x) - 2))
    return float(fit.slope), float(fit.slope - q * fit.stderr), float(fit.slope + q * fit.stderr)


def sweep_coverage(pruns: list[PlantedRun], configs: list[dict], n_rep: int, c: float, alpha: float,
                   tau_rule0: float, rule_factor: float, g0: int, sigma: float = 0.1, seed: int = 0,
                   level: float = 0.95, width: float = 0.05, ml: bool = True) -> dict:
    """Coverage of the alpha intervals over ``n_rep`` planted sweeps: each redraws every run's log-normal
    clock jitter (``sigma``) and latents, reads the clocks (:func:`sweep_clocks`, grid-quantized) and
    fits tau_mem = c N^alpha pooled over G with ``fit_power_law`` (the censored ML fit's
    profile-likelihood interval at ``level``) and, independently, the least-squares t-interval
    (:func:`t_interval`); ln tau_rule on G by least squares gives the per-unit-G factor. ``configs``:
    per run {"group", "n_train"} in the order of ``pruns``. Returns the coverages, the mean estimates
    and the raw arrays. ``ml`` False skips ``fit_power_law`` (its profile interval costs about 0.5 s a
    fit): only the least-squares estimates and t-intervals."""
    rng = np.random.default_rng(seed)
    groups = [cf["group"] for cf in configs]
    ns = [cf["n_train"] for cf in configs]
    rec = {key: [] for key in ("alpha_ls", "c_ls", "t_lo", "t_hi", "alpha_ml", "ml_lo", "ml_hi", "factor",
                               "f_lo", "f_hi", "exact_mem", "exact_rule")}
    for _ in range(n_rep):
        truths = []
        for g, n in zip(groups, ns):
            e, e2 = rng.normal(0.0, sigma, 2)
            truths.append({"tau_mem": c * n ** alpha * math.exp(e),
                           "tau_rule": tau_rule0 * rule_factor ** (g - g0) * math.exp(e2)})
        rows = sweep_clocks(pruns, truths, rng, width=width)
        tau_mem = np.array([r["tau_mem"] for r in rows])
        tau_rule = np.array([r["tau_rule"] for r in rows])
        cen = np.array([r["tau_mem_censored_at"] for r in rows])
        grid_mem = np.array([grid_clock(p.steps, tr["tau_mem"]) for p, tr in zip(pruns, truths)], float)
        grid_rule = np.array([grid_clock(p.steps, tr["tau_rule"]) for p, tr in zip(pruns, truths)], float)
        rec["exact_mem"].append(np.mean(tau_mem == grid_mem))
        rec["exact_rule"].append(np.mean(tau_rule == grid_rule))
        ok = np.isfinite(tau_mem)
        a, lo, hi = t_interval(np.log(np.array(ns, float)[ok]), np.log(tau_mem[ok]), level)
        if ml:
            fit = fit_power_law(ns, tau_mem, cen, level=level)
        else:
            fit = {"alpha": a, "c": math.exp(float(np.mean(np.log(tau_mem[ok])) - a * np.mean(np.log(
                np.array(ns, float)[ok])))), "alpha_ml": np.nan, "alpha_ml_lo": np.nan, "alpha_ml_hi": np.nan}
        okr = np.isfinite(tau_rule)
        s, slo, shi = t_interval(np.array(groups, float)[okr], np.log(tau_rule[okr]), level)
        for key, v in (("alpha_ls", fit["alpha"]), ("c_ls", fit["c"]), ("t_lo", lo), ("t_hi", hi),
                       ("alpha_ml", fit["alpha_ml"]), ("ml_lo", fit["alpha_ml_lo"]), ("ml_hi", fit["alpha_ml_hi"]),
                       ("factor", math.exp(s)), ("f_lo", math.exp(slo)), ("f_hi", math.exp(shi))):
            rec[key].append(v)
    r = {key: np.array(v, float) for key, v in rec.items()}
    return {"n_rep": n_rep, "level": level, "sigma": sigma, "alpha": alpha, "c": c, "rule_factor": rule_factor,
            "n_runs": len(pruns),
            "cover_t": float(np.mean((r["t_lo"] <= alpha) & (alpha <= r["t_hi"]))),
            "cover_ml": float(np.mean((r["ml_lo"] <= alpha) & (alpha <= r["ml_hi"]))) if ml else np.nan,
            "cover_factor": float(np.mean((r["f_lo"] <= rule_factor) & (rule_factor <= r["f_hi"]))),
            "alpha_ls_mean": float(np.mean(r["alpha_ls"])), "alpha_ls_sd": float(np.std(r["alpha_ls"], ddof=1)),
            "c_ls_median": float(np.median(r["c_ls"])), "alpha_ml_mean": float(np.mean(r["alpha_ml"])),
            "factor_median": float(np.median(r["factor"])),
            "exact_mem": float(np.mean(r["exact_mem"])), "exact_rule": float(np.mean(r["exact_rule"])),
            "raw": r}


def profile_coverage(n: int, level: float = 0.95) -> float:
    """The exact coverage of the profile-likelihood interval of a slope (chi^2_1(level) cut, ML residual
    scale) for n uncensored points with normal residuals: the interval is |t| < sqrt((n - 2)
    (exp(q / n) - 1)) with t the slope's Student-t statistic (n - 2 df), q = chi2_1(level); below
    ``level`` for small n, since the cut ignores the estimated scale's degrees of freedom."""
    q = float(chi2.ppf(level, 1))
    return float(2 * student_t.cdf(math.sqrt((n - 2) * math.expm1(q / n)), n - 2) - 1)
