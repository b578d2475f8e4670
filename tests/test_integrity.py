"""Damaged files and full disks: each fault injected into a copy of a tiny probed run, then the
commands that read the file are run in process. Every fault ends in a one-line error with exit code 2
naming the file and what to do (never a traceback), or heals: the next call of the probe that owns a
damaged cube moves it aside and recomputes what was damaged, and the healed cube equals one computed
without the fault."""
from __future__ import annotations

import errno
import json
import os
import shutil

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from typer.testing import CliRunner
from zarr.codecs import Crc32cCodec

from conftest import TINY
from twoclocks.cli import app
from twoclocks.probes import get_probe
from twoclocks.run import data_digest, load_checkpoint, open_run
from twoclocks.store import DamagedError, alive, check_store, missing_chunks, open_cube, write_dataset
from twoclocks.training.train import train

runner = CliRunner()
SMALL = dict(TINY, steps=3)  # checkpoints 0, 1, 2, 3


def cli(*args, env=None):
    r = runner.invoke(app, [str(a) for a in args], env=env)
    return r.exit_code, r.stdout, r.stderr


def one_line_error(code, err, *needles):
    """Exit code 2, one line on stderr (besides notes), no traceback, every needle in it."""
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def damage(path, at=None, n=2):
    """Write over ``n`` bytes of a file (in the middle by default)."""
    b = bytearray(path.read_bytes())
    at = len(b) // 2 if at is None else at
    for i in range(at, at + n):
        b[i] ^= 0xA5
    path.write_bytes(bytes(b))


def data_vars(ds):
    return ds[list(ds.data_vars)].drop_attrs(deep=False)


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """A tiny run (4 checkpoints) with its samples and markov cubes: the reference, read-only."""
    path = tmp_path_factory.mktemp("integrity") / "ref"
    train(path, SMALL, progress=False)
    get_probe("samples")(path, progress=False)
    get_probe("markov")(path, progress=False)
    return path


