"""Look inside · Over training: one prompt seen by the run's model at each of its history snapshots (core/history.py:
a few evenly spaced copies of the weights the trainer keeps, from step 0 to the last checkpoint). "Show" loads each
snapshot once and keeps what it did (attention maps, next-token probabilities, a seeded sample); the step slider
then moves through them without running a model, so the attention pattern, the bars and the sample change as fast
as the slider moves. The snapshots are loaded and run on the CPU, also on a ZeroGPU Space: a few small models, read
from disk one after another, would gain nothing from a GPU lent per call.

The pure helpers first, then the handlers, then the layout (`create_tab`), which wires them.
"""

import gradio as gr
import numpy as np
import torch

from core import history, runs
from core.errors import NewleafError
from core.tokenizer import load_tokenizer
from playground import charts_inspect as charts
from playground.context import AppContext, friendly
from playground.form_values import check_prompt_length
from playground.i18n import sentences, t
from playground.run_picker import create_picker, require_run

MAX_TOKENS = 64  # the maps of every snapshot are kept for the slider: a longer prompt keeps its last tokens
SAMPLE_TOKENS = 60
BARS = 10  # the next tokens followed through training: the last snapshot's most likely ones
ATTENTION_HEIGHT = 480  # pixels: the slider, the map and the bars fit on one screen together
ALL = "all"


def compute_history(run_dir, prompt: str, lang: str = "en") -> dict:
    """What every snapshot of the run did with the prompt, as plain data for the slider: per step the attention
    maps (float16), the probabilities of the BARS tokens the finished model favours, its own favourite and a
    sample drawn with the same seed at every step."""
    if not prompt:
        raise NewleafError(t("hist.no_prompt", lang))
    views = list(history.views(run_dir, prompt, MAX_TOKENS, SAMPLE_TOKENS))
    tokenizer = load_tokenizer(run_dir)
    decode = tokenizer.decode
    followed = torch.topk(torch.softmax(views[-1].logits, -1), min(BARS, views[-1].logits.numel())).indices
    steps = []
    for v in views:
        probs = torch.softmax(v.logits, -1)
        favourite = int(probs.argmax())
        steps.append(
            {
                "step": v.step,
                "kind": v.kind,
                "val_loss": v.val_loss,
                "maps": [m.numpy().astype(np.float16) for m in v.attention],
                "bars": probs[followed].tolist(),
                "top": (decode([favourite]), float(probs[favourite])),
                "sample": v.sample,
            }
        )
    first = views[0]
    return {
        "labels": [decode([i]) for i in first.ids],
        "bar_labels": [decode([i]) for i in followed.tolist()],
        "steps": steps,
        "n_layer": len(first.attention),
        "n_head": first.attention[0].shape[0],
        "n_tokens": len(tokenizer.encode(prompt)),
    }


def _pick(data: dict, index, layer, head, lang: str = "en") -> tuple[dict, int, int | None]:
    """The step at slider position `index`, the layer (1-based) and the head (0-based, or None for all)."""
    steps = data["steps"]
    try:
        i = min(max(int(index or 0), 0), len(steps) - 1)
        layer = int(layer or 1)
        h = None if head in (None, "", ALL) else int(head) - 1
    except (TypeError, ValueError):
        raise NewleafError(t("attn.err.pick", lang, all=ALL, layer=repr(layer), head=repr(head))) from None
    if not 1 <= layer <= data["n_layer"]:
        raise NewleafError(t("attn.err.layer", lang, n=data["n_layer"], layer=layer))
    if h is not None and not 0 <= h < data["n_head"]:
        raise NewleafError(t("attn.err.head", lang, n=data["n_head"], head=h + 1))
    return steps[i], layer, h


def status_line(data: dict, index, lang: str = "en") -> str:
    """Which step the slider shows, its validation loss, and the model's favourite next token there."""
    step, _, _ = _pick(data, index, 1, ALL, lang)
    steps = data["steps"]
    i = steps.index(step)
    parts = [t("hist.status", lang, step=step["step"], end=steps[-1]["step"], i=i + 1, n=len(steps))]
    if step["kind"] == "last":
        parts.append(t("hist.status.last", lang))
    if step["val_loss"] is not None:
        parts.append(t("hist.status.loss", lang, loss=f"{step['val_loss']:.3f}"))
    token, p = step["top"]
    parts.append(t("hist.status.top", lang, token=charts.visible(token), p=f"{p:.1%}"))
    return " · ".join(parts)


def draw(data: dict | None, index, layer, head, lang: str = "en"):
    """(status line, attention figure, next-token bars, sample) at one step, from the kept views; no model."""
    if not data:
        return "", None, None, ""
    step, layer, h = _pick(data, index, layer, head, lang)
    if h is None:
        title = t("attn.title.all", lang, layer=layer, n=data["n_head"])
    else:
        title = t("attn.title", lang, layer=layer, head=h + 1)
    attention = charts.attention_figure(
        step["maps"][layer - 1],
        data["labels"],
        h,
        title=f"{title} · {t('hist.at_step', lang, step=step['step'])}",
        x_title=t("attn.x", lang),
        y_title=t("attn.y", lang),
        head_title=t("attn.head_n", lang),
        weight=t("attn.weight", lang),
        looks_at=t("attn.hover", lang),
        height=ATTENTION_HEIGHT,
    )
    bars = charts.alternatives_figure(
        list(zip(data["bar_labels"], step["bars"])),
        chosen=step["top"][0],
        title=t("hist.bars.title", lang, step=step["step"]),
        fixed_scale=True,
    )
    return status_line(data, index, lang), attention, bars, step["sample"]


