"""The engine's sentences for people, kept as data: one English template per key, and `Text`, a key with its
fields.

Code that tells a person something (an error, a run's status line, a tokenizer's description) builds a `Text`:

    raise CorpusError(Text("data.empty", name=path.name))

`str(text)` is the English sentence: the CLI prints it, config.json and status.json keep it. The app says the same
key in the page's language: playground/locales/<code>.toml hold "core.<key>" with the same {placeholders}, and a
key a language lacks falls back to the English here. A field may itself be a Text (a clause said in the same
language). status.json keeps a status line's Text beside its English (`Text.to_json`), so a page can say it in
another language later.

Keys are grouped by the module that says them; tests/test_messages.py checks that every key is used, that every
translation keeps its placeholders, and that every key has a Chinese translation.
"""

from __future__ import annotations

from collections.abc import Callable


class Text:
    """A message: a key of MESSAGES and the values of its {placeholders}. Fields are plain values (numbers,
    strings) or Texts; only JSON-able ones survive `to_json`."""

    __slots__ = ("key", "fields")

    def __init__(self, key: str, /, **fields):  # positional-only: a field may be called "key"
        if key not in MESSAGES:
            raise KeyError(f"no message {key!r} in core/messages.py")
        self.key = key
        self.fields = fields

    def render(self, template: Callable[[str], str]) -> str:
        """The sentence with `template(key)` as the text of each key (this one's and its fields')."""
        values = {k: v.render(template) if isinstance(v, Text) else v for k, v in self.fields.items()}
        return template(self.key).format(**values)

    def __str__(self) -> str:
        return self.render(MESSAGES.__getitem__)

    def __repr__(self) -> str:
        return f"Text({self.key!r}, {self.fields!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Text) and (self.key, self.fields) == (other.key, other.fields)

    def replace(self, old: str, new: str) -> Text:
        """A copy with `old` replaced by `new` in every string field (nested Texts included)."""
        return Text(
            self.key,
            **{k: v.replace(old, new) if isinstance(v, (str, Text)) else v for k, v in self.fields.items()},
        )

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "fields": {k: v.to_json() if isinstance(v, Text) else v for k, v in self.fields.items()},
        }

    @classmethod
    def from_json(cls, data) -> Text | None:
        """The Text `to_json` wrote, or None for anything else (an older file, a key this version lacks)."""
        if not isinstance(data, dict) or data.get("key") not in MESSAGES or not isinstance(data.get("fields"), dict):
            return None
        fields = {}
        for k, v in data["fields"].items():
            if isinstance(v, dict):
                v = cls.from_json(v)
                if v is None:
                    return None
            fields[k] = v
        return cls(data["key"], **fields)


