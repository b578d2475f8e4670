"""Exact reference denoisers E[x | y = x + s n] (docs/science.md#ideal), with the denoiser call signature D(y, sigma),
for every rule and every encoding.

Each cell d holds a symbol k whose model-space code is c_k (``encoding.codes``: +-1 for binary,
levels in [-1, 1] for scalar, one-hot vectors, optionally shifted by -1/K, for onehot). The Gaussian
likelihood of y factorizes over cells, so with the per-cell symbol log-weights

    L[d, k] = (<y_d, c_k> - |c_k|^2 / 2) / s^2        (= -|y_d - c_k|^2 / (2 s^2) + a constant per cell)

(:func:`symbol_logits`) the posterior of the cells is prior(cells) prod_d exp(L[d, cell_d]) and

    E[x_d | y] = sum_k P(cell_d = k | y) c_k.

The references differ in the prior (all exact; :func:`reference_denoiser` builds them):
- ``ideal-cube``: uniform on all K^D images, P(cell_d = k | y) = softmax_k L[d, k]; for binary codes
  E[x_i | y] = tanh(y_i / s^2) (:func:`hypercube_denoiser`).
- ``ideal-rule``: the training distribution: uniform on the support of the rule's sampler, which is the
  valid set for every rule except Latin squares and Sudoku (their sampler draws the isotopy class of
  the cyclic square, docs/science.md#rules); the marginals P(cell_d = k | y) come from
  :func:`rule_log_marginals`: group parity by log-space scans per group (binary codes: the science document's
  (t_i + c prod_{j != i} t_j) / (1 + c prod_j t_j), t = tanh(y / s^2), c = (-1)^G;
  :func:`parity_denoiser`), the count rules by a forward-backward pass over the count of ones along
  each line (global-K: a mixture over K), the row-only Latin square by a sum over each row's n!
  permutations; rules without such a form (Latin squares, Sudoku) by the softmax over their
  enumerated sampler support, which is the memorizing denoiser of that set, when it has at most
  ``data.rules.MAX_ENUMERATE`` images, and are refused (TwoclocksError) otherwise.
- ``memorize``: the empirical train distribution, sum_n softmax_n(-||y - x_n||^2 / (2 s^2)) x_n
  (:func:`memorizing_denoiser`), exact for any encoding.

The same marginals with hard evidence (log-weight 0 for a known cell's symbol, -inf for the others,
0 for unknown cells) are the ideal autoregressive model p*(c_t | c_<t) of the GPT references
(``training.gpt.ideal_rule_logprobs``). Where no valid image agrees with the evidence the marginals
are uniform over the K symbols.

They are the test oracles for the sampler and probes and the references of the DSM spectrum.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from twoclocks import TwoclocksError
from twoclocks.data.count_rules import ExactK, GlobalK, RowCountRule
from twoclocks.data.encodings import make_encoding
from twoclocks.data.latin import RowLatin
from twoclocks.data.rules import GroupParity, restricted_support, support_for_reference

__all__ = ["hypercube_denoiser", "parity_denoiser", "parity_denoiser_closed_form",
           "memorizing_denoiser", "REFERENCES", "reference_denoiser", "symbol_logits",
           "rule_log_marginals", "has_closed_form", "posterior_denoiser", "infer_encoding"]

MAX_PERM_N = 7  # the row-only Latin square's closed form sums over n! permutations per row (5040)


def _col(sigma, y):
    s = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)
    return s.reshape(-1, 1) if s.numel() > 1 else s.reshape(1, 1)


def hypercube_denoiser():
    """Uniform prior on the cube's vertices: each coordinate independent, E = tanh(y / s^2)."""
    def D(y, sigma):
        return torch.tanh(y / _col(sigma, y) ** 2)
    return D


def parity_denoiser_closed_form(group: int):
    """the science document's formula verbatim. Loses precision (0/0) when |y|/s^2 is large at invalid vertices;
    kept as a cross-check of :func:`parity_denoiser`."""
    c = (-1.0) ** group

    def D(y, sigma):
        t = torch.tanh(y / _col(sigma, y) ** 2).reshape(y.shape[0], -1, group)
        prod_all = t.prod(dim=2, keepdim=True)
        pre = torch.cumprod(torch.cat([torch.ones_like(t[..., :1]), t[..., :-1]], 2), 2)
        suf = torch.cumprod(torch.cat([torch.ones_like(t[..., :1]), t.flip(2)[..., :-1]], 2), 2).flip(2)
        out = (t + c * pre * suf) / (1 + c * prod_all)
        return out.reshape(y.shape)
    return D


