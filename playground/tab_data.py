"""Data tab: choose a built-in corpus or upload files, pick a tokenizer, see statistics and the text
coloured by token boundaries. The choice travels to the Train tab in `ctx.corpus` (a small dict: the
corpus is read again, from the same source, when training starts; see corpus_choice.py)."""

from __future__ import annotations

import html

import gradio as gr

from core.data import corpus_stats
from core.datasets import BUILTIN_DATASETS
from core.recipes import AUTO, DEFAULT_BUDGET_S, DEFAULT_TOKENIZER, tokenizer_words
from core.tokenizer import MAX_BPE_VOCAB, MIN_BPE_VOCAB, vocab_for, vocab_too_large
from playground.context import AppContext, friendly, notify
from playground.corpus_choice import (
    DEFAULT_CHOICE,
    UPLOAD_CHOICE,
    corpus_note,
    read_choice,
    tokenizer_for,
    tokenizer_spec,
    tokenizer_spec_for,
)
from playground.fields import SliderField
from playground.form_values import Bounds
from playground.i18n import EN, say, t

PREVIEW_CHARS = 3000
# left to the scaled recipe (core/recipes.py): characters or a small BPE trained on the corpus, for the time limit
DEFAULT_KIND = DEFAULT_TOKENIZER
DEFAULT_VOCAB = 512  # a BPE chosen by hand: the vocabulary the study found best for a few minutes on a CPU
VOCAB = Bounds("data.bpe_vocab", MIN_BPE_VOCAB, MAX_BPE_VOCAB, whole=True)  # what a trained BPE may have
TOKEN_COLORS = ("#dcfce7", "#dbeafe", "#fef9c3", "#fce7f3", "#e0e7ff", "#ffedd5")


def source_choices(lang: str = "en") -> list[tuple[str, str]]:
    out = [(t("data.src.default", lang), DEFAULT_CHOICE)]
    for d in BUILTIN_DATASETS.values():
        key = f"data.src.{d.name}"
        out.append((t(key, lang) if key in EN else f"{d.title} — {d.description}", d.name))
    out.append((t("data.src.upload", lang), UPLOAD_CHOICE))
    return out


def tokenizer_choices(lang: str = "en") -> list[tuple[str, str]]:
    return [(t(f"data.tok.{k}", lang), k) for k in (AUTO, "char", "gpt2", "bpe")]


def token_html(tokenizer, text: str) -> str:
    """The text with each token on its own background colour; whitespace kept as it is."""
    pieces = tokenizer.token_pieces(text)
    spans = [
        f'<span style="background:{TOKEN_COLORS[i % len(TOKEN_COLORS)]}">{html.escape(p)}</span>'
        for i, p in enumerate(pieces)
    ]
    return f'<div class="token-view">{"".join(spans)}</div>'


def stats_markdown(stats: dict, tokenizer_text: str, note: str, lang: str = "en") -> str:
    """The statistics table (the tokenizer's description already in `lang`), under the "Using ..." note."""
    top = " ".join(f"`{c!r}`×{n:,}" for c, n in stats["top_characters"][:10])
    tokens = t("data.stat.tokens_value", lang, tokens=f"{stats['tokens']:,}", cpt=f"{stats['chars_per_token']:.2f}")
    rows = [
        ("characters", f"{stats['characters']:,}"),
        ("lines_words", f"{stats['lines']:,} / {stats['words']:,}"),
        ("distinct", f"{stats['distinct_characters']:,}"),
        ("tokenizer", tokenizer_text),
        ("tokens", tokens),
        ("split", t("data.stat.split_value", lang)),
        ("top", top),
    ]
    header = f"| {t('data.stat.col.name', lang)} | {t('data.stat.col.value', lang)} |"
    return "\n".join(
        [note, "", header, "|---|---|", *(f"| {t(f'data.stat.{key}', lang)} | {value} |" for key, value in rows)]
    )


def render_stats(shown: dict | None, lang: str = "en") -> str:
    """The statistics box from what the last load kept (`shown`), in `lang`."""
    if not shown:
        return t("data.none", lang)
    note = corpus_note(shown["source"], shown["name"], shown["default_note"], lang)
    if shown.get("auto"):  # the recipe's pick, for the time limit set when it was loaded: say it is one
        picked = say(tokenizer_words(shown["auto"]), lang)
        seconds = f"{shown.get('auto_seconds') or DEFAULT_BUDGET_S:.0f}"
        note += "\n\n" + t("data.auto_pick", lang, seconds=seconds, default=f"{DEFAULT_BUDGET_S:.0f}", tokenizer=picked)
    return stats_markdown(shown["stats"], say(shown["tokenizer"], lang), note, lang)


