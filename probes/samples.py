"""The samples probe: generate the fixed seed bank at each checkpoint and score every sample.

docs/science.md#samples: for each checkpoint (or a reference denoiser) the bank of
fixed noises is sampled (``Run.generate``: Heun for DiT, fixed uniforms for GPT), and each sample gets

- ``qdist`` q(x), the L-inf distance to the nearest code (cube vertex for binary encodings);
- its decoded cells ``sample`` (binarized b = x > 0 for binary encodings);
- ``nn_hamming``: the Hamming distance (in cells) to the nearest train sample;
- ``state`` (the four states): 0 invalid_value (q > eps_state), 1 rule_error (decoded sample breaks
  the rule), 2 valid_novel (valid, not a train sample), 3 valid_memorized (valid and a train sample).

Per step: ``invalid_frac`` for several eps, ``group_acc`` / ``sample_acc`` (rule accuracy per constraint
and per sample), ``group_mem`` / ``sample_mem`` (memorization per (sample, group position) and per
sample), nearest-neighbour Hamming summaries for all / rule-valid / rule-valid-novel samples,
``combinatorial_novelty`` and the state counts. Baselines (chance accuracy, memorization of a
uniform-valid and a uniform-cube sampler) are scalar variables.

Definitions chosen here (the paper leaves them open; docs/science.md#samples):
- ``eps_state`` = 0.1 by default: a sample is in state 0 when q > 0.1, i.e. some coordinate is more
  than 0.1 away from its code (5% of the distance between the binary codes -1 and +1).
- A sample with a non-finite coordinate (NaN or inf: a diverged DiT, or a GPT whose sampling met a NaN
  or +inf logit) is in state 0 with q = inf, counted in ``invalid_frac`` at every eps and in
  ``nonfinite_count``, and never rule-valid, memorized or novel (its ``sample`` is stored as 0 and its
  ``nn_hamming`` as -1).
- Accuracy, memorization and the Hamming subsets use the decoded sample whatever q is (as the paper's
  sample accuracy / memorization); ``state`` puts q first. Subsets: ``all`` (finite samples);
  ``valid`` = decoded sample is rule-valid; ``valid_novel`` = rule-valid and not a train sample
  (nn_hamming > 0). ``combinatorial_novelty`` uses the same valid-novel population.
- ``group_acc`` = mean over samples and over the rule's constraints of "constraint satisfied": per
  group parity for the parity rule (chance 1/2), per row / line for the other rules.
- Rules without local groups (``rule.groups is None``): group memorization, its baselines and
  combinatorial novelty are NaN.
"""
from __future__ import annotations


import numpy as np
import xarray as xr

from dataclasses import dataclass

from twoclocks.data.rules import GroupParity, restricted_support, support_baseline
from twoclocks.probes.memo import GroupIndex, TrainIndex
from twoclocks.probes.registry import Probe, check_option, deprecated, concat_steps, option, register
from twoclocks.schema import CubeSchema, Var, coord

__all__ = ["run_baselines", "with_baselines", "STATES", "SUBSETS", "DEFAULT_EPS", "DEFAULT_EPS_STATE", "classify", "SampleEvaluator",
           "parse_eps", "run_samples", "summary_lines"]

STATES = ("invalid_value", "rule_error", "valid_novel", "valid_memorized")
SUBSETS = ("all", "valid", "valid_novel")
DEFAULT_EPS = (0.01, 0.05, 0.1, 0.2, 0.5)
DEFAULT_EPS_STATE = 0.1
MC_DRAWS = 1 << 16  # Monte Carlo draws for baselines without a closed form


def classify(qdist: np.ndarray, valid: np.ndarray, memorized: np.ndarray, eps_state: float) -> np.ndarray:
    """the science document's four states as int8: 0 invalid value (q > eps, or q not a number: a non-finite
    sample), 1 rule-violating, 2 valid and novel, 3 valid and memorized."""
    s = np.where(memorized, 3, 2)
    s = np.where(valid, s, 1)
    return np.where(~(np.asarray(qdist) <= eps_state), 0, s).astype(np.int8)


