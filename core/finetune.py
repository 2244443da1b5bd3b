"""Fine-tuning: start from trained weights, train on chosen data, and measure the model before and after.

    prepare_finetune(out, base, data, ...)   a run directory, self-contained and ready to train
    run_finetune(run_dir, callbacks)         measure the base model, train (the ordinary Trainer), measure the result
                                             (`python -m core train --out RUN --resume` calls it for such a run)
    compare(run_dir, prompts)                base and fine-tuned replies side by side
    load_base_model(run_dir)                 the starting weights as a plain GPT

Progress is followed as for training: status.json, metrics.jsonl, samples.jsonl, and eval.json ("base" and
"finetuned" metrics, see core/evaluate.py).

A fine-tuning run is an ordinary run directory (core/runs.py) with three additions:
    base.safetensors   the starting weights, copied in (vocabulary grown if needed), so the run needs nothing else
    config["finetune"] where they came from, which parameters train (full, first N layers frozen, or LoRA), and
                       the trainable / total parameter counts
    data               conversations as token ids + loss mask (core/sft_data.py), or plain text tokens as for
                       pretraining; chat runs also store `chat_template` and the validation conversations
The trainer reads these (core/train.py) and otherwise trains as always: same loop, metrics, checkpoints, exact
resume, stop. Checkpoints hold plain GPT weights (LoRA merged in), so sampling, chat and export need nothing new.

Bases: a run directory (its best checkpoint), "hf:NAME" or a local Hugging Face GPT-2 folder, or "scratch:PRESET"
(a fresh character-level model: fine-tuning from nothing, for the demo task and tests).
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch

from core import lora, runs
from core.chat import TokenChatTemplate, template_for
from core.errors import CheckpointError, ConfigError, CorpusError, NewleafError
from core.model import GPT, GPTConfig, param_count, preset_config
from core.tokenizer import CharTokenizer, Tokenizer, load_tokenizer

BASE_FILE = "base.safetensors"
METHODS = ("full", "lora")

# What fine-tuning changes from pretraining's defaults: fewer steps, more frequent evaluation, a lower learning rate
# for full fine-tuning (the weights are already good; big steps would wreck them) and a higher one for LoRA (its
# adapters start at zero and are few).
TRAIN_DEFAULTS = {
    "full": dict(lr=3e-4, warmup_steps=20, max_steps=500, eval_every=50, eval_batches=4, weight_decay=0.0,
                 sample_tokens=64, log_every=10),
    "lora": dict(lr=2e-3, warmup_steps=20, max_steps=500, eval_every=50, eval_batches=4, weight_decay=0.0,
                 sample_tokens=64, log_every=10),
}
# The demo task's recipe: what learns two-digit addition on a CPU in about two minutes (full fine-tuning: 89% of the
# held-out sums from scratch:nano in 45 s, re-measured 2026-11-28 with `python -m core finetune --data
# builtin:arithmetic`; 98.5% from a micro model pretrained 600 steps on Shakespeare in 110 s;
# LoRA learns a new skill like this far more slowly: 16% from that same model).
DEMO_TRAIN = dict(warmup_steps=50, max_steps=1500, eval_every=250, batch_size=32, eval_batches=2)
DEMO_LR = {"full": 1e-3, "lora": 2e-3}


@dataclass
class FinetuneConfig:
    method: str = "full"                    # full | lora
    freeze_layers: int = 0                  # full: the first N transformer blocks stay as they are
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_layers: list[int] | None = None    # which blocks get adapters; None: all
    lora_targets: list[str] = field(default_factory=lambda: list(lora.TARGETS))
    too_long: str = "truncate"              # examples longer than the context: truncate | drop
    val_fraction: float = 0.1               # of the conversations (or text), held out for validation
    evaluate: bool = True                   # measure the base before and the result after training
    eval_items: int = 50                    # validation conversations replied to for exact match / BLEU / ROUGE
    eval_max_new_tokens: int | None = None  # None: from the longest reference (at most 128)

    def validate(self, n_layer: int | None = None) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"Unknown fine-tuning method {self.method!r}; use 'full' or 'lora'.")
        if isinstance(self.freeze_layers, bool) or not isinstance(self.freeze_layers, int) or self.freeze_layers < 0:
            raise ConfigError(f"freeze_layers must be 0 or more; got {self.freeze_layers!r}.")
        if n_layer is not None and self.method == "full" and self.freeze_layers >= n_layer:
            raise ConfigError(f"Freezing {self.freeze_layers} layers leaves none to train: the model has {n_layer}.")
        if self.method == "lora":
            lora.check_settings(self.lora_rank, self.lora_alpha, self.lora_dropout, self.lora_layers,
                                self.lora_targets, n_layer if n_layer is not None else 10**9)
        if self.too_long not in ("truncate", "drop"):
            raise ConfigError(f"too_long must be 'truncate' or 'drop'; got {self.too_long!r}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be between 0 and 1; got {self.val_fraction!r}.")
        if isinstance(self.eval_items, bool) or not isinstance(self.eval_items, int) or self.eval_items < 1:
            raise ConfigError(f"eval_items must be a positive whole number; got {self.eval_items!r}.")

    @classmethod
    def from_dict(cls, d: dict) -> "FinetuneConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def train_config(method: str = "full", demo: bool = False, **overrides):
    """Fine-tuning's TrainConfig: the method's defaults (the demo task's recipe for it), then `overrides`
    (None values ignored)."""
    from core.train import TrainConfig
    if method not in METHODS:
        raise ConfigError(f"Unknown fine-tuning method {method!r}; use 'full' or 'lora'.")
    d = {**TRAIN_DEFAULTS[method], **(dict(DEMO_TRAIN, lr=DEMO_LR[method]) if demo else {})}
    d.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**d)


# ----------------------------------------------------------------------------------------------------------
# Bases: where the starting weights come from


@dataclass
class Base:
    tensors: dict | None       # plain GPT weights (None for scratch: made once the vocabulary is known)
    model_cfg: GPTConfig | None
    tokenizer: Tokenizer | None
    source: dict               # what config["finetune"]["base"] records
    config: dict               # the base run's config.json ({} for Hugging Face and scratch bases)


def load_base(spec, which: str = "best") -> Base:
    """A base from "RUN_DIR" | "hf:NAME" | a Hugging Face folder | "scratch:PRESET"."""
    spec = str(spec)
    if spec.startswith("scratch:"):
        preset = spec[len("scratch:"):]
        preset_config(preset, 1)  # a clear error for an unknown preset, before any data work
        return Base(None, None, None, {"kind": "scratch", "preset": preset}, {})
    if spec.startswith("hf:"):
        return _hf_base(spec[len("hf:"):])
    path = Path(spec).expanduser()
    if path.is_dir():
        config_file = path / runs.CONFIG
        if config_file.is_file():
            config = runs.read_json(config_file)
            if isinstance(config, dict) and "model" in config and "tokenizer" in config:
                return _run_base(path, config, which)
        return _hf_base(str(path))
    if path.exists():
        raise CheckpointError(f"{spec} is a file; choose a run directory, a Hugging Face model folder, or hf:NAME.")
    raise CheckpointError(f"No run or model folder {spec}. Choose one of your runs, a folder with a Hugging Face "
                          f"GPT-2 model, or a Hub model as hf:NAME (e.g. hf:distilgpt2).")


def _run_base(path: Path, config: dict, which: str) -> Base:
    ck = runs.checkpoint_dir(path, which) or runs.checkpoint_dir(path, "last")
    if ck is None:
        raise CheckpointError(f"{path} has no checkpoint yet: train it first, or choose another base.")
    try:
        cfg = GPTConfig.from_dict(config["model"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path / runs.CONFIG} has no valid model section ({e}).") from None
    tensors = runs.load_tensors(ck / "model.safetensors")
    runs.load_model_weights(GPT(cfg), tensors, str(ck / "model.safetensors"))  # checks that they fit
    meta = runs.read_json(ck / "meta.json")
    source = {"kind": "run", "path": str(path), "checkpoint": ck.name, "step": meta.get("step"),
              "val_loss": meta.get("val_loss")}
    return Base(tensors, cfg, load_tokenizer(path), source, config)


def _hf_base(name: str) -> Base:
    from core.hf import load_hf_gpt2

    model, tokenizer = load_hf_gpt2(name)
    return Base(runs.model_tensors(model), model.config, tokenizer, {"kind": "hf", "name": name}, {})


def describe_base(source: dict) -> str:
    kind = source.get("kind")
    if kind == "run":
        return f"run {source['path']} (step {source.get('step')})"
    if kind == "hf":
        return f"Hugging Face {source['name']}"
    return f"a fresh {source.get('preset')} model (from scratch)"


# ----------------------------------------------------------------------------------------------------------
# Vocabulary: chat markers as special tokens, and characters a character-level base never saw


def extend_tokenizer(tokenizer: Tokenizer, text: str, specials: list[str]) -> tuple[Tokenizer, list[int]]:
    """A copy of `tokenizer` that also knows `text`'s new characters (character-level only: byte-level BPE
    encodes any text) and the `specials`; and the map old id -> new id."""
    old_specials = sorted(tokenizer.special_tokens, key=tokenizer.special_tokens.get)
    if isinstance(tokenizer, CharTokenizer):
        new = CharTokenizer(tokenizer.chars + tokenizer.unknown_chars(text))
    else:
        new = copy.copy(tokenizer)
        new.special_tokens = {}
    new.add_special_tokens(old_specials + [s for s in specials if s not in old_specials])
    id_map = list(range(tokenizer.base_vocab_size)) + [new.special_tokens[s] for s in old_specials]
    return new, id_map


def grow_embedding(tensors: dict, id_map: list[int], vocab_size: int, seed: int) -> dict:
    """Re-place the token embedding's rows for the new vocabulary. New rows are drawn from the distribution of the
    existing ones (their mean and per-dimension spread): ordinary-looking tokens, and distinct from each other.
    (Rows all near the mean would look alike to the model: ten new digits then take far longer to tell apart.)"""
    wte = tensors["transformer.wte.weight"]
    if vocab_size == wte.shape[0] and id_map == list(range(vocab_size)):
        return tensors
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(vocab_size, wte.shape[1], generator=g, dtype=wte.dtype)
    new = wte.mean(dim=0, keepdim=True) + noise * wte.std(dim=0, keepdim=True)
    new[torch.tensor(id_map, dtype=torch.long)] = wte
    return {**tensors, "transformer.wte.weight": new.contiguous()}


# ----------------------------------------------------------------------------------------------------------
# Preparing a run


def prepare_finetune(run_dir, base, data, *, ft: FinetuneConfig | None = None, train=None, which: str = "best",
                     prompt_column: str | None = None, response_column: str | None = None,
                     csv_column: str | None = None, extra: dict | None = None) -> Path:
    """Create a fine-tuning run directory from a base (see load_base; or a Base) and data (see
    core.sft_data.load_finetune_data: paths, "builtin:NAME", or a FinetuneData). Nothing trains yet: the app or
    `python -m core train --out RUN --resume` runs it, as any run. Raises a NewleafError for every user mistake
    before writing anything."""
    from core.data import check_token_counts, split_text, write_tokens
    from core.sft_data import (FinetuneData, conversation_text, encode_conversations, load_finetune_data,
                               write_conversations, write_examples)
    from core.train import TrainConfig, check_memory

    run_dir = Path(run_dir)
    if (run_dir / runs.CONFIG).exists():
        raise ConfigError(f"{run_dir} already holds a run; resume it or choose another output directory.")
    ft = ft or FinetuneConfig()
    ft.validate()
    data = data if isinstance(data, FinetuneData) else load_finetune_data(
        data, prompt_column=prompt_column, response_column=response_column, csv_column=csv_column)
    demo = data.task is not None
    if demo:  # the task's held-out questions are its score: all of them count
        ft = replace(ft, eval_items=len(data.held_out))
    train = train or train_config(ft.method, demo=demo)
    if not isinstance(train, TrainConfig):
        raise ConfigError("train must be a TrainConfig.")
    base = base if isinstance(base, Base) else load_base(base, which)

    # the vocabulary: the base's, plus chat markers and characters it lacks
    chat = data.kind == "chat"
    template = None
    if chat:
        saved = template_for(base.config)
        template = saved if isinstance(saved, TokenChatTemplate) else TokenChatTemplate()
    all_text = conversation_text(data.conversations + (data.held_out or [])) if chat else data.text
    if base.source["kind"] == "scratch":
        tokenizer = CharTokenizer.from_text(all_text)
        tokenizer.add_special_tokens(template.markers if chat else [])
        model_cfg = preset_config(base.source["preset"], tokenizer.vocab_size)
        torch.manual_seed(train.seed)
        tensors = runs.model_tensors(GPT(model_cfg))
        new_ids: list[int] = []
    else:
        tokenizer, id_map = extend_tokenizer(base.tokenizer, all_text, template.markers if chat else [])
        new_ids = sorted(set(range(tokenizer.vocab_size)) - set(id_map))
        model_cfg = GPTConfig.from_dict({**base.model_cfg.to_dict(), "vocab_size": tokenizer.vocab_size})
        tensors = grow_embedding(base.tensors, id_map, tokenizer.vocab_size, train.seed)
    ft.validate(model_cfg.n_layer)
    check_memory(model_cfg, train)
    block = model_cfg.block_size

    # the data: token files, and what the user should know about them
    notes = []
    if chat:
        train_convs, val_convs, val_is_train = _split_conversations(data, ft.val_fraction, train.seed)
        enc_train = encode_conversations(train_convs, tokenizer, template, block, ft.too_long)
        enc_val = encode_conversations(val_convs, tokenizer, template, block, ft.too_long)
        for enc, split in ((enc_train, "training"), (enc_val, "validation")):
            note = enc.report(block, ft.too_long, split)
            if note:
                notes.append(note)
        if not enc_train.ids:
            raise CorpusError(f"No training example fits the context of {block} tokens "
                              f"({enc_train.dropped:,} dropped). Use shorter examples or a model with a longer "
                              f"context.")
        if not enc_val.ids:
            raise CorpusError(f"No validation example fits the context of {block} tokens.")
        if val_is_train:
            notes.append(f"Only {len(train_convs)} examples: too few to hold some out, so validation uses the "
                         f"training examples.")
        write_examples(run_dir / "data", "train", enc_train, tokenizer.vocab_size)
        write_examples(run_dir / "data", "val", enc_val, tokenizer.vocab_size)
        write_conversations(run_dir / "data" / "val.jsonl", [val_convs[i] for i in enc_val.kept_indices])
        val_replies = [c[i] for c in (val_convs[k] for k in enc_val.kept_indices)
                       for i in range(len(c)) if c[i]["role"] == "assistant"]
        data_info = {
            "name": data.name, "format": "sft", "val_fraction": ft.val_fraction, "val_is_train": val_is_train,
            "train_examples": len(enc_train.ids), "val_examples": len(enc_val.ids),
            "train_tokens": sum(map(len, enc_train.ids)), "val_tokens": enc_val.target_tokens,
            "train_target_tokens": enc_train.target_tokens,
            # bits per character of the replies: each reply's characters, plus one for its end marker
            "train_chars": len(conversation_text(train_convs)),
            "val_chars": sum(len(m["content"]) + 1 for m in val_replies),
            "val_bytes": sum(len(m["content"].encode("utf-8")) + 1 for m in val_replies),
            "truncated": enc_train.truncated + enc_val.truncated, "dropped": enc_train.dropped + enc_val.dropped,
            "too_long": ft.too_long, "notes": notes,
        }
    else:
        train_text, val_text = split_text(data.text, ft.val_fraction)
        train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
        check_token_counts(len(train_ids), len(val_ids), block)
        write_tokens(run_dir / "data" / "train.bin", train_ids, tokenizer.vocab_size)
        write_tokens(run_dir / "data" / "val.bin", val_ids, tokenizer.vocab_size)
        data_info = {"name": data.name, "format": "text", "val_fraction": ft.val_fraction,
                     "train_tokens": len(train_ids), "val_tokens": len(val_ids), "train_chars": len(train_text),
                     "val_chars": len(val_text), "val_bytes": len(val_text.encode("utf-8")), "notes": notes}

    from safetensors.torch import save_file
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(run_dir)
    tmp = run_dir / f".{BASE_FILE}.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(run_dir / BASE_FILE)
    counts = parameter_counts(model_cfg, ft, len(new_ids))
    config = {
        "model": model_cfg.to_dict(),
        "train": asdict(train),
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                      "description": tokenizer.describe()},
        "data": data_info,
        "finetune": {**asdict(ft), "base": base.source, "new_token_ids": new_ids, "params": counts,
                     **({"task": data.task} if data.task else {})},
        **({"chat_template": template.to_dict()} if chat else {}),
        "created": time.time(),
        **(extra or {}),
    }
    runs.atomic_write_json(run_dir / runs.CONFIG, config)
    runs.write_status(run_dir, "created", "Ready to fine-tune.", step=0, max_steps=train.max_steps,
                      max_time=train.max_time)
    return run_dir


def validation_reuses_training(data, val_fraction: float) -> bool:
    """True when the data is too small to hold any examples out (fewer than 10, or val_fraction of them rounds
    to none): validation then measures the training examples themselves."""
    n = len(data.conversations)
    return not data.held_out and (n < 10 or int(round(n * val_fraction)) < 1)


def _split_conversations(data, val_fraction: float, seed: int):
    """(train, validation, validation is the training set). A fixed held-out set (the demo task's) is used as
    is; otherwise a seeded shuffle holds out val_fraction, or nothing when there are too few examples."""
    if data.held_out:
        return list(data.conversations), list(data.held_out), False
    convs = list(data.conversations)
    random.Random(seed).shuffle(convs)
    if validation_reuses_training(data, val_fraction):
        return convs, convs, True
    n_val = int(round(len(convs) * val_fraction))
    return convs[n_val:], convs[:n_val], False


def parameter_counts(model_cfg: GPTConfig, ft: FinetuneConfig, new_rows: int = 0) -> dict:
    """{"total", "trainable", "trainable_fraction"}: what the UI shows before training starts."""
    C, b, L = model_cfg.n_embd, int(model_cfg.bias), model_cfg.n_layer
    total = param_count(model_cfg)
    shapes = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C), "mlp.c_proj": (4 * C, C)}
    if ft.method == "lora":
        layers = ft.lora_layers if ft.lora_layers is not None else range(L)
        adapters = len(list(layers)) * sum(ft.lora_rank * sum(shapes[t]) for t in ft.lora_targets)
        total += adapters
        trainable = adapters + new_rows * C
    else:
        per_block = 2 * (C + b * C) + sum(i * o + b * o for i, o in shapes.values())
        trainable = total - min(ft.freeze_layers, L) * per_block
    return {"total": total, "trainable": trainable, "trainable_fraction": trainable / total}


# ----------------------------------------------------------------------------------------------------------
# What the trainer calls (core/train.py): the model to train, its optimizer groups, checkpoints and resume


def build_model(run_dir, model_cfg: GPTConfig, ft: dict) -> GPT:
    """The base weights with the fine-tuning method applied: some blocks frozen, or LoRA adapters."""
    model = GPT(model_cfg)
    path = Path(run_dir) / BASE_FILE
    runs.load_model_weights(model, runs.load_tensors(path), str(path))
    cfg = FinetuneConfig.from_dict(ft)
    if cfg.method == "lora":
        lora.apply_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_layers, cfg.lora_targets)
        new_ids = ft.get("new_token_ids") or []
        if new_ids:  # markers and new characters must learn their embeddings; the rest of the matrix stays
            wte = model.transformer.wte.weight
            rows = torch.zeros(wte.shape[0], 1, dtype=wte.dtype)
            rows[torch.tensor(new_ids, dtype=torch.long)] = 1.0
            wte.requires_grad_(True)
            wte.register_hook(lambda g, rows=rows: g * rows.to(g.device))
            model.new_token_rows = rows
    else:
        for block in model.transformer.h[:cfg.freeze_layers]:
            block.requires_grad_(False)
    return model


def optimizer_groups(model, weight_decay: float) -> list[dict]:
    """As GPT.optimizer_groups, except that under LoRA the embedding (only its new rows learn) never decays:
    decay would shrink the frozen rows."""
    groups = model.optimizer_groups(weight_decay)
    if lora.lora_modules(model):
        wte = model.transformer.wte.weight
        if any(p is wte for p in groups[0]["params"]):
            groups[0]["params"] = [p for p in groups[0]["params"] if p is not wte]
            groups[1]["params"].append(wte)
    return groups


def trainable_count(model) -> int:
    """Parameters that learn; under LoRA with new tokens, only the embedding's new rows count."""
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rows = getattr(model, "new_token_rows", None)
    if rows is not None:
        wte = model.transformer.wte.weight
        n += int(rows.sum()) * wte.shape[1] - wte.numel()
    return n


def checkpoint_tensors(model) -> dict:
    """Plain GPT weights for model.safetensors: LoRA merged in, so every checkpoint loads as an ordinary GPT."""
    return lora.merged_tensors(model) if lora.lora_modules(model) else runs.model_tensors(model)


def extra_trainer_tensors(model) -> dict:
    """What a checkpoint needs beyond plain weights to resume exactly: the LoRA adapters."""
    return {f"lora.{k}": v for k, v in lora.adapter_tensors(model).items()}


def restore_weights(model, model_tensors: dict, trainer_tensors: dict, source: str) -> None:
    """Load a checkpoint into a model built by build_model. Full fine-tuning: the plain weights. LoRA: the
    adapters, and every weight the adapters do not wrap (the base of a wrapped projection stays the base;
    the checkpoint holds it merged)."""
    adapters = lora.lora_modules(model)
    if not adapters:
        runs.load_model_weights(model, model_tensors, source)
        return
    lora.load_adapter_tensors(model, {k[len("lora."):]: v for k, v in trainer_tensors.items()
                                      if k.startswith("lora.")}, source)
    state = model.state_dict()
    with torch.no_grad():
        for key, value in model_tensors.items():
            owner, leaf = key.rsplit(".", 1)
            if owner in adapters:
                if leaf == "weight":
                    continue
                key = f"{owner}.base.{leaf}"
            if key not in state or state[key].shape != value.shape:
                raise CheckpointError(f"{source} does not match this run's model ({key}).")
            state[key].copy_(value)


# ----------------------------------------------------------------------------------------------------------
# Running: measure the base, train, measure the result


def load_base_model(run_dir, device: str = "cpu"):
    """The run's starting weights (base.safetensors, in the run's vocabulary) as a plain GPT, and the tokenizer."""
    from core.device import pick_device

    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    if not (run_dir / BASE_FILE).exists():
        raise CheckpointError(f"{run_dir} is not a fine-tuning run (it has no {BASE_FILE}).")
    model = GPT(GPTConfig.from_dict(config["model"]))
    runs.load_model_weights(model, runs.load_tensors(run_dir / BASE_FILE), str(run_dir / BASE_FILE))
    return model.to(pick_device(device)).eval(), load_tokenizer(run_dir)


def is_finetune_run(run_dir) -> bool:
    try:
        return bool(runs.read_config(run_dir).get("finetune"))
    except NewleafError:
        return False


def run_finetune(run_dir, callbacks=(), resume: bool = True, evaluate: bool | None = None,
                 device: str | None = None):
    """Train a prepared fine-tuning run with the ordinary Trainer. With `evaluate` (default: the run's
    finetune.evaluate setting), the base model is measured first (once: kept in eval.json) and the fine-tuned
    one after, when training completed or was stopped.
    Returns the Trainer's FitResult. Events for callbacks: the Trainer's, plus ("evaluation", {"which": "base" |
    "finetuned", ...metrics}) after each measurement."""
    from core.evaluate import evaluate_run, read_eval, write_eval
    from core.train import Trainer

    run_dir = Path(run_dir)
    trainer = Trainer(run_dir, device=device)
    budget = {"max_steps": trainer.cfg.max_steps, "max_time": trainer.cfg.max_time}  # shown while measuring too
    if evaluate is None:
        evaluate = bool((trainer.finetune or {}).get("evaluate", True))
    if evaluate and "base" not in read_eval(run_dir) and runs.checkpoint_dir(run_dir, "last") is None:
        runs.write_status(run_dir, "running", "Measuring the base model before fine-tuning.", step=0,
                          **budget)
        model, _ = load_base_model(run_dir, device=str(trainer.device))
        result = evaluate_run(run_dir, model=model)
        write_eval(run_dir, "base", result)
        for cb in callbacks:
            cb("evaluation", {"which": "base", **result})
    fit = trainer.fit(callbacks=callbacks, resume=resume)
    if evaluate and fit.state in ("completed", "stopped") and runs.checkpoint_dir(run_dir, "last") is not None:
        state = runs.read_status(run_dir)
        runs.write_status(run_dir, "running", "Measuring the fine-tuned model.", step=fit.step, **budget)
        result = evaluate_run(run_dir, which="best", device=str(trainer.device))
        evals = write_eval(run_dir, "finetuned", result, step=fit.step)
        for cb in callbacks:
            cb("evaluation", {"which": "finetuned", **result})
        message = fit.message + " " + summarize(evals, runs.read_config(run_dir)["data"].get("val_is_train", False))
        fit.message = message.strip()
        runs.write_status(run_dir, fit.state, fit.message, **{k: v for k, v in state.items()
                                                               if k not in ("state", "message", "updated", "pid")})
    return fit


def summarize(evals: dict, val_is_train: bool = False) -> str:
    """One line: the headline metric before -> after (val_is_train: the data was too small to hold any out)."""
    before, after = evals.get("base") or {}, evals.get("finetuned") or {}
    if "exact_match" in after:
        b = f"{before['exact_match']:.0%}" if "exact_match" in before else "?"
        which = "training prompts (too few examples to hold any out)" if val_is_train else "held-out prompts"
        return f"Exact match on {after['items']} {which}: base {b} -> fine-tuned {after['exact_match']:.0%}."
    if "val_loss" in after:
        b = f"{before['val_loss']:.3f}" if "val_loss" in before else "?"
        return f"Validation loss: base {b} -> fine-tuned {after['val_loss']:.3f}."
    return ""



def compare(run_dir, prompts: list, params=None, which: str = "best") -> list[dict]:
    """Base and fine-tuned outputs side by side on the same prompts, with the same sampling settings (default:
    greedy). A prompt is a user message (chat runs; or a list of messages) or a text to continue (text runs).
    Returns [{"prompt", "base", "finetuned"}]."""
    from core.chat import reply
    from core.engine import SamplingParams, generate

    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    params = params or SamplingParams(max_new_tokens=64, temperature=0.0)
    models = {"base": load_base_model(run_dir)[0], "finetuned": runs.load_model(run_dir, which=which)[0]}
    tokenizer = load_tokenizer(run_dir)
    chat = "chat_template" in config
    out = []
    for prompt in prompts:
        row = {"prompt": prompt}
        for name, model in models.items():
            p = copy.deepcopy(params)
            if chat:
                messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
                row[name] = reply(model, tokenizer, config, messages, p)
            else:
                row[name] = generate(model, tokenizer, prompt, p)[0].text
        out.append(row)
    return out
