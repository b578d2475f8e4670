"""The run configuration: every default written out, with where each value comes from.

``STATUS`` says for each field whether its default is the paper's value ("paper") or our documented
assumption ("assumed"); a value the user set is marked "user" in the run's config.json.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from twoclocks import TwoclocksError

__all__ = ["TrainConfig", "STATUS", "SCHEMA_VERSION", "save_schedule", "PRESETS", "ARCH_DEFAULTS"]

SCHEMA_VERSION = 1

# (depth, hidden, heads) shared by DiT and GPT so the two arms are matched in size. mini is the paper's
# DiT-mini; S and B are the standard DiT sizes (assumed); nano sits between tiny and mini (assumed);
# tiny is for CPU demos and tests.
PRESETS = {
    "tiny": (2, 64, 2),
    "nano": (4, 128, 4),
    "mini": (6, 384, 6),
    "S": (12, 384, 6),
    "B": (12, 768, 12),
}

# Optimizer defaults per architecture (all assumed). DiT: Adam, lr 1e-4, no weight decay (SPEC.md).
# GPT: AdamW (SPEC.md); lr and weight decay are sweep axes in the paper with unknown values: lr 3e-4 and
# nanoGPT's weight decay 0.1 (on matrices and embeddings only) are our assumptions.
ARCH_DEFAULTS = {
    "dit": {"lr": 1e-4, "weight_decay": 0.0},
    "gpt": {"lr": 3e-4, "weight_decay": 0.1},
}


@dataclass
class TrainConfig:
    # data
    rule: str = "parity"
    side: int = 6
    group: int = 3
    rule_params: dict = field(default_factory=dict)  # extra parameters of other rule families
    encoding: str | None = None  # None: the rule's default (binary for bit rules, scalar for categorical)
    encoding_params: dict = field(default_factory=dict)
    n_train: int = 4096
    n_heldout: int = 4096
    n_hypercube: int = 4096
    n_noise: int = 2048
    data_seed: int | None = None  # None: same as seed
    # model
    arch: str = "dit"
    model: str = "mini"
    depth: int | None = None  # None: from the preset
    hidden: int | None = None
    heads: int | None = None
    # optimisation
    steps: int = 500_000
    batch: int = 256
    lr: float | None = None  # None: the arch's default (ARCH_DEFAULTS)
    weight_decay: float | None = None  # None: the arch's default; gpt always trains with AdamW
    beta1: float = 0.9
    beta2: float = 0.999
    # EDM
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    # sampler
    sampler_steps: int = 35
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    # bookkeeping
    saves_per_decade: int = 20
    resume_every: int = 2000
    log_every: int = 50
    seed: int = 0
    device: str = "auto"
    bf16: bool = True

    def __post_init__(self):
        if self.model not in PRESETS:
            raise TwoclocksError(f"unknown model preset {self.model!r}; choose one of {', '.join(PRESETS)}")
        d, h, n = PRESETS[self.model]
        self.depth = d if self.depth is None else self.depth
        self.hidden = h if self.hidden is None else self.hidden
        self.heads = n if self.heads is None else self.heads
        self.data_seed = self.seed if self.data_seed is None else self.data_seed
        from twoclocks.data import make_rule
        rule = make_rule(self.rule_spec())  # validates the rule's parameters early
        self.encoding = rule.default_encoding if self.encoding is None else self.encoding
        if self.arch not in ("dit", "gpt"):
            raise TwoclocksError(f"unknown architecture {self.arch!r}; choose dit or gpt")
        for name, value in ARCH_DEFAULTS[self.arch].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.weight_decay < 0:
            raise TwoclocksError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        for name in ("steps", "batch", "n_train", "n_noise", "sampler_steps", "saves_per_decade"):
            if getattr(self, name) < 1:
                raise TwoclocksError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise TwoclocksError(f"--lr must be positive, got {self.lr}")
        if self.hidden % self.heads or self.hidden % 4:
            raise TwoclocksError(f"hidden size {self.hidden} must be a multiple of 4 and of heads={self.heads}")

    def rule_spec(self) -> dict:
        """The rule's constructor parameters (``make_rule`` form): square images of ``side``."""
        if self.rule in ("latin", "row-latin", "sudoku"):
            return {"name": self.rule, "n": self.side, **self.rule_params}
        spec = {"name": self.rule, "height": self.side, "width": self.side, **self.rule_params}
        if self.rule == "parity":
            spec["group"] = self.group
        return spec

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise TwoclocksError(f"unknown config fields {sorted(unknown)}")
        return cls(**d)


# Where each default comes from (SPEC.md). GPT's lr / weight decay are sweep axes of unknown value.
STATUS = {
    "rule": "paper", "side": "paper", "group": "paper", "rule_params": "assumed", "encoding": "paper",
    "encoding_params": "assumed", "n_train": "paper", "n_heldout": "assumed", "n_hypercube": "assumed",
    "n_noise": "paper", "data_seed": "assumed", "arch": "paper", "model": "paper", "depth": "paper",
    "hidden": "paper", "heads": "paper", "steps": "paper", "batch": "assumed", "lr": "assumed",
    "weight_decay": "assumed", "beta1": "assumed", "beta2": "assumed", "sigma_data": "assumed",
    "p_mean": "assumed", "p_std": "assumed", "sampler_steps": "paper", "sigma_min": "paper",
    "sigma_max": "paper", "rho": "paper", "saves_per_decade": "assumed", "resume_every": "assumed",
    "log_every": "assumed", "seed": "assumed", "device": "assumed", "bf16": "assumed",
}


def status_of(cfg: TrainConfig, user_set: set[str]) -> dict:
    return {k: ("user" if k in user_set else STATUS.get(k, "assumed")) for k in cfg.to_dict()}


def save_schedule(total: int, per_decade: int = 20) -> list[int]:
    """Checkpoint steps: 0, then log-spaced (``per_decade`` per factor of 10), then ``total``."""
    k = int(math.ceil(math.log10(max(total, 1)) * per_decade)) + 1
    steps = {0, total}
    steps.update(int(round(10 ** (i / per_decade))) for i in range(k))
    return sorted(s for s in steps if s <= total)


def config_json(cfg: TrainConfig, user_set: set[str], version: str) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "twoclocks_version": version,
                       "config": cfg.to_dict(), "status": status_of(cfg, user_set)}, indent=2)
