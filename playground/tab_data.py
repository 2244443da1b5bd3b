"""Data tab: choose a built-in corpus or upload files, pick a tokenizer, see statistics and the text
coloured by token boundaries. The choice travels to the Train tab in `ctx.corpus` (a small dict: the
corpus is read again, from the same source, when training starts)."""
from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict

import gradio as gr

from core.data import corpus_stats, load_corpus
from core.datasets import BUILTIN_DATASETS, default_corpus, load_builtin
from core.errors import CorpusError
from core.tokenizer import make_tokenizer
from playground.context import AppContext, friendly
from playground.i18n import t

DEFAULT_CHOICE = "default"
UPLOAD_CHOICE = "upload"
PREVIEW_CHARS = 3000
TOKEN_COLORS = ("#dcfce7", "#dbeafe", "#fef9c3", "#fce7f3", "#e0e7ff", "#ffedd5")
MB = 1024 * 1024


def source_choices() -> list[tuple[str, str]]:
    out = [("Default: Tiny Shakespeare (the offline dataset when there is no network)", DEFAULT_CHOICE)]
    out += [(f"{d.title} — {d.description}", d.name) for d in BUILTIN_DATASETS.values()]
    out.append(("My own files (upload below)", UPLOAD_CHOICE))
    return out


def tokenizer_spec(kind: str, vocab: int) -> str:
    return f"bpe:{int(vocab)}" if kind == "bpe" else kind


# -- loading, shared with the Train tab ----------------------------------------------------------------------

_cache_lock = threading.Lock()
_tokenizers: OrderedDict = OrderedDict()  # (source key, spec) -> tokenizer; a trained BPE is not retrained


def load_choice(choice: dict | None, settings) -> tuple:
    """(corpus, note) for the Data tab's choice; None means the default corpus."""
    choice = choice or {"source": DEFAULT_CHOICE}
    source = choice.get("source", DEFAULT_CHOICE)
    if source == DEFAULT_CHOICE:
        return default_corpus()
    if source == UPLOAD_CHOICE:
        paths = choice.get("files") or []
        if not paths:
            raise CorpusError("No files uploaded yet: drop one or more text files in the upload box.")
        limit = int(settings.max_upload_mb * MB)
        for p in paths:  # checked again here: the browser's limit can be bypassed
            if os.path.getsize(p) > limit:
                raise CorpusError(f"{os.path.basename(p)} is larger than the {settings.max_upload_mb:g} MB upload limit.")
        corpus = load_corpus(paths, csv_column=choice.get("csv_column") or None,
                             max_bytes=int(settings.max_corpus_mb * MB))
        return corpus, f"Using {corpus.name}."
    corpus = load_builtin(source)
    return corpus, f"Using {corpus.name}."


def tokenizer_for(choice: dict | None, text: str):
    spec = (choice or {}).get("tokenizer", "char")
    key = (repr(sorted((choice or {}).items())), spec, len(text))
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


def token_html(tokenizer, text: str) -> str:
    """The text with each token on its own background colour; whitespace kept as it is."""
    pieces = tokenizer.token_pieces(text)
    spans = [f'<span style="background:{TOKEN_COLORS[i % len(TOKEN_COLORS)]}">{html.escape(p)}</span>'
             for i, p in enumerate(pieces)]
    return f'<div class="token-view">{"".join(spans)}</div>'


def stats_markdown(stats: dict, tokenizer, note: str) -> str:
    top = " ".join(f"`{c!r}`×{n:,}" for c, n in stats["top_characters"][:10])
    return "\n".join([
        f"{note}",
        "",
        "| | |",
        "|---|---|",
        f"| characters | {stats['characters']:,} |",
        f"| lines / words | {stats['lines']:,} / {stats['words']:,} |",
        f"| distinct characters | {stats['distinct_characters']:,} |",
        f"| tokenizer | {tokenizer.describe()} |",
        f"| tokens | {stats['tokens']:,} ({stats['chars_per_token']:.2f} characters per token) |",
        f"| training / validation | first 90% / last 10% of the text |",
        f"| most common characters | {top} |",
    ])


# -- the tab -------------------------------------------------------------------------------------------------


def create_tab(ctx: AppContext) -> None:
    tr = ctx.tr
    tr(gr.Markdown, value="data.explainer")
    with gr.Row():
        with gr.Column(scale=3):
            source = tr(gr.Radio, choices=source_choices(), value=DEFAULT_CHOICE, label="data.source")
            files = tr(gr.File, label="data.upload", file_count="multiple", type="filepath",
                       file_types=[".txt", ".md", ".jsonl", ".csv"])
            csv_column = tr(gr.Textbox, label="data.csv_column", placeholder="text")
        with gr.Column(scale=2):
            tok_kind = tr(gr.Radio, choices=[("Characters", "char"), ("GPT-2 BPE", "gpt2"), ("My own BPE", "bpe")],
                          value="char", label="data.tokenizer")
            vocab = tr(gr.Slider, minimum=256, maximum=8192, step=256, value=1024, label="data.bpe_vocab",
                       visible=False)
            load = tr(gr.Button, value="data.load", variant="primary")
    stats = gr.Markdown(t("data.none"), elem_id="data-stats")  # live content: not relabelled by the language switch
    preview = gr.HTML(label="Preview", elem_id="data-preview")

    tok_kind.change(lambda k: gr.update(visible=k == "bpe"), tok_kind, vocab, queue=False, api_visibility="private")
    files.upload(lambda f: UPLOAD_CHOICE, files, source, queue=False, api_visibility="private")

    @friendly
    def on_load(source_value, file_paths, column, kind, vocab_size):
        choice = {"source": source_value, "files": list(file_paths or []), "csv_column": (column or "").strip(),
                  "tokenizer": tokenizer_spec(kind, vocab_size)}
        corpus, note = load_choice(choice, ctx.settings)
        tokenizer = tokenizer_for(choice, corpus.text)
        st = corpus_stats(corpus.text, tokenizer)
        choice.update(name=corpus.name, characters=st["characters"], vocab_size=tokenizer.vocab_size,
                      tokens=st["tokens"])
        if kind == "bpe" and tokenizer.vocab_size < int(vocab_size):
            gr.Warning(f"This corpus only supports {tokenizer.vocab_size} BPE tokens (asked for {int(vocab_size)}); "
                       f"the model will use {tokenizer.vocab_size}.")
        return choice, stats_markdown(st, tokenizer, note), token_html(tokenizer, corpus.text[:PREVIEW_CHARS])

    load.click(on_load, [source, files, csv_column, tok_kind, vocab], [ctx.corpus, stats, preview],
               api_name="load_data", concurrency_limit=2)
