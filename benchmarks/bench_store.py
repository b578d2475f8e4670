"""Storage benchmark: a synthetic samples cube of 500 checkpoints x 2048 seeds (the samples schema's
variables), written piece by piece through the one store (CubeStore: a piece per checkpoint,
compacted every 64 pieces, as the driver does), then reopened and sliced, against plain
``xr.open_zarr`` of the same data written by xarray in one store (its defaults: zarr 3, one chunk per
variable unless chunked). Reports the file counts and the read times as ratios measured in this run.

    python benchmarks/bench_store.py [--steps 500] [--seeds 2048] [--repeat 5]
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
from twoclocks.store import CubeStore, open_cube


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
    a = ap.parse_args()
    probe = get_probe("samples")
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp())
    try:
        run = FakeRun(tmp / "run")
        store = CubeStore(run, "samples", {"bench": True})
        merge = probe.merge
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
        print(json.dumps(res, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
