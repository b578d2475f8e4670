"""The probe registry: each probe declared once, everything else (CLI, probe-all, plot, sweep specs,
docs) driven by the declaration.

A probe is a :class:`Probe`: its name, the architectures it applies to, an options dataclass (defaults,
validation in ``__post_init__``, help text in each field's ``metadata['help']``), its cube schema, the
function that computes one piece, a text summary and its figures. Calling it runs the one driver
(:mod:`twoclocks.probes.driver`)::

    from twoclocks.probes import get_probe
    ds = get_probe("samples")("runs/a", steps="last", eps_state=0.1)   # probe(run_or_path, **options)
    print(get_probe("samples").summary(ds))

Built-in probes live in their modules (``twoclocks.probes.samples``, ...). A probe of your own (see
``examples/custom_probe.py``) registers through the ``twoclocks.probes`` entry point group of your
package, or is named on the command line as ``module:object`` (``twoclocks-probe probe mymod:PROBE RUN``,
``probe-all --probe mymod:PROBE``, ``plot --probe mymod:PROBE``): it gets resume, provenance, progress,
the sweep fan-out and the figures with no change to twoclocks.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any, Callable

import xarray as xr

from twoclocks import TwoclocksError
from twoclocks.probes.clocks_schema import CLOCKS_SCHEMA, COLLECT_SCHEMA, SENSITIVITY_SCHEMA
from twoclocks.probes.fits_schema import CLOCK_FIT_SCHEMA
from twoclocks.store import concat_steps

__all__ = ["Probe", "FigureSpec", "option", "register", "get_probe", "all_probes", "all_schemas", "load_probe",
           "concat_steps", "COMMON_OPTIONS", "BUILTIN_MODULES", "user_code_error", "debug_enabled"]

#: modules whose import registers the built-in probes (order: the order of `probe-all` and `plot`)
BUILTIN_MODULES = (
    "twoclocks.probes.samples",
    "twoclocks.probes.markov",
    "twoclocks.probes.dsm",
    "twoclocks.probes.ce",
    "twoclocks.landscape.plane", "twoclocks.landscape.basin",
)
ENTRY_POINT_GROUP = "twoclocks.probes"

#: options every per-checkpoint probe accepts (handled by the driver), with their help text
COMMON_OPTIONS = {
    "steps": "Checkpoints to use: all (default), last, '0,100,2000' or '100:5000'.",
    "denoiser": "A reference instead of checkpoints (writes NAME-DENOISER.zarr with step -1).",
    "device": "auto, cpu or cuda.",
    "precision": "Network arithmetic: fp32, bf16, or auto: fp32 unless a recorded measurement on this GPU "
                 "model showed bf16 keeps this probe's results (docs/science.md#precision).",
    "force": "Recompute everything, discarding stored results of this probe.",
    "update_stale": "Recompute only the steps an older version of this probe computed, whose numbers a fix "
                    "changed (info and probe-all list them).",
    "progress": "Show a progress bar on stderr.",
}


def option(default, help: str, **kw):
    """A field of a probe's options dataclass: its default and its help text (shown by --help).
    Further metadata: ``identity=False`` for options that do not change the cube's values (batch
    sizes: not part of the stored ``probe_params``), ``cli=False`` for Python-only options, ``flag``
    (the command-line flag or flags), ``cli_type`` (the command-line type when the default does not tell
    it, e.g. ``Optional[int]``)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def _check_type(probe: str, f: dataclasses.Field, value):
    """An option value of the type its default has (int, float, bool), else a one-line error."""
    default = f.default if f.default is not dataclasses.MISSING else None
    flag = "--" + f.name.replace("_", "-")
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise TwoclocksError(f"probe {probe}: {flag} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TwoclocksError(f"probe {probe}: {flag} must be an integer, got {value!r}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TwoclocksError(f"probe {probe}: {flag} must be a number, got {value!r}")
        value = float(value)
    return value


@dataclass(frozen=True)
class FigureSpec:
    """A figure drawn by `plot` when the cubes it needs exist: ``draw(cubes) -> Figure``, where
    ``cubes`` maps cube names to Datasets (and 'clock_policy' to the memorization-threshold policy)."""
    name: str
    needs: tuple
    draw: Callable


@dataclass
class Probe:
    """One probe, declared once (module docstring).

    Every function gets the call's :class:`twoclocks.probes.driver.Context` ``ctx`` (``ctx.run``,
    ``ctx.opts``, ``ctx.D(source)``, ``ctx.model(step)``, ``ctx.generate(source)``, device, precision).
    The computation: ``setup(ctx)`` once per call returns a state object (fixed subsets, noise,
    evaluators); ``compute(ctx, state, source, step, todo)`` returns one piece, an xarray Dataset
    with a length-1 ``step`` dim, for a checkpoint step (``source`` is the step) or a reference
    (``source`` the reference name, step -1); ``todo`` is what the step still needs (``todo(existing,
    step, ctx)`` decides it; None: the step is done). ``extra_pieces(ctx, state)`` may add pieces not
    tied to a step (computed once; ``extra_done(cube)`` says whether the cube has them). ``merge`` combines the stored cube and the pieces; ``finalize(ds,
    state)`` adds derived variables at every assembly; ``select(ds, state)`` cuts the answer to this
    call's request; ``params(ctx)`` adds entries to the cube's identity; ``resolve(opts, ctx) -> opts``
    fills options whose default depends on the run or the device ('auto' sizes) before anything else.
    ``bf16_target``: (metric, "min" | "max", bound), what a bf16-vs-fp32 measurement must show for
    bf16 to keep this probe's results; ``--precision auto`` uses bf16 only on a GPU model with recorded
    measurements that meet it (:func:`twoclocks.environment.bf16_measured_ok`). A derived probe (no checkpoints of its own) sets ``derive(run, opts) -> Dataset``
    instead.

    Storage (:mod:`twoclocks.store`): ``keys`` empty (the default) for one piece per step, merged by
    ``merge``; ``keys=("step", A, B)`` for a keyed cube over those keys with a ``computed`` mask (the
    store's keyed merge). ``version``: raise it when a fix changes the probe's numbers; each step
    records the version that computed it, and ``--update-stale`` recomputes the older ones."""
    name: str
    cube: str
    help: str
    options: type
    schema: Any
    archs: tuple = ("dit", "gpt")
    references: tuple = ()
    setup: Callable | None = None
    compute: Callable | None = None
    todo: Callable | None = None
    extra_pieces: Callable | None = None
    extra_done: Callable | None = None
    merge: Callable = concat_steps
    finalize: Callable | None = None
    select: Callable | None = None
    summary: Callable = lambda ds: ""
    figures: tuple = ()
    derive: Callable | None = None
    params: Callable | None = None
    resolve: Callable | None = None
    needs: tuple = ()
    uses_network: bool = True
    bf16_target: tuple = ()
    keys: tuple = ()
    version: int = 1

    # ---- options
    def option_fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.options))

    def identity(self, opts, ctx=None) -> dict:
        """The options that define the cube (stored as ``probe_params`` and checked on every call)."""
        out = {f.name: getattr(opts, f.name) for f in self.option_fields() if f.metadata.get("identity", True)}
        if self.params is not None and ctx is not None:
            out.update(self.params(ctx))
        return out

    def make_options(self, **values):
        """The options dataclass from keyword values (validated in its ``__post_init__``)."""
        names = {f.name for f in self.option_fields()}
        bad = sorted(k for k in values if k not in names)
        if bad:
            raise TwoclocksError(f"probe {self.name} has no option {', '.join(bad)}; its options: "
                                 f"{', '.join(sorted(names | set(self.common_options())))}")
        fields = {f.name: f for f in self.option_fields()}
        for key, value in values.items():
            values[key] = _check_type(self.name, fields[key], value)
        try:
            return self.options(**values)
        except TypeError as e:
            raise TwoclocksError(f"probe {self.name}: {e}") from None

    def common_options(self) -> tuple:
        if self.derive is not None:
            return ()
        out = ["steps", "device", "force", "update_stale", "progress"]
        if self.references:
            out.append("denoiser")
        if self.uses_network:
            out.append("precision")
        return tuple(out)

    def applies_to(self, arch: str) -> bool:
        return arch in self.archs

    # ---- running
    def __call__(self, run, **options) -> xr.Dataset:
        """Compute (or complete) this probe's cube on a run (a path or an opened Run) and return it."""
        from twoclocks.probes.driver import run_probe
        return run_probe(self, run, **options)

    def cube_name(self, denoiser: str | None = None) -> str:
        return self.cube + (f"-{denoiser}" if denoiser else "")


