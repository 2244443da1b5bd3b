"""Model tab: presets and knobs, with a live parameter count, memory estimate and time per step on this
machine. A model that would not fit in memory is refused here and again when training starts.

create_tab returns the knobs: ui.py hands them to the Train tab (read when training starts) and wires the
estimate, which also follows the Train tab's batch size."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from core.recipes import DEFAULT_CPU_RECIPE, RECIPES
from playground.context import AppContext, friendly
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
    return estimate_markdown(dict(zip(KNOBS, vals)), corpus, batch, ctx.settings, lang)


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
                "n_layer": tr(gr.Slider, minimum=1, maximum=24, step=1, value=values["n_layer"], label="model.n_layer"),
                "n_head": tr(gr.Slider, minimum=1, maximum=16, step=1, value=values["n_head"], label="model.n_head"),
                "n_embd": tr(
                    gr.Slider, minimum=16, maximum=1024, step=16, value=values["n_embd"], label="model.n_embd"
                ),
                "block_size": tr(
                    gr.Slider, minimum=8, maximum=1024, step=8, value=values["block_size"], label="model.block_size"
                ),
                "dropout": tr(
                    gr.Slider, minimum=0.0, maximum=0.5, step=0.05, value=values["dropout"], label="model.dropout"
                ),
            }
        with gr.Column(scale=2):
            estimate = gr.Markdown(elem_id="model-estimate")

    preset.change(
        lambda name: preset_values(name), preset, [knobs[k] for k in KNOBS], queue=False, api_visibility="private"
    )
    return ModelTab(knobs=[knobs[k] for k in KNOBS], preset=preset, estimate=estimate)