def _stats(d: np.ndarray, mask: np.ndarray):
    x = d[mask]
    return (float(x.mean()), float(np.median(x))) if x.size else (np.nan, np.nan)


class SampleEvaluator:
    """Scores model-space samples against a rule, an encoding and a train set (docs/science.md#samples). Build once per run; :meth:`evaluate` once per step.

    Non-finite samples (any coordinate NaN or inf: a diverged run, a bf16 overflow; a GPT sample whose
    sampling met non-finite logits arrives as all-NaN from ``generate``) are state ``invalid_value``
    with q = inf (so they count in ``invalid_frac`` at every eps), never rule-valid, memorized or
    novel: they count as failures in ``sample_acc`` / ``group_acc`` / ``sample_mem`` / ``group_mem``,
    their ``sample`` is stored as 0 and their ``nn_hamming`` as -1, and ``nonfinite_count`` counts them.

    One valid-novel population everywhere: a finite sample whose decoded cells are rule-valid and not a
    train sample, whatever q is (as ``sample_acc`` / ``sample_mem``, which time the clocks). The
    ``valid_novel`` Hamming subset and ``combinatorial_novelty`` both use it; the state
    ``valid_novel`` additionally needs q <= eps_state. The ``all`` subset is every finite sample."""

    def __init__(self, rule, encoding, train_cells: np.ndarray):
        self.rule, self.encoding = rule, encoding
        self.train_cells = np.asarray(train_cells)
        self.K = int(rule.n_symbols)
        self.train = TrainIndex(self.train_cells, self.K)
        groups = rule.groups
        self.groups = None if groups is None else np.asarray(groups)
        self.gindex = None if groups is None else GroupIndex(self.train_cells, self.groups, self.K)
        self.restricted = restricted_support(rule)
        self.families = tuple(getattr(rule, "families", ())) if hasattr(rule, "breakdown") else ()

    # ------------------------------------------------------------------ per step
    def evaluate(self, x: np.ndarray, eps=DEFAULT_EPS, eps_state: float = DEFAULT_EPS_STATE,
                 seeds=None) -> xr.Dataset:
        """All per-sample and per-step metrics of the model-space samples ``x`` (n, P); no step dim."""
        x = np.asarray(x)
        n = len(x)
        seeds = np.arange(n) if seeds is None else np.asarray(seeds)
        eps = np.asarray(sorted(set(float(e) for e in eps) | {float(eps_state)}))
        finite = np.isfinite(x).all(axis=1)
        xf = np.where(finite[:, None], x, 0).astype(x.dtype) if n else x   # non-finite rows: scored as failures
        q = self.encoding.qdist(xf).astype(np.float32)
        q[~finite] = np.inf
        cells = self.encoding.decode(xf).astype(np.uint8)
        cells[~finite] = 0
        cons = self.rule.constraints(cells) & finite[:, None]
        valid = cons.all(axis=1)
        nn = np.where(finite, self.train.nn_hamming(cells), -1)
        mem = (nn == 0) & finite
        state = classify(q, valid, mem, eps_state)
        novel = valid & ~mem
        if self.gindex is not None:
            gmem = self.gindex.contains(cells) & finite[:, None]
            group_mem = float(gmem.mean()) if n else np.nan
            combi = float(gmem[novel].all(axis=1).mean()) if novel.any() else np.nan
        else:
            group_mem = combi = np.nan
        mean = (lambda a: float(np.mean(a)) if n else np.nan)
        extra = {}
        if self.restricted:   # Latin squares, Sudoku: the training distribution covers part of the valid set
            extra["support_frac"] = ((), mean(self.rule.in_support(cells) & finite))
        if self.families:     # rows / columns / blocks that are permutations (paper Fig. 22)
            ratios = self.rule.breakdown(cells)
            line = np.array([mean(ratios[f"{f}_ratio"] * finite) for f in self.families])
            whole = np.array([mean((ratios[f"{f}_ratio"] == 1) & finite) for f in self.families])
            extra["line_valid_frac"] = (("family",), line)
            extra["family_valid_frac"] = (("family",), whole)
        masks = [finite, valid, novel]
        st = np.array([_stats(nn, m) for m in masks]).reshape(len(SUBSETS), 2)
        counts = np.bincount(state, minlength=len(STATES)).astype(np.int64)
        ds = xr.Dataset(
            {
                "sample": (("seed", "cell"), cells),
                "state": (("seed",), state),
                "qdist": (("seed",), q),
                "nn_hamming": (("seed",), nn.astype(np.int16)),
                "invalid_frac": (("eps",), (q[:, None] > eps[None]).mean(axis=0) if n else np.full(len(eps), np.nan)),
                "group_acc": ((), mean(cons)),
                "sample_acc": ((), mean(valid)),
                "group_mem": ((), group_mem),
                "sample_mem": ((), mean(mem)),
                "combinatorial_novelty": ((), combi),
                "nn_hamming_mean": (("subset",), st[:, 0]),
                "nn_hamming_median": (("subset",), st[:, 1]),
                "subset_count": (("subset",), np.array([m.sum() for m in masks], np.int64)),
                "state_count": (("state_label",), counts),
                "state_frac": (("state_label",), counts / max(n, 1) if n else np.full(len(STATES), np.nan)),
                "nonfinite_count": ((), np.int64((~finite).sum())),
                **extra,
            },
            coords={"seed": ("seed", seeds),
                    "cell": ("cell", np.arange(cells.shape[1])),
                    "eps": ("eps", eps),
                    "subset": ("subset", list(SUBSETS)),
                    "state_label": ("state_label", list(STATES)),
                    **({"family": ("family", list(self.families))} if self.families else {})},
        )
        return ds  # attrs: the schema's, stamped by the framework

    # ------------------------------------------------------------------ baselines
    def baselines(self, seed: int = 0) -> xr.Dataset:
        """Chance accuracy and the memorization of uniform samplers (docs/science.md#ideal): sample level
        N / |valid| (uniform-valid) and N / K^D (uniform cube); group level from the train set's
        distinct groups: mean over positions of (#distinct train patterns there) / (#patterns a
        sampler can draw there): K^G for the cube; 2^(G-1) even patterns for parity. Without a closed
        form (uniform-valid group memorization of non-parity rules, chance accuracy of rules with an
        unknown valid-set size) a Monte Carlo estimate over 2^16 draws with a fixed seed is used."""
        rule, K, D, N = self.rule, self.K, self.rule.D, len(self.train_cells)
        rng = np.random.default_rng([seed, 17])
        vsize = rule.valid_set_size
        parity = isinstance(rule, GroupParity)
        method = {}
        uni = None

        def uniform_cells():
            nonlocal uni
            if uni is None:
                uni = rng.integers(0, K, (MC_DRAWS, D), dtype=np.uint8)
            return uni
        if parity:
            chance_group = 0.5
            method["chance_group_acc"] = "exact: 2^(G-1) even patterns of 2^G"
        else:
            chance_group = float(rule.constraints(uniform_cells()).mean())
            method["chance_group_acc"] = "monte carlo over uniform random cells"
        if vsize is not None:
            chance_sample = float(vsize / K ** D)
            method["chance_sample_acc"] = "exact: |valid| / K^D"
        else:
            chance_sample = float(rule.is_valid(uniform_cells()).mean())
            method["chance_sample_acc"] = "monte carlo over uniform random cells"
        valid_sample = float(N / vsize) if vsize else np.nan
        support = rule.sampler_support_size
        cube_sample = float(N / K ** D)
        if self.gindex is None:
            valid_group = cube_group = np.nan
            method["group_mem"] = "undefined: the rule has no local groups"
        else:
            distinct = self.gindex.distinct.astype(float)
            cube_group = float((distinct / self.gindex.patterns_per_position).mean())
            if parity:
                valid_group = float((distinct / 2 ** (rule.G - 1)).mean())
                method["uniform_valid_group_mem"] = "exact: distinct train patterns / 2^(G-1)"
            else:
                draws = rule.sample(MC_DRAWS, rng)
                valid_group = float(self.gindex.contains(draws).mean())
                method["uniform_valid_group_mem"] = "monte carlo over rule.sample draws"
        values = {"chance_group_acc": chance_group, "chance_sample_acc": chance_sample,
                  "uniform_valid_sample_mem": valid_sample, "uniform_cube_sample_mem": cube_sample,
                  "uniform_valid_group_mem": valid_group, "uniform_cube_group_mem": cube_group,
                  "support_sample_mem": support_baseline(rule, N),
                  "valid_set_size": float(vsize) if vsize else np.nan,
                  "support_size": float(support) if support else np.nan}
        return xr.Dataset({name: ((), v) for name, v in values.items()},
                          attrs={"baseline_methods": str(method)})