_REGISTRY: dict[str, Probe] = {}
_LOADED = False


def register(probe: Probe) -> Probe:
    """Add a probe to the registry (a probe of the same name is replaced: re-imports, user overrides)."""
    if not isinstance(probe, Probe):
        raise TwoclocksError(f"register() takes a twoclocks.probes.Probe, got {type(probe).__name__}")
    _REGISTRY[probe.name] = probe
    return probe


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    for mod in BUILTIN_MODULES:  # each module declares PROBE (registered on import; again here after a reset)
        register(importlib.import_module(mod).PROBE)
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in must not break the built-in probes
            import warnings
            warnings.warn(f"twoclocks probe entry point {ep.name} ({ep.value}) cannot be loaded: {e}", stacklevel=2)
            continue
        register(obj() if callable(obj) and not isinstance(obj, Probe) else obj)


def all_probes() -> list[Probe]:
    """Every registered probe: the built-ins, then those of installed packages' entry points."""
    _load_builtins()
    order = {m: i for i, m in enumerate(BUILTIN_MODULES)}  # built-ins in their fixed order, whatever was imported first
    return sorted(_REGISTRY.values(), key=lambda p: order.get(p.options.__module__, len(order)))


def load_probe(spec: str) -> Probe:
    """A probe by registered name, or ``module:object`` / ``path/to/file.py:object`` (imported and
    registered)."""
    _load_builtins()
    if ":" in spec:
        mod, _, attr = spec.rpartition(":")
        bad_spec = (f"; give MODULE:OBJECT of an importable module or path/to/file.py:OBJECT")
        try:
            if mod.endswith(".py"):
                path = Path(mod).resolve()
                if not path.is_file():
                    raise TwoclocksError(f"cannot load probe {spec!r} (no file {path}){bad_spec}")
                name = f"twoclocks_user_probe_{path.stem}"
                module = sys.modules.get(name)
                if module is None or getattr(module, "__file__", None) != str(path):
                    module_spec = importlib.util.spec_from_file_location(name, path)
                    module = importlib.util.module_from_spec(module_spec)
                    sys.modules[name] = module
                    try:
                        module_spec.loader.exec_module(module)
                    except BaseException:
                        sys.modules.pop(name, None)
                        raise
            else:
                module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name and (mod == e.name or mod.startswith(e.name + ".")):  # the module itself is not there
                raise TwoclocksError(f"cannot load probe {spec!r} ({e}){bad_spec}") from None
            raise user_code_error(f"importing {mod} (probe {spec})", e) from None
        except Exception as e:  # noqa: BLE001 - the user's module raised while it was imported
            raise user_code_error(f"importing {mod} (probe {spec})", e) from None
        try:
            obj = getattr(module, attr)
        except AttributeError:
            raise TwoclocksError(f"cannot load probe {spec!r} (module {mod} has no {attr!r}){bad_spec}") from None
        if not isinstance(obj, Probe):
            raise TwoclocksError(f"{spec} is not a twoclocks.probes.Probe (got {type(obj).__name__})")
        return register(obj)
    return get_probe(spec)


