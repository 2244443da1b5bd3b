"""Look inside · Attention: where each token of a prompt looks, per layer and head, as a heatmap (queries as rows,
keys as columns; the causal mask left blank) whose hover names both tokens, and as the prompt's own text shaded by
where one chosen token looks (click a token to choose it): readable at any context length, where a heatmap's
labels are not. One forward pass per "Show"; choosing another layer, head or token redraws from the maps kept in
a gr.State.

The pure helpers first, then the handlers (module-level: those that need the AppContext take it first), then the
layout (`create_tab`), which wires them.
"""

import html

import gradio as gr
import numpy as np

from core import runs
from core.engine import attention_maps
from core.errors import NewleafError
from playground import charts_inspect as charts
from playground.context import AppContext, friendly
from playground.form_values import check_prompt_length
from playground.i18n import t
from playground.model_cache import get_model
from playground.run_picker import create_picker, require_run
from playground.zerogpu import LOOK_SECONDS, gpu, on_device

MAX_TOKENS = 256  # larger maps are heavy to send; longer prompts keep their last tokens
ALL = "all"
TOP_KEYS = 5  # the tokens named in the line above the text view


def layer_choices(n_layer: int) -> list[str]:
    return [str(i + 1) for i in range(max(1, n_layer))]


def head_choices(n_head: int, lang: str = "en") -> list[tuple[str, str]]:
    """(label, value): "all" (its label in `lang`), then the heads by number."""
    return [(t("attn.head.all", lang), ALL), *((str(i + 1), str(i + 1)) for i in range(max(1, n_head)))]


def _values(choices: list) -> list[str]:
    return [c[1] if isinstance(c, tuple) else c for c in choices]


def compute_maps(model, tokenizer, prompt: str, lang: str = "en") -> dict:
    """Attention weights of every layer for the prompt (its last tokens that fit), as plain lists, with the
    token labels and a note saying what was cut."""
    if not prompt:
        raise NewleafError(t("attn.no_prompt", lang))
    ids = tokenizer.encode(prompt)
    if not ids:
        raise NewleafError(t("gen.prompt_empty", lang))
    block = model.config.block_size
    shown = min(block, MAX_TOKENS)
    kept = ids[-shown:]
    maps = attention_maps(model, kept)  # per layer (n_head, T, T)
    data = {
        "labels": [tokenizer.decode([i]) for i in kept],
        "maps": [m.tolist() for m in maps],
        "n_layer": len(maps),
        "n_head": maps[0].shape[0],
        "n_tokens": len(ids),
        "block_size": block,
    }
    data["note"] = map_note(data, lang)
    return data


@gpu(LOOK_SECONDS)
def maps_on_gpu(model, tokenizer, prompt: str, lang: str = "en") -> dict:
    """compute_maps on the GPU where there is one (a ZeroGPU Space lends one for this call)."""
    return compute_maps(on_device(model), tokenizer, prompt, lang)


def map_note(data: dict, lang: str = "en") -> str:
    """How many tokens the maps show, and why some were cut, in `lang`."""
    n, shown, block = data["n_tokens"], len(data["labels"]), data["block_size"]
    if n > shown:
        why = t("attn.why.context", lang, block=block) if shown == block else t("attn.why.cap", lang)
        return t("attn.note.cut", lang, n=n, shown=shown, why=why)
    return t("attn.note", lang, n=n)


def draw(data: dict | None, layer, head, lang: str = "en"):
    """The heatmap of one layer (one head, or every head) from computed maps; no model involved."""
    if not data:
        return None
    try:
        layer = int(layer or 1)
        head_index = None if head in (None, "", ALL) else int(head) - 1
    except (TypeError, ValueError):
        raise NewleafError(t("attn.err.pick", lang, all=ALL, layer=repr(layer), head=repr(head))) from None
    if not 1 <= layer <= data["n_layer"]:
        raise NewleafError(t("attn.err.layer", lang, n=data["n_layer"], layer=layer))
    if head_index is not None and not 0 <= head_index < data["n_head"]:
        raise NewleafError(t("attn.err.head", lang, n=data["n_head"], head=head_index + 1))
    if head_index is None:
        title = t("attn.title.all", lang, layer=layer, n=data["n_head"])
    else:
        title = t("attn.title", lang, layer=layer, head=head_index + 1)
    return charts.attention_figure(
        data["maps"][layer - 1],
        data["labels"],
        head_index,
        title=title,
        x_title=t("attn.x", lang),
        y_title=t("attn.y", lang),
        head_title=t("attn.head_n", lang),
        weight=t("attn.weight", lang),
        looks_at=t("attn.hover", lang),
    )


