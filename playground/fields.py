"""Number fields and sliders whose minimum and maximum only guide the browser.

Gradio itself refuses a value out of bounds before the handler runs: in its own English ("Value -0.01 is less
than minimum value 1e-06"), without naming the field, and with an error mark over every output of the event. With
these the handler gets the value as typed and checks it (form_values.check_number, Bounds.check), so that a
refusal names the field and says what is allowed, in the page's language. The browser draws them as Gradio's own
Number and Slider.

Classes, not instances with another preprocess: Gradio rebuilds a component from its class when an event updates
its properties (the language switch relabels every field). Gradio also writes a .pyi stub beside a module that
defines a component class; this module stays small, and .gitignore leaves the stub out.
"""

from __future__ import annotations

import math

import gradio as gr


def _as_typed(payload, precision):
    # a number, rounded to the field's precision; anything else (None for a blank box, whatever an API client
    # sent) as it is, for the handler to say what is wrong
    if isinstance(payload, (int, float)) and not isinstance(payload, bool) and math.isfinite(payload):
        return gr.Number.round_to_precision(payload, precision)
    return payload


class NumberField(gr.Number):
    is_template = True  # drawn as the parent's component

    def preprocess(self, payload):
        return _as_typed(payload, self.precision)


class SliderField(gr.Slider):
    is_template = True

    def preprocess(self, payload):
        return _as_typed(payload, self.precision)
