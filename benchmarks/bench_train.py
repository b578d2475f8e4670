"""Training throughput: twoclocks' loop vs a naive eager reference of the same model and loss.

The reference is what one writes first: a DataLoader over a TensorDataset (per-sample indexing and
collation each step), hand-written attention (softmax(QK^T/sqrt(d))V), the tanh-GELU of the DiT paper,
and per-parameter (non-foreach) Adam. Both train the same DiT size on the same data with the same EDM
loss; the ratio is steps/s(twoclocks) / steps/s(reference), measured in the same process.

    python benchmarks/bench_train.py            # tiny and mini on the CPU
    python benchmarks/bench_train.py --presets tiny --steps 50
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from torch import nn

from twoclocks.data import GroupParity, make_splits
from twoclocks.training.config import PRESETS
from twoclocks.training.dit import DiT, DiTConfig, sincos_2d, timestep_embedding
from twoclocks.training.edm import Preconditioned, edm_loss


class NaiveBlock(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.h = heads
        self.q, self.k, self.v, self.o = (nn.Linear(c, c) for _ in range(4))
        self.n1, self.n2 = nn.LayerNorm(c, elementwise_affine=False), nn.LayerNorm(c, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(approximate="tanh"), nn.Linear(4 * c, c))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(c, 6 * c))

    def attn(self, x):
        b, n, c = x.shape
        split = lambda t: t.view(b, n, self.h, c // self.h).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // self.h), dim=-1)
        return self.o((w @ v).transpose(1, 2).reshape(b, n, c))

    def forward(self, x, c):
        a, b_, g1, d, e, g2 = self.ada(c).chunk(6, 1)
        x = x + g1[:, None] * self.attn(self.n1(x) * (1 + b_[:, None]) + a[:, None])
        return x + g2[:, None] * self.mlp(self.n2(x) * (1 + e[:, None]) + d[:, None])


class NaiveDiT(nn.Module):
    def __init__(self, side, depth, c, heads):
        super().__init__()
        self.embed = nn.Linear(1, c)
        self.register_buffer("pos", sincos_2d(c, side, side)[None])
        self.t = nn.Sequential(nn.Linear(256, c), nn.SiLU(), nn.Linear(c, c))
        self.blocks = nn.ModuleList(NaiveBlock(c, heads) for _ in range(depth))
        self.out = nn.Linear(c, 1)

    def forward(self, x, c_noise):
        h = self.embed(x[..., None]) + self.pos
        c = self.t(timestep_embedding(c_noise, 256))
        for b in self.blocks:
            h = b(h, c)
        return self.out(h)[..., 0]


def bench(fn, steps, warmup=2):
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return steps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,mini")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: 30 for tiny, 3 for larger)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rule = GroupParity(6, group=3)
    train = make_splits(rule, 4096, 0, 0, seed=0)["train"]
    x_all = torch.tensor(2.0 * train - 1, dtype=torch.float32)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, 6x6 parity, batch {args.batch}")
    for preset in args.presets.split(","):
        depth, hidden, heads = PRESETS[preset]
        steps = args.steps or (30 if preset == "tiny" else 3)

        model = Preconditioned(DiT(DiTConfig(6, 6, 1, depth, hidden, heads)))
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        gen = torch.Generator().manual_seed(0)

        def ours():
            idx = torch.randint(len(x_all), (args.batch,), generator=gen)
            loss = edm_loss(model, x_all[idx], gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        naive = Preconditioned(NaiveDiT(6, depth, hidden, heads))
        nopt = torch.optim.Adam(naive.parameters(), lr=1e-4, foreach=False)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_all), batch_size=args.batch,
                                             sampler=torch.utils.data.RandomSampler(x_all, replacement=True,
                                                                                    num_samples=10 ** 9))
        it = iter(loader)

        def reference():
            (xb,) = next(it)
            loss = edm_loss(naive, xb)
            nopt.zero_grad()
            loss.backward()
            nopt.step()

        r = bench(reference, steps)
        o = bench(ours, steps)
        print(f"{preset:5s} ours {o:8.2f} steps/s   naive {r:8.2f} steps/s   ratio {o / r:5.2f}x")


if __name__ == "__main__":
    main()
