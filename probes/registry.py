"""The probe registry: each probe declared once, everything else (CLI, probe-all, plot, sweep specs,
docs) driven by the declaration.

Two kinds of probe, small dataclasses with the same declaration fields (name, cube, help, options,
schema, archs, summary, figures):

- :class:`Probe`, per checkpoint: ``setup`` once per call and ``compute`` one piece per checkpoint step
  (or reference denoiser); the one driver (:mod:`twoclocks.probes.driver`) gives it resume, provenance,
  progress, the device and precision, and writes ``RUN/probes/CUBE.zarr``.
- :class:`DerivedProbe`, computed from other cubes (no network): ``derive(run, opts)`` for one run (markov,
  from the samples cube), or, with ``cross_run=True``, a Dataset over several runs (clocks, collect,
  clock_fit, sensitivity: ``derive`` is then the function that takes the runs).

Every Dataset a probe returns carries exactly its schema's attrs (:meth:`twoclocks.schema.CubeSchema.apply`)
and the provenance attrs of :func:`twoclocks.store.provenance`, whether it was written or not. Options
are a frozen dataclass whose fields are declared with :func:`option`: default, help text and the
constraints the framework checks (one-line errors)::

    from twoclocks.probes import get_probe
    ds = get_probe("samples")("runs/a", steps="last", eps_state=0.1)   # probe(run_or_path, **options)
    print(get_probe("samples").summary(ds))

Built-in probes live in their modules (``twoclocks.probes.samples``, ...) and are declared with
``builtin=True``; :func:`register` refuses to replace one unless asked (``replace=True``). A probe of your
own (see ``examples/custom_probe.py``) registers through the ``twoclocks.probes`` entry point group of your
package, or is named on the command line as ``module:object`` or ``path/to/file.py:object``
(``twoclocks-probe probe mymod:PROBE RUN``, ``probe-all --probe mymod:PROBE``, ``plot --probe mymod:PROBE``):
it gets resume, provenance, progress, the sweep fan-out and the figures with no change to twoclocks.
:func:`load_probe` records where it came from (:attr:`Probe.source`, a file path made absolute), the
cubes it writes keep that spec (attrs ``probe_source``) and probe-all's jobs import it from there.
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
from twoclocks.probes.driver import run_derived, run_probe
from twoclocks.store import concat_steps

__all__ = ["Probe", "DerivedProbe", "FigureSpec", "option", "register", "get_probe", "all_probes", "all_schemas",
           "load_probe", "concat_steps", "COMMON_OPTIONS", "BUILTIN_MODULES", "user_code_error", "debug_enabled",
           "parse_list", "check_option", "markdown", "deprecated"]

#: modules whose import registers the built-in probes (order: the order of `probe-all`, `plot` and the docs)
BUILTIN_MODULES = (
    "twoclocks.probes.samples",
    "twoclocks.probes.markov",
    "twoclocks.probes.dsm",
    "twoclocks.probes.ce",
    "twoclocks.landscape.plane", "twoclocks.landscape.basin",
    # across runs: clocks, collect, clock_fit, sensitivity
    "twoclocks.probes.clocks", "twoclocks.sweep.collect", "twoclocks.probes.fits", "twoclocks.probes.sensitivity",
)
ENTRY_POINT_GROUP = "twoclocks.probes"

#: options every probe accepts (handled by the framework), with their help text
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

#: the constraints :func:`option` takes, checked by the framework on every value given
CONSTRAINTS = ("min", "max", "gt", "lt", "choices")


def option(default, help: str, *, min=None, max=None, gt=None, lt=None, choices=None, parse: str | None = None,
           **kw):
    """A field of a probe's options dataclass: its default and its help text (shown by --help), and the
    constraints the framework checks on a given value (a one-line error naming the option otherwise):
    ``min`` / ``max`` (inclusive), ``gt`` / ``lt`` (exclusive), ``choices`` (allowed values),
    ``parse="list"`` (a comma-separated list, '0.1,0.3,1', or a sequence: a tuple of the type of the
    default's elements, each checked against the bounds; not empty). None, where the default is None,
    means "not given" and is not checked. Further metadata: ``identity=False`` for options that do not
    change the cube's values (batch sizes: not part of the stored ``probe_params``), ``cli=False`` for
    Python-only options, ``flag`` (the command-line flag or flags), ``cli_type`` (the command-line type
    when the default does not tell it, e.g. ``Optional[int]``)."""
    meta = {"help": help, **kw}
    for key, value in (("min", min), ("max", max), ("gt", gt), ("lt", lt), ("choices", choices), ("parse", parse)):
        if value is not None:
            meta[key] = tuple(value) if key == "choices" else value
    if parse is not None and parse != "list":
        raise ValueError(f"option(parse={parse!r}): the one parser is 'list'")
    if parse == "list":
        meta.setdefault("cli_type", str)
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _flag(f: dataclasses.Field) -> str:
    flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
    return (flag if isinstance(flag, str) else flag[0]).split("/")[0]


def parse_list(value, item=float, what: str = "the list") -> tuple:
    """A comma-separated list ('0.1,0.3,1') or a sequence as a tuple of ``item``; a one-line error
    naming ``what`` when an element is not one."""
    parts = [p.strip() for p in value.split(",")] if isinstance(value, str) else list(value)
    try:
        return tuple(item(p) for p in parts if not (isinstance(p, str) and not p))
    except (TypeError, ValueError):
        example = {int: "1,2,3", float: "0.1,0.3,1"}.get(item, "a,b")
        raise TwoclocksError(f"cannot parse {what} {value!r}; give comma-separated values, e.g. {example}") from None


def _check_type(probe: str, f: dataclasses.Field, value):
    """An option value of the type its default has (int, float, bool), else a one-line error."""
    default = f.default if f.default is not dataclasses.MISSING else None
    flag = _flag(f)
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


def deprecated(old: str, probe: str, example: str = "run, ...") -> None:
    """The DeprecationWarning of a 0.1 wrapper function (removed in 0.4; CHANGELOG)."""
    import warnings
    warnings.warn(f"{old} is deprecated and will be removed in twoclocks 0.4; use "
                  f"twoclocks.probes.get_probe({probe!r})({example})", DeprecationWarning, stacklevel=3)


def check_option(probe: str, options: type, name: str, value):
    """``value`` of option ``name`` of the options dataclass ``options`` typed, parsed and checked as the
    framework does it for probe ``probe`` (one-line errors)."""
    return _check_value(probe, next(f for f in dataclasses.fields(options) if f.name == name), value)


def _check_value(probe: str, f: dataclasses.Field, value):
    """``value`` parsed (``parse="list"``) and checked against the field's declared constraints."""
    meta, flag = f.metadata, _flag(f)
    if meta.get("parse") == "list":
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        item = type(default[0]) if default else float
        item = float if item is int and any(k in meta for k in ("gt", "lt")) else item
        values = parse_list(value, item, f"probe {probe}: {flag}")
        if not values:
            raise TwoclocksError(f"probe {probe}: {flag} needs at least one value, got {value!r}")
        for v in values:
            _check_bounds(probe, flag, meta, v, "values must be", value)
        return values
    value = _check_type(probe, f, value)
    if value is not None:
        _check_bounds(probe, flag, meta, value, "must be", value)
    return value


def _check_bounds(probe: str, flag: str, meta, v, must: str, given) -> None:
    if "choices" in meta and v not in meta["choices"]:
        raise TwoclocksError(f"probe {probe}: {flag} must be one of {', '.join(map(str, meta['choices']))}, "
                             f"got {given!r}")
    for key, ok, text in (("min", lambda b: v >= b, ">="), ("max", lambda b: v <= b, "<="),
                          ("gt", lambda b: v > b, ">"), ("lt", lambda b: v < b, "<")):
        if key in meta:
            try:
                good = bool(ok(meta[key]))
            except TypeError:
                good = False
            if not good:
                raise TwoclocksError(f"probe {probe}: {flag} {must} {text} {meta[key]}, got {given!r}")


@dataclass(frozen=True)
class FigureSpec:
    """A figure drawn by `plot` when the cubes it needs exist: ``draw(cubes) -> Figure``, where
    ``cubes`` maps cube names to Datasets (and 'clock_options' to the clock options of `plot`)."""
    name: str
    needs: tuple
    draw: Callable


@dataclass(kw_only=True)
class _Declared:
    """What every kind of probe declares. ``name``: the command; ``cube``: the stored cube
    (``RUN/probes/CUBE.zarr``); ``help``: one line for --help; ``options``: the options dataclass
    (fields from :func:`option`); ``schema``: the cube's :class:`twoclocks.schema.CubeSchema`;
    ``archs``: the architectures it applies to; ``summary(ds) -> str``: the text printed after a call;
    ``figures``: :class:`FigureSpec` s (or a function returning them) for `plot`; ``builtin``: set by
    twoclocks' own probes only; ``source``: the import spec it was loaded from (set by
    :func:`load_probe`); ``version``: raised when a fix changes the probe's numbers (steps record it)."""
    name: str
    cube: str
    help: str
    options: type
    schema: Any
    archs: tuple = ("dit", "gpt")
    summary: Callable = lambda ds: ""
    figures: Any = ()
    builtin: bool = False
    source: str | None = None
    version: int = 1

    kind = "probe"
    cross_run = False  # a DerivedProbe over several runs sets it (every kind answers it)

    # ---- options
    def option_fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.options)) if self.options is not None else []

    def identity(self, opts, ctx=None) -> dict:
        """The options that define the cube (stored as ``probe_params`` and checked on every call)."""
        return {f.name: getattr(opts, f.name) for f in self.option_fields() if f.metadata.get("identity", True)}

    def make_options(self, **values):
        """The options dataclass from keyword values: each value typed, parsed and checked against its
        declared constraints (one-line errors), then the dataclass's own ``__post_init__``."""
        fields = {f.name: f for f in self.option_fields()}
        bad = sorted(k for k in values if k not in fields)
        if bad:
            raise TwoclocksError(f"probe {self.name} has no option {', '.join(bad)}; its options: "
                                 f"{', '.join(sorted(set(fields) | set(self.common_options())))}")
        values = {key: _check_value(self.name, fields[key], value) for key, value in values.items()}
        try:
            return self.options(**values)
        except TypeError as e:
            raise TwoclocksError(f"probe {self.name}: {e}") from None

    def common_options(self) -> tuple:
        """The options of :data:`COMMON_OPTIONS` this probe takes."""
        return ("progress",)

    def applies_to(self, arch: str) -> bool:
        return arch in self.archs

    def cube_name(self, denoiser: str | None = None) -> str:
        return self.cube + (f"-{denoiser}" if denoiser else "")

    def figure_specs(self) -> tuple:
        return tuple(self.figures() if callable(self.figures) else self.figures)

    def provenance_attrs(self) -> dict:
        """Attrs naming the probe's code: a user probe's import spec, so that it can be found again."""
        return {} if self.builtin or not self.source else {"probe_source": self.source}


