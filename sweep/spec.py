"""The sweep spec: TOML or CLI options -> SweepSpec, expanded into grid points and run names."""
from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib
from twoclocks import TwoclocksError
from twoclocks.probes.clockdefs import clockset_from_table
from twoclocks.probes.registry import load_probe
from twoclocks.training.config import TrainConfig

EXECUTORS = ("local", "debug", "slurm")
DICT_FIELDS = ("rule_params", "encoding_params")
#: [slurm] keys -> meaning (defaults in brackets)
SLURM_KEYS = {
    "partition": "partition name", "time_min": "time limit per job in minutes [1440]",
    "gpus_per_node": "GPUs per job [1]", "mem_gb": "memory per job in GB", "cpus_per_task": "CPUs per job",
    "max_parallel": "array concurrency cap (%K) [all]", "account": "account", "qos": "quality of service",
    "constraint": "node constraint", "setup": "shell lines run before the job (list)",
    "requeue": "add #SBATCH --requeue [true]", "max_num_timeout": "requeues after timeouts [10]",
    "signal_delay_s": "seconds between the USR2 signal and the time limit [120]", "job_name": "job name",
    "extra": "table of further sbatch options, e.g. {mail-type = 'END'}",
}
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]")


# ----------------------------------------------------------------------------------------- the spec
@dataclass
class SweepSpec:
    """A sweep: ``base`` overrides shared by every run, ``grid`` axes (flat keys, 'rule_params.k' for
    dict fields) -> value lists, ``slurm`` settings, ``probes`` name -> options for probe-all."""
    base: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    slurm: dict = field(default_factory=dict)
    probes: dict = field(default_factory=dict)
    clocks: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"base": self.base, "grid": self.grid, "slurm": self.slurm, "probes": self.probes}
        return {**out, "clocks": self.clocks} if self.clocks else out

    def clock_set(self):
        """The clock definitions of the spec's ``[clocks]`` table
        (:func:`twoclocks.probes.clockdefs.clockset_from_table`), None without one."""
        return clockset_from_table(self.clocks) if self.clocks else None


def config_fields() -> list[str]:
    """The fields of a run's config (:class:`twoclocks.training.config.TrainConfig`)."""
    return list(TrainConfig.__dataclass_fields__)


