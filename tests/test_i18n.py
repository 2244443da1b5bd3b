"""The locale files (playground/locales/<code>.toml): they parse, hold only non-empty strings, every
translated key exists in English, and each translation keeps exactly the {placeholders} of its English text
(a missing or misspelt one would raise KeyError, or show a raw "{name}", in the other language only). The English
of a "core.<key>" entry is the engine's own sentence in core/messages.py."""

import string
import tomllib

import pytest

from core.messages import MESSAGES
from playground import i18n

LOCALES = i18n.LOCALES
CODES = list(i18n.LANGUAGES.values())
TRANSLATIONS = [c for c in CODES if c != "en"]


def load(code: str) -> dict:
    with (LOCALES / f"{code}.toml").open("rb") as f:
        return tomllib.load(f)


def english(en: dict) -> dict:
    """en.toml's keys and, as "core.<key>", the engine's sentences."""
    return {**en, **{f"core.{k}": v for k, v in MESSAGES.items()}}


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def test_every_language_has_a_file_and_every_file_a_language():
    assert "en" in CODES
    assert sorted(p.stem for p in LOCALES.glob("*.toml")) == sorted(CODES)


@pytest.mark.parametrize("code", CODES)
def test_file_parses_to_non_empty_strings(code):
    table = load(code)  # raises TOMLDecodeError when the file is not valid TOML
    assert table, f"{code}.toml is empty"
    bad = {k: v for k, v in table.items() if not isinstance(v, str) or not v.strip()}
    assert not bad, f"{code}.toml: values that are not non-empty strings (a dotted key left unquoted nests): {bad}"
    assert i18n.STRINGS[code] == table  # what the app uses is what the file says


@pytest.mark.parametrize("code", TRANSLATIONS)
def test_translation_keys_exist_in_english(code):
    en, other = english(load("en")), load(code)
    orphans = [k for k in other if k not in en]
    assert not orphans, f"{code}.toml has keys that en.toml lacks: {orphans}"


@pytest.mark.parametrize("code", TRANSLATIONS)
def test_translation_keeps_the_placeholders(code):
    en, other = english(load("en")), load(code)
    wrong = {}
    for key, text in other.items():
        if key not in en:
            continue  # reported by test_translation_keys_exist_in_english
        try:
            got = placeholders(text)
        except ValueError as e:  # a lone { or }
            wrong[key] = f"unparsable: {e}"
            continue
        if got != placeholders(en[key]):
            wrong[key] = f"English has {sorted(placeholders(en[key]))}, {code} has {sorted(got)}"
    assert not wrong, f"{code}.toml placeholders differ from en.toml: {wrong}"


def test_english_leaves_the_engines_sentences_to_the_engine():
    assert not [k for k in load("en") if k.startswith("core.")], "core.* English lives in core/messages.py"
