"""Model conventions of other code, converted to the toolkit's (docs/your_own_checkpoints.md).

Diffusion: every probe asks for the EDM denoiser D(x, s) on the toolkit's variance-exploding axis
(x = x0 + s n, x0 in the run's encoding, docs/science.md#edm). A foreign network is converted in four
steps, each one equation:

1. data scaling (``"data_scale": [a, b]``, a > 0): the foreign data are x0' = a x0 + b (e.g. [0, 1]
   images from +-1 cells: a = b = 1/2), so x' = a x + b and s' = a s, and D = (D' - b) / a;
2. layout (``"layout"``): ``flat`` (B, P) as the toolkit, or ``image`` (B, C, H, W) (cell-major channels);
3. the network's parameterization, on the foreign scale:
   - ``edm-D``: D'(x', s') = net(x', s');
   - ``edm-F``: D' = c_skip x' + c_out net(c_in x', c_noise), EDM preconditioning with ``sigma_data``
     (the package's own :class:`twoclocks.training.edm.Preconditioned`);
   - ``eps`` / ``v`` / ``x0`` under a variance-preserving (VP) schedule: alpha_bar = 1 / (1 + s'^2),
     x_vp = x' / sqrt(1 + s'^2) = sqrt(alpha_bar) x0' + sqrt(1 - alpha_bar) n, the network called as
     net(x_vp, t) with t the schedule's time of that alpha_bar, and
       eps: D' = x' - s' eps_hat,   v: D' = sqrt(alpha_bar) x_vp - sqrt(1 - alpha_bar) v_hat,   x0: D' = x0_hat;
4. the schedule's time t(s') (``"schedule"``):
   - ``ddpm``: discrete betas (``beta_schedule`` linear / scaled_linear / squaredcos_cap_v2,
     ``beta_start``, ``beta_end``, ``num_train_timesteps``), s_t = sqrt((1 - alpha_bar_t) / alpha_bar_t);
     t = linear interpolation of ln s' between the two neighbouring integer timesteps (``"timestep":
     "interpolate"``, the default: a fractional t, which sinusoidal embeddings accept) or the nearest
     one (``"nearest"``); s' outside [s_0, s_{T-1}] is clamped to the end timesteps (the network never
     saw other levels), while the conversion of step 3 uses the true s' (so eps stays exact as s -> 0);
   - ``cosine``: continuous t in [0, 1], alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t + s) / (1 + s) pi / 2);
   - ``vp-linear``: continuous VP-SDE, alpha_bar(t) = exp(-(beta_min t + (beta_max - beta_min) t^2 / 2));
   ``"t_scale"`` multiplies the continuous t (e.g. 1000 for networks embedding t x 1000).

Autoregressive (``"type": "logits"``): the network maps foreign token ids (B, T) to logits (B, T, V);
``token_map[k]`` is the foreign id of the toolkit's symbol k (identity by default), ``bos`` the id fed
before the first cell (``null``: no start token, the first cell is then uniform over the K symbols).
The logits of the K mapped ids are the toolkit's logits (softmax over them: the probability the model
puts outside the toolkit's symbols is renormalized away). ``"forward": "nanogpt"`` calls
net(idx, targets=-1s), which makes nanoGPT's ``GPT`` return logits at every position.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from twoclocks import TwoclocksError
from twoclocks.training.edm import Preconditioned

__all__ = ["DIFFUSION_TYPES", "AR_TYPES", "SCHEDULES", "check_convention_dict", "is_diffusion", "VPSchedule",
           "ForeignDenoiser", "ForeignLogits", "wrap_network", "network_output", "ddpm_alpha_bar"]

DIFFUSION_TYPES = ("edm-D", "edm-F", "eps", "v", "x0")
AR_TYPES = ("logits",)
SCHEDULES = ("ddpm", "cosine", "vp-linear")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
_DIFF_KEYS = {"type", "layout", "data_scale", "schedule", "sigma_data", "output"}
_AR_KEYS = {"type", "token_map", "bos", "forward", "output"}


def is_diffusion(conv: dict) -> bool:
    return conv.get("type") in DIFFUSION_TYPES


def check_convention_dict(conv: dict, where: str = "config.json") -> None:
    """One-line error for a malformed convention (type, keys, schedule, scaling)."""
    kind = conv.get("type")
    if kind not in DIFFUSION_TYPES + AR_TYPES:
        raise TwoclocksError(f"{where}: convention type {kind!r} is not one of {', '.join(DIFFUSION_TYPES + AR_TYPES)}")
    allowed = _DIFF_KEYS if kind in DIFFUSION_TYPES else _AR_KEYS
    unknown = set(conv) - allowed
    if unknown:
        raise TwoclocksError(f"{where}: convention {kind} has unknown key(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(sorted(allowed))}")
    if kind in AR_TYPES:
        if conv.get("forward", "tokens") not in ("tokens", "nanogpt"):
            raise TwoclocksError(f"{where}: convention.forward must be tokens or nanogpt, got {conv.get('forward')!r}")
        tm = conv.get("token_map")
        if tm is not None and (not isinstance(tm, list) or not all(isinstance(v, int) and v >= 0 for v in tm)
                               or len(set(tm)) != len(tm)):
            raise TwoclocksError(f"{where}: convention.token_map must be a list of distinct token ids, one per "
                                 f"symbol, got {tm!r}")
        bos = conv.get("bos")
        if bos is not None and (not isinstance(bos, int) or bos < 0):
            raise TwoclocksError(f"{where}: convention.bos must be a token id or null, got {bos!r}")
        return
    if conv.get("layout", "flat") not in ("flat", "image"):
        raise TwoclocksError(f"{where}: convention.layout must be flat or image, got {conv.get('layout')!r}")
    scale = conv.get("data_scale", [1.0, 0.0])
    if (not isinstance(scale, (list, tuple)) or len(scale) != 2
            or not all(isinstance(v, (int, float)) for v in scale) or not scale[0] > 0):
        raise TwoclocksError(f"{where}: convention.data_scale must be [a, b] with a > 0 (foreign data = a x + b, "
                             f"e.g. [0.5, 0.5] for [0, 1] images), got {scale!r}")
    if kind == "edm-F" and not float(conv.get("sigma_data", 0.5)) > 0:
        raise TwoclocksError(f"{where}: convention.sigma_data must be positive")
    if kind in ("eps", "v", "x0"):
        if "schedule" not in conv:
            raise TwoclocksError(f"{where}: convention {kind} needs a 'schedule' ({', '.join(SCHEDULES)}), e.g. "
                                 '{"type": "ddpm", "num_train_timesteps": 1000, "beta_start": 0.0001, '
                                 '"beta_end": 0.02, "beta_schedule": "linear"}')
        VPSchedule.from_dict(conv["schedule"], where)
    elif "schedule" in conv:
        raise TwoclocksError(f"{where}: convention {kind} takes no schedule (it is conditioned on sigma)")


def ddpm_alpha_bar(n: int, beta_start: float, beta_end: float, beta_schedule: str) -> np.ndarray:
    """alpha_bar_t = prod_{i <= t} (1 - beta_i), t = 0..n-1, for the DDPM beta schedules (float64)."""
    if beta_schedule == "linear":
        betas = np.linspace(beta_start, beta_end, n, dtype=np.float64)
    elif beta_schedule == "scaled_linear":
        betas = np.linspace(beta_start ** 0.5, beta_end ** 0.5, n, dtype=np.float64) ** 2
    else:  # squaredcos_cap_v2 (Nichol & Dhariwal 2021), betas capped at 0.999
        f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        betas = np.array([min(1 - f((i + 1) / n) / f(i / n), 0.999) for i in range(n)], dtype=np.float64)
    return np.cumprod(1.0 - betas)


class VPSchedule:
    """The time t of a VP schedule at a noise level s (alpha_bar(t) = 1 / (1 + s^2)), and back."""

    def __init__(self, kind: str, **p):
        self.kind, self.p = kind, p
        if kind == "ddpm":
            abar = ddpm_alpha_bar(p["num_train_timesteps"], p["beta_start"], p["beta_end"], p["beta_schedule"])
            self.log_sigmas = torch.as_tensor(0.5 * np.log((1 - abar) / abar))  # increasing in t

    @classmethod
    def from_dict(cls, d, where: str = "config.json") -> "VPSchedule":
        if not isinstance(d, dict) or d.get("type") not in SCHEDULES:
            raise TwoclocksError(f"{where}: convention.schedule.type must be one of {', '.join(SCHEDULES)}, "
                                 f"got {d!r}")
        kind = d["type"]
        try:
            if kind == "ddpm":
                p = {"num_train_timesteps": int(d.get("num_train_timesteps", 1000)),
                     "beta_start": float(d.get("beta_start", 1e-4)), "beta_end": float(d.get("beta_end", 0.02)),
                     "beta_schedule": d.get("beta_schedule", "linear"), "timestep": d.get("timestep", "interpolate")}
                if p["beta_schedule"] not in BETA_SCHEDULES:
                    raise ValueError(f"beta_schedule must be one of {', '.join(BETA_SCHEDULES)}")
                if p["timestep"] not in ("interpolate", "nearest"):
                    raise ValueError("timestep must be interpolate or nearest")
                if p["num_train_timesteps"] < 2 or not 0 < p["beta_start"] <= p["beta_end"] < 1:
                    raise ValueError("need num_train_timesteps >= 2 and 0 < beta_start <= beta_end < 1")
            elif kind == "cosine":
                p = {"s": float(d.get("s", 0.008)), "t_scale": float(d.get("t_scale", 1.0))}
            else:
                p = {"beta_min": float(d.get("beta_min", 0.1)), "beta_max": float(d.get("beta_max", 20.0)),
                     "t_scale": float(d.get("t_scale", 1.0))}
                if not 0 < p["beta_min"] <= p["beta_max"]:
                    raise ValueError("need 0 < beta_min <= beta_max")
        except (TypeError, ValueError) as e:
            raise TwoclocksError(f"{where}: convention.schedule ({kind}): {e}") from None
        extra = set(d) - {"type", *p}
        if extra:
            raise TwoclocksError(f"{where}: convention.schedule ({kind}) has unknown key(s) {sorted(extra)}")
        return cls(kind, **p)

    def time(self, sigma: torch.Tensor) -> torch.Tensor:
        """t(s) (float64, same shape as ``sigma``): the network's conditioning at noise level s."""
        s = sigma.double()
        if self.kind == "ddpm":
            ls = self.log_sigmas.to(s.device)
            n = ls.numel()
            x = s.clamp_min(1e-30).log().clamp(ls[0], ls[-1])
            i = torch.searchsorted(ls, x).clamp(1, n - 1)
            lo, hi = ls[i - 1], ls[i]
            t = (i - 1).double() + (x - lo) / (hi - lo)
            return t.round() if self.p["timestep"] == "nearest" else t
        abar = 1.0 / (1.0 + s * s)
        if self.kind == "cosine":
            c = self.p["s"]
            f0 = math.cos(c / (1 + c) * math.pi / 2) ** 2
            t = (1 + c) * (2 / math.pi) * torch.arccos((abar * f0).sqrt().clamp(0, 1)) - c
        else:
            b0, b1 = self.p["beta_min"], self.p["beta_max"]
            q = -abar.log()  # = b0 t + (b1 - b0) t^2 / 2
            t = q / b0 if b1 == b0 else (-b0 + (b0 * b0 + 2 * (b1 - b0) * q).sqrt()) / (b1 - b0)
        return t.clamp(0, 1) * self.p["t_scale"]

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """s(t), the inverse of :meth:`time` on the schedule's range (float64; a re-parameterized
        network in the tests, or your own code, uses it to go from t back to s)."""
        t = torch.as_tensor(t).double()
        if self.kind == "ddpm":
            ls = self.log_sigmas.to(t.device)
            n = ls.numel()
            tc = t.clamp(0, n - 1)
            i = tc.floor().long().clamp(0, n - 2)
            w = tc - i.double()
            return (ls[i] * (1 - w) + ls[i + 1] * w).exp()
        u = t / self.p["t_scale"]
        if self.kind == "cosine":
            c = self.p["s"]
            f = lambda v: torch.cos((v + c) / (1 + c) * math.pi / 2) ** 2  # noqa: E731
            abar = f(u) / f(torch.zeros_like(u))
        else:
            b0, b1 = self.p["beta_min"], self.p["beta_max"]
            abar = torch.exp(-(b0 * u + (b1 - b0) * u * u / 2))
        return ((1 - abar) / abar).sqrt()


