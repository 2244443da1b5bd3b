"""Time to quality: the held-out loss in bits per character (comparable across tokenizers) on Tiny Shakespeare
(the last 10% of the text, never trained on) after a fixed wall-clock budget, for Newleaf's default recipe (scaled
to the budget: core/recipes.py, with the tokenizer it picks) and for the widely used reference CPU recipe
(nanoGPT's README: characters, 4 layers, 4 heads, width 128, context 64, batch 12, lr 1e-3, cosine over 2000
steps, stretched to the budget), both trained by this trainer on this machine in the same run.

    python -m bench.time_to_quality [--budget 60,180,900] [--recipe NAME ...] [--corpus python-stdlib] [--skip-peer]

The validation loss is measured at the end on every non-overlapping window of the validation text.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from core import runs
from core.data import open_tokens, split_text
from core.datasets import load_builtin
from core.engine import quantize_int8
from core.model import preset_config
from core.prepare import prepare_run
from core.probe import flops_rate
from core.recipes import NO_STEP_LIMIT, RECIPES, choose
from core.runs import load_model
from core.tokenizer import make_tokenizer
from core.train import Trainer
from core.train_config import TrainConfig

# nanoGPT's README recipe for a CPU (shakespeare_char: 4 layers, 4 heads, width 128, context 64, batch 12, AdamW
# lr 1e-3 with warmup then cosine to lr / 10, dropout 0, weight decay 0.1), stretched to the budget: as written it
# stops at 2,000 iterations; here its cosine runs over the whole time budget instead, as if max_iters had been set
# to what fits in the time.
PEER = dict(
    preset="micro",
    overrides=dict(block_size=64),
    train=dict(
        batch_size=12,
        lr=1e-3,
        warmup_steps=100,
        max_steps=NO_STEP_LIMIT,
        min_lr_ratio=0.1,
        beta2=0.99,
        weight_decay=0.1,
        eval_every=250,
        eval_batches=20,
    ),
)


@torch.no_grad()
def full_val_loss(run_dir: Path, int8: bool = False) -> float:
    """Mean loss over every non-overlapping window of the validation split (the last 10% of the text);
    int8: with the opt-in int8 sampling weights (core.engine.quantize_int8) instead of fp32."""
    model, _ = load_model(run_dir, which="last")
    if int8:
        model = quantize_int8(model)
    data = open_tokens(run_dir / "data" / "val.bin", model.config.vocab_size).astype(np.int64)
    T = model.config.block_size
    n = (len(data) - 1) // T
    x = torch.from_numpy(data[: n * T].reshape(n, T))
    y = torch.from_numpy(data[1 : n * T + 1].reshape(n, T))
    total = 0.0
    for i in range(0, n, 64):
        _, loss = model(x[i : i + 64], y[i : i + 64])
        total += loss.item() * len(x[i : i + 64])
    return total / n


def train(name: str, recipe: dict, budget: float, root: Path, text: str, tokenizer: str = "char",
          corpus: str = "Tiny Shakespeare") -> dict:  # fmt: skip
    """Train `recipe` for `budget` seconds; its held-out loss in nats per token and per character, and bits per
    character (comparable across tokenizers)."""
    tok = make_tokenizer(tokenizer, text)
    cfg = preset_config(recipe["preset"], tok.vocab_size, **recipe.get("overrides", {}))
    train_cfg = TrainConfig(**{**recipe["train"], "max_time": budget, "sample_tokens": 1, "device": "cpu"})
    run = prepare_run(root / name, text, tok, cfg, train_cfg, data_name=corpus)
    t = time.time()
    result = Trainer(run).fit()
    wall = time.time() - t
    loss = full_val_loss(run)
    data = runs.read_config(run)["data"]
    per_char = loss * data["val_tokens"] / data["val_chars"]
    return {"loss": loss, "nats_per_char": per_char, "bits_per_char": per_char / math.log(2), "steps": result.step,
            "wall": wall, "shape": f"{cfg.n_layer}L/{cfg.n_embd}", "tokenizer": tokenizer}  # fmt: skip


def scaled(budget: float, text: str) -> tuple[dict, str, str]:
    """The default recipe for this budget on this machine (core/recipes.py), as a recipe dict, its tokenizer, and
    why."""
    choice = choose(budget, flops_rate("cpu"), char_vocab=len(set(text)), train_chars=len(split_text(text)[0]))
    shape, train_settings = choice.settings()
    return dict(preset="micro", overrides=shape, train=train_settings), choice.tokenizer, str(choice.why())


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--budget", default="180", help="seconds, or several separated by commas: 60,180,900")
    p.add_argument("--recipe", action="append", help=f"fixed recipes to time too; known: {', '.join(RECIPES)}")
    p.add_argument("--corpus", default="shakespeare")
    p.add_argument("--skip-peer", action="store_true")
    a = p.parse_args(argv)
    corpus = load_builtin(a.corpus)
    text = corpus.text
    for budget in [float(b) for b in a.budget.split(",")]:
        ours, tokenizer, why = scaled(budget, text)
        print(f"[{budget:.0f} s, {corpus.name}] the scaled recipe: {why}", flush=True)
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            results = {"scaled": train("scaled", ours, budget, root, text, tokenizer, corpus.name)}
            for name in a.recipe or []:
                results[name] = train(name, RECIPES[name], budget, root, text, corpus=corpus.name)
            if not a.skip_peer:
                results["peer"] = train("peer", PEER, budget, root, text, corpus=corpus.name)
        for name, r in results.items():
            print(f"time to quality [{name}, {budget:.0f} s]: {r['bits_per_char']:.4f} bits/char "
                  f"({r['nats_per_char']:.4f} nats/char), {r['shape']}, {r['tokenizer']}, {r['steps']} steps in "
                  f"{r['wall']:.0f} s",
                  flush=True)  # fmt: skip
        if "peer" in results:
            o, q = results["scaled"], results["peer"]
            print(f"time-to-quality ({budget:.0f} s): ours {o['bits_per_char']:.4f} bits/char, peer "
                  f"{q['bits_per_char']:.4f} bits/char; ours is {q['nats_per_char'] - o['nats_per_char']:+.4f} "
                  f"nats/char better", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
