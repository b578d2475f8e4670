"""Checkpoints trained by other frameworks on exported data (CPU, seconds, built from configs, nothing
downloaded): a diffusers UNet2DModel with DDPMScheduler conventions, a transformers GPT2LMHeadModel
(state_dict and safetensors), a nanoGPT-style ckpt.pt; and a sweep of foreign runs through probe-all,
collect and plot."""
import json
import shutil

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from twoclocks.cli import app
from twoclocks.interop.export import create_data_run, export_run, set_foreign
from twoclocks.run import checkpoint_steps, load_checkpoint, open_run, verify_run

DATA = dict(side=4, group=2, n_train=32, n_heldout=32, n_hypercube=32, n_noise=32)

UNET = '''
from diffusers import UNet2DModel
def make():
    return UNet2DModel(sample_size=4, in_channels=1, out_channels=1, block_out_channels=(16, 32),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=8)
'''
GPT2 = '''
from transformers import GPT2Config, GPT2LMHeadModel
def make(vocab=3, n_positions=17):
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=n_positions, n_embd=32, n_layer=1, n_head=2,
                                      bos_token_id=vocab - 1, eos_token_id=vocab - 1))
'''
NANOGPT = '''
import torch
from torch import nn
from torch.nn import functional as F
from twoclocks.training.gpt import GPT as _GPT, GPTConfig


class GPT(nn.Module):
    """nanoGPT's interface: forward(idx, targets=None) -> (logits, loss), the last position's logits only
    without targets."""

    def __init__(self, cfg):
        super().__init__()
        self.transformer = _GPT(cfg)

    def forward(self, idx, targets=None):
        logits = self.transformer(idx)
        if targets is None:
            return logits[:, [-1], :], None
        return logits, F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)


def make(**model_args):
    return GPT(GPTConfig(**model_args))
'''


def data_run(path, arch):
    res = CliRunner().invoke(app, ["data", str(path), "--arch", arch] +
                             [f"--{k.replace('_', '-')}={v}" for k, v in DATA.items()])
    assert res.exit_code == 0, res.output
    return path


