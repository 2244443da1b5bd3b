"""The GPU path, end to end: train, sample, export, reload in transformers, and compare with transformers on the
same GPU in the same run.

    python -m bench.gpu_check              on CUDA, about 4 minutes: for the default recipe (cpu-3min's shape) and
                                           a GPT-2-small-sized model (the `gpt2` preset, GPT-2's tokenizer), with
                                           torch.compile on and off: train on Tiny Shakespeare for --seconds (bf16
                                           autocast, fused AdamW), then sample, export, reload in transformers
    python -m bench.gpu_check --tiny       the same steps at a tiny shape on the CPU, for a step budget (seconds;
                                           the test suite runs it)

Prints, per model and compile setting:
    train  RECIPE compile=on: N steps, T tokens/s, MFU x% (of the GPU's bf16 dense peak), val loss L
    training step RECIPE compile=on: ours X tokens/s, peer Y tokens/s, ratio Z     (GPT2LMHeadModel, same shape,
                                                                                   batch, precision, optimizer)
    sampling RECIPE: ours X tokens/s, peer Y tokens/s, ratio Z                     (transformers' generate(),
                                                                                   greedy, the same weights)
and checks that the transformers reload gives the same greedy tokens as Newleaf's sampler.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from bench.common import report
from bench.training import matmul_rate
from core import files, runs
from core.datasets import resolve_corpus
from core.device import autocast
from core.engine import SamplingParams, generate
from core.hf import export_hf
from core.model import GPT, flops_per_token, preset_config
from core.prepare import prepare_run
from core.recipes import DEFAULT_CPU_RECIPE, RECIPES
from core.tokenizer import make_tokenizer
from core.train import Trainer
from core.train_config import TrainConfig

# bf16 dense tensor-core peaks (FLOP/s) from the datasheets, for MFU; another GPU is measured with a matmul instead
BF16_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10G": 70e12, "T4": 65e12}


def models(tiny: bool) -> dict[str, dict]:
    """name -> shape, tokenizer and training settings."""
    recipe = RECIPES[DEFAULT_CPU_RECIPE]
    if tiny:
        tiny_shape = dict(preset="tiny", overrides={}, tokenizer="char", batch_size=8)
        return {"recipe-tiny": tiny_shape}
    return {
        DEFAULT_CPU_RECIPE: dict(
            preset=recipe["preset"], overrides=recipe["overrides"], tokenizer="char", batch_size=64, recipe=True
        ),
        "gpt2-small": dict(preset="gpt2", overrides={}, tokenizer="gpt2", batch_size=8),
    }


def peak_flops(device: torch.device) -> tuple[float, str]:
    """The device's peak for MFU, and where the figure comes from."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in BF16_PEAKS.items():
            if key in name:
                return peak, f"{name}'s bf16 dense peak"
        return matmul_rate_on(device), f"a bf16 8192x8192 matmul measured on {name}"
    return matmul_rate(), "an fp32 512x512 matmul measured on this CPU"


def matmul_rate_on(device: torch.device, n: int = 8192, seconds: float = 2.0) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    torch.cuda.synchronize(device)
    count, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        a @ a
        count += 1
    torch.cuda.synchronize(device)
    return 2 * n**3 * count / (time.perf_counter() - t)


# ----------------------------------------------------------------------------------------------------------
# Ours: a real run directory, trained by the trainer the app uses


def train_run(out: Path, text: str, spec: dict, device: str, compile_: bool, seconds: float | None, steps: int | None):
    tokenizer = make_tokenizer(spec["tokenizer"], text)
    cfg = preset_config(spec["preset"], tokenizer.vocab_size, **spec["overrides"])
    train = dict(RECIPES[DEFAULT_CPU_RECIPE]["train"]) if spec.get("recipe") else {}
    train.update(
        batch_size=spec["batch_size"],
        max_steps=steps or 10**9,
        max_time=seconds,
        eval_every=max(10, (steps or 200) // 2),
        eval_batches=4,
        log_every=5,
        warmup_steps=min(train.get("warmup_steps", 20), (steps or 200) // 4),
        device=device,
        compile=compile_,
    )
    run = prepare_run(out, text, tokenizer, cfg, TrainConfig(**train), data_name="Tiny Shakespeare")
    result = Trainer(run).fit()
    if result.state != "completed":
        raise SystemExit(f"gpu_check: training ended {result.state}: {result.message}")
    records = [r for r in files.read_jsonl(run / runs.METRICS)[0] if "tokens_per_sec" in r]
    steady = records[1:] or records  # the first window holds compilation and warm-up
    tokens_per_sec = sum(r["tokens_per_sec"] for r in steady) / len(steady)
    return run, cfg, result, tokens_per_sec


# ----------------------------------------------------------------------------------------------------------
# Peers on the same device: GPT2LMHeadModel's training step and transformers' generate()


def step_rate(model, loss_fn, cfg, batch: int, device: torch.device, compile_: bool, steps: int) -> float:
    """Tokens/s of a whole training step (bf16 autocast on CUDA, fused AdamW where it exists, clipping)."""
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device.type == "cuda")
    net = torch.compile(loss_fn) if compile_ else loss_fn
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=g).to(device)
    y = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size), generator=g).to(device)

    def one():
        with autocast(device):
            loss = net(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up (and compilation)
        one()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        one()
    sync(device)
    return batch * cfg.block_size * steps / (time.perf_counter() - t)


def training_peer(cfg, batch: int, device: torch.device, compile_: bool, steps: int) -> tuple[float, float]:
    """(ours, peer) tokens/s of the same step on the same device, the two measured back to back."""
    torch.manual_seed(0)
    ours_model = GPT(cfg)

    def ours_loss(x, y):
        return ours_model(x, y)[1]

    ours = step_rate(ours_model, ours_loss, cfg, batch, device, compile_, steps)
    ours_model.to("cpu")  # room on the GPU for the peer
    peer_model = GPT2LMHeadModel(
        GPT2Config(
            n_layer=cfg.n_layer,
            n_head=cfg.n_head,
            n_embd=cfg.n_embd,
            n_positions=cfg.block_size,
            vocab_size=cfg.vocab_size,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=None,
            eos_token_id=None,
            activation_function="gelu_new" if cfg.activation == "gelu_tanh" else "gelu",
        )
    )

    def peer_loss(x, y):
        logits = peer_model(input_ids=x).logits
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)).float(), y.view(-1))

    peer = step_rate(peer_model, peer_loss, cfg, batch, device, compile_, steps)
    return ours, peer