# ---------------------------------------------------------------------------------------- driver
def parse_eps(spec) -> tuple[float, ...]:
    """Parse ``--eps`` ('0.01,0.05,0.1' or a sequence of floats) into positive thresholds (as the
    framework parses the option)."""
    if spec is None:
        return DEFAULT_EPS
    return check_option("samples", SamplesOptions, "eps", spec)


@dataclass(frozen=True)
class SamplesOptions:
    eps: tuple = option(DEFAULT_EPS, "Quantization thresholds for invalid_frac, e.g. '0.01,0.05,0.1'.",
                        parse="list", gt=0)
    eps_state: float = option(DEFAULT_EPS_STATE, "A sample is in state invalid_value when q(x) > this.", gt=0)
    batch_size: int = option(4096, "Samples generated per network call.", identity=False, min=1)

    def __post_init__(self):  # the thresholds used: those given and eps_state
        object.__setattr__(self, "eps", tuple(sorted({float(e) for e in self.eps} | {float(self.eps_state)})))



def _setup(ctx):
    return SampleEvaluator(ctx.run.rule, ctx.run.encoding, ctx.run.cells("train"))


def _compute(ctx, ev, source, step, todo):
    x = ctx.generate(source, batch_size=ctx.opts.batch_size)
    return ev.evaluate(x, ctx.opts.eps, ctx.opts.eps_state).expand_dims(step=[step])


