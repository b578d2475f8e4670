"""Where numbers were computed: --precision auto is fp32 unless a GPU measurement is recorded, the
environment record is in the training log, the checkpoints and every cube, a resume that changes it
is recorded, and pooled runs that differ are flagged."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import xarray as xr

from conftest import TINY
from twoclocks import TwoclocksError, environment as env_mod
from twoclocks.environment import (ENVIRONMENT_FIELDS, MEASUREMENTS_ENV, bf16_measured_ok, environment,
                                   environment_differences, load_measurements, pooled_environment_note)
from twoclocks.probes import driver
from twoclocks.probes.clocks import compute_clocks, format_clocks_table
from twoclocks.probes.driver import resolve_precision
from twoclocks.probes.registry import get_probe
from twoclocks.store import write_dataset
from twoclocks.training import train as train_mod
from twoclocks.training.config import TrainConfig
from twoclocks.training.train import create_run, resolve_compile, train

GPU = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def fake_gpu(monkeypatch, tmp_path):
    """A CUDA device named GPU with bf16, no shipped measurements; returns the user's measurements file."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(driver, "device_name", lambda device: GPU)
    monkeypatch.setattr(env_mod, "MEASUREMENTS_FILE", tmp_path / "shipped.json")
    user = tmp_path / "mine.json"
    monkeypatch.setenv(MEASUREMENTS_ENV, str(user))
    return user


def _write(path, *entries):
    path.write_text(json.dumps({"measurements": [dict(device_name=GPU, arch="dit", **e) for e in entries]}))


def test_auto_is_fp32_on_a_gpu_without_a_record(fake_gpu):
    cuda = torch.device("cuda")
    for name, arch in (("samples", "dit"), ("samples", "gpt"), ("dsm-spectrum", "dit"), ("ce", "gpt")):
        assert resolve_precision("auto", cuda, get_probe(name), arch) == "fp32", name
    assert resolve_precision("bf16", cuda, get_probe("samples"), "dit") == "bf16"  # asked for: used
    assert resolve_compile("auto", cuda) == "off"  # no CUDA graphs unless asked


def test_auto_is_bf16_where_a_recorded_measurement_meets_the_target(fake_gpu):
    cuda, samples, dsm = torch.device("cuda"), get_probe("samples"), get_probe("dsm-spectrum")
    _write(fake_gpu, dict(probe="samples", metric="identical_samples_frac", value=0.999),
           dict(probe="dsm-spectrum", metric="dsm_loss_rel_diff_max", value=0.03))
    assert resolve_precision("auto", cuda, samples, "dit") == "bf16"
    assert resolve_precision("auto", cuda, samples, "gpt") == "fp32"  # measured on dit only
    assert resolve_precision("auto", cuda, dsm, "dit") == "fp32"      # measured, misses the 1% target
    assert resolve_precision("auto", torch.device("cpu"), samples, "dit") == "fp32"
    # one failing measurement of the same device, probe and arch is enough to stay in fp32
    _write(fake_gpu, dict(probe="samples", metric="identical_samples_frac", value=0.999),
           dict(probe="samples", metric="identical_samples_frac", value=0.98))
    assert resolve_precision("auto", cuda, samples, "dit") == "fp32"
    # another GPU model's record does not count
    assert not bf16_measured_ok("NVIDIA A100", "samples", "dit", samples.bf16_target, load_measurements())


def test_bad_measurements_file_is_a_one_line_error(fake_gpu):
    fake_gpu.write_text("{not json")
    with pytest.raises(TwoclocksError, match=f"precision measurements {fake_gpu} cannot be read") as e:
        load_measurements()
    assert "\n" not in str(e.value)


def test_shipped_measurements_file_is_well_formed(monkeypatch):
    monkeypatch.delenv(MEASUREMENTS_ENV, raising=False)
    assert env_mod.MEASUREMENTS_FILE.is_file()
    assert all({"device_name", "probe", "arch", "metric", "value"} <= set(e) for e in load_measurements())


