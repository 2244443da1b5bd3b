"""Tab 6 · Attention: where each token of a prompt looks, per layer and head, as a heatmap (queries as rows,
keys as columns; the causal mask left blank). One forward pass per "Show"; choosing another layer or head
redraws from the maps kept in a gr.State.

The pure helpers first, then the handlers (module-level: those that need the AppContext take it first), then the
layout (`create_tab`), which wires them.
"""

import gradio as gr

from core import runs
from core.engine import attention_maps
from core.errors import NewleafError
from playground import charts_inspect as charts
from playground.context import AppContext, friendly
from playground.form_values import check_prompt_length
from playground.i18n import t
from playground.model_cache import get_model
from playground.run_picker import create_picker, require_run

MAX_TOKENS = 128  # larger maps are unreadable (and heavy to send); longer prompts keep their last tokens
ALL = "all"


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
    )


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
    data = compute_maps(model, tokenizer, prompt or "", lang)
    return data, draw(data, layer, head, lang), data["note"]


@friendly
def fit_to_maps(data, layer, head, lang="en"):
    """After a Show: the layer / head choices of the model that made the maps."""
    if not data:
        return gr.skip(), gr.skip()
    layers, heads = layer_choices(data["n_layer"]), head_choices(data["n_head"], lang)
    return (
        gr.update(choices=layers, value=str(layer) if str(layer) in layers else "1"),
        gr.update(choices=heads, value=str(head) if str(head) in _values(heads) else ALL),
    )


@friendly
def redraw(data, layer, head, lang):
    if not data:
        return gr.skip()
    return draw(data, layer, head, lang)


@friendly
def relabel(ctx: AppContext, owner, run_id, data, layer, head, lang):
    """After a language switch: the head labels ("all"), the note and the heatmap's titles in the new
    language; the chosen layer and head stay."""
    heads = gr.update(choices=head_choices(n_heads(ctx, owner, run_id, data), lang))
    if not data:
        return heads, gr.skip(), gr.skip()
    try:
        figure = draw(data, layer, head, lang)
    except NewleafError:
        figure = gr.skip()
    return heads, map_note(data, lang) if "n_tokens" in data else gr.skip(), figure


# -- the tab -------------------------------------------------------------------------------------------------


def create_tab(ctx: AppContext) -> None:
    tr = ctx.tr
    tr(gr.Markdown, value="attn.explainer")
    picker = create_picker(ctx, elem_id="attn-run")
    prompt = tr(gr.Textbox, label="attn.prompt", placeholder="attn.prompt.placeholder", lines=2, elem_id="attn-prompt")
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
    plot = tr(gr.Plot, label="attn.plot", elem_id="attn-plot")
    maps_state = gr.State(None)  # the last prompt's maps: layer / head changes redraw from here

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
    ).success(fit_to_maps, [maps_state, layer, head, ctx.lang], [layer, head], **quick)
    gr.on(
        [layer.input, head.input],
        redraw,
        [maps_state, layer, head, ctx.lang],
        plot,
        trigger_mode="always_last",
        api_visibility="private",
    )
    tr.on_switch(ctx.handler(relabel), [ctx.owner, picker, maps_state, layer, head, ctx.lang], [head, note, plot])
