"""Sampling throughput: our KV-cached sampler against transformers' generate() on the same weights, and our
cached path against recomputing the whole window each token. Batch 1, greedy, measured in one run.

    python -m bench.sampling [--n-layer 6 --n-embd 384 --new-tokens 256]
"""

from __future__ import annotations

import argparse

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from bench.common import report, timed_together
from core.decoder import KVCache
from core.engine import SamplingParams, generate_tokens, quantize_int8
from core.hf import newleaf_to_hf
from core.model import GPT, GPTConfig, preset_config
from core.recipes import DEFAULT_CPU_RECIPE, RECIPES
from core.runs import model_tensors


def ours_cached(model, prompt, n) -> list[int]:
    params = SamplingParams(max_new_tokens=n, temperature=0, top_alternatives=1)
    return [step.tokens[0] for step in generate_tokens(model, prompt, params)]


@torch.inference_mode()
def ours_cached_forward(model, prompt, n) -> list[int]:
    """Greedy tokens through the model's own forward with a KV cache, without the one-token decoder: what the
    cache alone buys, against ours_uncached (the same forward, recomputing the window for each token)."""
    cache = KVCache.for_model(model, 1)
    logits, _ = model(torch.tensor([prompt]), kv_cache=cache, last_only=True)
    out = []
    for _ in range(n):
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.append(nxt.item())
        logits, _ = model(nxt, kv_cache=cache)
    return out


@torch.inference_mode()
def ours_uncached(model, prompt, n):
    """The same model, recomputing every position of the window for each new token."""
    seq = torch.tensor([prompt])
    for _ in range(n):
        logits, _ = model(seq[:, -model.config.block_size :], last_only=True)
        seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq[0, len(prompt) :].tolist()


def hf_model_from(model):
    """transformers' GPT2LMHeadModel holding exactly our weights (core/hf.py's name mapping)."""
    c = model.config
    hf = GPT2LMHeadModel(
        GPT2Config(
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_embd=c.n_embd,
            n_positions=c.block_size,
            vocab_size=c.vocab_size,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=None,
            eos_token_id=None,
            # the same function as ours, not GPT-2's default tanh GELU
            activation_function="gelu_new" if c.activation == "gelu_tanh" else "gelu",
        )
    )
    missing, unexpected = hf.load_state_dict(newleaf_to_hf(model_tensors(model)), strict=False)
    assert not unexpected and all(k.endswith("lm_head.weight") or ".attn." in k for k in missing), missing
    return hf.eval()


@torch.inference_mode()
def hf_generate(hf, prompt, n):
    ids = torch.tensor([prompt])
    out = hf.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        use_cache=True,
        pad_token_id=0,
    )
    assert out.shape[1] == len(prompt) + n
    return out[0, len(prompt) :].tolist()


def run(
    n_layer=6,
    n_head=6,
    n_embd=384,
    block_size=256,
    vocab=65,
    new_tokens=256,
    repeats=3,
    name="sampling",
    int8=True,
    uncached=False,
):
    torch.manual_seed(0)
    cfg = GPTConfig(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=max(block_size, new_tokens + 8), vocab_size=vocab
    )
    model = GPT(cfg).eval()
    hf = hf_model_from(model)
    prompt = torch.randint(0, vocab, (8,)).tolist()
    # the same weights and function: both must produce the same greedy tokens, or the timing means nothing
    assert ours_cached(model, prompt, new_tokens) == hf_generate(hf, prompt, new_tokens), "greedy tokens differ from HF"
    contenders = {
        "ours": lambda: ours_cached(model, prompt, new_tokens),
        "peer": lambda: hf_generate(hf, prompt, new_tokens),
    }
    if int8:
        q = quantize_int8(model)
        contenders["int8"] = lambda: ours_cached(q, prompt, new_tokens)
    best = timed_together(contenders, repeats)
    ours, peer = best["ours"], best["peer"]
    shape = f"{n_layer}L/{n_embd}w, {new_tokens} tokens"
    report(f"{name} vs HF generate ({shape})", new_tokens / ours, new_tokens / peer, "tokens/s")
    if uncached:
        report_cache(model, prompt, new_tokens, repeats, shape)
    if int8:
        report(
            f"{name} int8 (opt-in) vs HF generate ({shape})", new_tokens / best["int8"], new_tokens / peer, "tokens/s"
        )
    return new_tokens / ours, new_tokens / peer


def report_cache(model, prompt, n: int, repeats: int, shape: str) -> float:
    """The KV cache against recomputing the window, like with like: the same forward on both sides (no one-token
    decoder), the same greedy tokens, each the best of `repeats` calls taken in turn."""
    assert ours_cached_forward(model, prompt, n) == ours_uncached(model, prompt, n), "cached tokens differ"
    best = timed_together(
        {"cached": lambda: ours_cached_forward(model, prompt, n), "uncached": lambda: ours_uncached(model, prompt, n)},
        repeats,
    )
    return report(f"kv-cache vs no cache ({shape})", n / best["cached"], n / best["uncached"], "tokens/s")


def run_cache_scaling(lengths=(64, 256, 1024), n_layer=4, n_head=4, n_embd=128, vocab=65, repeats=3):
    """How the cache's advantage over recomputing grows with length (context = the length)."""
    for n in lengths:
        torch.manual_seed(0)
        model = GPT(GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=n + 8, vocab_size=vocab)).eval()
        report_cache(model, [1] * 8, n, repeats, f"{n_layer}L/{n_embd}w, {n} tokens")


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--n-layer", type=int, default=6)
    p.add_argument("--n-head", type=int, default=6)
    p.add_argument("--n-embd", type=int, default=384)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-scaling", action="store_true")
    p.add_argument("--shape-only", action="store_true", help="only the shape given, not also the default CPU shape")
    p.add_argument("--threads", type=int, help="torch threads for both contenders (default: torch's, one per core)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    run(a.n_layer, a.n_head, a.n_embd, new_tokens=a.new_tokens, repeats=a.repeats, uncached=True)
    if not a.shape_only:
        # the app's default CPU shape (core/recipes.py), its context widened to hold all 256 tokens for both
        recipe = RECIPES[DEFAULT_CPU_RECIPE]
        c = preset_config(recipe["preset"], 65, **recipe.get("overrides", {}))
        run(
            c.n_layer,
            c.n_head,
            c.n_embd,
            new_tokens=a.new_tokens,
            repeats=a.repeats,
            name="sampling (default CPU shape)",
        )
    if not a.no_scaling:
        run_cache_scaling()


if __name__ == "__main__":
    main()
