"""Time to quality: the character-level validation loss on Tiny Shakespeare (the last 10% of the text) after
a fixed wall-clock budget, for Newleaf's default CPU recipe and for the widely used reference CPU recipe
(nanoGPT's README: 4 layers, 4 heads, width 128, context 64, batch 12, lr 1e-3, cosine over 2000 steps),
both trained by this trainer on this machine in the same run.

    python -m bench.time_to_quality [--budget 180] [--recipe NAME ...] [--skip-reference]

The validation loss is measured at the end on every non-overlapping window of the validation text.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from core.data import open_tokens
from core.datasets import load_builtin
from core.engine import quantize_int8
from core.model import preset_config
from core.prepare import prepare_run
from core.recipes import DEFAULT_CPU_RECIPE, RECIPES
from core.runs import load_model
from core.tokenizer import CharTokenizer
from core.train import Trainer
from core.train_config import TrainConfig

REFERENCE = dict(
    preset="micro",
    overrides=dict(block_size=64),
    train=dict(
        batch_size=12,
        lr=1e-3,
        warmup_steps=100,
        max_steps=2000,
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


def train(name: str, recipe: dict, budget: float, root: Path, text: str) -> tuple[float, int, float, float]:
    tok = CharTokenizer.from_text(text)
    cfg = preset_config(recipe["preset"], tok.vocab_size, **recipe.get("overrides", {}))
    # the time budget cuts both recipes off; the learning rate decays to whichever of steps or time runs out first
    train_cfg = TrainConfig(**{**recipe["train"], "max_time": budget, "sample_tokens": 1, "device": "cpu"})
    run = prepare_run(root / name, text, tok, cfg, train_cfg, data_name="Tiny Shakespeare")
    t = time.time()
    result = Trainer(run).fit()
    wall = time.time() - t
    return full_val_loss(run), result.step, wall, full_val_loss(run, int8=True)


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--budget", type=float, default=180.0)
    p.add_argument(
        "--recipe",
        action="append",
        help=f"recipes to time (default: {DEFAULT_CPU_RECIPE}); known: {', '.join(RECIPES)}",
    )
    p.add_argument("--skip-reference", action="store_true")
    a = p.parse_args(argv)
    text = load_builtin("shakespeare").text
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        results = {}
        if not a.skip_reference:
            results["reference"] = train("reference", REFERENCE, a.budget, root, text)
        for name in a.recipe or [DEFAULT_CPU_RECIPE]:
            results[name] = train(name, RECIPES[name], a.budget, root, text)
    for name, (loss, steps, wall, loss_int8) in results.items():
        print(
            f"time to quality [{name}]: val loss {loss:.4f} after {wall:.0f} s ({steps} steps); "
            f"with int8 sampling weights {loss_int8:.4f} ({loss_int8 - loss:+.4f})"
        )
    if "reference" in results:
        ref = results["reference"][0]
        for name, (loss, *_) in results.items():
            if name != "reference":
                print(
                    f"time-to-quality {name} ({a.budget:.0f} s): ours {loss:.4f}, peer {ref:.4f}, "
                    f"ratio {ref / loss:.2f} (lower loss is better; ratio = peer / ours)"
                )


if __name__ == "__main__":
    main()
