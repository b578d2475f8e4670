"""Checksum cost: a synthetic samples cube of 500 checkpoints x 2048 seeds (the samples schema's
variables, built as in bench_store.py) written as one cube with and without the crc32c codec that
every cube array carries, then read back whole (``open_cube`` reads and checks every chunk). Prints
the best-of-``--repeat`` times and their ratios (with / without crc32c), measured in this run.

    python benchmarks/bench_checksum.py [--steps 500] [--seeds 2048] [--repeat 5]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from twoclocks.probes.registry import get_probe
from twoclocks.store import open_cube, write_dataset

from bench_store import n_files, piece, timed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    probe = get_probe("samples")
    rng = np.random.default_rng(0)
    cube = probe.schema.apply(xr.concat([piece(probe.schema, i * 10, a.seeds, rng) for i in range(a.steps)],
                                        dim="step", data_vars="minimal", coords="minimal", compat="override"))
    cube = cube.load()
    tmp = Path(tempfile.mkdtemp())
    try:
        paths = {True: tmp / "crc.zarr", False: tmp / "plain.zarr"}
        t_write = {c: timed(lambda c=c: write_dataset(cube, paths[c], checksum=c), a.repeat) for c in (True, False)}
        t_read = {c: timed(lambda c=c: open_cube(paths[c]), a.repeat) for c in (True, False)}
        xr.testing.assert_identical(open_cube(paths[True]), open_cube(paths[False]))
        mb = cube.nbytes / 1e6
        print(f"samples-like cube: {a.steps} steps x {a.seeds} seeds, {mb:.0f} MB in memory, "
              f"{n_files(paths[True])} files; best of {a.repeat}")
        print(f"{'':8} {'crc32c':>9} {'none':>9} {'ratio':>7}")
        for what, t in (("write", t_write), ("read", t_read)):
            print(f"{what:8} {t[True]:8.3f}s {t[False]:8.3f}s {t[True] / t[False]:7.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
