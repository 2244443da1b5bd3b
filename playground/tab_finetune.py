"""Tab 4 · Fine-tune: pick a base model and data, full fine-tuning or LoRA, Start / Stop; follow the job like the
Train tab does; then the base and the fine-tuned model side by side (metrics, and replies to the same prompts).

The engine does all the work (core/finetune.py, core/sft_data.py, core/evaluate.py): this tab turns the page's
choices into `prepare_finetune(...)`, starts the run through the job manager (the same
`python -m core train --out RUN --resume` process as any run), and reads the run directory. The followed run id
lives in its own browser storage, so a page refresh re-attaches to it.

Layout first (`create_tab`), then the handlers it wires; the pure helpers they use are at the top.
"""
from __future__ import annotations

import functools
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
import pandas as pd

from core import demo_task, runs
from core.datasets import BUILTIN_DATASETS
from core.engine import SamplingParams
from core.errors import ConfigError, CorpusError, NewleafError
from core.evaluate import read_eval, split_prompt
from core.finetune import (FinetuneConfig, compare, extend_tokenizer, is_finetune_run,
                           load_base, parameter_counts, prepare_finetune, train_config, validation_reuses_training)
from core.model import GPTConfig, preset_config
from playground.charts_train import loss_figure
from playground.context import AppContext, friendly
from playground.form_values import parse_layers, parse_number
from playground.i18n import EN, t
from playground.job_view import TICK_SECONDS, progress_html, samples_text, status_markdown
from playground.jobs import ACTIVE_STATES, owner_id
from playground.model_choices import check_fits
from playground.run_picker import readable_runs, refreshed_choices
from playground.upload_checks import MB, check_upload_sizes

BASE_KIND_VALUES = ("scratch", "run", "hub", "folder")
SCRATCH_PRESETS = ("tiny", "nano", "micro")
HUB_MODELS = ("distilgpt2", "gpt2")
# shapes of the offered Hub models, for the parameter preview before anything is downloaded
HUB_SHAPES = {"distilgpt2": dict(n_layer=6, n_head=12, n_embd=768, block_size=1024, vocab_size=50257),
              "gpt2": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50257)}
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
STORAGE_KEY = "newleaf-finetune-run"  # browser storage of the followed run's id
UPLOAD = "upload"
DEFAULT_SOURCE = "builtin:arithmetic"
SCRATCH_VOCAB = 32        # the preview's guess at a fresh character-level vocabulary (the data decides)
MAX_COMPARE = 8           # prompts compared at once
COMPARE_TOKENS = 64
PREVIEW_CHARS = 600
METRICS = [("val_loss", 4), ("perplexity", 2), ("exact_match", 1), ("bleu", 1), ("rouge_l", 3),
           ("distinct_1", 3), ("distinct_2", 3)]  # (key in eval.json, decimals shown)


def base_kind_choices(lang: str = "en") -> list[tuple[str, str]]:
    return [(t(f"ft.kind.{k}", lang), k) for k in BASE_KIND_VALUES]


def method_choices(lang: str = "en") -> list[tuple[str, str]]:
    return [(t("ft.method.full", lang), "full"), (t("ft.method.lora", lang), "lora")]


def too_long_choices(lang: str = "en") -> list[tuple[str, str]]:
    return [(t("ft.too_long.truncate", lang), "truncate"), (t("ft.too_long.drop", lang), "drop")]


@functools.lru_cache(maxsize=None)
def _task_sizes(name: str) -> tuple[int, int]:
    train, test = demo_task.TASKS[name].items()
    return len(train), len(test)


def source_choices(lang: str = "en") -> list[tuple[str, str]]:
    """(label, value) of the data choices: the demo tasks, the built-in corpora as plain text, an upload."""
    out = []
    for name, task in demo_task.TASKS.items():
        n_train, n_test = _task_sizes(name)
        title = t(f"ft.task.{name}", lang) if f"ft.task.{name}" in EN else task.title
        out.append((t("ft.src.demo", lang, title=title, train=f"{n_train:,}", test=f"{n_test:,}"),
                    f"{demo_task.PREFIX}{name}"))
    for d in BUILTIN_DATASETS.values():
        title = t(f"ft.dataset.{d.name}", lang) if f"ft.dataset.{d.name}" in EN else d.title
        out.append((t("ft.src.text", lang, title=title), f"{demo_task.PREFIX}{d.name}"))
    out.append((t("data.src.upload", lang), UPLOAD))
    return out


def recipe_defaults(method: str, source: str) -> tuple[float, int]:
    """(learning rate, steps) the engine uses for this method, and for the demo task when it is the data."""
    cfg = train_config(method if method in ("full", "lora") else "full", demo=demo_task.task_for(source) is not None)
    return cfg.lr, cfg.max_steps