def history_note(data: dict, lang: str = "en") -> str:
    """How many snapshots there are, and why there may be only the last checkpoint."""
    n = len(data["steps"])
    parts = [t("hist.note", lang, n=n)]
    if not any(s["kind"] == "history" for s in data["steps"]):
        parts.append(t("hist.note.none", lang))
    if data["n_tokens"] > len(data["labels"]):
        parts.append(t("hist.note.cut", lang, n=data["n_tokens"], shown=len(data["labels"])))
    return sentences(parts, lang)


def layer_choices(n_layer: int) -> list[str]:
    return [str(i + 1) for i in range(max(1, n_layer))]


def head_choices(n_head: int, lang: str = "en") -> list[tuple[str, str]]:
    return [(t("attn.head.all", lang), ALL), *((str(i + 1), str(i + 1)) for i in range(max(1, n_head)))]


# -- handlers ------------------------------------------------------------------------------------------------


@friendly
def show(ctx: AppContext, owner, run_id, prompt, layer, head, lang=None):
    """Every snapshot's view of the prompt: returns the slider (at step 0), a note, and the first step's
    status line, attention figure, next-token bars and sample."""
    lang = lang or "en"
    check_prompt_length(prompt or "", ctx.settings, lang)
    path = require_run(ctx, owner, run_id, lang)
    data = compute_history(path, prompt or "", lang)
    n = len(data["steps"])
    slider = gr.update(minimum=0, maximum=max(1, n - 1), value=0, interactive=n > 1)
    return data, slider, history_note(data, lang), *draw(data, 0, layer, head, lang)


def _fit(n_layer: int, n_head: int, layer, head, lang: str):
    layers, heads = layer_choices(n_layer), head_choices(n_head, lang)
    return (
        gr.update(choices=layers, value=str(layer) if str(layer) in layers else "1"),
        gr.update(choices=heads, value=str(head) if str(head) in [v for _, v in heads] else "1"),
    )


@friendly
def fit_choices(ctx: AppContext, owner, run_id, layer, head, lang="en"):
    """The layer / head choices of the picked run (from its config; no model loaded)."""
    if not run_id:
        return gr.skip(), gr.skip()
    cfg = runs.read_config(require_run(ctx, owner, run_id, lang)).get("model", {})
    return _fit(cfg.get("n_layer", 1), cfg.get("n_head", 1), layer, head, lang)


@friendly
def scrub(data, index, layer, head, lang):
    """The view at another step (or layer, or head): drawn from the kept views."""
    if not data:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return draw(data, index, layer, head, lang)


@friendly
def relabel(data, index, layer, head, lang):
    """After a language switch: the head labels, the note and the view in the new language."""
    heads = gr.update(choices=head_choices(data["n_head"] if data else 1, lang))
    if not data:
        return heads, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return heads, history_note(data, lang), *draw(data, index, layer, head, lang)


# -- the tab -------------------------------------------------------------------------------------------------


def create_tab(ctx: AppContext, picker=None, prompt=None) -> None:
    """The over-training view. `picker` and `prompt`: shared with the other views of the Look inside tab;
    without them (on its own, as in tests) it makes its own."""
    tr = ctx.tr
    tr(gr.Markdown, value="hist.explainer")
    if picker is None:
        picker = create_picker(ctx, elem_id="hist-run")
        prompt = tr(gr.Textbox, label="attn.prompt", placeholder="attn.prompt.placeholder", lines=2)
    with gr.Row():
        pick = dict(value="1", allow_custom_value=True)
        layer = tr(gr.Dropdown, label="attn.layer", choices=layer_choices(1), elem_id="hist-layer", **pick)
        head = tr(gr.Dropdown, label="attn.head", choices=head_choices(1), elem_id="hist-head", **pick)
        show_btn = tr(gr.Button, value="hist.show", variant="primary", elem_id="hist-show")
    note = gr.Markdown(elem_id="hist-note")
    step = tr(
        gr.Slider,
        minimum=0,
        maximum=1,
        value=0,
        step=1,
        label="hist.step",
        info="hist.step.info",
        interactive=False,
        elem_id="hist-step",
    )
    status = gr.Markdown(elem_id="hist-status")
    with gr.Row():
        with gr.Column(scale=3):
            plot = tr(gr.Plot, label="hist.attention", elem_id="hist-attention")
        with gr.Column(scale=2):
            bars = tr(gr.Plot, label="hist.bars", elem_id="hist-bars")
            sample = tr(gr.Textbox, label="hist.sample", lines=4, interactive=False, elem_id="hist-sample")
    views = gr.State(None)  # what every snapshot did with the prompt: the slider draws from here

    quick = dict(queue=False, api_visibility="private")
    view = [status, plot, bars, sample]
    gr.on(
        [show_btn.click],
        ctx.handler(show),
        [ctx.owner, picker, prompt, layer, head, ctx.lang],
        [views, step, note, *view],
        api_name="history",
        concurrency_limit=ctx.settings.generate_concurrency,
        concurrency_id="newleaf-inference",
    )
    picker.change(ctx.handler(fit_choices), [ctx.owner, picker, layer, head, ctx.lang], [layer, head], **quick)
    gr.on(
        [step.input, layer.input, head.input],
        scrub,
        [views, step, layer, head, ctx.lang],
        view,
        trigger_mode="always_last",
        **quick,
    )
    tr.on_switch(relabel, [views, step, layer, head, ctx.lang], [head, note, *view])