def debug_enabled() -> bool:
    """Whether errors in the user's own code show its traceback: ``--debug`` or ``TWOCLOCKS_DEBUG=1``."""
    return os.environ.get("TWOCLOCKS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def user_code_error(what: str, e: BaseException) -> TwoclocksError:
    """A one-line error for an exception raised by the user's code while ``what``; its ``detail`` is
    the traceback of the user's own frames (twoclocks' and importlib's left out), which the command
    line prints before the line with ``--debug`` / ``TWOCLOCKS_DEBUG=1``."""
    frames = traceback.extract_tb(e.__traceback__)
    mine = {os.path.realpath(__file__), __file__}
    last = max([i for i, f in enumerate(frames) if f.filename in mine or os.path.realpath(f.filename) in mine] + [-1])
    frames = [f for f in frames[last + 1:] if not f.filename.startswith("<frozen") and "importlib" not in f.filename]
    text = (str(e).strip().splitlines() or [""])[0][:200]
    err = TwoclocksError(f"{what} failed: {type(e).__name__}: {text}; fix the module "
                         "(--debug or TWOCLOCKS_DEBUG=1 shows its traceback)")
    err.detail = ("Traceback (your code):\n" + "".join(traceback.format_list(frames))
                  + "".join(traceback.format_exception_only(type(e), e))).rstrip("\n")
    return err


def get_probe(name: str) -> Probe:
    _load_builtins()
    key = name.replace("_", "-") if name not in _REGISTRY else name
    if key not in _REGISTRY:
        by_cube = {p.cube: p for p in _REGISTRY.values()}
        if name in by_cube:
            return by_cube[name]
        raise TwoclocksError(f"unknown probe {name!r}; choose from {', '.join(_REGISTRY)} (or MODULE:OBJECT)")
    return _REGISTRY[key]


def all_schemas() -> list:
    """The schemas of the built-in probes' cubes and of the derived cross-run cubes (docs/cubes.md)."""
    return [p.schema for p in all_probes() if p.options.__module__ in BUILTIN_MODULES] + [
        CLOCKS_SCHEMA, COLLECT_SCHEMA, CLOCK_FIT_SCHEMA, SENSITIVITY_SCHEMA]
