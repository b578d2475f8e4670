"""The trainer and the run directory: loss goes down, exact resume, atomic safe checkpoints, CLI errors."""
import json
import shutil

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from conftest import TINY
from twoclocks import TwoclocksError
from twoclocks.cli import app
from twoclocks.run import open_run
from twoclocks.training.config import STATUS, TrainConfig, save_schedule
from twoclocks.training.train import train

runner = CliRunner()


def test_run_directory_contract(tiny_run):
    run = open_run(tiny_run)
    meta = json.loads((tiny_run / "config.json").read_text())
    assert meta["schema_version"] == 1 and "twoclocks_version" in meta
    assert set(meta["status"]) == set(meta["config"]) and meta["status"]["lr"] == "user"
    assert meta["status"]["sampler_steps"] == "paper" and meta["status"]["sigma_data"] == "assumed"
    assert run.steps == save_schedule(TINY["steps"], TINY["saves_per_decade"])
    ds = xr.open_zarr(tiny_run / "data.zarr")
    assert ds["noise"].shape == (TINY["n_noise"], 16)
    assert ds["train"].shape == (TINY["n_train"], 16)
    for step in run.steps:  # every checkpoint loads with weights_only=True
        obj = torch.load(run.checkpoint_path(step), weights_only=True)
        assert obj["step"] == step


def test_short_run_lowers_loss(tiny_run):
    losses = [json.loads(l)["loss"] for l in (tiny_run / "log.jsonl").read_text().splitlines()]
    assert len(losses) == TINY["steps"] // TINY["log_every"]
    assert np.mean(losses[-2:]) < 0.8 * losses[0]


def _weights(path, step):
    return torch.load(path / "checkpoints" / f"step_{step:08d}.pt", weights_only=True)["model"]


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


class Crash(Exception):
    pass


@pytest.mark.parametrize("graceful", [True, False])
def test_kill_and_resume_equals_uninterrupted(tmp_path, graceful):
    cfg = dict(TINY, steps=40, resume_every=15)
    train(tmp_path / "full", cfg, progress=False)

    def die(step, loss):
        if step == 23:
            raise KeyboardInterrupt if graceful else Crash()
    with pytest.raises(KeyboardInterrupt if graceful else Crash):
        train(tmp_path / "cut", cfg, progress=False, callback=die)
    saved = torch.load(tmp_path / "cut/checkpoints/resume.pt", weights_only=True)["step"]
    assert saved == (23 if graceful else 18)  # graceful: saved on interrupt; crash: the last save
    train(tmp_path / "cut", {}, resume=True, progress=False)
    for step in open_run(tmp_path / "full").steps:
        assert _same(_weights(tmp_path / "full", step), _weights(tmp_path / "cut", step)), step
    logs = [json.loads(l)["step"] for l in (tmp_path / "cut/log.jsonl").read_text().splitlines()]
    assert logs == sorted(set(logs))  # no duplicated log lines after resuming
    # the unfinished log interval is part of the resume state: the same loss lines as uninterrupted
    losses = [[(d["step"], d["loss"]) for d in map(json.loads, (tmp_path / r / "log.jsonl").read_text().splitlines())]
              for r in ("full", "cut")]
    assert losses[0] == losses[1]


def test_resume_extends_training(tmp_path):
    cfg = dict(TINY, steps=20)
    train(tmp_path / "r", cfg, progress=False)
    train(tmp_path / "r", {"steps": 30}, resume=True, progress=False)
    assert open_run(tmp_path / "r").steps[-1] == 30
    with pytest.raises(TwoclocksError, match="lr"):
        train(tmp_path / "r", {"lr": 0.5}, resume=True, progress=False)


def test_truncated_checkpoint_names_the_file(tiny_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run, run_dir)
    path = run_dir / "checkpoints" / "step_00000010.pt"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(TwoclocksError, match="step_00000010.pt"):
        open_run(run_dir).model(10)
    r = runner.invoke(app, ["train", str(run_dir), "--resume"])  # resume.pt is fine: resume works
    assert r.exit_code == 0, r.output


def test_checkpoint_with_code_is_refused(tiny_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run, run_dir)
    torch.save({"step": 10, "model": {}, "evil": TrainConfig()}, run_dir / "checkpoints" / "step_00000010.pt")
    with pytest.raises(TwoclocksError, match="sha256 does not match"):  # not the file its digest describes
        open_run(run_dir).model(10)
    (run_dir / "checkpoints" / "step_00000010.pt.sha256").unlink()  # unchecked: torch refuses the pickle
    with pytest.raises(TwoclocksError, match="cannot be read"):
        open_run(run_dir).model(10)


def _cli(*args):
    r = runner.invoke(app, list(map(str, args)))
    return r.exit_code, r.output


@pytest.mark.parametrize("args,msg", [
    (["--group", "5"], "must divide"),
    (["--side", "2", "--group", "2", "--n-train", "5"], "only 4"),
    (["--model", "huge"], "unknown model preset"),
    (["--rule", "nope"], "unknown rule"),
    (["--arch", "rnn"], "unknown architecture"),
    (["--steps", "0"], "--steps must be positive"),
])
def test_train_bad_input_exit_2(tmp_path, args, msg):
    code, out = _cli("train", tmp_path / "r", "--quiet", *args)
    assert code == 2 and msg in out and "Traceback" not in out
    assert len(out.strip().splitlines()) == 1


def test_nonempty_run_dir_and_info(tiny_run, tmp_path):
    code, out = _cli("train", tiny_run, "--quiet")
    assert code == 2 and "--resume" in out
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("keep me")
    code, out = _cli("train", tmp_path / "junk", "--force", "--quiet")
    assert code == 2 and (tmp_path / "junk" / "file.txt").read_text() == "keep me"
    code, out = _cli("info", tmp_path / "junk")
    assert code == 2 and "not a twoclocks run" in out
    code, out = _cli("info", tiny_run)
    assert code == 0 and "checkpoints 10" in out and "GroupParity" in out


def test_status_covers_every_field():
    assert set(STATUS) == set(TrainConfig().to_dict())
