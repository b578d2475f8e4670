"""The landscape probes on the probe framework: schema conformance of the cubes they write, resume
after a kill -9 at a random moment, and reuse of cells already computed (keyed cubes).

Oracles: the schemas declared next to the probes (every stored array declared, units equal); an
uninterrupted run of the same options (a kill -9 anywhere, then the same command, gives the same
cube); counted network rows (a second call evaluates only the cells it adds).
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np
import xarray as xr

from twoclocks.landscape import basin as B
from twoclocks.landscape import plane as P
from twoclocks.run import open_run
from conftest import count_network_calls


def _copy(tiny_run, tmp_path, name="run"):
    path = tmp_path / name
    shutil.copytree(tiny_run, path, ignore=shutil.ignore_patterns("probes", ".*.parts"))
    return path




def _check_declared(ds: xr.Dataset, schema) -> None:
    """Every array of ``ds`` is declared, with the declared dims, dtype kind and units (exactly: a
    declared unit must be present, an undeclared one absent)."""
    schema.check(ds)
    for name, var in ds.variables.items():
        spec = schema.coords.get(name) if name in ds.coords else schema.data_vars.get(name)
        assert spec is not None, f"{schema.name}: {name} is written but not declared in the schema"
        assert tuple(var.dims) == tuple(spec.dims), (name, var.dims, spec.dims)
        assert spec.kind_ok(var.dtype), (name, var.dtype, spec.dtype)
        assert var.attrs.get("units") == spec.units, (name, var.attrs.get("units"), spec.units)
        assert var.attrs.get("long_name") == spec.long_name, name


# ----------------------------------------------------------------------------- (a) schemas
def test_cubes_match_their_schemas(tiny_run, tmp_path):
    run = open_run(_copy(tiny_run, tmp_path))
    # two calls with other anchors, sigmas and steps: the stored cube has holes (computed False)
    P.run_plane(run, anchors=[0, 3], sigmas=[0.5], steps="56,60", grid=5, device="cpu", progress=False)
    P.run_plane(run, anchors=[4], sigmas=[1.0], steps="60", grid=5, device="cpu", progress=False)
    B.run_basin(run, anchors=[0, 1], sigmas=[0.5], steps="56,60", n_alpha=5, n_resamples=20, device="cpu",
                progress=False)
    B.run_basin(run, anchors=[2], sigmas=[0.5, 1.0], steps="60", n_alpha=5, n_resamples=20, device="cpu",
                progress=False)
    B.run_basin(run, anchors=[2], sigmas=[0.5], denoiser="ideal-cube", n_alpha=5, n_resamples=20, device="cpu",
                progress=False)
    for probe, name in ((P.PROBE, "plane"), (B.PROBE, "basin"), (B.PROBE, "basin-ideal-cube")):
        ds = xr.open_zarr(run.probe_path(name))
        _check_declared(ds, probe.schema)
        assert ds["step"].attrs["units"] == "steps" and ds["sigma"].attrs["units"] == "model-space units"
    plane = xr.open_zarr(run.probe_path("plane")).load()
    assert plane.sizes["anchor"] == 3 and plane.sizes["sigma"] == 2 and plane.sizes["step"] == 2
    assert int(plane["computed"].sum()) == 2 * 2 * 1 + 1                        # (56, 60) x (0, 3) at 0.5; (60, 4, 1.0)
    assert np.isnan(plane["attraction"].sel(step=56, anchor=4).values).all()   # a hole: NaN in floats
    basin = xr.open_zarr(run.probe_path("basin")).load()
    assert basin["hamming"].dtype == np.int32 and basin["exact_match"].dtype == bool
    hole = basin.sel(step=56, anchor=2)                                        # never computed
    assert not hole["computed"].any() and (hole["hamming"] == -1).all() and not hole["exact_match"].any()
    assert basin["summarized"].values.tolist() == [False, False, False]        # no anchor at every (step, sigma)
    assert np.isnan(basin["l2_mean"].values).all() and basin.attrs["n_anchors"] == 0
    # the stored cube's summaries are over the anchors computed at every (step, sigma)
    B.run_basin(run, anchors=[0, 1, 2], sigmas=[0.5, 1.0], steps="56,60", n_alpha=5, n_resamples=20,
                device="cpu", progress=False)
    basin = xr.open_zarr(run.probe_path("basin")).load()
    assert basin["summarized"].all() and basin.attrs["n_anchors"] == 3
    got = B.run_basin(run, anchors=[0, 2], sigmas=[1.0], steps="60", n_alpha=5, n_resamples=20, device="cpu",
                      progress=False)
    assert "computed" not in got and "summarized" not in got and got.attrs["n_anchors"] == 2
    assert np.allclose(got["l2_mean"].values, got["l2"].astype(float).mean("anchor").values)


# ----------------------------------------------------------------------------- (b) kill -9
def _first_piece(run_dir) -> bool:
    parts = run_dir / "probes" / ".basin.parts"
    try:
        return any(p.name.startswith("step_") and p.name.endswith(".zarr") for p in parts.iterdir())
    except FileNotFoundError:
        return False


def test_kill9_then_same_command_equals_uninterrupted_run(tiny_run, tmp_path):
    seed = int(os.environ.get("TWOCLOCKS_KILL_SEED", random.SystemRandom().randrange(2 ** 31)))
    rng = random.Random(seed)
    opts = dict(n_anchors=5, sigma="0.5,1", n_alpha=9)
    ref_run = open_run(_copy(tiny_run, tmp_path, "reference"))
    t0 = time.monotonic()
    B.PROBE(ref_run, device="cpu", progress=False, **opts)                     # uninterrupted
    window = time.monotonic() - t0

    path = _copy(tiny_run, tmp_path, "killed")
    cmd = [sys.executable, "-m", "twoclocks.cli", "basin", str(path), "--n-anchors", "5", "--sigma", "0.5",
           "--sigma", "1", "--n-alpha", "9", "--device", "cpu", "--quiet"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and not _first_piece(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        delay = rng.uniform(0, 1.2 * window)
        time.sleep(delay)
        killed = proc.poll() is None
        proc.kill()                                                             # SIGKILL
    finally:
        _, err = proc.communicate(timeout=60)
    assert killed or proc.returncode == 0, err.decode()[-2000:]

    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "basin radius toward h2_valid_novel" in res.stdout
    got = xr.open_zarr(path / "probes" / "basin.zarr").load()
    want = xr.open_zarr(ref_run.probe_path("basin")).load()
    why = f"kill after {delay:.3f}s of a {window:.3f}s window (killed: {killed}; TWOCLOCKS_KILL_SEED={seed})"
    try:
        xr.testing.assert_identical(got.drop_attrs(deep=False), want.drop_attrs(deep=False))
    except AssertionError as e:
        raise AssertionError(f"{why}\n{e}") from None
    same = {k: v for k, v in want.attrs.items() if k not in ("created_at", "run_dir")}
    assert {k: got.attrs.get(k) for k in same} == same, why
    assert not (path / "probes" / ".basin.parts").exists(), why                # every piece merged


# ----------------------------------------------------------------------------- (c) reuse
def test_more_anchors_and_sigmas_compute_only_the_new_cells(tiny_run, tmp_path):
    run = open_run(_copy(tiny_run, tmp_path))
    calls = count_network_calls(run)
    kw = dict(steps="56,60", n_alpha=5, n_resamples=20, device="cpu", progress=False)
    rows = len(B.DIRECTIONS) * 5                                                # per (anchor, sigma) job
    first = B.run_basin(run, anchors=[0, 1], sigmas=[0.5], **kw)
    assert sum(n for _, n in calls) == 2 * 2 * rows
    mask1 = xr.open_zarr(run.probe_path("basin"))["computed"].load()
    calls.clear()
    more = B.run_basin(run, anchors=[0, 1, 2, 3], sigmas=[0.5, 1.0], **kw)
    assert sum(n for _, n in calls) == 2 * (2 * 1 + 4 * 1) * rows              # new anchors at 0.5, all at 1.0
    assert sorted({s for s, _ in calls}) == [56, 60] and len(calls) == 2       # one batched call per step
    for v in ("exact_match", "hamming", "l2"):                                 # old cells: the stored values
        xr.testing.assert_identical(more[v].sel(anchor=[0, 1], sigma=[0.5]), first[v])
    mask2 = xr.open_zarr(run.probe_path("basin"))["computed"].load()
    assert mask2.sum() > mask1.sum() and bool(mask2.all())
    assert bool(mask2.sel(anchor=mask1["anchor"], sigma=mask1["sigma"]).where(mask1, True).all())  # grows
    assert more.attrs["n_anchors"] == 4
    calls.clear()
    sub = B.run_basin(run, anchors=[3], sigmas=[1.0], steps="60", n_alpha=5, n_resamples=20, device="cpu",
                      progress=False)
    assert calls == []                                                          # a subset: nothing new
    assert dict(sub.sizes) == {"step": 1, "anchor": 1, "sigma": 1, "direction": 3, "alpha": 5}
    xr.testing.assert_identical(sub["l2"], more["l2"].sel(step=[60], anchor=[3], sigma=[1.0]))
    assert np.array_equal(sub["l2_lo"], sub["l2_mean"]) and sub.attrs["n_anchors"] == 1   # over the request
    assert xr.open_zarr(run.probe_path("basin")).sizes["anchor"] == 4           # the cube keeps the union


# ----------------------------------------------------------------------------- CLI flags
def test_generated_commands_take_the_old_flags(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from twoclocks.cli import app
    path = _copy(tiny_run, tmp_path)
    cli = CliRunner()
    res = cli.invoke(app, ["basin", str(path), "--anchors", "0:3,7", "--sigma", "0.2,0.5", "--sigma", "1",
                           "--n-alpha", "5", "--steps", "60", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    ds = xr.open_zarr(path / "probes" / "basin.zarr")
    assert ds["anchor"].values.tolist() == [0, 1, 2, 7] and ds["sigma"].values.tolist() == [0.2, 0.5, 1.0]
    res = cli.invoke(app, ["basin", str(path), "--n-anchors", "2", "--sigma", "1", "--n-alpha", "7", "--steps",
                           "60", "--device", "cpu", "--quiet"])
    assert res.exit_code == 2 and "n_alpha" in res.stderr and "--force" in res.stderr
    res = cli.invoke(app, ["basin", str(path), "--n-anchors", "2", "--sigma", "1", "--n-alpha", "7", "--steps",
                           "60", "--force", "--quiet"])
    assert res.exit_code == 0, res.output
    assert xr.open_zarr(path / "probes" / "basin.zarr").sizes["alpha"] == 7
    res = cli.invoke(app, ["basin", str(path), "--anchor", "1", "--anchors", "2:4"])
    assert res.exit_code == 2 and "only one" in res.stderr
    res = cli.invoke(app, ["plane", str(path), "--anchor", "17", "--grid", "5", "--extent", "1.5", "--sigma", "0.5",
                           "--steps", "60", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    ds = xr.open_zarr(path / "probes" / "plane.zarr")
    assert ds["anchor"].values.tolist() == [17] and ds.sizes["u"] == 5 and float(ds["u"].max()) == 1.5
    res = cli.invoke(app, ["plane", str(path), "--grid", "2", "--quiet"])
    assert res.exit_code == 2 and "--grid" in res.stderr