#: the baselines of a run, computed once per process (they depend only on the rule and the train set)
_BASELINES: dict = {}


def run_baselines(run) -> xr.Dataset:
    """The baselines (:meth:`SampleEvaluator.baselines`) of an opened run: a function of its rule and
    train set only, so they are computed when a cube is assembled or read, never frozen in a cube (a
    corrected baseline reaches every existing cube without ``--force``)."""
    key = (str(run.path), repr(run.rule), int(len(run.cells("train"))))
    if key not in _BASELINES:
        _BASELINES[key] = SampleEvaluator(run.rule, run.encoding, run.cells("train")).baselines()
    return _BASELINES[key]


def with_baselines(ds: xr.Dataset, run) -> xr.Dataset:
    """``ds`` with the run's baselines (replacing any stored ones) and their methods in the attrs."""
    base = run_baselines(run)
    ds = ds.drop_vars([v for v in base.data_vars if v in ds.variables]).assign(base.data_vars)
    ds.attrs["baseline_methods"] = base.attrs["baseline_methods"]
    return ds


def _merge(parts):
    """concat_steps; steps stored by twoclocks 0.1 have no nonfinite_count: -1 (not recorded) there."""
    ds = concat_steps(parts)
    if "nonfinite_count" in ds and ds["nonfinite_count"].isnull().any():
        ds["nonfinite_count"] = ds["nonfinite_count"].fillna(-1).astype(np.int64)
    return ds


