"""The model: a GPT-2-style decoder-only (causal) transformer.

Each position attends only to itself and earlier positions, so the model can be trained to predict every
next token of a sequence at once and then generate text one token at a time.

Parameter names follow GPT-2's (`transformer.wte`, `transformer.h.0.attn.c_attn`, ...) so that GPT-2
weights map onto this model by name (see `core/hf.py`). Tensor shapes are written next to the code that
makes them: B = batch, T = sequence length, C = n_embd, nh = n_head, hs = head size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from core.errors import ConfigError
from core.messages import Text

# ----------------------------------------------------------------------------------------------------------
# Configuration


@dataclass
class GPTConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64  # context length: the most tokens the model sees at once
    vocab_size: int = 65  # set from the tokenizer
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers, as GPT-2 has
    # "gelu" (exact, erf) is ~3x faster than the tanh approximation on CPUs and trains as well; "gelu_tanh" is
    # GPT-2's own ("gelu_new"), used for imported GPT-2 weights so their logits match exactly.
    activation: str = "gelu"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        for name, most in LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
                shown = f"{value!r}" if len(repr(value)) < 30 else f"a number of {len(repr(value))} digits"
                raise ConfigError(Text("model.range", name=name, most=f"{most:,}", value=shown))
        if self.n_embd % self.n_head:
            heads = [h for h in range(1, 17) if self.n_embd % h == 0]
            raise ConfigError(Text("model.heads_divide", n_embd=self.n_embd, n_head=self.n_head, heads=str(heads)))
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ConfigError(Text("model.dropout", value=self.dropout))
        if self.activation not in ACTIVATIONS:
            raise ConfigError(Text("model.activation", known=", ".join(ACTIVATIONS), value=self.activation))

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(Text("model.unknown_settings", names=", ".join(sorted(unknown))))
        # runs saved before the activation was a setting used GPT-2's tanh GELU
        return cls(**{"activation": "gelu_tanh", **d})


ACTIVATIONS = ("gelu", "gelu_tanh")
# The most each size may be: far beyond any model this app can train, but finite, so that a hostile or mistyped
# config (n_embd = 10**400) is one clear refusal instead of an overflow somewhere in the arithmetic.
LIMITS = {"n_layer": 1024, "n_head": 1024, "n_embd": 2**16, "block_size": 2**20, "vocab_size": 2**24}

# Named shapes. vocab_size comes from the tokenizer, so presets leave it out.
# fmt: off
PRESETS: dict[str, dict] = {
    "tiny":   dict(n_layer=2, n_head=2, n_embd=32, block_size=32,
                   description="2 layers, width 32: for tests; learns in seconds, writes gibberish"),
    "nano":   dict(n_layer=3, n_head=4, n_embd=64, block_size=64,
                   description="3 layers, width 64: a first look in under a minute on a CPU"),
    "micro":  dict(n_layer=4, n_head=4, n_embd=128, block_size=64,
                   description="4 layers, width 128: the classic small CPU model"),
    "mini":   dict(n_layer=6, n_head=6, n_embd=192, block_size=128,
                   description="6 layers, width 192: better text, needs ~10+ minutes on a CPU"),
    "small":  dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2,
                   description="6 layers, width 384 (nanoGPT's Shakespeare model): best on a GPU"),
    "gpt2":   dict(n_layer=12, n_head=12, n_embd=768, block_size=1024,
                   description="GPT-2 small (124M parameters with its 50257-token vocabulary): GPU only"),
}
# fmt: on


def preset_config(name: str, vocab_size: int, **overrides) -> GPTConfig:
    """The config of a named preset, with any field overridden (None values are ignored)."""
    if name not in PRESETS:
        raise ConfigError(Text("model.preset", name=name, known=", ".join(PRESETS)))
    d = {k: v for k, v in PRESETS[name].items() if k != "description"}
    d.update({k: v for k, v in overrides.items() if v is not None})
    return GPTConfig(vocab_size=vocab_size, **d)


# ----------------------------------------------------------------------------------------------------------
# Size, memory and compute estimates (they drive the app's estimates and its refusals)


def param_count(cfg: GPTConfig) -> int:
    """Exact number of parameters of GPT(cfg); the LM head is tied to wte so it adds nothing."""
    C, b = cfg.n_embd, int(cfg.bias)
    ln = C + b * C
    per_layer = ln + (C * 3 * C + b * 3 * C) + (C * C + b * C) + ln + (C * 4 * C + b * 4 * C) + (4 * C * C + b * C)
    return cfg.vocab_size * C + cfg.block_size * C + cfg.n_layer * per_layer + ln


def flops_per_token(cfg: GPTConfig, training: bool = True) -> float:
    """Approximate FLOPs per token at full context (PaLM appendix B): 6N + 12·L·C·T for a training step
    (forward + backward), a third of that for a forward pass. N excludes the position embedding."""
    n = param_count(cfg) - cfg.block_size * cfg.n_embd
    fwd_bwd = 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
    return float(fwd_bwd if training else fwd_bwd / 3)


def training_memory(cfg: GPTConfig, batch_size: int, bytes_per_value: int = 4) -> dict[str, int]:
    """Estimated bytes to train at a micro-batch size: weights + gradients + AdamW state (two moments) +
    activations kept for the backward pass. The activation count follows what this implementation saves
    per token and layer (LayerNorm inputs, qkv, attention output, MLP input / hidden / GELU output ...
    about 18·C values), plus the attention matrix when dropout forces the non-fused path, plus the logits
    with their softmax and gradient."""
    n = param_count(cfg)
    B, T, C, V = batch_size, cfg.block_size, cfg.n_embd, cfg.vocab_size
    per_layer = 18 * C * B * T
    if cfg.dropout > 0:
        per_layer += 2 * B * cfg.n_head * T * T
    acts = cfg.n_layer * per_layer + 3 * B * T * V + 4 * B * T * C
    out = {
        "weights": n * bytes_per_value,
        "gradients": n * bytes_per_value,
        "optimizer": 2 * n * 4,  # AdamW moments are kept in fp32
        "activations": acts * bytes_per_value,
    }
    out["total"] = sum(out.values())
    return out


def inference_memory(cfg: GPTConfig, batch_size: int = 1, bytes_per_value: int = 4) -> int:
    """Bytes to sample: weights plus the KV cache of a full context."""
    kv = 2 * cfg.n_layer * batch_size * cfg.block_size * cfg.n_embd
    return (param_count(cfg) + kv + batch_size * cfg.vocab_size) * bytes_per_value


# ----------------------------------------------------------------------------------------------------------
# The network


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (PyTorch's has no bias=False before 2.1 in all paths)."""

    def __init__(self, ndim: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_embd = cfg.n_head, cfg.n_embd
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, kv_cache=None, attention_out: list | None = None):
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        # (B, T, 3, nh, hs) -> three (B, nh, T, hs) views without copying the activations twice
        q, k, v = self.c_attn(x).view(B, T, 3, nh, hs).permute(2, 0, 3, 1, 4).unbind(0)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer_idx, k, v)  # (B, nh, T_past + T, hs)
        Tk = k.size(2)

        if attention_out is not None:
            # Explicit softmax so the weights can be looked at; only used for the attention view.
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (B, nh, T, Tk)
            att = att.masked_fill(~_causal_mask(T, Tk, x.device), float("-inf"))
            att = F.softmax(att, dim=-1)
            attention_out.append(att.detach())
            y = att @ v
        else:
            drop = self.dropout if self.training else 0.0
            if T == Tk:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
            elif T == 1:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)  # a new token sees all the past
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=_causal_mask(T, Tk, x.device), dropout_p=drop)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))


