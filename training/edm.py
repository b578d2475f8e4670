"""EDM (Karras et al. 2022): preconditioning, training loss, noise schedule and Heun sampler.

Each function is one equation of docs/science.md#edm. Tensors in model space are flat: (batch, D * channels).
A *denoiser* is any callable ``D(x, sigma) -> x_hat`` with x (B, P) and sigma a float or (B,) tensor.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

__all__ = ["SIGMA_DATA", "Preconditioned", "edm_loss", "edm_draw", "edm_loss_at", "edm_weight",
           "karras_sigmas", "heun_sample", "Denoiser"]

SIGMA_DATA = 0.5
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _col(sigma, x: torch.Tensor) -> torch.Tensor:
    """sigma as a (B, 1) column on x's device/dtype (accepts float, 0-d or (B,) tensors)."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return s.reshape(-1, 1).expand(x.shape[0], 1) if s.numel() > 1 else s.reshape(1, 1)


class Preconditioned(nn.Module):
    """D(x; s) = c_skip x + c_out F(c_in x, c_noise) with
    c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2), c_noise = ln(s)/4.
    ``net(x_in, c_noise)`` takes (B, P) and (B,) and returns (B, P)."""

    def __init__(self, net: nn.Module, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.net = net
        self.sigma_data = float(sigma_data)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = _col(sigma, x).expand(x.shape[0], 1)
        sd = self.sigma_data
        c_skip = sd ** 2 / (s ** 2 + sd ** 2)
        c_out = s * sd / (s ** 2 + sd ** 2).sqrt()
        c_in = 1.0 / (s ** 2 + sd ** 2).sqrt()
        c_noise = s.log().flatten() / 4
        f = self.net((c_in * x).to(x.dtype), c_noise)
        return c_skip * x + c_out * f.to(x.dtype)


def edm_weight(sigma: torch.Tensor, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """lambda(s) = (s^2 + sd^2) / (s sd)^2."""
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


def edm_loss(denoiser: Denoiser, x: torch.Tensor, generator: torch.Generator | None = None,
             p_mean: float = -1.2, p_std: float = 1.2, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """Mean over the batch and pixels of lambda(s) ||D(x + s n; s) - x||^2, ln s ~ N(p_mean, p_std^2).

    The random draws come from ``generator`` in a fixed order (sigma first, then n), so a run that
    restores the generator's state continues exactly."""
    sigma, n = edm_draw(x, generator, p_mean, p_std)
    return edm_loss_at(denoiser, x, sigma, n, sigma_data)


def edm_draw(x: torch.Tensor, generator: torch.Generator | None = None, p_mean: float = -1.2,
             p_std: float = 1.2) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of :func:`edm_loss`: sigma (B,) with ln s ~ N(p_mean, p_std^2), then n like x."""
    log_s = torch.randn(x.shape[0], device=x.device, generator=generator) * p_std + p_mean
    return log_s.exp(), torch.randn(x.shape, device=x.device, generator=generator)


def edm_loss_at(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, n: torch.Tensor,
                sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """The deterministic part of :func:`edm_loss`, at given noise levels ``sigma`` and noises ``n``
    (the trainer compiles this and draws the randomness outside)."""
    d = denoiser(x + sigma[:, None] * n, sigma)
    return (edm_weight(sigma, sigma_data)[:, None] * (d.float() - x) ** 2).mean()


def karras_sigmas(n: int = 35, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                  dtype=torch.float64) -> torch.Tensor:
    """t_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho, i < n, then t_n = 0: (n+1,)."""
    if n < 2:
        raise ValueError(f"the sampler needs at least 2 steps, got {n}")
    i = torch.arange(n, dtype=dtype)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    t = (a + i / (n - 1) * (b - a)) ** rho
    return torch.cat([t, torch.zeros(1, dtype=dtype)])


@torch.no_grad()
def heun_sample(denoiser: Denoiser, z: torch.Tensor, n_steps: int = 35, sigma_min: float = 0.002,
                sigma_max: float = 80.0, rho: float = 7.0, return_trajectory: bool = False):
    """Deterministic Heun sampler (EDM Alg. 2, S_churn = 0) from x_0 = z * t_0.

    Every step is Euler plus a second-order correction, except the last (to sigma = 0), which is plain
    Euler: 2n - 1 denoiser calls in all. ``z`` is standard normal noise (B, P); batched over B.
    """
    t = karras_sigmas(n_steps, sigma_min, sigma_max, rho).tolist()
    x = z.to(torch.float32) * t[0]
    traj = [x]
    for i in range(n_steps):
        t_cur, t_next = t[i], t[i + 1]
        d_cur = (x - denoiser(x, t_cur).float()) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        if t_next > 0:
            d_next = (x_next - denoiser(x_next, t_next).float()) / t_next
            x_next = x + (t_next - t_cur) * 0.5 * (d_cur + d_next)
        x = x_next
        if return_trajectory:
            traj.append(x)
    return (x, torch.stack(traj)) if return_trajectory else x


def sigma_grid(n: int = 50, lo: float = 0.002, hi: float = 80.0) -> torch.Tensor:
    """A fixed log-spaced grid of noise levels."""
    return torch.logspace(math.log10(lo), math.log10(hi), n, dtype=torch.float64)
