"""The app's words live in data files, not here: playground/locales/<code>.toml, one per language (en.toml,
zh.toml), flat quoted keys such as `"app.title" = "..."`. This module loads them once, at import, and holds the
code that uses them; components are built with `tr(...)` so the language switch can relabel them all at once.

English is complete; another language may leave keys out (they fall back to English) but must keep each string's
{placeholders}. To add a language: write locales/xx.toml with the keys of en.toml, and add its menu entry to
LANGUAGES below ({"Deutsch": "de"}); tests/test_i18n.py checks the files.

The engine's own sentences (errors, status lines, tokenizer descriptions) are written in English in
core/messages.py, by key; a language says them with "core.<key>" entries in its file, and `say` picks them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import gradio as gr

from core.errors import NewleafError
from core.messages import MESSAGES, Text

LANGUAGES = {"English": "en", "简体中文": "zh"}
GRADIO_LOCALES = {"en": "en", "zh": "zh-CN"}  # the locale of Gradio's own words (an upload box's "Drop File Here")
LOCALES = Path(__file__).parent / "locales"


def _load(code: str) -> dict[str, str]:
    """locales/<code>.toml as a flat {key: text} dict, in the file's order."""
    path = LOCALES / f"{code}.toml"
    try:
        with path.open("rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError:
        raise RuntimeError(f"Missing locale file {path} (language {code!r} is listed in LANGUAGES)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RuntimeError(f"Locale file {path} is not valid TOML: {e}") from e
    bad = [k for k, v in table.items() if not isinstance(v, str)]
    if bad:
        raise RuntimeError(
            f"Locale file {path}: these keys are not plain strings (quote dotted keys, "
            f'"a.b" = "...", or they nest): {", ".join(bad)}'
        )
    return table


STRINGS: dict[str, dict[str, str]] = {code: _load(code) for code in LANGUAGES.values()}
EN: dict[str, str] = STRINGS["en"]
ZH: dict[str, str] = STRINGS["zh"]


def t(key: str, lang: str = "en", **fmt) -> str:
    """The text of `key` in `lang` (English when missing), with {placeholders} filled in."""
    text = STRINGS.get(lang, EN).get(key) or EN[key]
    return text.format(**fmt) if fmt else text


def sentences(parts: list[str], lang: str = "en") -> str:
    """Sentences one after another: a space between them, except in Chinese, whose full stop needs none."""
    return ("" if lang == "zh" else " ").join(parts)


def say(what, lang: str = "en") -> str:
    """What the engine says, in `lang`: a core Text (or a NewleafError raised with one) by its key "core.<key>"
    (English from core/messages.py when the language lacks it); any other message or error as its own words."""
    text = what.text if isinstance(what, NewleafError) else what
    if isinstance(text, Text):
        table = STRINGS.get(lang, EN)
        return text.render(lambda key: table.get(f"core.{key}") or MESSAGES[key])
    return str(what)


class Translator:
    """Builds components with English text and remembers which attribute shows which key, so that the
    language switch can send every component its new text in one event."""

    def __init__(self):
        self._bindings: list[tuple[gr.components.Component, dict]] = []
        self.hooks: list[tuple] = []  # (fn, inputs, outputs) run after a switch, to redraw live content

    def __call__(self, component_cls, **kwargs):
        """tr(gr.Button, value="train.start", variant="primary"): keyword values that are string keys of EN
        are translated; the rest pass through. `choices` may be a function of the language that returns
        (label, value) pairs: only the labels change with the language."""
        keys = {
            k: v
            for k, v in kwargs.items()
            if isinstance(v, str) and v in EN and k in ("label", "value", "info", "placeholder")
        }
        if callable(kwargs.get("choices")):
            keys["choices"] = kwargs["choices"]
        component = component_cls(**{**kwargs, **{k: _text(v, "en") for k, v in keys.items()}})
        self._bindings.append((component, keys))
        return component

    def bind(self, component, **keys):
        """Register an existing block (e.g. a gr.Tab) whose attributes show these keys."""
        self._bindings.append((component, keys))
        return component

    def on_switch(self, fn, inputs, outputs):
        """Run fn(*inputs) -> outputs after each language switch (it reads the new language from ctx.lang)."""
        self.hooks.append((fn, inputs, outputs))

    @property
    def components(self) -> list:
        return [c for c, _ in self._bindings]

    def updates(self, lang: str) -> list:
        # no `value` for choices: the selection stays as it is
        return [gr.update(**{attr: _text(key, lang) for attr, key in keys.items()}) for _, keys in self._bindings]


def _text(key, lang: str):
    return key(lang) if callable(key) else t(key, lang)
