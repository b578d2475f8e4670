"""`collect`: one labelled cross-run Dataset of a sweep, and lazy opening of its cubes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from twoclocks import TwoclocksError
from twoclocks.probes.uncertainty import DEFAULT_LEVEL, DEFAULT_N_BOOT
from twoclocks.probes import clocks as C
from twoclocks.probes.clocks_schema import COLLECT_SCHEMA
from twoclocks.probes.registry import DerivedProbe, get_probe, register
from twoclocks.run import open_run
from twoclocks.rundir import LOG_FILE, probe_path
from twoclocks.store import open_cube, write_derived
from twoclocks.sweep.spec import config_fields
from twoclocks.sweep.state import read_sweep


# ----------------------------------------------------------------------------------------- collect
def _final_metrics(run_dir: Path) -> dict:
    ds = open_cube(probe_path(run_dir, "samples"))
    ds = ds.sel(step=ds["step"] >= 0)
    last = ds.isel(step=-1)
    out = {"final_step": float(last["step"])}
    for v in ("sample_acc", "sample_mem", "group_acc", "group_mem"):
        out[f"final_{v}"] = float(last[v]) if v in ds else np.nan
    out["final_loss"] = np.nan
    log = run_dir / LOG_FILE
    if log.is_file():
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        if lines:
            out["final_loss"] = float(json.loads(lines[-1])["loss"])
    return out


def collect(sweep_dir, out=None, pool=("group",), k: int | None = None, acc_threshold: float | None = None,
            mem_threshold: float | None = None, mem_adaptive: bool | None = None, write: bool = True, where=None,
            clocks=None, sustain_steps: float | None = None, sustain_factor: float | None = None,
            n_boot: int = DEFAULT_N_BOOT, level: float = DEFAULT_LEVEL, allow_unequal: bool = False):
    """One Dataset over the runs of a sweep that have probes/samples.zarr: dim ``run`` (the run names;
    ``run_dir`` and the config values that vary as coords), the clocks and window
    (probes.clocks.compute_clocks), the final sample accuracy / memorization / training loss, and the
    tau_mem = c N^alpha fits of :func:`twoclocks.probes.clocks.compute_clocks` (dim ``fit``: per group of
    runs equal in everything but N and seeds, and pooled over ``pool``; the plain log-log fit and the
    right-censored one), fitted over the runs selected by ``where`` (clauses such as ``"n_train>=64"``;
    :func:`twoclocks.probes.clocks.parse_where`); per run the passes at tau_mem, the fit residuals and the
    selection; per grid point the clocks' mean and sd over seeds (dims ``point``, ``clock``). Written to
    ``out`` (default SWEEP_DIR/collect.zarr) unless ``write`` is False. The clock definitions: ``clocks``
    (a preset name, ClockSet or ClockDefs; None: the sweep spec's ``[clocks]`` table, else the default)
    with the shorthands ``k``, ``acc_threshold``, ``mem_threshold``, ``mem_adaptive``, ``sustain_steps``,
    ``sustain_factor`` on top; ``n_boot`` / ``level``: the per-run clock intervals of
    :func:`twoclocks.probes.clocks.compute_clocks`. ``allow_unequal``: pool runs of different
    evaluation density or bank size in a fit (:func:`twoclocks.probes.pooling.check_pooling`)."""
    sweep_dir = Path(sweep_dir)
    spec, runs = read_sweep(sweep_dir)
    have = [r for r in runs if probe_path(sweep_dir / r["name"], "samples").exists()]
    missing = [r["name"] for r in runs if r not in have]
    if not have:
        raise TwoclocksError(f"no run of {sweep_dir} has probes/samples.zarr yet; run "
                             f"`twoclocks-probe probe-all {sweep_dir} --probes samples` first")
    if out is not None and Path(out).suffix != ".zarr":
        raise TwoclocksError(f"--out {out}: give a path ending in .zarr")
    opts = {"k": k, "acc_threshold": acc_threshold, "mem_threshold": mem_threshold}
    dirs = [sweep_dir / r["name"] for r in have]
    bad = [p for p in (pool or ()) if p not in config_fields()]
    if bad:
        raise TwoclocksError(f"--pool {', '.join(bad)}: not a config field")
    pools = [()] + ([tuple(pool)] if pool else [])
    ds = C.compute_clocks([str(d) for d in dirs], mem_adaptive=mem_adaptive, pools=pools, where=where,
                          clocks=clocks if clocks is not None else spec.clock_set(), sustain_steps=sustain_steps,
                          sustain_factor=sustain_factor, n_boot=n_boot, level=level,
                          allow_unequal=allow_unequal,
                          **{key: v for key, v in opts.items() if v is not None})
    ds = ds.assign_coords(run_dir=("run", [str(d) for d in dirs]), run=("run", [r["name"] for r in have]))
    cfgs = [open_run(d).config.to_dict() for d in dirs]  # every field, also those newer than the run
    fields = [f for f in config_fields() if f in ds.coords]
    axes = {key.split(".")[0] for key in spec.grid}
    constant = [f for f in fields if f not in axes and len(np.unique(ds[f].values)) == 1]
    ds.attrs["constant_config"] = json.dumps({f: cfgs[0][f] for f in constant})
    ds = ds.drop_vars(constant)
    metrics = [_final_metrics(d) for d in dirs]
    for key in ("final_step", "final_sample_acc", "final_sample_mem", "final_group_acc", "final_group_mem",
                "final_loss"):
        ds[key] = ("run", np.array([m[key] for m in metrics], float))
    ds.attrs.update({"sweep_dir": str(sweep_dir.resolve()), "sweep_spec": json.dumps(spec.to_dict()),
                     "missing_samples": json.dumps(missing)})
    params = {"pool": list(pool or ()), "k": k, "acc_threshold": acc_threshold, "mem_threshold": mem_threshold,
              "mem_adaptive": mem_adaptive, "where": json.loads(ds.attrs.get("fit_where", "[]")),
              "clock_defs": json.loads(ds.attrs["clock_defs"]), "n_boot": n_boot, "level": level}
    path = (Path(out) if out is not None else sweep_dir / "collect.zarr") if write else None
    return write_derived(ds, path, schema=COLLECT_SCHEMA, params=params)  # path None: stamped, not written


PROBE = register(DerivedProbe(
    name="collect", cube="collect", options=None, schema=COLLECT_SCHEMA, derive=collect, cross_run=True,
    builtin=True, help="One Dataset over a sweep's runs: clocks, final metrics and the fits (SWEEP_DIR/collect.zarr)."))


# -------------------------------------------------------------------------------------- lazy open
def open_sweep(sweep_dir, probe: str = "samples", chunks=None):
    """All cubes ``probes/PROBE.zarr`` of a sweep as one lazy xr.Dataset (dask arrays; ``chunks`` as in
    xr.open_zarr, default the stores' own chunks), concatenated along ``run`` (the run names, with each
    grid axis as a coordinate). Runs without the cube are left out (attrs ``missing_runs``); coordinates
    that differ between runs (e.g. ``step``) are outer-joined, so values absent from a run are NaN and
    integer variables become float there; attrs that differ between runs are dropped. Needs dask
    (``pip install twoclocks[sweep]``)."""
    import importlib.util
    if importlib.util.find_spec("dask") is None:
        raise TwoclocksError("open_sweep needs dask for lazy arrays: pip install dask (or twoclocks[sweep])")
    import xarray as xr
    sweep_dir = Path(sweep_dir)
    spec, runs = read_sweep(sweep_dir)
    try:
        cube = get_probe(probe).cube
    except TwoclocksError:
        cube = probe
    have = [r for r in runs if probe_path(sweep_dir / r["name"], cube).exists()]
    if not have:
        raise TwoclocksError(f"no run of {sweep_dir} has probes/{cube}.zarr; run `twoclocks-probe probe-all "
                             f"{sweep_dir} --probes {probe}` first")
    parts = [open_cube(probe_path(sweep_dir / r["name"], cube),
                          chunks={} if chunks is None else chunks).expand_dims(run=[r["name"]]) for r in have]
    ds = xr.concat(parts, dim="run", data_vars="all", coords="different", compat="equals", join="outer",
                   combine_attrs="drop_conflicts")
    ds["run"].attrs.update(long_name="run name (its grid point)")
    for key in spec.grid:
        ds = ds.assign_coords({key: ("run", [r["point"][key] for r in have], {"long_name": f"config: {key}"})})
    ds.attrs.update({"sweep_dir": str(sweep_dir.resolve()), "probe": cube,
                     "missing_runs": json.dumps([r["name"] for r in runs if r not in have])})
    return ds


