"""Fine-tuning's choices, checked before anything runs, and the run made from them: the base model (a run of this
session, a Hugging Face model, a local folder, or a fresh model) and its shape without loading weights; the data
and what the engine understood of it; full fine-tuning or LoRA and its parameter counts; and
`create_finetune_run`, which checks all of it before the (possibly slow) base model is loaded.

The Fine-tune tab (tab_finetune.py) lays these choices out and wires them; the engine does the work
(core/finetune.py, core/sft_data.py).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core import demo_task, files, runs
from core.datasets import BUILTIN_DATASETS
from core.device import MAX_SEED
from core.errors import ConfigError, CorpusError, NewleafError
from core.finetune import describe_data, load_base, plan_vocabulary, prepare_finetune, train_config
from core.hf import hf_shape
from core.messages import Text
from core.model import GPTConfig, preset_config
from core.sft_data import load_finetune_data
from core.tokenizer import GPT2Tokenizer, load_tokenizer
from core.trainable import FinetuneConfig, parameter_counts
from playground.context import AppContext
from playground.corpus_choice import corpus_title
from playground.form_values import Bounds, parse_layers
from playground.i18n import EN, say, t
from playground.jobs import owner_id
from playground.model_choices import check_fits
from playground.settings import LOCAL_DIRS_ENV
from playground.upload_checks import MB, check_upload_sizes

BASE_KIND_VALUES = ("scratch", "run", "hub", "folder")
SCRATCH_PRESETS = ("tiny", "nano", "micro")
HUB_MODELS = ("distilgpt2", "gpt2")  # offered by name; core.hf knows their shapes without a download
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
UPLOAD = "upload"
DEFAULT_SOURCE = "builtin:arithmetic"
SCRATCH_VOCAB = 32  # the preview's guess at a fresh character-level vocabulary (the data decides)
PREVIEW_CHARS = 600
# the Fine-tune tab's numbers: the fields show these bounds, and Start checks them (naming the field); the steps
# and the time budget are bounded by the app's settings (see settings_bounds)
BOUNDS = {
    "freeze": Bounds("ft.name.freeze", 0, None, whole=True),
    "rank": Bounds("ft.name.lora_rank", 1, None, whole=True),
    "alpha": Bounds("ft.name.lora_alpha", 0.01, None),
    "dropout": Bounds("ft.name.lora_dropout", 0.0, 0.5, step=0.05),
    "lr": Bounds("train.lr", 1e-6, 1.0),
    "seed": Bounds("train.seed", 0, MAX_SEED, whole=True),
}


def settings_bounds(s) -> dict[str, Bounds]:
    return {
        "steps": Bounds("train.max_steps", 1, s.max_steps, whole=True),
        "max_time": Bounds("ft.name.max_time", 0, s.max_run_seconds),
    }


# -- the choices -------------------------------------------------------------------------------------------------


@functools.cache
def _task_sizes(name: str) -> tuple[int, int]:
    train, test = demo_task.TASKS[name].items()
    return len(train), len(test)


def source_choices(lang: str = "en") -> list[tuple[str, str]]:
    """(label, value) of the data choices: the demo tasks, the built-in corpora as plain text, an upload."""
    out = []
    for name, task in demo_task.TASKS.items():
        n_train, n_test = _task_sizes(name)
        title = t(f"ft.task.{name}", lang) if f"ft.task.{name}" in EN else task.title
        out.append(
            (t("ft.src.demo", lang, title=title, train=f"{n_train:,}", test=f"{n_test:,}"), f"{demo_task.PREFIX}{name}")
        )
    for d in BUILTIN_DATASETS.values():
        title = t(f"ft.dataset.{d.name}", lang) if f"ft.dataset.{d.name}" in EN else d.title
        out.append((t("ft.src.text", lang, title=title), f"{demo_task.PREFIX}{d.name}"))
    out.append((t("data.src.upload", lang), UPLOAD))
    return out


def recipe_defaults(method: str, source: str) -> tuple[float, int]:
    """(learning rate, steps) the engine uses for this method, and for the demo task when it is the data."""
    cfg = train_config(method if method in ("full", "lora") else "full", demo=demo_task.task_for(source) is not None)
    return cfg.lr, cfg.max_steps


def finetune_config(method, freeze, rank, alpha, dropout, layers, too_long="truncate", lang="en") -> FinetuneConfig:
    """The method's settings, checked: the frozen layers for full fine-tuning, the LoRA fields for LoRA (the other
    method's fields are hidden on the page, and ignored)."""
    chosen = {}
    if method == "full":
        chosen["freeze_layers"] = BOUNDS["freeze"].check(freeze or 0, lang)
    if method == "lora":
        chosen.update(
            lora_rank=BOUNDS["rank"].check(rank, lang),
            lora_alpha=BOUNDS["alpha"].check(alpha, lang),
            lora_dropout=BOUNDS["dropout"].check(dropout or 0, lang),
            lora_layers=parse_layers(layers, lang),
        )
    ft = FinetuneConfig(method=method, too_long=too_long or "truncate", **chosen)
    ft.validate()
    return ft