def query_weights(data: dict, layer, head, query: int) -> np.ndarray:
    """The attention row of token `query` (1-based) in a layer: one head's, or the mean of all heads."""
    layer_maps = np.asarray(data["maps"][int(layer or 1) - 1], dtype=np.float64)  # (n_head, T, T)
    rows = layer_maps[:, query - 1, :]
    return rows.mean(axis=0) if head in (None, "", ALL) else rows[int(head) - 1]


def query_html(data: dict | None, layer, head, query, lang: str = "en") -> str:
    """The prompt as running text, each token shaded by how much the `query` token (1-based) attends to it
    (darkest where it looks most), the query framed and the tokens after it (which it cannot see) faded; a line
    above names where it looks most. Each token carries its position (data-pos) for a click to choose it, and
    its weight in a tooltip."""
    if not data:
        return ""
    T = len(data["labels"])
    q = min(max(int(query or T), 1), T)
    w = query_weights(data, layer, head, q)
    most = max(float(w[:q].max()), 1e-9)
    spans = []
    for i, tok in enumerate(data["labels"]):
        shown = html.escape(charts.visible(tok, spaces=False).replace("⏎", "⏎\n"))
        cls = "nl-q" if i == q - 1 else ("nl-future" if i >= q else "")
        # shaded relative to where it looks most (the tooltip and the line above give the weights themselves);
        # the square root keeps small weights visible
        alpha = 0.0 if i >= q else round(0.85 * (float(w[i]) / most) ** 0.5, 3)
        tip = html.escape(t("attn.text.tip", lang, token=charts.visible(tok), pos=i + 1, weight=f"{w[i]:.1%}"))
        spans.append(
            f'<span class="nl-tok {cls}" data-pos="{i + 1}" title="{tip}" '
            f'style="background: rgba(46, 157, 91, {alpha})">{shown}</span>'
        )
    top = np.argsort(-w[:q], kind="stable")[:TOP_KEYS]
    names = ", ".join(f"“{html.escape(charts.visible(data['labels'][j]))}” #{j + 1} {w[j]:.0%}" for j in top)
    who = t("attn.text.mean", lang) if head in (None, "", ALL) else t("attn.text.head", lang, head=head)
    line = t("attn.text.line", lang, token=html.escape(charts.visible(data["labels"][q - 1])), pos=q, top=names)
    text = "".join(spans)
    return f'<div class="nl-attn-line">{line} <small>({who})</small></div><div class="nl-attn-text">{text}</div>'


# -- handlers ------------------------------------------------------------------------------------------------


def n_heads(ctx: AppContext, owner, run_id, data) -> int:
    """Heads per layer of the picked run (its config), else of the model that made the maps."""
    if run_id:
        try:
            return runs.read_config(require_run(ctx, owner, run_id)).get("model", {}).get("n_head", 1)
        except NewleafError:
            pass
    return data["n_head"] if data else 1


@friendly
def fit_choices(ctx: AppContext, owner, run_id, layer, head, lang="en"):
    """Layer and head choices of the picked run (from its config; no model loaded)."""
    if not run_id:
        return gr.skip(), gr.skip()
    cfg = runs.read_config(require_run(ctx, owner, run_id, lang)).get("model", {})
    layers, heads = layer_choices(cfg.get("n_layer", 1)), head_choices(cfg.get("n_head", 1), lang)
    return (
        gr.update(choices=layers, value=layer if layer in layers else "1"),
        gr.update(choices=heads, value=head if head in _values(heads) else ALL),
    )


@friendly
def show(ctx: AppContext, owner, run_id, prompt, layer, head, lang=None):
    """Attention of the prompt: returns the figure of the chosen layer / head and a note."""
    lang = lang or "en"
    check_prompt_length(prompt or "", ctx.settings, lang)
    path = require_run(ctx, owner, run_id, lang)
    model, tokenizer = get_model(path)
    data = maps_on_gpu(model, tokenizer, prompt or "", lang)
    return data, draw(data, layer, head, lang), data["note"]


@friendly
def fit_to_maps(data, layer, head, lang="en"):
    """After a Show: the layer / head choices of the model that made the maps, and the token chooser at the
    prompt's last token (the one whose attention predicts what comes next)."""
    if not data:
        return gr.skip(), gr.skip(), gr.skip()
    layers, heads = layer_choices(data["n_layer"]), head_choices(data["n_head"], lang)
    T = len(data["labels"])
    return (
        gr.update(choices=layers, value=str(layer) if str(layer) in layers else "1"),
        gr.update(choices=heads, value=str(head) if str(head) in _values(heads) else ALL),
        gr.update(minimum=1, maximum=max(2, T), value=T, interactive=T > 1),
    )


@friendly
def redraw(data, layer, head, lang):
    if not data:
        return gr.skip()
    return draw(data, layer, head, lang)


