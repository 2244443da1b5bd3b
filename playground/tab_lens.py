"""Look inside · Logit lens: what each layer would predict if the model stopped there. The residual stream after
the embeddings and after each block goes through the final LayerNorm and the output head (core.engine.logit_lens),
and a grid shows, for each position of the prompt, each layer's most likely next token and how sure it is: the
prediction forming with depth. One forward pass per "Show"; the grid is drawn again from the kept result when the
language changes.

The pure helpers first, then the handlers, then the layout (`create_tab`), which wires them.
"""

import math

import gradio as gr

from core.engine import logit_lens
from core.errors import NewleafError
from playground import charts_inspect as charts
from playground.context import AppContext, friendly
from playground.form_values import check_prompt_length
from playground.i18n import sentences, t
from playground.model_cache import get_model
from playground.run_picker import create_picker, require_run
from playground.zerogpu import LOOK_SECONDS, gpu, on_device

MAX_POSITIONS = 24  # columns of the grid: a cell needs room for its token; the whole context is still run
TOP = 5  # tokens listed in a cell's hover


def compute_lens(model, tokenizer, prompt: str, lang: str = "en") -> dict:
    """The logit lens of the prompt's last positions, as plain lists: per layer and position the TOP tokens
    (text) and probabilities, and the probability of the token that really comes next."""
    if not prompt:
        raise NewleafError(t("lens.no_prompt", lang))
    ids = tokenizer.encode(prompt)
    if not ids:
        raise NewleafError(t("gen.prompt_empty", lang))
    block = model.config.block_size
    lens = logit_lens(model, ids, top_k=TOP, last=MAX_POSITIONS)
    window = ids[-block:]
    decode = tokenizer.decode
    top_ids, top_probs = lens.top_ids.tolist(), lens.top_probs.tolist()
    return {
        "inputs": [decode([window[p]]) for p in lens.positions],
        "following": [decode([window[p + 1]]) if p + 1 < len(window) else None for p in lens.positions],
        "top": [
            [[(decode([i]), p) for i, p in zip(ids_at, probs_at)] for ids_at, probs_at in zip(layer_ids, layer_probs)]
            for layer_ids, layer_probs in zip(top_ids, top_probs)
        ],
        "next_probs": [[None if math.isnan(p) else p for p in row] for row in lens.next_probs.tolist()],
        "n_tokens": len(ids),
        "window": len(window),
        "block_size": block,
    }


@gpu(LOOK_SECONDS)
def lens_on_gpu(model, tokenizer, prompt: str, lang: str = "en") -> dict:
    """compute_lens on the GPU where there is one (a ZeroGPU Space lends one for this call)."""
    return compute_lens(on_device(model), tokenizer, prompt, lang)


def layer_names(n_layer: int, lang: str = "en") -> list[str]:
    """The grid's rows, bottom to top: the embeddings, then each block (the last one is the model's output)."""
    names = [t("lens.embeddings", lang)] + [t("lens.block", lang, n=i + 1) for i in range(n_layer)]
    names[-1] = t("lens.output", lang, n=n_layer)
    return names


def _hover(data: dict, layer: str, row: int, pos: int, lang: str) -> str:
    top = data["top"][row][pos]
    lines = [t("lens.hover.head", lang, layer=layer, token=charts.visible(data["inputs"][pos]))]
    lines += [f"{k + 1}. “{charts.visible(tok)}” {p:.1%}" for k, (tok, p) in enumerate(top)]
    following, p = data["following"][pos], data["next_probs"][row][pos]
    if following is not None and p is not None:
        lines.append(t("lens.hover.next", lang, token=charts.visible(following), p=f"{p:.1%}"))
    return "<br>".join(lines)


def draw(data: dict | None, lang: str = "en"):
    """The grid from a computed lens; no model involved."""
    if not data:
        return None
    layers = layer_names(len(data["top"]) - 1, lang)
    rows = range(len(layers))
    positions = range(len(data["inputs"]))
    return charts.lens_figure(
        data["inputs"],
        layers,
        tokens=[[charts.visible(data["top"][r][p][0][0]) for p in positions] for r in rows],
        probs=[[data["top"][r][p][0][1] for p in positions] for r in rows],
        hover=[[_hover(data, layers[r], r, p, lang) for p in positions] for r in rows],
        title=t("lens.title", lang),
        x_title=t("lens.x", lang),
        weight=t("lens.weight", lang),
    )


def lens_note(data: dict, lang: str = "en") -> str:
    """Which positions the grid shows, and how often the output layer's favourite is the token that follows."""
    shown = len(data["inputs"])
    parts = [t("lens.note", lang, shown=shown, n=data["n_tokens"])]
    if data["n_tokens"] > data["window"]:
        parts.append(t("lens.note.context", lang, block=data["block_size"]))
    out = data["top"][-1]
    judged = [(out[p][0][0], f) for p, f in enumerate(data["following"]) if f is not None]
    if judged:
        hits = sum(top == following for top, following in judged)
        parts.append(t("lens.note.hits", lang, hits=hits, n=len(judged)))
    return sentences(parts, lang)


# -- handlers ------------------------------------------------------------------------------------------------


@friendly
def show(ctx: AppContext, owner, run_id, prompt, lang=None):
    """The logit lens of the prompt: returns the grid and a note."""
    lang = lang or "en"
    check_prompt_length(prompt or "", ctx.settings, lang)
    path = require_run(ctx, owner, run_id, lang)
    model, tokenizer = get_model(path)
    data = lens_on_gpu(model, tokenizer, prompt or "", lang)
    return data, draw(data, lang), lens_note(data, lang)


@friendly
def relabel(data, lang):
    """After a language switch: the grid and the note in the new language."""
    if not data:
        return gr.skip(), gr.skip()
    return draw(data, lang), lens_note(data, lang)


# -- the tab -------------------------------------------------------------------------------------------------


def create_tab(ctx: AppContext, picker=None, prompt=None) -> None:
    """The logit lens view. `picker` and `prompt`: shared with the other views of the Look inside tab; without
    them (on its own, as in tests) it makes its own."""
    tr = ctx.tr
    tr(gr.Markdown, value="lens.explainer")
    if picker is None:
        picker = create_picker(ctx, elem_id="lens-run")
        prompt = tr(gr.Textbox, label="attn.prompt", placeholder="attn.prompt.placeholder", lines=2)
    show_btn = tr(gr.Button, value="lens.show", variant="primary", elem_id="lens-show")
    note = gr.Markdown(elem_id="lens-note")
    plot = tr(gr.Plot, label="lens.plot", elem_id="lens-plot")
    lens_state = gr.State(None)  # the last lens, drawn again after a language switch

    gr.on(
        [show_btn.click, prompt.submit],
        ctx.handler(show),
        [ctx.owner, picker, prompt, ctx.lang],
        [lens_state, plot, note],
        api_name="logit_lens",
        concurrency_limit=ctx.settings.generate_concurrency,
        concurrency_id="newleaf-inference",
    )
    tr.on_switch(relabel, [lens_state, ctx.lang], [plot, note])