@dataclass(kw_only=True)
class Probe(_Declared):
    """A per-checkpoint probe, declared once (module docstring).

    Every function gets the call's :class:`twoclocks.probes.driver.Context` ``ctx`` (``ctx.run``,
    ``ctx.opts``, ``ctx.D(source)``, ``ctx.model(step)``, ``ctx.generate(source)``, device, precision).
    ``setup(ctx)`` once per call returns a state object (fixed subsets, noise, evaluators);
    ``compute(ctx, state, source, step, todo)`` returns one piece, an xarray Dataset with a length-1
    ``step`` dim, for a checkpoint step (``source`` is the step) or a reference (``source`` the
    reference name, step -1); ``todo`` is what the step still needs (``todo(existing, step, ctx)``
    decides it; None: the step is done).

    Optional: ``extra_pieces(ctx, state)`` adds pieces not tied to a step (computed once;
    ``extra_done(cube)`` says whether the cube has them); ``merge`` combines the stored cube and the
    pieces; ``finalize(ds, ctx)`` adds derived variables at every assembly; ``select(ds, ctx)`` cuts
    the answer to this call's request; ``params(ctx)`` adds entries to the cube's identity;
    ``resolve(opts, ctx) -> opts`` fills options whose default depends on the run or the device
    ('auto' sizes) before anything else. ``references``: the reference denoisers it can run on
    (``--denoiser``). ``uses_network``: False for a probe that never calls the network (no
    ``--precision``). ``bf16_target``: (metric, "min" | "max", bound), what a bf16-vs-fp32 measurement
    must show for bf16 to keep this probe's results; ``--precision auto`` uses bf16 only on a GPU model
    with recorded measurements that meet it (:func:`twoclocks.environment.bf16_measured_ok`).

    Storage (:mod:`twoclocks.store`): ``keys`` empty (the default) for one piece per step, merged by
    ``merge``; ``keys=("step", A, B)`` for a keyed cube over those keys with a ``computed`` mask (the
    store's keyed merge). ``version``: raise it when a fix changes the probe's numbers; each step
    records the version that computed it, and ``--update-stale`` recomputes the older ones."""
    compute: Callable
    setup: Callable | None = None
    references: tuple = ()
    todo: Callable | None = None
    extra_pieces: Callable | None = None
    extra_done: Callable | None = None
    merge: Callable = concat_steps
    finalize: Callable | None = None
    select: Callable | None = None
    params: Callable | None = None
    resolve: Callable | None = None
    uses_network: bool = True
    bf16_target: tuple = ()
    keys: tuple = ()

    kind = "checkpoint"

    def identity(self, opts, ctx=None) -> dict:
        out = super().identity(opts)
        if self.params is not None and ctx is not None:
            out.update(self.params(ctx))
        return out

    def common_options(self) -> tuple:
        out = ["steps", "device", "force", "update_stale", "progress"]
        if self.references:
            out.append("denoiser")
        if self.uses_network:
            out.append("precision")
        return tuple(out)

    def __call__(self, run, **options) -> xr.Dataset:
        """Compute (or complete) this probe's cube on a run (a path or an opened Run) and return it."""
        return run_probe(self, run, **options)


