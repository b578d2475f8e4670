"""DiT denoiser network F(x_in, c_noise) for small images, patch size 1 (Peebles & Xie 2023).

Tokens are the D cells; each carries ``in_channels`` values. Fixed 2D sin-cos position embedding,
sinusoidal noise embedding + 2-layer MLP, adaLN-Zero blocks (no class conditioning), zero-initialised
modulation and output layers, so the untrained network outputs F = 0 (then D(x; s) = c_skip x).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DiTConfig", "DiT", "sincos_2d", "timestep_embedding"]  # presets: training.config.PRESETS


@dataclass
class DiTConfig:
    height: int = 6
    width: int = 6
    in_channels: int = 1
    depth: int = 6
    hidden: int = 384
    heads: int = 6
    mlp_ratio: float = 4.0
    freq_dim: int = 256


def sincos_2d(dim: int, height: int, width: int) -> torch.Tensor:
    """(height*width, dim) fixed 2D sin-cos embedding: half the channels encode the row, half the column."""
    if dim % 4:
        raise ValueError(f"hidden size must be a multiple of 4 for the 2D sin-cos embedding, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4.0))

    def emb1d(pos):
        out = np.outer(pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gy, gx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    return torch.from_numpy(np.concatenate([emb1d(gy), emb1d(gx)], axis=1)).float()


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of a scalar per example: (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def modulate(x, shift, scale):
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Sequential):
    """Linear-GELU-Linear. Exact (erf) GELU: DiT uses its tanh approximation, which is ~10x slower on CPU."""

    def __init__(self, dim, ratio):
        h = int(dim * ratio)
        super().__init__(nn.Linear(dim, h), nn.GELU(), nn.Linear(h, dim))


class DiTBlock(nn.Module):
    """x += gate * Attn(modulate(LN(x))); x += gate * MLP(modulate(LN(x))); 6 modulations from c."""

    def __init__(self, dim, heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(c).chunk(6, dim=1)
        x = x + g1[:, None] * self.attn(modulate(self.norm1(x), sh1, sc1))
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), sh2, sc2))


class FinalLayer(nn.Module):
    def __init__(self, dim, out):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.ada(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(x), shift, scale))


class DiT(nn.Module):
    """F(x_in, c_noise): (B, D * in_channels), (B,) -> (B, D * in_channels)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d, c = cfg.height * cfg.width, cfg.hidden
        self.x_embed = nn.Linear(cfg.in_channels, c)
        self.register_buffer("pos", sincos_2d(c, cfg.height, cfg.width)[None], persistent=False)
        self.t_embed = nn.Sequential(nn.Linear(cfg.freq_dim, c), nn.SiLU(), nn.Linear(c, c))
        self.blocks = nn.ModuleList([DiTBlock(c, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.final = FinalLayer(c, cfg.in_channels)
        self.n_tokens = d
        self.initialize()

    def initialize(self):
        """DiT's initialisation: Xavier linears, N(0, 0.02) noise MLP, zero adaLN and output layers."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.t_embed:
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        for blk in self.blocks:
            nn.init.zeros_(blk.ada[-1].weight)
            nn.init.zeros_(blk.ada[-1].bias)
        for m in (self.final.ada[-1], self.final.linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x, c_noise):
        b = x.shape[0]
        h = self.x_embed(x.reshape(b, self.n_tokens, self.cfg.in_channels)) + self.pos
        c = self.t_embed(timestep_embedding(c_noise, self.cfg.freq_dim))
        for blk in self.blocks:
            h = blk(h, c)
        return self.final(h, c).reshape(b, -1)