def _number(value, name_key: str, cast=float, lang: str = "en"):
    return parse_number(value, name_key, cast, lang, empty_key=None)


def finetune_config(method, freeze, rank, alpha, dropout, layers, too_long="truncate", lang="en") -> FinetuneConfig:
    ft = FinetuneConfig(method=method, freeze_layers=_number(freeze or 0, "ft.name.freeze", int, lang),
                        lora_rank=_number(rank, "ft.name.lora_rank", int, lang),
                        lora_alpha=_number(alpha, "ft.name.lora_alpha", float, lang),
                        lora_dropout=_number(dropout or 0, "ft.name.lora_dropout", float, lang),
                        lora_layers=parse_layers(layers, lang), too_long=too_long or "truncate")
    ft.validate()
    return ft


# -- the base model --------------------------------------------------------------------------------------------


@dataclass
class BaseChoice:
    spec: str                          # what core.finetune.load_base takes
    model_cfg: GPTConfig | None        # its shape when known without loading weights
    tokenizer: Callable | None         # () -> the base's tokenizer; None for a fresh model (made from the data)
    config: dict                       # a base run's config.json ({} otherwise)
    label: str                         # for titles and messages
    scratch: bool = False


def _hf_shape(folder: Path | None, name: str) -> GPTConfig | None:
    from core.hf import gpt_config_from_hf
    config_file = folder / "config.json" if folder else None
    if config_file is None:  # a Hub model: its config.json if it is cached already, else the shapes we know
        try:
            from huggingface_hub import try_to_load_from_cache
            cached = try_to_load_from_cache(name, "config.json")
            config_file = Path(cached) if isinstance(cached, str) else None
        except Exception:
            config_file = None
    if config_file is not None and config_file.is_file():
        return gpt_config_from_hf(runs.read_json(config_file), name)
    return GPTConfig(**HUB_SHAPES[name]) if name in HUB_SHAPES else None


def _gpt2_tokenizer():
    from core.tokenizer import GPT2Tokenizer
    return GPT2Tokenizer()


def base_choice(ctx: AppContext, owner, kind, run_id, hub, folder, preset, lang="en") -> BaseChoice:
    """The page's base choice, checked: a run this session may read, a Hub id (never a path: a path would
    bypass the ownership checks), a local folder outside the runs directory, or a fresh model."""
    if kind == "scratch":
        preset = preset or "nano"
        if preset not in SCRATCH_PRESETS:
            raise ConfigError(t("ft.err.preset", lang, sizes=", ".join(SCRATCH_PRESETS), value=repr(preset)))
        return BaseChoice(f"scratch:{preset}", preset_config(preset, SCRATCH_VOCAB), None, {},
                          t("ft.base.fresh_label", lang, preset=preset), scratch=True)
    if kind == "run":
        if not run_id:
            raise NewleafError(t("ft.base.pick_run", lang))
        path = ctx.jobs.check_read(owner, run_id)
        config = runs.read_config(path)
        from core.tokenizer import load_tokenizer
        return BaseChoice(str(path), GPTConfig.from_dict(config["model"]), lambda: load_tokenizer(path), config,
                          config.get("title") or run_id)
    if kind == "hub":
        name = (hub or "").strip()
        if not _HUB_ID.fullmatch(name) or ".." in name or Path(name).exists():
            raise NewleafError(t("ft.base.bad_hub", lang, name=name))
        return BaseChoice(f"hf:{name}", _hf_shape(None, name), _gpt2_tokenizer, {}, name)
    if kind == "folder":
        if ctx.settings.on_space:
            raise NewleafError(t("ft.base.folder_space", lang))
        text = (folder or "").strip()
        if not text:
            raise NewleafError(t("ft.base.no_folder", lang))
        path = Path(text).expanduser().resolve()
        if path == ctx.jobs.root or ctx.jobs.root in path.parents:
            raise NewleafError(t("ft.base.folder_in_runs", lang))
        if not path.is_dir():
            raise NewleafError(t("ft.base.no_such_folder", lang, path=text) + " " + t("ft.base.no_folder", lang))
        config = runs.read_json(path / runs.CONFIG) if (path / runs.CONFIG).is_file() else {}
        if isinstance(config, dict) and "model" in config and "tokenizer" in config:  # a Newleaf run elsewhere
            from core.tokenizer import load_tokenizer
            return BaseChoice(str(path), GPTConfig.from_dict(config["model"]), lambda: load_tokenizer(path), config,
                              config.get("title") or path.name)
        return BaseChoice(str(path), _hf_shape(path, text), _gpt2_tokenizer, {}, path.name)
    raise ConfigError(t("ft.err.kind", lang, value=repr(kind), kinds=", ".join(BASE_KIND_VALUES)))


