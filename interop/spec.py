"""The ``foreign`` section of a run's config.json: checkpoints written by your own training code.

    "foreign": {
      "factory": "my_models.py:make_unet",          # MODULE:FUNCTION or FILE.py:FUNCTION -> torch.nn.Module
      "factory_kwargs": {"channels": 1},            # keyword arguments of the factory (JSON values)
      "loader": {"format": "state_dict"},           # state_dict | key (+ "key": "ema") | nanogpt | safetensors
      "checkpoints": {"pattern": "unet_*.pt", "step_regex": "unet_(\\d+)\\.pt"},   # under checkpoints/
      "convention": {"type": "eps", ...}            # twoclocks.interop.conventions
    }

Reading this section imports nothing: the factory is code, and a run directory received from someone
else must never make the toolkit run code by itself. :func:`trusted_factory` decides which factory may
be imported: one given by the user (``--model-factory SPEC`` / ``TWOCLOCKS_MODEL_FACTORY``), or the
config's own when the user passes ``--trust-code`` (``TWOCLOCKS_TRUST_CODE=1``); otherwise a one-line
refusal saying what would have been imported (docs/your_own_checkpoints.md).
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from twoclocks import TwoclocksError
from twoclocks.interop.conventions import check_convention_dict
from twoclocks.rundir import CHECKPOINT_DIR

__all__ = ["ForeignSpec", "foreign_spec", "foreign_checkpoints", "trusted_factory", "LOADERS",
           "FACTORY_ENV", "TRUST_ENV", "DEFAULT_CHECKPOINTS"]

LOADERS = ("state_dict", "key", "nanogpt", "safetensors")
FACTORY_ENV, TRUST_ENV = "TWOCLOCKS_MODEL_FACTORY", "TWOCLOCKS_TRUST_CODE"
#: the checkpoint files of each loader format when the config gives no pattern
DEFAULT_CHECKPOINTS = {"safetensors": ("*.safetensors", r"(\d+)\.safetensors$")}
_DEFAULT_PT = ("*.pt", r"(\d+)\.pt$")
_FACTORY_RE = re.compile(r"^(?P<target>[^:]+):(?P<fn>[A-Za-z_][A-Za-z0-9_.]*)$")


@dataclass(frozen=True)
class ForeignSpec:
    """The parsed ``foreign`` section (validated; nothing imported)."""
    factory: str
    factory_kwargs: dict = field(default_factory=dict)
    loader: str = "state_dict"
    key: str | None = None
    pattern: str = "*.pt"
    step_regex: str = r"(\d+)\.pt$"
    convention: dict = field(default_factory=dict)
    check: bool = True

    def to_dict(self) -> dict:
        loader = {"format": self.loader, **({"key": self.key} if self.key else {})}
        return {"factory": self.factory, "factory_kwargs": self.factory_kwargs, "loader": loader,
                "checkpoints": {"pattern": self.pattern, "step_regex": self.step_regex},
                "convention": self.convention, "check": self.check}


def _factory_problem(spec) -> str | None:
    if not isinstance(spec, str) or not _FACTORY_RE.match(spec.strip()):
        return (f"factory {spec!r} is not MODULE:FUNCTION or FILE.py:FUNCTION "
                "(e.g. my_models.py:make_unet or mypkg.models:build)")
    return None


def foreign_spec(section, where: str = "config.json") -> ForeignSpec:
    """Validate a ``foreign`` section (dict) into a :class:`ForeignSpec`; a one-line error naming the
    bad field otherwise. Imports nothing."""
    if not isinstance(section, dict):
        raise TwoclocksError(f"{where}: 'foreign' must be an object with factory, loader, checkpoints, convention")
    unknown = set(section) - {"factory", "factory_kwargs", "loader", "checkpoints", "convention", "check"}
    if unknown:
        raise TwoclocksError(f"{where}: unknown field(s) {sorted(unknown)} in 'foreign'; allowed: factory, "
                             "factory_kwargs, loader, checkpoints, convention, check")
    factory = section.get("factory")
    if factory is None:
        raise TwoclocksError(f"{where}: 'foreign' has no 'factory' (MODULE:FUNCTION or FILE.py:FUNCTION)")
    problem = _factory_problem(factory)
    if problem:
        raise TwoclocksError(f"{where}: {problem}")
    kwargs = section.get("factory_kwargs", {}) or {}
    if not isinstance(kwargs, dict):
        raise TwoclocksError(f"{where}: foreign.factory_kwargs must be an object of keyword arguments")
    loader = section.get("loader", {"format": "state_dict"})
    if isinstance(loader, str):
        loader = {"format": loader}
    fmt = loader.get("format", "state_dict") if isinstance(loader, dict) else None
    if fmt not in LOADERS:
        raise TwoclocksError(f"{where}: foreign.loader.format {fmt!r} is not one of {', '.join(LOADERS)}")
    key = loader.get("key")
    if fmt == "key" and not isinstance(key, str):
        raise TwoclocksError(f"{where}: foreign.loader format 'key' needs \"key\": the entry holding the "
                             "state_dict (e.g. \"model\" or \"ema\")")
    ck = section.get("checkpoints", {}) or {}
    pattern, regex = DEFAULT_CHECKPOINTS.get(fmt, _DEFAULT_PT)
    pattern, regex = ck.get("pattern", pattern), ck.get("step_regex", regex)
    try:
        rx = re.compile(regex)
    except (re.error, TypeError) as e:
        raise TwoclocksError(f"{where}: foreign.checkpoints.step_regex {regex!r} is not a regular expression "
                             f"({e})") from None
    if rx.groups < 1:
        raise TwoclocksError(f"{where}: foreign.checkpoints.step_regex {regex!r} needs a group capturing the "
                             r"step, e.g. 'ckpt_(\d+)\.pt'")
    if not isinstance(pattern, str) or "/" in pattern or pattern.startswith("."):
        raise TwoclocksError(f"{where}: foreign.checkpoints.pattern {pattern!r} must be a file name pattern "
                             "inside checkpoints/ (e.g. 'ckpt_*.pt')")
    conv = section.get("convention")
    if not isinstance(conv, dict) or "type" not in conv:
        raise TwoclocksError(f"{where}: foreign.convention must be an object with a 'type' (edm-D, edm-F, eps, "
                             "v, x0 for diffusion; logits for autoregressive)")
    check_convention_dict(conv, where)
    return ForeignSpec(factory.strip(), dict(kwargs), fmt, key, pattern, regex, dict(conv),
                       bool(section.get("check", True)))


def foreign_checkpoints(run_dir, spec: ForeignSpec) -> dict[int, Path]:
    """{step: file} of the checkpoint files under ``RUN_DIR/checkpoints`` matching the spec's pattern,
    the step read by its regex (first group); two files of one step are an error."""
    d = Path(run_dir) / CHECKPOINT_DIR
    if not d.is_dir():
        return {}
    rx = re.compile(spec.step_regex)
    out: dict[int, Path] = {}
    for p in sorted(d.iterdir()):
        if not p.is_file() or not fnmatch.fnmatch(p.name, spec.pattern):
            continue
        m = rx.search(p.name)
        if not m:
            continue
        try:
            step = int(m.group(1))
        except ValueError:
            raise TwoclocksError(f"checkpoint {p}: step_regex {spec.step_regex!r} captured {m.group(1)!r}, "
                                 "not an integer step") from None
        if step in out:
            raise TwoclocksError(f"checkpoints {out[step].name} and {p.name} in {d} both read as step {step}; "
                                 "fix foreign.checkpoints.step_regex or move one away")
        out[step] = p
    return dict(sorted(out.items()))


def _env_factories() -> list[str]:
    raw = os.environ.get(FACTORY_ENV, "").strip()
    return [raw] if raw else []


def _trust_env() -> bool:
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _what_it_imports(spec: str, run_dir: Path) -> str:
    target, fn = spec.rsplit(":", 1)
    if target.endswith(".py"):
        path = Path(target) if Path(target).is_absolute() else Path(run_dir) / target
        return f"would execute the file {path} and call {fn}()"
    return f"would import module {target} and call {fn}()"


def trusted_factory(spec: ForeignSpec, run_dir, model_factory: str | None = None,
                    trust_code: bool | None = None) -> tuple[str, Path]:
    """The factory to import for a foreign run and the directory a relative FILE.py is resolved
    against: the user's ``model_factory`` (argument, else ``TWOCLOCKS_MODEL_FACTORY``; relative file
    paths against the current directory), else the config's factory when ``trust_code`` (argument,
    else ``TWOCLOCKS_TRUST_CODE``; relative paths against the run directory). Anything else: a one-line
    refusal that names what would be imported."""
    run_dir = Path(run_dir)
    given = [model_factory] if model_factory else _env_factories()
    if given:
        chosen = given[0]
        problem = _factory_problem(chosen)
        if problem:
            raise TwoclocksError(f"--model-factory: {problem}")
        return chosen, Path.cwd()
    trust = _trust_env() if trust_code is None else bool(trust_code)
    if trust:
        return spec.factory, run_dir
    raise TwoclocksError(
        f"{run_dir} holds checkpoints from your own code: its config.json names the model factory "
        f"{spec.factory!r}, which {_what_it_imports(spec.factory, run_dir)}; nothing was imported. If you trust it, "
        f"pass --model-factory {spec.factory} (or --trust-code) before the command, e.g. "
        f"`twoclocks-probe --model-factory {spec.factory} samples {run_dir}`")


def describe(spec: ForeignSpec) -> str:
    """JSON of the factory, loader and convention (provenance attrs)."""
    return json.dumps({"factory": spec.factory, "factory_kwargs": spec.factory_kwargs, "loader": spec.loader,
                       "key": spec.key, "convention": spec.convention}, sort_keys=True)
