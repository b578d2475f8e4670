"""Exact ideal denoisers E[x | y = x + s n] (SPEC.md), with the denoiser call signature D(y, sigma).

- hypercube (uniform on {-1,1}^D): E[x_i | y] = tanh(y_i / s^2);
- group parity: per group, with t_j = tanh(y_j / s^2) and c = (-1)^G,
  E[x_i | y] = (t_i + c prod_{j != i} t_j) / (1 + c prod_j t_j);
- memorizing (the empirical train distribution): sum_n softmax_n(-||y - x_n||^2 / (2 s^2)) x_n.

They are the test oracles for the sampler and probes and the references of the DSM spectrum.
"""
from __future__ import annotations

import numpy as np
import torch

from twoclocks import TwoclocksError

__all__ = ["hypercube_denoiser", "parity_denoiser", "parity_denoiser_closed_form",
           "memorizing_denoiser", "REFERENCES", "reference_denoiser"]


def _col(sigma, y):
    s = torch.as_tensor(sigma, dtype=y.dtype, device=y.device)
    return s.reshape(-1, 1) if s.numel() > 1 else s.reshape(1, 1)


def hypercube_denoiser():
    """Uniform prior on the cube's vertices: each coordinate independent, E = tanh(y / s^2)."""
    def D(y, sigma):
        return torch.tanh(y / _col(sigma, y) ** 2)
    return D


def parity_denoiser_closed_form(group: int):
    """SPEC.md's formula verbatim. Loses precision (0/0) when |y|/s^2 is large at invalid vertices;
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


def parity_denoiser(group: int):
    """Exact posterior mean under the uniform distribution on even-parity groups, numerically stable.

    Same quantity as SPEC.md's closed form, computed in log space: for each group and each bit i,
    the log partition functions of the other bits with product +1 and -1 (prefix/suffix scans of
    log-sum-exp pairs), then E[x_i] = tanh((l_+ - l_-) / 2) with
    l_+ = a_i + log Z_rest[prod = c], l_- = -a_i + log Z_rest[prod = -c], a = y / s^2, c = (-1)^G.
    """
    c_pos = group % 2 == 0  # c = +1 for even G

    def combine(p, q):  # (log Z[+1], log Z[-1]) of two independent sets -> of their union
        return (torch.logaddexp(p[0] + q[0], p[1] + q[1]), torch.logaddexp(p[0] + q[1], p[1] + q[0]))

    def D(y, sigma):
        yf = y.to(torch.float64)
        a = (yf / _col(sigma, yf) ** 2).reshape(y.shape[0], -1, group)
        single = (a, -a)  # one bit: log weight of x = +1 (product +1) and x = -1 (product -1)
        zero = torch.zeros_like(a[..., 0])
        empty = (zero, torch.full_like(zero, -torch.inf))
        pre, acc = [empty], empty
        for j in range(group - 1):
            acc = combine(acc, (single[0][..., j], single[1][..., j]))
            pre.append(acc)
        suf, acc = [empty], empty
        for j in range(group - 1, 0, -1):
            acc = combine(acc, (single[0][..., j], single[1][..., j]))
            suf.append(acc)
        suf = suf[::-1]
        rest_p = torch.stack([combine(pre[i], suf[i])[0] for i in range(group)], -1)
        rest_m = torch.stack([combine(pre[i], suf[i])[1] for i in range(group)], -1)
        want_p, want_m = (rest_p, rest_m) if c_pos else (rest_m, rest_p)
        out = torch.tanh(((a + want_p) - (-a + want_m)) / 2)
        return out.reshape(y.shape).to(y.dtype)
    return D


def memorizing_denoiser(train_x: torch.Tensor, chunk: int = 8192, max_elems: int = 1 << 26):
    """Posterior mean under the empirical distribution of ``train_x`` (N, P) (SPEC.md: softmax over n
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


REFERENCES = ("ideal-rule", "ideal-cube", "memorize")


def reference_denoiser(name: str, rule, train_x):
    """The named reference denoiser for a run's rule and train set (model space)."""
    if name == "ideal-cube":
        if rule.n_symbols != 2:
            raise TwoclocksError("the ideal-cube reference needs a binary rule")
        return hypercube_denoiser()
    if name == "memorize":
        return memorizing_denoiser(torch.as_tensor(np.asarray(train_x)))
    if name == "ideal-rule":
        from twoclocks.data.rules import GroupParity
        if not isinstance(rule, GroupParity):
            raise TwoclocksError(f"the ideal-rule denoiser has a closed form only for group parity, "
                                 f"not {rule.name!r}; use --denoiser memorize or ideal-cube")
        return parity_denoiser(rule.G)
    raise TwoclocksError(f"unknown reference denoiser {name!r}; choose one of {', '.join(REFERENCES)}")
