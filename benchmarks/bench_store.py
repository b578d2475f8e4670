"""Storage benchmark: a synthetic samples cube of 500 checkpoints x 2048 seeds (the samples schema's
variables), written piece by piece through the one store (CubeStore: a piece per checkpoint,
compacted every 64 pieces, as the driver does), then reopened and sliced, against plain
``xr.open_zarr`` of the same data written by xarray in one store (its defaults: zarr 3, one chunk per
variable unless chunked). Reports the file counts and the read times as ratios measured in this run.

Growth: adding ONE checkpoint to the 500-step cube: the store's compaction (the new step appended as a
region, the derived arrays rewritten, a journal) against a full rewrite of the merged cube (what
compaction did before), both measured in this run on copies of the same cube; ``grow_ratio`` is
grow / rewrite (lower is better). ``verify_s``: reading and checking every chunk of the cube (what
opening a probe's store does once per call to heal damaged chunks), reported apart.

    python benchmarks/bench_store.py [--steps 500] [--seeds 2048] [--repeat 5] [--grow-only]
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from twoclocks.probes.registry import get_probe
from twoclocks.store import CubeStore, check_store, open_cube, write_dataset


class FakeRun:
    """What CubeStore needs of a run: where its probes go, and its provenance."""

    def __init__(self, path: Path):
        self.path = path

    def probe_path(self, name):
        return self.path / "probes" / f"{name}.zarr"

    def provenance(self):
        return {"run_dir": str(self.path)}


def piece(schema, step: int, seeds: int, rng) -> xr.Dataset:
    ds = schema.example({"step": 1, "seed": seeds, "cell": 36, "eps": 5, "subset": 3, "state_label": 4},
                        seed=int(rng.integers(1 << 30)))
    return ds.drop_vars([v for v in ds.data_vars if "step" not in ds[v].dims]).assign_coords(step=[step])


def timed(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def n_files(path: Path) -> int:
    return sum(1 for p in path.rglob("*") if p.is_file())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--grow-only", action="store_true", help="write the cube at once; measure only the growth")
    a = ap.parse_args()
    probe = get_probe("samples")
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp())
    try:
        run = FakeRun(tmp / "run")
        store = CubeStore(run, "samples", {"bench": True})
        merge = probe.merge
        if a.grow_only:
            whole = probe.schema.apply(xr.concat([piece(probe.schema, i * 10, a.seeds, rng) for i in range(a.steps)],
                                                 "step"))
            write_dataset(whole.assign_attrs(probe_params=json.dumps({"bench": True})), store.path)
            print(json.dumps({"steps": a.steps, "seeds": a.seeds, **grow(tmp, run, probe, a, rng)}, indent=1))
            return
        t = time.perf_counter()
        for i in range(a.steps):
            store.write_piece(f"step_{i:08d}", piece(probe.schema, i * 10, a.seeds, rng))
            if (i + 1) % 64 == 0:
                store.compact(merge, schema=probe.schema)
        store.compact(merge, schema=probe.schema)
        t_write = time.perf_counter() - t
        ours = store.path
        ds = open_cube(ours).load()
        plain = tmp / "plain.zarr"
        ds.to_zarr(plain, mode="w", consolidated=True)  # the same data, xarray's defaults, one store

        def work(open_fn, path):
            def go():
                d = open_fn(path)
                d["sample_mem"].sel(step=slice(1000, 3000)).values
                d["state"].isel(seed=[0, 7, 2047 % a.seeds]).values
                d["sample"].sel(step=ds.step[-1]).values
            return go
        t_ours = timed(work(open_cube, ours), a.repeat)
        t_plain = timed(work(lambda p: xr.open_zarr(p, consolidated=True, chunks=None), plain), a.repeat)
        t_open = timed(lambda: open_cube(ours), a.repeat)
        res = {"steps": a.steps, "seeds": a.seeds, "write_s": round(t_write, 2),
               "files_ours": n_files(ours), "files_plain_one_store": n_files(plain),
               "files_one_chunk_per_step_estimate": a.steps * len([v for v in ds.data_vars if "step" in ds[v].dims]),
               "open_s_ours": round(t_open, 4), "read_s_ours": round(t_ours, 4), "read_s_plain": round(t_plain, 4),
               "read_ratio_ours_over_plain": round(t_ours / t_plain, 3),
               "bytes_ours": sum(p.stat().st_size for p in ours.rglob("*") if p.is_file())}
        res.update(grow(tmp, run, probe, a, rng))
        print(json.dumps(res, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def grow(tmp: Path, run, probe, a, rng) -> dict:
    """Add one step to the stored cube through the store (write the piece, compact), with growth by
    regions and with it switched off (the merged cube rewritten whole: compaction before), each on a
    fresh copy of the same cube. Neither counts the verification read of opening the store (heal)."""
    cube = run.probe_path("samples")
    last = int(open_cube(cube, chunks={})["step"].values[-1])
    new = piece(probe.schema, last + 10, a.seeds, rng)
    times = {True: [], False: []}
    for _ in range(a.repeat):
        for regions in (True, False):
            copy = FakeRun(tmp / "copy")
            shutil.rmtree(copy.path, ignore_errors=True)
            shutil.copytree(run.path, copy.path)
            st = CubeStore(copy, "samples", {"bench": True}, schema=probe.schema, version=probe.version)
            if regions:
                st._cache = None   # the growth reads only what it needs
            else:
                st._grow = lambda *args: None
            t = time.perf_counter()
            st.write_piece("new", new)
            st.compact(probe.merge, schema=probe.schema)
            times[regions].append(time.perf_counter() - t)
    t_verify = timed(lambda: check_store(cube), a.repeat)
    g, f = min(times[True]), min(times[False])
    return {"grow_one_step_s": round(g, 3), "rewrite_one_step_s": round(f, 3), "grow_ratio": round(g / f, 3),
            "verify_s": round(t_verify, 3)}


if __name__ == "__main__":
    main()