def test_training_log_and_checkpoints_record_the_environment(tiny_run):
    lines = [json.loads(ln) for ln in (tiny_run / "log.jsonl").read_text().splitlines()]
    rec = lines[0]["environment"]
    assert tuple(rec) == ENVIRONMENT_FIELDS
    assert rec == {"torch": torch.__version__, "cuda": None, "device": "cpu", "device_name": rec["device_name"],
                   "precision": "fp32", "compile": "off"} and rec["device_name"]
    assert all("environment" not in d and "loss" in d for d in lines[1:])  # once per session
    ckpt = torch.load(tiny_run / "checkpoints" / "step_00000060.pt", weights_only=True)
    assert ckpt["environment"] == rec


def test_probe_cube_records_the_environment(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("probes"))
    ds = get_probe("samples")(run, steps="last", device="cpu", progress=False)
    rec = json.loads(ds.attrs["environment"])
    assert rec == environment("cpu", "fp32") and rec["precision"] == ds.attrs["precision"] == "fp32"


def test_resume_records_what_changed(tmp_path, monkeypatch):
    path = tmp_path / "r"
    train(path, {**TINY, "steps": 20}, progress=False)
    real = environment
    monkeypatch.setattr(train_mod, "environment", lambda *a, **k: {**real(*a, **k), "torch": "9.9.9"})
    train(path, {"steps": 30}, resume=True, progress=False)
    lines = [json.loads(ln) for ln in (path / "log.jsonl").read_text().splitlines()]
    assert [d["step"] for d in lines] == [10, 20, 30]
    assert lines[2]["resume"] == {"from_step": 20, "changed": {"torch": [torch.__version__, "9.9.9"]}}
    assert lines[2]["environment"]["torch"] == "9.9.9"
    assert torch.load(path / "checkpoints" / "resume.pt", weights_only=True)["environment"]["torch"] == "9.9.9"


def test_environment_differences_flags_differing_runs():
    a = {**environment("cpu", "fp32", "off"), "device_name": "CPU X"}
    assert environment_differences([a, dict(a), None]) == []
    b = {**a, "device_name": GPU, "precision": "bf16"}
    assert environment_differences([a, b]) == [f"device_name: CPU X, {GPU}", "precision: bf16, fp32"]
    assert pooled_environment_note([[a], [a, a]], [a, a]) == ""
    assert pooled_environment_note([[a], [b]], [a, None]) == (
        f"runs computed in differing environments: training device_name: CPU X, {GPU}; precision: bf16, fp32")


def _clock_run(path, env):
    create_run(path, TrainConfig(side=4, group=2, n_train=4, n_heldout=8, n_hypercube=8, n_noise=8, model="tiny",
                                 device="cpu"), set())
    steps = np.arange(0, 100, 4)
    write_dataset(xr.Dataset({"sample_acc": ("step", (steps >= 20).astype(float)),
                              "sample_mem": ("step", 0.5 * (steps >= 60)), "uniform_valid_sample_mem": ((), 0.01)},
                             coords={"step": steps}), path / "probes" / "samples.zarr")
    (path / "log.jsonl").write_text(json.dumps({"step": 10, "loss": 1.0, "time": 0.1, "environment": env}) + "\n")
    return path


def test_clocks_note_pooled_runs_that_differ(tmp_path):
    a = environment("cpu", "fp32", "off")
    same = [_clock_run(tmp_path / f"s{i}", a) for i in range(2)]
    ds = compute_clocks(same)
    assert ds.attrs["pooled_environment_note"] == "" and "environments" not in format_clocks_table(ds)
    other = _clock_run(tmp_path / "g", {**a, "compile": "graphs"})
    ds = compute_clocks([*same, other])
    assert ds.attrs["pooled_environment_note"] == ("runs computed in differing environments: "
                                                   "training compile: graphs, off")
    assert format_clocks_table(ds).splitlines()[-1] == ds.attrs["pooled_environment_note"]
