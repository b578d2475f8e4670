"""bf16 network calls against fp32 (benchmarks/bench_precision.py's measurements, on the tiny runs):
the agreement measured on the CPU keeps meeting the probes' bf16 targets; `--precision auto` is fp32
unless a GPU measurement is recorded (tests/test_provenance_env.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_precision import agreement  # noqa: E402

from twoclocks.probes.driver import resolve_precision  # noqa: E402
from twoclocks.probes.registry import get_probe  # noqa: E402
from twoclocks.run import open_run  # noqa: E402


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    from conftest import TINY
    from twoclocks.training.train import train
    path = tmp_path_factory.mktemp("prec") / "gpt"
    train(path, {**TINY, "arch": "gpt", "steps": 60}, progress=False)
    return path


def test_dit_samples_agree_in_bf16(tiny_run):
    res = agreement(open_run(tiny_run), [32, 60], "cpu", n_sigma=8, n_subset=32)
    assert get_probe("samples").bf16_target == ("identical_samples_frac", "min", 0.995)
    assert res["min_identical_samples"] >= 0.995, res["identical_samples"]


def test_gpt_ce_agrees_in_bf16(gpt_run):
    res = agreement(open_run(gpt_run), [32, 60], "cpu", n_subset=32)
    assert get_probe("ce").bf16_target == ("ce_abs_diff_max", "max", 0.01)
    assert res["max_ce_abs_diff"] < 0.01


def test_auto_precision_rules():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu, get_probe("samples"), "dit") == "fp32"  # auto: fp32 on the CPU
    assert resolve_precision("bf16", cpu, get_probe("dsm-spectrum"), "dit") == "bf16"  # asked for: used
    assert get_probe("dsm-spectrum").bf16_target == ("dsm_loss_rel_diff_max", "max", 0.01)
    with pytest.raises(Exception, match="precision"):
        resolve_precision("fp16", cpu)


def test_precision_is_recorded(tiny_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "probes", ignore_errors=True)
    ds = get_probe("samples")(run, steps="last", precision="bf16", device="cpu", progress=False)
    assert ds.attrs["precision"] == "bf16" and '"precision": "bf16"' in ds.attrs["probe_params"]