def _parity_group_logweights(L: torch.Tensor, group: int) -> torch.Tensor:
    """Unnormalized log marginals (B, D, 2) of the bits under the uniform prior on even-parity groups,
    from per-bit log-weights L (B, D, 2) (column 0: bit 0 / x = -1, column 1: bit 1 / x = +1).

    Log space, numerically stable, exact: for each group and bit i, the log partition functions of
    the group's other bits with product prod x_j = +1 and -1 (prefix/suffix scans of log-sum-exp
    pairs); bit i = 1 (x_i = +1) needs the others' product c = (-1)^G, bit 0 needs -c. The one
    equation behind :func:`parity_denoiser` and the parity ideal rule model."""
    c_pos = group % 2 == 0  # c = +1 for even G
    B = L.shape[0]
    lm, lp = (L[..., 0].reshape(B, -1, group), L[..., 1].reshape(B, -1, group))

    def combine(p, q):  # (log Z[+1], log Z[-1]) of two independent sets -> of their union
        return (torch.logaddexp(p[0] + q[0], p[1] + q[1]), torch.logaddexp(p[0] + q[1], p[1] + q[0]))

    zero = torch.zeros_like(lp[..., 0])
    empty = (zero, torch.full_like(zero, -torch.inf))
    pre, acc = [empty], empty
    for j in range(group - 1):
        acc = combine(acc, (lp[..., j], lm[..., j]))
        pre.append(acc)
    suf, acc = [empty], empty
    for j in range(group - 1, 0, -1):
        acc = combine(acc, (lp[..., j], lm[..., j]))
        suf.append(acc)
    suf = suf[::-1]
    rest = [combine(pre[i], suf[i]) for i in range(group)]
    rest_p = torch.stack([r[0] for r in rest], -1)
    rest_m = torch.stack([r[1] for r in rest], -1)
    want_p, want_m = (rest_p, rest_m) if c_pos else (rest_m, rest_p)
    return torch.stack([lm + want_m, lp + want_p], -1).reshape(L.shape)


def parity_denoiser(group: int):
    """Exact posterior mean under the uniform distribution on even-parity groups, binary codes, numerically
    stable: the science document's closed form computed in log space (:func:`_parity_group_logweights` with
    L = (-a, a), a = y / s^2), E[x_i] = tanh((l_+ - l_-) / 2)."""
    def D(y, sigma):
        yf = y.to(torch.float64)
        a = (yf / _col(sigma, yf) ** 2).reshape(y.shape[0], -1)
        u = _parity_group_logweights(torch.stack([-a, a], -1), group)
        return torch.tanh((u[..., 1] - u[..., 0]) / 2).reshape(y.shape).to(y.dtype)
    return D


