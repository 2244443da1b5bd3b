"""What people type into the tabs' forms, turned into checked values: numbers, stop strings, layer lists, and the
length of a prompt. Every refusal is a ConfigError whose message, in the page's language, names the field."""

from __future__ import annotations

import math
import re

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