def network_output(out, what: str = "sample") -> torch.Tensor:
    """The tensor a network returned: itself, ``.sample`` (diffusers), ``.logits`` (transformers), a
    dict's 'sample' / 'logits', or the first element of a tuple (nanoGPT's (logits, loss))."""
    if isinstance(out, torch.Tensor):
        return out
    for name in (what, "sample", "logits"):
        if hasattr(out, name) and isinstance(getattr(out, name), torch.Tensor):
            return getattr(out, name)
        if isinstance(out, dict) and isinstance(out.get(name), torch.Tensor):
            return out[name]
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TwoclocksError(f"the network returned {type(out).__name__}, not a tensor (or an object with .{what}, or "
                         "a tuple starting with one)")


def _col(sigma, x: torch.Tensor) -> torch.Tensor:
    s = torch.as_tensor(sigma, dtype=torch.float64, device=x.device).reshape(-1)
    return s.expand(x.shape[0]) if s.numel() == 1 else s


class _Layout(nn.Module):
    """Calls ``net(x, c)`` with x in the network's layout: flat (B, P), or image (B, C, H, W) from the
    cell-major flat layout (x[:, d * C + c] is channel c of cell d = row * W + column)."""

    def __init__(self, net: nn.Module, layout: str, shape: tuple[int, int, int]):
        super().__init__()
        self.net, self.layout, self.shape = net, layout, shape

    def forward(self, x, c):
        if self.layout == "flat":
            return network_output(self.net(x, c)).reshape(x.shape[0], -1)
        h, w, ch = self.shape
        img = x.reshape(x.shape[0], h, w, ch).permute(0, 3, 1, 2).contiguous()
        out = network_output(self.net(img, c))
        return out.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class ForeignDenoiser(nn.Module):
    """D(x, s) on the toolkit's axis from a foreign diffusion network (module docstring, steps 1-4)."""

    def __init__(self, net: nn.Module, conv: dict, shape: tuple[int, int, int]):
        super().__init__()
        self.kind = conv["type"]
        self.a, self.b = (float(v) for v in conv.get("data_scale", [1.0, 0.0]))
        inner = _Layout(net, conv.get("layout", "flat"), shape)
        self.net = Preconditioned(inner, float(conv.get("sigma_data", 0.5))) if self.kind == "edm-F" else inner
        self.schedule = VPSchedule.from_dict(conv["schedule"]) if "schedule" in conv else None

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = _col(sigma, x)
        xf = self.a * x + self.b                     # 1. foreign data scale
        sf = self.a * s                              #    and its noise level
        if self.kind in ("edm-D", "edm-F"):
            d = self.net(xf, sf.to(x.dtype))         # 3. edm-F: Preconditioned (c_skip, c_out, c_in, c_noise)
        else:
            abar = 1.0 / (1.0 + sf * sf)             # 3. VP: alpha_bar = 1 / (1 + s'^2)
            x_vp = xf / (1.0 + sf * sf).sqrt()[:, None].to(x.dtype)
            t = self.schedule.time(sf)               # 4. the schedule's time of that alpha_bar
            out = self.net(x_vp, t.to(x.dtype)).to(x.dtype)
            if self.kind == "eps":
                d = xf - sf[:, None].to(x.dtype) * out
            elif self.kind == "v":
                d = abar.sqrt()[:, None].to(x.dtype) * x_vp - (1.0 - abar).sqrt()[:, None].to(x.dtype) * out
            else:
                d = out
        return (d - self.b) / self.a                 # back to the toolkit's scale