# -- the base model --------------------------------------------------------------------------------------------


@dataclass
class BaseChoice:
    spec: str  # what core.finetune.load_base takes
    model_cfg: GPTConfig | None  # its shape when known without loading weights
    tokenizer: Callable | None  # () -> the base's tokenizer; None for a fresh model (made from the data)
    config: dict  # a base run's config.json ({} otherwise)
    label: str  # for titles and messages
    scratch: bool = False


def _gpt2_tokenizer():
    return GPT2Tokenizer()


def base_choice(ctx: AppContext, owner, kind, run_id, hub, folder, preset, lang="en") -> BaseChoice:
    """The page's base choice, checked: a run this session may read, a Hub id (never a path: a path would
    bypass the ownership checks), a local folder outside the runs directory, or a fresh model."""
    if kind == "scratch":
        preset = preset or "nano"
        if preset not in SCRATCH_PRESETS:
            raise ConfigError(t("ft.err.preset", lang, sizes=", ".join(SCRATCH_PRESETS), value=repr(preset)))
        return BaseChoice(
            f"scratch:{preset}",
            preset_config(preset, SCRATCH_VOCAB),
            None,
            {},
            t("ft.base.fresh_label", lang, preset=preset),
            scratch=True,
        )
    if kind == "run":
        if not run_id:
            raise NewleafError(t("ft.base.pick_run", lang))
        path = ctx.jobs.check_read(owner, run_id)
        config = runs.read_config(path)
        return BaseChoice(
            str(path),
            GPTConfig.from_dict(config["model"]),
            lambda: load_tokenizer(path),
            config,
            config.get("title") or run_id,
        )
    if kind == "hub":
        name = (hub or "").strip()
        if not _HUB_ID.fullmatch(name) or ".." in name or Path(name).exists():
            raise NewleafError(t("ft.base.bad_hub", lang, name=name))
        return BaseChoice(f"hf:{name}", hf_shape(name), _gpt2_tokenizer, {}, name)
    if kind == "folder":
        text = (folder or "").strip()
        path = allowed_folder(ctx, text, lang)
        if path == ctx.jobs.root or ctx.jobs.root in path.parents:
            raise NewleafError(t("ft.base.folder_in_runs", lang))
        if not path.is_dir():
            raise NewleafError(t("ft.base.no_such_folder", lang, path=text) + " " + t("ft.base.no_folder", lang))
        config = files.read_json(path / runs.CONFIG) if (path / runs.CONFIG).is_file() else {}
        if isinstance(config, dict) and "model" in config and "tokenizer" in config:  # a Newleaf run elsewhere
            return BaseChoice(
                str(path),
                GPTConfig.from_dict(config["model"]),
                lambda: load_tokenizer(path),
                config,
                config.get("title") or path.name,
            )
        return BaseChoice(str(path), hf_shape(text, path), _gpt2_tokenizer, {}, path.name)
    raise ConfigError(t("ft.err.kind", lang, value=repr(kind), kinds=", ".join(BASE_KIND_VALUES)))


