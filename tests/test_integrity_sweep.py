"""Damaged files and full disks seen from the sweep commands (`collect`, `probe-all`): a tiny two-run
sweep is probed once (the reference, read-only), each fault is injected into a copy, and the command
either heals (probe-all runs the probe that owns a damaged cube, which moves it aside and recomputes
it: the healed cube equals the reference) or ends in one line with exit code 2 naming the file and
what to do, keeping every finished file."""
from __future__ import annotations

import shutil

import pytest
import xarray as xr

from conftest import TINY
from test_integrity import _enospc_after, cli, damage, data_vars, one_line_error
from twoclocks.store import open_cube, write_dataset

RUNS = ("n_train=16", "n_train=32")
BASE = dict(TINY, steps=3)  # checkpoints 0, 1, 2, 3


def _base_args():
    out = []
    for k in ("side", "group", "n_heldout", "n_hypercube", "n_noise", "model", "batch", "steps",
              "saves_per_decade", "device"):
        out += ["--base", f"{k}={BASE[k]}"]
    return out


@pytest.fixture(scope="module")
def probed_sweep(tmp_path_factory):
    d = tmp_path_factory.mktemp("integrity-sweep") / "sw"
    code, out, err = cli("sweep", d, "--grid", "n_train=16,32", *_base_args(), "--executor", "debug", "--quiet")
    assert code == 0, err
    code, out, err = cli("probe-all", d, "--probes", "samples,markov", "--executor", "debug")
    assert code == 0, err
    return d


@pytest.fixture
def sweep(probed_sweep, tmp_path):
    d = tmp_path / "sw"
    shutil.copytree(probed_sweep, d)
    return d


def assert_same_cube(d, ref, run, name="samples"):
    xr.testing.assert_identical(data_vars(open_cube(d / run / "probes" / f"{name}.zarr")),
                                data_vars(open_cube(ref / run / "probes" / f"{name}.zarr")))


def test_collect_refuses_a_damaged_chunk_and_probe_all_heals_it(sweep, probed_sweep):
    damage(sweep / RUNS[0] / "probes/samples.zarr/sample_acc/c/0")
    code, out, err = cli("collect", sweep)
    one_line_error(code, err, f"{RUNS[0]}/probes/samples.zarr is damaged", "twoclocks-probe samples")
    assert not (sweep / "collect.zarr").exists()  # nothing written from damaged input
    code, out, err = cli("probe-all", sweep, "--probes", "samples", "--executor", "debug")
    assert code == 0, err
    assert "damaged" in err and "moved to samples.zarr.damaged-" in err, err
    assert len(list((sweep / RUNS[0] / "probes").glob("samples.zarr.damaged-*"))) == 1  # kept aside
    assert_same_cube(sweep, probed_sweep, RUNS[0])
    code, out, err = cli("collect", sweep)
    assert code == 0 and (sweep / "collect.zarr").exists(), err


def test_collect_refuses_damaged_metadata(sweep, probed_sweep):
    (sweep / RUNS[1] / "probes/samples.zarr/zarr.json").write_text('{"zarr_format": 3, "node_ty')
    one_line_error(*cli("collect", sweep)[::2], f"{RUNS[1]}/probes/samples.zarr is damaged",
                   "twoclocks-probe samples")
    code, out, err = cli("probe-all", sweep, "--probes", "samples", "--executor", "debug")
    assert code == 0 and "the whole cube will be computed again" in err, err
    assert_same_cube(sweep, probed_sweep, RUNS[1])


def test_probe_all_regenerates_damaged_data(sweep, probed_sweep):
    chunk = next(p for p in sorted((sweep / RUNS[0] / "data.zarr").rglob("*")) if p.is_file() and "/c/" in str(p))
    damage(chunk)
    shutil.rmtree(sweep / RUNS[0] / "probes/samples.zarr")
    code, out, err = cli("probe-all", sweep, "--probes", "samples", "--executor", "debug")
    assert code == 0, err
    assert "data.zarr" in err and "regenerated" in err, err
    assert_same_cube(sweep, probed_sweep, RUNS[0])


def test_probe_all_names_a_truncated_checkpoint_and_keeps_finished_runs(sweep, probed_sweep):
    ckpt = sweep / RUNS[1] / "checkpoints/step_00000003.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    for run in RUNS:
        shutil.rmtree(sweep / run / "probes/samples.zarr")
    msg = one_line_error(*cli("probe-all", sweep, "--probes", "samples", "--executor", "debug")[::2],
                         "step_00000003.pt is damaged", "--resume")
    assert RUNS[1] in msg
    assert_same_cube(sweep, probed_sweep, RUNS[0])  # the other run finished, and is kept
    kept = open_cube(sweep / RUNS[1] / "probes/samples.zarr")  # the steps before the damaged one, kept
    assert kept["step"].values.tolist() == [0, 1, 2]


def test_probe_all_disk_full_keeps_finished_work_and_rerun_completes(sweep, probed_sweep, monkeypatch):
    for run in RUNS:
        shutil.rmtree(sweep / run / "probes")
    monkeypatch.setattr(xr.Dataset, "to_zarr", _enospc_after(2, xr.Dataset.to_zarr))
    code, out, err = cli("probe-all", sweep, "--probes", "samples", "--executor", "debug")
    assert code == 2 and "Traceback" not in err, err
    assert "no space left on device writing" in err and "free space and rerun" in err, err
    monkeypatch.undo()
    assert not [p for p in sweep.rglob("*") if p.name.endswith(".tmp")]  # no temporary file left behind
    code, out, err = cli("probe-all", sweep, "--probes", "samples", "--executor", "debug")
    assert code == 0, err
    for run in RUNS:
        assert_same_cube(sweep, probed_sweep, run)


def test_a_damaged_dsm_cube_is_not_read_as_missing_loss_clocks(sweep):
    run = sweep / RUNS[0]
    code, out, err = cli("clocks", run)
    assert code == 0, err
    cube = run / "probes/dsm_spectrum.zarr"
    write_dataset(xr.Dataset({"tau_rule_loss": ((), 2.0), "tau_mem_loss": ((), 3.0)}), cube)
    damage(next(p for p in sorted(cube.rglob("*")) if p.is_file() and "/c" in str(p) and "tau_mem_loss" in str(p)))
    for cmd in (["clocks", run], ["collect", sweep]):
        one_line_error(*cli(*cmd)[::2], "dsm_spectrum.zarr is damaged", "twoclocks-probe dsm-spectrum")
