"""Build the network an arch names, its training data, and sampling from the fixed-randomness banks.

This is the one place that knows the difference between the architectures:
- ``dit``: x in model space, the EDM-preconditioned DiT, EDM loss, Heun sampling from the noise bank;
- ``gpt``: cells as tokens with a start token, causal transformer, next-token cross-entropy, sampling
  driven by the bank of fixed uniforms (see ``twoclocks.training.gpt``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from twoclocks import TwoclocksError
from twoclocks.training.config import TrainConfig
from twoclocks.training.dit import DiT, DiTConfig
from twoclocks.training.edm import Preconditioned, heun_sample
from twoclocks.training.gpt import GPT, GPTConfig, sample_fixed

__all__ = ["build_model", "training_data", "sample_dit", "sample_gpt"]


def build_model(cfg: TrainConfig, rule, encoding) -> nn.Module:
    torch.manual_seed(cfg.seed)  # initialisation depends on the seed only
    if cfg.arch == "dit":
        net = DiT(DiTConfig(height=rule.height, width=rule.width, in_channels=encoding.channels,
                            depth=cfg.depth, hidden=cfg.hidden, heads=cfg.heads))
        return Preconditioned(net, cfg.sigma_data)
    if cfg.arch == "gpt":
        return GPT(GPTConfig(n_positions=rule.D, vocab=rule.n_symbols + 1, depth=cfg.depth,
                             hidden=cfg.hidden, heads=cfg.heads))
    raise TwoclocksError(f"unknown architecture {cfg.arch!r}")


def training_data(cfg: TrainConfig, cells: np.ndarray, encoding, device) -> torch.Tensor:
    """The whole train set on the device: model-space floats (dit) or token ids (gpt)."""
    if cfg.arch == "dit":
        return torch.as_tensor(encoding.encode(cells), device=device)
    return torch.as_tensor(cells.astype(np.int64), device=device)


def sample_dit(D, noise: torch.Tensor, cfg: TrainConfig, batch_size: int = 4096) -> np.ndarray:
    """Deterministic Heun sampling of the denoiser ``D(x, sigma)`` from the given standard-normal noises
    (n, P) with the config's sampler settings, in batches: model space (n, P) float32. A pure function of
    the network, the bank and the sampler settings (the run directory is :meth:`twoclocks.run.Run.generate`'s)."""
    out = [heun_sample(D, noise[k:k + batch_size], cfg.sampler_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
           .cpu().numpy() for k in range(0, len(noise), batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, noise.shape[1]), np.float32)


def sample_gpt(model, uniforms: torch.Tensor, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Autoregressive sampling of ``model`` driven by the fixed uniforms (n, D), in batches (KV cache):
    the cells (n, D) and whether each sequence stayed finite (a NaN / +inf logit makes it non-finite)."""
    cells, finite = [], []
    for k in range(0, len(uniforms), batch_size):
        c, ok = sample_fixed(model, uniforms[k:k + batch_size], return_finite=True)
        cells.append(c.cpu().numpy())
        finite.append(ok.cpu().numpy())
    return np.concatenate(cells), np.concatenate(finite)
