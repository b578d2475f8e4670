"""The run configuration: every default written out, with where each value comes from.

``STATUS`` says for each field whether its default is the paper's value ("paper") or our documented
assumption ("assumed"), and ``SOURCES`` where in the paper (docs/science.md#values) the value is stated; a value
the user set is marked "user" in the run's config.json. The model size and the optimizer defaults
depend on the architecture, so :func:`status_of` labels ``model`` / ``depth`` / ``hidden`` / ``heads`` /
``lr`` / ``weight_decay`` per run (:data:`PRESET_STATUS`, :data:`ARCH_STATUS`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from twoclocks import TwoclocksError
from twoclocks.data import make_rule

__all__ = ["TrainConfig", "STATUS", "SOURCES", "SCHEMA_VERSION", "save_schedule", "PRESETS", "GPT_PRESETS",
           "ARCH_PRESETS", "PRESET_STATUS", "ARCH_DEFAULTS", "ARCH_STATUS", "preset_for", "status_of"]

SCHEMA_VERSION = 1

# (depth, hidden, heads) per architecture. The paper's sizes: DiT, Table 1 (App. B.1): DiT-nano 3/192/3
# (depth / hidden / heads), DiT-mini 6/384/6, DiT-S 12/384/6, DiT-B 12/768/12; GPT, Table 3 (App. B.5):
# GPT-nano 3 layers / 384 / 6 heads, GPT-mini 6/384/6 (= DiT-mini), GPT-B 12/768/12. The paper has no
# GPT-S: ours is DiT-S's size (assumed). "tiny" (2/64/2, both) is ours, for CPU demos and tests.
PRESETS = {  # DiT (kept under this name: the DiT table, (depth, hidden, heads))
    "tiny": (2, 64, 2),
    "nano": (3, 192, 3),
    "mini": (6, 384, 6),
    "S": (12, 384, 6),
    "B": (12, 768, 12),
}
GPT_PRESETS = {
    "tiny": (2, 64, 2),
    "nano": (3, 384, 6),
    "mini": (6, 384, 6),
    "S": (12, 384, 6),
    "B": (12, 768, 12),
}
ARCH_PRESETS = {"dit": PRESETS, "gpt": GPT_PRESETS}
#: (status, source) of each preset's size
PRESET_STATUS = {
    "dit": {"tiny": ("assumed", "ours: CPU demos and tests"), "nano": ("paper", "App. B.1, Table 1"),
            "mini": ("paper", "Sec. 2; App. B.1, Table 1"), "S": ("paper", "App. B.1, Table 1"),
            "B": ("paper", "App. B.1, Table 1")},
    "gpt": {"tiny": ("assumed", "ours: CPU demos and tests"), "nano": ("paper", "App. B.5, Table 3"),
            "mini": ("paper", "App. B.5, Table 3"),
            "S": ("assumed", "not in the paper (Table 3 has nano, mini, B): DiT-S's size"),
            "B": ("paper", "App. B.5, Table 3")},
}


def preset_for(arch: str, model: str) -> tuple[int, int, int]:
    """(depth, hidden, heads) of a model preset for an architecture."""
    table = ARCH_PRESETS.get(arch)
    if table is None:
        raise TwoclocksError(f"unknown architecture {arch!r}; choose dit or gpt")
    if model not in table:
        raise TwoclocksError(f"unknown model preset {model!r}; choose one of {', '.join(table)}")
    return table[model]


# Optimizer defaults per architecture. DiT: Adam, constant lr 1e-4 (App. B.1, C.7: the main setting), no
# weight decay (Sec. 2, App. B.1). GPT: AdamW (App. B.5); lr and weight decay are sweep axes in the paper
# (App. C.7, Figs. 26-27) whose baseline values are lost in our copy: lr 3e-4 and nanoGPT's weight decay
# 0.1 (on matrices and embeddings only) are our assumptions.
ARCH_DEFAULTS = {
    "dit": {"lr": 1e-4, "weight_decay": 0.0},
    "gpt": {"lr": 3e-4, "weight_decay": 0.1},
}
ARCH_STATUS = {
    "dit": {"lr": ("paper", "App. B.1; App. C.7 (main setting)"),
            "weight_decay": ("paper", "Sec. 2; App. B.1 (no weight decay)")},
    "gpt": {"lr": ("assumed", "App. B.5 / C.7: value not in our copy of the paper"),
            "weight_decay": ("assumed", "App. B.5 / C.7: value not in our copy of the paper")},
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
    compile: str = "auto"  # torch.compile the training step: auto (= off, opt-in), off, on, graphs (CUDA graphs)

    def __post_init__(self):
        if self.compile not in ("auto", "off", "on", "graphs"):
            raise TwoclocksError(f"--compile must be one of auto, off, on, graphs, got {self.compile!r}")
        if self.arch not in ARCH_PRESETS:
            raise TwoclocksError(f"unknown architecture {self.arch!r}; choose dit or gpt")
        d, h, n = preset_for(self.arch, self.model)
        self.depth = d if self.depth is None else self.depth
        self.hidden = h if self.hidden is None else self.hidden
        self.heads = n if self.heads is None else self.heads
        self.data_seed = self.seed if self.data_seed is None else self.data_seed
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


# Where each default comes from: "paper" (stated in the paper; section in SOURCES) or "assumed" (ours).
# model / depth / hidden / heads / lr / weight_decay depend on the architecture: status_of() labels them
# per run from PRESET_STATUS / ARCH_STATUS; the entries here are those of the default (dit, mini).
STATUS = {
    "rule": "paper", "side": "paper", "group": "paper", "rule_params": "assumed", "encoding": "paper",
    "encoding_params": "assumed", "n_train": "paper", "n_heldout": "assumed", "n_hypercube": "assumed",
    "n_noise": "paper", "data_seed": "assumed", "arch": "paper", "model": "paper", "depth": "paper",
    "hidden": "paper", "heads": "paper", "steps": "paper", "batch": "paper", "lr": "paper",
    "weight_decay": "paper", "beta1": "assumed", "beta2": "assumed", "sigma_data": "assumed",
    "p_mean": "paper", "p_std": "paper", "sampler_steps": "paper", "sigma_min": "paper",
    "sigma_max": "paper", "rho": "paper", "saves_per_decade": "assumed", "resume_every": "assumed",
    "log_every": "assumed", "seed": "assumed", "device": "assumed", "bf16": "assumed", "compile": "assumed",
}

#: Where the paper states each field's default (docs/science.md#config); "ours" for our choices.
SOURCES = {
    "rule": "Sec. 2; App. B.4 (rule families)",
    "side": "Sec. 2 (6x6 images, D = 36)",
    "group": "Sec. 2, Fig. 1 (G = 3 among 2..36)",
    "rule_params": "App. B.4 (K values per experiment); our defaults: exact-k K=18, row-k k=3, ks (2,3,4)",
    "encoding": "App. B.4 (binary bits for binary rules; scalar / one-hot for categorical)",
    "encoding_params": "App. B.4.2 ('optionally zero-mean'); default off is ours",
    "n_train": "Fig. 1 (N = 4096 baseline)",
    "n_heldout": "ours (docs/science.md#rules: held-out valid-novel split)",
    "n_hypercube": "ours (docs/science.md#rules: hypercube split)",
    "n_noise": "App. B.3 (a fixed set of 2048 initial noises)",
    "data_seed": "ours",
    "arch": "Sec. 2 (DiT), App. B.5 (GPT)",
    "model": "App. B.1 Table 1 (DiT-mini primary); App. B.5 Table 3 (GPT-mini default)",
    "depth": "App. B.1 Table 1; App. B.5 Table 3",
    "hidden": "App. B.1 Table 1; App. B.5 Table 3",
    "heads": "App. B.1 Table 1; App. B.5 Table 3",
    "steps": "Fig. 3 (up to 5e5 steps)",
    "batch": "Sec. 2 and App. B.1 (batch size 256)",
    "lr": "dit: App. B.1, App. C.7 (1e-4, the main setting); gpt: ours",
    "weight_decay": "dit: Sec. 2, App. B.1 (none); gpt: ours",
    "beta1": "App. B.1 (Adam betas; values lost in our copy): ours (PyTorch default)",
    "beta2": "App. B.1 (Adam betas; values lost in our copy): ours (PyTorch default)",
    "sigma_data": "App. B.1 (value lost in our copy): ours, 0.5",
    "p_mean": "App. B.1 ('same as the EDM paper defaults': -1.2)",
    "p_std": "App. B.1 ('same as the EDM paper defaults': 1.2)",
    "sampler_steps": "App. B.3 (Heun, 35 steps)",
    "sigma_min": "App. B.3 (EDM sampler range)",
    "sigma_max": "App. B.3 (EDM sampler range)",
    "rho": "App. B.3 (EDM sampler)",
    "saves_per_decade": "ours (App. B.5: log-spaced checkpoints)",
    "resume_every": "ours", "log_every": "ours", "seed": "ours", "device": "ours", "bf16": "ours", "compile": "ours",
}


def status_of(cfg: TrainConfig, user_set: set[str]) -> dict:
    """Each field's status for this run: "user" if set by the user, else "paper" / "assumed", with the
    size fields labelled from the arch's preset (GPT-S and tiny are assumed) and lr / weight decay from
    the arch's optimizer defaults."""
    out = {k: STATUS.get(k, "assumed") for k in cfg.to_dict()}
    size = PRESET_STATUS[cfg.arch][cfg.model][0]
    for k in ("model", "depth", "hidden", "heads"):
        out[k] = size
    for k, (st, _) in ARCH_STATUS[cfg.arch].items():
        out[k] = st
    return {k: ("user" if k in user_set else v) for k, v in out.items()}


def save_schedule(total: int, per_decade: int = 20) -> list[int]:
    """Checkpoint steps: 0, then log-spaced (``per_decade`` per factor of 10), then ``total``."""
    k = int(math.ceil(math.log10(max(total, 1)) * per_decade)) + 1
    steps = {0, total}
    steps.update(int(round(10 ** (i / per_decade))) for i in range(k))
    return sorted(s for s in steps if s <= total)


def config_json(cfg: TrainConfig, user_set: set[str], version: str) -> str:
    return json.dumps({"schema_version": SCHEMA_VERSION, "twoclocks_version": version,
                       "config": cfg.to_dict(), "status": status_of(cfg, user_set)}, indent=2)
