"""The model card of an exported run: the README.md people read first on the Hugging Face Hub.

    write_card(folder, run_dir, model, tokenizer, used, meta, repo_id=None)
        README.md      metadata the Hub reads (library, pipeline tag, datasets, metrics and their values), then
                       what the model is, how to load it in three lines, what it was trained on and how (recipe,
                       steps, time, tokens seen, hardware), held-out loss and bits per character, and samples
        loss_curve.png the training and validation loss by step

The card is built with huggingface_hub's card tools (ModelCardData, EvalResult), so what the Hub parses is what
they write; the samples are generated from the exported weights with a fixed seed, so the card shows what the
published model itself writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from core import runs
from core.data import open_tokens
from core.engine import SamplingParams, generate
from core.errors import NewleafError
from core.files import read_jsonl
from core.model import GPTConfig, param_count
from core.units import format_count

LOSS_CURVE = "loss_curve.png"
N_SAMPLES = 3
SAMPLE_SEED = 1234
# The built-in corpora that are also datasets on the Hub, so the card's metadata links to them.
HUB_DATASETS = {"Tiny Shakespeare": "karpathy/tiny_shakespeare"}


def write_card(
    folder: Path, run_dir: Path, model, tokenizer, used: str, meta: dict, repo_id: str | None = None
) -> ModelCard:
    """Write README.md and loss_curve.png into `folder` (the export being built); returns the card."""
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    records = [r for r in read_jsonl(run_dir / runs.METRICS)[0] if isinstance(r, dict)]
    has_curve = draw_loss_curve(records, folder / LOSS_CURVE)
    samples = sample_texts(model, tokenizer, run_dir)
    card = model_card(run_dir, config, model.config, tokenizer, used, meta, records, samples, has_curve, repo_id)
    (folder / "README.md").write_text(str(card), encoding="utf-8")
    return card


# ----------------------------------------------------------------------------------------------------------
# What the card reports


def training_facts(run_dir: Path, config: dict, records: list[dict]) -> dict:
    """Steps, time, tokens seen and hardware of the training, from the last checkpoint and the metrics log."""
    last = runs.checkpoint_meta(run_dir, "last") or {}
    logged = records[-1] if records else {}
    train = config.get("train") or {}
    return {
        "steps": last.get("step", logged.get("step", 0)),
        "seconds": last.get("elapsed_s", logged.get("elapsed_s", 0.0)),
        "tokens_seen": logged.get("tokens_seen"),
        "hardware": last.get("hardware") or train.get("device") or "unknown",
        "recipe": config.get("preset") or "custom",
        "optimizer": train.get("optimizer", "adamw"),
        "lr": train.get("lr"),
        "batch_size": train.get("batch_size"),
        "grad_accum": train.get("grad_accum", 1),
    }


def held_out(run_dir: Path, config: dict, meta: dict) -> dict:
    """The exported checkpoint's validation loss (nats per token), its bits per character and perplexity."""
    val = meta.get("val_loss")
    if not isinstance(val, (int, float)) or not math.isfinite(val):
        best = runs.checkpoint_meta(run_dir, "best") or {}
        val = best.get("val_loss")
    if not isinstance(val, (int, float)) or not math.isfinite(val):
        return {}
    scale = runs.bpc_scale(config.get("data") or {}, "val")
    out = {"loss": float(val), "perplexity": math.exp(min(val, 50.0))}
    if scale is not None:
        out["bpc"] = float(val) * scale
    return out