def _finalize(ds, ctx):
    ds = with_baselines(ds, ctx.run)
    ds.attrs.update({"eps_state": float(ctx.opts.eps_state), "states": " ".join(STATES),
                     "definitions": "see the twoclocks.probes.samples module docstring and docs/science.md#samples"})
    return ds


def run_samples(run, steps: str | None = None, denoiser: str | None = None, eps=None,
                eps_state: float = DEFAULT_EPS_STATE, device: str = "auto", force: bool = False,
                progress: bool = True, batch_size: int = 4096, **common) -> xr.Dataset:
    """Deprecated (removal in 0.4): ``get_probe("samples")(run, ...)``. Compute (or complete)
    ``RUN/probes/samples.zarr`` and return it: ``PROBE(run, ...)``.

    ``run``: a run directory or an opened :class:`twoclocks.run.Run`. ``steps``: as ``--steps``
    (default all checkpoints); ``denoiser``: a reference (ideal-rule, ideal-cube, memorize) instead,
    written to ``samples-DENOISER.zarr`` at step -1. Only steps not yet stored are computed;
    ``force`` recomputes everything. An interrupt leaves a valid cube of the finished steps, which the
    next call completes."""
    opts = {} if eps is None else {"eps": eps}
    deprecated("run_samples", "samples")
    return PROBE(run, steps=steps, denoiser=denoiser, device=device, force=force, progress=progress,
                 eps_state=eps_state, batch_size=batch_size, **opts, **common)


def summary_lines(ds: xr.Dataset, last: int = 5) -> list[str]:
    """A short text summary of a samples cube: the last ``last`` steps and the baselines."""
    lines = [f"{'step':>8} {'sample_acc':>10} {'sample_mem':>10} {'group_acc':>9} {'group_mem':>9} "
             f"{'nn_ham':>6}  " + " ".join(f"{s[:11]:>11}" for s in STATES)]
    for s in ds["step"].values[-last:]:
        d = ds.sel(step=s)
        lines.append(f"{int(s):>8} {float(d.sample_acc):>10.3f} {float(d.sample_mem):>10.3f} "
                     f"{float(d.group_acc):>9.3f} {float(d.group_mem):>9.3f} "
                     f"{float(d.nn_hamming_mean.sel(subset='all')):>6.2f}  "
                     + " ".join(f"{float(v):>11.3f}" for v in d.state_frac.values))
    lines.append(f"chance sample_acc {float(ds.chance_sample_acc):.3g}, group_acc {float(ds.chance_group_acc):.3g}; "
                 f"uniform-valid sample_mem {float(ds.uniform_valid_sample_mem):.3g}"
                 + (f", training-distribution sample_mem N/|support| {float(ds.support_sample_mem):.3g}"
                    if "support_sample_mem" in ds else "") + ", "
                 f"group_mem {float(ds.uniform_valid_group_mem):.3g}")
    return lines