@dataclass(kw_only=True)
class DerivedProbe(_Declared):
    """A probe computed from other cubes, never from the network (module docstring).

    Per run (``cross_run`` False): ``derive(run, opts) -> Dataset`` from the cubes named in ``needs``
    (each must exist); recomputed on every call (cheap) and written to ``RUN/probes/CUBE.zarr`` unless
    ``write=False``. Across runs (``cross_run`` True): ``derive`` is the function that takes the runs
    and its own keyword options (``options`` None) and returns the Dataset; it gives the result the
    same schema attrs and provenance through :func:`twoclocks.store.write_derived`. Both take the
    common option ``progress`` (``--quiet``), which a derived probe does not need (it draws no bar)."""
    derive: Callable
    needs: tuple = ()
    cross_run: bool = False

    kind = "derived"

    def common_options(self) -> tuple:
        return () if self.cross_run else ("progress",)

    def __call__(self, run, *, progress: bool = True, write: bool = True, **options) -> xr.Dataset:
        """Per run: the Dataset (schema attrs, provenance), written to ``RUN/probes/CUBE.zarr`` unless
        ``write`` is False. Across runs: ``derive(run, **options)``."""
        if self.cross_run:
            return self.derive(run, **options)
        return run_derived(self, run, write=write, **options)