def join(*parts: Text | None) -> Text | None:
    """Sentences one after another (None parts left out), as one Text."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    out = parts[-1]
    for p in reversed(parts[:-1]):
        out = Text("sentences", first=p, rest=out)
    return out


# fmt: off
MESSAGES: dict[str, str] = {
    "sentences": "{first} {rest}",
    # -- words and places that other messages quote ----------------------------------------------------------
    "what.text": "text",
    "what.data": "data",
    "what.training": "training",
    "what.validation": "validation",
    "where.line": "{name}, line {line}",
    "where.item": "{name}, item {item}",
    "where.row": "{name}, row {row}",
    "where.message": "{where}, message {i}",
    # -- data: reading corpus files ---------------------------------------------------------------------------
    "data.not_found": "File not found: {path}.",
    "data.folder": "{name} is a folder, not a file. Choose a {kind} file inside it.",
    "data.empty": "{name} is empty (0 bytes). Choose a file with some {kind} in it.",
    "data.too_big": "{name} is {size}, larger than the {limit} limit. Use a smaller file, or raise the limit with {env}.",
    "data.utf16": "{name} is UTF-16 text, not UTF-8. Save it as UTF-8 and try again.",
    "data.binary_nul": "{name} looks like a binary file, not text (it contains NUL bytes). Choose a plain-text file (.txt, .md, .jsonl or .csv).",
    "data.binary_control": "{name} looks like a binary file, not text (it is mostly control characters). Choose a plain-text file (.txt, .md, .jsonl or .csv).",
    "data.not_utf8": "{name} is not valid UTF-8 text: invalid byte 0x{byte:02x} at byte offset {offset}. Save it as UTF-8 and try again.",
    "data.whitespace": "{name} contains only whitespace; there is no text to train on.",
    "data.surrogate": "{where}: the text holds an invalid character (a lone surrogate, U+{code:04X}); fix the \\u escape or remove it.",
    "data.jsonl_json": '{where}: not valid JSON ({problem}). Each line of a .jsonl file must be one JSON object like {{"text": "..."}}.',
    "data.jsonl_no_text": '{where}: no "text" string field. Each line of a .jsonl file must be one JSON object like {{"text": "..."}}.',
    "data.jsonl_empty": '{name} has no text: every "text" field is empty.',
    "data.csv_unreadable": "{name} could not be read as CSV ({reason}).",
    "data.csv_no_column": "{name} has no column {column!r}. Available columns: {listed}.",
    "data.csv_which_column": "{name} has several columns and none is called 'text'. Choose the column to train on. Available columns: {listed}.",
    "data.csv_column_empty": "{name} has no text in column {column!r}.",
    "data.no_files": "No corpus files given. Choose at least one text file.",
    "data.files_too_big": "Together these {n} files are {size}, larger than the {limit} limit. Use fewer or smaller files, or raise the limit with {env}.",
    "data.part_too_short": "The {part} part of the corpus has only {n:,} tokens, but a context length of {block} needs at least {need:,}. Use {smaller}, or a bigger corpus.",
    "data.context_at_most": "a context length of at most {block}",
    "data.context_smaller": "a smaller context length",
    "data.too_short": "The data has only {n:,} tokens, but a context length of {block} needs at least {need:,}.",
    # -- datasets: the built-in corpora ----------------------------------------------------------------------
    "datasets.offline": "Tiny Shakespeare is not cached and {env}=1 forbids downloading it; use the built-in offline dataset 'python-stdlib' or upload a text file.",
    "datasets.no_download": "Could not download Tiny Shakespeare from {url} ({reason}). You seem to be offline: use the built-in offline dataset 'python-stdlib' or upload a text file.",
    "datasets.wrong_file": "The file downloaded from {url} is not Tiny Shakespeare (md5 {got}, expected {expected}), so it was not kept. Try again later, or use the built-in offline dataset 'python-stdlib' or upload a text file.",
    "datasets.no_stdlib": "No Python source files were found in {root}, so the 'python-stdlib' dataset is empty.",
    "datasets.unknown": "Unknown built-in dataset {name!r}. Known datasets: {known}.",
    "datasets.combined": "A built-in dataset cannot be combined with other files or datasets. Choose one.",
    # -- device, engine, files, chat ----------------------------------------------------------------------
    "device.seed": "The seed must be a whole number from 0 to {max:,}; got {seed!r}.",
    "engine.max_new_tokens": "max_new_tokens must be at least 1.",
    "engine.max_new_tokens_limit": "max_new_tokens is limited to {limit}; got {got}.",
    "engine.temperature": "temperature must be 0 (greedy) or more; got {got}.",
    "engine.top_k": "top_k must be at least 1; got {got}.",
    "engine.top_p": "top_p must be in (0, 1]; got {got}.",
    "engine.min_p": "min_p must be in [0, 1]; got {got}.",
    "engine.repetition_penalty": "repetition_penalty must be positive; got {got}.",
    "engine.num_samples": "num_samples must be between 1 and 64; got {got}.",
    "engine.stop_count": "At most {max} stop strings are allowed; got {got:,}.",
    "engine.stop_length": "A stop string may be at most {max} characters long; one has {got:,}.",
    "engine.prompt_empty": "The prompt is empty after tokenization; type at least one character.",
    "files.write": "Could not write {what}: {reason}.",
    "files.missing": "{path} is missing.",
    "files.unreadable": "{path} cannot be read ({reason}).",
    "files.json_deep": "{path} is corrupt (its JSON is nested too deeply).",
    "files.json_bad": "{path} is corrupt (not valid JSON: {reason}).",
    "chat.no_markers": "This tokenizer has no chat marker tokens {markers}: the model was not fine-tuned for chat with this template.",
    "chat.role": "Unknown chat role {role!r}; use one of {roles}.",
    "chat.template_bad": "The run's chat template is malformed ({reason}).",
    "chat.end_with_user": "The conversation must end with a user message.",
    # -- sft_data: fine-tuning data ----------------------------------------------------------------------------
    "what.fine-tuning": "fine-tuning",
    "sft.no_data": "No fine-tuning data given. Choose a .jsonl, .json, .csv or text file, or a built-in task.",
    "sft.files_too_big": "Together these {n} files are {size}, larger than the {limit} limit.",
    "sft.mixed": "{chat} holds conversations but {text} holds plain text; fine-tune on one kind at a time.",
    "sft.json_at": "{msg} at line {line}, column {column}",
    "sft.json_column": "{msg}, column {column}",
    "sft.json_bad": "{where}: not valid JSON ({problem}).",
    "sft.json_not_list": "{name} must hold a JSON array of examples (or use .jsonl: one per line).",
    "sft.jsonl_bad": '{where}: not valid JSON ({problem}). Each line must be one JSON object such as {{"messages": [{{"role": "user", "content": "..."}}, {{"role": "assistant", "content": "..."}}]}}, {{"instruction": ..., "output": ...}} or {{"prompt": ..., "completion": ...}}.',
    "sft.no_examples": "{name} holds no examples.",
    "sft.json_text": '{name}: plain text goes in a .jsonl file with a "text" field per line, or a .txt file.',
    "sft.not_object": '{where}: expected a JSON object, found {found}. Each line must be one JSON object such as {{"messages": [{{"role": "user", "content": "..."}}, {{"role": "assistant", "content": "..."}}]}}, {{"instruction": ..., "output": ...}} or {{"prompt": ..., "completion": ...}}.',
    "sft.messages_list": '{where}: "{key}" must be a non-empty list of messages.',
    "sft.alpaca_needs": 'an Alpaca-style example needs "instruction" and "output"',
    "sft.prompt_needs": "a prompt/completion example needs both fields",
    "sft.field_string": '{where}: "{field}" must be a string.',
    "sft.no_fields": '{where}: missing fields: no "messages" list, nor "instruction"/"output" or "prompt"/"completion" (found keys: {keys}). Each line must be one JSON object such as {{"messages": [{{"role": "user", "content": "..."}}, {{"role": "assistant", "content": "..."}}]}}, {{"instruction": ..., "output": ...}} or {{"prompt": ..., "completion": ...}}.',
    "sft.missing_field": '{where}: missing field "{field}": {what}.',
    "sft.field_not_string": '{where}: "{field}" must be a string, not {found}.',
    "sft.message_object": "{where}: expected an object with a role and content.",
    "sft.speaker": "{where}: unknown speaker {speaker!r}; use human, gpt or system.",
    "sft.message_field": '{where}: missing field "{field}".',
    "sft.role": "{where}: unknown role {role!r}; use system, user or assistant.",
    "sft.content_string": "{where}: the content must be a string, not {found}.",
    "sft.no_assistant": "{where}: no assistant message; an example needs a reply to learn from.",
    "sft.empty_assistant": "{where}: empty assistant turn; every assistant reply needs text to learn from (remove the example or write the reply).",
    "sft.csv_both_columns": "{name}: choose both a prompt column and a response column. Available columns: {listed}.",
    "sft.csv_empty_response": "{where}: empty response in column {column!r}; every example needs a reply to learn from.",
    "sft.csv_no_rows": "{name} has a header but no rows.",
    "sft.dropped_long": "longer than the context",
    "sft.dropped_empty": "no reply left after truncation",
    "sft.truncated_and_dropped": "{truncated:,} truncated to fit, {dropped:,} dropped ({why})",
    "sft.truncated": "{truncated:,} truncated to fit",
    "sft.dropped": "{dropped:,} dropped ({why})",
    "sft.too_long": "{n:,} of {examples:,} {split} examples were longer than the context of {block} tokens: {what}.",
    "sft.too_long_policy": "too_long must be 'truncate' or 'drop'; got {got!r}.",
    "sft.file_missing": "Fine-tuning data file not found: {path}.",
    "sft.corrupt": "The fine-tuning data in {path} ({split}) is corrupt (its files disagree).",
    # -- finetune -----------------------------------------------------------------------------------------------
    "finetune.method": "Unknown fine-tuning method {method!r}; use 'full' or 'lora'.",
    "finetune.base_is_file": "{spec} is a file; choose a run directory, a Hugging Face model folder, or hf:NAME.",
    "finetune.no_base": "No run or model folder {spec}. Choose one of your runs, a folder with a Hugging Face GPT-2 model, or a Hub model as hf:NAME (e.g. hf:distilgpt2).",
    "finetune.base_untrained": "{path} has no checkpoint yet: train it first, or choose another base.",
    "finetune.none_fits": "No training example fits the context of {block} tokens ({dropped:,} dropped). Use shorter examples or a model with a longer context.",
    "finetune.no_val_fits": "No validation example fits the context of {block} tokens.",
    "finetune.val_is_train": "Only {n} examples: too few to hold some out, so validation uses the training examples.",
    "finetune.no_base_file": "{path} is not a fine-tuning run (it has no {file}).",
    "finetune.not_finetune": "{path} is not a fine-tuning run (its config.json has no finetune section).",
    "finetune.on_training_prompts": "training prompts (too few examples to hold any out)",
    "finetune.on_held_out_prompts": "held-out prompts",
    "finetune.summary_em": "Exact match on {n} {which}: base {before} -> fine-tuned {after}.",
    "finetune.summary_loss": "Validation loss: base {before} -> fine-tuned {after}.",
    "prepare.exists": "{path} already holds a run; resume it or choose another output directory.",
    # -- train: the trainer's status lines and errors -------------------------------------------------------
    "train.config_bad": "{path} is incomplete or malformed ({reason}).",
    "train.state_bad": "{path} holds an incomplete trainer state ({reason}).",
    "status.training": "Training on {where}.",
    "status.finetuning": "Fine-tuning on {where}.",
    "status.training_slices": "Training on {device} in slices of {seconds} s.",
    "status.finetuning_slices": "Fine-tuning on {device} in slices of {seconds} s.",
    "status.processes": "{device} x {n} processes",
    "status.slice_done": "Trained a slice of {seconds} s, up to step {step}; the next slice goes on from there.",
    "status.finished": "Finished.",
    "status.finished_steps": "Finished {step} steps.",
    "status.finished_time": "Finished after {step} steps: the time budget of {seconds} s was used.",
    "status.best_val": "{done} Best validation loss {loss}.",
    "status.stopped": "Stopped at step {step}.",
    "status.diverged_elsewhere": "Training stopped: the main process found the weights diverged.",
    "status.loss_became": "the loss became {value}",
    "status.gradients_became": "the gradients became {value}",
    "status.val_loss_became": "the validation loss became {value}",
    "status.last_good_kept": "the last good checkpoint (step {step}) is kept",
    "status.no_checkpoint_yet": "no checkpoint was saved yet",
    "status.diverged": "Training stopped at step {step}: {what}. {kept}; try a lower learning rate.",
    "status.ready": "Ready to train.",
    "status.ready_finetune": "Ready to fine-tune.",
    "status.measuring_base": "Measuring the base model before fine-tuning.",
    "status.measuring_finetuned": "Measuring the fine-tuned model.",
    "status.gone": "The training process ended without saying why (killed, out of memory, or a full disk kept it from writing); resume it to continue from its last checkpoint.",
    "status.unreadable": "status.json is missing or unreadable",
    # -- runs: run directories and checkpoints --------------------------------------------------------------
    "runs.no_dir": "Run directory {path} does not exist.",
    "runs.not_a_run": "{path} is not a Newleaf run (it has no {file}).",
    "runs.previous_intact": "the previous checkpoint (step {step}) is intact",
    "runs.no_earlier": "no earlier checkpoint exists",
    "runs.save_failed": "Could not save the checkpoint of step {step}: {reason}; {kept}. Free some disk space (or fix the folder's permissions), then resume.",
    "runs.pointer_bad": "{path} is corrupt (it names no checkpoint directory).",
    "runs.pointer_missing": "{path} names {name}, which is missing.",
    "runs.pickle": "{name}: Newleaf loads weights only from .safetensors files; pickle-based files ({suffix}) can run arbitrary code when loaded and are refused.",
    "runs.only_pickle": "{path} is missing; there is only {pickled}, a pickle-based file, which can run arbitrary code when loaded: Newleaf loads weights only from .safetensors.",
    "runs.not_safetensors": "{path} is corrupt or not a safetensors file ({reason}).",
    "runs.weights_mismatch": "{source} does not match the model in config.json (missing: {missing}, unexpected: {unexpected}).",
    "runs.weight_shape": "{source}: {name} has shape {shape} but the config needs {need}.",
    "runs.too_few_weights": "{source} holds {have:,} weights, but the model in config.json needs {need:,}; they do not belong together.",
    "runs.untrained": "{path} has no checkpoint yet: train it first.",
    "runs.no_model_section": "{path} has no valid model section ({reason}).",
    # -- model, lora, trainable, train_config ---------------------------------------------------------------
    "model.positive": "{name} must be a positive whole number; got {value!r}.",
    "model.range": "{name} must be a whole number from 1 to {most}; got {value}.",
    "model.heads_divide": "The width n_embd={n_embd} must be divisible by the number of heads n_head={n_head} (each head gets n_embd / n_head dimensions); try n_head in {heads}.",
    "model.dropout": "dropout must be in [0, 1); got {value!r}.",
    "model.activation": "activation must be one of {known}; got {value!r}.",
    "model.unknown_settings": "Unknown model settings: {names}.",
    "model.preset": "Unknown preset {name!r}; choose one of: {known}.",
    "lora.rank": "The LoRA rank must be a positive whole number; got {value!r}.",
    "lora.alpha": "LoRA alpha must be a positive number; got {value!r}.",
    "lora.dropout": "LoRA dropout must be in [0, 1); got {value!r}.",
    "lora.target": "Unknown LoRA target {value!r}; choose among {known}.",
    "lora.layers": "LoRA layers must be numbers from 0 to {last} (this model has {n} layers); got {value!r}.",
    "lora.mismatch": "The LoRA adapters in {source} do not match this run's LoRA settings (missing: {missing}, unexpected: {unexpected}).",
    "lora.shape": "{source}: the LoRA adapter {name} has shape {shape}, but this run's rank needs {need}.",
    "trainable.freeze": "freeze_layers must be 0 or more; got {value!r}.",
    "trainable.freeze_all": "Freezing {freeze} layers leaves none to train: the model has {n}.",
    "trainable.val_fraction": "val_fraction must be between 0 and 1; got {value!r}.",
    "trainable.mismatch": "{source} does not match this run's model ({key}).",
    "train_config.lr": "The learning rate must be a positive number; got {value!r}.",
    "train_config.warmup": "warmup_steps must be 0 or more; got {value}.",
    "train_config.max_time": "max_time must be a positive number of seconds; got {value!r}.",
    "train_config.memory": "This model needs about {need} to train at batch size {batch}, but only {have} of memory is free. Choose a smaller model, context or batch size.",
    # -- tokenizer --------------------------------------------------------------------------------------------
    "net.offline": "no network",
    # core/recipes.py: what the scaled recipe picked, and why
    "recipes.why": "For {budget} s on this machine: {layers} layers, width {width}, context {context}, batch {batch}, learning rate {lr} ({params}M parameters besides the embeddings), about {tokens}M tokens{prediction}{runner_up}{other}.",
    "recipes.predicts": "; the loss model fitted to measured runs predicts {bits} bits per character with {tokenizer}",
    "recipes.unmeasured": "; no study measured {tokenizer}, so this is the shape picked for the nearest one that was",
    "recipes.bigger": "; a bigger model ({name}) would see too few tokens in that time",
    "recipes.smaller": "; a smaller model ({name}) would learn less from them",
    "recipes.other_tokenizer": "; {tokenizer} would reach {bits} bits per character",
    "recipes.beyond": "; that is about {times}× more text than the study trained any shape on, so treat it as a guess",
    "recipes.epochs": "; it would read the corpus about {epochs} times over, and a BPE model read more than {most} times was measured to learn the corpus by heart rather than get better, so pick a shorter time, a longer corpus or characters",
    "recipes.tok.char": "one token per character",
    "recipes.tok.gpt2": "GPT-2's tokenizer",
    "recipes.tok.bpe": "a BPE of {vocab} tokens trained on the corpus",
    "tokenizer.char": "character-level, {n} symbols",
    "tokenizer.gpt2": "GPT-2 BPE, {n} tokens",
    "tokenizer.bpe": "BPE trained on this corpus, {n} tokens",
    "tokenizer.bpe_fewer": "BPE trained on this corpus, {n} tokens (asked for {asked}; this text has too few repeated pairs for more)",
    "tokenizer.plus_special": "{description} + {n} special token",
    "tokenizer.plus_specials": "{description} + {n} special tokens",
    "tokenizer.unknown_char": "The text contains {n} character this model never saw in training: {shown}. It knows {known} characters.",
    "tokenizer.unknown_chars": "The text contains {n} characters this model never saw in training: {shown}. It knows {known} characters.",
    "tokenizer.and_more": "{shown} and {n} more",
    "tokenizer.split_failed": "The tokenizer could not split this text ({reason}).",
    "tokenizer.gpt2_download": "GPT-2's tokenizer files are not on this machine and could not be downloaded ({why}). They download once and are then kept in TIKTOKEN_CACHE_DIR (now {cache}); until then, choose the character tokenizer or train your own BPE.",
    "tokenizer.bpe_build": "Could not build the BPE tokenizer: {reason}",
    "tokenizer.bpe_size": "The BPE vocabulary size must be between {min} and {max}; got {got!r}.",
    "tokenizer.ranks_gaps": "The BPE token ranks are not the numbers 0..{last} without gaps or repeats.",
    "tokenizer.ranks_bytes": "The BPE vocabulary lacks {n} of the 256 single-byte tokens.",
    "tokenizer.bpe_spec": "The BPE vocabulary size in {spec!r} is not a whole number: use {specs}.",
    "tokenizer.unknown": "Unknown tokenizer {spec!r}: use {specs}.",
    "tokenizer.none": "No tokenizer in {path}: {file} is missing.",
    "tokenizer.unreadable": "Could not read {path}: {reason}",
    "tokenizer.kind": "{path} names an unknown tokenizer kind {kind!r}; expected one of {known}.",
    "tokenizer.specials_bad": "{path} is corrupt: 'special_tokens' must map names to the ids right after the {n} ordinary tokens.",
    "tokenizer.chars_bad": "{path} is corrupt: 'chars' must be a list of distinct single characters.",
    "tokenizer.bpe_fields": "{path} is corrupt: a BPE tokenizer needs 'pattern', 'vocab_size' and 'requested_vocab_size'.",
    "tokenizer.pattern": "{path} is not a tokenizer Newleaf wrote: its 'pattern' is not one of the known split patterns (GPT-4's, as rustbpe trains with, or GPT-2's).",
    "tokenizer.ranks_count": "{path} holds {have} tokens but {file} says {n}.",
    "tokenizer.ranks_missing": "{path} is missing: a BPE tokenizer needs it beside {file}.",
    "tokenizer.ranks_line": "{path} is corrupt at line {line}: expected 'base64-token rank'.",
    "tokenizer.empty_text": "Cannot build a tokenizer from an empty text.",
    "tokenizer.not_unicode": "The text is not valid Unicode ({reason} at character {at}).",
    # -- hf: GPT-2-family models from Hugging Face ------------------------------------------------------------
    "hf.is_file": "{name} is a file; pass the folder that holds config.json and model.safetensors.",
    "hf.no_folder": "No folder {name}, and it is not a Hugging Face Hub id like 'gpt2' or 'owner/name'.",
    "hf.bad_id": "{repo!r} is neither a local folder nor a valid Hugging Face Hub id.",
    "hf.gated": "{repo} is a gated repository on the Hugging Face Hub: accept its terms and log in (`hf auth login`), then try again.",
    "hf.not_found": "There is no model {repo!r} on the Hugging Face Hub (or it is private).",
    "hf.offline_env": "NEWLEAF_OFFLINE=1 forbids downloading it",
    "hf.no_download": "it could not be downloaded (no network?)",
    "hf.not_cached": "{repo} is not in the Hugging Face cache and {why}; download it once while online, or pass a local folder with config.json and model.safetensors.",
    "hf.download_failed": "Could not download {repo} from the Hugging Face Hub ({reason}). You seem to be offline: download it once while online, or pass a local folder.",
    "hf.no_weight_map": "{path} is corrupt (it has no weight_map).",
    "hf.unsafe_shard": "{path} names an unsafe shard {shard!r}.",
    "hf.only_pickle": "{name} holds its weights only as {pickled}, a pickle-based PyTorch file: loading pickle can run arbitrary code, so Newleaf reads weights only from model.safetensors. Convert it with a tool you trust, or use a copy that has safetensors weights.",
    "hf.no_safetensors": "{name} has no model.safetensors: Newleaf loads weights only from safetensors (pickle-based pytorch_model.bin files are refused; loading one can run arbitrary code).",
    "hf.refuse": "{name} cannot be loaded as a Newleaf GPT: {why}.",
    "hf.why.not_object": "its config.json is not a JSON object of settings",
    "hf.why.model_type": "it is a {model_type!r} model, and only GPT-2-family models (model_type 'gpt2') are supported",
    "hf.why.activation": "its activation_function is {act!r}; Newleaf's MLP uses GELU (exact, or GPT-2's tanh approximation)",
    "hf.why.eps": "its layer_norm_epsilon is {eps}; Newleaf's LayerNorm uses 1e-5",
    "hf.why.inverse_layer": "it scales attention by the inverse layer index (scale_attn_by_inverse_layer_idx), which Newleaf's attention does not do",
    "hf.why.unscaled": "its attention is not scaled by 1/sqrt(head size) (scale_attn_weights is false)",
    "hf.why.cross_attention": "it has cross-attention layers (add_cross_attention), which a decoder-only GPT lacks",
    "hf.why.n_inner": "its MLP is {n_inner} wide (n_inner); Newleaf's is 4 x n_embd = {width}",
    "hf.lacks": "{name}'s config.json lacks {key!r}.",
    "hf.impossible": "{name}'s config.json describes an impossible model: {reason}",
    "hf.no_config": "{name} has no config.json: it is not a Hugging Face model folder.",
    "hf.untied": "{name} has an output layer (lm_head) separate from its token embedding; Newleaf's GPT ties the two, as GPT-2 does.",
    "hf.vocab": "{name} has a vocabulary of {n:,} tokens, not GPT-2's {gpt2:,}, so GPT-2's tokenizer does not fit it.",
    "hf.gpt2_tokenizer_files": "Could not get the GPT-2 tokenizer files ({why}); they download once and are cached in TIKTOKEN_CACHE_DIR.",
    "status.imported": "Imported {name} from Hugging Face (not trained here).",
    # -- run_archive: runs zipped for download, and checked when uploaded -------------------------------------
    "archive.which": "Choose the best or the last checkpoint, not {which!r}.",
    "archive.untrained": "{title} has no checkpoint yet: train it first, then download it.",
    "archive.absolute": "The zip holds an unsafe path {name!r} (absolute, or with a backslash); nothing was imported.",
    "archive.climbs": "The zip holds an unsafe path {name!r} (it climbs out with '..'); nothing was imported.",
    "archive.symlink": "a symbolic link",
    "archive.not_regular": "not a regular file",
    "archive.odd_file": "{name} in the zip is {what}; a run holds only regular files. Nothing was imported.",
    "archive.pickle": "{name}: pickle-based files (.pt, .pth, .bin, .pkl, .ckpt...) can run arbitrary code when loaded, so Newleaf refuses them; a run's weights must be .safetensors. Nothing was imported.",
    "archive.unexpected": "{name} is not part of a Newleaf run, so the zip was refused (a run holds only {expected}).",
    "archive.entries": "The zip holds {n:,} entries; a run has at most {max}.",
    "archive.twice": "The zip holds {name} twice; nothing was imported.",
    "archive.encrypted": "{name} in the zip is encrypted; upload an ordinary zip.",
    "archive.file_too_big": "{name} unpacks to {size}, more than the {max} allowed for such a file.",
    "archive.unpacks_too_big": "The zip unpacks to more than the {max} allowed for an uploaded run.",
    "archive.no_config": "The zip has no {file}: it is not a Newleaf run (download one from the Runs tab to see what a run holds).",
    "archive.lies": "{name} in the zip holds more than the size it declares; the zip is corrupt or hostile, and was refused.",
    "archive.no_model": "{file} in the zip has no model section: it is not a Newleaf run's config.",
    "archive.impossible": "{file} in the zip describes an impossible model ({reason}).",
    "archive.vocab": "The tokenizer in the zip has {have:,} tokens but the model expects {need:,}; they do not belong together.",
    "archive.no_checkpoint": "The zip has no checkpoint (checkpoints/last.json or best.json and the folder it names): there are no weights to use.",
    "archive.unnamed": "checkpoints/{name} in the zip is named by neither last.json nor best.json; the zip was refused.",
    "archive.no_step": "checkpoints/{name}/meta.json in the zip has no step number.",
    "archive.dest_exists": "{path} already exists; an uploaded run needs a new folder.",
    "archive.unreadable": "The uploaded file cannot be read ({reason}).",
    "archive.too_big": "{name} is {size}, more than the {max} allowed for an uploaded run.",
    "archive.not_zip": "{name} is not a readable zip ({reason}).",
    "archive.text_too_big": "The zip's settings, tokenizer and logs unpack to more than the {max} allowed together.",
    "archive.log_lines": "{name} in the zip has more than {most} lines, more than a run's log may hold here; the zip was refused.",
    "archive.bad_config_json": "{file} in the zip is not valid JSON ({reason}).",
    "archive.weights_too_big": "{name} in the zip unpacks to {size}, more than a {kind} of this model can hold ({max}); it does not belong to the model in {file}, and the zip was refused.",
    "archive.bad_section": "{file} in the zip is not a Newleaf run's config: {what}.",
    "archive.not_object": "its '{section}' section is {kind}, not an object",
    "archive.not_count": "{field} is {value}, not a count",
    "archive.not_text": "its '{field}' is not text",
    "archive.not_time": "'{field}' is not a time",
    "archive.bad_train": "its training settings are impossible ({reason})",
    "archive.bad_eval": "eval.json in the zip is not a Newleaf evaluation (an object of objects).",
    "status.uploaded": "Uploaded from {name} (checkpoint of step {step}); it has no training data here, so it can be used but not trained further.",
    # -- jobs: the app's job manager (playground/jobs.py); its status lines go into status.json like the trainer's
    "jobs.no_identity": "This browser session has no identity yet; reload the page.",
    "jobs.no_runs_dir": "Cannot create the runs directory {path}: {reason}.",
    "jobs.bad_name": "{run_id!r} is not a valid run name.",
    "jobs.not_yours": "Run {run_id} does not exist (or belongs to another session).",
    "jobs.shared": "Run {run_id} is a shared example: it can be used but not changed.",
    "jobs.already": "This run is already training or waiting to train.",
    "jobs.waiting": "Waiting for a free training slot.",
    "jobs.dequeued": "Removed from the queue before it started.",
    "jobs.not_training": "This run is not training.",
    "jobs.stop_first": "Stop this run before deleting it.",
    "jobs.disk_full": "Your runs and downloads take {used} of the {max} one session may use here{more}; delete runs you no longer need (Runs tab) to make room.",
    "jobs.disk_need": ", and this needs {need} more",
    "jobs.starting": "Starting the training process…",
    "jobs.starting_slices": "Starting: the app trains this run itself, in slices of {seconds} s (on ZeroGPU each slice waits for a GPU)…",
    "jobs.slice_failed": "A slice of training could not run: {why}. Resume to continue from the last checkpoint.",
    "jobs.slices_gone": "Training in slices ended without saying why; resume it to continue from its last checkpoint.",
    "jobs.start_failed": "Could not start training: {why}",
    "jobs.orphan_gone": "The training process (started before the app restarted) ended without saying why; resume it from its last checkpoint.",
    "jobs.interrupted": "Interrupted when the app restarted; resume it to continue.",
    "jobs.killed": "The training process was killed by {signal}. Resume to continue from the last checkpoint.",
    "jobs.killed_oom": "The training process was killed by {signal} (out of memory?). Resume to continue from the last checkpoint.",
    "jobs.failed_because": "Training failed (exit code {code}): {detail}",
    "jobs.failed": "Training failed (exit code {code}).",
}
# fmt: on
