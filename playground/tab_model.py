"""Model tab: presets and knobs, with a live parameter count, memory estimate and time per step on this
machine. A model that would not fit in memory is refused here and again when training starts."""
from __future__ import annotations

import gradio as gr

from core.device import available_memory
from core.errors import ConfigError
from core.model import param_count, training_memory, GPTConfig, PRESETS
from core.units import format_bytes, format_count
from core.probe import estimate_step_seconds
from core.recipes import DEFAULT_CPU_RECIPE, RECIPES
from playground.context import AppContext, friendly
from playground.i18n import EN, t

KNOBS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")
DEFAULT_PRESET = RECIPES[DEFAULT_CPU_RECIPE]["preset"]  # the tuned CPU recipe's shape (core/recipes.py)
DEFAULT_VOCAB = 65  # Tiny Shakespeare's characters, until a corpus is loaded


def preset_choices(lang: str = "en") -> list[tuple[str, str]]:
    def description(name):
        key = f"model.preset.{name}"
        return t(key, lang) if key in EN else PRESETS[name]["description"]
    return [(f"{name} — {description(name)}", name) for name in PRESETS]


def preset_values(name: str) -> list:
    p = PRESETS[name]
    return [p["n_layer"], p["n_head"], p["n_embd"], p["block_size"], p.get("dropout", 0.0)]


def model_config(values: dict, corpus: dict | None) -> GPTConfig:
    """The GPTConfig of the knobs; the vocabulary comes from the loaded corpus's tokenizer."""
    vocab = (corpus or {}).get("vocab_size") or DEFAULT_VOCAB
    return GPTConfig(n_layer=int(values["n_layer"]), n_head=int(values["n_head"]), n_embd=int(values["n_embd"]),
                     block_size=int(values["block_size"]), dropout=float(values["dropout"]), vocab_size=int(vocab))


def memory_limit(settings) -> int:
    """The most a training job may use: the configured cap, or less if the machine has less free."""
    cap = int(settings.max_model_mb * 1024 * 1024)
    free = available_memory()
    return min(cap, int(0.9 * free)) if free else cap


def check_fits(cfg: GPTConfig, batch_size: int, settings, lang: str = "en") -> int:
    """Bytes the job needs; raises ConfigError when it is more than may be used (or the context is too long)."""
    max_context = getattr(settings, "max_context", None)
    if max_context and cfg.block_size > max_context:
        raise ConfigError(t("model.too_long", lang, block=cfg.block_size, max=max_context))
    need = training_memory(cfg, int(batch_size))["total"]
    limit = memory_limit(settings)
    if need > limit:
        raise ConfigError(t("model.too_big", lang, need=format_bytes(need), batch=int(batch_size),
                            limit=format_bytes(limit)))
    return need


def estimate_markdown(values: dict, corpus: dict | None, batch_size: int, settings, lang: str = "en") -> str:
    try:
        cfg = model_config(values, corpus)
    except ConfigError as e:
        return f"⚠️ **{e}**"
    n = param_count(cfg)
    mem = training_memory(cfg, int(batch_size))
    vocab_note = "" if corpus else " " + t("model.est.vocab_note", lang, n=DEFAULT_VOCAB)
    lines = [
        t("model.est.params", lang, params=format_count(n)) + vocab_note,
        t("model.est.memory", lang, batch=int(batch_size), **{k: format_bytes(mem[k]) for k in
          ("total", "weights", "gradients", "optimizer", "activations")}),
    ]
    try:
        check_fits(cfg, batch_size, settings, lang)
        secs = estimate_step_seconds(cfg, int(batch_size))
        lines.append(t("model.est.time", lang, ms=f"{secs * 1000:,.0f}",
                       tps=f"{int(batch_size) * cfg.block_size / secs:,.0f}"))
    except ConfigError as e:
        lines.append(f"- ⛔ **{e}**")
    return "\n".join(lines)


def create_tab(ctx: AppContext) -> None:
    tr = ctx.tr
    tr(gr.Markdown, value="model.explainer")
    with gr.Row():
        with gr.Column(scale=3):
            preset = tr(gr.Dropdown, choices=preset_choices, value=DEFAULT_PRESET, label="model.preset",
                        elem_id="model-preset")
            values = {**dict(zip(KNOBS, preset_values(DEFAULT_PRESET))),
                      **RECIPES[DEFAULT_CPU_RECIPE].get("overrides", {})}
            knobs = {
                "n_layer": tr(gr.Slider, minimum=1, maximum=24, step=1, value=values["n_layer"], label="model.n_layer"),
                "n_head": tr(gr.Slider, minimum=1, maximum=16, step=1, value=values["n_head"], label="model.n_head"),
                "n_embd": tr(gr.Slider, minimum=16, maximum=1024, step=16, value=values["n_embd"], label="model.n_embd"),
                "block_size": tr(gr.Slider, minimum=8, maximum=1024, step=8, value=values["block_size"],
                                 label="model.block_size"),
                "dropout": tr(gr.Slider, minimum=0.0, maximum=0.5, step=0.05, value=values["dropout"],
                              label="model.dropout"),
            }
        with gr.Column(scale=2):
            estimate = gr.Markdown(elem_id="model-estimate")
    ctx.model_inputs.update(knobs)
    ctx.model_inputs["preset"] = preset
    ctx.model_inputs["estimate"] = estimate

    preset.change(lambda name: preset_values(name), preset, [knobs[k] for k in KNOBS], queue=False,
                  api_visibility="private")


def wire_estimate(ctx: AppContext, batch_size: gr.components.Component) -> tuple:
    """Refresh the estimate whenever a knob, the corpus, the Train tab's batch size or the language changes
    (called by the app once both tabs exist); returns (fn, inputs) for the page load."""
    knobs = [ctx.model_inputs[k] for k in KNOBS]

    @friendly
    def update(corpus, batch, lang, *vals):
        return estimate_markdown(dict(zip(KNOBS, vals)), corpus, batch, ctx.settings, lang)

    inputs = [ctx.corpus, batch_size, ctx.lang, *knobs]
    for trigger in (*knobs, ctx.corpus, batch_size):
        trigger.change(update, inputs, ctx.model_inputs["estimate"], api_visibility="private", queue=False)
    ctx.tr.on_switch(update, inputs, ctx.model_inputs["estimate"])
    return update, inputs
