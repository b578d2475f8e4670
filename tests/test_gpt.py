"""GPT arm: causal mask, KV-cache sampling with fixed uniforms, references, exact resume."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from twoclocks import TwoclocksError
from twoclocks.training.gpt import (GPT, GPTConfig, MemorizeAR, gpt_inputs, inverse_cdf, next_logprobs,
                                    sample_fixed, sample_naive)

GPT_TINY = dict(arch="gpt", side=4, group=2, n_train=32, n_heldout=64, n_hypercube=64, n_noise=64,
                model="tiny", batch=64, lr=1e-3, steps=30, saves_per_decade=4, log_every=10, resume_every=10,
                device="cpu")


def _random_gpt(d=9, k=2, scale=None, seed=0):
    """A small GPT; ``scale``: N(0, scale) noise added to every weight so its next-token probabilities are
    far from 1/2."""
    torch.manual_seed(seed)
    m = GPT(GPTConfig(n_positions=d, vocab=k + 1, depth=2, hidden=32, heads=2)).eval()
    if scale:
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * scale)
    return m


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    from twoclocks.training.train import train
    path = tmp_path_factory.mktemp("gpt") / "run"
    train(path, GPT_TINY, progress=False)
    return path


def test_causal_mask():
    """Changing tokens after position i never changes the output at positions <= i (and changing the
    token at i does change it, so the check can fail)."""
    m = _random_gpt(scale=0.3)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 3, (16, 9), generator=g)
    with torch.no_grad():
        ref = m(x)
        for i in range(9):
            y = x.clone()
            y[:, i + 1:] = torch.randint(0, 3, y[:, i + 1:].shape, generator=g)
            torch.testing.assert_close(m(y)[:, :i + 1], ref[:, :i + 1], rtol=0, atol=1e-5)
            z = x.clone()
            z[:, i] = (z[:, i] + 1) % 3
            assert (m(z)[:, i] - ref[:, i]).abs().max() > 1e-3


def test_kv_cache_equals_full_recompute():
    m = _random_gpt(scale=0.3)
    u = torch.rand(512, 9, generator=torch.Generator().manual_seed(2))
    fast, slow = sample_fixed(m, u), sample_naive(m, u)
    assert torch.equal(fast, slow)
    assert torch.equal(sample_fixed(m, u), fast)  # deterministic
    # the cached logits are the full forward's logits on the sampled sequences
    cache, tok, logits = m.new_cache(512), torch.full((512, 1), 2), []
    with torch.no_grad():
        for t in range(9):
            logits.append(m(tok, cache, t)[:, 0])
            tok = fast[:, t:t + 1]
        torch.testing.assert_close(torch.stack(logits, 1), m(gpt_inputs(fast, 2)), rtol=1e-5, atol=1e-5)


def test_inverse_cdf_convention_and_frequencies():
    # bits: 1 iff u < p(1)
    logits = torch.log(torch.tensor([[0.7, 0.3]])).expand(4, 2)
    assert inverse_cdf(logits, torch.tensor([0.0, 0.29, 0.31, 0.99])).tolist() == [1, 1, 0, 0]
    # K = 3: frequencies of the symbols follow the probabilities (multinomial, 5 sigma)
    p = torch.tensor([0.2, 0.5, 0.3])
    n = 200_000
    s = inverse_cdf(torch.log(p).expand(n, 3), torch.rand(n, generator=torch.Generator().manual_seed(3)))
    freq = torch.bincount(s, minlength=3).double() / n
    assert ((freq - p).abs() < 5 * torch.sqrt(p * (1 - p) / n)).all()


class KnownAR(nn.Module):
    """A model with known outputs: p(c_t = 1 | prefix) = P[t, c_{t-1}] (P[0, 0] at t = 0)."""

    def __init__(self, P):
        super().__init__()
        self.K, self.P = 2, torch.as_tensor(P, dtype=torch.float64)

    def forward(self, tokens):
        t = torch.arange(tokens.shape[1])
        prev = torch.where(t == 0, 0, tokens.clamp(max=1))
        p1 = self.P[t, prev]
        return torch.log(torch.stack([1 - p1, p1], -1)).float()


def test_fixed_uniform_sampling_follows_known_model():
    P = np.array([[0.1, 0.1], [0.8, 0.3], [0.5, 0.95], [0.05, 0.6], [0.7, 0.2]])
    model, n = KnownAR(P), 40_000
    u = torch.rand(n, 5, generator=torch.Generator().manual_seed(4))
    s = sample_fixed(model, u).numpy()
    assert np.array_equal(s, sample_fixed(model, u).numpy())  # deterministic
    for t in range(5):
        for prev in ((0,) if t == 0 else (0, 1)):
            rows = np.ones(n, bool) if t == 0 else s[:, t - 1] == prev
            p, m = P[t, prev], rows.sum()
            assert abs(s[rows, t].mean() - p) < 5 * np.sqrt(p * (1 - p) / m), (t, prev)


def test_gpt_samples_follow_its_probabilities():
    """Over the fixed bank, bit t is 1 with the model's p(1 | sampled prefix): a z-test per position."""
    m = _random_gpt(scale=0.3)
    u = torch.rand(4096, 9, generator=torch.Generator().manual_seed(5))
    s = sample_fixed(m, u)
    p1 = next_logprobs(m, s).exp()[..., 1].numpy()
    assert (np.abs(p1 - 0.5) > 0.2).mean() > 0.2  # the model is far from fair coins
    z = (s.numpy() - p1).sum(0) / np.sqrt((p1 * (1 - p1)).sum(0))
    assert np.all(np.abs(z) < 5), z
    # and the opposite convention (1 iff u >= p(0)) would be caught: it differs on many samples
    flipped = (u.numpy() >= 1 - p1).astype(int)
    assert (flipped != s.numpy()).mean() > 0.05


