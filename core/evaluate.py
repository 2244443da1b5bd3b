"""Evaluation of language models and fine-tuned chat models.

    val loss, perplexity   on held-out data (perplexity = exp(loss): how many tokens the model hesitates between)
    exact match            the greedy reply equals the reference (after trimming spaces)
    BLEU                   n-gram overlap with the references, 0..100 (sacrebleu's corpus BLEU)
    ROUGE-L                longest common subsequence with the reference, F1 averaged, 0..1 (rouge-score)
    distinct-n             distinct n-grams / all n-grams over sampled replies: 1 = never repeats itself (an empty
                           reply counts as one n-gram that is never distinct; a shorter one as one n-gram, itself)

`evaluate_run` measures a fine-tuning run's model (its base, or the fine-tuned result) and `write_eval` keeps the
numbers in the run directory's eval.json under "base" and "finetuned", so the app and the CLI show both.
"""

from __future__ import annotations

import time
from pathlib import Path

from sacrebleu.metrics import BLEU

from core import runs
from core.chat import template_for
from core.device import pick_device
from core.engine import SamplingParams, generate
from core.files import atomic_write_json, read_json
from core.run_data import log_sample_params, open_run_data, perplexity
from core.sft_data import read_conversations
from core.tokenizer import load_tokenizer
from core.train_config import TrainConfig

EVAL_FILE = "eval.json"
SHOWN_EXAMPLES = 20  # prompt / reference / reply triples kept in eval.json for the app


# ----------------------------------------------------------------------------------------------------------
# Metrics on strings


def normalize_answer(text: str) -> str:
    return " ".join(text.split())


def exact_match(predictions: list[str], references: list[str]) -> float:
    if not references:
        return 0.0
    return sum(normalize_answer(p) == normalize_answer(r) for p, r in zip(predictions, references)) / len(references)


def bleu(predictions: list[str], references: list[str]) -> float:
    """Corpus BLEU, 0..100, with sacrebleu's standard 13a tokenization. n-gram orders that no text is long
    enough for are left out (effective order), so one-word answers still score; longer texts score as usual."""
    if not references:
        return 0.0
    return float(BLEU(effective_order=True).corpus_score(predictions, [references]).score)


def rouge_l(predictions: list[str], references: list[str]) -> float:
    """Mean ROUGE-L F1, 0..1. rouge-score's tokenizer keeps ASCII letters and digits only; text without any
    (e.g. Chinese) falls back to comparing characters, so it still scores."""
    from rouge_score import rouge_scorer, tokenizers  # noqa: PLC0415  heavy (~0.35 s to import): only ROUGE needs it

    if not references:
        return 0.0
    default = rouge_scorer.RougeScorer(["rougeL"])
    chars = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_CharTokenizer())
    total = 0.0
    for p, r in zip(predictions, references):
        words = tokenizers.DefaultTokenizer().tokenize(r)
        scorer = default if words else chars
        total += scorer.score(r, p)["rougeL"].fmeasure
    return total / len(references)