def sampling_peer(run: Path, device: torch.device, new_tokens: int) -> tuple[float, float, bool]:
    """(ours, peer) tokens/s of greedy generation from the run's weights, and whether the tokens agree (fp32)."""
    model, tokenizer = runs.load_model(run, device=str(device))
    prompt = tokenizer.decode(tokenizer.encode("ROMEO:\n"))
    ids = tokenizer.encode(prompt)
    new_tokens = min(new_tokens, model.config.block_size - len(ids))
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
    generate(model, tokenizer, prompt, params)  # warm-up
    sync(device)
    t = time.perf_counter()
    (ours_out,) = generate(model, tokenizer, prompt, params)
    sync(device)
    ours = len(ours_out.token_ids) / (time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_hf(run, Path(tmp) / "export")
        hf_model = AutoModelForCausalLM.from_pretrained(folder).to(device).eval()
    x = torch.tensor([ids], device=device)
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    with torch.inference_mode():
        hf_model.generate(x, **kw)  # warm-up
        sync(device)
        t = time.perf_counter()
        out = hf_model.generate(x, **kw)
        sync(device)
    peer = new_tokens / (time.perf_counter() - t)
    theirs = out[0, len(ids) :].tolist()
    same = theirs[: len(ours_out.token_ids)] == ours_out.token_ids
    return ours, peer, same


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="a tiny shape on the CPU, with a step budget")
    p.add_argument("--seconds", type=float, default=30.0, help="training time per model and compile setting (GPU)")
    p.add_argument("--steps", type=int, default=40, help="training steps per model (--tiny)")
    p.add_argument(
        "--compile", choices=("both", "on", "off"), help="torch.compile (default: both on a GPU, off --tiny)"
    )
    p.add_argument("--out", help="keep the run directories here (default: a temporary folder)")
    a = p.parse_args(argv)
    if not a.tiny and not torch.cuda.is_available():
        print(
            "gpu_check: error: no CUDA GPU here; run it on a GPU machine, or pass --tiny for the CPU.", file=sys.stderr
        )
        return 2
    device = torch.device("cpu" if a.tiny else "cuda")
    compiles = {"both": [True, False], "on": [True], "off": [False]}[a.compile or ("off" if a.tiny else "both")]
    corpus = resolve_corpus("builtin:shakespeare")
    text = corpus.text[:60_000] if a.tiny else corpus.text
    peak, peak_source = peak_flops(device)
    print(
        f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}; MFU against {peak_source}"
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        root = Path(a.out or tmp)
        for name, spec in models(a.tiny).items():
            for compile_ in compiles:
                tag = f"{name} compile={'on' if compile_ else 'off'}"
                out = root / f"{name}-{'compiled' if compile_ else 'eager'}"
                seconds, steps = (None, a.steps) if a.tiny else (a.seconds, None)
                run, cfg, result, rate = train_run(out, text, spec, str(device), compile_, seconds, steps)
                mfu = flops_per_token(cfg) * rate / peak
                val = result.best_val_loss if result.best_val_loss is not None else math.nan
                print(f"train {tag}: {result.step} steps, {rate:,.0f} tokens/s, MFU {mfu:.1%}, val loss {val:.3f}")
                step_ours, step_peer = training_peer(cfg, spec["batch_size"], device, compile_, 5 if a.tiny else 20)
                train_ratio = report(f"training step {tag}", step_ours, step_peer, "tokens/s")
                results[tag] = dict(
                    steps=result.step, tokens_per_sec=rate, mfu=mfu, val_loss=val, train_ratio=train_ratio
                )
            s_ours, s_peer, same = sampling_peer(run, device, 32 if a.tiny else 256)
            results[name] = dict(sampling_ratio=report(f"sampling {name}", s_ours, s_peer, "tokens/s"), same=same)
            print(f"reload in transformers {name}: greedy tokens {'equal' if same else 'DIFFER'}")
            if not same:
                return 1
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