def test_memorize_reference_counts():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 3, (50, 4))
    model = MemorizeAR(train, 3)
    q = np.concatenate([train[:10], rng.integers(0, 3, (10, 4))])
    lp = next_logprobs(model, q).numpy()
    for i in range(q.shape[0]):
        for t in range(4):
            match = (train[:, :t] == q[i, :t]).all(1)
            if match.any():
                want = np.bincount(train[match, t], minlength=3) / match.sum()
                np.testing.assert_allclose(np.exp(lp[i, t]), want, atol=1e-6)
            else:
                np.testing.assert_allclose(np.exp(lp[i, t]), 1 / 3, atol=1e-6)


def test_gpt_run_generate(gpt_run):
    from twoclocks.data.bits import isin_rows
    from twoclocks.run import open_run
    run = open_run(gpt_run)
    assert "uniforms" in run.data and "noise" not in run.data
    meta = json.loads((gpt_run / "config.json").read_text())
    assert meta["config"]["weight_decay"] == 0.1 and meta["status"]["weight_decay"] == "assumed"
    last = run.steps[-1]
    x = run.generate(last)
    assert x.shape == (64, 16) and set(np.unique(x)) <= {-1.0, 1.0}
    assert np.array_equal(run.generate(last, seeds=[3, 7]), x[[3, 7]])
    assert np.array_equal(run.generate(last), x)
    cells = run.encoding.decode(run.generate("ideal-rule"))
    assert run.rule.is_valid(cells).all()
    assert isin_rows(run.encoding.decode(run.generate("memorize")), run.cells("train")).all()
    # the denoiser-based probes refuse a GPT run with a one-line error
    with pytest.raises(TwoclocksError, match="dit"):
        run.denoiser(last)


@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_gpt_resume_is_exact(gpt_run, tmp_path, how):
    """Killed (no save: resume from the last periodic resume.pt) or interrupted (saved at the
    interrupt), then resumed: the same weights, bit for bit, as the uninterrupted ``gpt_run``."""
    from twoclocks.run import load_checkpoint
    from twoclocks.training.train import train
    cfg = GPT_TINY

    def stop(step, loss):
        if step == 23:
            raise RuntimeError("killed") if how == "kill" else KeyboardInterrupt

    with pytest.raises((RuntimeError, KeyboardInterrupt)):
        train(tmp_path / "cut", cfg, progress=False, callback=stop)
    assert load_checkpoint(tmp_path / "cut/checkpoints/resume.pt")["step"] == (20 if how == "kill" else 23)
    train(tmp_path / "cut", {"steps": 30}, resume=True, progress=False)
    for name in ("step_00000030.pt", "resume.pt"):
        a = load_checkpoint(gpt_run / "checkpoints" / name)
        b = load_checkpoint(tmp_path / "cut/checkpoints" / name)
        for k in a["model"]:
            assert torch.equal(a["model"][k], b["model"][k]), (name, k)
    a = load_checkpoint(gpt_run / "checkpoints/resume.pt")["optimizer"]["state"]
    b = load_checkpoint(tmp_path / "cut/checkpoints/resume.pt")["optimizer"]["state"]
    assert all(torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)