class _CharTokenizer:
    def tokenize(self, text):
        return [c for c in text if not c.isspace()]


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams of words over all texts, divided by their total count (0 when there are no texts). A text
    with fewer than n words (but some) counts as one n-gram, its words as they are ("42" replies to a sum); an
    empty text counts as one n-gram that is never distinct: saying nothing is no variety, and ten empty replies
    score 0, not a perfect 1."""
    grams, total = set(), 0
    for t in texts:
        words = tuple(t.split())
        if not words:
            total += 1  # one n-gram's worth of nothing, never distinct
        elif len(words) < n:
            grams.add(words)
            total += 1
        else:
            for i in range(len(words) - n + 1):
                grams.add(words[i : i + n])
                total += 1
    return len(grams) / total if total else 0.0


# ----------------------------------------------------------------------------------------------------------
# Replies


def greedy_replies(model, tokenizer, template, prompts: list[list[dict]], max_new_tokens: int) -> list[str]:
    """The greedy reply of the model to each conversation (each ending with a user message)."""
    return _replies(
        model,
        tokenizer,
        template,
        prompts,
        SamplingParams(max_new_tokens=max_new_tokens, temperature=0.0, top_alternatives=1),
    )


def sampled_replies(
    model, tokenizer, template, prompts, max_new_tokens: int, temperature: float = 0.8, seed: int = 0
) -> list[str]:
    return _replies(
        model,
        tokenizer,
        template,
        prompts,
        SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, top_k=50, seed=seed, top_alternatives=1),
    )


def _replies(model, tokenizer, template, prompts, params: SamplingParams) -> list[str]:
    stop_ids = template.stop_ids(tokenizer)
    out = []
    for i, messages in enumerate(prompts):
        p = SamplingParams(
            **{
                **params.__dict__,
                "stop": list(template.stops),
                "stop_token_ids": stop_ids,
                "seed": None if params.seed is None else params.seed + i,
            }
        )
        out.append(generate(model, tokenizer, template.encode(tokenizer, messages), p)[0].text)
    return out


def split_prompt(conversation: list[dict]) -> tuple[list[dict], str]:
    """(the messages before the last assistant reply, that reply)."""
    last = max(i for i, m in enumerate(conversation) if m["role"] == "assistant")
    return conversation[:last], conversation[last]["content"]


def reply_metrics(
    model,
    tokenizer,
    template,
    conversations: list[list[dict]],
    max_new_tokens: int,
    distinct_samples: int = 10,
    seed: int = 0,
) -> dict:
    """Exact match, BLEU and ROUGE-L of greedy replies against the references, and distinct-1/2 of sampled
    replies to the first `distinct_samples` prompts."""
    pairs = [split_prompt(c) for c in conversations]
    prompts, references = [p for p, _ in pairs], [r for _, r in pairs]
    predictions = greedy_replies(model, tokenizer, template, prompts, max_new_tokens)
    sampled = sampled_replies(model, tokenizer, template, prompts[:distinct_samples], max_new_tokens, seed=seed)
    return {
        "items": len(references),
        "exact_match": exact_match(predictions, references),
        "bleu": bleu(predictions, references),
        "rouge_l": rouge_l(predictions, references),
        "distinct_1": distinct_n(sampled, 1),
        "distinct_2": distinct_n(sampled, 2),
        "examples": [
            {"prompt": p[-1]["content"] if p else "", "reference": r, "reply": y}
            for p, r, y in list(zip(prompts, references, predictions))[:SHOWN_EXAMPLES]
        ],
    }


def reply_budget(tokenizer, references: list[str], block_size: int) -> int:
    """Enough new tokens for the longest reference twice over, within reason."""
    longest = max((len(tokenizer.encode(r)) for r in references), default=16)
    return max(4, min(block_size, 128, 2 * longest + 4))


# ----------------------------------------------------------------------------------------------------------
# A run's model, measured and recorded


def evaluate_run(
    run_dir, model=None, which: str = "best", max_items: int | None = None, device: str | None = None
) -> dict:
    """Validation loss and perplexity of `model` (default: the run's `which` checkpoint, on `device`) on the
    run's validation data, as the trainer measures it, plus reply metrics on its validation conversations for
    chat data (else distinct-1/2 of a few samples)."""
    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    train = TrainConfig.from_dict(config["train"])
    if model is None:
        model, _ = runs.load_model(run_dir, which=which, device=str(pick_device(device or "cpu")))
    dev = model.transformer.wte.weight.device
    tokenizer = load_tokenizer(run_dir)
    data = open_run_data(run_dir, config)
    t0 = time.time()
    loss = data.validation_loss(model, train.batch_size, train.eval_batches, dev)
    out = {"val_loss": loss, "perplexity": perplexity(loss)}
    ft = config.get("finetune") or {}
    n = max_items or ft.get("eval_items") or 50
    if config["data"].get("format") == "sft":
        conversations = read_conversations(run_dir / "data" / "val.jsonl")[:n]
        budget = ft.get("eval_max_new_tokens") or reply_budget(
            tokenizer, [split_prompt(c)[1] for c in conversations], model.config.block_size
        )
        out.update(reply_metrics(model, tokenizer, template_for(config), conversations, budget, seed=train.seed))
    else:
        samples = [
            data.sample(model, tokenizer, log_sample_params(train.sample_tokens, train.seed + i)) for i in range(4)
        ]
        out.update(distinct_1=distinct_n(samples, 1), distinct_2=distinct_n(samples, 2))
    out["seconds"] = time.time() - t0
    return out


def read_eval(run_dir) -> dict:
    path = Path(run_dir) / EVAL_FILE
    return read_json(path) if path.exists() else {}


def write_eval(run_dir, which: str, result: dict, **extra) -> dict:
    """Store `result` as eval.json's `which` ("base" or "finetuned"); returns the whole file."""
    data = read_eval(run_dir)
    data[which] = {**result, **extra, "updated": time.time()}
    atomic_write_json(Path(run_dir) / EVAL_FILE, data)
    return data
