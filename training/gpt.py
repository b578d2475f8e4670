"""GPT arm (docs/science.md#gpt): a GPT-2-style causal transformer over cells, its next-token
loss, and sampling driven by a fixed bank of uniforms.

Tokens: cells 0..K-1 and a start token K (binary rules: bits 0/1, start 2, vocab 3). A sequence of D
cells c_1..c_D is fed as [start, c_1, ..., c_{D-1}] and the output at input position t (0-based) is
the distribution of c_{t+1} over the K symbols only (the start token is never predicted: the output
head has K outputs).

Network (nanoGPT-like): learned token and position embeddings (GPT-2), pre-LN blocks
x += Attn(LN(x)); x += MLP(LN(x)) with causal scaled-dot-product attention and an exact (erf) GELU MLP,
a final LayerNorm and a linear head to the K symbols, N(0, 0.02) initialisation with the residual
projections scaled by 1/sqrt(2 depth). Unlike GPT-2 the head is not tied to the token embedding: with
a tied head the untrained model already prefers to repeat its input token (logit <LN(e_c), e_k> is
largest for k = c), a built-in head start on the determined bit when G = 2 that would bias the
per-position cross-entropy probe; with a 3-token vocabulary tying saves nothing.

Sampling (temperature 1): at position t the symbol is the inverse CDF of p(. | prefix) at the fixed
uniform u[seed, t], with the symbols accumulated from the top one down, so for bits
bit = 1 iff u < p(1 | prefix) (docs/science.md#ideal). Batched over all seeds; incremental over positions with a
KV cache (one network call per position on one new token).

Reference models (for ``run.generate('ideal-rule' | 'ideal-cube' | 'memorize')`` on a GPT run and for
the cross-entropy probe): the ideal rule model (the uniform distribution on the rule's valid set as an
autoregressive model, every rule; for group parity: free bits fair coins, the last bit of each group
the parity of the group's prefix), the uniform model, and the memorizing model (the empirical train
distribution as an autoregressive model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from twoclocks import TwoclocksError
from twoclocks.data.rules import support_for_reference
from twoclocks.ideal import has_closed_form, rule_log_marginals

__all__ = ["GPTConfig", "GPT", "gpt_inputs", "gpt_loss", "next_logprobs", "inverse_cdf", "sample_fixed",
           "sample_naive", "ideal_rule_logprobs", "IdealRuleAR", "UniformAR", "MemorizeAR",
           "reference_model"]


@dataclass
class GPTConfig:
    n_positions: int = 36  # D: inputs are [start, c_1 .. c_{D-1}]
    vocab: int = 3  # K symbols + the start token (index K)
    depth: int = 6
    hidden: int = 384
    heads: int = 6
    mlp_ratio: float = 4.0

    @property
    def n_symbols(self) -> int:
        return self.vocab - 1


class CausalSelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, cache=None, pos: int = 0):
        """Full causal attention (cache None), or one incremental step: write this step's keys and
        values into ``cache`` = (k, v) at ``pos`` and attend over positions 0..pos."""
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            if n != 1:
                raise ValueError("the KV cache takes one new token per call")
            kc, vc = cache
            kc[:, :, pos] = k[:, :, 0]
            vc[:, :, pos] = v[:, :, 0]
            y = F.scaled_dot_product_attention(q, kc[:, :, :pos + 1], vc[:, :, :pos + 1])
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-LN transformer block: x += Attn(LN(x)); x += MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        h = int(dim * mlp_ratio)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, h), nn.GELU(), nn.Linear(h, dim))  # exact (erf) GELU

    def forward(self, x, cache=None, pos: int = 0):
        x = x + self.attn(self.ln1(x), cache, pos)
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """tokens (B, T <= D) int64 -> logits (B, T, K): the next cell's distribution after each prefix."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.K = cfg.n_symbols
        self.wte = nn.Embedding(cfg.vocab, cfg.hidden)
        self.wpe = nn.Embedding(cfg.n_positions, cfg.hidden)
        self.blocks = nn.ModuleList([Block(cfg.hidden, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.ln_f = nn.LayerNorm(cfg.hidden)
        self.head = nn.Linear(cfg.hidden, self.K, bias=False)
        self.initialize()

    def initialize(self):
        """GPT-2 / nanoGPT: N(0, 0.02) weights and embeddings, zero biases, residual projections
        N(0, 0.02 / sqrt(2 depth))."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for blk in self.blocks:
            for m in (blk.attn.proj, blk.mlp[2]):
                nn.init.normal_(m.weight, std=0.02 / math.sqrt(2 * self.cfg.depth))

    def forward(self, tokens, cache=None, pos: int = 0):
        n = tokens.shape[1]
        x = self.wte(tokens) + self.wpe(torch.arange(pos, pos + n, device=tokens.device))
        for i, blk in enumerate(self.blocks):
            x = blk(x, None if cache is None else cache[i], pos)
        return self.head(self.ln_f(x))

    def new_cache(self, batch: int, device=None, dtype=torch.float32):
        """Empty KV cache: per block a (k, v) pair of shape (batch, heads, D, hidden / heads)."""
        c = self.cfg
        shape = (batch, c.heads, c.n_positions, c.hidden // c.heads)
        return [(torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
                for _ in self.blocks]

    def optim_groups(self, weight_decay: float) -> list[dict]:
        """AdamW parameter groups as in nanoGPT: decay the matrices and embeddings (dim >= 2), not
        biases and LayerNorm gains."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


# ----------------------------------------------------------------------------- training
def gpt_inputs(cells: torch.Tensor, n_symbols: int) -> torch.Tensor:
    """(B, D) cells -> (B, D) input tokens [start, c_1, ..., c_{D-1}] (start = n_symbols)."""
    start = torch.full_like(cells[:, :1], n_symbols)
    return torch.cat([start, cells[:, :-1]], dim=1)


def gpt_loss(model, batch_tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy (nats), mean over the batch and the D positions: targets are the cells
    c_1..c_D, inputs [start, c_1..c_{D-1}]."""
    cells = batch_tokens.long()
    logits = model(gpt_inputs(cells, model.K))
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), cells.reshape(-1))


@torch.inference_mode()
def next_logprobs(model, cells, batch_size: int = 4096) -> torch.Tensor:
    """(n, D, K) float64 log p(c_t = k | c_<t) of every prefix of ``cells`` (teacher forcing), batched."""
    cells = torch.as_tensor(np.asarray(cells)).long()
    dev = next(model.parameters(), torch.empty(0)).device
    out = []
    for k in range(0, cells.shape[0], batch_size):
        c = cells[k:k + batch_size].to(dev)
        out.append(torch.log_softmax(model(gpt_inputs(c, model.K)).double(), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros((0, cells.shape[1], model.K), dtype=torch.float64)


# ----------------------------------------------------------------------------- sampling
def inverse_cdf(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Symbol whose CDF interval holds u, the symbols accumulated from the top one (K-1) down:
    s = K-1 - #{j < K-1 : u >= Q_j}, Q = cumsum(p_{K-1}, p_{K-2}, ...). For bits: 1 iff u < p(1)."""
    p = torch.softmax(logits.float(), dim=-1).flip(-1)
    q = p.cumsum(-1)[..., :-1]
    return (p.shape[-1] - 1) - (u[..., None].to(q.dtype) >= q).sum(-1)


def _finite_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the next-symbol logits are usable. A NaN logit makes every CDF comparison False, so
    :func:`inverse_cdf` would silently pick symbol K-1; +inf logits give NaN probabilities. -inf is
    fine (probability 0, as the reference models use)."""
    return ~(torch.isnan(logits) | torch.isposinf(logits)).any(-1)


@torch.inference_mode()
def sample_fixed(model, uniforms: torch.Tensor, return_finite: bool = False):
    """(B, D) uniforms -> (B, D) int64 cells, temperature 1, deterministic: the symbol at position t is
    the inverse CDF of p(. | prefix) at u[:, t]. A :class:`GPT` is run incrementally with a KV cache (one
    call per position); any other model (a reference) is run on the whole prefix (:func:`sample_naive`).
    ``return_finite``: also return (B,) bool, False for a sequence that met a NaN or +inf logit
    anywhere (its cells are then meaningless: ``Run.generate`` turns it into an all-NaN sample)."""
    if not isinstance(model, GPT):
        return sample_naive(model, uniforms, return_finite)
    b, d = uniforms.shape
    dev = uniforms.device
    cache = model.new_cache(b, dev, model.wte.weight.dtype)
    tok = torch.full((b, 1), model.K, dtype=torch.long, device=dev)
    out = torch.empty((b, d), dtype=torch.long, device=dev)
    ok = torch.ones(b, dtype=torch.bool, device=dev)
    for t in range(d):
        logits = model(tok, cache, t)[:, -1]
        ok &= _finite_logits(logits)
        out[:, t] = inverse_cdf(logits, uniforms[:, t])
        tok = out[:, t:t + 1]
    return (out, ok) if return_finite else out


@torch.inference_mode()
def sample_naive(model, uniforms: torch.Tensor, return_finite: bool = False):
    """Same samples as :func:`sample_fixed` without a cache: the whole prefix is recomputed at every
    position (the reference the KV-cache sampler is tested and benchmarked against)."""
    b, d = uniforms.shape
    tokens = torch.full((b, 1), model.K, dtype=torch.long, device=uniforms.device)
    ok = torch.ones(b, dtype=torch.bool, device=uniforms.device)
    for t in range(d):
        logits = model(tokens)[:, -1]
        ok &= _finite_logits(logits)
        s = inverse_cdf(logits, uniforms[:, t])
        tokens = torch.cat([tokens, s[:, None]], dim=1)
    return (tokens[:, 1:], ok) if return_finite else tokens[:, 1:]


# ----------------------------------------------------------------------------- reference models
def _prefix_evidence(cells: np.ndarray, K: int, t: int) -> torch.Tensor:
    """(n, D, K) log-weights that know cells 0..t-1 (0 for the cell's symbol, -inf for the others)
    and nothing about the rest (0)."""
    n, D = cells.shape
    ev = torch.zeros((n, D, K), dtype=torch.float64)
    known = torch.full((n, t, K), -torch.inf, dtype=torch.float64)
    known.scatter_(2, torch.as_tensor(cells[:, :t, None].astype(np.int64)), 0.0)
    ev[:, :t] = known
    return ev


def _enumerated_ar(rule):
    """The ideal rule model of a rule without closed-form marginals: the empirical distribution of its
    enumerated sampler support (the training distribution) as an autoregressive model (cached per rule)."""
    key = repr(rule)
    if key not in _ENUMERATED:
        support = support_for_reference(rule, "ideal autoregressive rule model")
        _ENUMERATED.clear()
        _ENUMERATED[key] = MemorizeAR(support, rule.n_symbols)
    return _ENUMERATED[key]


_ENUMERATED: dict = {}


def ideal_rule_logprobs(rule, cells, positions=None) -> np.ndarray:
    """(n, D, K) float64 log p*(c_t = k | c_<t) of the ideal rule model: the training distribution (uniform
    on the support of the rule's sampler: the valid set, or for Latin squares and Sudoku the cyclic
    square's isotopy class), as an autoregressive model, exact for every rule (or a TwoclocksError that says
    why not). p*(c_t = k | c_<t) is the posterior marginal of cell t given the prefix as hard evidence
    (``twoclocks.ideal.rule_log_marginals``): group parity: the first G-1 bits of a group are fair
    coins, the last is the group prefix's parity; count rules: counts of completions; row-only Latin
    squares: uniform over the symbols the row has not used. Rules without a closed form (Latin squares,
    Sudoku) count completions in their enumerated sampler support. Where no valid image has the prefix, p* is
    uniform over the K symbols; factorized rules (parity groups, the rows of row-K / row-variable-K /
    row-Latin) judge each group or row on its own, so a broken earlier group does not matter.
    ``positions``: compute only these t (the others are NaN)."""
    cells = np.asarray(cells).astype(np.int64)
    n, K, D = cells.shape[0], rule.n_symbols, rule.D
    if cells.ndim != 2 or cells.shape[1] != D:
        raise TwoclocksError(f"expected (n, {D}) cells for rule {rule!r}, got shape {cells.shape}")
    if not has_closed_form(rule):
        return _enumerated_ar(rule).logprobs(cells[:, :D - 1])   # D positions from D-1 prefix cells
    out = np.full((n, D, K), np.nan)
    for t in (range(D) if positions is None else positions):
        if n:
            out[:, t] = rule_log_marginals(rule, _prefix_evidence(cells, K, t))[:, t].numpy()
    return out


class _ARReference(nn.Module):
    """A fixed autoregressive model given by ``logprobs(cells (B, t)) -> (B, t + 1, K)``."""

    def __init__(self, n_symbols: int):
        super().__init__()
        self.K = n_symbols

    def forward(self, tokens):
        cells = tokens[:, 1:].cpu().numpy()
        return torch.as_tensor(self.logprobs(cells), dtype=torch.float32, device=tokens.device)


class IdealRuleAR(_ARReference):
    """The ideal rule model (:func:`ideal_rule_logprobs`) as a model: logits = log-probabilities."""

    def __init__(self, rule):
        super().__init__(rule.n_symbols)
        self.rule = rule
        if not has_closed_form(rule):
            _enumerated_ar(rule)  # fails early (TwoclocksError) where there is no exact model

    def logprobs(self, cells):
        n, t = cells.shape
        full = np.zeros((n, self.rule.D), np.int64)
        full[:, :t] = cells
        return ideal_rule_logprobs(self.rule, full, positions=range(min(t + 1, self.rule.D)))[:, :t + 1]


class UniformAR(_ARReference):
    """Every symbol equally likely at every position (the uniform hypercube for bits)."""

    def logprobs(self, cells):
        return np.full((cells.shape[0], cells.shape[1] + 1, self.K), -math.log(self.K))


class MemorizeAR(_ARReference):
    """The empirical train distribution as an autoregressive model: p(c_t = k | prefix) = #train rows
    with that prefix and c_t = k / #train rows with that prefix (uniform when no train row has the
    prefix). Vectorized: the train rows are sorted, so the rows sharing a prefix are one index range
    [lo, hi), narrowed position by position with cumulative symbol counts."""

    def __init__(self, train_cells, n_symbols: int):
        super().__init__(n_symbols)
        rows = np.asarray(train_cells).astype(np.int64)
        rows = rows[np.lexsort(rows.T[::-1])]
        onehot = rows[:, :, None] == np.arange(n_symbols)  # (N, D, K)
        self.cum = np.concatenate([np.zeros((1,) + onehot.shape[1:], np.int64),
                                   np.cumsum(onehot, axis=0)])  # (N+1, D, K)

    def logprobs(self, cells):
        n, t = cells.shape
        lo = np.zeros(n, np.int64)
        hi = np.full(n, self.cum.shape[0] - 1)
        out = np.empty((n, t + 1, self.K))
        for j in range(t + 1):
            cnt = self.cum[hi, j] - self.cum[lo, j]  # (n, K)
            tot = cnt.sum(1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                out[:, j] = np.where(tot > 0, np.log(cnt / np.maximum(tot, 1)), -math.log(self.K))
            if j < t:
                s = cells[:, j]
                before = np.take_along_axis(np.cumsum(cnt, 1) - cnt, s[:, None], 1)[:, 0]
                lo = lo + before
                hi = lo + cnt[np.arange(n), s]
        return out


def reference_model(name: str, rule, train_cells) -> nn.Module:
    """The autoregressive counterpart of a reference denoiser, for every rule: 'ideal-rule' (uniform on
    the valid set, :func:`ideal_rule_logprobs`; a TwoclocksError where no exact model exists: Latin
    squares n >= 6, 6x6 Sudoku), 'ideal-cube' (uniform), 'memorize' (empirical train distribution)."""
    if name == "ideal-rule":
        return IdealRuleAR(rule)
    if name == "ideal-cube":
        return UniformAR(rule.n_symbols)
    if name == "memorize":
        return MemorizeAR(train_cells, rule.n_symbols)
    raise TwoclocksError(f"unknown reference {name!r}; choose ideal-rule, ideal-cube or memorize")