def memorizing_denoiser(train_x: torch.Tensor, chunk: int = 8192, max_elems: int = 1 << 26):
    """Posterior mean under the empirical distribution of ``train_x`` (N, P) (docs/science.md: softmax over n
    of -||y - x_n||^2 / (2 s^2), weights times x_n), exact in float32 and chunked over N with an online
    softmax, so memory is O(B * chunk) for any N.

    Speed (N = 1e5 on a CPU, see benchmarks/bench_dsm.py): the logits come from ONE matmul of augmented
    rows, [y / s^2, 1 / s^2] . [x_n, -|x_n|^2 / 2] (the row constant -|y|^2 / (2 s^2) cancels in the
    softmax), into a reused buffer; the shifted logits are clamped at -80 before the in-place exp
    (exp of very negative floats takes a slow path on CPUs; e^-80 ~ 2e-35 is below float32 resolution
    of a sum that contains the maximum's weight 1, so the result is unchanged). At most ``max_elems``
    logits are held at once (the chunk shrinks for large batches)."""
    train_x = torch.as_tensor(train_x, dtype=torch.float32).contiguous()
    keys = torch.cat([train_x, -0.5 * (train_x ** 2).sum(1, keepdim=True)], 1).contiguous()
    cache: dict = {}

    def on(device):
        if device not in cache:
            cache.clear()  # keep one device copy
            cache[device] = (train_x.to(device), keys.to(device))
        return cache[device]

    def D(y, sigma):
        X, K = on(y.device)
        s2 = _col(sigma, y).to(torch.float32) ** 2
        yf = y.to(torch.float32)
        B, N = y.shape[0], X.shape[0]
        q = torch.cat([yf / s2, (1.0 / s2).expand(B, 1)], 1)
        step = max(1, min(chunk, N, max_elems // max(B, 1)))
        buf = torch.empty((B, step), device=y.device)
        m = torch.full((B, 1), -torch.inf, device=y.device)
        z = torch.zeros((B, 1), device=y.device)
        acc = torch.zeros_like(yf)
        for k in range(0, N, step):
            xk, kk = X[k:k + step], K[k:k + step]
            logit = buf[:, :xk.shape[0]]
            torch.mm(q, kk.T, out=logit)  # -||y - x_n||^2 / (2 s^2) + a row constant
            m_new = torch.maximum(m, logit.amax(1, keepdim=True))
            w = logit.sub_(m_new).clamp_(min=-80.0).exp_()
            scale = torch.exp(m - m_new)
            z.mul_(scale).add_(w.sum(1, keepdim=True))
            acc.mul_(scale).addmm_(w, xk)
            m = m_new
        return (acc / z).to(y.dtype)
    return D


# ----------------------------------------------------------------------------- every rule, every encoding
def symbol_logits(y: torch.Tensor, sigma, codes) -> torch.Tensor:
    """(B, D, K) float64 per-cell symbol log-weights L[d, k] = (<y_d, c_k> - |c_k|^2 / 2) / s^2 of
    model-space points y (B, D * C) (cell-major: y[:, d*C + j] is channel j of cell d) under the codes
    (K, C) (module docstring)."""
    codes = (codes.to(device=y.device, dtype=torch.float64) if torch.is_tensor(codes)
             else torch.as_tensor(np.asarray(codes), dtype=torch.float64, device=y.device))
    K, C = codes.shape
    yf = y.to(torch.float64).reshape(y.shape[0], -1, C)
    s2 = _col(sigma, yf).reshape(-1, 1, 1) ** 2
    return (yf @ codes.T - 0.5 * (codes ** 2).sum(1)) / s2


def _normalize(u: torch.Tensor) -> torch.Tensor:
    """Log-probabilities over the last axis from unnormalized log-weights; uniform where all are -inf."""
    z = torch.logsumexp(u, -1, keepdim=True)
    out = u - z
    bad = ~torch.isfinite(z).expand_as(u)
    return torch.where(bad, torch.full_like(u, -math.log(u.shape[-1])), out)


def _count_lines(l0: torch.Tensor, l1: torch.Tensor, allowed) -> tuple[torch.Tensor, torch.Tensor]:
    """Lines of w bits whose count of ones must be in ``allowed``: from per-bit log-weights l0, l1
    (B, lines, w), the log partition function (B, lines) and the unnormalized log marginals
    (B, lines, w, 2), exact, by a forward-backward pass over the count c of ones:
    F_{j+1}[c] = logaddexp(F_j[c] + l0_j, F_j[c-1] + l1_j), F_0 = [0, -inf, ...];
    R_w[c] = 0 if c is allowed else -inf, R_j[c] = logaddexp(l0_j + R_{j+1}[c], l1_j + R_{j+1}[c+1]);
    log P(bit j = v) = logsumexp_c F_j[c] + l_v,j + R_{j+1}[c + v] - log Z."""
    B, n, w = l0.shape
    ninf = torch.tensor(-torch.inf, dtype=l0.dtype, device=l0.device)
    pad = ninf.expand(B, n, 1)
    F = [torch.cat([torch.zeros_like(pad), ninf.expand(B, n, w)], -1)]      # (B, n, w+1) counts 0..w
    for j in range(w):
        f = F[-1]
        F.append(torch.logaddexp(f + l0[..., j:j + 1], torch.cat([pad, f[..., :-1]], -1) + l1[..., j:j + 1]))
    ok = torch.zeros(w + 1, dtype=torch.bool, device=l0.device)
    ok[[k for k in allowed if 0 <= k <= w]] = True
    R = [None] * (w + 1)
    R[w] = torch.where(ok, torch.zeros_like(F[0]), ninf)
    for j in range(w - 1, -1, -1):
        r = R[j + 1]
        R[j] = torch.logaddexp(l0[..., j:j + 1] + r, l1[..., j:j + 1] + torch.cat([r[..., 1:], pad], -1))
    up = [torch.cat([R[j + 1][..., 1:], pad], -1) for j in range(w)]      # R_{j+1}[c + 1]
    u = torch.stack([torch.stack([torch.logsumexp(F[j] + l0[..., j:j + 1] + R[j + 1], -1),
                                  torch.logsumexp(F[j] + l1[..., j:j + 1] + up[j], -1)], -1)
                     for j in range(w)], -2)
    return torch.logsumexp(F[w] + R[w], -1), u


def _exclusive_sums(x: torch.Tensor) -> torch.Tensor:
    """out[..., r] = sum of x[..., r'] over r' != r (no subtraction, so -inf entries are safe)."""
    zero = torch.zeros_like(x[..., :1])
    pre = torch.cat([zero, torch.cumsum(x, -1)[..., :-1]], -1)
    suf = torch.cat([torch.cumsum(x.flip(-1), -1)[..., :-1].flip(-1), zero], -1)
    return pre + suf


def _row_perm_logweights(L: torch.Tensor, n: int, chunk: int = 64) -> torch.Tensor:
    """Rows that are permutations of 0..n-1: unnormalized log marginals (B, n*n, n) from L (B, n*n, n),
    summing over each row's n! permutations (weight of a permutation: sum_j L[row, j, perm_j])."""
    perms = torch.as_tensor(np.array(list(itertools.permutations(range(n)))), device=L.device)   # (n!, n)
    cols = torch.arange(n, device=L.device)
    # for cell j and symbol s, the permutations with perm_j = s: (n, n, (n-1)!)
    idx = torch.stack([torch.stack([torch.nonzero(perms[:, j] == v)[:, 0] for v in range(n)]) for j in range(n)])
    out = []
    for lo in range(0, L.shape[0], chunk):
        Lr = L[lo:lo + chunk].reshape(-1, n, n, n)                          # (b, row, cell, symbol)
        W = Lr[:, :, cols, perms].sum(-1)                                    # (b, row, n!)
        out.append(torch.logsumexp(W[:, :, idx], -1))                        # (b, row, cell, symbol)
    return torch.cat(out).reshape(L.shape)


def has_closed_form(rule) -> bool:
    """Whether :func:`rule_log_marginals` has an exact closed form for ``rule`` (None: the cube) that is
    also the training distribution (a sampler restricted to part of the valid set has none)."""
    if rule is not None and restricted_support(rule):
        return False
    if rule is None or isinstance(rule, (GroupParity, ExactK, RowCountRule)):
        return True
    return isinstance(rule, RowLatin) and rule.n <= MAX_PERM_N


def rule_log_marginals(rule, L: torch.Tensor) -> torch.Tensor:
    """(B, D, K) log P(cell_d = k | evidence) under the uniform prior on ``rule``'s valid set (``None``:
    on all K^D images) and independent per-cell evidence exp(L[d, k]) (L (B, D, K), -inf allowed),
    exact (module docstring). Uniform over the symbols where no valid image agrees with the evidence.
    Rules without a closed form (:func:`has_closed_form`) raise TwoclocksError."""
    L = torch.as_tensor(L).to(torch.float64)
    B = L.shape[0]
    if rule is None:
        return torch.log_softmax(L, -1)
    if L.shape[1:] != (rule.D, rule.n_symbols):
        raise ValueError(f"expected (B, {rule.D}, {rule.n_symbols}) log-weights, got {tuple(L.shape)}")
    if isinstance(rule, GroupParity):
        return _normalize(_parity_group_logweights(L, rule.G))
    if isinstance(rule, ExactK):
        _, u = _count_lines(L[..., 0].reshape(B, 1, -1), L[..., 1].reshape(B, 1, -1), (rule.k,))
        return _normalize(u.reshape(B, rule.D, 2))
    if isinstance(rule, GlobalK):   # uniform on the union over K of the row-K sets (disjoint)
        l0, l1 = (L[..., v].reshape(B, rule.height, rule.width) for v in (0, 1))
        terms = []
        for k in rule.ks:
            z, u = _count_lines(l0, l1, (k,))                     # (B, h), (B, h, w, 2)
            terms.append(_exclusive_sums(z)[..., None, None] + u)  # times the other rows' sums
        return _normalize(torch.logsumexp(torch.stack(terms), 0).reshape(B, rule.D, 2))
    if isinstance(rule, RowCountRule):   # row-K, row-variable-K: independent rows
        l0, l1 = (L[..., v].reshape(B, rule.height, rule.width) for v in (0, 1))
        _, u = _count_lines(l0, l1, rule.ks)
        return _normalize(u.reshape(B, rule.D, 2))
    if isinstance(rule, RowLatin) and rule.n <= MAX_PERM_N:
        return _normalize(_row_perm_logweights(L, rule.n))
    raise TwoclocksError(f"no closed-form posterior for rule {rule.name!r}")


def posterior_denoiser(rule, encoding):
    """E[x | y] under the uniform prior on ``rule``'s valid set (``None``: on all K^D images) for any
    encoding: sum_k P(cell_d = k | y) c_k with the marginals of :func:`rule_log_marginals`."""
    codes_np = np.asarray(encoding.codes, dtype=np.float64)
    cache: dict = {}

    def D(y, sigma):
        if y.device not in cache:
            cache.clear()
            cache[y.device] = torch.as_tensor(codes_np, device=y.device)
        codes = cache[y.device]
        p = rule_log_marginals(rule, symbol_logits(y, sigma, codes)).exp()
        return (p @ codes).reshape(y.shape).to(y.dtype)
    return D


def _binary_codes(encoding) -> bool:
    c = np.asarray(encoding.codes, dtype=np.float64)
    return c.shape == (2, 1) and np.array_equal(c[:, 0], [-1.0, 1.0])


def infer_encoding(rule, train_x):
    """The encoding of model-space data ``train_x`` (n, P) for ``rule``: one channel per cell -> scalar
    (binary for 2 symbols, the same codes), K channels -> one-hot, zero-mean when values are negative.
    TwoclocksError when the data is not made of that encoding's codes."""
    x = np.asarray(train_x, dtype=np.float64)
    K, D = rule.n_symbols, rule.D
    if x.ndim != 2 or x.shape[1] % D:
        raise TwoclocksError(f"train data of shape {x.shape} does not fit rule {rule!r} ({D} cells)")
    C = x.shape[1] // D
    if C == 1:
        enc = make_encoding("scalar", K)
    elif C == K:
        enc = make_encoding("onehot", K, zero_mean=bool(x.size and x.min() < 0))
    else:
        raise TwoclocksError(f"train data has {C} channels per cell; rule {rule!r} has {K} symbols")
    cells = x.reshape(len(x), D, C)
    dist = np.abs(cells[:, :, None, :] - enc.codes[None, None]).max(-1).min(-1) if len(x) else np.zeros(0)
    if dist.size and dist.max() > 1e-5:
        raise TwoclocksError(f"cannot tell the encoding of the train data for rule {rule!r}; pass encoding=")
    return enc


REFERENCES = ("ideal-rule", "ideal-cube", "memorize")


def reference_denoiser(name: str, rule, train_x, encoding=None):
    """The named reference denoiser (module docstring) for a run's rule, train set (model space) and
    encoding (``None``: inferred from ``train_x``, :func:`infer_encoding`). Exact for every rule and
    encoding, or refused with a TwoclocksError that says which reference to use instead."""
    if name not in REFERENCES:
        raise TwoclocksError(f"unknown reference denoiser {name!r}; choose one of {', '.join(REFERENCES)}")
    if name == "memorize":
        return memorizing_denoiser(torch.as_tensor(np.asarray(train_x)))
    encoding = infer_encoding(rule, train_x) if encoding is None else encoding
    binary = _binary_codes(encoding)
    if name == "ideal-cube":
        return hypercube_denoiser() if binary else posterior_denoiser(None, encoding)
    if binary and isinstance(rule, GroupParity):
        return parity_denoiser(rule.G)
    if has_closed_form(rule):
        return posterior_denoiser(rule, encoding)
    support = support_for_reference(rule, "ideal-rule reference")
    return memorizing_denoiser(torch.as_tensor(encoding.encode(support)))
