"""The one-token decoder: a KV cache, and the model's forward pass for one new token per row.

Generation (core/engine.py) prefills the prompt with the model's own forward, which fills a KVCache; each
following token goes through `Decoder.step`, which computes what GPT.forward computes for a (B, 1) input with
that cache, with weights laid out for one row at a time. The KV-cache tests compare both with a full
recompute.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

from core.model import GPT

# ----------------------------------------------------------------------------------------------------------
# KV cache


class KVCache:
    """Keys and values of every layer for the positions seen so far, a position's key and value side by side:
    (n_layer, B, nh, max_len, 2, hs), so the one-token decoder stores both with a single copy."""

    def __init__(self, n_layer: int, batch: int, n_head: int, max_len: int, head_size: int, device, dtype):
        self.kv = torch.zeros((n_layer, batch, n_head, max_len, 2, head_size), device=device, dtype=dtype)
        self.kv_layers = [self.kv[i] for i in range(n_layer)]  # per-layer views: cheaper to index each step
        self.k_layers = [kv[..., 0, :] for kv in self.kv_layers]  # (B, nh, max_len, hs), rows 2*hs apart
        self.v_layers = [kv[..., 1, :] for kv in self.kv_layers]
        self.max_len = max_len
        self.pos = 0  # positions filled so far

    @classmethod
    def for_model(cls, model, batch: int) -> KVCache:
        cfg = model.config
        p = model.transformer.wte.weight
        return cls(cfg.n_layer, batch, cfg.n_head, cfg.block_size, cfg.head_size, p.device, p.dtype)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this step's (B, nh, T, hs) keys/values; return all keys/values up to and including them."""
        T = k.size(2)
        kl, vl = self.k_layers[layer], self.v_layers[layer]
        kl.narrow(2, self.pos, T).copy_(k)
        vl.narrow(2, self.pos, T).copy_(v)
        return kl.narrow(2, 0, self.pos + T), vl.narrow(2, 0, self.pos + T)

    def update_one(self, layer: int, kv: torch.Tensor):
        """Store one position's keys and values, kv (B, nh, 2, hs), in one copy; return all keys/values so far."""
        self.kv_layers[layer].select(2, self.pos).copy_(kv)
        n = self.pos + 1
        return self.k_layers[layer].narrow(2, 0, n), self.v_layers[layer].narrow(2, 0, n)

    def advance(self, T: int) -> None:
        self.pos += T

    def reset(self) -> None:
        self.pos = 0


# ----------------------------------------------------------------------------------------------------------
# One-token decode step


# A projection whose weights are at least this large is split by output columns across the intra-op threads:
# one batched product, a slice of the columns per thread. Decoding one token reads every weight once, and on
# the 2-core machine BENCHMARKS.md describes one thread streams weights at ~14 GB/s, two at ~25 GB/s (a single
# product does not use the second core for one row). Smaller weights stay in cache and are not worth a hand-off.
SPLIT_BYTES = 512 * 1024
MIN_SPLIT_COLUMNS = 64
SQRT1_2 = 0.7071067811865476
# tensors, not Python floats: a float operand costs a conversion per call
ONE, HALF, SQRT1_2_T = torch.tensor(1.0), torch.tensor(0.5), torch.tensor(SQRT1_2)


Projection = Callable[[torch.Tensor], torch.Tensor]  # x (B, K) -> (B, N)


@dataclass(frozen=True)
class DecoderLayer:
    """One transformer block's weights, laid out for a single row."""

    ln_1: tuple[torch.Tensor, torch.Tensor | None]  # LayerNorm (weight, bias) before attention
    qkv: Projection  # attn.c_attn: C -> 3C
    out: Projection  # attn.c_proj: C -> C
    ln_2: tuple[torch.Tensor, torch.Tensor | None]  # LayerNorm before the MLP
    fc: Projection  # mlp.c_fc: C -> 4C (GELU's 1/sqrt(2) folded in, see below)
    proj: Projection  # mlp.c_proj: 4C -> C


