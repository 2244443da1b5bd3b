"""Model tab: presets and knobs, with a live parameter count, memory estimate and time per step on this
machine. A model that would not fit in memory is refused here and again when training starts.

create_tab returns the knobs: ui.py hands them to the Train tab (read when training starts) and wires the
estimate, which also follows the Train tab's batch size, and the scaled recipe: while its box is ticked, the
knobs (and the Train tab's batch and learning rate) are the ones core/recipes.py picks for the Train tab's time
limit on this machine, with why; moving a knob by hand unticks it."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from core.errors import ConfigError
from core.recipes import AUTO, DEFAULT_BUDGET_S, DEFAULT_CPU_RECIPE, DEFAULT_TOKENIZER, RECIPES, vocab_of
from playground.context import AppContext, friendly
from playground.fields import SliderField
from playground.form_values import BATCH_BOUNDS, KNOB_BOUNDS, check_fields
from playground.i18n import say, t
from playground.model_choices import (
    DEFAULT_PRESET,
    DEFAULT_VOCAB,
    KNOBS,
    estimate_markdown,
    preset_choices,
    preset_values,
    scaled_choice,
)


@dataclass
class ModelTab:
    knobs: list  # the sliders, in KNOBS order
    preset: gr.components.Component
    estimate: gr.components.Component
    scaled: gr.components.Component  # the box: the knobs follow the scaled recipe while it is ticked
    why: gr.components.Component  # what the scaled recipe picked, and why

    @property
    def inputs(self) -> list:
        """What starting a run reads: the knobs, then the preset's name, then whether the scaled recipe set them."""
        return [*self.knobs, self.preset, self.scaled]


@friendly
def show_estimate(ctx: AppContext, corpus, batch, lang, time_limit, *vals):
    """Live: parameters, memory and time per step of the knobs' model; a knob out of range says so here. A
    tokenizer left to the recipe counts the vocabulary of its pick for the Train tab's time limit."""
    try:
        values = check_fields(dict(zip(KNOBS, vals)), KNOB_BOUNDS, lang)
        batch = BATCH_BOUNDS.check(batch, lang)
    except ConfigError as e:
        return f"⚠️ **{say(e, lang)}**"
    if corpus and corpus.get("tokenizer") == AUTO:
        try:
            pick = scaled_choice(time_limit, AUTO, corpus.get("characters"), corpus.get("distinct"), ctx.settings)
            corpus = {**corpus, "vocab_size": vocab_of(pick.tokenizer, corpus.get("distinct") or DEFAULT_VOCAB)}
        except ValueError:  # no fitted study: the vocabulary the Data tab counted
            pass
    return estimate_markdown(values, corpus, batch, ctx.settings, lang)


@friendly
def show_scaled(ctx: AppContext, on, max_time, corpus, lang) -> list:
    """The scaled recipe for the Train tab's time limit: [the knobs (KNOBS order), learning rate, batch, why].
    Off, or with no fitted study, the knobs and the Train tab's fields stay as they are."""
    keep = [gr.skip()] * (len(KNOBS) + 2)
    if not on:
        return [*keep, t("model.scaled.off", lang)]
    budget = float(max_time or 0)
    corpus = corpus or {}
    spec = corpus.get("tokenizer") or DEFAULT_TOKENIZER  # what Start trains with (the Data tab's default)
    try:
        choice = scaled_choice(budget, spec, corpus.get("characters"), corpus.get("distinct"), ctx.settings)
    except ValueError:
        return [*keep, t("model.scaled.unfitted", lang)]
    shape, train = choice.settings()
    note = "" if budget else " " + t("model.scaled.no_limit", lang, seconds=f"{DEFAULT_BUDGET_S:.0f}")
    if choice.better_tokenizer:
        note += " " + t("model.scaled.data_tab", lang)
    why = f"{t('model.scaled.title', lang)} {say(choice.why(), lang)}{note}"
    return [*(shape.get(k, 0.0) for k in KNOBS), train["lr"], train["batch_size"], why]


def create_tab(ctx: AppContext) -> ModelTab:
    tr = ctx.tr
    tr(gr.Markdown, value="model.explainer")
    with gr.Row():
        with gr.Column(scale=3):
            scaled = tr(gr.Checkbox, value=True, label="model.scaled", info="model.scaled.info", elem_id="model-scaled")
            why = gr.Markdown(elem_id="model-why")
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
    # a knob or preset chosen by hand takes over from the scaled recipe (.input: a person's change, not the recipe's)
    for control in (preset, *knobs.values()):
        control.input(lambda: False, None, scaled, queue=False, api_visibility="private")
    return ModelTab(knobs=[knobs[k] for k in KNOBS], preset=preset, estimate=estimate, scaled=scaled, why=why)