def allowed_folder(ctx: AppContext, text: str, lang: str = "en") -> Path:
    """A typed folder, once it is known to lie inside a folder the app's owner allowed (NEWLEAF_LOCAL_MODEL_DIRS).
    Decided on the path alone, before anything is looked up, so the answer never says whether a path exists
    elsewhere; then again with links followed, so a link cannot lead out."""
    allowed = ctx.settings.local_model_dirs
    if not allowed:
        raise NewleafError(t("ft.base.folder_off", lang, setting=LOCAL_DIRS_ENV))
    if not text:
        raise NewleafError(t("ft.base.no_folder", lang))
    typed = Path(os.path.normpath(Path(text).expanduser().absolute()))
    for candidate in (typed, typed.resolve()):
        if not any(candidate == root or root in candidate.parents for root in allowed):
            raise NewleafError(t("ft.base.folder_outside", lang, folders=", ".join(map(str, allowed))))
    return typed.resolve()


def data_may_grow_vocab(base: BaseChoice, source: str | None) -> bool:
    """Whether the data may add rows to this base's token embedding (chat markers, characters a character-level
    base never saw): rows the preview, made before any data is read, cannot count. None: the data is unknown."""
    if base.scratch:  # a fresh model's whole vocabulary comes from the data: noted on its own
        return False
    plain_builtin = (
        isinstance(source, str) and source.startswith(demo_task.PREFIX) and demo_task.task_for(source) is None
    )
    byte_level = (base.config.get("tokenizer") or {}).get("kind", "gpt2") != "char"  # encodes any text
    return not (plain_builtin and byte_level)


@functools.cache
def task_vocab_size(source) -> int | None:
    """The vocabulary a fresh model gets from a demo task's data: the one prepare_finetune plans for it, so the
    preview counts the parameters Start will make. None when the data is not a demo task (it is read only when
    it is checked or the run starts)."""
    if demo_task.task_for(source) is None:
        return None
    return plan_vocabulary(load_finetune_data(source), None, {}).tokenizer.vocab_size


def params_markdown(base: BaseChoice, ft: FinetuneConfig, lang="en", source: str | None = None) -> str:
    """Trainable vs total parameters of this base with this method (before anything is loaded). A fresh model's
    vocabulary comes from its data: exact for a demo task, otherwise marked as approximate, as are new embedding
    rows for the data's tokens."""
    cfg = base.model_cfg
    if cfg is None:
        return t("ft.params.unknown", lang)
    vocab = task_vocab_size(source) if base.scratch else None
    if vocab:
        cfg = GPTConfig.from_dict({**cfg.to_dict(), "vocab_size": vocab})
    try:
        ft.validate(cfg.n_layer)
    except ConfigError as e:
        return f"⚠️ {say(e, lang)}"
    c = parameter_counts(cfg, ft)
    text = t(
        "ft.params",
        lang,
        trainable=f"{c['trainable']:,}",
        total=f"{c['total']:,}",
        fraction=f"{c['trainable_fraction']:.1%}",
    )
    if base.scratch:
        return text if vocab else text + " " + t("ft.params.approx", lang)
    return text + (" " + t("ft.params.approx_data", lang) if data_may_grow_vocab(base, source) else "")


# -- the data ----------------------------------------------------------------------------------------------------


def load_data(settings, source, files, prompt_column, response_column, csv_column=None, lang="en"):
    """FinetuneData for the page's data choice; the engine names file and line of every problem. csv_column: the
    column of a CSV file to read as plain text (blank: a column named text, or the only one)."""
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
    return load_finetune_data(
        specs,
        prompt_column=prompt_column,
        response_column=response_column,
        csv_column=csv_column,
        max_bytes=int(settings.max_corpus_mb * MB),
    )


def data_facts(data, base: BaseChoice, too_long: str) -> dict:
    """What the data box says, without the words (core.finetune.describe_data): kept by the page to say it
    again in another language."""
    block = base.model_cfg.block_size if base.model_cfg else None
    facts = describe_data(data, base.tokenizer, base.config, block, too_long, preview_chars=PREVIEW_CHARS)
    facts["preview"] = facts["preview"].replace("```", "ʼʼʼ")  # it is shown inside a code block
    return facts


