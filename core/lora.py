"""LoRA: low-rank adapters (Hu et al., 2021), by hand.

A frozen projection W (out, in) gets a trainable update of rank r:

    y = W x + b + (alpha / r) · B A dropout(x)      A: (r, in), B: (out, r)

A starts random and B at zero, so the adapted model starts out exactly equal to the base model. Only A and B
train: r·(in + out) numbers per projection instead of in·out. `merge` folds (alpha / r)·B A into W, giving
back a plain nn.Linear, so the result samples, exports and loads as an ordinary GPT.

The adapters go on GPT-2's four projections per block: attn.c_attn (q, k, v), attn.c_proj, mlp.c_fc, mlp.c_proj.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from core.errors import ConfigError
from core.messages import Text

TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.rank, self.alpha = rank, alpha
        self.scale = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear initialises its weight (and PEFT A)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.base(x) + (self.dropout(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scale

    def delta(self) -> torch.Tensor:
        """The update to the weight, (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scale

    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing W + (alpha / r)·B A (what this module computes with dropout off)."""
        out = nn.Linear(
            self.base.in_features,
            self.base.out_features,
            bias=self.base.bias is not None,
            device=self.base.weight.device,
            dtype=self.base.weight.dtype,
        )
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.delta())
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def check_settings(rank, alpha, dropout, layers, targets, n_layer: int) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(Text("lora.rank", value=rank))
    if not (isinstance(alpha, (int, float)) and alpha > 0):
        raise ConfigError(Text("lora.alpha", value=alpha))
    if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
        raise ConfigError(Text("lora.dropout", value=dropout))
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ConfigError(Text("lora.target", value=bad[0] if bad else "list (empty)", known=", ".join(TARGETS)))
    if layers is not None:
        wrong = [i for i in layers if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_layer]
        if wrong or not layers:
            raise ConfigError(Text("lora.layers", last=n_layer - 1, n=n_layer, value=list(layers)))


def apply_lora(
    model, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0, layers=None, targets=TARGETS
) -> list[str]:
    """Freeze every weight of `model`, then wrap the target projections of the chosen layers (all when
    layers is None) in LoRALinear. Returns the names of the wrapped modules."""
    check_settings(rank, alpha, dropout, layers, targets, len(model.transformer.h))
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for i, block in enumerate(model.transformer.h):
        if layers is not None and i not in layers:
            continue
        for target in targets:
            owner_name, attr = target.split(".")
            owner = getattr(block, owner_name)
            setattr(owner, attr, LoRALinear(getattr(owner, attr), rank, alpha, dropout))
            wrapped.append(f"transformer.h.{i}.{target}")
    return wrapped


def lora_modules(model) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge(model):
    """Replace every LoRALinear of `model` by its merged nn.Linear, in place; returns the model."""
    for name, m in lora_modules(model).items():
        parent_name, attr = name.rsplit(".", 1)
        setattr(model.get_submodule(parent_name), attr, m.merged())
    return model


def merged_tensors(model) -> dict[str, torch.Tensor]:
    """The weights a plain GPT would have after merging, under plain GPT names (no lm_head: it is tied),
    without touching the model."""
    adapters = lora_modules(model)
    out = {}
    for key, value in model.state_dict().items():
        if key == "lm_head.weight" or ".lora_" in key:
            continue
        owner = key.rsplit(".", 2)[0]  # "transformer.h.0.attn.c_attn" for "...c_attn.base.weight"
        if key.endswith((".base.weight", ".base.bias")) and owner in adapters:
            plain = f"{owner}.{key.rsplit('.', 1)[1]}"
            value = value + adapters[owner].delta().detach() if key.endswith("weight") else value
            key = plain
        out[key] = value.detach().to("cpu").contiguous()
    return out


def adapter_tensors(model) -> dict[str, torch.Tensor]:
    """The trainable A and B matrices, by module name: "transformer.h.0.attn.c_attn.lora_A", ..."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items() if ".lora_" in k}


def load_adapter_tensors(model, tensors: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    expected = adapter_tensors(model)
    if set(tensors) != set(expected):
        missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
        raise ConfigError(
            Text("lora.mismatch", source=source, missing=str(missing[:3]), unexpected=str(unexpected[:3]))
        )
    with torch.no_grad():
        params = dict(model.named_parameters())
        for k, v in tensors.items():
            if params[k].shape != v.shape:
                raise ConfigError(
                    Text(
                        "lora.shape", source=source, name=k, shape=str(tuple(v.shape)), need=str(tuple(params[k].shape))
                    )
                )
            params[k].copy_(v)