def _causal_mask(Tq: int, Tk: int, device) -> torch.Tensor:
    """(Tq, Tk) boolean mask, True where query i (the last Tq of Tk positions) may attend key j."""
    return torch.ones(Tq, Tk, dtype=torch.bool, device=device).tril(diagonal=Tk - Tq)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)
        self.approximate = "tanh" if cfg.activation == "gelu_tanh" else "none"

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig, layer_idx: int):
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.bias)
        self.attn = CausalSelfAttention(cfg, layer_idx)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, kv_cache=None, attention_out=None):
        x = x + self.attn(self.ln_1(x), kv_cache, attention_out)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        cfg.validate()
        self.config = cfg
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
                wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
                drop=nn.Dropout(cfg.dropout),
                h=nn.ModuleList([Block(cfg, i) for i in range(cfg.n_layer)]),
                ln_f=LayerNorm(cfg.n_embd, cfg.bias),
            )
        )
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: the output layer reuses the token embedding
        self.apply(self._init_weights)
        # GPT-2 scales the residual projections by 1/sqrt(2 * n_layer) so the residual stream stays O(1).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, targets=None, *, kv_cache=None, last_only: bool = False, attention_out: list | None = None):
        """idx (B, T) token ids -> (logits, loss).

        targets (B, T): next-token ids; positions with -1 carry no loss (used by chat fine-tuning).
        kv_cache: continue after the tokens already in the cache (see core/engine.py).
        last_only: compute logits for the last position only (sampling needs nothing else).
        attention_out: a list that receives each layer's (B, nh, T, T_total) attention weights.
        """
        B, T = idx.shape
        start = kv_cache.pos if kv_cache is not None else 0
        if start + T > self.config.block_size:
            raise ConfigError(
                f"Sequence of {start + T} tokens is longer than the context length {self.config.block_size}."
            )
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for block in self.transformer.h:
            x = block(x, kv_cache, attention_out)
        if kv_cache is not None:
            kv_cache.advance(T)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)  # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1)
            return logits, loss
        if last_only:
            x = x[:, -1:, :]
        return self.lm_head(x), None

    def optimizer_groups(self, weight_decay: float, split_hidden: bool = False) -> list[dict]:
        """Weight decay on 2-D weights (matmuls, embeddings) only; biases and LayerNorm gains decay not.
        split_hidden puts the blocks' weight matrices in a group of their own, marked "hidden" (for Muon)."""
        params = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        no_decay = {"params": [p for _, p in params if p.dim() < 2], "weight_decay": 0.0}
        if not split_hidden:
            return [{"params": [p for _, p in params if p.dim() >= 2], "weight_decay": weight_decay}, no_decay]
        hidden = [p for n, p in params if p.dim() >= 2 and n.startswith("transformer.h.")]
        embeddings = [p for n, p in params if p.dim() >= 2 and not n.startswith("transformer.h.")]
        return [
            {"params": hidden, "weight_decay": weight_decay, "hidden": True},
            {"params": embeddings, "weight_decay": weight_decay},
            no_decay,
        ]
