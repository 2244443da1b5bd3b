"""Model tab: presets and knobs, with a live parameter count, memory estimate and time per step on this
machine. A model that would not fit in memory is refused here and again when training starts.

create_tab returns the knobs: ui.py hands them to the Train tab (read when training starts) and wires the
estimate, which also follows the Train tab's batch size."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from core.errors import ConfigError
from core.recipes import DEFAULT_CPU_RECIPE, RECIPES
from playground.context import AppContext, friendly
from playground.fields import SliderField
from playground.form_values import BATCH_BOUNDS, KNOB_BOUNDS, check_fields
from playground.i18n import say
from playground.model_choices import DEFAULT_PRESET, KNOBS, estimate_markdown, preset_choices, preset_values


@dataclass
class ModelTab:
    knobs: list  # the sliders, in KNOBS order
    preset: gr.components.Component
    estimate: gr.components.Component

    @property
    def inputs(self) -> list:
        """What starting a run reads: the knobs, then the preset's name."""
        return [*self.knobs, self.preset]


@friendly
def show_estimate(ctx: AppContext, corpus, batch, lang, *vals):
    """Live: parameters, memory and time per step of the knobs' model; a knob out of range says so here."""
    try:
        values = check_fields(dict(zip(KNOBS, vals)), KNOB_BOUNDS, lang)
        batch = BATCH_BOUNDS.check(batch, lang)
    except ConfigError as e:
        return f"⚠️ **{say(e, lang)}**"
    return estimate_markdown(values, corpus, batch, ctx.settings, lang)


def create_tab(ctx: AppContext) -> ModelTab:
    tr = ctx.tr
    tr(gr.Markdown, value="model.explainer")
    with gr.Row():
        with gr.Column(scale=3):
            preset = tr(
                gr.Dropdown, choices=preset_choices, value=DEFAULT_PRESET, label="model.preset", elem_id="model-preset"
            )
            values = {
                **dict(zip(KNOBS, preset_values(DEFAULT_PRESET))),
                **RECIPES[DEFAULT_CPU_RECIPE].get("overrides", {}),
            }
            knobs = {
                k: tr(SliderField, value=values[k], label=b.label, **b.limits, elem_id=f"model-{k}")
                for k, b in KNOB_BOUNDS.items()
            }
        with gr.Column(scale=2):
            estimate = gr.Markdown(elem_id="model-estimate")

    preset.change(
        lambda name: preset_values(name), preset, [knobs[k] for k in KNOBS], queue=False, api_visibility="private"
    )
    return ModelTab(knobs=[knobs[k] for k in KNOBS], preset=preset, estimate=estimate)
