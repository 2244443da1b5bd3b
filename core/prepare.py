"""A new training run: a run directory (core/runs.py) made from a corpus, a tokenizer and the settings, ready
for the trainer. Everything the user could get wrong (a model too large, a corpus too short for the context,
a device that is not there) is refused before anything is written."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from core import runs
from core.data import check_token_counts, split_text, write_tokens
from core.device import pick_device
from core.errors import ConfigError
from core.files import atomic_folder, atomic_write_json
from core.messages import Text
from core.model import GPTConfig
from core.tokenizer import Tokenizer
from core.train_config import TrainConfig, check_memory


def prepare_run(
    run_dir,
    text: str,
    tokenizer: Tokenizer,
    model_cfg: GPTConfig,
    train_cfg: TrainConfig,
    data_name: str = "corpus",
    val_fraction: float = 0.1,
    extra: dict | None = None,
) -> Path:
    """Create a run directory: split and tokenize the corpus, check it is long enough for the context,
    check the model fits in memory, and write config.json, the tokenizer and the token files. `run_dir` must
    not exist yet (or be an empty folder)."""
    run_dir = Path(run_dir)
    if (run_dir / runs.CONFIG).exists():
        raise ConfigError(Text("prepare.exists", path=str(run_dir)))
    if model_cfg.vocab_size != tokenizer.vocab_size:
        raise ConfigError(
            f"The model's vocab_size ({model_cfg.vocab_size}) differs from the tokenizer's ({tokenizer.vocab_size})."
        )
    # the device must exist before anything is written, and the memory check is for that device
    check_memory(model_cfg, train_cfg, pick_device(train_cfg.device))
    train_ids, val_ids, data = encode_text(text, tokenizer, model_cfg.block_size, val_fraction, data_name)
    config = {
        "model": model_cfg.to_dict(),
        "train": asdict(train_cfg),
        "tokenizer": tokenizer.summary(),
        "data": data,
        "created": time.time(),
        **(extra or {}),
    }

    def write(tmp: Path):
        write_token_files(tmp / "data", train_ids, val_ids, tokenizer.vocab_size)
        tokenizer.save(tmp)
        atomic_write_json(tmp / runs.CONFIG, config)
        runs.write_status(tmp, "created", Text("status.ready"), step=0)

    # the run appears whole or not at all: a full disk half-way leaves nothing behind
    return atomic_folder(run_dir, write, "a run")


def encode_text(text: str, tokenizer: Tokenizer, block_size: int, val_fraction: float, name: str):
    """Split a text (its first 1 - val_fraction trains, the rest validates), tokenize both parts and check each
    holds at least one window of the context. Returns (train ids, validation ids, config.json's data section)."""
    train_text, val_text = split_text(text, val_fraction)
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    check_token_counts(len(train_ids), len(val_ids), block_size)
    data = {
        "name": name,
        "val_fraction": val_fraction,
        "train_tokens": len(train_ids),
        "val_tokens": len(val_ids),
        "train_chars": len(train_text),
        "val_chars": len(val_text),
        "val_bytes": len(val_text.encode("utf-8")),
    }
    return train_ids, val_ids, data


def write_token_files(data_dir: Path, train_ids, val_ids, vocab_size: int) -> None:
    """data/train.bin and data/val.bin, the token stream the trainer reads (core/run_data.py)."""
    write_tokens(data_dir / "train.bin", train_ids, vocab_size)
    write_tokens(data_dir / "val.bin", val_ids, vocab_size)