def _flatten_grid(grid: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in grid.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            if prefix or k not in DICT_FIELDS:
                raise TwoclocksError(f"[grid] {key}: only {' and '.join(DICT_FIELDS)} may hold a table of axes; "
                                     "give a list of values, e.g. n_train = [16, 32]")
            out.update(_flatten_grid(v, key + "."))
        else:
            out[key] = v
    return out


def spec_from_dict(d: dict, source: str = "the sweep spec") -> SweepSpec:
    """Validate a spec dict (TOML tables base, grid, slurm, probes, clocks) into a :class:`SweepSpec`.
    ``[clocks]``: the clock definitions `collect` and `plot` use for the sweep
    (:func:`twoclocks.probes.clockdefs.clockset_from_table`)."""
    unknown = set(d) - {"base", "grid", "slurm", "probes", "clocks"}
    if unknown:
        raise TwoclocksError(f"{source}: unknown table(s) {sorted(unknown)}; use [base], [grid], [slurm], "
                             "[probes] and [clocks]")
    clocks = d.get("clocks", {}) or {}
    clockset_from_table(clocks, source)   # validated here: one-line errors
    fields = config_fields()
    base = dict(d.get("base", {}))
    grid = _flatten_grid(dict(d.get("grid", {})))
    for key in list(base) + [k.split(".")[0] for k in grid]:
        if key not in fields:
            raise TwoclocksError(f"{source}: {key!r} is not a config field; choose from {', '.join(fields)}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise TwoclocksError(f"{source}: [grid] {key} must be a non-empty list of values, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) < len(values):
            raise TwoclocksError(f"{source}: [grid] {key} lists a value twice: {values!r}")
        top, _, sub = key.partition(".")
        if key in base or (sub and sub in base.get(top, {})):
            raise TwoclocksError(f"{source}: {key} is both in [base] and in [grid]; keep one")
    slurm = dict(d.get("slurm", {}))
    bad = sorted(set(slurm) - set(SLURM_KEYS))
    if bad:
        raise TwoclocksError(f"{source}: unknown [slurm] key(s) {bad}; choose from {', '.join(SLURM_KEYS)}")
    probes = d.get("probes", {})
    if isinstance(probes, list):  # probes = ["samples", "dsm-spectrum"]: defaults
        probes = {p: {} for p in probes}
    if not isinstance(probes, dict) or not all(isinstance(v, dict) for v in probes.values()):
        raise TwoclocksError(f"{source}: [probes] must hold one table of options per probe, e.g. [probes.samples]")
    for name in probes:
        load_probe(name)
    return SweepSpec(base, grid, slurm, {k: dict(v) for k, v in probes.items()}, json.loads(json.dumps(clocks)))


def load_spec(path) -> SweepSpec:
    """Read a TOML sweep spec (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise TwoclocksError(f"sweep spec {path} does not exist")
    try:
        d = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TwoclocksError(f"{path} is not valid TOML ({e})") from None
    return spec_from_dict(d, str(path))


def parse_value(text: str):
    """A CLI value as TOML (2 -> int, 1e-4 -> float, true -> bool, [1, 2] -> list), else the string."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def _assignment(text: str, what: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip() or not value.strip():
        raise TwoclocksError(f"{what} {text!r}: use KEY=VALUE, e.g. {what} n_train=16")
    return key.strip(), value


def _set(d: dict, key: str, value) -> None:
    top, _, sub = key.partition(".")
    if sub:
        d.setdefault(top, {})[sub] = value
    else:
        d[key] = value


def spec_from_options(spec: SweepSpec | None = None, base=(), grid=(), slurm=(), probes=()) -> SweepSpec:
    """A spec from CLI options, on top of ``spec`` (options win): ``base`` 'KEY=VALUE', ``grid``
    'KEY=V1,V2,...' (or 'KEY=[...]' in TOML), ``slurm`` 'KEY=VALUE', ``probes`` 'PROBE.KEY=VALUE'."""
    d = {k: json.loads(json.dumps(v)) for k, v in (spec or SweepSpec()).to_dict().items()}
    nested_grid = {}
    for k, v in d["grid"].items():
        _set(nested_grid, k, v)
    d["grid"] = nested_grid
    for text in base:
        k, v = _assignment(text, "--base")
        _set(d["base"], k, parse_value(v))
    for text in grid:
        k, v = _assignment(text, "--grid")
        values = parse_value(v) if v.strip().startswith("[") else [parse_value(x) for x in v.split(",")]
        _set(d["grid"], k, values)
    for text in slurm:
        k, v = _assignment(text, "--slurm")
        d["slurm"][k] = parse_value(v)
    for text in probes:
        k, v = _assignment(text, "--option")
        name, dot, opt = k.partition(".")
        if not dot:
            raise TwoclocksError(f"--option {text!r}: use PROBE.KEY=VALUE, e.g. --option samples.steps=last")
        d["probes"].setdefault(name, {})[opt] = parse_value(v)
    return spec_from_dict(d, "the sweep options")


def _fmt_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)  # shortest round-trip form: stable and unique
    if isinstance(v, (int, str)):
        return str(v)
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def run_name(point: dict) -> str:
    """The run directory name of a grid point (module docstring); 'run' for an empty grid."""
    if not point:
        return "run"
    return "__".join(f"{k}={_NAME_UNSAFE.sub('-', _fmt_value(v))}" for k, v in point.items())


def expand(spec: SweepSpec) -> list[dict]:
    """The runs of a spec: [{name, point, overrides}] in cartesian-product order (first axis slowest).
    Every point is validated by building its TrainConfig."""
    keys = list(spec.grid)
    runs, names = [], {}
    for values in itertools.product(*(spec.grid[k] for k in keys)):
        point = dict(zip(keys, values))
        overrides = json.loads(json.dumps(spec.base))
        for k, v in point.items():
            _set(overrides, k, v)
        name = run_name(point)
        if name in names:
            raise TwoclocksError(f"grid points {names[name]} and {point} both give the run name {name!r}; "
                                 "make the values distinct")
        names[name] = point
        try:
            TrainConfig.from_dict(overrides)
        except TwoclocksError as e:
            raise TwoclocksError(f"run {name}: {e}") from None
        except TypeError as e:
            raise TwoclocksError(f"run {name}: {e}") from None
        runs.append({"name": name, "point": point, "overrides": overrides})
    return runs


def check_probe_options(probes: dict) -> None:
    """Every probe exists and every option is one it takes, with a valid value (one-line errors)."""
    for name, opts in probes.items():
        probe = load_probe(name)
        if getattr(probe, "cross_run", False):
            raise TwoclocksError(f"{name} works across runs, not per run; run `twoclocks-probe {name} ...` on the sweep")
        own = {f.name for f in probe.option_fields()}
        common = set(probe.common_options())
        bad = sorted(k for k in opts if k not in own and k not in common)
        if bad:
            raise TwoclocksError(f"probe {name} has no option {', '.join(bad)}; its options: "
                                 f"{', '.join(sorted((own | common) - {'progress'}))}")
        probe.make_options(**{k: v for k, v in opts.items() if k in own})
