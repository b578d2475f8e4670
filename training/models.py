"""Build the network an arch names, its training loss, and the fixed-randomness sample bank.

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
from twoclocks.training.edm import Preconditioned, edm_loss, heun_sample

__all__ = ["build_model", "training_data", "loss_fn", "generate"]


def build_model(cfg: TrainConfig, rule, encoding) -> nn.Module:
    torch.manual_seed(cfg.seed)  # initialisation depends on the seed only
    if cfg.arch == "dit":
        net = DiT(DiTConfig(height=rule.height, width=rule.width, in_channels=encoding.channels,
                            depth=cfg.depth, hidden=cfg.hidden, heads=cfg.heads))
        return Preconditioned(net, cfg.sigma_data)
    if cfg.arch == "gpt":
        from twoclocks.training.gpt import GPT, GPTConfig
        return GPT(GPTConfig(n_positions=rule.D, vocab=rule.n_symbols + 1, depth=cfg.depth,
                             hidden=cfg.hidden, heads=cfg.heads))
    raise TwoclocksError(f"unknown architecture {cfg.arch!r}")


def training_data(cfg: TrainConfig, cells: np.ndarray, encoding, device) -> torch.Tensor:
    """The whole train set on the device: model-space floats (dit) or token ids (gpt)."""
    if cfg.arch == "dit":
        return torch.as_tensor(encoding.encode(cells), device=device)
    return torch.as_tensor(cells.astype(np.int64), device=device)


def loss_fn(cfg: TrainConfig):
    if cfg.arch == "dit":
        return lambda model, batch, gen: edm_loss(model, batch, gen, cfg.p_mean, cfg.p_std, cfg.sigma_data)
    from twoclocks.training.gpt import gpt_loss
    return lambda model, batch, gen: gpt_loss(model, batch)


def generate(run, source, device: torch.device, batch_size: int = 4096, seeds=None) -> np.ndarray:
    """One sample per fixed seed at a checkpoint step (or reference), model space (n, P).

    dit: Heun sampling of the denoiser from the noise bank. gpt: autoregressive sampling driven by the
    uniform bank (KV cache); a reference name ('ideal-rule', 'ideal-cube', 'memorize') samples the
    matching autoregressive reference model with the same uniforms. The cells are encoded with the
    run's encoding, so probes see the same model-space samples for both architectures. A sample that
    is not finite (dit: a NaN / inf coordinate; gpt: its sampling met a NaN or +inf logit) comes back
    with NaN coordinates, which the samples probe scores as invalid (``SampleEvaluator``)."""
    cfg = run.config
    idx = np.arange(run.n_seeds) if seeds is None else np.asarray(seeds)
    out = []
    if cfg.arch == "dit":
        D = run.denoiser(source, device)
        z = torch.as_tensor(run.noise[idx], device=device)
        for k in range(0, len(idx), batch_size):
            x = heun_sample(D, z[k:k + batch_size], cfg.sampler_steps, cfg.sigma_min, cfg.sigma_max, cfg.rho)
            out.append(x.cpu().numpy())
        return np.concatenate(out).astype(np.float32)
    from twoclocks.training.gpt import reference_model, sample_fixed
    # a reference on a GPT run is its autoregressive counterpart, sampled with the same uniforms
    model = (reference_model(source, run.rule, run.cells("train")) if isinstance(source, str)
             else run.model(source, device))
    u = torch.as_tensor(run.uniforms[idx], device=device)
    finite = []
    for k in range(0, len(idx), batch_size):
        cells, ok = sample_fixed(model, u[k:k + batch_size], return_finite=True)
        out.append(cells.cpu().numpy())
        finite.append(ok.cpu().numpy())
    x = run.encoding.encode(np.concatenate(out))
    x[~np.concatenate(finite)] = np.nan   # met a NaN / +inf logit: a non-finite sample, as a diverged DiT's
    return x
