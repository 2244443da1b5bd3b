"""Training settings and the learning-rate schedule they describe, and the check that a model fits in memory
to train. Shared by the trainer, fine-tuning, evaluation and the app's forms."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from core.device import available_memory, check_seed
from core.errors import ConfigError
from core.messages import Text
from core.model import GPTConfig, training_memory
from core.optim import OPTIMIZERS
from core.units import format_bytes


@dataclass
class TrainConfig:
    batch_size: int = 16
    grad_accum: int = 1  # micro-batches per optimizer step
    lr: float = 1e-3
    optimizer: str = "adamw"  # "adamw", or "muon" for the hidden weight matrices (core/optim.py)
    schedule: str = "cosine"  # "cosine", or "wsd": warmup, stable, then a linear decay
    cooldown_frac: float = 0.4  # wsd: the final fraction of the budget spent decaying
    min_lr_ratio: float = 0.1  # the schedule decays to lr * min_lr_ratio
    warmup_steps: int = 100
    max_steps: int = 2000
    max_time: float | None = None  # seconds; when set, the learning rate decays to this budget
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 turns clipping off
    eval_every: int = 200
    eval_batches: int = 20  # validation windows evaluated = eval_batches * batch_size
    sample_every: int = 0  # 0: sample at each evaluation
    sample_tokens: int = 200
    checkpoint_every: int = 0  # 0: checkpoint at each evaluation
    log_every: int = 10
    history_snapshots: int = 12  # weights kept, evenly spaced, for "learning over time" (core/history.py); 0: none
    history_mb: float = 256.0  # the most disk those snapshots may take together (fewer are kept for a big model)
    seed: int = 1337
    device: str = "auto"
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default
    compile: bool | None = None  # torch.compile the training forward; None: on CUDA only (no gain measured on CPU)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        positive = ("batch_size", "grad_accum", "max_steps", "eval_every", "eval_batches", "log_every")
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(Text("model.positive", name=name, value=v))
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(Text("train_config.lr", value=self.lr))
        if self.warmup_steps < 0:
            raise ConfigError(Text("train_config.warmup", value=self.warmup_steps))
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigError(Text("train_config.max_time", value=self.max_time))
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1]; got {self.min_lr_ratio}.")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}.")
        if self.schedule not in ("cosine", "wsd"):
            raise ConfigError(f"schedule must be 'cosine' or 'wsd'; got {self.schedule!r}.")
        if self.compile not in (None, True, False):
            raise ConfigError(f"compile must be true, false or null (automatic); got {self.compile!r}.")
        hs = self.history_snapshots
        if isinstance(hs, bool) or not isinstance(hs, int) or hs < 0:
            raise ConfigError(f"history_snapshots must be 0 (keep none) or more; got {hs!r}.")
        if not (isinstance(self.history_mb, (int, float)) and self.history_mb >= 0 and math.isfinite(self.history_mb)):
            raise ConfigError(f"history_mb must be 0 or a positive number of megabytes; got {self.history_mb!r}.")
        if not 0 < self.cooldown_frac <= 1:
            raise ConfigError(f"cooldown_frac must be in (0, 1]; got {self.cooldown_frac}.")
        check_seed(self.seed)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over the first warmup_steps, then a decay from lr to lr * min_lr_ratio driven by
    `progress`, the fraction of the step or time budget used: cosine from the end of warmup to 1, or
    (wsd) constant until the last cooldown_frac of the budget and linear from there."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    lo = cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        t = min(1.0, max(0.0, (progress - (1 - cfg.cooldown_frac)) / cfg.cooldown_frac))
        return cfg.lr * (1 - (1 - lo) * t)
    warm = cfg.warmup_steps / cfg.max_steps if cfg.max_time is None else 0.0
    t = min(1.0, max(0.0, (progress - warm) / max(1e-9, 1.0 - warm)))
    return cfg.lr * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t)))


def check_memory(model_cfg: GPTConfig, train_cfg: TrainConfig, device: torch.device | None = None) -> None:
    need = training_memory(model_cfg, train_cfg.batch_size)["total"]
    have = available_memory(device)
    if have is not None and need > 0.9 * have:
        raise ConfigError(
            Text("train_config.memory", need=format_bytes(need), batch=train_cfg.batch_size, have=format_bytes(have))
        )