class ForeignLogits(nn.Module):
    """The toolkit's autoregressive interface from a foreign language model: toolkit tokens (B, T)
    ``[start, c_1, .., c_{T-1}]`` -> logits (B, T, K) of the next cell (module docstring)."""

    def __init__(self, net: nn.Module, conv: dict, n_symbols: int):
        super().__init__()
        self.net, self.K = net, int(n_symbols)
        tm = conv.get("token_map")
        if tm is not None and len(tm) != self.K:
            raise TwoclocksError(f"convention.token_map has {len(tm)} ids but the rule has {self.K} symbols "
                                 "(one foreign id per symbol 0..K-1)")
        self.register_buffer("token_map", torch.as_tensor(tm if tm is not None else list(range(self.K)),
                                                          dtype=torch.long), persistent=False)
        self.bos = conv.get("bos")
        self.nanogpt = conv.get("forward", "tokens") == "nanogpt"

    def _call(self, ids):
        if self.nanogpt:
            return network_output(self.net(ids, targets=torch.full_like(ids, -1)), "logits")
        return network_output(self.net(ids), "logits")

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n = tokens.shape
        cells = self.token_map.to(tokens.device)[tokens[:, 1:].clamp(0, self.K - 1)]
        if self.bos is not None:
            ids = torch.cat([torch.full((b, 1), self.bos, dtype=torch.long, device=tokens.device), cells], 1)
            logits = self._call(ids)
        else:  # no start token: the first cell is uniform, the network sees the cells only
            first = torch.zeros((b, 1, self.K), device=tokens.device)
            if n == 1:
                return first
            logits = torch.cat([first, self._call(cells)[..., self.token_map.to(tokens.device)].float()], 1)
            return logits
        if logits.shape[-1] <= int(self.token_map.max()):
            raise TwoclocksError(f"the network returns logits over {logits.shape[-1]} tokens but the token map "
                                 f"uses id {int(self.token_map.max())}; fix convention.token_map")
        return logits[..., self.token_map.to(tokens.device)]


def wrap_network(net: nn.Module, conv: dict, rule, encoding) -> nn.Module:
    """The toolkit-facing module of a foreign network: :class:`ForeignDenoiser` (forward(x, s)) or
    :class:`ForeignLogits` (forward(tokens), attribute K)."""
    if is_diffusion(conv):
        return ForeignDenoiser(net, conv, (rule.height, rule.width, encoding.channels))
    return ForeignLogits(net, conv, rule.n_symbols)