_REGISTRY: dict[str, _Declared] = {}
_LOADED = False
_ORDER: list[str] = []  # built-in probe names in the order of BUILTIN_MODULES


def register(probe, replace: bool = False):
    """Add a probe (a :class:`Probe` or :class:`DerivedProbe`) to the registry and return it. A probe
    of the same name is replaced (a re-import), except a built-in one, which only ``replace=True``
    replaces (else a one-line error)."""
    if not isinstance(probe, _Declared):
        raise TwoclocksError(f"register() takes a twoclocks.probes.Probe or DerivedProbe, got {type(probe).__name__}")
    old = _REGISTRY.get(probe.name)
    if old is not None and old is not probe and old.builtin and not probe.builtin and not replace:
        raise TwoclocksError(f"probe {probe.name!r} is a built-in probe; give yours another name "
                             "(or register(probe, replace=True) to replace the built-in)")
    _REGISTRY[probe.name] = probe
    return probe


def _declared(module) -> list:
    """The probes a module declares: ``PROBE`` or a tuple ``PROBES``."""
    return list(getattr(module, "PROBES", None) or [module.PROBE])


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    _ORDER.clear()
    for mod in BUILTIN_MODULES:  # each module declares its probes (registered on import; again here after a reset)
        for probe in _declared(importlib.import_module(mod)):
            _ORDER.append(register(probe).name)
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - a broken plug-in must not break the built-in probes
            import warnings
            warnings.warn(f"twoclocks probe entry point {ep.name} ({ep.value}) cannot be loaded: {e}", stacklevel=2)
            continue
        probe = obj() if callable(obj) and not isinstance(obj, _Declared) else obj
        if isinstance(probe, _Declared) and probe.source is None:
            probe.source = ep.value
        register(probe)


def all_probes(cross_run: bool = False) -> list:
    """Every registered per-run probe (per checkpoint or derived from a run's cubes): the built-ins in
    their fixed order, then those of installed packages' entry points and of :func:`load_probe`.
    ``cross_run``: also the probes over several runs (clocks, collect, clock_fit, sensitivity)."""
    _load_builtins()
    order = {n: i for i, n in enumerate(_ORDER)}
    probes = [p for p in _REGISTRY.values() if cross_run or not getattr(p, "cross_run", False)]
    return sorted(probes, key=lambda p: order.get(p.name, len(order)) if p.builtin else len(order))