def data_may_grow_vocab(base: BaseChoice, source: str | None) -> bool:
    """Whether the data may add rows to this base's token embedding (chat markers, characters a character-level
    base never saw): rows the preview, made before any data is read, cannot count. None: the data is unknown."""
    if base.scratch:  # a fresh model's whole vocabulary comes from the data: noted on its own
        return False
    plain_builtin = (isinstance(source, str) and source.startswith(demo_task.PREFIX)
                     and demo_task.task_for(source) is None)
    byte_level = (base.config.get("tokenizer") or {}).get("kind", "gpt2") != "char"  # encodes any text
    return not (plain_builtin and byte_level)


def params_markdown(base: BaseChoice, ft: FinetuneConfig, lang="en", source: str | None = None) -> str:
    """Trainable vs total parameters of this base with this method (before anything is loaded). New embedding
    rows for the data's tokens are not known yet: then the numbers are marked as approximate."""
    cfg = base.model_cfg
    if cfg is None:
        return t("ft.params.unknown", lang)
    try:
        ft.validate(cfg.n_layer)
    except ConfigError as e:
        return f"⚠️ {e}"
    c = parameter_counts(cfg, ft)
    text = t("ft.params", lang, trainable=f"{c['trainable']:,}", total=f"{c['total']:,}",
             fraction=f"{c['trainable_fraction']:.1%}")
    if base.scratch:
        return text + " " + t("ft.params.approx", lang)
    return text + (" " + t("ft.params.approx_data", lang) if data_may_grow_vocab(base, source) else "")


# -- the data ----------------------------------------------------------------------------------------------------


def load_data(settings, source, files, prompt_column, response_column, csv_column=None, lang="en"):
    """FinetuneData for the page's data choice; the engine names file and line of every problem. csv_column: the
    column of a CSV file to read as plain text (blank: a column named text, or the only one)."""
    from core.sft_data import load_finetune_data

    prompt_column = (prompt_column or "").strip() or None
    response_column = (response_column or "").strip() or None
    csv_column = (csv_column or "").strip() or None
    if source == UPLOAD:
        paths = [p for p in (files or []) if p]
        if not paths:
            raise CorpusError(t("ft.data.no_files", lang))
        check_upload_sizes(paths, settings, lang)
        if csv_column and (prompt_column or response_column):  # the engine would quietly use only the pair
            raise CorpusError(t("ft.data.columns_clash", lang))
        specs = paths
    elif source in [v for _, v in source_choices()]:
        specs = source
    else:
        raise CorpusError(t("ft.data.unknown", lang, value=repr(source)))
    return load_finetune_data(specs, prompt_column=prompt_column, response_column=response_column,
                              csv_column=csv_column, max_bytes=int(settings.max_corpus_mb * MB))


def data_report(data, base: BaseChoice, too_long: str, lang="en") -> str:
    """What the engine understood: kind, number of examples, examples too long for the context, one example."""
    return render_data_report(data_facts(data, base, too_long), lang)


def data_facts(data, base: BaseChoice, too_long: str) -> dict:
    """What data_report says, without the words: kept by the page to say it again in another language."""
    from core.chat import TokenChatTemplate, template_for
    from core.sft_data import conversation_text, encode_conversations
    from core.tokenizer import CharTokenizer

    chat = data.kind == "chat"
    convs = data.conversations + (data.held_out or [])
    text = conversation_text(convs) if chat else data.text
    template = None
    if chat:
        saved = template_for(base.config)
        template = saved if isinstance(saved, TokenChatTemplate) else TokenChatTemplate()
    specials = template.markers if chat else []
    tokenizer, why = None, ""
    try:  # the tokenizer fine-tuning will use: the base's plus the markers and any new characters
        if base.tokenizer is None:
            tokenizer = CharTokenizer.from_text(text)
            tokenizer.add_special_tokens(specials)
        else:
            tokenizer, _ = extend_tokenizer(base.tokenizer(), text, specials)
    except NewleafError as e:
        why = str(e)
    facts = {"chat": chat, "name": data.name, "examples": len(convs), "held_out": len(data.held_out or []),
             "block": None, "note": "", "why": why, "chars": len(text or ""), "tokens": None, "reuse": False}
    if chat:
        facts["reuse"] = validation_reuses_training(data, FinetuneConfig().val_fraction)
        block = base.model_cfg.block_size if base.model_cfg else None
        if tokenizer is not None and block:
            enc = encode_conversations(convs, tokenizer, template, block, too_long)
            facts.update(block=block, note=enc.report(block, too_long, "fine-tuning") or "")  # the engine's words
        preview = template.render(convs[0], add_generation_prompt=False)
    else:
        facts["tokens"] = len(tokenizer.encode(text)) if tokenizer is not None else None
        preview = text
    facts["preview"] = preview[:PREVIEW_CHARS].replace("```", "ʼʼʼ")
    return facts