# ---------------------------------------------------------------------------------------- the probe
_U = "1"
SCHEMA = CubeSchema("samples", doc="The fixed noise bank sampled at each checkpoint, every sample scored "
                                   "(docs/science.md#samples).", coords={
    "step": coord("step"), "seed": coord("seed"), "cell": coord("cell"),
    "eps": Var(("eps",), "float64", "quantization threshold", _U),
    "subset": Var(("subset",), "str", "samples summarized: all, rule-valid, rule-valid and not in train", None),
    "state_label": coord("state_label"),
    "family": Var(("family",), "str", "family of lines that must be permutations: row, col, block", None),
}, data_vars={
    "sample": Var(("step", "seed", "cell"), "uint8", "decoded (binarized) sample"),
    "state": Var(("step", "seed"), "int8", "per-sample state", flags=STATES),
    "qdist": Var(("step", "seed"), "float32", "quantization distance q(x) = max_i | |x_i| - 1 |"),
    "nn_hamming": Var(("step", "seed"), "int16", "Hamming distance to the nearest train sample", "cells"),
    "invalid_frac": Var(("step", "eps"), "float64", "fraction of samples with q(x) > eps"),
    "group_acc": Var(("step",), "float64", "group accuracy (fraction of the rule's constraints satisfied, per "
                                           "group for parity)"),
    "sample_acc": Var(("step",), "float64", "sample accuracy (fraction rule-valid)"),
    "group_mem": Var(("step",), "float64", "group memorization (fraction of (sample, group position) whose "
                                           "pattern occurs there in train)"),
    "sample_mem": Var(("step",), "float64", "sample memorization (fraction equal to a train sample)"),
    "combinatorial_novelty": Var(("step",), "float64", "share of valid-novel samples whose every group occurs at "
                                                       "its position in train (new samples made of memorized parts)"),
    "nn_hamming_mean": Var(("step", "subset"), "float64", "mean nearest-train Hamming distance", "cells"),
    "nn_hamming_median": Var(("step", "subset"), "float64", "median nearest-train Hamming distance", "cells"),
    "subset_count": Var(("step", "subset"), "int64", "number of samples in the subset"),
    "state_count": Var(("step", "state_label"), "int64", "number of samples per state"),
    "state_frac": Var(("step", "state_label"), "float64", "fraction of samples per state"),
    "nonfinite_count": Var(("step",), "int64", "number of samples with a non-finite coordinate (NaN or inf; -1: "
                                               "not recorded, a step stored by twoclocks 0.1)"),
    "chance_group_acc": Var((), "float64", "group accuracy of uniform random cells (chance)", derived=True),
    "chance_sample_acc": Var((), "float64", "sample accuracy of uniform random cells (chance)", derived=True),
    "uniform_valid_sample_mem": Var((), "float64", "sample memorization of a uniform-valid sampler, N / |valid|", derived=True),
    "uniform_cube_sample_mem": Var((), "float64", "sample memorization of a uniform-cube sampler, N / K^D", derived=True),
    "uniform_valid_group_mem": Var((), "float64", "group memorization of a uniform-valid sampler", derived=True),
    "uniform_cube_group_mem": Var((), "float64", "group memorization of a uniform-cube sampler", derived=True),
    "support_sample_mem": Var((), "float64", "sample memorization of a perfect model of the training distribution, "
                                             "N / |support| (the baseline of the adaptive memorization threshold)", derived=True),
    "valid_set_size": Var((), "float64", "number of rule-valid images |valid| (NaN: unknown)", derived=True),
    "support_size": Var((), "float64", "number of images the training-data sampler draws from, uniformly, "
                                       "|support| (= |valid| except Latin squares and Sudoku; NaN: unknown)", derived=True),
    "support_frac": Var(("step",), "float64", "fraction of samples in the training distribution's support (Latin "
                                              "squares, Sudoku: the cyclic square's isotopy class)"),
    "line_valid_frac": Var(("step", "family"), "float64", "fraction of the family's lines (rows, columns, blocks) "
                                                          "that are permutations, over samples and lines"),
    "family_valid_frac": Var(("step", "family"), "float64", "fraction of samples whose every line of the family is "
                                                            "a permutation (row-valid, column-valid, block-valid)"),
})


PROBE = register(Probe(
    name="samples", cube="samples", options=SamplesOptions, schema=SCHEMA, builtin=True,
    help="Sample the fixed noise bank at each checkpoint; states, accuracy, memorization -> probes/samples.zarr.",
    references=("ideal-rule", "ideal-cube", "memorize"),
    setup=_setup, compute=_compute, merge=_merge, select=lambda ds, ctx: with_baselines(ds, ctx.run),
    finalize=_finalize, summary=lambda ds: "\n".join(summary_lines(ds)),
    bf16_target=("identical_samples_frac", "min", 0.995),  # decoded final samples, bf16 vs fp32
))
