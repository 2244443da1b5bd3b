"""The model a person picks, and whether it may run here: the presets and knobs of the Model tab, the GPTConfig
they make, the memory a job may use, the check that a model fits (training in the Train and Fine-tune tabs, an
uploaded run in the Runs tab), and the Model tab's live estimate of parameters, memory and time per step."""

from __future__ import annotations

from core.device import available_memory, pick_device
from core.errors import ConfigError
from core.model import PRESETS, GPTConfig, flops_per_token, param_count, training_memory
from core.probe import estimate_step_seconds, flops_rate
from core.recipes import AUTO, DEFAULT_BUDGET_S, DEFAULT_CPU_RECIPE, RECIPES, STUDY_TRAIN_CHARS, Choice, choose
from core.units import format_bytes, format_count
from playground.i18n import EN, say, t

KNOBS = ("n_layer", "n_head", "n_embd", "block_size", "dropout")
DEFAULT_PRESET = RECIPES[DEFAULT_CPU_RECIPE]["preset"]  # the tuned CPU recipe's shape (core/recipes.py)
DEFAULT_VOCAB = 65  # Tiny Shakespeare's characters, until a corpus is loaded
MAX_SAMPLES = 4  # samples one generation request draws at once (the Generate tab's slots); a model used here
# must fit their KV cache (see upload_checks.check_upload_fits)


def _preset_description(name: str, lang: str) -> str:
    key = f"model.preset.{name}"
    return t(key, lang) if key in EN else PRESETS[name]["description"]


def preset_choices(lang: str = "en") -> list[tuple[str, str]]:
    return [(f"{name} — {_preset_description(name, lang)}", name) for name in PRESETS]


def preset_values(name: str) -> list:
    p = PRESETS[name]
    return [p["n_layer"], p["n_head"], p["n_embd"], p["block_size"], p.get("dropout", 0.0)]


def model_config(values: dict, corpus: dict | None) -> GPTConfig:
    """The GPTConfig of the knobs; the vocabulary comes from the loaded corpus's tokenizer."""
    vocab = (corpus or {}).get("vocab_size") or DEFAULT_VOCAB
    return GPTConfig(
        n_layer=int(values["n_layer"]),
        n_head=int(values["n_head"]),
        n_embd=int(values["n_embd"]),
        block_size=int(values["block_size"]),
        dropout=float(values["dropout"]),
        vocab_size=int(vocab),
    )


def memory_limit(settings) -> int:
    """The most a training job may use: the configured cap, or less if the machine has less free."""
    cap = int(settings.max_model_mb * 1024 * 1024)
    free = available_memory()
    return min(cap, int(0.9 * free)) if free else cap


def scaled_choice(budget_s: float, tokenizer: str, characters: int | None, distinct: int | None, settings) -> Choice:
    """The scaled recipe's pick (core/recipes.py) for `budget_s` seconds (0: no limit, picked for the default
    budget) on this machine, for a corpus of `characters` characters (its first 90 % trained on; None: the study's)
    with `distinct` different ones. `tokenizer` AUTO: the recipe picks the tokenizer too. The Model tab shows it,
    the Data tab shows its tokenizer, Start trains it: the same inputs give the same pick in all three."""
    return choose(float(budget_s or 0) or DEFAULT_BUDGET_S, flops_rate(pick_device("auto")),
                  char_vocab=distinct or DEFAULT_VOCAB, memory_limit=memory_limit(settings),
                  tokenizer=None if tokenizer == AUTO else tokenizer,
                  train_chars=int(0.9 * (characters or 0)) or STUDY_TRAIN_CHARS)  # fmt: skip


def check_fits(cfg: GPTConfig, batch_size: int, settings, lang: str = "en") -> int:
    """Bytes the job needs; raises ConfigError when it is more than may be used (or the context is too long)."""
    max_context = getattr(settings, "max_context", None)
    if max_context and cfg.block_size > max_context:
        raise ConfigError(t("model.too_long", lang, block=cfg.block_size, max=max_context))
    need = training_memory(cfg, int(batch_size))["total"]
    limit = memory_limit(settings)
    if need > limit:
        raise ConfigError(
            t("model.too_big", lang, need=format_bytes(need), batch=int(batch_size), limit=format_bytes(limit))
        )
    return need


def estimate_markdown(values: dict, corpus: dict | None, batch_size: int, settings, lang: str = "en") -> str:
    try:
        cfg = model_config(values, corpus)
    except ConfigError as e:
        return f"⚠️ **{say(e, lang)}**"
    n = param_count(cfg)
    mem = training_memory(cfg, int(batch_size))
    vocab_note = "" if corpus else " " + t("model.est.vocab_note", lang, n=DEFAULT_VOCAB)
    lines = [
        t("model.est.params", lang, params=format_count(n)) + vocab_note,
        t(
            "model.est.memory",
            lang,
            batch=int(batch_size),
            **{k: format_bytes(mem[k]) for k in ("total", "weights", "gradients", "optimizer", "activations")},
        ),
        # what the vocabulary costs: the output layer's share of the work (GPT-2's 50,257 tokens on a small model)
        t(
            "model.est.vocab",
            lang,
            vocab=f"{cfg.vocab_size:,}",
            params=f"{cfg.vocab_size * cfg.n_embd / n:.0%}",
            work=f"{6 * cfg.vocab_size * cfg.n_embd / flops_per_token(cfg):.0%}",
        ),
    ]
    try:
        check_fits(cfg, batch_size, settings, lang)
        secs = estimate_step_seconds(cfg, int(batch_size))
        lines.append(
            t("model.est.time", lang, ms=f"{secs * 1000:,.0f}", tps=f"{int(batch_size) * cfg.block_size / secs:,.0f}")
        )
    except ConfigError as e:
        lines.append(f"- ⛔ **{say(e, lang)}**")
    return "\n".join(lines)