def test_diffusers_unet_ddpm(tmp_path, monkeypatch):
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed: pip install 'twoclocks[interop]'")
    monkeypatch.setenv("TWOCLOCKS_TRUST_CODE", "")
    monkeypatch.setenv("TWOCLOCKS_MODEL_FACTORY", "")
    run_dir = data_run(tmp_path / "unet", "dit")
    export_run(run_dir, tmp_path / "export")
    (tmp_path / "unet.py").write_text(UNET)
    z = np.load(tmp_path / "export" / "data.npz")
    x0 = torch.tensor((z["train_images"] + 1) / 2)  # [0, 1] images
    torch.manual_seed(0)
    import importlib.util
    spec = importlib.util.spec_from_file_location("unet_user", tmp_path / "unet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    unet = mod.make()
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    opt = torch.optim.AdamW(unet.parameters(), 3e-3)
    for step in range(61):
        if step in (0, 30, 60):
            torch.save(unet.state_dict(), run_dir / "checkpoints" / f"unet_{step:06d}.pt")
        x = x0[torch.randint(len(x0), (32,))]
        t = torch.randint(0, 1000, (32,))
        n = torch.randn_like(x)
        loss = ((unet(sched.add_noise(x, n, t), t).sample - n) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    foreign = {"factory": "unet.py:make", "checkpoints": {"pattern": "unet_*.pt", "step_regex": r"unet_(\d+)\.pt"},
               "convention": {"type": "eps", "layout": "image", "data_scale": [0.5, 0.5],
                              "schedule": {"type": "ddpm", "num_train_timesteps": 1000, "beta_start": 0.0001,
                                           "beta_end": 0.02, "beta_schedule": "linear"}}}
    (tmp_path / "foreign.json").write_text(json.dumps(foreign))
    assert CliRunner().invoke(app, ["data", str(run_dir), "--foreign", str(tmp_path / "foreign.json")]).exit_code == 0
    shutil.copy(tmp_path / "unet.py", run_dir / "unet.py")
    res = CliRunner().invoke(app, ["samples", str(run_dir), "--quiet"])
    assert res.exit_code == 2 and "would execute the file" in res.output
    res = CliRunner().invoke(app, ["--trust-code", "samples", str(run_dir), "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["--trust-code", "dsm-spectrum", str(run_dir), "--quiet", "--n-sigma", "4",
                                   "--n-subset", "16"])
    assert res.exit_code == 0, res.output
    s = xr.open_zarr(run_dir / "probes" / "samples.zarr")
    d = xr.open_zarr(run_dir / "probes" / "dsm_spectrum.zarr")
    assert s["step"].values.tolist() == d["step"].values.tolist() == [0, 30, 60]
    loss = d["loss"].sel(split="train").values
    assert np.isfinite(loss).all() and loss[-1].mean() < loss[0].mean()  # the trained UNet denoises better
    assert json.loads(s.attrs["foreign_model"])["convention"]["type"] == "eps"
    # the same weights as safetensors
    from safetensors.torch import save_file
    for p in list((run_dir / "checkpoints").glob("unet_*.pt")):
        save_file(torch.load(p, weights_only=True), p.with_suffix(".safetensors"))
        p.unlink()
    set_foreign(run_dir, {**foreign, "loader": "safetensors", "checkpoints": {}})
    assert checkpoint_steps(run_dir) == [0, 30, 60]
    res = CliRunner().invoke(app, ["--trust-code", "dsm-spectrum", str(run_dir), "--quiet", "--n-sigma", "4",
                                   "--n-subset", "16", "--force"])
    assert res.exit_code == 0, res.output
    np.testing.assert_allclose(xr.open_zarr(run_dir / "probes" / "dsm_spectrum.zarr")["loss"].values, d["loss"].values,
                               rtol=1e-6)
    assert not verify_run(run_dir)["damaged"]


def test_transformers_gpt2(tmp_path, monkeypatch):
    pytest.importorskip("transformers", reason="transformers is not installed: pip install 'twoclocks[interop]'")
    monkeypatch.setenv("TWOCLOCKS_TRUST_CODE", "")
    monkeypatch.setenv("TWOCLOCKS_MODEL_FACTORY", "")
    run_dir = data_run(tmp_path / "gpt2", "gpt")
    export_run(run_dir, tmp_path / "export")
    (tmp_path / "gpt2.py").write_text(GPT2)
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpt2_user", tmp_path / "gpt2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    model = mod.make()
    tokens = torch.tensor(np.load(tmp_path / "export" / "data.npz")["train_tokens"])
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    for step in range(41):
        if step in (0, 40):
            torch.save(model.state_dict(), run_dir / "checkpoints" / f"gpt2_{step}.pt")
        loss = model(tokens, labels=tokens).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    set_foreign(run_dir, {"factory": "gpt2.py:make", "checkpoints": {"pattern": "gpt2_*.pt"},
                          "convention": {"type": "logits", "bos": 2}})
    fac = f"{tmp_path / 'gpt2.py'}:make"
    for probe in ("samples", "ce"):
        res = CliRunner().invoke(app, ["--model-factory", fac, probe, str(run_dir), "--quiet"])
        assert res.exit_code == 0, res.output
    ce = xr.open_zarr(run_dir / "probes" / "ce.zarr")
    c = ce["ce"].sel(split="train").values.mean(-1)
    assert ce["step"].values.tolist() == [0, 40] and c[1] < c[0] - 0.05  # it learned something
    # the network's own cross-entropy on the same sequences equals the probe's (teacher forcing)
    run = open_run(run_dir, model_factory=fac)
    cells = run.cells("train")
    logits = run.model(40)(torch.tensor(np.concatenate([np.full((len(cells), 1), 2), cells[:, :-1]], 1)))
    own = torch.nn.functional.cross_entropy(logits.double().reshape(-1, 2), torch.tensor(cells).long().reshape(-1))
    np.testing.assert_allclose(float(own), float(ce["ce"].sel(split="train", step=40).mean()), rtol=1e-5)


def test_nanogpt_ckpt(tmp_path, gpt_native, monkeypatch):
    """nanoGPT's ckpt.pt (model_args, _orig_mod. prefixes, optimizer state, config) around the package's own
    GPT: the cubes equal the native ones, although nanoGPT returns the last position only without targets."""
    monkeypatch.setenv("TWOCLOCKS_MODEL_FACTORY", "")
    monkeypatch.setenv("TWOCLOCKS_TRUST_CODE", "1")
    dest = tmp_path / "nano"
    dest.mkdir()
    shutil.copy(gpt_native / "config.json", dest / "config.json")
    shutil.copytree(gpt_native / "data.zarr", dest / "data.zarr")
    (dest / "checkpoints").mkdir()
    (dest / "model_nano.py").write_text(NANOGPT)
    run = open_run(gpt_native)
    args = dict(n_positions=run.rule.D, vocab=3, depth=2, hidden=64, heads=2)
    for s in run.steps:
        sd = load_checkpoint(run.checkpoint_path(s))["model"]
        torch.save({"model": {f"_orig_mod.transformer.{k}": v for k, v in sd.items()}, "model_args": args,
                    "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}, "iter_num": s, "best_val_loss": 1.0,
                    "config": {"dataset": "twoclocks"}}, dest / "checkpoints" / f"ckpt_{s}.pt")
    set_foreign(dest, {"factory": "model_nano.py:make", "loader": "nanogpt",
                       "checkpoints": {"pattern": "ckpt_*.pt", "step_regex": r"ckpt_(\d+)\.pt"},
                       "convention": {"type": "logits", "bos": 2, "forward": "nanogpt"}})
    from twoclocks.probes.ce import ce_probe
    from twoclocks.probes.samples import run_samples
    a, b = run_samples(gpt_native, progress=False), run_samples(dest, progress=False)
    np.testing.assert_array_equal(a["sample_acc"].values, b["sample_acc"].values)
    np.testing.assert_allclose(ce_probe(gpt_native, progress=False)["ce"].values,
                               ce_probe(dest, progress=False)["ce"].values, atol=1e-5)


@pytest.fixture(scope="module")
def gpt_native(tmp_path_factory):
    from twoclocks.training.train import train
    path = tmp_path_factory.mktemp("gptn") / "run"
    train(path, dict(arch="gpt", model="tiny", batch=32, lr=1e-3, steps=20, saves_per_decade=2, device="cpu",
                     **DATA), progress=False)
    return path


def test_sweep_of_foreign_runs_probe_all_collect_plot(tiny_run, tmp_path, monkeypatch):
    """Two data-only runs (n_train 16, 32) filled with plain state_dicts: probe-all (local worker processes,
    trusted through the environment), collect and plot read them like native runs."""
    from twoclocks.sweep.spec import SweepSpec, expand
    from twoclocks.sweep.state import write_sweep
    monkeypatch.setenv("TWOCLOCKS_TRUST_CODE", "")
    monkeypatch.setenv("TWOCLOCKS_MODEL_FACTORY", "")
    (tmp_path / "edm.py").write_text(
        "from twoclocks.training.models import build_model\nfrom twoclocks.run import read_config\n"
        "from twoclocks.data import make_encoding, make_rule\n"
        "def make(run_dir):\n    cfg, _ = read_config(run_dir)\n    r = make_rule(cfg.rule_spec())\n"
        "    return build_model(cfg, r, make_encoding(cfg.encoding, r.n_symbols))\n")
    spec = SweepSpec(base={"side": 4, "group": 2, "n_heldout": 32, "n_hypercube": 32, "n_noise": 16, "model": "tiny"},
                     grid={"n_train": [16, 32]}, probes={"samples": {}})
    runs = expand(spec)
    sweep = tmp_path / "sweep"
    write_sweep(sweep, spec, runs)
    for r in runs:
        d = create_data_run(sweep / r["name"], r["overrides"])
        for s in checkpoint_steps(tiny_run):
            torch.save(load_checkpoint(tiny_run / "checkpoints" / f"step_{s:08d}.pt")["model"],
                       d / "checkpoints" / f"edm_{s}.pt")
        set_foreign(d, {"factory": "edm.py:make", "factory_kwargs": {"run_dir": str(d)},
                        "checkpoints": {"pattern": "edm_*.pt"}, "convention": {"type": "edm-D"}, "check": False})
    res = CliRunner().invoke(app, ["--model-factory", str(tmp_path / "edm.py") + ":make", "probe-all", str(sweep),
                                   "--quiet", "--option", "samples.steps=0,60"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(app, ["collect", str(sweep), "--n-boot", "0"])
    assert res.exit_code == 0, res.output
    ds = xr.open_zarr(sweep / "collect.zarr")
    assert ds.sizes["run"] == 2 and sorted(ds["final_step"].values.tolist()) == [60, 60]
    res = CliRunner().invoke(app, ["plot", str(sweep), "--out", str(tmp_path / "fig")])
    assert res.exit_code == 0, res.output
    assert any(p.suffix == ".png" for p in (tmp_path / "fig").iterdir())
    res = CliRunner().invoke(app, ["info", str(sweep / runs[0]["name"]), "--verify"])
    assert res.exit_code == 0 and "verified" in res.output, res.output
