"""The corpus and tokenizer chosen in the Data tab, as a small dict (`ctx.corpus`: source, uploaded files, CSV
column, tokenizer spec), and reading it: the Data tab reads it to show statistics, the Train tab reads it again,
from the same source, when training starts. A trained BPE tokenizer is kept, so Start does not train it again."""

from __future__ import annotations

import threading
from collections import OrderedDict

from core import demo_task
from core.data import load_corpus
from core.datasets import BUILTIN_DATASETS, default_corpus, load_builtin
from core.errors import CorpusError
from core.recipes import AUTO, DEFAULT_TOKENIZER
from core.tokenizer import make_tokenizer
from playground.i18n import EN, t
from playground.model_choices import scaled_choice
from playground.settings import Settings
from playground.upload_checks import MB, check_upload_sizes

DEFAULT_CHOICE = "default"
UPLOAD_CHOICE = "upload"

_cache_lock = threading.Lock()
_tokenizers: OrderedDict = OrderedDict()  # (source key, spec) -> tokenizer; a trained BPE is not retrained


def tokenizer_spec(kind: str, vocab: int) -> str:
    return f"bpe:{int(vocab)}" if kind == "bpe" else kind


def corpus_title(name: str, lang: str = "en") -> str:
    """A corpus's (or fine-tuning data's) name in `lang`: a built-in dataset's or demo task's title in the page's
    words, any other name (files) as it is."""
    for key, title in [
        *((f"ft.dataset.{d.name}", d.title) for d in BUILTIN_DATASETS.values()),
        *((f"ft.task.{task.name}", task.title) for task in demo_task.TASKS.values()),
    ]:
        if name == title and key in EN:
            return t(key, lang)
    return name


def corpus_note(source: str, name: str, default_note: str, lang: str = "en") -> str:
    """The "Using …" line; the default corpus's own (English) note says more: cached, downloaded or why not."""
    if source != DEFAULT_CHOICE:
        return t("data.using", lang, name=corpus_title(name, lang))
    if lang == "en" and default_note:
        return default_note
    shakespeare = BUILTIN_DATASETS["shakespeare"].title
    title = corpus_title(name, lang)
    return t("data.using", lang, name=title) if name == shakespeare else t("data.using_offline", lang, name=title)


def load_choice(choice: dict | None, settings: Settings, lang: str = "en") -> tuple:
    """(corpus, note) for the Data tab's choice; None means the default corpus."""
    choice = choice or {"source": DEFAULT_CHOICE}
    corpus, default_note = read_choice(choice, settings, lang)
    return corpus, corpus_note(choice.get("source", DEFAULT_CHOICE), corpus.name, default_note, lang)


def read_choice(choice: dict, settings: Settings, lang: str) -> tuple:
    """(corpus, the default corpus's own note, or "" for the others)."""
    source = choice.get("source", DEFAULT_CHOICE)
    if source == DEFAULT_CHOICE:
        return default_corpus()
    if source == UPLOAD_CHOICE:
        paths = choice.get("files") or []
        if not paths:
            raise CorpusError(t("data.no_files", lang))
        check_upload_sizes(paths, settings, lang)
        corpus = load_corpus(
            paths, csv_column=choice.get("csv_column") or None, max_bytes=int(settings.max_corpus_mb * MB)
        )
        return corpus, ""
    return load_builtin(source), ""


def left_to_recipe(choice: dict | None) -> bool:
    """Whether the Data tab's choice leaves the tokenizer to the scaled recipe (AUTO, the default)."""
    return ((choice or {}).get("tokenizer") or DEFAULT_TOKENIZER) == AUTO


def tokenizer_spec_for(choice: dict | None, text: str, budget_s: float, settings: Settings) -> str:
    """The tokenizer a run on `text` trains with: the Data tab's choice, or, left to the recipe (AUTO, the
    default), the scaled recipe's pick for this corpus and `budget_s` seconds (0: no limit, the default budget)."""
    if not left_to_recipe(choice):
        return choice["tokenizer"]
    try:
        return scaled_choice(budget_s, AUTO, len(text), len(set(text)), settings).tokenizer
    except ValueError:  # no scaling study fitted on this copy: characters, which any corpus supports
        return "char"


def tokenizer_for(spec: str, text: str):
    """The tokenizer `spec` (resolved: not AUTO) for `text`, trained once and kept for the next few asks."""
    key = (spec, len(text), hash(text))  # what the tokenizer depends on (the choice dict gains keys later)
    with _cache_lock:
        if key in _tokenizers:
            _tokenizers.move_to_end(key)
            return _tokenizers[key]
    tok = make_tokenizer(spec, text)
    with _cache_lock:
        _tokenizers[key] = tok
        while len(_tokenizers) > 4:
            _tokenizers.popitem(last=False)
    return tok