def render_data_report(facts: dict | None, lang="en") -> str:
    """The data box from data_facts(...), in `lang`; None: nothing checked yet."""
    if not facts:
        return t("ft.data.none", lang)
    lines = []
    if facts["chat"]:
        lines.append(t("ft.check.chat", lang, name=corpus_title(facts["name"], lang), n=f"{facts['examples']:,}"))
        if facts["held_out"]:
            lines.append(t("ft.check.held_out", lang, n=f"{facts['held_out']:,}"))
        if facts.get("reuse"):
            lines.append(t("ft.check.no_hold_out", lang, n=f"{facts['examples']:,}"))
        if facts["block"]:
            note = f"⚠️ {say(facts['note'], lang)}" if facts["note"] else t("ft.check.fits", lang, block=facts["block"])
            lines.append(note)
        else:
            why = say(facts["why"], lang) if facts["why"] else t("ft.check.context_unknown", lang)
            lines.append(t("ft.check.later", lang, why=why))
    else:
        tokens = f"{facts['tokens']:,}" if facts["tokens"] is not None else "?"
        lines.append(
            t("ft.check.text", lang, name=corpus_title(facts["name"], lang), chars=f"{facts['chars']:,}", tokens=tokens)
        )
    return "\n\n".join(lines + [t("ft.check.preview", lang), f"```text\n{facts['preview']}\n```"])


# -- creating a run --------------------------------------------------------------------------------------------


def create_finetune_run(
    ctx: AppContext,
    owner,
    title,
    base_values: tuple,
    data_values: tuple,
    method_values: tuple,
    train_values: tuple,
    lang="en",
    csv_column=None,
) -> tuple[str, str]:
    """Make a fine-tuning run directory owned by this session; returns (run id, a note for the user).
    Everything is checked before the (possibly slow) base model is loaded. csv_column: see load_data."""
    s = ctx.settings
    mine = owner_id(owner)
    source, files, prompt_column, response_column, too_long = data_values
    ft = finetune_config(*method_values, too_long=too_long, lang=lang)
    lr, steps, max_time, seed = train_values
    limits = settings_bounds(s)
    steps = limits["steps"].check(steps, lang)
    # 0 means no time limit, but never more than this app allows a run
    max_time = limits["max_time"].check(max_time or 0, lang) or s.max_run_seconds
    base = base_choice(ctx, owner, *base_values, lang=lang)
    data = load_data(s, source, files, prompt_column, response_column, csv_column, lang)
    demo = data.task is not None
    recipe = train_config(ft.method, demo=demo)
    train = train_config(
        ft.method,
        demo=demo,
        lr=BOUNDS["lr"].check(lr, lang),
        max_steps=steps,
        max_time=max_time,
        seed=BOUNDS["seed"].check(seed, lang),
        threads=s.train_threads,
        device="auto",
        # a few validation points even on short runs
        eval_every=max(1, min(recipe.eval_every, steps // 4)),
        warmup_steps=min(recipe.warmup_steps, max(1, steps // 10)),
    )
    if base.model_cfg is not None:  # refuse what would not fit before loading (or downloading) any weights
        ft.validate(base.model_cfg.n_layer)
        check_fits(base.model_cfg, train.batch_size, s, lang)
    loaded = load_base(base.spec)
    title = (title or "").strip()[:80] or f"{data.name} · {ft.method} · {base.label}"[:80]
    run_id, path = ctx.jobs.new_run_dir(owner, title)
    try:
        prepare_finetune(path, loaded, data, ft=ft, train=train, extra={"owner": mine, "title": title})
    except BaseException:
        if path.exists() and not (path / runs.CONFIG).exists():  # never leave half a run behind
            shutil.rmtree(path, ignore_errors=True)
        raise
    config = runs.read_config(path)
    p = config["finetune"]["params"]
    note = t(
        "ft.started",
        lang,
        trainable=f"{p['trainable']:,}",
        total=f"{p['total']:,}",
        fraction=f"{p['trainable_fraction']:.1%}",
        base=base.label,
    )
    data = config["data"]
    notes = [say(Text.from_json(n) or "", lang) for n in data["note_texts"]] if "note_texts" in data else data["notes"]
    return run_id, " ".join([note, *notes])
