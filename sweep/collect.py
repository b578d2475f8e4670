"""`collect`: one labelled cross-run Dataset of a sweep, and lazy opening of its cubes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from twoclocks import TwoclocksError
from twoclocks.sweep.spec import _config_fields
from twoclocks.sweep.state import _now, _read_meta, read_sweep


# ----------------------------------------------------------------------------------------- collect
def _final_metrics(run_dir: Path) -> dict:
    import xarray as xr
    ds = xr.open_zarr(run_dir / "probes" / "samples.zarr", consolidated=True)
    ds = ds.sel(step=ds["step"] >= 0)
    last = ds.isel(step=-1)
    out = {"final_step": float(last["step"])}
    for v in ("sample_acc", "sample_mem", "group_acc", "group_mem"):
        out[f"final_{v}"] = float(last[v]) if v in ds else np.nan
    out["final_loss"] = np.nan
    log = run_dir / "log.jsonl"
    if log.is_file():
        lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
        if lines:
            out["final_loss"] = float(json.loads(lines[-1])["loss"])
    return out


def fit_groups(cfgs: list[dict], tau, pools=((),)) -> list[dict]:
    """tau = c N^alpha fits (probes.clocks.fit_power_law: least squares of ln tau on ln N) over groups
    of runs whose configs are equal in everything but N, seeds and bookkeeping (clocks.NOT_GROUPING)
    and the fields of a pool level: one list of fits per level (e.g. () per model and G, ('group',)
    pooled over G as in the paper's Table 4). A group needs >= 2 distinct N; a pooled group equal to
    an unpooled one is not repeated. Returns [{label, pooled_over, members (bool mask), c, alpha, r2, n}]."""
    from twoclocks.probes.clocks import NOT_GROUPING, fit_power_law
    tau = np.asarray(tau, float)
    fields = list(cfgs[0]) if cfgs else []
    enc = [{f: json.dumps(c.get(f), sort_keys=True) for f in fields} for c in cfgs]
    fits, seen = [], set()
    for pool in pools:
        skip = set(NOT_GROUPING) | set(pool)
        keys = [tuple((f, e[f]) for f in fields if f not in skip) for e in enc]
        groups = list(dict.fromkeys(keys))
        varying = [f for f in fields if f not in skip and len({dict(k)[f] for k in groups}) > 1]
        for key in groups:
            members = np.array([k == key for k in keys])
            n = np.array([c["n_train"] for c in cfgs], float)[members]
            if len(np.unique(n)) < 2 or members.tobytes() in seen:
                continue
            seen.add(members.tobytes())
            label = ", ".join(f"{f}={json.loads(dict(key)[f])}" for f in varying) or "all runs"
            if pool:
                label += f" (pooled over {', '.join(pool)})"
            fits.append({"label": label, "pooled_over": ",".join(pool), "members": members,
                         **fit_power_law(n, tau[members])})
    return fits


def collect(sweep_dir, out=None, pool=("group",), k: int | None = None, acc_threshold: float | None = None,
            mem_threshold: float | None = None, mem_adaptive: bool = False, write: bool = True):
    """One Dataset over the runs of a sweep that have probes/samples.zarr: dim ``run`` (the run names;
    ``run_dir`` and the config values that vary as coords), the clocks and window
    (probes.clocks.compute_clocks), the final sample accuracy / memorization / training loss, and the
    tau_mem = c N^alpha fits (dim ``fit``: per group of runs equal in everything but N and seeds, and
    pooled over ``pool``; natural-log least squares, c the prefactor in steps). Written to ``out``
    (default SWEEP_DIR/collect.zarr) unless ``write`` is False."""
    from twoclocks.probes import clocks as C
    from twoclocks.store import write_dataset
    sweep_dir = Path(sweep_dir)
    spec, runs = read_sweep(sweep_dir)
    have = [r for r in runs if (sweep_dir / r["name"] / "probes" / "samples.zarr").exists()]
    missing = [r["name"] for r in runs if r not in have]
    if not have:
        raise TwoclocksError(f"no run of {sweep_dir} has probes/samples.zarr yet; run "
                             f"`twoclocks-probe probe-all {sweep_dir} --probes samples` first")
    if out is not None and Path(out).suffix != ".zarr":
        raise TwoclocksError(f"--out {out}: give a path ending in .zarr")
    opts = {"k": k, "acc_threshold": acc_threshold, "mem_threshold": mem_threshold}
    dirs = [sweep_dir / r["name"] for r in have]
    ds = C.compute_clocks([str(d) for d in dirs], mem_adaptive=mem_adaptive,
                          **{key: v for key, v in opts.items() if v is not None})
    ds = ds.drop_vars([v for v in ds.variables if str(v).startswith("fit")])
    ds = ds.assign_coords(run_dir=("run", [str(d) for d in dirs], {"long_name": "run directory"}),
                          run=("run", [r["name"] for r in have], {"long_name": "run name (its grid point)"}))
    cfgs = [_read_meta(d)["config"] for d in dirs]
    fields = [f for f in _config_fields() if f in ds.coords]
    axes = {key.split(".")[0] for key in spec.grid}
    constant = [f for f in fields if f not in axes and len(np.unique(ds[f].values)) == 1]
    ds.attrs["constant_config"] = json.dumps({f: cfgs[0][f] for f in constant})
    ds = ds.drop_vars(constant)
    metrics = [_final_metrics(d) for d in dirs]
    longs = {"final_step": ("last evaluated checkpoint step", "steps"),
             "final_sample_acc": ("sample accuracy at the last evaluated step", "1"),
             "final_sample_mem": ("sample memorization at the last evaluated step", "1"),
             "final_group_acc": ("group accuracy at the last evaluated step", "1"),
             "final_group_mem": ("group memorization at the last evaluated step", "1"),
             "final_loss": ("training loss at the last log interval (EDM loss for dit, cross-entropy for gpt)",
                            "1")}
    for key, (long, units) in longs.items():
        ds[key] = ("run", np.array([m[key] for m in metrics], float), {"long_name": long, "units": units})
    pools = [()] + ([tuple(pool)] if pool else [])
    bad = [p for p in (pool or ()) if p not in _config_fields()]
    if bad:
        raise TwoclocksError(f"--pool {', '.join(bad)}: not a config field")
    fits = fit_groups(cfgs, ds["tau_mem"].values, pools)
    ds = ds.assign_coords(fit=("fit", np.arange(len(fits)), {"long_name": "power-law fit group"}))
    ds["fit_label"] = ("fit", np.array([f["label"] for f in fits], dtype=str), {"long_name": "the group's runs"})
    ds["fit_pooled_over"] = ("fit", np.array([f["pooled_over"] for f in fits], dtype=str),
                             {"long_name": "config fields pooled over (empty: none)"})
    ds["fit_member"] = (("fit", "run"), np.array([f["members"] for f in fits], bool).reshape(len(fits), len(have)),
                        {"long_name": "run is in the fit group", "units": "1"})
    for key, long, units in (("c", "prefactor c of tau_mem = c N^alpha", "steps"),
                             ("alpha", "exponent alpha of tau_mem = c N^alpha", "1"),
                             ("r2", "R^2 of the ln tau_mem vs ln N least-squares line", "1"),
                             ("n", "number of runs with a finite tau_mem in the fit", "1")):
        ds[f"fit_{key}"] = ("fit", np.array([f[key] for f in fits], int if key == "n" else float),
                            {"long_name": long, "units": units})
    import twoclocks
    ds.attrs.update({"sweep_dir": str(sweep_dir.resolve()), "sweep_spec": json.dumps(spec.to_dict()),
                     "missing_samples": json.dumps(missing), "twoclocks_version": twoclocks.__version__,
                     "fit_method": "scipy.stats.linregress of ln tau_mem on ln n_train; c = exp(intercept)",
                     "created_at": _now()})
    if write:
        write_dataset(ds, Path(out) if out is not None else sweep_dir / "collect.zarr")
    return ds


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
    from twoclocks.probes.registry import get_probe
    try:
        cube = get_probe(probe).cube
    except TwoclocksError:
        cube = probe
    have = [r for r in runs if (sweep_dir / r["name"] / "probes" / f"{cube}.zarr").exists()]
    if not have:
        raise TwoclocksError(f"no run of {sweep_dir} has probes/{cube}.zarr; run `twoclocks-probe probe-all "
                             f"{sweep_dir} --probes {probe}` first")
    parts = [xr.open_zarr(sweep_dir / r["name"] / "probes" / f"{cube}.zarr", consolidated=True,
                          chunks={} if chunks is None else chunks).expand_dims(run=[r["name"]]) for r in have]
    ds = xr.concat(parts, dim="run", data_vars="all", coords="different", compat="equals", join="outer",
                   combine_attrs="drop_conflicts")
    ds["run"].attrs.update(long_name="run name (its grid point)")
    for key in spec.grid:
        ds = ds.assign_coords({key: ("run", [r["point"][key] for r in have], {"long_name": f"config: {key}"})})
    ds.attrs.update({"sweep_dir": str(sweep_dir.resolve()), "probe": cube,
                     "missing_runs": json.dumps([r["name"] for r in runs if r not in have])})
    return ds