def draw_loss_curve(records: list[dict], path: Path) -> bool:
    """The training and validation loss by step as a PNG; False (and no file) when nothing was logged."""
    train = [(r["step"], r["train_loss"]) for r in records if _finite(r.get("train_loss")) and "step" in r]
    val = [(r["step"], r["val_loss"]) for r in records if _finite(r.get("val_loss")) and "step" in r]
    if not train and not val:
        return False
    from matplotlib.figure import Figure  # noqa: PLC0415  heavy (~0.8 s to import): only a card's curve needs it

    fig = Figure(figsize=(8, 4.5), dpi=100)
    ax = fig.add_subplot()
    if train:
        ax.plot(*zip(*train), label="training loss", color="#3f9d52", linewidth=1.5)
    if val:
        ax.plot(*zip(*val), label="validation loss", color="#2563eb", marker="o", markersize=4, linewidth=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    return True


def sample_prompt(run_dir: Path, tokenizer, n_tokens: int = 16) -> str:
    """The start of the held-out text (what the model never trained on), else a newline."""
    try:
        val = open_tokens(run_dir / "data" / "val.bin", tokenizer.vocab_size)
    except NewleafError:
        return "\n"
    text = tokenizer.decode(val[:n_tokens].tolist()) if len(val) else ""
    return text or "\n"


def sample_texts(model, tokenizer, run_dir: Path, max_new_tokens: int = 120) -> list[tuple[str, str]]:
    """(prompt, continuation) x N_SAMPLES from the exported weights, with a fixed seed."""
    prompt = sample_prompt(run_dir, tokenizer)
    room = model.config.block_size - len(tokenizer.encode(prompt))
    params = SamplingParams(
        max_new_tokens=max(1, min(max_new_tokens, room)),
        temperature=0.8,
        top_k=50,
        seed=SAMPLE_SEED,
        num_samples=N_SAMPLES,
    )
    return [(prompt, c.text) for c in generate(model, tokenizer, prompt, params)]


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# ----------------------------------------------------------------------------------------------------------
# The card


def card_data(config: dict, cfg: GPTConfig, results: dict, model_name: str) -> ModelCardData:
    data_name = str((config.get("data") or {}).get("name", "unknown"))
    dataset = HUB_DATASETS.get(data_name)
    source = config.get("source") if isinstance(config.get("source"), dict) else {}
    metric_rows = [
        ("loss", "Validation loss (nats per token)", results.get("loss")),
        ("bits_per_character", "Validation bits per character", results.get("bpc")),
        ("perplexity", "Validation perplexity (per token)", results.get("perplexity")),
    ]
    evals = [
        EvalResult(
            task_type="text-generation",
            task_name="Text generation",
            dataset_type=dataset or "custom",
            dataset_name=data_name,
            dataset_split="validation (last 10% of the text)",
            metric_type=kind,
            metric_name=name,
            metric_value=round(value, 4),
        )
        for kind, name, value in metric_rows
        if value is not None
    ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["newleaf", "gpt2", "text-generation", "small-language-model"],
        datasets=[dataset] if dataset else None,
        metrics=["perplexity"] if results else None,
        base_model=source.get("hf") if source.get("hf") else None,
        model_name=model_name,
        eval_results=evals or None,
    )


def model_card(
    run_dir: Path,
    config: dict,
    cfg: GPTConfig,
    tokenizer,
    used: str,
    meta: dict,
    records: list[dict],
    samples: list[tuple[str, str]],
    has_curve: bool,
    repo_id: str | None = None,
) -> ModelCard:
    title = runs.title(run_dir)
    where = repo_id or "PATH_OR_REPO"
    facts = training_facts(run_dir, config, records)
    results = held_out(run_dir, config, meta)
    data = config.get("data") or {}
    n_params = param_count(cfg)
    new_tokens = max(1, min(100, cfg.block_size // 2))
    tokens = f"{facts['tokens_seen']:,}" if isinstance(facts["tokens_seen"], int) else "not logged"
    sizes = (data.get("train_tokens"), data.get("val_tokens"))
    train_tokens = f" ({sizes[0]:,} training / {sizes[1]:,} held-out tokens)" if all(sizes) else ""
    lines = [
        f"# {title}",
        "",
        f"A small GPT-2-style language model ({format_count(n_params)} parameters) {_origin(config)} with "
        "Newleaf (a playground to train small GPTs in a browser tab) and exported to the Hugging Face format.",
        "",
        "## Use it in three lines",
        "",
        "```python",
        "from transformers import pipeline",
        f'generate = pipeline("text-generation", model="{where}")',
        f"print(generate({_prompt_literal(samples)}, max_new_tokens={new_tokens}, do_sample=True)"
        "[0]['generated_text'])",
        "```",
        "",
        "Or with the Auto classes:",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f'tok = AutoTokenizer.from_pretrained("{where}")',
        f'model = AutoModelForCausalLM.from_pretrained("{where}")',
        "```",
        "",
        f"The context is {cfg.block_size} tokens: the prompt plus the new tokens must fit in it.",
        "",
        "## Results on held-out text",
        "",
    ]
    if results:
        lines += [
            "| metric | value |",
            "|---|---|",
            f"| validation loss (nats per token) | {results['loss']:.4f} |",
        ]
        if "bpc" in results:
            lines.append(f"| bits per character | {results['bpc']:.4f} |")
        lines += [f"| perplexity (per token) | {results['perplexity']:.2f} |", ""]
        lines.append(
            "Measured on the last 10% of the text, which training never saw. Bits per character compare models "
            "with different tokenizers fairly."
        )
    else:
        lines.append("The model was not evaluated on held-out text.")
    lines += ["", "## Training", ""]
    if has_curve:
        lines += [f"![Training and validation loss by step]({LOSS_CURVE})", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| data | {data.get('name', 'unknown')}{train_tokens} |",
        f"| tokenizer | {tokenizer.describe()} |",
        f"| model | {cfg.n_layer} layers, {cfg.n_head} heads, width {cfg.n_embd}, context {cfg.block_size}, "
        f"{n_params:,} parameters |",
        f"| recipe | {facts['recipe']} |",
        f"| optimizer | {facts['optimizer']}, learning rate {facts['lr']}, batch {facts['batch_size']} "
        f"x {facts['grad_accum']} |",
        f"| steps | {facts['steps']:,} |",
        f"| training time | {facts['seconds']:.0f} s |",
        f"| tokens seen | {tokens} |",
        f"| hardware | {facts['hardware']} |",
        f"| exported checkpoint | `{used}` (step {meta.get('step', facts['steps'])}) |",
    ]
    source = config.get("source")
    if isinstance(source, dict) and source.get("hf"):
        lines.append(f"| weights from | `{source['hf']}` on the Hugging Face Hub |")
    if samples:
        lines += ["", "## Samples", "", "The start of the held-out text, continued (temperature 0.8, top-k 50):", ""]
        for i, (prompt, text) in enumerate(samples, 1):
            lines += [f"**Sample {i}**", "", "```text", (prompt + text).replace("```", "ʼʼʼ"), "```", ""]
    lines += [
        "",
        "## Limitations",
        "",
        "A model this small writes text in the style of its training data; it knows no facts and follows no "
        "instructions it was not trained on. Do not use it for anything that matters.",
        "",
    ]
    name = repo_id.split("/")[-1] if repo_id else title
    metadata = card_data(config, cfg, results, name).to_yaml()
    return ModelCard(f"---\n{metadata}\n---\n\n" + "\n".join(lines))


def _origin(config: dict) -> str:
    if config.get("finetune"):
        return "fine-tuned"
    source = config.get("source")
    return "imported from the Hub" if isinstance(source, dict) and source.get("hf") else "trained from scratch"


def _prompt_literal(samples) -> str:
    """The first sample's prompt as a Python string literal (JSON's escapes are Python's)."""
    return json.dumps(samples[0][0][:40] if samples else "\n", ensure_ascii=False)