def render_data_report(facts: dict | None, lang="en") -> str:
    """The data box from data_facts(...), in `lang`; None: nothing checked yet."""
    if not facts:
        return t("ft.data.none", lang)
    lines = []
    if facts["chat"]:
        lines.append(t("ft.check.chat", lang, name=facts["name"], n=f"{facts['examples']:,}"))
        if facts["held_out"]:
            lines.append(t("ft.check.held_out", lang, n=f"{facts['held_out']:,}"))
        if facts.get("reuse"):
            lines.append(t("ft.check.no_hold_out", lang, n=f"{facts['examples']:,}"))
        if facts["block"]:
            lines.append(f"⚠️ {facts['note']}" if facts["note"] else t("ft.check.fits", lang, block=facts["block"]))
        else:
            lines.append(t("ft.check.later", lang, why=facts["why"] or t("ft.check.context_unknown", lang)))
    else:
        tokens = f"{facts['tokens']:,}" if facts["tokens"] is not None else "?"
        lines.append(t("ft.check.text", lang, name=facts["name"], chars=f"{facts['chars']:,}", tokens=tokens))
    return "\n\n".join(lines + [t("ft.check.preview", lang), f"```text\n{facts['preview']}\n```"])


# -- creating a run --------------------------------------------------------------------------------------------


