"""Model tab: presets and knobs, with a live parameter count, memory estimate and time per step on this
machine. A model that would not fit in memory is refused here and again when training starts."""
from __future__ import annotations

import gradio as gr

from core.device import available_memory
from core.errors import ConfigError
from core.model import PRESETS, GPTConfig, format_bytes, format_count, param_count, training_memory
from core.probe import estimate_step_seconds
from core.recipes import DEFAULT_CPU_RECIPE, RECIPES
from playground.context import AppContext

KNOBS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")
DEFAULT_PRESET = RECIPES[DEFAULT_CPU_RECIPE]["preset"]  # the tuned CPU recipe's shape (core/recipes.py)
DEFAULT_VOCAB = 65  # Tiny Shakespeare's characters, until a corpus is loaded


def preset_choices() -> list[tuple[str, str]]:
    return [(f"{name} — {p['description']}", name) for name, p in PRESETS.items()]


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


def check_fits(cfg: GPTConfig, batch_size: int, settings) -> int:
    """Bytes the job needs; raises ConfigError when it is more than may be used (or the context is too long)."""
    max_context = getattr(settings, "max_context", None)
    if max_context and cfg.block_size > max_context:
        raise ConfigError(f"A context of {cfg.block_size} tokens is more than the {max_context} allowed here; "
                          f"choose a shorter context length.")
    need = training_memory(cfg, int(batch_size))["total"]
    limit = memory_limit(settings)
    if need > limit:
        raise ConfigError(f"This model needs about {format_bytes(need)} to train at batch size {int(batch_size)}, "
                          f"more than the {format_bytes(limit)} allowed here. Choose fewer layers, a smaller width "
                          f"or context, or a smaller batch.")
    return need


def estimate_markdown(values: dict, corpus: dict | None, batch_size: int, settings) -> str:
    try:
        cfg = model_config(values, corpus)
    except ConfigError as e:
        return f"⚠️ **{e}**"
    n = param_count(cfg)
    mem = training_memory(cfg, int(batch_size))
    vocab_note = "" if corpus else " (vocabulary of 65 characters until a corpus is loaded)"
    lines = [
        f"**{format_count(n)} parameters**{vocab_note}",
        f"- memory to train at batch {int(batch_size)}: **{format_bytes(mem['total'])}** "
        f"(weights {format_bytes(mem['weights'])}, gradients {format_bytes(mem['gradients'])}, "
        f"AdamW state {format_bytes(mem['optimizer'])}, activations {format_bytes(mem['activations'])})",
    ]
    try:
        check_fits(cfg, batch_size, settings)
        secs = estimate_step_seconds(cfg, int(batch_size))
        lines.append(f"- time per training step on this machine: about **{secs * 1000:,.0f} ms** "
                     f"(≈ {int(batch_size) * cfg.block_size / secs:,.0f} tokens/s, from a measured probe)")
    except ConfigError as e:
        lines.append(f"- ⛔ **{e}**")
    return "\n".join(lines)


def create_tab(ctx: AppContext) -> None:
    tr = ctx.tr
    tr(gr.Markdown, value="model.explainer")
    with gr.Row():
        with gr.Column(scale=3):
            preset = tr(gr.Dropdown, choices=preset_choices(), value=DEFAULT_PRESET, label="model.preset",
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


def wire_estimate(ctx: AppContext, batch_size: gr.components.Component) -> None:
    """Refresh the estimate whenever a knob, the corpus or the Train tab's batch size changes (called by the
    app once both tabs exist)."""
    knobs = [ctx.model_inputs[k] for k in KNOBS]

    def update(corpus, batch, *vals):
        return estimate_markdown(dict(zip(KNOBS, vals)), corpus, batch, ctx.settings)

    inputs = [ctx.corpus, batch_size, *knobs]
    for trigger in (*knobs, ctx.corpus, batch_size):
        trigger.change(update, inputs, ctx.model_inputs["estimate"], api_visibility="private", queue=False)
    return update, inputs