def bpe_warning(got: int, asked: int, stats: dict, lang: str = "en") -> str | None:
    """What to tell about a BPE trained on the corpus: a vocabulary too large for the text (most tokens would
    be seen once or twice), or fewer tokens than asked for; None when neither."""
    if vocab_too_large(got, stats["tokens"]):
        return t(
            "data.bpe_large",
            lang,
            vocab=f"{got:,}",
            chars=f"{stats['characters']:,}",
            tokens=f"{stats['tokens']:,}",
            suggest=f"{vocab_for(stats['tokens']):,}",
        )
    if got < asked:
        return t("data.bpe_small", lang, got=got, asked=asked)
    return None


@friendly
def on_load(ctx: AppContext, source_value, file_paths, column, kind, vocab_size, lang=None, time_limit=0):
    lang = lang or "en"
    vocab_size = VOCAB.check(vocab_size, lang) if kind == "bpe" else 0
    choice = {
        "source": source_value,
        "files": list(file_paths or []),
        "csv_column": (column or "").strip(),
        "tokenizer": tokenizer_spec(kind, vocab_size),
    }
    corpus, default_note = read_choice(choice, ctx.settings, lang)
    # left to the recipe: shown with its pick for the Train tab's time limit now (Start picks again for its own)
    budget = float(time_limit or 0)
    spec = tokenizer_spec_for(choice, corpus.text, budget, ctx.settings)
    tokenizer = tokenizer_for(spec, corpus.text)
    st = corpus_stats(corpus.text, tokenizer)
    choice.update(name=corpus.name, characters=st["characters"], distinct=st["distinct_characters"],
                  vocab_size=tokenizer.vocab_size, tokens=st["tokens"])  # fmt: skip
    warning = bpe_warning(tokenizer.vocab_size, vocab_size, st, lang) if kind == "bpe" else None
    if warning:
        notify(warning, "warning")
    kept = {
        "source": source_value,
        "name": corpus.name,
        "default_note": default_note,
        "stats": st,
        "tokenizer": tokenizer.description(),  # a Text: said in the page's language when shown
        "auto": spec if choice["tokenizer"] == AUTO else None,
        "auto_seconds": budget or DEFAULT_BUDGET_S,
    }
    return choice, render_stats(kept, lang), token_html(tokenizer, corpus.text[:PREVIEW_CHARS]), kept


# -- the tab -------------------------------------------------------------------------------------------------


def create_tab(ctx: AppContext) -> None:
    tr = ctx.tr
    tr(gr.Markdown, value="data.explainer")
    with gr.Row():
        with gr.Column(scale=3):
            source = tr(
                gr.Radio, choices=source_choices, value=DEFAULT_CHOICE, label="data.source", elem_id="data-source"
            )
            files = tr(
                gr.File,
                label="data.upload",
                file_count="multiple",
                type="filepath",
                file_types=[".txt", ".md", ".jsonl", ".csv"],
                elem_id="data-upload",
            )
            csv_column = tr(gr.Textbox, label="data.csv_column", placeholder="text")
        with gr.Column(scale=2):
            tok_kind = tr(
                gr.Radio,
                choices=tokenizer_choices,
                value=DEFAULT_KIND,
                label="data.tokenizer",
                elem_id="data-tokenizer",
            )
            vocab = tr(
                SliderField,
                minimum=256,
                maximum=8192,
                step=256,
                value=DEFAULT_VOCAB,
                label="data.bpe_vocab",
                visible=DEFAULT_KIND == "bpe",
            )
            load = tr(gr.Button, value="data.load", variant="primary", elem_id="data-load")
    # live content: not relabelled by the language switch, but redrawn after it from `shown`
    stats = gr.Markdown(t("data.none"), elem_id="data-stats")
    shown = gr.State(None)  # what the stats box shows, to redraw it in another language
    preview = tr(gr.HTML, label="data.preview", elem_id="data-preview")

    tok_kind.change(lambda k: gr.update(visible=k == "bpe"), tok_kind, vocab, queue=False, api_visibility="private")
    files.upload(lambda f: UPLOAD_CHOICE, files, source, queue=False, api_visibility="private")

    # lang and the time limit last, with defaults (so optional for API callers, who get English and 180 s)
    load.click(
        ctx.handler(on_load),
        [source, files, csv_column, tok_kind, vocab, ctx.lang, ctx.time_limit],
        [ctx.corpus, stats, preview, shown],
        api_name="load_data",
        concurrency_limit=2,
    )
    tr.on_switch(friendly(render_stats), [shown, ctx.lang], stats)
