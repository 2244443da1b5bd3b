"""A run's data as the trainer and evaluation see it: random batches to learn from, a fixed validation loss,
and the prompt the trainer's samples start from.

    TokenStream     pretraining and plain-text fine-tuning: windows of the token files (core/data.py)
    Conversations   chat fine-tuning: examples whose loss counts only the assistant's tokens (core/sft_data.py)

`open_run_data(run_dir, config)` opens the one config.json's data section describes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from core.chat import template_for
from core.data import get_batch, open_tokens
from core.device import autocast
from core.engine import SamplingParams, generate
from core.errors import NewleafError
from core.sft_data import Examples


class TokenStream:
    """data/train.bin and data/val.bin: token ids, trained on as random windows of block_size + 1 tokens."""

    def __init__(self, run_dir, vocab_size: int, block_size: int):
        data_dir = Path(run_dir) / "data"
        self.train = open_tokens(data_dir / "train.bin", vocab_size)
        self.val = open_tokens(data_dir / "val.bin", vocab_size)
        self.block_size = block_size

    def batch(self, batch_size: int, generator: torch.Generator, device):
        """x, y (B, T): random windows and their next tokens; the generator's state decides which."""
        return get_batch(self.train, batch_size, self.block_size, generator, device)

    def tokens_per_step(self, batch_size: int, grad_accum: int) -> float:
        return batch_size * grad_accum * self.block_size

    @torch.no_grad()
    def validation_loss(self, model, batch_size: int, eval_batches: int, device) -> float:
        """Mean loss over fixed, evenly spaced validation windows: the same windows every time, so the numbers
        compare across steps and runs, and no random state is used."""
        was_training = model.training
        model.eval()
        T = self.block_size
        last_start = len(self.val) - T - 1
        starts = torch.linspace(0, last_start, steps=min(eval_batches * batch_size, last_start + 1)).long()
        total, count = 0.0, 0
        for chunk in starts.split(batch_size):
            x = torch.stack([torch.from_numpy(self.val[s : s + T].astype("int64")) for s in chunk.tolist()])
            y = torch.stack([torch.from_numpy(self.val[s + 1 : s + 1 + T].astype("int64")) for s in chunk.tolist()])
            with autocast(device):
                _, loss = model(x.to(device), y.to(device))
            total += loss.item() * len(chunk)
            count += len(chunk)
        model.train(was_training)
        return total / count

    def sample(self, model, tokenizer, params: SamplingParams) -> str:
        """A continuation of a newline (or, for a vocabulary without one, of the validation text's first
        token), prompt included."""
        try:
            prompt = "\n" if tokenizer.encode("\n") else ""
        except NewleafError:  # a character-level vocabulary without newlines
            prompt = ""
        prompt = prompt or tokenizer.decode(self.val[:1].tolist())
        return prompt + generate(model, tokenizer, prompt, params)[0].text


class Conversations:
    """data/sft-{train,val}.*.bin: conversations as token ids with a loss mask (only the replies count)."""

    def __init__(self, run_dir, vocab_size: int, config: dict):
        data_dir = Path(run_dir) / "data"
        self.train = Examples(data_dir, "train", vocab_size)
        self.val = Examples(data_dir, "val", vocab_size)
        self.template = template_for(config)
        d = config["data"]
        self.mean_length = d["train_tokens"] / max(1, d["train_examples"])

    def batch(self, batch_size: int, generator: torch.Generator, device):
        return self.train.random_batch(batch_size, generator, device)

    def tokens_per_step(self, batch_size: int, grad_accum: int) -> float:
        # examples are padded only to the longest in their batch: count their mean length
        return batch_size * grad_accum * self.mean_length

    @torch.no_grad()
    def validation_loss(self, model, batch_size: int, eval_batches: int, device) -> float:
        """Mean loss per assistant token over the first eval_batches * batch_size validation examples, in
        order: the same examples every time, and no random state is used."""
        return sft_loss(model, self.val, batch_size, eval_batches * batch_size, device)

    def sample(self, model, tokenizer, params: SamplingParams) -> str:
        """The greedy reply to the first validation prompt, markers shown."""
        ids, mask = self.val.example(0)
        prompt = ids[: int(mask.argmax())].tolist()
        params.temperature = 0.0
        params.stop_token_ids = self.template.stop_ids(tokenizer)
        return tokenizer.decode(prompt) + generate(model, tokenizer, prompt, params)[0].text


@torch.no_grad()
def sft_loss(model, examples: Examples, batch_size: int, max_examples: int, device) -> float:
    """Mean loss per assistant token over the first max_examples examples, in order. Each batch's mean is
    weighted by its number of assistant tokens, so the result is the mean over all of them."""
    was_training = model.training
    model.eval()
    n = min(len(examples), max_examples)
    total, count = 0.0, 0
    for start in range(0, n, batch_size):
        x, y = examples.batch(range(start, min(n, start + batch_size)), device)
        k = int((y != -1).sum())
        with autocast(device):
            _, loss = model(x, y)
        total += loss.item() * k
        count += k
    model.train(was_training)
    return total / max(1, count)


def log_sample_params(max_new_tokens: int, seed: int) -> SamplingParams:
    """How the samples in a run's log are drawn: temperature 0.8, top-k 50, a seed of their own (so drawing
    them leaves the training RNG untouched)."""
    return SamplingParams(max_new_tokens=max_new_tokens, temperature=0.8, top_k=50, seed=seed)


def open_run_data(run_dir, config: dict) -> TokenStream | Conversations:
    model, data = config["model"], config["data"]
    if data.get("format") == "sft":
        return Conversations(run_dir, model["vocab_size"], config)
    return TokenStream(run_dir, model["vocab_size"], model["block_size"])


def perplexity(loss: float) -> float:
    """exp(loss), capped: how many tokens the model hesitates between, on average."""
    return math.exp(min(loss, 50.0))
