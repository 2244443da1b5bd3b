"""What people type into the tabs' forms, turned into checked values: numbers (the fields of playground/fields.py
leave their checking to these functions), stop strings, layer lists, and the length of a prompt. Every refusal is a
ConfigError whose message, in the page's language, names the field and says what is allowed."""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from core.engine import MAX_STOP_CHARS, MAX_STOP_STRINGS
from core.errors import ConfigError
from playground.i18n import t
from playground.settings import Settings


def parse_number(value, name_key: str, cast=float, lang: str = "en", empty_key: str | None = "gen.err.empty"):
    """`value` as a number; `name_key` is the i18n key of the field's label, for the message. A blank value
    gets `empty_key`'s message (None: the "must be a number" one)."""
    name = t(name_key, lang)
    if empty_key and (value is None or (isinstance(value, str) and not value.strip())):
        raise ConfigError(t(empty_key, lang, name=name))
    try:
        x = cast(float(value))
    except (TypeError, ValueError):
        raise ConfigError(t("gen.err.number", lang, name=name, value=repr(value))) from None
    if isinstance(x, float) and not math.isfinite(x):
        raise ConfigError(t("gen.err.finite", lang, name=name, value=repr(value)))
    return x


def check_number(
    value, name_key: str, lang: str = "en", minimum=None, maximum=None, whole: bool = False, empty_key="gen.err.empty"
):
    """`value` as a number from `minimum` to `maximum` (either may be None: no bound), a whole number when `whole`;
    else a ConfigError naming the field (`name_key`: the i18n key of its label) and what is allowed."""
    x = parse_number(value, name_key, float, lang, empty_key)
    name = t(name_key, lang)
    if whole and x != int(x):
        raise ConfigError(t("form.err.whole", lang, name=name, value=_shown(x)))
    x = int(x) if whole else x
    low, high = minimum is not None and x < minimum, maximum is not None and x > maximum
    if (low or high) and minimum is not None and maximum is not None:
        raise ConfigError(
            t("form.err.range", lang, name=name, min=_shown(minimum), max=_shown(maximum), value=_shown(x))
        )
    if low:
        raise ConfigError(t("form.err.min", lang, name=name, min=_shown(minimum), value=_shown(x)))
    if high:
        raise ConfigError(t("form.err.max", lang, name=name, max=_shown(maximum), value=_shown(x)))
    return x


def _shown(x) -> str:
    """A bound or value as people write it: 100,000, 0.5, 1e-06."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 1e15:
        x = int(x)
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


class Bounds(NamedTuple):
    """A number field: its label's i18n key (for messages), the range it allows (None: open on that side), whether
    it takes whole numbers, and its slider's step."""

    label: str
    minimum: float | None = None
    maximum: float | None = None
    whole: bool = False
    step: float | None = None

    def check(self, value, lang: str = "en"):
        return check_number(value, self.label, lang, self.minimum, self.maximum, self.whole)

    @property
    def limits(self) -> dict:
        """The keyword arguments that show these bounds on a NumberField or SliderField (playground/fields.py)."""
        return {"minimum": self.minimum, "maximum": self.maximum, **({"step": self.step} if self.step else {})}


def check_fields(values: dict, bounds: dict[str, Bounds], lang: str = "en") -> dict:
    """`values` with each one that `bounds` names checked (and turned into a number); the first refusal raises."""
    return {**values, **{k: b.check(values[k], lang) for k, b in bounds.items() if k in values}}


# The Model tab's knobs (in model_choices.KNOBS order): its sliders' ranges, and the shapes Start accepts
KNOB_BOUNDS = {
    "n_layer": Bounds("model.n_layer", 1, 24, whole=True, step=1),
    "n_head": Bounds("model.n_head", 1, 16, whole=True, step=1),
    "n_embd": Bounds("model.n_embd", 16, 1024, whole=True, step=16),
    "block_size": Bounds("model.block_size", 8, 1024, whole=True, step=8),
    "dropout": Bounds("model.dropout", 0.0, 0.5, step=0.05),
}
BATCH_BOUNDS = Bounds("train.batch_size", 1, 128, whole=True, step=1)  # the Train tab's batch size, which the
# Model tab's estimate follows


def parse_stop(text: str | None, lang: str = "en") -> list[str]:
    """Stop strings from a textbox: one per line when there are several lines, else comma-separated;
    a written \\n or \\t stands for a line break or tab. Duplicates are dropped in one pass, and the count and
    length are bounded (every new token is checked against every stop string)."""
    if not text or not text.strip():
        return []
    if len(text) > MAX_STOP_STRINGS * (MAX_STOP_CHARS + 1):  # refused before it is split at all
        raise ConfigError(t("gen.err.stop", lang, n=MAX_STOP_STRINGS, chars=MAX_STOP_CHARS))
    parts = text.splitlines() if "\n" in text.strip("\n") else text.split(",")
    out = list(dict.fromkeys(p for p in (p.strip(" ").replace("\\n", "\n").replace("\\t", "\t") for p in parts) if p))
    if len(out) > MAX_STOP_STRINGS or any(len(p) > MAX_STOP_CHARS for p in out):
        raise ConfigError(t("gen.err.stop", lang, n=MAX_STOP_STRINGS, chars=MAX_STOP_CHARS))
    return out


def parse_layers(text: str | None, lang: str = "en") -> list[int] | None:
    """ "0,1" -> [0, 1]; blank -> None (every layer)."""
    if not text or not str(text).strip():
        return None
    try:
        return [int(x) for x in re.split(r"[,\s]+", str(text).strip()) if x]
    except ValueError:
        raise ConfigError(t("ft.err.layers", lang, value=repr(text))) from None


def check_prompt_length(text: str, settings: Settings, lang: str = "en") -> None:
    """Refuse a prompt longer than allowed: encoding it costs time and memory before it is cut to the context."""
    if len(text) > settings.max_prompt_chars:
        raise ConfigError(t("gen.prompt_too_long", lang, n=f"{len(text):,}", max=f"{settings.max_prompt_chars:,}"))
