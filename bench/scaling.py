"""The scaling study behind the budget-scaled recipe (core/recipes.py): train shapes of the ladder for several time
budgets on this machine, measure each one's held-out loss, and fit the loss model the recipe picks with.

    python -m bench.scaling run --budgets 90,270 [--rungs 3L/96,4L/128 ...] [--tokenizer bpe:512] [--threads 1]
    python -m bench.scaling speed [--seconds 30]
    python -m bench.scaling fit [--plot assets/scaling.png]

`run` appends one JSON line per (budget, rung, tokenizer) to bench/results/scaling.jsonl and skips those already
there, so the study can be stopped and continued. The fit uses the tokens each run saw, not its time, so runs may
share the machine (two studies side by side with --threads 1 each); `speed` then measures, with nothing else
running and the machine's own thread count, how fast each rung trains (a fraction of the speed probe's FLOP rate),
which turns a time budget into tokens. `fit` fits L(N, D) = E + A / N^alpha + B / D^beta (N: non-embedding
parameters, D: tokens seen; Chinchilla's form) to each tokenizer's runs, prints the constants and speeds to put in
core/recipes.py, and draws the measured losses with the fit's prediction for each rung.

Held-out loss here is the full validation text (the last 10 % of Tiny Shakespeare), every non-overlapping window,
in nats per character (bits per character = nats / ln 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.time_to_quality import full_val_loss
from core import runs
from core.data import split_text
from core.datasets import load_builtin
from core.model import GPTConfig, flops_per_token, param_count
from core.prepare import prepare_run
from core.probe import flops_rate
from core.recipes import LADDER, LossFit, effective_tokens, non_embedding_params, recipe_settings
from core.tokenizer import make_tokenizer
from core.train import Trainer
from core.train_config import TrainConfig

RESULTS = Path(__file__).resolve().parent / "results" / "scaling.jsonl"
SPEEDS = RESULTS.with_name("scaling-speed.jsonl")


def run_one(rung, budget: float, text: str, tokenizer_spec: str, corpus: str, threads: int | None = None,
            steps: int | None = None, train_overrides: dict | None = None,
            shape_overrides: dict | None = None) -> dict:  # fmt: skip
    """Train `rung` for `budget` seconds (or exactly `steps` steps, the schedule following them) and measure it."""
    tok = make_tokenizer(tokenizer_spec, text)
    shape, train = recipe_settings(rung, budget)
    shape.update(shape_overrides or {})
    if steps:
        train.update(max_steps=steps, max_time=None)
    train.update(train_overrides or {})
    cfg = GPTConfig(vocab_size=tok.vocab_size, **shape)
    with tempfile.TemporaryDirectory() as d:
        train_cfg = TrainConfig(**{**train, "sample_tokens": 1, "device": "cpu", "threads": threads or 0})
        run = prepare_run(Path(d) / "r", text, tok, cfg, train_cfg, data_name=corpus)
        t = time.time()
        result = Trainer(run).fit()
        wall = time.time() - t
        loss = full_val_loss(run)
        data = runs.read_config(run)["data"]
        last = [r for r in runs.read_jsonl(run / runs.METRICS)[0] if "tokens_seen" in r][-1]
        unique = data["train_tokens"]
    nats_per_char = loss * data["val_tokens"] / data["val_chars"]
    return {
        "rung": rung.name, "budget": budget, "lr": rung.lr, "batch_size": rung.batch_size,
        "block_size": rung.block_size, "dropout": cfg.dropout,
        "weight_decay": train["weight_decay"], "tokenizer": tokenizer_spec, "corpus": corpus,
        "vocab_size": tok.vocab_size, "params": param_count(cfg), "non_embedding_params": non_embedding_params(cfg),
        "steps": result.step, "tokens_seen": last["tokens_seen"], "wall_s": round(wall, 1),
        "val_loss_per_token": loss, "val_nats_per_char": nats_per_char,
        "val_bits_per_char": nats_per_char / math.log(2), "flops_per_token": flops_per_token(cfg),
        "unique_tokens": unique,
        "probe_flops_rate": flops_rate("cpu"), "threads": torch.get_num_threads(),
        "measured": time.strftime("%Y-%m-%d %H:%M"),
    }  # fmt: skip


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cmd_run(a) -> None:
    text = load_builtin(a.corpus).text
    results = Path(a.results)
    done = {(r["rung"], r["budget"], r["tokenizer"], r["corpus"]) for r in read_results(results)}
    rungs = [r for r in LADDER if not a.rungs or r.name in a.rungs.split(",")]
    results.parent.mkdir(parents=True, exist_ok=True)
    for budget in [float(b) for b in a.budgets.split(",")]:
        for rung in rungs:
            if (rung.name, budget, a.tokenizer, a.corpus) in done:
                continue
            record = run_one(rung, budget, text, a.tokenizer, a.corpus, a.threads)
            with open(results, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"{rung.name:8s} {budget:5.0f} s: {record['val_bits_per_char']:.4f} bits/char "
                  f"({record['steps']} steps, {record['tokens_seen']:,.0f} tokens)", flush=True)  # fmt: skip


def cmd_sweep(a) -> None:
    """A rung's settings varied at a fixed number of steps (equal work when the shape and batch stay), or for a
    fixed time (--budget: what a person gets, a setting that slows each step included): which learning rate,
    context, weight decay or dropout learns most from the same compute."""
    text = load_builtin(a.corpus).text
    base = next(r for r in LADDER if r.name == a.rung)
    for variant in a.variants.split(";"):
        pairs = [kv.split("=") for kv in variant.split(",") if kv]
        rung = dataclasses.replace(base, **{k: type(getattr(base, k))(v) for k, v in pairs if hasattr(base, k)})
        shape = {k: float(v) for k, v in pairs if not hasattr(base, k) and k in GPTConfig.__dataclass_fields__}
        # a training setting the rung does not hold
        train = {k: float(v) for k, v in pairs if not hasattr(base, k) and k not in shape}
        record = {**run_one(rung, a.budget, text, a.tokenizer, a.corpus, a.threads, a.steps, train, shape),
                  "variant": variant}  # fmt: skip
        with open(a.results, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"{a.rung} {a.tokenizer} {variant}: {record['val_bits_per_char']:.4f} bits/char", flush=True)


MIN_RUNS = 5  # a tokenizer's runs the loss model needs before it is fitted (it has five constants, and R)
REPEATS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)  # R of LossFit tried (inf: repeated epochs count in full)


def fit(records: list[dict]) -> LossFit:
    """Least squares on the loss per character: for each (alpha, beta, repeat) on a grid, E, A and B are linear.
    A record's `unique_tokens` (the corpus's training tokens) lets repeated epochs count for less."""
    n = np.array([r["non_embedding_params"] for r in records], float)
    y = np.array([r["val_nats_per_char"] for r in records], float)
    best = None
    for repeat in REPEATS:
        d = np.array([effective_tokens(r["tokens_seen"], r.get("unique_tokens"), repeat) for r in records], float)
        for alpha in np.linspace(0.05, 2.0, 79):
            for beta in np.linspace(0.05, 1.0, 39):
                x = np.stack([np.ones_like(n), n**-alpha, d**-beta], axis=1)
                coef, *_ = np.linalg.lstsq(x, y, rcond=None)
                if coef[0] < 0 or coef[1] < 0 or coef[2] < 0:  # a loss floor below zero, or a term that grows:
                    continue  # not a loss curve (with few runs, least squares finds such fits)
                err = float(np.mean((x @ coef - y) ** 2))
                if best is None or err < best[0]:
                    best = (err, LossFit(*(float(c) for c in (coef[0], coef[1], alpha, coef[2], beta, repeat))))
    return best[1]


def with_unique_tokens(records: list[dict]) -> list[dict]:
    """Each record with its corpus's training tokens for its tokenizer (measured again where it was not kept)."""
    counts: dict[tuple[str, str], int] = {}
    out = []
    for r in records:
        key = (r["corpus"], r["tokenizer"])
        if "unique_tokens" not in r and key not in counts:
            text = load_builtin(r["corpus"]).text
            counts[key] = len(make_tokenizer(r["tokenizer"], text).encode(split_text(text)[0]))
        out.append({"unique_tokens": counts.get(key), **r})
    return out


