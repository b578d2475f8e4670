"""Clock definitions as data (docs/science.md#clocks): what a clock is, the paper's definitions as
named presets, and the one function that evaluates a set of definitions on a run's curves
(:func:`evaluate_clocks`, vectorized over any leading axes, so the point clocks of ``clocks``,
``collect``, ``markov``, ``plot`` and the seed bootstrap of ``probes/uncertainty.py`` all come from it).

A clock (:class:`ClockDef`) is a name, one or more :class:`Condition` (a curve of the samples cube,
a comparison ``>=``, ``>``, ``<=``, ``<``, and a threshold that is fixed, or relative to the run's
memorization baseline b = N/|support|: ``adaptive`` b + t (1 - b), ``baseline`` b + t; all conditions
must hold at an evaluation) and a :class:`Sustain` rule: the conditions hold at k consecutive
evaluations (the default, k = 3), or, with a span, at every evaluation from the onset s_i through the
first evaluation at or after s_i + ``span`` steps (``factor``: s_i x factor), so the held stretch is a
length of training rather than a count of checkpoints. A :class:`ClockSet` holds the definitions of a
run's clocks: ``tau_rule`` and ``tau_mem`` (the window, the censoring and the fits use them), any
further ones (e.g. ``tau_novel``), and the rule that a tau_rule later than tau_mem is discarded.

:data:`PRESETS` are the paper's definitions (name -> (ClockSet, section)); ``adaptive`` is the default.
Every cube that depends on the definitions records them (:meth:`ClockSet.attrs`: ``clock_defs`` the
JSON of :meth:`ClockSet.to_dict`, ``clock_preset`` the preset it equals or ``custom``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

import numpy as np

from twoclocks import TwoclocksError

__all__ = ["DEFAULT_K", "DEFAULT_ACC_THRESHOLD", "DEFAULT_MEM_THRESHOLD", "MEM_POLICIES", "sustained_onset",
           "MemThreshold", "DEFAULT_MEM_POLICY", "mem_threshold_for", "REACHED", "PENDING", "NEVER", "DISCARDED",
           "STATUS_NAMES", "sustained_onset_batch", "sustained_span_batch", "Condition", "Sustain", "ClockDef",
           "ClockSet", "PRESETS", "DEFAULT_PRESET", "RELATIVE", "COMPARISONS", "clockset_from_options",
           "clockset_from_table", "evaluate_clocks", "clocks_from_curves", "tail_length"]

DEFAULT_K = 3
DEFAULT_ACC_THRESHOLD = 0.9
DEFAULT_MEM_THRESHOLD = 0.1
#: memorization-threshold policies: adaptive b + t (1 - b), fixed t, baseline b + t
MEM_POLICIES = ("adaptive", "fixed", "baseline")
#: comparison operators of a condition
COMPARISONS = {">=": np.greater_equal, ">": np.greater, "<=": np.less_equal, "<": np.less}
#: how a condition's threshold t relates to the run's memorization baseline b = N/|support|
RELATIVE = {"fixed": "t", "adaptive": "b + t (1 - b)", "baseline": "b + t"}
#: status codes of the vectorized onsets; DISCARDED: a tau_rule after tau_mem
REACHED, PENDING, NEVER, DISCARDED = 0, 1, 2, 3
STATUS_NAMES = ("reached", "pending", "never", "discarded")
_VAR = re.compile(r"[A-Za-z_]\w*(\[[A-Za-z_]\w*\])?")


# ----------------------------------------------------------------------------- sustained onset
def _holds(values, threshold: float | None, strict: bool) -> np.ndarray:
    """The criterion per evaluation: ``values >= threshold`` (> with ``strict``; NaN does not hold), or
    with ``threshold`` None ``values`` themselves as booleans."""
    if threshold is None:
        return np.asarray(values).astype(bool)
    v = np.asarray(values, dtype=float)
    return ((v > threshold) if strict else (v >= threshold)) & ~np.isnan(v)


def sustained_onset(steps, values, threshold: float | None = None, k: int = DEFAULT_K, strict: bool = False):
    """(step, status) of the first evaluation i from which the criterion holds at i..i+k-1: values >=
    threshold (> with ``strict``), or, with ``threshold`` None, ``values`` are the criterion's booleans.
    NaN values count as not holding. ``steps`` in evaluation order (ascending). status: 'reached',
    'never', or 'pending: ...' when only the last j < k evaluations hold (not yet sustained). The one
    sustained-onset rule of the package (sample clocks here, loss clocks in the DSM probe)."""
    steps = np.asarray(steps)
    if k < 1:
        raise TwoclocksError(f"--k must be at least 1, got {k}")
    above = _holds(values, threshold, strict)
    if len(above) >= k:
        run = np.convolve(above.astype(int), np.ones(k, int), mode="valid")  # window sums
        hit = np.flatnonzero(run == k)
        if hit.size:
            return float(steps[hit[0]]), "reached"
    tail = int(tail_length(above))
    if tail:
        return np.nan, f"pending: above threshold at the last {tail} of {k} evaluations needed"
    return np.nan, "never"


def tail_length(above) -> np.ndarray:
    """Length of the final run of True along the last axis of ``above`` (..., T)."""
    above = np.asarray(above, bool)
    T = above.shape[-1]
    if T == 0:
        return np.zeros(above.shape[:-1], np.int64)
    notab = ~above[..., ::-1]
    return np.where(notab.any(axis=-1), notab.argmax(axis=-1), T).astype(np.int64)


def sustained_onset_batch(steps, values, threshold: float | None = None, k: int = DEFAULT_K,
                          strict: bool = False):
    """:func:`sustained_onset` along the last axis of ``values`` (..., T) at once: (tau, status)
    arrays of shape (...,), tau NaN where not reached, status :data:`REACHED` / :data:`PENDING` /
    :data:`NEVER`. Same criterion: ``values >= threshold`` (> with ``strict``; NaN does not hold), or
    with ``threshold`` None ``values`` are the booleans; ``steps`` ascending, length T."""
    steps = np.asarray(steps, dtype=float)
    if k < 1:
        raise TwoclocksError(f"--k must be at least 1, got {k}")
    above = _holds(values, threshold, strict)
    lead, T = above.shape[:-1], above.shape[-1]
    tau = np.full(lead, np.nan)
    status = np.full(lead, NEVER, np.int8)
    if T >= k:
        c = np.zeros(lead + (T + 1,), np.int64)
        np.cumsum(above, axis=-1, out=c[..., 1:])
        hit = (c[..., k:] - c[..., :-k]) == k                      # (..., T - k + 1) windows all holding
        any_hit = hit.any(axis=-1)
        first = hit.argmax(axis=-1)
        tau = np.where(any_hit, steps[first], np.nan)
        status[any_hit] = REACHED
    else:
        any_hit = np.zeros(lead, bool)
    if T:
        pending = above[..., -1] & ~any_hit                         # a final run of True, not yet sustained
        status[pending] = PENDING
    return tau, status


def span_ends(steps, span: float | None = None, factor: float | None = None) -> np.ndarray:
    """Per evaluation i the step the span rule must be covered to: s_i + span, or s_i x factor."""
    steps = np.asarray(steps, dtype=float)
    return steps + span if span is not None else steps * factor


def sustained_span_batch(steps, above, span: float | None = None, factor: float | None = None):
    """The span rule along the last axis of the booleans ``above`` (..., T): the first evaluation i at
    which the criterion holds at every evaluation from s_i through the first evaluation at or after
    e_i = s_i + ``span`` (or s_i x ``factor``); an i with no evaluation at or after e_i cannot be
    confirmed yet. (tau, status) as :func:`sustained_onset_batch` (PENDING: a final run of True not yet
    confirmed). On a grid with constant spacing d and span (k - 1) d this is the k-evaluation rule."""
    steps = np.asarray(steps, dtype=float)
    above = np.asarray(above, bool)
    lead, T = above.shape[:-1], above.shape[-1]
    tau = np.full(lead, np.nan)
    status = np.full(lead, NEVER, np.int8)
    if T == 0:
        return tau, status
    ends = span_ends(steps, span, factor)
    j = np.searchsorted(steps, ends - 1e-9 * np.maximum(1.0, np.abs(ends)), side="left")   # first s_j >= e_i
    complete = j < T
    jj = np.minimum(j, T - 1)
    c = np.zeros(lead + (T + 1,), np.int64)
    np.cumsum(above, axis=-1, out=c[..., 1:])
    i = np.arange(T)
    hit = ((c[..., jj + 1] - c[..., i]) == (jj + 1 - i)) & complete          # (..., T)
    any_hit = hit.any(axis=-1)
    tau = np.where(any_hit, steps[hit.argmax(axis=-1)], np.nan)
    status[any_hit] = REACHED
    status[above[..., -1] & ~any_hit] = PENDING
    return tau, status


# ----------------------------------------------------------------------------- threshold policy
@dataclass(frozen=True)
class MemThreshold:
    """The memorization-threshold policy of tau_mem (docs/science.md#clocks): ``policy`` 'adaptive'
    (default; the paper's Table 4) thr = b + t (1 - b) above the training-distribution baseline
    b = N/|support|, 'fixed' thr = t, or 'baseline' thr = b + t (t = 0: the paper's Fig. 21 "above
    baseline"); ``t`` = 0.1. Where b is unknown every policy uses t."""
    policy: str = "adaptive"
    t: float = DEFAULT_MEM_THRESHOLD

    def __post_init__(self):
        if self.policy not in MEM_POLICIES:
            raise TwoclocksError(f"unknown memorization threshold policy {self.policy!r}; choose adaptive or fixed "
                                 "(or baseline: b + t)")
        if not (isinstance(self.t, (int, float)) and 0 <= self.t < 1):
            raise TwoclocksError(f"--mem-threshold must be in [0, 1), got {self.t}")

    @classmethod
    def from_options(cls, mem_threshold: float | None = None, mem_adaptive: bool | None = None,
                     policy: "MemThreshold | str | None" = None) -> "MemThreshold":
        """The policy from command options: ``policy`` (a MemThreshold or its name) wins; else
        ``mem_adaptive`` True / False picks adaptive / fixed, None the default (adaptive); ``t`` from
        ``mem_threshold`` (None: 0.1)."""
        if isinstance(policy, MemThreshold):
            return policy if mem_threshold is None else cls(policy.policy, float(mem_threshold))
        if policy is None:
            policy = DEFAULT_MEM_POLICY.policy if mem_adaptive is None else ("adaptive" if mem_adaptive else "fixed")
        return cls(policy, DEFAULT_MEM_THRESHOLD if mem_threshold is None else mem_threshold)

    @property
    def adaptive(self) -> bool:
        return self.policy == "adaptive"

    def value(self, baseline: float = np.nan) -> float:
        """The threshold for a run whose baseline sample memorization (N/|support|) is ``baseline``
        (NaN: unknown, then t)."""
        return Condition("sample_mem", ">", float(self.t), self.policy).value(baseline)

    def formula(self) -> str:
        if self.adaptive:
            return (f"adaptive: b + {self.t:g} (1 - b), b = N/|support| (sample memorization of a perfect model "
                    f"of the training distribution); {self.t:g} where |support| is unknown")
        if self.policy == "baseline":
            return f"baseline: b + {self.t:g}, b = N/|support|; {self.t:g} where |support| is unknown"
        return f"fixed: {self.t:g}"

    def attrs(self, baseline: float = np.nan, per_run: bool = False) -> dict:
        """Attrs for every cube that depends on the threshold, e.g. {"mem_threshold_policy": "adaptive",
        "mem_threshold_t": 0.1, "mem_threshold": 0.156, "mem_threshold_formula": ...}: ``mem_threshold``
        is the value for the run's ``baseline`` (NaN: unknown, then t); ``per_run``: a cube over several
        runs with their own baselines, ``mem_threshold`` "per run" for a relative policy (the per-run
        values go in a variable)."""
        value = ("per run" if self.policy != "fixed" else float(self.t)) if per_run else self.value(baseline)
        return {"mem_threshold_policy": self.policy, "mem_threshold_t": float(self.t),
                "mem_threshold": value, "mem_threshold_formula": self.formula()}

    def phrase(self, baseline: float = np.nan, value: float | None = None) -> str:
        """A short phrase for summary lines, e.g. 'tau_mem at adaptive threshold 0.156' (``value``: the
        threshold already computed)."""
        return f"tau_mem at {self.policy} threshold {self.value(baseline) if value is None else float(value):.3g}"


def mem_threshold_for(baseline: float, mem_threshold: float = DEFAULT_MEM_THRESHOLD,
                      adaptive: bool | None = None) -> float:
    """The memorization threshold (:class:`MemThreshold`): adaptive b + t (1 - b) above the
    training-distribution baseline b = N/|support| (the default, ``adaptive`` None or True) or fixed t
    (``adaptive`` False). A NaN baseline gives t."""
    return MemThreshold.from_options(mem_threshold, adaptive).value(baseline)


# ----------------------------------------------------------------------------- definitions
def _check_keys(d, allowed, what):
    if not isinstance(d, dict):
        raise TwoclocksError(f"{what}: expected a table, got {d!r}")
    bad = sorted(set(d) - set(allowed))
    if bad:
        raise TwoclocksError(f"{what}: unknown key(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")


@dataclass(frozen=True)
class Condition:
    """``var OP threshold``: ``var`` a curve over ``step`` of the samples cube (``sample_acc``,
    ``sample_mem``, ``group_acc``, ...; ``state_frac[valid_novel]`` selects a label of its second
    dim), ``op`` one of >=, >, <=, <, ``threshold`` t and ``relative`` how the compared value follows
    from t and the run's memorization baseline b = N/|support| (:data:`RELATIVE`: ``fixed`` t,
    ``adaptive`` b + t (1 - b), ``baseline`` b + t; t where b is unknown). NaN never holds."""
    var: str
    op: str
    threshold: float
    relative: str = "fixed"

    def __post_init__(self):
        if not isinstance(self.var, str) or not _VAR.fullmatch(self.var):
            raise TwoclocksError(f"clock condition: var {self.var!r} is not a curve name such as sample_mem or "
                                 "state_frac[valid_novel]")
        if self.op not in COMPARISONS:
            raise TwoclocksError(f"clock condition on {self.var}: op {self.op!r}; choose {', '.join(COMPARISONS)}")
        if self.relative not in RELATIVE:
            raise TwoclocksError(f"clock condition on {self.var}: relative {self.relative!r}; choose "
                                 f"{', '.join(RELATIVE)}")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not np.isfinite(t):
            raise TwoclocksError(f"clock condition on {self.var}: threshold must be a finite number, got {t!r}")
        if self.relative != "fixed" and not (0 <= t < 1):
            raise TwoclocksError(f"clock condition on {self.var}: a {self.relative} threshold t must be in [0, 1), "
                                 f"got {t}")
        object.__setattr__(self, "threshold", float(t))

    @property
    def name(self) -> str:
        """The curve's variable (``state_frac`` of ``state_frac[valid_novel]``)."""
        return self.var.split("[")[0]

    @property
    def label(self) -> str | None:
        return self.var[:-1].split("[")[1] if "[" in self.var else None

    def value(self, baseline: float = np.nan) -> float:
        """The compared value for a run with memorization baseline ``baseline`` (NaN: unknown, then t)."""
        b = float(baseline) if baseline is not None else np.nan
        if self.relative == "adaptive" and np.isfinite(b):
            return float(b + self.threshold * (1.0 - b))
        if self.relative == "baseline" and np.isfinite(b):
            return float(b + self.threshold)
        return float(self.threshold)

    def holds(self, values, baseline: float = np.nan) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        return COMPARISONS[self.op](v, self.value(baseline)) & ~np.isnan(v)

    def text(self) -> str:
        rhs = {"fixed": f"{self.threshold:g}", "adaptive": f"b + {self.threshold:g} (1 - b)",
               "baseline": "b" if self.threshold == 0 else f"b + {self.threshold:g}"}[self.relative]
        return f"{self.var} {self.op} {rhs}"

    def to_dict(self) -> dict:
        return {"var": self.var, "op": self.op, "threshold": self.threshold, "relative": self.relative}

    @classmethod
    def from_dict(cls, d: dict, what: str = "clock condition") -> "Condition":
        _check_keys(d, ("var", "op", "threshold", "relative"), what)
        missing = [k for k in ("var", "op", "threshold") if k not in d]
        if missing:
            raise TwoclocksError(f"{what}: missing {', '.join(missing)} (e.g. var = \"sample_mem\", op = \">\", "
                                 "threshold = 0.1)")
        return cls(d["var"], d["op"], d["threshold"], d.get("relative", "fixed"))


@dataclass(frozen=True)
class Sustain:
    """How long the conditions must hold: ``k`` consecutive evaluations (default 3), or, with ``span``
    (steps) or ``factor`` (> 1), at every evaluation from the onset s_i through the first evaluation at
    or after s_i + span (s_i x factor); at most one of span and factor."""
    k: int = DEFAULT_K
    span: float | None = None
    factor: float | None = None

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise TwoclocksError(f"--k must be at least 1, got {self.k}")
        if self.span is not None and self.factor is not None:
            raise TwoclocksError("a clock's sustain rule takes a span in steps or a factor of the step, not both")
        if self.span is not None and not (np.isfinite(self.span) and self.span > 0):
            raise TwoclocksError(f"--sustain-steps must be a positive number of steps, got {self.span}")
        if self.factor is not None and not (np.isfinite(self.factor) and self.factor > 1):
            raise TwoclocksError(f"--sustain-factor must be > 1, got {self.factor}")
        object.__setattr__(self, "k", int(self.k))

    @property
    def uses_span(self) -> bool:
        return self.span is not None or self.factor is not None

    def text(self) -> str:
        if self.span is not None:
            return f"held over {self.span:g} steps"
        if self.factor is not None:
            return f"held up to {self.factor:g} x the step"
        return f"for {self.k} evaluations"

    def to_dict(self) -> dict:
        return {"k": self.k, "span": self.span, "factor": self.factor}

    @classmethod
    def from_dict(cls, d: dict, what: str = "sustain") -> "Sustain":
        _check_keys(d, ("k", "span", "factor"), what)
        return cls(d.get("k", DEFAULT_K), d.get("span"), d.get("factor"))


@dataclass(frozen=True)
class ClockDef:
    """One clock: its ``name`` (``tau_rule``, ``tau_mem``, or another such as ``tau_novel``), its
    ``conditions`` (all must hold at an evaluation) and its :class:`Sustain` rule."""
    name: str
    conditions: tuple
    sustain: Sustain = field(default_factory=Sustain)

    def __post_init__(self):
        if not isinstance(self.name, str) or not re.fullmatch(r"tau_[a-z0-9_]+", self.name):
            raise TwoclocksError(f"clock name {self.name!r}: write tau_ and lower-case letters, e.g. tau_novel")
        conds = tuple(self.conditions) if isinstance(self.conditions, (list, tuple)) else (self.conditions,)
        if not conds or not all(isinstance(c, Condition) for c in conds):
            raise TwoclocksError(f"clock {self.name}: give at least one Condition")
        if not isinstance(self.sustain, Sustain):
            raise TwoclocksError(f"clock {self.name}: sustain must be a Sustain")
        object.__setattr__(self, "conditions", conds)

    def text(self) -> str:
        return f"{self.name}: " + " and ".join(c.text() for c in self.conditions) + " " + self.sustain.text()

    def to_dict(self) -> dict:
        return {"name": self.name, "conditions": [c.to_dict() for c in self.conditions],
                "sustain": self.sustain.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "ClockDef":
        _check_keys(d, ("name", "conditions", "sustain"), "clock definition")
        if "name" not in d or "conditions" not in d:
            raise TwoclocksError("clock definition: give name and conditions")
        conds = d["conditions"] if isinstance(d["conditions"], list) else [d["conditions"]]
        return cls(d["name"], tuple(Condition.from_dict(c, f"clock {d['name']}") for c in conds),
                   Sustain.from_dict(d.get("sustain") or {}, f"clock {d['name']} sustain"))


@dataclass(frozen=True)
class ClockSet:
    """The definitions of a run's clocks: ``tau_rule`` and ``tau_mem`` first, then any further clocks;
    ``discard_rule_after_mem``: a tau_rule later than tau_mem is discarded (App. C.7)."""
    clocks: tuple
    discard_rule_after_mem: bool = True

    def __post_init__(self):
        clocks = tuple(self.clocks)
        if not all(isinstance(c, ClockDef) for c in clocks):
            raise TwoclocksError("a clock set holds ClockDef objects")
        names = [c.name for c in clocks]
        if len(set(names)) < len(names):
            raise TwoclocksError(f"clock names repeat: {', '.join(names)}")
        for need in ("tau_rule", "tau_mem"):
            if need not in names:
                raise TwoclocksError(f"the clock definitions lack {need} (the window and the fits need tau_rule "
                                     "and tau_mem)")
        rest = [c for c in clocks if c.name not in ("tau_rule", "tau_mem")]
        object.__setattr__(self, "clocks", (self["tau_rule", clocks], self["tau_mem", clocks], *rest))

    def __getitem__(self, key):
        name, clocks = key if isinstance(key, tuple) else (key, self.clocks)
        for c in clocks:
            if c.name == name:
                return c
        raise TwoclocksError(f"no clock {name!r}; defined: {', '.join(c.name for c in clocks)}")

    @property
    def names(self) -> tuple:
        return tuple(c.name for c in self.clocks)

    @property
    def extra(self) -> tuple:
        """Names of the clocks besides tau_rule and tau_mem."""
        return self.names[2:]

    @property
    def variables(self) -> tuple:
        """The curves the definitions read (e.g. ``state_frac[valid_novel]``)."""
        return tuple(dict.fromkeys(c.var for d in self.clocks for c in d.conditions))

    def replace_clock(self, clock: ClockDef) -> "ClockSet":
        """This set with ``clock`` in place of the clock of its name (or added)."""
        if clock.name in self.names:
            return replace(self, clocks=tuple(clock if c.name == clock.name else c for c in self.clocks))
        return replace(self, clocks=self.clocks + (clock,))

    def mem_condition(self) -> Condition | None:
        """tau_mem's condition on sample_mem (the memorization threshold), None if it has none."""
        return next((c for c in self["tau_mem"].conditions if c.var == "sample_mem"), None)

    def mem_policy(self) -> MemThreshold | None:
        """The :class:`MemThreshold` of tau_mem's sample_mem condition (None: none, or one it cannot say)."""
        c = self.mem_condition()
        if c is None or c.op not in (">", ">="):
            return None
        try:
            return MemThreshold(c.relative, c.threshold)
        except TwoclocksError:
            return None

    @property
    def preset(self) -> str:
        """The name of the preset these definitions equal, else ``custom``."""
        return next((name for name, (cs, _) in PRESETS.items() if cs == self), "custom")

    def text(self) -> str:
        return "; ".join(c.text() for c in self.clocks) + ("; tau_rule after tau_mem discarded"
                                                           if self.discard_rule_after_mem else "")

    def to_dict(self) -> dict:
        return {"clocks": [c.to_dict() for c in self.clocks], "discard_rule_after_mem": self.discard_rule_after_mem}

    @classmethod
    def from_dict(cls, d) -> "ClockSet":
        if isinstance(d, str):
            try:
                d = json.loads(d)
            except json.JSONDecodeError as e:
                raise TwoclocksError(f"clock definitions are not JSON ({e})") from None
        _check_keys(d, ("clocks", "discard_rule_after_mem"), "clock definitions")
        return cls(tuple(ClockDef.from_dict(c) for c in d.get("clocks", [])), bool(d.get("discard_rule_after_mem", True)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def attrs(self) -> dict:
        """The attrs every cube that depends on the definitions records."""
        return {"clock_defs": self.to_json(), "clock_preset": self.preset, "clock_defs_text": self.text()}


def _preset(acc: float, mem: Condition, extra=()) -> ClockSet:
    return ClockSet((ClockDef("tau_rule", (Condition("sample_acc", ">=", acc),)), ClockDef("tau_mem", (mem,)),
                     *extra))


#: the paper's clock definitions: name -> (ClockSet, where in the paper; docs/science.md#clocks)
PRESETS = {
    "adaptive": (_preset(0.9, Condition("sample_mem", ">", 0.1, "adaptive")),
                 "Table 4 / App. C.3: adaptive memorization threshold (of App. B.3; form b + t (1 - b) assumed), "
                 "accuracy >= 0.9 (Fig. 4, Fig. 21, App. C.7); the default"),
    "fixed": (_preset(0.9, Condition("sample_mem", ">", 0.1)),
              "Fig. 4, App. C.7: sample accuracy >= 0.9, sample memorization > 0.1"),
    "above-baseline": (_preset(0.9, Condition("sample_mem", ">", 0.0, "baseline")),
                       "Fig. 21: rule onset at sample rule accuracy >= 90%, memorization onset at memorization "
                       "ratio above baseline (b = N/|support|)"),
    "valid-novel": (_preset(0.85, Condition("sample_mem", ">", 0.1, "adaptive"), (ClockDef("tau_novel", (
        Condition("sample_acc", ">=", 0.85), Condition("state_frac[valid_novel]", ">=", 0.5))),)),
        "Fig. 23: rule accuracy >= 85%, novel-valid fraction >= 0.5 (tau_novel, here also with accuracy "
        ">= 0.85); tau_mem as the default (the caption's memorization criterion is cut in our copy)"),
}
DEFAULT_PRESET = "adaptive"


def _preset_set(name: str) -> ClockSet:
    if name not in PRESETS:
        raise TwoclocksError(f"--clocks {name!r}: unknown preset; choose {', '.join(PRESETS)}")
    return PRESETS[name][0]


def clockset_from_options(clocks=None, k: int | None = None, acc_threshold: float | None = None,
                          mem_threshold: float | None = None, mem_adaptive: bool | None = None,
                          policy: MemThreshold | str | None = None, sustain_steps: float | None = None,
                          sustain_factor: float | None = None) -> ClockSet:
    """The clock definitions from options: ``clocks`` a :class:`ClockSet`, a preset name
    (:data:`PRESETS`), a list of :class:`ClockDef` (replacing / adding to the default preset's), a
    ``to_dict`` dict or its JSON (None: the default preset); then the shorthands, each only where given:
    ``k`` / ``sustain_steps`` / ``sustain_factor`` the sustain rule of every clock, ``acc_threshold``
    the threshold of tau_rule's sample_acc conditions, ``policy`` or ``mem_threshold`` / ``mem_adaptive``
    tau_mem's sample_mem condition (relative adaptive / fixed, threshold t)."""
    if clocks is None:
        cs = _preset_set(DEFAULT_PRESET)
    elif isinstance(clocks, ClockSet):
        cs = clocks
    elif isinstance(clocks, str) and not clocks.lstrip().startswith("{"):
        cs = _preset_set(clocks)
    elif isinstance(clocks, (str, dict)):
        cs = ClockSet.from_dict(clocks)
    elif isinstance(clocks, ClockDef) or (isinstance(clocks, (list, tuple))
                                          and all(isinstance(c, ClockDef) for c in clocks)):
        cs = _preset_set(DEFAULT_PRESET)
        for c in ([clocks] if isinstance(clocks, ClockDef) else clocks):
            cs = cs.replace_clock(c)
    else:
        raise TwoclocksError(f"clocks: give a preset name ({', '.join(PRESETS)}), a ClockSet or ClockDefs, "
                             f"not {type(clocks).__name__}")
    if k is not None or sustain_steps is not None or sustain_factor is not None:
        for c in cs.clocks:
            s = c.sustain
            if sustain_steps is not None or sustain_factor is not None:
                s = Sustain(s.k if k is None else k, sustain_steps, sustain_factor)
            elif k is not None:
                s = Sustain(k)
            cs = cs.replace_clock(replace(c, sustain=s))
    if acc_threshold is not None:
        if not (isinstance(acc_threshold, (int, float)) and 0 < acc_threshold <= 1):
            raise TwoclocksError(f"--acc-threshold must be in (0, 1], got {acc_threshold}")
        rule = cs["tau_rule"]
        cs = cs.replace_clock(replace(rule, conditions=tuple(
            replace(c, threshold=float(acc_threshold)) if c.var == "sample_acc" else c for c in rule.conditions)))
    if policy is not None or mem_threshold is not None or mem_adaptive is not None:
        old = cs.mem_condition()
        base = cs.mem_policy() or MemThreshold()
        t = base.t if mem_threshold is None else mem_threshold
        if isinstance(policy, MemThreshold):
            pol = policy if mem_threshold is None else MemThreshold(policy.policy, mem_threshold)
        elif policy is not None:
            pol = MemThreshold(policy, t)
        else:
            pol = MemThreshold(base.policy if mem_adaptive is None else ("adaptive" if mem_adaptive else "fixed"), t)
        new = Condition("sample_mem", old.op if old is not None else ">", float(pol.t), pol.policy)
        mem = cs["tau_mem"]
        conds = tuple(new if c is old else c for c in mem.conditions) if old is not None else (new, *mem.conditions)
        cs = cs.replace_clock(replace(mem, conditions=conds))
    return cs


#: keys of a sweep spec's [clocks] table besides the [clocks.NAME] tables
TABLE_KEYS = ("preset", "k", "sustain_steps", "sustain_factor", "acc_threshold", "mem_threshold", "mem_adaptive",
              "discard_rule_after_mem")


def clockset_from_table(table: dict, source: str = "the sweep spec") -> ClockSet:
    """The clock definitions of a sweep spec's ``[clocks]`` table: ``preset`` (default adaptive), the
    shorthands ``k``, ``sustain_steps``, ``sustain_factor``, ``acc_threshold``, ``mem_threshold``,
    ``mem_adaptive``, ``discard_rule_after_mem``, and one ``[clocks.tau_NAME]`` table per clock that
    replaces or adds it: ``conditions = [{var = "sample_mem", op = ">", threshold = 0.2, relative =
    "fixed"}]`` and optionally ``k``, ``span`` or ``factor``."""
    if not isinstance(table, dict):
        raise TwoclocksError(f"{source}: [clocks] must be a table")
    try:
        opts = {k: v for k, v in table.items() if not isinstance(v, dict)}
        bad = sorted(set(opts) - set(TABLE_KEYS))
        if bad:
            raise TwoclocksError(f"unknown key(s) {', '.join(bad)}; allowed: {', '.join(TABLE_KEYS)} and "
                                 "[clocks.tau_NAME] tables")
        cs = _preset_set(opts.get("preset", DEFAULT_PRESET))
        if "discard_rule_after_mem" in opts:
            cs = replace(cs, discard_rule_after_mem=bool(opts["discard_rule_after_mem"]))
        for name, d in table.items():
            if isinstance(d, dict):
                _check_keys(d, ("conditions", "k", "span", "factor"), f"[clocks.{name}]")
                cs = cs.replace_clock(ClockDef.from_dict({"name": name, "conditions": d.get("conditions", []),
                                                          "sustain": {k: d[k] for k in ("k", "span", "factor")
                                                                      if k in d}}))
        return clockset_from_options(cs, opts.get("k"), opts.get("acc_threshold"), opts.get("mem_threshold"),
                                     opts.get("mem_adaptive"), None, opts.get("sustain_steps"),
                                     opts.get("sustain_factor"))
    except TwoclocksError as e:
        raise TwoclocksError(f"{source}: [clocks] {e}") from None


# ----------------------------------------------------------------------------- evaluation
def evaluate_clocks(clocks: ClockSet, steps, curves: dict, baseline: float = np.nan) -> dict:
    """Every clock of ``clocks`` on ``curves`` (var -> array (..., T), the curves over the ascending
    evaluated ``steps``; any leading axes, e.g. bootstrap replicates), for a run whose memorization
    baseline is ``baseline``. Returns name -> {"tau" (...,) NaN where not reached, "status" (...,)
    codes :data:`STATUS_NAMES`, "tail" (...,) the final run of evaluations at which the conditions hold,
    "raw" the tau before the discard rule, "thresholds" the compared values}: the one evaluation of the
    package's clocks."""
    steps = np.asarray(steps, dtype=float)
    missing = [v for v in clocks.variables if v not in curves]
    if missing:
        raise TwoclocksError(f"the clock definitions need {', '.join(missing)}, which the samples cube lacks "
                             f"(has {', '.join(curves)})")
    out = {}
    for d in clocks.clocks:
        holds = None
        for c in d.conditions:
            h = c.holds(curves[c.var], baseline)
            holds = h if holds is None else holds & h
        if d.sustain.uses_span:
            tau, status = sustained_span_batch(steps, holds, d.sustain.span, d.sustain.factor)
        else:
            tau, status = sustained_onset_batch(steps, holds, None, d.sustain.k)
        out[d.name] = {"tau": tau, "status": status, "tail": tail_length(holds), "raw": tau,
                       "thresholds": tuple(c.value(baseline) for c in d.conditions)}
    if clocks.discard_rule_after_mem:
        r, m = out["tau_rule"], out["tau_mem"]
        disc = np.isfinite(r["raw"]) & np.isfinite(m["tau"]) & (r["raw"] > m["tau"])
        r["tau"] = np.where(disc, np.nan, r["raw"])
        r["status"] = np.where(disc, DISCARDED, r["status"]).astype(np.int8)
    return out


def _status_text(d: ClockDef, code: int, tail: int, steps) -> str:
    if code == REACHED:
        return "reached"
    if code == DISCARDED:
        return "discarded: after tau_mem"
    if code == PENDING:
        if not d.sustain.uses_span:
            return f"pending: above threshold at the last {tail} of {d.sustain.k} evaluations needed"
        end = span_ends(steps[-tail:-tail + 1], d.sustain.span, d.sustain.factor)[0]
        return f"pending: holds at the last {tail} evaluations; not yet confirmed up to step {end:g}"
    return "never"


def clocks_from_curves(steps, sample_acc, sample_mem, baseline: float = np.nan, k: int | None = None,
                       acc_threshold: float | None = None, mem_threshold: float | None = None,
                       mem_adaptive: bool | None = None, policy: MemThreshold | str | None = None,
                       clocks=None, curves: dict | None = None, sustain_steps: float | None = None,
                       sustain_factor: float | None = None) -> dict:
    """Both clocks and the innovation window from one run's curves (docs/science.md#clocks), by
    :func:`evaluate_clocks`. The definitions: ``clocks`` (a :class:`ClockSet`, preset name or ClockDefs;
    None: the default preset, adaptive) with the shorthands ``k``, ``acc_threshold``, ``policy`` or
    ``mem_threshold`` / ``mem_adaptive``, ``sustain_steps`` / ``sustain_factor``
    (:func:`clockset_from_options`). ``curves``: further curves
    over ``steps`` the definitions read (e.g. ``state_frac[valid_novel]``). Further clocks appear as
    ``NAME`` / ``NAME_status``; ``clock_set`` is the ClockSet used."""
    cs = clockset_from_options(clocks, k, acc_threshold, mem_threshold, mem_adaptive, policy, sustain_steps,
                               sustain_factor)
    steps = np.asarray(steps)
    order = np.argsort(steps, kind="stable")
    steps = steps[order].astype(float) if steps.dtype.kind == "f" else steps[order]
    data = {"sample_acc": np.asarray(sample_acc, float)[order], "sample_mem": np.asarray(sample_mem, float)[order]}
    data.update({key: np.asarray(v, float)[order] for key, v in (curves or {}).items()})
    ev = evaluate_clocks(cs, steps, data, baseline)
    text = {d.name: _status_text(d, int(ev[d.name]["status"]), int(ev[d.name]["tail"]), np.asarray(steps, float))
            for d in cs.clocks}
    tau_rule, tau_mem = float(ev["tau_rule"]["tau"]), float(ev["tau_mem"]["tau"])
    rule_status, mem_status = text["tau_rule"], text["tau_mem"]
    tau_rule_raw = float(ev["tau_rule"]["raw"])
    mem_cond = cs.mem_condition()
    pol = cs.mem_policy()
    thr = mem_cond.value(baseline) if mem_cond is not None else float(ev["tau_mem"]["thresholds"][0])
    last = float(steps[-1]) if len(steps) else np.nan
    censored_at = np.nan
    if not np.isfinite(tau_mem) and len(steps):
        tail = int(ev["tau_mem"]["tail"])
        censored_at = float(steps[-tail]) if tail else last
    if np.isfinite(tau_rule) and np.isfinite(tau_mem):
        window, wstatus = tau_mem - tau_rule, "open"
    elif rule_status.startswith("discarded"):
        window, wstatus = np.nan, "none: the rule is learned only after memorization starts"
    elif np.isfinite(tau_rule):
        window, wstatus = np.nan, f"open-ended: tau_mem not reached by step {last:g} (window > {last - tau_rule:g})"
    else:
        window, wstatus = np.nan, "undefined: tau_rule not reached"
    notes = []
    relative = mem_cond.relative if mem_cond is not None else "fixed"
    if mem_cond is not None and np.isfinite(baseline) and baseline >= thr:
        notes.append(f"baseline memorization N/|support| {baseline:.3g} >= threshold {thr:.3g}: tau_mem may time "
                     "rule learning (use the adaptive threshold, --mem-adaptive)")
    elif mem_cond is not None and np.isfinite(baseline) and relative == "fixed" and baseline >= thr / 2:
        notes.append(f"baseline memorization N/|support| {baseline:.3g} is close to the threshold {thr:.3g}")
    out = {"tau_rule": tau_rule, "tau_rule_status": rule_status, "tau_rule_raw": tau_rule_raw,
           "tau_mem": tau_mem, "tau_mem_status": mem_status, "tau_mem_censored_at": censored_at,
           "window": window, "window_status": wstatus,
           "mem_threshold": thr, "mem_threshold_policy": pol.policy if pol else "custom",
           "mem_threshold_t": float(pol.t) if pol else np.nan,
           "mem_phrase": pol.phrase(baseline, thr) if pol else f"tau_mem: {' and '.join(c.text() for c in cs['tau_mem'].conditions)}",
           "mem_baseline": float(baseline), "last_step": last,
           "n_evals": int(len(steps)), "notes": "; ".join(notes), "clock_set": cs}
    for name in cs.extra:
        out[name], out[f"{name}_status"] = float(ev[name]["tau"]), text[name]
    return out


DEFAULT_MEM_POLICY = MemThreshold()
