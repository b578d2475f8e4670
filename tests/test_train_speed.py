"""The trainer's speed work keeps its results: the step loop does not wait for the device, the split
loss (draws outside, compiled part inside) is the textbook loss, compile falls back exactly, compiled
training resumes bit for bit on the CPU, and benchmarks/gpu_check.py runs (tiny, on the CPU)."""
import dataclasses
import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from conftest import TINY
from twoclocks import TwoclocksError
from twoclocks.data import make_encoding, make_rule, make_splits
from twoclocks.training.config import TrainConfig
from twoclocks.training.edm import edm_loss
from twoclocks.training.gpt import gpt_loss
from twoclocks.training.models import build_model, training_data
from twoclocks.training.train import TrainStep, build_optimizer, resolve_compile, train

ROOT = Path(__file__).resolve().parents[1]
SYNCING = ("item", "__float__", "__bool__", "__int__", "__index__", "tolist", "numpy", "cpu")


def _set_compile(monkeypatch, value) -> dict:
    """Overrides that set compile: the config field once it exists, else a class attribute that
    ``getattr(cfg, "compile", "auto")`` in the trainer finds."""
    if "compile" in {f.name for f in dataclasses.fields(TrainConfig)}:
        return {"compile": value}
    monkeypatch.setattr(TrainConfig, "compile", value, raising=False)
    return {}


def test_step_loop_reads_the_loss_once_per_log_interval(tmp_path, monkeypatch):
    """Every way of pulling a tensor's value to the host is counted while training 40 steps:
    only the log lines (4) may wait for the device; the old loop did 2 per step."""
    calls = []
    for name in SYNCING:
        orig = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name,
                            lambda self, *a, _o=orig, _n=name, **k: (calls.append(_n), _o(self, *a, **k))[1])
    train(tmp_path / "r", dict(TINY, steps=40), progress=False)
    monkeypatch.undo()
    lines = (tmp_path / "r/log.jsonl").read_text().splitlines()
    assert len(lines) == 4 and calls == ["item"] * 4, calls


def _task(arch):
    cfg = TrainConfig(**dict(TINY, arch=arch))
    rule = make_rule(cfg.rule_spec())
    enc = make_encoding(cfg.encoding, rule.n_symbols, **cfg.encoding_params)
    cells = make_splits(rule, cfg.n_train, 0, 0, cfg.data_seed)["train"]
    return cfg, rule, enc, training_data(cfg, cells, enc, torch.device("cpu"))


def _trainstep(arch, compile="off"):
    cfg, rule, enc, data = _task(arch)
    model = build_model(cfg, rule, enc)
    step = TrainStep(cfg, model, build_optimizer(cfg, model, data.device), data,
                     torch.Generator().manual_seed(7), compile=compile)
    return step, model


@pytest.mark.parametrize("arch", ["dit", "gpt"])
def test_trainstep_is_the_textbook_step(arch):
    """TrainStep (draws outside the loss function) gives bit for bit the losses and weights of the plain
    loop: randint, then edm_loss(model, x, gen) (or gpt_loss), zero_grad, backward, Adam step."""
    step, model = _trainstep(arch)
    cfg, rule, enc, data = _task(arch)
    ref = build_model(cfg, rule, enc)
    opt, gen = build_optimizer(cfg, ref, data.device), torch.Generator().manual_seed(7)
    for _ in range(5):
        x = data[torch.randint(data.shape[0], (cfg.batch,), generator=gen)]
        want = edm_loss(ref, x, gen, cfg.p_mean, cfg.p_std, cfg.sigma_data) if arch == "dit" else gpt_loss(ref, x)
        opt.zero_grad(set_to_none=True)
        want.backward()
        opt.step()
        assert torch.equal(step(), want.detach())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))


def test_compile_failure_falls_back_to_eager_exactly(monkeypatch):
    """A compiler that fails at the first call: a warning, then the same step eagerly with the same
    draws, so the weights equal an eager run's bit for bit."""
    def broken(fn, **kw):
        def call(*a, **k):
            raise RuntimeError("no C++ compiler found\nmore detail")
        return call
    monkeypatch.setattr(torch, "compile", broken)
    step, model = _trainstep("dit", compile="on")
    with pytest.warns(RuntimeWarning, match=r"compile=on failed \(RuntimeError: no C\+\+ compiler found\); "
                                            r"training continues with compile=off"):
        losses = [step() for _ in range(4)]
    assert step.mode == "off"
    eager, ref = _trainstep("dit", compile="off")
    assert [torch.equal(a, eager()) for a in losses] == [True] * 4
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))