def create_finetune_run(ctx: AppContext, owner, title, base_values: tuple, data_values: tuple,
                        method_values: tuple, train_values: tuple, lang="en", csv_column=None) -> tuple[str, str]:
    """Make a fine-tuning run directory owned by this session; returns (run id, a note for the user).
    Everything is checked before the (possibly slow) base model is loaded. csv_column: see load_data."""
    s = ctx.settings
    mine = owner_id(owner)
    source, files, prompt_column, response_column, too_long = data_values
    ft = finetune_config(*method_values, too_long=too_long, lang=lang)
    lr, steps, max_time, seed = train_values
    steps = _number(steps, "train.max_steps", int, lang)
    if not 1 <= steps <= s.max_steps:
        raise ConfigError(t("ft.err.steps", lang, max=f"{s.max_steps:,}", steps=f"{steps:,}"))
    # 0 means no time limit, but never more than this app allows a run
    max_time = min(_number(max_time or 0, "ft.name.max_time", float, lang) or s.max_run_seconds, s.max_run_seconds)
    base = base_choice(ctx, owner, *base_values, lang=lang)
    data = load_data(s, source, files, prompt_column, response_column, csv_column, lang)
    demo = data.task is not None
    recipe = train_config(ft.method, demo=demo)
    train = train_config(ft.method, demo=demo, lr=_number(lr, "train.lr", float, lang), max_steps=steps,
                         max_time=max_time, seed=_number(seed, "train.seed", int, lang), threads=s.train_threads,
                         device="auto",
                         # a few validation points even on short runs
                         eval_every=max(1, min(recipe.eval_every, steps // 4)),
                         warmup_steps=min(recipe.warmup_steps, max(1, steps // 10)))
    if base.model_cfg is not None:  # refuse what would not fit before loading (or downloading) any weights
        ft.validate(base.model_cfg.n_layer)
        check_fits(base.model_cfg, train.batch_size, s, lang)
    loaded = load_base(base.spec)
    title = (title or "").strip()[:80] or f"{data.name} · {ft.method} · {base.label}"[:80]
    run_id, path = ctx.jobs.new_run_dir(title)
    try:
        prepare_finetune(path, loaded, data, ft=ft, train=train, extra={"owner": mine, "title": title})
    except BaseException:
        if path.exists() and not (path / runs.CONFIG).exists():  # never leave half a run behind
            shutil.rmtree(path, ignore_errors=True)
        raise
    config = runs.read_config(path)
    p = config["finetune"]["params"]
    note = t("ft.started", lang, trainable=f"{p['trainable']:,}", total=f"{p['total']:,}",
             fraction=f"{p['trainable_fraction']:.1%}", base=base.label)
    return run_id, " ".join([note, *config["data"].get("notes", [])])


# -- following a run and its results -----------------------------------------------------------------------------


def _percent(x: float) -> str:
    return f"{x:.0%}"


def results_markdown(evals: dict, lang="en", val_is_train: bool = False) -> str:
    """The headline: the demo's exact match before -> after (else validation loss). val_is_train: the data was too
    small to hold any examples out (config["data"]["val_is_train"]), so the questions are training questions."""
    before, after = evals.get("base") or {}, evals.get("finetuned") or {}
    if "exact_match" in before or "exact_match" in after:
        n = after.get("items") or before.get("items") or 0
        which = "_train" if val_is_train else ""
        if "exact_match" in after and "exact_match" in before:
            return "### " + t(f"ft.result.em{which}", lang, n=n, before=_percent(before["exact_match"]),
                              after=_percent(after["exact_match"]))
        if "exact_match" in before:
            return "### " + t(f"ft.result.em_base{which}", lang, n=n, before=_percent(before["exact_match"]))
    if "val_loss" in before and "val_loss" in after:
        return "### " + t("ft.result.loss", lang, before=f"{before['val_loss']:.3f}", after=f"{after['val_loss']:.3f}")
    if "val_loss" in before:
        return "### " + t("ft.result.loss_base", lang, before=f"{before['val_loss']:.3f}")
    return t("ft.results.waiting", lang)


def results_table(evals: dict, lang="en") -> pd.DataFrame:
    """metric | base | fine-tuned, numbers rounded for reading (exact match in percent)."""
    before, after = evals.get("base") or {}, evals.get("finetuned") or {}
    columns = [t("ft.col.metric", lang), t("ft.col.base", lang), t("ft.col.finetuned", lang)]

    def value(d, key, decimals):
        v = d.get(key)
        if not isinstance(v, (int, float)):
            return None
        return round(100 * v if key == "exact_match" else v, decimals)

    rows = [[t(f"ft.metric.{key}", lang), value(before, key, dec), value(after, key, dec)]
            for key, dec in METRICS if key in before or key in after]
    return pd.DataFrame(rows, columns=columns)


def held_out_prompts(path: Path, config: dict, n: int = 5) -> str:
    """The first held-out user messages of a chat run, one per line, for the compare box."""
    if "chat_template" not in config:
        return ""
    from core.sft_data import read_conversations
    try:
        conversations = read_conversations(path / "data" / "val.jsonl")[:n]
    except (OSError, KeyError, json.JSONDecodeError, NewleafError):
        return ""
    prompts = [split_prompt(c)[0] for c in conversations]
    return "\n".join(" ".join(p[-1]["content"].split()) for p in prompts if p)


def _val_is_train(config: dict) -> bool:
    """Whether validation reuses the training examples (too few examples to hold any out)."""
    return bool((config.get("data") or {}).get("val_is_train"))


def compare_table(rows: list[dict], lang="en") -> pd.DataFrame:
    columns = [t("ft.col.prompt", lang), t("ft.col.base", lang), t("ft.col.finetuned", lang)]
    return pd.DataFrame([[r["prompt"], r["base"], r["finetuned"]] for r in rows], columns=columns)


# -- the tab -----------------------------------------------------------------------------------------------------


@dataclass
class FinetuneEvents:
    reattach: tuple  # (fn, inputs, outputs) to run after the page loads


def create_tab(ctx: AppContext, followed: gr.BrowserState | None = None) -> FinetuneEvents:
    """`followed`: the BrowserState (storage key STORAGE_KEY) holding the id of the run this page follows. Make
    it outside the tabs: a BrowserState inside a tab that is not shown is not loaded when the page loads."""
    tr, s = ctx.tr, ctx.settings
    followed = followed if followed is not None else gr.BrowserState(None, storage_key=STORAGE_KEY)
    tr(gr.Markdown, value="ft.explainer")
    title = tr(gr.Textbox, label="train.title", placeholder="ft.title.placeholder")
    with gr.Row():
        with gr.Column():
            tr(gr.Markdown, value="ft.base.title")
            base_kind = tr(gr.Radio, choices=base_kind_choices, value="scratch", label="ft.base.kind",
                           elem_id="ft-base-kind")
            preset = tr(gr.Dropdown, choices=list(SCRATCH_PRESETS), value="nano", label="ft.base.preset",
                        info="ft.base.preset.info")
            with gr.Row(equal_height=True, visible=False) as run_row:
                # allow_custom_value: API callers name any run id; every handler checks access anyway
                base_run = tr(gr.Dropdown, choices=[], value=None, label="ft.base.run", scale=8,
                              allow_custom_value=True, elem_id="ft-base-run")
                refresh = gr.Button("↻", scale=1, min_width=60, size="sm")
            hub = tr(gr.Dropdown, choices=list(HUB_MODELS), value=HUB_MODELS[0], label="ft.base.hub",
                     info="ft.base.hub.info", allow_custom_value=True, visible=False)
            folder = tr(gr.Textbox, label="ft.base.folder", placeholder="ft.base.folder.placeholder", visible=False)

            tr(gr.Markdown, value="ft.data.title")
            source = tr(gr.Radio, choices=source_choices, value=DEFAULT_SOURCE, label="ft.data.source",
                        elem_id="ft-source")
            files = tr(gr.File, label="ft.data.upload", file_count="multiple", type="filepath",
                       file_types=[".jsonl", ".json", ".csv", ".txt", ".md"])
            with gr.Row():
                prompt_column = tr(gr.Textbox, label="ft.data.prompt_column", info="ft.data.column.info",
                                   placeholder="prompt")
                response_column = tr(gr.Textbox, label="ft.data.response_column", info="ft.data.column.info",
                                     placeholder="response")
                csv_column = tr(gr.Textbox, label="ft.data.csv_column", info="ft.data.csv_column.info",
                                placeholder="text", elem_id="ft-csv-column")
            too_long = tr(gr.Radio, choices=too_long_choices, value="truncate", label="ft.data.too_long",
                          elem_id="ft-too-long")
            check = tr(gr.Button, value="ft.data.check", elem_id="ft-check")
            # live content: redrawn after a language switch from `checked`, not relabelled
            data_info = gr.Markdown(t("ft.data.none"), elem_id="ft-data-info")
            checked = gr.State(None)  # data_facts(...) of the last check, to say it again in another language
        with gr.Column():
            tr(gr.Markdown, value="ft.method.title")
            method = tr(gr.Radio, choices=method_choices, value="full", label="ft.method", elem_id="ft-method")
            with gr.Row() as full_row:
                freeze = tr(gr.Number, value=0, precision=0, minimum=0, label="ft.freeze", info="ft.freeze.info")
            with gr.Row(visible=False) as lora_row:
                rank = tr(gr.Number, value=8, precision=0, minimum=1, label="ft.lora_rank")
                alpha = tr(gr.Number, value=16, minimum=0.01, label="ft.lora_alpha")
                dropout = tr(gr.Slider, minimum=0.0, maximum=0.5, step=0.05, value=0.0, label="ft.lora_dropout")
                layers = tr(gr.Textbox, label="ft.lora_layers", info="ft.lora_layers.info", placeholder="0,1")
            params_info = gr.Markdown(elem_id="ft-params")

            tr(gr.Markdown, value="ft.train.title")
            lr0, steps0 = recipe_defaults("full", DEFAULT_SOURCE)
            with gr.Row():
                lr = tr(gr.Number, value=lr0, minimum=1e-6, maximum=1.0, label="train.lr", info="ft.lr.info")
                steps = tr(gr.Number, value=steps0, precision=0, minimum=1, maximum=s.max_steps,
                           label="train.max_steps")
            with gr.Row():
                max_time = tr(gr.Number, value=min(600, s.max_run_seconds), minimum=0, maximum=s.max_run_seconds,
                              label="train.max_time")
                seed = tr(gr.Number, value=1337, precision=0, label="train.seed")
            with gr.Row():
                start = tr(gr.Button, value="train.start", variant="primary", elem_id="ft-start")
                stop = tr(gr.Button, value="train.stop", variant="stop", elem_id="ft-stop")

    # the status, progress, chart, samples and headline follow the run: not relabelled by the language switch,
    # but redrawn after it (see `relabel`)
    status = gr.Markdown(t("ft.no_job"), elem_id="ft-status")
    progress = gr.HTML(elem_id="ft-progress")
    loss_plot = gr.Plot(elem_id="ft-loss-plot", show_label=False)
    samples = tr(gr.Textbox, label="train.samples", lines=6, interactive=False, elem_id="ft-samples")

    tr(gr.Markdown, value="ft.results.title")
    headline = gr.Markdown(t("ft.results.waiting"), elem_id="ft-headline")
    table = tr(gr.Dataframe, label="ft.results.table", value=results_table({}), interactive=False,
               datatype=["str", "number", "number"], elem_id="ft-results")
    tr(gr.Markdown, value="ft.compare.title")
    prompts = tr(gr.Textbox, label="ft.compare.prompts", placeholder="ft.compare.placeholder", lines=4,
                 elem_id="ft-prompts")
    compare_btn = tr(gr.Button, value="ft.compare.run", elem_id="ft-compare")
    compared = tr(gr.Dataframe, label="ft.compare.table", value=compare_table([]), interactive=False, wrap=True,
                  elem_id="ft-compared")

    timer = gr.Timer(TICK_SECONDS, active=False)
    # what this session has read of the followed run: byte offset in metrics.jsonl and the records so far
    offset = gr.State(0)
    records = gr.State([])

    view = [status, progress, loss_plot, samples, headline, table, timer, offset, records]
    base_inputs = [base_kind, base_run, hub, folder, preset]
    data_inputs = [source, files, prompt_column, response_column, too_long]
    method_inputs = [method, freeze, rank, alpha, dropout, layers]
    train_inputs = [lr, steps, max_time, seed]

    # -- handlers ----------------------------------------------------------------------------------------------

    def snapshot(path, run_id, offset_value):
        """(new metrics, their end offset, status, whether to keep polling). Liveness is sampled *before* the
        files are read: a process that had ended by then had written everything, so a poll that stops the
        timer never shows results older than the last ones."""
        alive = ctx.jobs.has_process(run_id)
        new, new_offset = runs.read_jsonl(path / runs.METRICS, offset_value)
        state = ctx.jobs.state(run_id)
        return new, new_offset, state, alive or state.get("state") in ACTIVE_STATES

    def render(path, state, active, recs, offset_value, lang):
        config = runs.read_config(path)
        evals = read_eval(path)
        return (status_markdown(state, lang), progress_html(state, recs, lang), loss_figure(recs, 0.6, False, lang),
                samples_text(path, lang=lang), results_markdown(evals, lang, _val_is_train(config)),
                results_table(evals, lang), gr.Timer(active=active), offset_value, recs)

    def follow(owner, run_id, lang):
        """Show a run from the start of its metrics (after Start, or a page refresh), and prefill the compare
        box with its held-out prompts."""
        path = ctx.jobs.check_read(owner, run_id)
        recs, new_offset, state, active = snapshot(path, run_id, 0)
        return (*render(path, state, active, recs, new_offset, lang),
                held_out_prompts(path, runs.read_config(path)))

    def show_base_kind(kind):
        return [gr.update(visible=kind == k) for k in BASE_KIND_VALUES]

    refresh_runs = functools.partial(refreshed_choices, ctx)

    def relabel_runs(owner, lang):
        """After a language switch: the run list's labels (their states) in the new language; the choice stays."""
        return gr.update(choices=readable_runs(ctx, owner, lang))

    def show_method(method_value, source_value):
        lr_value, steps_value = recipe_defaults(method_value, source_value)
        return (gr.update(visible=method_value == "full"), gr.update(visible=method_value == "lora"), lr_value,
                steps_value)

    def preview_params(owner, kind, run_id, hub_value, folder_value, preset_value, method_value, freeze_value,
                       rank_value, alpha_value, dropout_value, layers_value, source_value, lang):
        """Live: trainable vs total parameters for these choices. Problems show here, quietly."""
        try:
            base = base_choice(ctx, owner, kind, run_id, hub_value, folder_value, preset_value, lang)
            ft = finetune_config(method_value, freeze_value, rank_value, alpha_value, dropout_value, layers_value,
                                 lang=lang)
            return params_markdown(base, ft, lang, source_value)
        except NewleafError as e:
            return f"ℹ️ {e}"

    def on_check(owner, base_kind, base_run, hub_model, folder, preset, source, files, prompt_column,
                 response_column, too_long, lang=None, csv_column=None):
        lang = lang or "en"
        owner_id(owner)
        base = base_choice(ctx, owner, base_kind, base_run, hub_model, folder, preset, lang)
        data = load_data(ctx.settings, source, files, prompt_column, response_column, csv_column, lang)
        facts = data_facts(data, base, too_long or "truncate")
        return render_data_report(facts, lang), facts

    def on_start(owner, changed, title, base_kind, base_run, hub_model, folder, preset, source, files,
                 prompt_column, response_column, too_long, method, freeze_layers, lora_rank, lora_alpha,
                 lora_dropout, lora_layers, lr, steps, max_time, seed, lang=None, csv_column=None):
        lang = lang or "en"
        run_id, note = create_finetune_run(
            ctx, owner, title, (base_kind, base_run, hub_model, folder, preset),
            (source, files, prompt_column, response_column, too_long),
            (method, freeze_layers, lora_rank, lora_alpha, lora_dropout, lora_layers), (lr, steps, max_time, seed),
            lang, csv_column)
        ctx.jobs.start(owner, run_id)
        gr.Info(note)
        return (run_id, (changed or 0) + 1, *follow(owner, run_id, lang))

    def on_stop(owner, run_id, lang):
        if not run_id:
            raise NewleafError(t("ft.no_run", lang))
        return status_markdown(ctx.jobs.stop(owner, run_id), lang)

    def on_tick(owner, run_id, offset_value, recs, lang):
        """Cheap: reads only new metrics lines; sends nothing but the status when nothing changed."""
        quiet = [gr.skip()] * 5 + [gr.Timer(active=False), offset_value, recs]
        if not run_id:
            return [gr.skip()] + quiet
        try:
            path = ctx.jobs.check_read(owner, run_id)
        except NewleafError as e:
            return [f"❌ {e}"] + quiet
        new, new_offset, state, active = snapshot(path, run_id, offset_value)
        if not new and active:
            return [status_markdown(state, lang), progress_html(state, recs, lang)] + [gr.skip()] * 5 + \
                [offset_value, recs]
        return render(path, state, active, recs + new, new_offset, lang)

    def on_compare(owner, run_id, prompts, lang):
        if not run_id:
            raise NewleafError(t("ft.compare.no_run", lang))
        path = ctx.jobs.check_read(owner, run_id)
        if not is_finetune_run(path):
            raise NewleafError(t("ft.compare.not_finetune", lang))
        if runs.checkpoint_dir(path, "last") is None:
            raise NewleafError(t("ft.compare.no_checkpoint", lang))
        lines = [p.strip() for p in (prompts or "").splitlines() if p.strip()][:MAX_COMPARE]
        if not lines:
            raise NewleafError(t("ft.compare.none", lang))
        params = SamplingParams(max_new_tokens=min(COMPARE_TOKENS, s.max_new_tokens), temperature=0.0)
        return compare_table(compare(path, lines, params), lang)

    def relabel(owner, run_id, recs, lang):
        """After a language switch: the followed run's status, progress, chart, samples and results again, in the
        new language."""
        try:
            path = ctx.jobs.check_read(owner, run_id) if owner and run_id else None
        except NewleafError:
            path = None
        if path is None:
            return [t("ft.no_job", lang)] + [gr.skip()] * 3 + [t("ft.results.waiting", lang), results_table({}, lang)]
        config = runs.read_config(path)
        state = ctx.jobs.state(run_id)
        evals = read_eval(path)
        # no records yet (e.g. a page load still re-attaching): leave progress and chart to it, or to the timer
        drawn = [progress_html(state, recs, lang), loss_figure(recs, 0.6, False, lang)] if recs else [gr.skip()] * 2
        return [status_markdown(state, lang), *drawn, samples_text(path, lang=lang),
                results_markdown(evals, lang, _val_is_train(config)), results_table(evals, lang)]

    def relabel_compared(shown, lang):
        """After a language switch: the compare table's headers in the new language, the replies kept."""
        rows = shown.values.tolist() if isinstance(shown, pd.DataFrame) else []
        rows = [r for r in rows if any(str(x).strip() for x in r)]  # an empty table comes back as one blank row
        return compare_table([dict(zip(("prompt", "base", "finetuned"), r)) for r in rows], lang)

    def reattach(owner, run_id, lang):
        """After a page load: follow the fine-tuning run this browser was following, if it still exists."""
        if not owner or not run_id:
            return [gr.skip()] * (len(view) + 1)
        try:
            return follow(owner, run_id, lang)
        except NewleafError:
            return [gr.skip()] * (len(view) + 1)

    # -- events ------------------------------------------------------------------------------------------------

    quick = dict(queue=False, api_visibility="private")
    tr.on_switch(friendly(relabel), [ctx.owner, followed, records, ctx.lang],
                 [status, progress, loss_plot, samples, headline, table])
    tr.on_switch(friendly(render_data_report), [checked, ctx.lang], data_info)
    tr.on_switch(friendly(relabel_runs), [ctx.owner, ctx.lang], base_run)
    tr.on_switch(friendly(relabel_compared), [compared, ctx.lang], compared)
    base_kind.change(friendly(show_base_kind), base_kind, [preset, run_row, hub, folder], **quick)
    # triggers=None: on page load and whenever the owner token changes (a first visit gets one on load)
    gr.on(triggers=None, fn=friendly(refresh_runs), inputs=[ctx.owner], outputs=base_run, **quick)
    gr.on([refresh.click, ctx.runs_changed.change], friendly(refresh_runs), [ctx.owner, base_run, ctx.lang], base_run,
          **quick)
    gr.on([method.change, source.change], friendly(show_method), [method, source], [full_row, lora_row, lr, steps],
          **quick)
    files.upload(lambda f: UPLOAD, files, source, **quick)
    # triggers=None: whenever one of the inputs changes, the language included
    gr.on(triggers=None, fn=friendly(preview_params),
          inputs=[ctx.owner, *base_inputs, *method_inputs, source, ctx.lang],
          outputs=params_info, trigger_mode="always_last", **quick)

    # csv_column last, after lang (default None): API calls made before it existed keep working
    check.click(friendly(on_check), [ctx.owner, *base_inputs, *data_inputs, ctx.lang, csv_column], [data_info, checked],
                api_name="check_finetune_data", concurrency_limit=2)
    start.click(friendly(on_start), [ctx.owner, ctx.runs_changed, title, *base_inputs, *data_inputs,
                                     *method_inputs, *train_inputs, ctx.lang, csv_column],
                [followed, ctx.runs_changed, *view, prompts], api_name="start_finetune", concurrency_limit=4)
    stop.click(friendly(on_stop), [ctx.owner, followed, ctx.lang], status, api_name="stop_finetune")
    timer.tick(friendly(on_tick), [ctx.owner, followed, offset, records, ctx.lang], view, concurrency_limit=None,
               api_name="poll_finetune", show_progress="hidden")
    compare_btn.click(friendly(on_compare), [ctx.owner, followed, prompts, ctx.lang], compared,
                      api_name="compare_finetune", concurrency_limit=s.generate_concurrency,
                      concurrency_id="newleaf-inference")

    return FinetuneEvents(reattach=(friendly(reattach), [ctx.owner, followed, ctx.lang], [*view, prompts]))
