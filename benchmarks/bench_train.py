"""Training throughput: the trainer's own step vs a naive eager reference of the same model and loss.

The reference is what one writes first: a DataLoader over a TensorDataset (per-sample indexing and
collation each step, then a copy to the device), hand-written attention (softmax(QK^T/sqrt(d))V),
the tanh-GELU of the DiT / GPT-2 papers, per-parameter (non-foreach) Adam(W), and ``loss.item()``
every step (a host synchronisation). Ours is ``twoclocks.training.train.TrainStep``, the step the
trainer runs: the train set indexed on the device, fused (CUDA) / foreach (CPU) Adam, no host
synchronisation, optionally torch.compile (``compiled``). ``previous`` is the trainer's step before
that work (per-parameter Adam, ``loss.item()`` twice a step). All train the same size on the same data
with the same loss; ratio = steps/s / steps/s(naive reference), measured in the same process,
interleaved, best of --repeat (the machine is noisy).

    python benchmarks/bench_train.py                              # dit and gpt, tiny and mini, CPU
    python benchmarks/bench_train.py --arch dit --presets tiny --steps 50 --threads 1 --compile
    python benchmarks/bench_train.py --threads 1 --clock cpu       # on a busy shared machine
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from twoclocks.data import make_encoding, make_rule, make_splits
from twoclocks.training.config import TrainConfig
from twoclocks.training.dit import sincos_2d, timestep_embedding
from twoclocks.training.edm import Preconditioned, edm_loss
from twoclocks.training.gpt import gpt_inputs, gpt_loss
from twoclocks.training.models import build_model, training_data
from twoclocks.training.train import TrainStep, build_optimizer

sys.path.insert(0, str(Path(__file__).parent))
from bench_gpt import NaiveGPT  # noqa: E402  (the naive GPT lives with the GPT benchmark)


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


def setup(arch: str, preset: str, side: int = 6, group: int = 3, n_train: int = 4096, batch: int = 256,
          device="cpu"):
    """(cfg, rule, encoding, train cells) of a parity task, as the trainer would see it."""
    cfg = TrainConfig(arch=arch, model=preset, side=side, group=group, n_train=n_train, batch=batch,
                      device=str(device))
    rule = make_rule(cfg.rule_spec())
    enc = make_encoding(cfg.encoding, rule.n_symbols, **cfg.encoding_params)
    cells = make_splits(rule, n_train, 0, 0, cfg.data_seed)["train"]
    return cfg, rule, enc, cells


def ours(cfg, rule, enc, cells, device, compile="off", bf16=False) -> TrainStep:
    """The trainer's step on a fresh model (``TrainStep``: call it for one optimizer step)."""
    device = torch.device(device)
    model = build_model(cfg, rule, enc).to(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(1)
    return TrainStep(cfg, model, build_optimizer(cfg, model, device), training_data(cfg, cells, enc, device),
                     gen, compile=compile, bf16=bf16)


def previous(cfg, rule, enc, cells, device):
    """The trainer's step before the speed work (for comparison): per-parameter Adam(W), the loss read
    on the host twice a step (running mean and callback)."""
    device = torch.device(device)
    model = build_model(cfg, rule, enc).to(device)
    groups = model.optim_groups(cfg.weight_decay) if hasattr(model, "optim_groups") else model.parameters()
    opt_cls = torch.optim.AdamW if cfg.arch == "gpt" else torch.optim.Adam
    opt = opt_cls(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    data, gen = training_data(cfg, cells, enc, device), torch.Generator(device=device)
    gen.manual_seed(1)

    def step():
        x = data[torch.randint(data.shape[0], (cfg.batch,), device=device, generator=gen)]
        loss = edm_loss(model, x, gen, cfg.p_mean, cfg.p_std, cfg.sigma_data) if cfg.arch == "dit" else gpt_loss(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss.item(), loss.item()
    return step


def naive(cfg, rule, enc, cells, device):
    """One step of the naive eager reference (fp32), as a function."""
    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    if cfg.arch == "dit":
        net = Preconditioned(NaiveDiT(cfg.side, cfg.depth, cfg.hidden, cfg.heads)).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, foreach=False)
        data = torch.as_tensor(enc.encode(cells))
    else:
        net = NaiveGPT(rule.D, rule.n_symbols + 1, cfg.depth, cfg.hidden, cfg.heads).to(device)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
        data = torch.as_tensor(cells.astype("int64"))
    it = iter(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(data), batch_size=cfg.batch,
                                          sampler=torch.utils.data.RandomSampler(data, replacement=True,
                                                                                 num_samples=10 ** 9)))

    def step():
        (xb,) = next(it)
        xb = xb.to(device)
        if cfg.arch == "dit":
            loss = edm_loss(net, xb, p_mean=cfg.p_mean, p_std=cfg.p_std, sigma_data=cfg.sigma_data)
        else:
            with torch.device(device):  # NaiveGPT makes its positions and mask on the default device
                logits = net(gpt_inputs(xb, rule.n_symbols))
            loss = F.cross_entropy(logits.reshape(-1, rule.n_symbols), xb.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # the usual running-loss bookkeeping: one host synchronisation per step
    return step


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def rate(fn, steps: int, device="cpu", warmup: int = 2, clock=time.perf_counter) -> float:
    """Steps per second of ``fn`` after ``warmup`` calls (waiting for the device at both ends), by
    ``clock``: wall time, or time.process_time (this process's CPU time: robust on a shared machine)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t = clock()
    for _ in range(steps):
        fn()
    sync(device)
    return steps / (clock() - t)


def best_rates(fns: dict, steps: int, device="cpu", repeat: int = 2, warmup: int = 2,
               clock=time.perf_counter) -> dict:
    """Best steps/s of each function over ``repeat`` interleaved rounds (warm-up in the first round)."""
    best = {}
    for r in range(repeat):
        for name, fn in fns.items():
            best[name] = max(best.get(name, 0.0), rate(fn, steps, device, warmup if r == 0 else 0, clock))
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="dit,gpt")
    ap.add_argument("--presets", default="tiny,mini")
    ap.add_argument("--steps", type=int, default=0, help="timed steps (default: 30 for tiny, 3 for larger)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=2, help="interleaved rounds; the best one counts")
    ap.add_argument("--compile", action="store_true", help="also time the compiled step (compile=on)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="steps per wall-clock second, or per CPU second of this process (CPU only; robust "
                         "on a shared machine with --threads 1)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.device}, 6x6 parity G=3, "
          f"batch {args.batch}, best of {args.repeat}, {args.clock} clock")
    for arch in args.arch.split(","):
        for preset in args.presets.split(","):
            steps = args.steps or (30 if preset == "tiny" else 3)
            task = setup(arch, preset, batch=args.batch, device=args.device)
            fns = {"naive": naive(*task, args.device), "previous": previous(*task, args.device),
                   "ours": ours(*task, args.device)}
            if args.compile:
                fns["compiled"] = ours(*task, args.device, compile="on")
                fns["compiled"]()  # compile outside the timing
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            r = best_rates(fns, steps, args.device, args.repeat, clock=clock)
            print(f"{arch} {preset:5s} naive {r['naive']:8.2f} steps/s" + "".join(
                f"   {k} {v:8.2f} ({v / r['naive']:5.2f}x)" for k, v in r.items() if k != "naive"))


if __name__ == "__main__":
    main()