@friendly
def redraw_text(data, layer, head, query, lang):
    """The text view for the chosen token, layer and head, from the kept maps."""
    if not data:
        return gr.skip()
    draw(data, layer, head, lang)  # the same checks of the layer and head, with the same messages
    return query_html(data, layer, head, query, lang)


@friendly
def click_token(evt: gr.SelectData):
    """A click on a token of the text view makes it the chosen token (its position, from 1)."""
    try:
        return int(evt.index)
    except (TypeError, ValueError):
        return gr.skip()


@friendly
def relabel(ctx: AppContext, owner, run_id, data, layer, head, query, lang):
    """After a language switch: the head labels ("all"), the note, the heatmap's titles and the text view in the
    new language; the chosen layer, head and token stay."""
    heads = gr.update(choices=head_choices(n_heads(ctx, owner, run_id, data), lang))
    if not data:
        return heads, gr.skip(), gr.skip(), gr.skip()
    try:
        figure, text = draw(data, layer, head, lang), query_html(data, layer, head, query, lang)
    except NewleafError:
        figure, text = gr.skip(), gr.skip()
    return heads, map_note(data, lang) if "n_tokens" in data else gr.skip(), figure, text


# -- the tab -------------------------------------------------------------------------------------------------

# A click on a token of the text view: its position goes to the server as a select event.
PICK_TOKEN_JS = """
element.addEventListener('click', (e) => {
  const tok = e.target.closest('[data-pos]');
  if (tok) trigger('select', {index: Number(tok.dataset.pos), value: tok.textContent});
});
"""


def create_tab(ctx: AppContext, picker=None, prompt=None) -> None:
    """The attention view. `picker` and `prompt`: the run dropdown and prompt box it shares with the other views
    of the Look inside tab; without them (on its own, as in tests) it makes its own."""
    tr = ctx.tr
    tr(gr.Markdown, value="attn.explainer")
    if picker is None:
        picker = create_picker(ctx, elem_id="attn-run")
        prompt = tr(
            gr.Textbox, label="attn.prompt", placeholder="attn.prompt.placeholder", lines=2, elem_id="attn-prompt"
        )
    with gr.Row():
        # the choices follow the picked run; custom values let API callers name any layer / head
        layer = tr(
            gr.Dropdown, label="attn.layer", choices=layer_choices(1), value="1", scale=1, allow_custom_value=True
        )
        head = tr(
            gr.Dropdown,
            label="attn.head",
            info="attn.head.info",
            choices=head_choices(1),
            value=ALL,
            scale=1,
            allow_custom_value=True,
            elem_id="attn-head",
        )
        show_btn = tr(gr.Button, value="attn.show", variant="primary", scale=1, elem_id="attn-show")
    note = gr.Markdown(elem_id="attn-note")
    with gr.Row():
        with gr.Column(scale=3):
            plot = tr(gr.Plot, label="attn.plot", elem_id="attn-plot")
        with gr.Column(scale=2):
            query = tr(
                gr.Slider,
                minimum=1,
                maximum=2,
                value=1,
                step=1,
                label="attn.query",
                info="attn.query.info",
                interactive=False,
                elem_id="attn-query",
            )
            text = gr.HTML(elem_id="attn-text", js_on_load=PICK_TOKEN_JS, elem_classes="nl-attn")
    maps_state = gr.State(None)  # the last prompt's maps: layer / head / token changes redraw from here

    quick = dict(queue=False, api_visibility="private")
    # queued (not quick): a run id or layer this session may not use is refused with a message (context.friendly)
    picker.change(
        ctx.handler(fit_choices), [ctx.owner, picker, layer, head, ctx.lang], [layer, head], api_visibility="private"
    )
    gr.on(
        [show_btn.click, prompt.submit],
        ctx.handler(show),
        [ctx.owner, picker, prompt, layer, head, ctx.lang],
        [maps_state, plot, note],
        api_name="attention",
        concurrency_limit=ctx.settings.generate_concurrency,
        concurrency_id="newleaf-inference",
    ).success(fit_to_maps, [maps_state, layer, head, ctx.lang], [layer, head, query], **quick).then(
        redraw_text, [maps_state, layer, head, query, ctx.lang], text, **quick
    )
    # queued (not quick): a layer or head this run lacks (an API caller may name any) is refused with a message
    redraws = dict(trigger_mode="always_last", api_visibility="private")
    gr.on([layer.input, head.input], redraw, [maps_state, layer, head, ctx.lang], plot, **redraws)
    text_inputs = [maps_state, layer, head, query, ctx.lang]
    gr.on([layer.input, head.input, query.input], redraw_text, text_inputs, text, **redraws)
    text.select(click_token, None, query, **quick).then(redraw_text, text_inputs, text, **quick)
    tr.on_switch(
        ctx.handler(relabel), [ctx.owner, picker, maps_state, layer, head, query, ctx.lang], [head, note, plot, text]
    )
