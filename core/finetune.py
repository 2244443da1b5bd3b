"""Fine-tuning: start from trained weights, train on chosen data, and measure the model before and after.

    prepare_finetune(out, base, data, ...)   a run directory, self-contained and ready to train
    run_finetune(run_dir, callbacks)         measure the base model, train (the ordinary Trainer), measure the result
                                             (`python -m core train --out RUN --resume` calls it for such a run;
                                             core/slices.py does the same three things in slices)
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from core import runs
from core.chat import TokenChatTemplate, reply, template_for
from core.device import pick_device
from core.engine import SamplingParams, generate
from core.errors import CheckpointError, ConfigError, CorpusError, NewleafError
from core.evaluate import evaluate_run, read_eval, write_eval
from core.files import atomic_folder, atomic_write, atomic_write_json, read_json
from core.hf import load_hf_gpt2
from core.messages import Text, join
from core.model import GPT, GPTConfig, preset_config
from core.prepare import encode_text, write_token_files
from core.sft_data import (
    FinetuneData,
    conversation_text,
    encode_conversations,
    load_finetune_data,
    write_conversations,
    write_examples,
)
from core.tokenizer import CharTokenizer, Tokenizer, load_tokenizer
from core.train import FitResult, Trainer
from core.train_config import TrainConfig, check_memory
from core.trainable import BASE_FILE, METHODS, FinetuneConfig, FineTuned, parameter_counts

# What fine-tuning changes from pretraining's defaults: fewer steps, more frequent evaluation, a lower learning rate
# for full fine-tuning (the weights are already good; big steps would wreck them) and a higher one for LoRA (its
# adapters start at zero and are few).
_SHORT = dict(warmup_steps=20, max_steps=500, eval_every=50, eval_batches=4, weight_decay=0.0, sample_tokens=64,
              log_every=10)  # fmt: skip
TRAIN_DEFAULTS = {"full": dict(_SHORT, lr=3e-4), "lora": dict(_SHORT, lr=2e-3)}
# The demo task's recipe: what teaches two-digit addition to a fresh nano model on a CPU in minutes. Re-measured
# 2026-12-02 with `python -m core finetune --data builtin:arithmetic` on held-out sums whose commuted twins are held
# out too: exact match 0 % -> 36 % (the split used to leak twins into training, which had shown 89 %).
DEMO_TRAIN = dict(warmup_steps=50, max_steps=1500, eval_every=250, batch_size=32, eval_batches=2)
DEMO_LR = {"full": 1e-3, "lora": 2e-3}


def train_config(method: str = "full", demo: bool = False, **overrides):
    """Fine-tuning's TrainConfig: the method's defaults (the demo task's recipe for it), then `overrides`
    (None values ignored)."""
    if method not in METHODS:
        raise ConfigError(Text("finetune.method", method=method))
    d = {**TRAIN_DEFAULTS[method], **(dict(DEMO_TRAIN, lr=DEMO_LR[method]) if demo else {})}
    d.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**d)


# ----------------------------------------------------------------------------------------------------------
# Bases: where the starting weights come from


@dataclass
class Base:
    tensors: dict | None  # plain GPT weights (None for scratch: made once the vocabulary is known)
    model_cfg: GPTConfig | None
    tokenizer: Tokenizer | None
    source: dict  # what config["finetune"]["base"] records
    config: dict  # the base run's config.json ({} for Hugging Face and scratch bases)


def load_base(spec, which: str = "best") -> Base:
    """A base from "RUN_DIR" | "hf:NAME" | a Hugging Face folder | "scratch:PRESET"."""
    spec = str(spec)
    if spec.startswith("scratch:"):
        preset = spec[len("scratch:") :]
        preset_config(preset, 1)  # a clear error for an unknown preset, before any data work
        return Base(None, None, None, {"kind": "scratch", "preset": preset}, {})
    if spec.startswith("hf:"):
        return _hf_base(spec[len("hf:") :])
    path = Path(spec).expanduser()
    if path.is_dir():
        config_file = path / runs.CONFIG
        if config_file.is_file():
            config = read_json(config_file)
            if isinstance(config, dict) and "model" in config and "tokenizer" in config:
                return _run_base(path, config, which)
        return _hf_base(str(path))
    if path.exists():
        raise CheckpointError(Text("finetune.base_is_file", spec=spec))
    raise CheckpointError(Text("finetune.no_base", spec=spec))


def _run_base(path: Path, config: dict, which: str) -> Base:
    ck = runs.checkpoint_dir(path, which) or runs.checkpoint_dir(path, "last")
    if ck is None:
        raise CheckpointError(Text("finetune.base_untrained", path=str(path)))
    try:
        cfg = GPTConfig.from_dict(config["model"])
    except (KeyError, TypeError) as e:
        raise CheckpointError(Text("runs.no_model_section", path=str(path / runs.CONFIG), reason=str(e))) from None
    tensors = runs.load_tensors(ck / "model.safetensors")
    runs.load_model_weights(GPT(cfg), tensors, str(ck / "model.safetensors"))  # checks that they fit
    meta = read_json(ck / "meta.json")
    source = {
        "kind": "run",
        "path": str(path),
        "checkpoint": ck.name,
        "step": meta.get("step"),
        "val_loss": meta.get("val_loss"),
    }
    return Base(tensors, cfg, load_tokenizer(path), source, config)


def _hf_base(name: str) -> Base:
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


@dataclass
class Vocabulary:
    """The tokenizer a fine-tuning run uses, and how it relates to its base's."""

    tokenizer: Tokenizer
    id_map: list[int] | None  # base id -> new id; None: a fresh vocabulary made from the data
    template: TokenChatTemplate | None  # chat data: the template whose markers are special tokens

    @property
    def new_ids(self) -> list[int]:
        """Ids the base did not have: their embedding rows are new."""
        if self.id_map is None:
            return []
        return sorted(set(range(self.tokenizer.vocab_size)) - set(self.id_map))


def chat_template(base_config: dict) -> TokenChatTemplate:
    """The template chat fine-tuning renders with: the base's own when it has token markers, else the default."""
    saved = template_for(base_config)
    return saved if isinstance(saved, TokenChatTemplate) else TokenChatTemplate()


def plan_vocabulary(data: FinetuneData, base_tokenizer: Tokenizer | None, base_config: dict) -> Vocabulary:
    """The base's tokenizer plus the chat markers (chat data) and any characters of the data a character-level
    base never saw; for a fresh model (base_tokenizer None), the data's own characters plus the markers."""
    chat = data.kind == "chat"
    template = chat_template(base_config) if chat else None
    text = conversation_text(data.conversations + (data.held_out or [])) if chat else data.text
    specials = template.markers if chat else []
    if base_tokenizer is None:
        tokenizer = CharTokenizer.from_text(text)
        tokenizer.add_special_tokens(specials)
        return Vocabulary(tokenizer, None, template)
    tokenizer, id_map = extend_tokenizer(base_tokenizer, text, specials)
    return Vocabulary(tokenizer, id_map, template)


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


def prepare_finetune(
    run_dir,
    base,
    data,
    *,
    ft: FinetuneConfig | None = None,
    train=None,
    which: str = "best",
    prompt_column: str | None = None,
    response_column: str | None = None,
    csv_column: str | None = None,
    extra: dict | None = None,
) -> Path:
    """Create a fine-tuning run directory from a base (see load_base; or a Base) and data (see
    core.sft_data.load_finetune_data: paths, "builtin:NAME", or a FinetuneData). Nothing trains yet: the app or
    `python -m core train --out RUN --resume` runs it, as any run. Raises a NewleafError for every user mistake
    before writing anything."""
    run_dir = Path(run_dir)
    if (run_dir / runs.CONFIG).exists():
        raise ConfigError(Text("prepare.exists", path=str(run_dir)))
    ft = ft or FinetuneConfig()
    ft.validate()
    data = (
        data
        if isinstance(data, FinetuneData)
        else load_finetune_data(
            data, prompt_column=prompt_column, response_column=response_column, csv_column=csv_column
        )
    )
    demo = data.task is not None
    if demo:  # the task's held-out questions are its score: all of them count
        ft = replace(ft, eval_items=len(data.held_out))
    train = train or train_config(ft.method, demo=demo)
    if not isinstance(train, TrainConfig):
        raise ConfigError("train must be a TrainConfig.")
    base = base if isinstance(base, Base) else load_base(base, which)

    # the vocabulary: the base's, plus chat markers and characters it lacks
    chat = data.kind == "chat"
    vocab = plan_vocabulary(data, base.tokenizer, base.config)
    tokenizer, template, new_ids = vocab.tokenizer, vocab.template, vocab.new_ids
    if vocab.id_map is None:  # a fresh model from scratch
        model_cfg = preset_config(base.source["preset"], tokenizer.vocab_size)
        torch.manual_seed(train.seed)
        tensors = runs.model_tensors(GPT(model_cfg))
    else:
        model_cfg = GPTConfig.from_dict({**base.model_cfg.to_dict(), "vocab_size": tokenizer.vocab_size})
        tensors = grow_embedding(base.tensors, vocab.id_map, tokenizer.vocab_size, train.seed)
    ft.validate(model_cfg.n_layer)
    check_memory(model_cfg, train)
    block = model_cfg.block_size

    counts = parameter_counts(model_cfg, ft, len(new_ids))

    def write(tmp: Path):
        # the data: token files, and what the user should know about them
        if chat:
            data_info = _write_conversations(tmp / "data", data, tokenizer, template, block, ft, train.seed)
        else:
            data_info = _write_text(tmp / "data", data, tokenizer, block, ft.val_fraction)
        tokenizer.save(tmp)
        atomic_write(tmp / BASE_FILE, lambda f: save_file(tensors, str(f), metadata={"format": "pt"}))
        config = {
            "model": model_cfg.to_dict(),
            "train": asdict(train),
            "tokenizer": tokenizer.summary(),
            "data": data_info,
            "finetune": {
                **asdict(ft),
                "base": base.source,
                "new_token_ids": new_ids,
                "params": counts,
                **({"task": data.task} if data.task else {}),
            },
            **({"chat_template": template.to_dict()} if chat else {}),
            "created": time.time(),
            **(extra or {}),
        }
        atomic_write_json(tmp / runs.CONFIG, config)
        runs.write_status(
            tmp, "created", Text("status.ready_finetune"), step=0, max_steps=train.max_steps, max_time=train.max_time
        )

    # the run appears whole or not at all: a full disk half-way, or data refused late, leaves nothing behind
    return atomic_folder(run_dir, write, "a run")


def _write_conversations(
    data_dir: Path, data: FinetuneData, tokenizer, template, block: int, ft: FinetuneConfig, seed: int
) -> dict:
    """Split, encode and store conversations (ids + loss mask, and the validation conversations as JSONL);
    returns config.json's data section, with notes on what the user should know (examples cut or dropped)."""
    notes = []
    train_convs, val_convs, val_is_train = _split_conversations(data, ft.val_fraction, seed)
    enc_train = encode_conversations(train_convs, tokenizer, template, block, ft.too_long)
    enc_val = encode_conversations(val_convs, tokenizer, template, block, ft.too_long)
    for enc, split in ((enc_train, "training"), (enc_val, "validation")):
        note = enc.report(block, ft.too_long, split)
        if note:
            notes.append(note)
    if not enc_train.ids:
        raise CorpusError(Text("finetune.none_fits", block=block, dropped=enc_train.dropped))
    if not enc_val.ids:
        raise CorpusError(Text("finetune.no_val_fits", block=block))
    if val_is_train:
        notes.append(Text("finetune.val_is_train", n=len(train_convs)))
    write_examples(data_dir, "train", enc_train, tokenizer.vocab_size)
    write_examples(data_dir, "val", enc_val, tokenizer.vocab_size)
    write_conversations(data_dir / "val.jsonl", [val_convs[i] for i in enc_val.kept_indices])
    val_replies = [
        c[i] for c in (val_convs[k] for k in enc_val.kept_indices) for i in range(len(c)) if c[i]["role"] == "assistant"
    ]
    return {
        "name": data.name,
        "format": "sft",
        "val_fraction": ft.val_fraction,
        "val_is_train": val_is_train,
        "train_examples": len(enc_train.ids),
        "val_examples": len(enc_val.ids),
        "train_tokens": sum(map(len, enc_train.ids)),
        "val_tokens": enc_val.target_tokens,
        "train_target_tokens": enc_train.target_tokens,
        # bits per character of the replies: each reply's characters, plus one for its end marker
        "train_chars": len(conversation_text(train_convs)),
        "val_chars": sum(len(m["content"]) + 1 for m in val_replies),
        "val_bytes": sum(len(m["content"].encode("utf-8")) + 1 for m in val_replies),
        "truncated": enc_train.truncated + enc_val.truncated,
        "dropped": enc_train.dropped + enc_val.dropped,
        "too_long": ft.too_long,
        "notes": [str(n) for n in notes],
        "note_texts": [n.to_json() for n in notes],  # the same, for saying them in another language
    }


def _write_text(data_dir: Path, data: FinetuneData, tokenizer, block: int, val_fraction: float) -> dict:
    """Split, tokenize and store plain text, as for pretraining; returns config.json's data section."""
    train_ids, val_ids, info = encode_text(data.text, tokenizer, block, val_fraction, data.name)
    write_token_files(data_dir, train_ids, val_ids, tokenizer.vocab_size)
    return {**info, "format": "text", "notes": []}


def describe_data(
    data: FinetuneData,
    base_tokenizer: Callable[[], Tokenizer] | None,
    base_config: dict,
    block_size: int | None,
    too_long: str = "truncate",
    preview_chars: int = 2000,
) -> dict:
    """What the app shows about fine-tuning data before a run is made, as facts (the words are the caller's):
    {"chat", "name", "examples", "held_out", "reuse" (too few examples to hold any out), "chars", "tokens"
    (plain text), "block" and "note" (conversations longer than the context: a Text, or ""), "why" (the
    vocabulary could not be planned: a Text or the error's words, or ""), "preview" (the first conversation
    rendered, or the text's start)}.
    base_tokenizer loads the base's tokenizer when called (it may download); None for a fresh model."""
    chat = data.kind == "chat"
    convs = data.conversations + (data.held_out or [])
    vocab, why = None, ""
    try:  # the tokenizer fine-tuning will use: the base's plus the markers and any new characters
        vocab = plan_vocabulary(data, base_tokenizer() if base_tokenizer else None, base_config)
    except NewleafError as e:
        why = e.text or str(e)
    text = conversation_text(convs) if chat else data.text
    facts = {
        "chat": chat,
        "name": data.name,
        "examples": len(convs),
        "held_out": len(data.held_out or []),
        "block": None,
        "note": "",
        "why": why,
        "chars": len(text or ""),
        "tokens": None,
        "reuse": False,
    }
    if chat:
        template = chat_template(base_config)
        facts["reuse"] = validation_reuses_training(data, FinetuneConfig().val_fraction)
        if vocab is not None and block_size:
            enc = encode_conversations(convs, vocab.tokenizer, template, block_size, too_long)
            facts.update(block=block_size, note=enc.report(block_size, too_long, "fine-tuning") or "")
        preview = template.render(convs[0], add_generation_prompt=False)
    else:
        facts["tokens"] = len(vocab.tokenizer.encode(text)) if vocab is not None else None
        preview = text
    facts["preview"] = preview[:preview_chars]
    return facts


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


# ----------------------------------------------------------------------------------------------------------
# Running: measure the base, train, measure the result


def load_base_model(run_dir, device: str = "cpu"):
    """The run's starting weights (base.safetensors, in the run's vocabulary) as a plain GPT, and the tokenizer."""
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    if not (run_dir / BASE_FILE).exists():
        raise CheckpointError(Text("finetune.no_base_file", path=str(run_dir), file=BASE_FILE))
    model = GPT(GPTConfig.from_dict(config["model"]))
    runs.load_model_weights(model, runs.load_tensors(run_dir / BASE_FILE), str(run_dir / BASE_FILE))
    return model.to(pick_device(device)).eval(), load_tokenizer(run_dir)


def is_finetune_run(run_dir) -> bool:
    try:
        return bool(runs.read_config(run_dir).get("finetune"))
    except NewleafError:
        return False


def run_finetune(
    run_dir,
    callbacks=(),
    resume: bool = True,
    evaluate: bool | None = None,
    device: str | None = None,
    trainer: Trainer | None = None,
) -> FitResult:
    """Train a prepared fine-tuning run with the ordinary Trainer (`trainer`, e.g. one whose stop a signal
    handler asks for; default: a new one for the run). With `evaluate` (default: the run's finetune.evaluate
    setting), the base model is measured first (once: kept in eval.json) and the fine-tuned one after, when
    training completed or was stopped. (A run trained in slices does the same three things in calls of their own:
    core/slices.py.)
    Returns the Trainer's FitResult. Events for callbacks: the Trainer's, plus ("evaluation", {"which": "base" |
    "finetuned", ...metrics}) after each measurement."""
    trainer = trainer or Trainer(run_dir, device=device)
    evaluate = evaluates(trainer, evaluate)
    if evaluate and base_unmeasured(run_dir):
        measure_base(trainer, callbacks)
    fit = trainer.fit(callbacks=callbacks, resume=resume)
    if evaluate and result_measurable(run_dir, fit):
        measure_result(trainer, fit, callbacks)
    return fit


def evaluates(trainer: Trainer, evaluate: bool | None = None) -> bool:
    """Whether a fine-tuning run's models are measured: `evaluate`, or by default the run's own setting. Refuses a
    trainer of a run that is not a fine-tuning run."""
    if not isinstance(trainer.model, FineTuned):
        raise CheckpointError(Text("finetune.not_finetune", path=str(trainer.run_dir)))
    return trainer.model.ft.evaluate if evaluate is None else evaluate


def base_unmeasured(run_dir) -> bool:
    """The base model is measured once, before the first step."""
    return "base" not in read_eval(run_dir) and runs.checkpoint_dir(run_dir, "last") is None


def result_measurable(run_dir, fit: FitResult) -> bool:
    """The fine-tuned model is measured when training completed or was stopped with a checkpoint to measure."""
    return fit.state in ("completed", "stopped") and runs.checkpoint_dir(run_dir, "last") is not None


def measure_base(trainer: Trainer, callbacks=()) -> None:
    """Measure the run's base model on its held-out data; kept in eval.json as "base"."""
    run_dir, budget = trainer.run_dir, _budget(trainer)
    runs.write_status(run_dir, "running", Text("status.measuring_base"), step=0, **budget, **trainer.status_extra)
    model, _ = load_base_model(run_dir, device=str(trainer.device))
    result = evaluate_run(run_dir, model=model)
    write_eval(run_dir, "base", result)
    for cb in callbacks:
        cb("evaluation", {"which": "base", **result})


def measure_result(trainer: Trainer, fit: FitResult, callbacks=()) -> None:
    """Measure the fine-tuned model (its best checkpoint), keep it in eval.json as "finetuned", and end the run's
    status with how training ended plus the headline metric before -> after (`fit` is updated to say the same)."""
    run_dir, budget = trainer.run_dir, _budget(trainer)
    runs.write_status(
        run_dir, "running", Text("status.measuring_finetuned"), step=fit.step, **budget, **trainer.status_extra
    )
    result = evaluate_run(run_dir, which="best", device=str(trainer.device))
    evals = write_eval(run_dir, "finetuned", result, step=fit.step)
    for cb in callbacks:
        cb("evaluation", {"which": "finetuned", **result})
    message = join(fit.text, summarize(evals, runs.read_config(run_dir)["data"].get("val_is_train", False)))
    fit.message, fit.text = str(message), message
    runs.write_status(run_dir, fit.state, message, step=fit.step, **budget, **trainer.status_extra)


def _budget(trainer: Trainer) -> dict:
    """The run's step and time budget, which its status shows while measuring too."""
    return {"max_steps": trainer.cfg.max_steps, "max_time": trainer.cfg.max_time}


def summarize(evals: dict, val_is_train: bool = False) -> Text | None:
    """One line: the headline metric before -> after (val_is_train: the data was too small to hold any out)."""
    before, after = evals.get("base") or {}, evals.get("finetuned") or {}
    if "exact_match" in after:
        b = f"{before['exact_match']:.0%}" if "exact_match" in before else "?"
        which = Text("finetune.on_training_prompts") if val_is_train else Text("finetune.on_held_out_prompts")
        return Text("finetune.summary_em", n=after["items"], which=which, before=b, after=f"{after['exact_match']:.0%}")
    if "val_loss" in after:
        b = f"{before['val_loss']:.3f}" if "val_loss" in before else "?"
        return Text("finetune.summary_loss", before=b, after=f"{after['val_loss']:.3f}")
    return None


def compare(run_dir, prompts: list, params=None, which: str = "best") -> list[dict]:
    """Base and fine-tuned outputs side by side on the same prompts, with the same sampling settings (default:
    greedy). A prompt is a user message (chat runs; or a list of messages) or a text to continue (text runs).
    Returns [{"prompt", "base", "finetuned"}]."""
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
