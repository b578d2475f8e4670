"""The run-directory layout (twoclocks.rundir) as every layer reads it: training writes the names it
declares, the sweep's coverage counts a cube's steps, `info` lists unassembled pieces; a run
opens as one DataTree of its cubes, a sweep as a DataTree of runs."""
from __future__ import annotations

import shutil

import xarray as xr
from typer.testing import CliRunner

from twoclocks import rundir
from twoclocks.cli import app
from twoclocks.probes.registry import get_probe
from twoclocks.store import open_cube
from twoclocks.sweep.runner import cube_coverage

runner = CliRunner()


def _copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def test_training_writes_the_declared_layout(tiny_run):
    assert rundir.is_run(tiny_run)
    for name in (rundir.CONFIG_FILE, rundir.DATA_STORE, rundir.LOG_FILE):
        assert (tiny_run / name).exists(), name
    steps = rundir.checkpoint_steps(tiny_run)
    assert steps == [0, 1, 2, 3, 6, 10, 18, 32, 56, 60]  # conftest's schedule
    assert rundir.last_checkpoint(tiny_run) == 60
    for s in steps:
        ckpt = tiny_run / rundir.CHECKPOINT_DIR / rundir.checkpoint_name(s)
        assert ckpt.is_file() and rundir.digest_path(ckpt).is_file()
    assert (tiny_run / rundir.CHECKPOINT_DIR / rundir.RESUME_FILE).is_file()
    assert rundir.read_meta(tiny_run)["config"]["n_train"] == 32
    assert rundir.step_key(7) == "step_00000007" and rundir.step_key(rundir.REFERENCE_STEP) == "reference"


def test_probe_all_coverage_reads_the_cubes_steps(tiny_run, tmp_path):
    """The coverage column counts the cube's steps among the run's checkpoints (it used to read zarr 2's
    .zattrs and always said 'present')."""
    run = _copy(tiny_run, tmp_path)
    assert cube_coverage(run, "samples") == "new"
    get_probe("samples")(run, steps="0,3,60", progress=False)
    assert (rundir.probe_path(run, "samples") / "zarr.json").is_file()
    assert cube_coverage(run, "samples") == "3/10 checkpoints"
    get_probe("samples")(run, steps="10,18", progress=False)
    assert cube_coverage(run, "samples") == "5/10 checkpoints"


def test_info_lists_pieces_of_a_cube_not_assembled_yet(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    r = runner.invoke(app, ["info", str(run)])
    assert r.exit_code == 0 and "unfinished" not in r.stdout and "probes     none" in r.stdout
    get_probe("samples")(run, steps="0,3", progress=False)
    parts = rundir.parts_dir(run, "samples")  # an interrupted first call: pieces, no cube yet
    shutil.copytree(rundir.probe_path(run, "samples"), parts / f"{rundir.step_key(3)}.zarr")
    shutil.rmtree(rundir.probe_path(run, "samples"))
    assert rundir.cube_names(run) == [] and rundir.pending_cubes(run) == ["samples"]
    r = runner.invoke(app, ["info", str(run)])
    assert r.exit_code == 0, r.output
    assert "probes     none" in r.stdout
    assert "unfinished samples" in r.stdout
    assert cube_coverage(run, "samples") == "partial (not assembled)"


def test_a_run_opens_as_one_datatree(tiny_run, tmp_path):
    from twoclocks.run import open_run
    run = _copy(tiny_run, tmp_path)
    assert open_run(run).tree().children == {}
    get_probe("samples")(run, steps="0,3,60", progress=False)
    get_probe("samples")(run, denoiser="ideal-rule", progress=False)
    r = open_run(run)
    tree = r.tree()
    assert tree.name == "run" and sorted(tree.children) == ["samples", "samples-ideal-rule"] == r.cubes
    assert tree.attrs["run_dir"] == str(run.resolve()) and "run_config" in tree.attrs
    for name in r.cubes:
        xr.testing.assert_identical(tree[name].to_dataset(), open_cube(rundir.probe_path(run, name)))
    assert list(tree["samples"]["step"].values) == [0, 3, 60]
    assert float(tree["samples"]["sample_acc"].sel(step=60)) == float(r.cube("samples")["sample_acc"].sel(step=60))
    lazy = r.tree(chunks={})
    assert lazy["samples"]["sample_acc"].chunks is not None  # dask arrays, read when computed
    xr.testing.assert_identical(lazy["samples"].to_dataset().compute(), tree["samples"].to_dataset())


def test_a_sweep_opens_as_a_datatree_of_runs(tiny_run, tmp_path):
    import json

    import twoclocks.sweep as S
    from conftest import TINY
    spec = S.spec_from_dict({"base": {k: v for k, v in TINY.items() if k != "n_train"},
                             "grid": {"n_train": [32, 64]}})
    runs = S.expand(spec)
    d = tmp_path / "sweep"
    S.write_sweep(d, spec, runs)
    shutil.copytree(tiny_run, d / runs[0]["name"])  # n_train=32: the tiny run; the other not created
    get_probe("samples")(d / runs[0]["name"], steps="0,60", progress=False)
    tree = S.tree(d)
    assert list(tree.children) == [runs[0]["name"]]
    assert json.loads(tree.attrs["missing_runs"]) == [runs[1]["name"]]
    node = tree[runs[0]["name"]]
    assert json.loads(node.attrs["point"]) == {"n_train": 32} and list(node.children) == ["samples"]
    xr.testing.assert_identical(node["samples"].to_dataset().compute(),
                                open_cube(rundir.probe_path(d / runs[0]["name"], "samples")))
    assert tree[f"{runs[0]['name']}/samples"]["sample_acc"].dims == ("step",)
