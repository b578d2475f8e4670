"""EDM preconditioning, the noise schedule, the Heun sampler and the exact ideal denoisers."""
import itertools

import numpy as np
import pytest
import torch

from twoclocks.data import GroupParity
from twoclocks.data.bits import isin_rows
from twoclocks.ideal import (hypercube_denoiser, memorizing_denoiser, parity_denoiser,
                             parity_denoiser_closed_form)
from twoclocks.training.dit import DiT, DiTConfig
from twoclocks.training.edm import Preconditioned, heun_sample, karras_sigmas


def brute_parity_posterior(y, s, g):
    """E[x | y] by enumerating every even pattern of each group."""
    pats = np.array([p for p in itertools.product([-1, 1], repeat=g) if np.prod(p) == (-1) ** g], float)
    yy = y.reshape(len(y), -1, g)
    lw = np.einsum("bgk,pk->bgp", yy, pats) / s ** 2
    w = np.exp(lw - lw.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    return np.einsum("bgp,pk->bgk", w, pats).reshape(y.shape)


@pytest.mark.parametrize("g", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("s", [0.05, 0.3, 1.0, 3.0])
def test_parity_denoiser_equals_brute_force(g, s):
    rng = np.random.default_rng(g)
    x = rng.choice([-1.0, 1.0], size=(20, 2 * g))
    y = x + s * rng.standard_normal(x.shape)
    ref = brute_parity_posterior(y, s, g)
    got = parity_denoiser(g)(torch.tensor(y), s).numpy()
    assert np.abs(got - ref).max() < 1e-9
    if s >= 1.0:  # the SPEC closed form agrees where cancellation is harmless
        assert np.abs(parity_denoiser_closed_form(g)(torch.tensor(y), s).numpy() - ref).max() < 1e-7


def test_parity_denoiser_stable_at_invalid_vertex():
    y = torch.tensor([[1.0, 1.0, 1.0]])  # odd count of ones in a G=3 group; s tiny
    out = parity_denoiser(3)(y, 0.002)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.full_like(out, 1 / 3), atol=1e-6)  # a tie between three flips


def test_hypercube_denoiser_brute_force():
    y = torch.randn(5, 3, dtype=torch.float64)
    pats = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)), dtype=torch.float64)
    w = torch.softmax(y @ pats.T / 0.7 ** 2, dim=1)
    assert torch.allclose(hypercube_denoiser()(y, 0.7), w @ pats, atol=1e-12)


def test_memorizing_denoiser_chunking_exact():
    rng = np.random.default_rng(0)
    X = torch.tensor(rng.choice([-1.0, 1.0], size=(1003, 12)), dtype=torch.float32)
    y = X[:7] + 0.9 * torch.randn(7, 12)
    logits = -((y[:, None, :] - X[None]) ** 2).sum(-1) / (2 * 0.9 ** 2)
    ref = torch.softmax(logits.double(), 1).float() @ X
    assert torch.allclose(memorizing_denoiser(X, chunk=100)(y, 0.9), ref, atol=1e-5)
    sig = torch.full((7,), 0.9)
    assert torch.allclose(memorizing_denoiser(X, chunk=64)(y, sig), ref, atol=1e-5)


def test_preconditioning_returns_x_as_sigma_to_zero():
    torch.manual_seed(0)
    net = DiT(DiTConfig(height=2, width=3, depth=1, hidden=16, heads=2))
    for p in net.parameters():  # make F non-zero
        torch.nn.init.normal_(p, std=0.3)
    D = Preconditioned(net)
    x = torch.randn(4, 6)
    errs = [(D(x, s) - x).abs().max().item() for s in (1e-2, 1e-4, 1e-6)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 1e-5
    assert (D(x, 1.0) - x).abs().max() > 0.01


def test_schedule_matches_spec():
    t = karras_sigmas(35)
    assert len(t) == 36 and t[0] == pytest.approx(80) and t[34] == pytest.approx(0.002) and t[35] == 0
    assert torch.all(t[1:] < t[:-1])
    i = 17  # an interior point from the formula
    a, b = 80 ** (1 / 7), 0.002 ** (1 / 7)
    assert t[i].item() == pytest.approx((a + i / 34 * (b - a)) ** 7, rel=1e-12)


def test_heun_calls_and_sigmas():
    seen = []

    def D(x, s):
        seen.append(float(s))
        return torch.zeros_like(x)
    heun_sample(D, torch.randn(3, 4), n_steps=35)
    assert len(seen) == 2 * 35 - 1
    assert seen[0] == pytest.approx(80) and min(seen) == pytest.approx(0.002) and 0.0 not in seen


def test_heun_with_ideal_rule_lands_on_valid_vertices():
    rule = GroupParity(4, group=4)
    z = torch.randn(512, 16, generator=torch.Generator().manual_seed(0))
    x = heun_sample(parity_denoiser(4), z)
    assert (x.abs() - 1).abs().max() < 1e-3
    assert rule.is_valid((x > 0).numpy()).all()


def test_heun_with_memorizing_denoiser_lands_on_train():
    rule = GroupParity(4, group=2)
    train = rule.sample(40, np.random.default_rng(1))
    X = torch.tensor(2.0 * train - 1, dtype=torch.float32)
    x = heun_sample(memorizing_denoiser(X), torch.randn(256, 16, generator=torch.Generator().manual_seed(2)))
    assert (x.abs() - 1).abs().max() < 1e-3
    assert isin_rows((x > 0).numpy(), train).all()