def _import_file(path: Path, spec: str):
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
    return module


def load_probe(spec: str):
    """A probe by registered name, or ``module:object`` / ``path/to/file.py:object`` (imported and
    registered; its :attr:`source` is the spec, with the file path made absolute, so that a job in
    another directory, or a later call, imports the same code)."""
    _load_builtins()
    if ":" not in spec:
        return get_probe(spec)
    mod, _, attr = spec.rpartition(":")
    bad_spec = "; give MODULE:OBJECT of an importable module or path/to/file.py:OBJECT"
    source = spec
    try:
        if mod.endswith(".py"):
            path = Path(mod).resolve()
            if not path.is_file():
                raise TwoclocksError(f"cannot load probe {spec!r} (no file {path}){bad_spec}")
            module, source = _import_file(path, spec), f"{path}:{attr}"
        else:
            module = importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name and (mod == e.name or mod.startswith(e.name + ".")):  # the module itself is not there
            raise TwoclocksError(f"cannot load probe {spec!r} ({e}){bad_spec}") from None
        raise user_code_error(f"importing {mod} (probe {spec})", e) from None
    except TwoclocksError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's module raised while it was imported
        raise user_code_error(f"importing {mod} (probe {spec})", e) from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise TwoclocksError(f"cannot load probe {spec!r} (module {mod} has no {attr!r}){bad_spec}") from None
    if not isinstance(obj, _Declared):
        raise TwoclocksError(f"{spec} is not a twoclocks.probes.Probe (got {type(obj).__name__})")
    if not obj.builtin:
        obj.source = source
    return register(obj)


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


def get_probe(name: str):
    """A registered probe by name (or by its cube's name)."""
    _load_builtins()
    key = name.replace("_", "-") if name not in _REGISTRY else name
    if key not in _REGISTRY:
        by_cube = {p.cube: p for p in _REGISTRY.values()}
        if name in by_cube:
            return by_cube[name]
        raise TwoclocksError(f"unknown probe {name!r}; choose from {', '.join(p.name for p in all_probes())} "
                             "(or MODULE:OBJECT)")
    return _REGISTRY[key]


def all_schemas() -> list:
    """The schemas of the built-in probes' cubes, per run and across runs (docs/cubes.md)."""
    return [p.schema for p in all_probes(cross_run=True) if p.builtin]


def markdown() -> str:
    """docs/cubes.md: one table per built-in probe's cube, from the registry (``python -m twoclocks.probes
    > docs/cubes.md``)."""
    head = ("# The cubes\n\nEvery probe writes one xarray Dataset to zarr (`RUN/probes/NAME.zarr`; references "
            "`NAME-DENOISER.zarr` with `step` = -1). This page is generated from the registry's schemas, which "
            "the writer checks (`python -m twoclocks.probes > docs/cubes.md`), so it lists exactly what a cube "
            "holds; every array carries exactly its schema's attrs (`long_name`, `units`, CF flags). Every cube "
            "also carries provenance attrs: `probe`, `probe_params` (JSON), `twoclocks_version`, "
            "`created_at`, `source_steps` (JSON), `environment` (JSON: torch and CUDA versions, device and its "
            "name, precision and compile mode used), `run_dir`, `run_config` (JSON), `run_config_status` "
            "(paper/assumed per field) and `trained_with_version`; a cube of a probe of your own also "
            "`probe_source`, the import spec it was loaded from. Every array's chunks end with a crc32c checksum "
            "(zarr 3's `crc32c` codec after `zstd`), checked whenever twoclocks reads the cube; every chunk is "
            "written, so a deleted chunk file is damage too. Text labels are "
            "stored in zarr v3's `string` data type (read back as numpy `<U`); `probe_version` records which "
            "version of the probe computed each step; arrays marked *derived* are recomputed from the others "
            "whenever the cube is assembled.\n\n")
    sections = []
    for p in all_probes(cross_run=True):
        if not p.builtin:
            continue
        kind = ("across runs" if getattr(p, "cross_run", False) else
                f"derived from {', '.join(f'`{n}`' for n in p.needs)}" if p.kind == "derived" else "per checkpoint")
        sections.append(p.schema.markdown().replace("\n", f"\n\nWritten by `{p.name}` ({kind}).", 1))
    return head + "\n".join(sections)
