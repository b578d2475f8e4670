"""Checkpoints from other code: the package's own tiny checkpoints re-parameterized in every foreign
convention (EDM D and F, eps / v / x0 under VP schedules, autoregressive logits with a token map) give
the native cubes; trust, loaders, mismatches and bad conventions are one-line errors; export and
data-only runs."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from twoclocks import TwoclocksError
from twoclocks.cli import app
from twoclocks.interop.conventions import VPSchedule, ddpm_alpha_bar
from twoclocks.interop.export import create_data_run, export_run, set_foreign
from twoclocks.probes.dsm import run_dsm_spectrum
from twoclocks.probes.samples import run_samples
from twoclocks.run import checkpoint_steps, load_checkpoint, open_run, verify_run

#: the user's model code: the package's own network, re-parameterized in a foreign convention
FACTORY = '''
import math
import torch
from torch import nn
from twoclocks.interop.conventions import VPSchedule
from twoclocks.run import read_config
from twoclocks.data import make_encoding, make_rule
from twoclocks.training.models import build_model


class Wrapped(nn.Module):
    """kind: edm-D, edm-F, eps, v, x0; data scale x' = a x + b; image: (B, C, H, W) in and out."""

    def __init__(self, inner, kind, a, b, schedule, shape, image):
        super().__init__()
        self.inner, self.kind, self.a, self.b, self.shape, self.image = inner, kind, a, b, shape, image
        self.schedule = VPSchedule.from_dict(schedule) if schedule else None

    def D(self, xf, sf):  # the native denoiser on the foreign scale
        return self.a * self.inner((xf - self.b) / self.a, sf / self.a) + self.b

    def forward(self, x, c):
        if self.image:
            n, ch, h, w = x.shape
            x = x.permute(0, 2, 3, 1).reshape(n, -1)
        c = c.double().reshape(-1).expand(x.shape[0])
        if self.kind == "edm-D":
            out = self.D(x, c.float())
        elif self.kind == "edm-F":
            s, sd = torch.exp(4 * c)[:, None], 0.5
            xf = x * (s ** 2 + sd ** 2).sqrt()
            c_skip, c_out = sd ** 2 / (s ** 2 + sd ** 2), s * sd / (s ** 2 + sd ** 2).sqrt()
            out = (self.D(xf.float(), s[:, 0].float()) - c_skip * xf) / c_out
        else:
            s = self.schedule.sigma(c)[:, None]
            abar = 1 / (1 + s ** 2)
            xf = x * (1 + s ** 2).sqrt()
            d = self.D(xf.float(), s[:, 0].float()).double()
            eps = (xf - d) / s
            out = {"eps": eps, "x0": d, "v": abar.sqrt() * eps - (1 - abar).sqrt() * d}[self.kind]
        out = out.float()
        if self.image:
            out = out.reshape(n, h, w, ch).permute(0, 3, 1, 2)
        return (out,)  # a tuple, as many codebases return


class TokenPermuted(nn.Module):
    """The native GPT behind another vocabulary: toolkit symbol k is foreign id ids[k], start is bos."""

    def __init__(self, inner, ids, bos, vocab):
        super().__init__()
        self.inner, self.ids, self.bos, self.vocab = inner, list(ids), bos, vocab

    def forward(self, idx):
        back = torch.full((self.vocab,), -1, dtype=torch.long)
        for k, i in enumerate(self.ids):
            back[i] = k
        back[self.bos] = self.inner.K
        logits = self.inner(back[idx])
        out = torch.full(idx.shape + (self.vocab,), 7.0)  # junk on the ids the toolkit never reads
        out[..., self.ids] = logits
        return out


def _native(run_dir):
    cfg, _ = read_config(run_dir)
    rule = make_rule(cfg.rule_spec())
    return build_model(cfg, rule, make_encoding(cfg.encoding, rule.n_symbols, **cfg.encoding_params)), rule


def make(run_dir, kind, a=1.0, b=0.0, schedule=None, image=False):
    inner, rule = _native(run_dir)
    return Wrapped(inner, kind, a, b, schedule, (rule.height, rule.width), image)