def speeds(records: list[dict]) -> dict[str, float]:
    """Each rung's training speed as a fraction of the probe's FLOP rate (the median over its runs): what
    core/recipes.py's LADDER keeps as `speed`. From the `speed` runs: the machine's own thread count, nothing else
    running, the tokens a run saw in its whole time budget (evaluations and the first steps included)."""
    by_rung: dict[str, list[float]] = {}
    for r in records:
        rate = r["tokens_seen"] * r["flops_per_token"] / r["budget"]
        by_rung.setdefault(r["rung"], []).append(rate / r["probe_flops_rate"])
    return {rung: float(np.median(v)) for rung, v in by_rung.items()}


def cmd_speed(a) -> None:
    """Train every rung for a short budget with this machine's own thread count (nothing else should run)."""
    text = load_builtin("shakespeare").text
    results = Path(a.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    for rung in [r for r in LADDER if not a.rungs or r.name in a.rungs.split(",")]:
        record = run_one(rung, a.seconds, text, "char", "shakespeare")
        with open(results, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"{rung.name:8s} speed={speeds([record])[rung.name]:.3f}", flush=True)


def measured_range(records: list[dict]) -> dict[tuple[str, str], float]:
    """The most tokens the study trained each (tokenizer, rung) on: how far core/recipes.py trusts its fit."""
    out: dict[tuple[str, str], float] = {}
    for r in records:
        key = (r["tokenizer"], r["rung"])
        out[key] = max(out.get(key, 0.0), float(r["tokens_seen"]))
    return out


def predicted(f: LossFit, r: dict) -> float:
    return f.loss(r["non_embedding_params"], r["tokens_seen"], r.get("unique_tokens"))


def cmd_fit(a) -> None:
    # a run marked "fit": false is data the loss model's form cannot hold (its why_not_fitted says why)
    records = with_unique_tokens(
        [r for r in read_results(Path(a.results)) if r["corpus"] == "shakespeare" and r.get("fit", True)]
    )
    print("measured range (MEASURED):")
    for (tokenizer, rung), tokens in sorted(measured_range(records).items()):
        print(f"    ({tokenizer!r}, {rung!r}): {tokens:.3g},")
    print("speeds (LADDER):")
    for rung, speed in speeds(read_results(Path(a.speeds))).items():
        print(f"  {rung}: speed={speed:.3f}")
    fits = {}
    for tokenizer in sorted({r["tokenizer"] for r in records}):
        own = [r for r in records if r["tokenizer"] == tokenizer]
        if len(own) < MIN_RUNS:  # fewer runs than the loss model has constants: no fit, only data
            print(f"    # {tokenizer}: {len(own)} runs, too few to fit (at least {MIN_RUNS})")
            continue
        f = fits[tokenizer] = fit(own)
        rms = math.sqrt(np.mean([(predicted(f, r) - r["val_nats_per_char"]) ** 2 for r in own]))
        print(f'    "{tokenizer}": LossFit(E={f.E:.4f}, A={f.A:.4g}, alpha={f.alpha:.3f}, B={f.B:.4g}, '
              f"beta={f.beta:.3f}, repeat={f.repeat}),  # {len(own)} runs, rms error {rms:.4f} nats/char")  # fmt: skip
    if a.plot:
        plot(records, fits, Path(a.plot))


def plot(records: list[dict], fits: dict[str, LossFit], path: Path) -> None:
    import matplotlib  # noqa: PLC0415  heavy, and only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    tokenizers = sorted(fits)
    fig, axes = plt.subplots(1, len(tokenizers), figsize=(6 * len(tokenizers), 4.2), dpi=110, sharey=True)
    axes = np.atleast_1d(axes)
    names = [x.name for x in LADDER]
    for ax, tokenizer in zip(axes, tokenizers):
        own = [r for r in records if r["tokenizer"] == tokenizer]
        for i, rung in enumerate(sorted({r["rung"] for r in own}, key=names.index)):
            mine = sorted((r for r in own if r["rung"] == rung), key=lambda r: r["tokens_seen"])
            color = f"C{i}"
            for marker, decayed in (("o", False), ("s", True)):  # squares: trained with weight decay
                part = [r for r in mine if bool(r.get("weight_decay")) == decayed]
                label = rung if part and (not decayed or len(part) == len(mine)) else None  # the rung named once
                ax.plot([r["tokens_seen"] for r in part], [r["val_bits_per_char"] for r in part], marker,
                        color=color, label=label)  # fmt: skip
            xs = np.geomspace(min(r["tokens_seen"] for r in own) * 0.5, max(r["tokens_seen"] for r in own) * 2, 40)
            n, unique = mine[0]["non_embedding_params"], mine[0].get("unique_tokens")
            ax.plot(xs, [fits[tokenizer].loss(n, x, unique) / math.log(2) for x in xs], "-", color=color, alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("tokens trained on")
        ax.set_title(f"Tiny Shakespeare, {tokenizer}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out bits per character")
    fig.suptitle("Measured (dots; squares: with weight decay, 0.1 or 0.2) and the fitted loss model "
                 "E + A/N^α + B/D'^β, D' counting repeated epochs for less (lines)")  # fmt: skip
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("--budgets", default="60,180,420,900")
    r.add_argument("--rungs", help="comma-separated rung names (default: every rung)")
    r.add_argument("--tokenizer", default="char")
    r.add_argument("--corpus", default="shakespeare")
    r.add_argument("--results", default=str(RESULTS))
    r.add_argument("--threads", type=int, help="CPU threads per run (default: torch's)")
    sw = sub.add_parser("sweep")
    sw.add_argument("--rung", required=True)
    sw.add_argument("--tokenizer", default="char")
    sw.add_argument("--corpus", default="shakespeare")
    sw.add_argument("--steps", type=int, help="train this many steps (default: for --budget seconds)")
    sw.add_argument("--budget", type=float, default=180.0, help="seconds, when --steps is not given")
    sw.add_argument("--variants", required=True, help="e.g. 'lr=4e-3;lr=6e-3;block_size=128,batch_size=12'")
    sw.add_argument("--threads", type=int)
    sw.add_argument("--results", default=str(RESULTS.with_name("sweep.jsonl")))
    sp = sub.add_parser("speed")
    sp.add_argument("--seconds", type=float, default=45.0)
    sp.add_argument("--rungs", help="comma-separated rung names (default: every rung)")
    sp.add_argument("--results", default=str(SPEEDS))
    f = sub.add_parser("fit")
    f.add_argument("--results", default=str(RESULTS))
    f.add_argument("--speeds", default=str(SPEEDS))
    f.add_argument("--plot", help="write the figure here (PNG)")
    a = p.parse_args(argv)
    {"run": cmd_run, "sweep": cmd_sweep, "speed": cmd_speed, "fit": cmd_fit}[a.command](a)


if __name__ == "__main__":
    main()