@pytest.fixture
def run(probed, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(probed, path)
    return path


def test_every_cube_array_carries_crc32c_and_a_flipped_byte_is_caught(tmp_path):
    ds = xr.Dataset({"a": (("step", "seed"), torch.arange(80.).reshape(10, 8).numpy()),
                     "s": ("k", ["ab", "cd"])}, coords={"step": list(range(10))})
    write_dataset(ds, tmp_path / "c.zarr")
    g = zarr.open_group(str(tmp_path / "c.zarr"), mode="r")
    for name in ("a", "s", "step"):
        assert isinstance(g[name].compressors[-1], Crc32cCodec), name
    xr.testing.assert_identical(open_cube(tmp_path / "c.zarr"), ds)
    damage(tmp_path / "c.zarr/a/c/0/0", n=1)
    with pytest.raises(DamagedError, match="c.zarr is damaged .*checksum"):
        open_cube(tmp_path / "c.zarr")


def test_a_deleted_chunk_file_is_damage_not_fill_values(tmp_path):
    """Every chunk is written (even all fill values), so a missing chunk file is never read as fill."""
    ds = xr.Dataset({"a": (("step", "seed"), np.zeros((40, 100))), "n": ("step", np.zeros(40, int))},
                    coords={"step": np.arange(40)})
    write_dataset(ds, tmp_path / "c.zarr", chunk_bytes=8000)  # 10 steps per chunk of `a`, all zeros
    assert "_twoclocks_all_chunks_written" not in open_cube(tmp_path / "c.zarr").attrs
    assert sorted(p.name for p in (tmp_path / "c.zarr/a/c").iterdir()) == ["0", "1", "2", "3"]
    assert missing_chunks(tmp_path / "c.zarr", "a") == []
    (tmp_path / "c.zarr/a/c/2/0").unlink()
    assert missing_chunks(tmp_path / "c.zarr", "a") == ["c/2/0"]
    with pytest.raises(DamagedError, match=r"c.zarr is damaged .*a/c/2/0 is missing"):
        open_cube(tmp_path / "c.zarr")
    salvage, problems, bad = check_store(tmp_path / "c.zarr")
    assert bad == set(range(20, 30)) and len(problems) == 1
    assert list(salvage["step"].values) == [s for s in range(40) if not 20 <= s < 30]


def test_a_store_without_the_marker_reads_absent_chunks_as_fill(tmp_path):
    """Stores of twoclocks <= 0.2 skipped chunks of fill values: those stay readable."""
    ds = xr.Dataset({"a": (("step", "seed"), np.zeros((40, 100)))}, coords={"step": np.arange(40)})
    ds.to_zarr(tmp_path / "old.zarr", zarr_format=3, consolidated=True, write_empty_chunks=False,
               encoding={"a": {"chunks": (10, 100)}})
    xr.testing.assert_equal(open_cube(tmp_path / "old.zarr"), ds)


def test_a_lazy_open_checks_each_chunk_when_computed(tmp_path):
    vals = np.arange(4000.).reshape(40, 100)
    write_dataset(xr.Dataset({"a": (("step", "seed"), vals)}, coords={"step": np.arange(40)}),
                  tmp_path / "c.zarr", chunk_bytes=8000)
    lazy = open_cube(tmp_path / "c.zarr", chunks={})
    assert lazy["a"].chunks == ((10, 10, 10, 10), (100,))
    np.testing.assert_array_equal(lazy["a"].values, vals)
    damage(tmp_path / "c.zarr/a/c/1/0", n=1)
    (tmp_path / "c.zarr/a/c/3/0").unlink()
    lazy = open_cube(tmp_path / "c.zarr", chunks={})  # opening reads no values
    assert float(lazy["a"].isel(step=slice(0, 10)).sum()) == vals[:10].sum()  # intact chunks still read
    with pytest.raises(DamagedError, match="c.zarr is damaged .*checksum"):
        lazy["a"].isel(step=slice(10, 20)).values
    with pytest.raises(DamagedError, match="a/c/3/0 is missing"):
        lazy["a"].isel(step=slice(30, 40)).values


def test_damaged_chunk_one_line_everywhere_then_samples_heals(run, probed):
    damage(run / "probes/samples.zarr/sample_acc/c/0")
    for cmd in (["clocks", run], ["markov", run], ["plot", run], ["info", "--verify", run]):
        code, out, err = cli(*cmd)
        if cmd[0] == "info":
            assert "damaged   " in out and "sample_acc" in out, out
        one_line_error(code, err, "samples.zarr")
        if cmd[0] != "info":
            assert "is damaged" in err and "twoclocks-probe samples" in err, err
    code, out, err = cli("samples", run, "--quiet")
    assert code == 0, err
    assert "damaged" in err and "moved to samples.zarr.damaged-" in err and "computed again" in err, err
    assert len(list((run / "probes").glob("samples.zarr.damaged-*"))) == 1  # kept aside, not deleted
    xr.testing.assert_identical(data_vars(open_cube(run / "probes/samples.zarr")),
                                data_vars(open_cube(probed / "probes/samples.zarr")))
    code, out, err = cli("info", "--verify", run)
    assert code == 0 and "intact" in out and "aside" in out, (out, err)


def test_damaged_root_metadata_info_refuses_samples_recomputes(run, probed):
    (run / "probes/samples.zarr/zarr.json").write_text('{"zarr_format": 3, "node_ty')
    code, out, err = cli("info", run)
    one_line_error(code, err, "samples.zarr is damaged", "twoclocks-probe samples")
    one_line_error(*cli("clocks", run)[::2], "samples.zarr is damaged")
    code, out, err = cli("samples", run, "--quiet")
    assert code == 0 and "the whole cube will be computed again" in err, err
    xr.testing.assert_identical(data_vars(open_cube(run / "probes/samples.zarr")),
                                data_vars(open_cube(probed / "probes/samples.zarr")))


def test_damaged_piece_is_moved_aside_and_recomputed(run, probed):
    parts = run / "probes/.samples.parts"
    parts.mkdir()
    shutil.copytree(run / "probes/samples.zarr", parts / "step_00000003.zarr")  # a pending piece
    chunk = next(p for v in ("qdist", "nn_hamming", "sample_mem") for p in (parts / "step_00000003.zarr" / v).rglob("*")
                 if p.is_file() and "/c/" in str(p))
    damage(chunk)
    code, out, err = cli("samples", run, "--quiet")
    assert code == 0 and "damaged piece" in err, err
    assert list((run / "probes").glob("samples.step_00000003.zarr.damaged-*"))
    xr.testing.assert_identical(data_vars(open_cube(run / "probes/samples.zarr")),
                                data_vars(open_cube(probed / "probes/samples.zarr")))


def test_damaged_data_is_regenerated_when_its_digest_proves_it(run, probed):
    meta = json.loads((run / "config.json").read_text())
    assert data_digest(open_cube(run / "data.zarr")) == meta["data_sha256"]
    damage(run / "data.zarr/noise/c/0/0")
    code, out, err = cli("info", "--verify", run)
    assert code == 2 and "data.zarr" in out and "regenerable from the config" in out, out
    code, out, err = cli("info", run)
    assert code == 0 and "regenerated from the config" in err, err
    xr.testing.assert_identical(data_vars(open_cube(run / "data.zarr")), data_vars(open_cube(probed / "data.zarr")))
    assert list(run.glob("data.zarr.damaged-*"))
    # not provable (the recorded digest differs from what the config regenerates): refused, kept
    (run / "config.json").write_text(json.dumps(dict(meta, data_sha256="0" * 64), indent=2))
    damage(run / "data.zarr/train/c/0/0")
    for cmd in (["info", run], ["samples", run, "--quiet", "--force"]):
        one_line_error(*cli(*cmd)[::2], "data.zarr is damaged", "differs from the recorded digest", "backup")
    assert (run / "data.zarr").exists() and (run / "probes/samples.zarr").exists()  # --force deleted nothing


def test_truncated_checkpoints(run, probed):
    ck = run / "checkpoints"
    last = ck / "step_00000003.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    shutil.rmtree(run / "probes")
    msg = one_line_error(*cli("samples", run, "--quiet")[::2], str(last), "last checkpoint", "--resume")
    assert "writes it again from resume.pt" in msg
    code, out, err = cli("info", "--verify", run)
    assert code == 2 and str(last) in out
    last.unlink()
    (ck / "step_00000003.pt.sha256").unlink()
    code, out, err = cli("train", run, "--resume", "--quiet")
    assert code == 0, err
    a, b = load_checkpoint(last)["model"], load_checkpoint(probed / "checkpoints/step_00000003.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    damage(ck / "step_00000001.pt")
    shutil.rmtree(run / "probes")
    one_line_error(*cli("samples", run, "--quiet", "--steps", "1")[::2], "step_00000001.pt is damaged",
                   "sha256 does not match", "training the run again")


def _enospc_after(n_ok, real):
    """``real`` that works ``n_ok`` times, then writes (part of) its output and fails as a full disk."""
    calls = []

    def fake(*args, **kw):
        calls.append(1)
        if len(calls) > n_ok:
            if hasattr(args[1], "write"):
                args[1].write(b"x" * 1000)  # torch.save: a partial file
            else:
                real(*args, **kw)  # to_zarr: the temp store written, then the failure
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kw)
    return fake


def test_disk_full_while_training_then_resume(tmp_path, probed, monkeypatch):
    run = tmp_path / "t"
    monkeypatch.setattr(torch, "save", _enospc_after(3, torch.save))  # step 0 (+ resume), step 1, then full
    msg = one_line_error(*cli("train", run, "--quiet", *_train_args())[::2], "no space left on device writing",
                         "finished work is kept: free space and rerun")
    assert "checkpoints" in msg
    monkeypatch.undo()
    assert not list(run.rglob("*.tmp"))  # no temp file left behind
    assert (run / "checkpoints/step_00000000.pt").exists()  # finished work kept
    dead = next(p for p in range(4_000_000, 4_100_000) if not alive(p))
    stale = run / "checkpoints" / f".resume.pt.{dead}.tmp"  # as an earlier crash leaves it
    stale.write_bytes(b"x")
    code, out, err = cli("train", run, "--resume", "--quiet")
    assert code == 0, err
    assert not stale.exists()
    for name in ("step_00000003.pt", "resume.pt"):
        a, b = (load_checkpoint(d / "checkpoints" / name)["model"] for d in (run, probed))
        assert all(torch.equal(a[k], b[k]) for k in a), name


def _train_args():
    out = []
    for k in ("side", "group", "n_train", "n_heldout", "n_noise", "model", "batch", "lr", "steps",
              "saves_per_decade", "device"):
        out += ["--" + k.replace("_", "-"), str(SMALL[k])]
    return out


def test_disk_full_while_probing_keeps_pieces_and_rerun_completes(run, probed, monkeypatch):
    shutil.rmtree(run / "probes")
    real = xr.Dataset.to_zarr
    monkeypatch.setattr(xr.Dataset, "to_zarr", _enospc_after(2, real))
    msg = one_line_error(*cli("samples", run, "--quiet")[::2], "no space left on device writing",
                         "finished work is kept: free space and rerun")
    assert "samples" in msg
    monkeypatch.undo()
    assert not [p for p in (run / "probes").rglob("*") if p.name.endswith(".tmp")]
    assert list((run / "probes/.samples.parts").glob("step_*.zarr"))  # the finished pieces
    code, out, err = cli("samples", run, "--quiet")
    assert code == 0, err
    xr.testing.assert_identical(data_vars(open_cube(run / "probes/samples.zarr")),
                                data_vars(open_cube(probed / "probes/samples.zarr")))


def test_user_module_failing_at_import(run, tmp_path, monkeypatch):
    monkeypatch.setenv("TWOCLOCKS_DEBUG", "")  # (--debug sets it for the process; undone after the test)
    bad = tmp_path / "badprobe.py"
    bad.write_text("def helper():\n    raise RuntimeError('no calibration file')\n\nhelper()\nPROBE = None\n")
    spec = f"{bad}:PROBE"
    for cmd in (["probe", spec, run], ["plot", run, "--probe", spec]):
        msg = one_line_error(*cli(*cmd, env={"TWOCLOCKS_DEBUG": ""})[::2], "badprobe.py",
                             "RuntimeError: no calibration file", "--debug")
    code, out, err = cli("--debug", "probe", spec, run)
    assert code == 2 and "Traceback (your code)" in err and "helper()" in err and "badprobe.py" in err, err
    assert "registry.py" not in err and "importlib" not in err  # only the user's own frames
    code, out, err = cli("probe", spec, run, env={"TWOCLOCKS_DEBUG": "1"})
    assert code == 2 and "Traceback (your code)" in err
    one_line_error(*cli("probe", "no_such_module_xyz:PROBE", run)[::2], "no_such_module_xyz", "MODULE:OBJECT")
