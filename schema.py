"""Cube schemas: every stored array declared once (dims, dtype, long_name, units, CF flags).

A probe declares its cube as a :class:`CubeSchema` of :class:`Var` entries, built from the shared
coordinate definitions in :data:`COORDS` (``step``, ``split``, ``sigma``, ``seed``, ``anchor``,
``reference``, ...). The one cube writer (:mod:`twoclocks.store`) checks each Dataset against its schema
before writing (:meth:`CubeSchema.check`: no undeclared variable or coordinate, the declared dims, dtype
kind and units) and stamps the declared attrs on it (:meth:`CubeSchema.apply`), so the code that
computes a cube never spells out a long_name or a unit. Tests build their fixtures from the same
declarations (:meth:`CubeSchema.example`) and ``docs/cubes.md`` is generated from the registered probes'
schemas (:meth:`CubeSchema.markdown`, ``python -m twoclocks.probes > docs/cubes.md``).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from twoclocks import TwoclocksError

__all__ = ["Var", "CubeSchema", "COORDS", "FRAMEWORK_VARS", "coord", "SchemaError"]


class SchemaError(TwoclocksError):
    """A Dataset does not match its declared schema (a bug in the probe that wrote it)."""


@dataclass(frozen=True)
class Var:
    """One stored array: its dims, dtype (numpy name; 'str' for text), meaning and units.
    ``flags``: for integer codes, the meanings of 0, 1, 2, ... (CF flag_values / flag_meanings).
    ``derived``: computed from the cube's other arrays (the probe's ``finalize``), never from a
    network: the store drops it from every part before a merge and the probe recomputes it, so a
    probe never strips its own derived views."""
    dims: tuple
    dtype: str
    long_name: str
    units: str | None = "1"
    flags: tuple | None = None
    derived: bool = False

    def attrs(self) -> dict:
        a = {"long_name": self.long_name}
        if self.units is not None:
            a["units"] = self.units
        if self.flags:
            a["flag_values"] = list(range(len(self.flags)))
            a["flag_meanings"] = " ".join(self.flags)
        return a

    def kind_ok(self, dtype: np.dtype) -> bool:
        want = self.dtype
        if want == "str":
            return dtype.kind in "UOT"  # T: numpy StringDType, as plain xarray reads zarr v3 strings
        w = np.dtype(want)
        if w.kind == "f":
            return dtype.kind == "f"
        if w.kind in "iu":
            return dtype.kind in "iu"
        return dtype.kind == w.kind


#: Arrays the store itself adds to every cube with a ``step`` (declared here once, added to every such schema)
FRAMEWORK_VARS = {
    "probe_version": Var(("step",), "int64", "version of the probe that computed the step (Probe.version; "
                                             "1 for steps stored before versions were recorded)"),
}

#: The shared coordinates: every cube that has a ``step`` (or ``split``, ...) uses this definition.
COORDS = {
    "step": Var(("step",), "int64", "training step of the checkpoint (-1: a reference denoiser)", "steps"),
    "split": Var(("split",), "str", "data split: train, heldout (valid and novel) or hypercube (no rule)", None),
    "sigma": Var(("sigma",), "float64", "noise level s", "model-space units"),
    "seed": Var(("seed",), "int64", "index into the run's fixed noise bank", "1"),
    "anchor": Var(("anchor",), "int64", "train sample index of the anchor x_a", "1"),
    "reference": Var(("reference",), "str", "exact reference denoiser (twoclocks.ideal)", None),
    "cell": Var(("cell",), "int64", "cell (row-major)", "1"),
    "position": Var(("position",), "int64", "cell index t of the predicted cell c_t (0-based, raster order)", "1"),
    "state_label": Var(("state_label",), "str", "sample state", None),
    "run": Var(("run",), "str", "run name (its directory, or its grid point in a sweep)", None),
}


def coord(name: str, **changes) -> Var:
    """A shared coordinate, optionally with changed fields (e.g. another long_name)."""
    return replace(COORDS[name], **changes)


@dataclass(frozen=True)
class CubeSchema:
    """The declared contents of one cube. ``coords`` and ``data_vars``: name -> Var.
    ``extra_coords``: a predicate naming further allowed coordinates (e.g. config fields on ``run``),
    each with ``long_name`` 'config: NAME'. ``doc``: one paragraph for docs/cubes.md."""
    name: str
    coords: dict
    data_vars: dict
    doc: str = ""
    extra_coords: object = field(default=None, compare=False)

    def __post_init__(self):
        if "step" in self.coords:  # the store records the probe version of every step (FRAMEWORK_VARS)
            object.__setattr__(self, "data_vars", {**self.data_vars, **{
                k: v for k, v in FRAMEWORK_VARS.items() if k not in self.data_vars}})

    def derived(self) -> tuple:
        """The names of the derived arrays (:attr:`Var.derived`)."""
        return tuple(n for _, n, v in self._entries() if v.derived)

    def _entries(self):
        yield from (("coordinate", k, v) for k, v in self.coords.items())
        yield from (("variable", k, v) for k, v in self.data_vars.items())

    def check(self, ds) -> None:
        """Raise :class:`SchemaError` if ``ds`` holds an undeclared array, or a declared one with other
        dims, another dtype kind or other units. Declared arrays may be absent (optional)."""
        problems = []
        for kind, names, table in (("coordinate", ds.coords, self.coords), ("variable", ds.data_vars, self.data_vars)):
            for name in names:
                spec = table.get(name)
                if spec is None:
                    if kind == "coordinate" and name in ds.dims and name in self.data_vars:
                        continue
                    if kind == "coordinate" and self.extra_coords is not None and self.extra_coords(name):
                        continue
                    problems.append(f"undeclared {kind} {name!r}")
                    continue
                da = ds[name]
                if tuple(da.dims) != tuple(spec.dims):
                    problems.append(f"{kind} {name!r} has dims {tuple(da.dims)}, declared {tuple(spec.dims)}")
                if not spec.kind_ok(da.dtype):
                    problems.append(f"{kind} {name!r} has dtype {da.dtype}, declared {spec.dtype}")
                units = da.attrs.get("units")
                if units is not None and units != spec.units:
                    problems.append(f"{kind} {name!r} has units {units!r}, declared {spec.units!r}")
        if problems:
            raise SchemaError(f"cube {self.name!r} does not match its schema: " + "; ".join(problems))

    def attrs_of(self, name: str) -> dict | None:
        """The attrs the schema gives array ``name`` (None: not declared): its declaration's, or for a
        further coordinate (``extra_coords``) ``long_name`` 'config: NAME'."""
        spec = self.coords.get(name) or self.data_vars.get(name)
        if spec is not None:
            return spec.attrs()
        if self.extra_coords is not None and self.extra_coords(name):
            return {"long_name": f"config: {name}"}
        return None

    def apply(self, ds):
        """``ds`` checked, with exactly the declared attrs on every array (the schema is the only source
        of long_name, units and flags: attrs the computing code set are replaced)."""
        self.check(ds)
        ds = ds.copy()
        for name in list(ds.variables):
            attrs = self.attrs_of(name)
            if attrs is None:  # a dimension without a coordinate of its own (check allowed it)
                continue
            spec = self.coords.get(name) or self.data_vars.get(name)
            if spec is not None and spec.dtype != "str" and ds[name].dtype != np.dtype(spec.dtype) \
                    and name not in ds.dims:
                ds[name] = ds[name].astype(spec.dtype)
            ds.variables[name].attrs = dict(attrs)
        return ds

    def example(self, sizes: dict | None = None, seed: int = 0):
        """A synthetic Dataset holding every declared array (random values of the declared dtypes),
        for tests and plotting fixtures. ``sizes``: dim -> length (default 3)."""
        import xarray as xr
        rng = np.random.default_rng(seed)
        sizes = dict(sizes or {})

        def values(spec: Var, name: str):
            shape = tuple(sizes.setdefault(d, 3) for d in spec.dims)
            if spec.dtype == "str":
                return np.array([f"{name}{i}" for i in range(int(np.prod(shape)))]).reshape(shape)
            dt = np.dtype(spec.dtype)
            if dt.kind == "b":
                return rng.random(shape) < 0.5
            if dt.kind in "iu":
                hi = len(spec.flags) if spec.flags else 10
                return rng.integers(0, hi, shape).astype(dt)
            return rng.random(shape).astype(dt)
        coords = {}
        for name, spec in self.coords.items():
            vals = values(spec, name)
            if spec.dims == (name,) and spec.dtype != "str" and np.dtype(spec.dtype).kind in "iuf":
                vals = np.arange(sizes[name]).astype(spec.dtype)
            coords[name] = (spec.dims, vals, spec.attrs())
        data = {name: (spec.dims, values(spec, name), spec.attrs()) for name, spec in self.data_vars.items()}
        return xr.Dataset(data, coords=coords)

    def markdown(self) -> str:
        lines = [f"## `{self.name}`", ""]
        if self.doc:
            lines += [self.doc, ""]
        lines += ["| name | kind | dims | dtype | units | meaning |", "|---|---|---|---|---|---|"]
        for kind, name, spec in self._entries():
            meaning = spec.long_name + (f" (flags: {', '.join(f'{i} {m}' for i, m in enumerate(spec.flags))})"
                                        if spec.flags else "")
            meaning += " (derived: recomputed from the other arrays at every assembly)" if spec.derived else ""
            lines.append(f"| `{name}` | {kind} | {', '.join(spec.dims) or '(scalar)'} | {spec.dtype} | "
                         f"{spec.units or ''} | {meaning.replace('|', '/')} |")
        if self.extra_coords is not None:
            lines.append("")
            lines.append("Further coordinates on `run`: one per config field (`config: NAME`).")
        return "\n".join(lines) + "\n"