def make_gpt(run_dir, ids, bos, vocab):
    inner, _ = _native(run_dir)
    return TokenPermuted(inner, ids, bos, vocab)
'''

DDPM = {"type": "ddpm", "num_train_timesteps": 1000, "beta_start": 1e-6, "beta_end": 0.02,
        "beta_schedule": "linear"}  # s_0 = 0.001 < sigma_min: every level the sampler uses is on the schedule
CONVENTIONS = {  # name: (factory kwargs, convention)
    "edm-D": ({"kind": "edm-D"}, {"type": "edm-D"}),
    "edm-F": ({"kind": "edm-F"}, {"type": "edm-F", "sigma_data": 0.5}),
    "eps": ({"kind": "eps", "schedule": DDPM, "image": True}, {"type": "eps", "schedule": DDPM, "layout": "image"}),
    "v": ({"kind": "v", "schedule": {"type": "cosine"}}, {"type": "v", "schedule": {"type": "cosine"}}),
    "x0": ({"kind": "x0", "a": 0.5, "b": 0.5, "schedule": {"type": "vp-linear"}},
           {"type": "x0", "schedule": {"type": "vp-linear"}, "data_scale": [0.5, 0.5]}),
}
TOL = {"edm-D": 1e-7, "edm-F": 1e-5, "eps": 1e-5, "v": 1e-5, "x0": 1e-5}
STEPS = "60"


def assert_same_cube(a, b, what, atol=1e-4):
    """Every numeric variable of two cubes equal to ``atol`` (NaN where the other is NaN)."""
    assert set(a.data_vars) == set(b.data_vars) and len(a.data_vars) > 5, what
    for v in b.data_vars:
        if np.issubdtype(b[v].dtype, np.number) or b[v].dtype == bool:
            np.testing.assert_allclose(a[v].values.astype(float), b[v].values.astype(float), atol=atol, rtol=0,
                                       err_msg=f"{what}: {v}")
        else:
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=f"{what}: {v}")


@pytest.fixture(scope="module")
def factory_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("usercode") / "my_models.py"
    path.write_text(FACTORY)
    return path


def foreign_copy(native_dir, dest, foreign: dict, prefix: str = "inner.", name="net_{step}.pt", steps=None):
    """A data-only copy of a native run (config, data) with its checkpoints saved as plain state_dicts
    of the user's wrapper (keys under ``prefix``)."""
    dest.mkdir(parents=True)
    shutil.copy(native_dir / "config.json", dest / "config.json")
    shutil.copytree(native_dir / "data.zarr", dest / "data.zarr")
    (dest / "checkpoints").mkdir()
    for s in steps if steps is not None else checkpoint_steps(native_dir):
        sd = load_checkpoint(native_dir / "checkpoints" / f"step_{s:08d}.pt")["model"]
        torch.save({prefix + k: v for k, v in sd.items()}, dest / "checkpoints" / name.format(step=s))
    set_foreign(dest, foreign)
    return dest


def diffusion_foreign(factory_file, run_dir, name):
    kw, conv = CONVENTIONS[name]
    return {"factory": f"{factory_file}:make", "factory_kwargs": {"run_dir": str(run_dir), **kw},
            "checkpoints": {"pattern": "net_*.pt", "step_regex": r"net_(\d+)\.pt"}, "convention": conv}


@pytest.fixture(scope="module")
def native_samples(tiny_run, tmp_path_factory):
    path = tmp_path_factory.mktemp("native") / "run"
    shutil.copytree(tiny_run, path)
    run_samples(path, steps=STEPS, progress=False)
    run_dsm_spectrum(path, steps=STEPS, progress=False, n_sigma=4, n_subset=32)
    NATIVE_BANK[str(path)] = open_run(path).generate(60)
    return path


NATIVE_BANK = {}


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_every_diffusion_convention_gives_the_native_cubes(name, native_samples, factory_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TWOCLOCKS_TRUST_CODE", "1")
    dest = foreign_copy(native_samples, tmp_path / name, diffusion_foreign(factory_file, native_samples, name))
    run, nat = open_run(dest), open_run(native_samples)
    assert run.steps == nat.steps and run.foreign.convention["type"] == name
    x = torch.as_tensor(nat.x("train")[:16]) + 0.3 * torch.randn(16, nat.x("train").shape[1])
    worst = 0.0  # max |D_foreign - D_native| / (1 + sigma): float32 rounding grows with |x| ~ sigma
    for sigma in (0.002, 0.05, 0.7, 5.0, 80.0):
        d_nat, d_for = nat.denoiser(60)(x, sigma), run.denoiser(60)(x, sigma)
        worst = max(worst, float((d_nat - d_for).abs().max()) / (1 + sigma))
    assert worst < TOL[name], (name, worst)
    a, b = run_samples(dest, steps=STEPS, progress=False), xr.open_zarr(nat.probe_path("samples")).load()
    assert_same_cube(a, b, name)
    assert json.loads(a.attrs["foreign_model"])["convention"]["type"] == name
    g_nat, g_for = NATIVE_BANK[str(native_samples)], run.generate(60)
    gen_diff = float(np.abs(g_nat - g_for).max())
    assert gen_diff < 1e-3, (name, gen_diff)
    c = run_dsm_spectrum(dest, steps=STEPS, progress=False, n_sigma=4, n_subset=32)
    ref = xr.open_zarr(nat.probe_path("dsm_spectrum")).load()
    np.testing.assert_allclose(c["loss"].values, ref["loss"].values, rtol=1e-4, atol=1e-7)
    print(f"max |D_foreign - D_native| / (1 + sigma) {name}: {worst:.2g}; samples {gen_diff:.2g}")


def test_vp_schedule_time_inverts_sigma():
    for d in (DDPM, {**DDPM, "beta_start": 1e-4}, {"type": "ddpm", "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
              {"type": "ddpm", "beta_schedule": "squaredcos_cap_v2"}, {"type": "cosine"},
              {"type": "vp-linear", "t_scale": 1000}):
        sch = VPSchedule.from_dict(d)
        t = sch.time(torch.tensor([0.05, 0.3, 1.0, 7.0], dtype=torch.float64))
        np.testing.assert_allclose(sch.sigma(t).numpy(), [0.05, 0.3, 1.0, 7.0], rtol=1e-9)
    abar = ddpm_alpha_bar(1000, 1e-6, 0.02, "linear")
    sch = VPSchedule.from_dict(DDPM)
    sig = np.sqrt((1 - abar[[0, 17, 999]]) / abar[[0, 17, 999]])  # integer timesteps land on themselves
    np.testing.assert_allclose(sch.time(torch.as_tensor(sig)).numpy(), [0, 17, 999], atol=1e-9)
    near = VPSchedule.from_dict({**DDPM, "timestep": "nearest"})
    assert near.time(torch.as_tensor(sig * 1.01)).tolist() == [0, 17, 999]


def test_declared_eps_for_an_x0_network_is_refused(native_samples, factory_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TWOCLOCKS_TRUST_CODE", "1")
    f = diffusion_foreign(factory_file, native_samples, "x0")
    f["convention"] = {**f["convention"], "type": "eps"}  # the network predicts x0
    dest = foreign_copy(native_samples, tmp_path / "wrong", f)
    with pytest.raises(TwoclocksError, match="does not denoise under the declared convention 'eps'"):
        run_samples(dest, steps=STEPS, progress=False)
    assert not (dest / "probes" / "samples.zarr").exists()
    f2 = diffusion_foreign(factory_file, native_samples, "eps")
    f2["convention"] = {**f2["convention"], "type": "x0"}  # the network predicts eps
    dest2 = foreign_copy(native_samples, tmp_path / "wrong2", f2)
    with pytest.raises(TwoclocksError, match="declared convention 'x0'"):
        open_run(dest2).denoiser(60)


def test_untrusted_factory_is_never_imported(native_samples, tmp_path, monkeypatch):
    monkeypatch.setenv("TWOCLOCKS_TRUST_CODE", "")  # restored after the test: the CLI sets these in-process
    monkeypatch.setenv("TWOCLOCKS_MODEL_FACTORY", "")
    marker = tmp_path / "ran"
    f = {"factory": "os:system", "factory_kwargs": {"command": f"touch {marker}"},
         "checkpoints": {"pattern": "net_*.pt", "step_regex": r"net_(\d+)\.pt"}, "convention": {"type": "edm-D"}}
    dest = foreign_copy(native_samples, tmp_path / "evil", f)
    evil = tmp_path / "evil" / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\ndef make(**kw):\n    return None\n")
    res = CliRunner().invoke(app, ["samples", str(dest), "--steps", "0", "--quiet"])
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output
    assert "would import module os and call system()" in res.output and "--model-factory" in res.output
    set_foreign(dest, {**f, "factory": "evil.py:make"})
    res = CliRunner().invoke(app, ["samples", str(dest), "--steps", "0", "--quiet"])
    assert res.exit_code == 2 and "would execute the file" in res.output, res.output
    for cmd in (["info", str(dest)], ["info", str(dest), "--verify"]):
        assert CliRunner().invoke(app, cmd).exit_code == 0
    assert not marker.exists() and not (dest / "probes" / "samples.zarr").exists()


def test_model_factory_option_and_key_loader(native_samples, factory_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TWOCLOCKS_TRUST_CODE", "")  # restored after the test: the CLI sets these in-process
    monkeypatch.setenv("TWOCLOCKS_MODEL_FACTORY", "")
    f = diffusion_foreign(factory_file, native_samples, "edm-D")
    f["loader"] = {"format": "key", "key": "ema"}
    dest = foreign_copy(native_samples, tmp_path / "k", f, steps=[0, 60])
    for p in (dest / "checkpoints").iterdir():
        torch.save({"ema": torch.load(p, weights_only=True), "step": 1}, p)
    res = CliRunner().invoke(app, ["--model-factory", f"{factory_file}:make", "samples", str(dest), "--quiet"])
    assert res.exit_code == 0, res.output
    ds = xr.open_zarr(dest / "probes" / "samples.zarr")
    assert ds["step"].values.tolist() == [0, 60]
    assert "foreign_model" in ds.attrs


def test_mismatched_checkpoint_names_keys(native_samples, factory_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TWOCLOCKS_TRUST_CODE", "1")
    dest = foreign_copy(native_samples, tmp_path / "m", diffusion_foreign(factory_file, native_samples, "edm-D"),
                        prefix="module.", steps=[60])
    res = CliRunner().invoke(app, ["samples", str(dest), "--quiet"])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert "missing keys inner." in res.output and "unexpected keys module." in res.output
    sd = torch.load(dest / "checkpoints" / "net_60.pt", weights_only=True)
    sd = {k.replace("module.", "inner."): v for k, v in sd.items()}
    k0 = next(k for k, v in sd.items() if v.dim() == 2)
    sd[k0] = torch.zeros(3, 3)
    torch.save(sd, dest / "checkpoints" / "net_60.pt")
    res = CliRunner().invoke(app, ["samples", str(dest), "--quiet"])
    assert res.exit_code == 2 and f"{k0} has shape (3, 3) in the checkpoint" in res.output, res.output
    (dest / "checkpoints" / "net_60.pt").write_bytes(b"not a checkpoint")
    res = CliRunner().invoke(app, ["samples", str(dest), "--quiet"])
    assert res.exit_code == 2 and "cannot be read weights-only" in res.output
    assert not (dest / "probes" / "samples.zarr").exists()
    assert verify_run(dest)["damaged"][0][0].name == "net_60.pt"


def test_gpt_logits_with_token_map_give_the_native_cubes(tmp_path_factory, tmp_path, factory_file, monkeypatch):
    from twoclocks.probes.ce import ce_probe as run_ce
    from twoclocks.training.train import train
    monkeypatch.setenv("TWOCLOCKS_TRUST_CODE", "1")
    nat_dir = tmp_path_factory.mktemp("gpt") / "run"
    train(nat_dir, dict(arch="gpt", side=4, group=2, n_train=32, n_heldout=64, n_hypercube=64, n_noise=64,
                        model="tiny", batch=64, lr=1e-3, steps=30, saves_per_decade=2, device="cpu"), progress=False)
    a = run_samples(nat_dir, progress=False)
    ce_a = run_ce(nat_dir, progress=False)
    f = {"factory": f"{factory_file}:make_gpt", "factory_kwargs": {"run_dir": str(nat_dir), "ids": [4, 1],
         "bos": 6, "vocab": 9}, "checkpoints": {"pattern": "*.pt", "step_regex": r"(\d+)\.pt$"},
         "convention": {"type": "logits", "token_map": [4, 1], "bos": 6}}
    dest = foreign_copy(nat_dir, tmp_path / "g", f, name="gpt_{step}.pt")
    b = run_samples(dest, progress=False)
    ce_b = run_ce(dest, progress=False)
    assert_same_cube(a, b, "gpt samples", atol=0)
    assert_same_cube(ce_a, ce_b, "gpt ce", atol=1e-5)
    assert float(np.abs(open_run(nat_dir).generate(30) - open_run(dest).generate(30)).max()) == 0


def test_export_and_data_run(tiny_run, tmp_path):
    files = export_run(tiny_run, tmp_path / "out")
    assert [p.name for p in files] == ["data.npz", "encoding.json", "montage.png"]
    z = np.load(files[0])
    run = open_run(tiny_run)
    for s in ("train", "heldout", "hypercube"):
        np.testing.assert_array_equal(z[f"{s}_cells"], run.cells(s))
        np.testing.assert_array_equal(z[f"{s}_x"], run.x(s))
        img = z[f"{s}_images"]
        assert img.shape == (len(run.cells(s)), 1, 4, 4)
        np.testing.assert_array_equal(img[:, 0, 1, 2], run.x(s)[:, 1 * 4 + 2])  # row 1, column 2
        assert (z[f"{s}_tokens"][:, 0] == 2).all() and (z[f"{s}_tokens"][:, 1:] == run.cells(s)).all()
    desc = json.loads(files[1].read_text())
    assert desc["shape"] == {"D": 16, "height": 4, "width": 4, "channels": 1, "P": 16}
    assert desc["codes"] == [[-1.0], [1.0]] and desc["data_sha256"] == run.meta["data_sha256"]
    assert files[2].read_bytes()[:4] == b"\x89PNG"
    res = CliRunner().invoke(app, ["data", str(tmp_path / "d"), "--side", "4", "--group", "2", "--n-train", "16",
                                   "--n-heldout", "8", "--n-hypercube", "8", "--n-noise", "8"])
    assert res.exit_code == 0, res.output
    d = open_run(tmp_path / "d")
    assert d.steps == [] and d.cells("train").shape == (16, 16) and d.foreign is None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"factory": "x.py:make", "convention": {"type": "eps"}}))
    before = (tmp_path / "d" / "config.json").read_text()
    res = CliRunner().invoke(app, ["data", str(tmp_path / "d"), "--foreign", str(bad)])
    assert res.exit_code == 2 and "needs a 'schedule'" in res.output and res.output.count("\n") == 1
    assert (tmp_path / "d" / "config.json").read_text() == before
    res = CliRunner().invoke(app, ["data", str(tmp_path / "e"), "--arch", "gpt", "--foreign", str(bad)])
    assert res.exit_code == 2 and not (tmp_path / "e").exists()
    good = tmp_path / "good.toml"
    good.write_text('[foreign]\nfactory = "x.py:make"\n[foreign.convention]\ntype = "edm-D"\n')
    res = CliRunner().invoke(app, ["data", str(tmp_path / "d"), "--foreign", str(good)])
    assert res.exit_code == 0, res.output
    assert open_run(tmp_path / "d").foreign.factory == "x.py:make"
    res = CliRunner().invoke(app, ["train", str(tmp_path / "d"), "--resume"])
    assert res.exit_code == 2 and "does not train it" in res.output
    res = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), str(tmp_path / "o2")])
    assert res.exit_code == 2 and not (tmp_path / "o2").exists()