class Decoder:
    """The model's forward pass for ONE new token per row, with the weights laid out for that: each projection
    is one product with pre-transposed (and, when large, pre-split) weights.

    Decoding on a CPU is dominated by per-operation overhead at small sizes and by reading the weights at
    larger ones: nn.Module calls and F.linear on a single row cost several times a bare matrix product, and
    one product on one row uses one core. This computes what GPT.forward computes for a (B, 1) input with a
    KV cache (the KV-cache tests compare it with a full recompute), with about half the operations. Built per
    generation, so it sees the current weights."""

    def __init__(self, model):
        cfg = model.config
        self.nh, self.hs, self.C = cfg.n_head, cfg.head_size, cfg.n_embd
        t = model.transformer
        self.cpu = t.wte.weight.device.type == "cpu"
        # exact GELU on the CPU without F.gelu, which sends a single row to a oneDNN kernel that costs ~15 us
        # per call here: gelu(u) = S * u' * (1 + erf(u')) with u' = S * u, S = 1/sqrt(2). With fp32 weights
        # c_fc's weight and bias are pre-multiplied by S and c_proj's weight by S, which leaves three cheap ops
        # per layer; int8 weights cannot be rescaled exactly, so they get the formula's five.
        mlps = [block.mlp for block in t.h]
        exact_cpu = self.cpu and cfg.activation == "gelu"
        self.folded_gelu = exact_cpu and all(
            type(m.c_fc) is torch.nn.Linear and type(m.c_proj) is torch.nn.Linear for m in mlps
        )
        self.erf_gelu = exact_cpu and not self.folded_gelu
        self.approximate = "tanh" if cfg.activation == "gelu_tanh" else "none"
        self.wte, self.wpe = t.wte.weight, t.wpe.weight
        self.head = self._projection(model.lm_head)  # tied to wte (quantize_int8 makes an int8 copy)
        self.ln_f = (t.ln_f.weight, t.ln_f.bias)
        fc_scales, proj_scales = ((SQRT1_2, SQRT1_2), (SQRT1_2, 1.0)) if self.folded_gelu else ((1.0, 1.0), (1.0, 1.0))
        self.layers: list[DecoderLayer] = []
        for block in t.h:
            a, m = block.attn, block.mlp
            self.layers.append(
                DecoderLayer(
                    ln_1=(block.ln_1.weight, block.ln_1.bias),
                    qkv=self._projection(a.c_attn),
                    out=self._projection(a.c_proj),
                    ln_2=(block.ln_2.weight, block.ln_2.bias),
                    fc=self._projection(m.c_fc, *fc_scales),
                    proj=self._projection(m.c_proj, *proj_scales),
                )
            )

    def _projection(self, linear, weight_scale: float = 1.0, bias_scale: float = 1.0):
        """x (B, K) -> (B, N) as one op: a product with the weight laid out for one row (split across threads
        when large), or for quantize_int8's layers the same int8 kernel their forward calls. The scales
        multiply a copy of an fp32 weight and bias."""
        if type(linear) is torch.nn.Linear:
            w, b = linear.weight, linear.bias  # (N, K)
            if weight_scale != 1.0:
                w = w * weight_scale
            if b is not None and bias_scale != 1.0:
                b = b * bias_scale
            N, K = w.shape
            # a tall weight (long rows) is read fastest as dot products with its rows, as nn.Linear stores it;
            # a wide one as x times the columns of its transpose (measured here, both split and not)
            tall = K > N
            parts = self._parts(w) if self.cpu else 1
            if parts > 1:
                n = N // parts
                w_parts = w.contiguous().view(parts, n, K).transpose(1, 2)  # (parts, K, n): part i's outputs
                if not tall:
                    w_parts = w_parts.contiguous()
                b_parts = (b if b is not None else torch.zeros(N, dtype=w.dtype)).view(parts, 1, n)
                # (parts, B, n) -> (B, N): a view when B == 1
                return lambda x: (
                    torch.baddbmm(b_parts, x.expand(parts, *x.shape), w_parts).transpose(0, 1).reshape(x.size(0), N)
                )
            w_t = w.t() if tall else w.t().contiguous()
            return (lambda x: x @ w_t) if b is None else (lambda x: torch.addmm(b, x, w_t))
        packed = linear._packed_params._packed_params
        reduce_range = not (linear.version is None or linear.version < 4)
        return lambda x: torch.ops.quantized.linear_dynamic(x, packed, reduce_range=reduce_range)

    @staticmethod
    def _parts(w: torch.Tensor) -> int:
        """How many slices of outputs to split an (N, K) weight into: one per intra-op thread, when large."""
        N = w.size(0)
        if w.numel() * w.element_size() < SPLIT_BYTES:
            return 1
        for parts in range(torch.get_num_threads(), 1, -1):
            if N % parts == 0 and N // parts >= MIN_SPLIT_COLUMNS:
                return parts
        return 1

    @staticmethod
    def supports(model) -> bool:
        """Only a plain GPT, fp32 or int8 (no LoRA wrappers, no hooks): anything else decodes through
        model.forward."""
        if not isinstance(model, GPT):
            return False
        projections = [p for b in model.transformer.h for p in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)]
        projections.append(model.lm_head)
        return all(
            (type(p) is torch.nn.Linear or (type(p) is Int8Linear and p._packed_params.dtype == torch.qint8))
            and not p._forward_hooks
            and not p._forward_pre_hooks
            for p in projections
        )

    def step(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """ids (B,) at position cache.pos -> logits (B, V); appends to the cache."""
        B, nh, hs, C, pos = ids.size(0), self.nh, self.hs, self.C, cache.pos
        x = self.wte.index_select(0, ids).add_(self.wpe[pos])  # (B, C)
        for i, layer in enumerate(self.layers):
            h = F.layer_norm(x, (C,), *layer.ln_1, 1e-5)
            qkv_h = layer.qkv(h).view(B, 3, nh, 1, hs)
            # this position's keys and values as (B, nh, 2, hs), stored with one copy
            k, v = cache.update_one(i, qkv_h[:, 1:, :, 0].transpose(1, 2))  # (B, nh, pos + 1, hs)
            y = F.scaled_dot_product_attention(qkv_h[:, 0], k, v)  # (B, nh, 1, hs)
            x = x + layer.out(y.view(B, C))
            u = layer.fc(F.layer_norm(x, (C,), *layer.ln_2, 1e-5))
            if self.folded_gelu:
                u = torch.erf(u).add_(ONE).mul_(u)  # gelu(u / S) / S: the scales are in c_fc and c_proj
            elif self.erf_gelu:
                u = torch.mul(u, SQRT1_2_T).erf_().add_(ONE).mul_(u).mul_(HALF)
            else:
                u = F.gelu(u, approximate=self.approximate)
            x = x + layer.proj(u)
        cache.advance(1)
        return self.head(F.layer_norm(x, (C,), *self.ln_f, 1e-5))