def test_compile_setting_resolution():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [resolve_compile(s, cpu) for s in ("auto", "off", "on", "graphs")] == ["off", "off", "on", "on"]
    assert [resolve_compile(s, cuda) for s in ("auto", "off", "on", "graphs")] == ["off", "off", "on", "graphs"]
    assert resolve_compile(True, cuda) == "graphs" and resolve_compile(False, cuda) == "off"
    with pytest.raises(TwoclocksError, match="unknown compile setting 'fast'; choose one of auto, off, on, graphs"):
        resolve_compile("fast", cpu)


def _compile_unavailable() -> str | None:
    try:
        torch.compile(lambda x: x.sin() + 1)(torch.ones(3))
    except Exception as e:  # no compiler / unsupported platform
        return f"torch.compile does not work here ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
    return None


def test_compiled_training_resumes_bit_for_bit(tmp_path, monkeypatch):
    """compile=on on the CPU (inductor, C++): interrupted at step 13 and resumed, the weights and the log
    equal an uninterrupted compiled run's; the step really ran compiled (no fallback warning).
    Compiling takes tens of seconds on a cold inductor cache."""
    reason = _compile_unavailable()
    if reason:
        pytest.skip(reason)
    cfg = dict(TINY, steps=20, log_every=5, **_set_compile(monkeypatch, "on"))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="compile=", category=RuntimeWarning)
        train(tmp_path / "full", cfg, progress=False)

        def stop(step, loss):
            if step == 13:
                raise KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            train(tmp_path / "cut", cfg, progress=False, callback=stop)
        train(tmp_path / "cut", {}, resume=True, progress=False)
    for name in ("step_00000020.pt", "resume.pt"):
        a, b = (torch.load(tmp_path / r / "checkpoints" / name, weights_only=True) for r in ("full", "cut"))
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"]), name
    losses = [[json.loads(l)["loss"] for l in (tmp_path / r / "log.jsonl").read_text().splitlines()]
              for r in ("full", "cut")]
    assert losses[0] == losses[1] and len(losses[0]) == 4


def test_gpu_check_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu_check.py --cpu --tiny writes its JSON: every part present, ratios positive and
    finite, CUDA-only numbers marked not measured, bf16 agreement a fraction."""
    out = tmp_path / "check.json"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu_check.py"), "--cpu", "--tiny", "--no-compile",
                        "--threads", "1", "--out", str(out), "--record", str(tmp_path / "m.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(out.read_text())
    assert set(rep) == {"meta", "train", "samples_probe", "bf16_vs_fp32", "peak_memory", "recorded"}
    recorded = json.loads((tmp_path / "m.json").read_text())["measurements"]
    assert [(e["probe"], e["arch"], e["metric"]) for e in recorded] == [
        ("samples", "dit", "identical_samples_frac"), ("dsm-spectrum", "dit", "dsm_loss_rel_diff_max")]
    assert recorded[0]["value"] == rep["bf16_vs_fp32"]["identical_samples_frac"]
    assert recorded[0]["device_name"] == rep["meta"]["device_name"] and recorded[0]["cuda"] is None
    finite = lambda v: isinstance(v, float) and math.isfinite(v) and v > 0
    for arch in ("dit", "gpt"):
        rows = rep["train"][arch]
        assert set(rows) == {"naive", "fp32", "bf16", "bf16_compile"}
        assert rows["bf16_compile"] == {"not_measured": "--no-compile"}
        for name in ("naive", "fp32", "bf16"):
            assert finite(rows[name]["ratio"]) and finite(rows[name]["steps_per_s"]), (arch, name)
            assert rows[name]["host_syncs_per_step"] == "not measured (CPU)"
        assert rows["naive"]["ratio"] == 1.0 and rows["bf16"]["compile_mode"] == "off"
    sp = rep["samples_probe"]
    assert sp["checkpoints"] == 10 and finite(sp["ratio"]) and finite(sp["bare_heun_s"])
    bf = rep["bf16_vs_fp32"]
    assert 0 <= bf["identical_samples_frac"] <= 1 and bf["noise_levels"] == 50
    assert math.isfinite(bf["dsm_loss_rel_diff_max"]) and bf["dsm_loss_rel_diff_max"] >= bf["dsm_loss_rel_diff_mean"]
    assert rep["peak_memory"]["process_max_rss_bytes"] > 10 ** 7
