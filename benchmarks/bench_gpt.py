"""GPT throughput: training steps/s and sampling samples/s, twoclocks vs naive eager references.

Training: twoclocks' GPT (fused qkv, causal scaled_dot_product_attention, erf GELU, foreach AdamW,
batches indexed from a tensor on the device) vs what one writes first: hand-written attention with an
explicit -inf mask, the tanh-GELU of GPT-2, per-parameter (non-foreach) AdamW and a DataLoader.
Sampling: the KV-cache sampler (one network call on one new token per position) vs the same network
recomputed on the whole prefix at every position (no cache); both draw the identical bank of samples
from the same fixed uniforms (checked). Ratios = ours / reference, measured in the same process.

    python benchmarks/bench_gpt.py                 # tiny and mini, 6x6 parity G=3, on the CPU
    python benchmarks/bench_gpt.py --presets tiny --steps 20 --seeds 1024 --threads 1
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from twoclocks.data import GroupParity, make_splits
from twoclocks.training.config import preset_for
from twoclocks.training.gpt import GPT, GPTConfig, gpt_inputs, gpt_loss, sample_fixed, sample_naive


class NaiveGPT(nn.Module):
    """The same architecture written plainly: separate q/k/v, explicit causal mask, tanh GELU."""

    def __init__(self, d, vocab, depth, c, heads):
        super().__init__()
        self.K, self.h = vocab - 1, heads
        self.wte, self.wpe = nn.Embedding(vocab, c), nn.Embedding(d, c)
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(
            ln1=nn.LayerNorm(c), q=nn.Linear(c, c), k=nn.Linear(c, c), v=nn.Linear(c, c), o=nn.Linear(c, c),
            ln2=nn.LayerNorm(c), mlp=nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(approximate="tanh"),
                                                   nn.Linear(4 * c, c)))) for _ in range(depth))
        self.ln_f, self.head = nn.LayerNorm(c), nn.Linear(c, self.K, bias=False)

    def forward(self, tokens):
        b, n = tokens.shape
        x = self.wte(tokens) + self.wpe(torch.arange(n))
        mask = torch.triu(torch.ones(n, n, dtype=torch.bool), 1)
        for blk in self.blocks:
            h = blk["ln1"](x)
            split = lambda t: t.view(b, n, self.h, -1).transpose(1, 2)
            q, k, v = split(blk["q"](h)), split(blk["k"](h)), split(blk["v"](h))
            w = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(mask, -torch.inf)
            x = x + blk["o"]((torch.softmax(w, -1) @ v).transpose(1, 2).reshape(b, n, -1))
            x = x + blk["mlp"](blk["ln2"](x))
        return self.head(self.ln_f(x))


def rate(fn, reps, warmup=2):
    for _ in range(warmup):
        fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return reps / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="tiny,mini")
    ap.add_argument("--steps", type=int, default=0, help="timed training steps (default: 30 tiny, 3 larger)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--seeds", type=int, default=0, help="samples per sampling call (default: the bank "
                    "size 2048 for tiny, 256 for larger presets)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rule = GroupParity(6, group=3)
    cells = torch.as_tensor(make_splits(rule, 4096, 0, 0, seed=0)["train"].astype("int64"))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, 6x6 parity G=3 (D=36), "
          f"batch {args.batch}")
    for preset in args.presets.split(","):
        depth, hidden, heads = preset_for("gpt", preset)
        steps = args.steps or (30 if preset == "tiny" else 3)
        model = GPT(GPTConfig(n_positions=rule.D, vocab=3, depth=depth, hidden=hidden, heads=heads))
        opt = torch.optim.AdamW(model.optim_groups(0.1), lr=3e-4)
        gen = torch.Generator().manual_seed(0)

        def ours():
            loss = gpt_loss(model, cells[torch.randint(len(cells), (args.batch,), generator=gen)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        naive = NaiveGPT(rule.D, 3, depth, hidden, heads)
        nopt = torch.optim.AdamW(naive.parameters(), lr=3e-4, weight_decay=0.1, foreach=False)
        loader = iter(torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(cells), batch_size=args.batch,
            sampler=torch.utils.data.RandomSampler(cells, replacement=True, num_samples=10 ** 9)))

        def reference():
            (cb,) = next(loader)
            logits = naive(gpt_inputs(cb, 2))
            loss = F.cross_entropy(logits.reshape(-1, 2), cb.reshape(-1))
            nopt.zero_grad()
            loss.backward()
            nopt.step()

        r, o = rate(reference, steps), rate(ours, steps)
        print(f"{preset:5s} train   ours {o:9.2f} steps/s     naive {r:9.2f} steps/s     ratio {o / r:6.2f}x")

        model.eval()
        seeds = args.seeds or (2048 if preset == "tiny" else 256)
        u = torch.rand(seeds, rule.D, generator=gen)
        assert torch.equal(sample_fixed(model, u), sample_naive(model, u)), "samplers disagree"
        reps = 3 if preset == "tiny" else 1
        o = rate(lambda: sample_fixed(model, u), reps, warmup=1) * seeds
        r = rate(lambda: sample_naive(model, u), reps, warmup=1) * seeds
        print(f"{preset:5s} sample  ours {o:9.0f} samples/s   no-cache {r:9.0f} samples/s   ratio {o / r:6.2f}x"
              f"   ({seeds} seeds x {rule.D} positions)")


if __name__ == "__main__":
    main()
