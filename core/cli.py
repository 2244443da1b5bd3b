"""Command line: `python -m core train|finetune|info|sample|chat|export-hf|import-hf|push|space ...`.

A user's mistake (missing file, bad corpus, impossible shape, unknown preset) exits with status 2 and one
clear line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from core import distributed, finetune, runs
from core.chat import stream_reply
from core.data import split_text
from core.datasets import BUILTIN_DATASETS, default_corpus, resolve_corpus
from core.demo_task import TASKS, task_for
from core.device import available_memory, pick_device
from core.engine import SamplingParams, quantize_int8, stream
from core.errors import NewleafError
from core.evaluate import read_eval
from core.files import atomic_write_json
from core.hf import export_hf, import_hf_as_run
from core.model import PRESETS, GPTConfig, param_count, preset_config
from core.prepare import prepare_run
from core.probe import flops_rate
from core.publish import push_run
from core.recipes import AUTO, DEFAULT_BUDGET_S, DEFAULT_CPU_RECIPE, NO_STEP_LIMIT, RECIPES, SCALED, choose
from core.space import build_space, push_space
from core.tokenizer import make_tokenizer
from core.train import StopOnSignal, Trainer
from core.train_config import TrainConfig
from core.units import format_count

DEMO_BASE = "scratch:nano"  # `finetune --data builtin:arithmetic` without --from


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--recipe",
        default=SCALED,
        choices=[SCALED, *RECIPES],
        help=f"shape, tokenizer and training settings (default {SCALED}: picked for the time budget, --max-time or "
        f"{DEFAULT_BUDGET_S:.0f} s, and this machine's measured speed; or a fixed one, on characters); the flags "
        f"below override it (--preset: the shape by hand, trained as {DEFAULT_CPU_RECIPE} trains)",
    )
    g.add_argument("--preset", help=f"a model shape instead of the recipe's: {', '.join(PRESETS)}")
    g.add_argument("--n-layer", type=int)
    g.add_argument("--n-head", type=int)
    g.add_argument("--n-embd", type=int)
    g.add_argument("--block-size", type=int, help="context length in tokens")
    g.add_argument("--dropout", type=float)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--grad-accum", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--max-steps", type=int)
    g.add_argument("--max-time", type=float, help="time budget in seconds; the learning rate decays to it")
    g.add_argument("--eval-every", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="auto (default), cpu, cuda, mps")
    g.add_argument("--threads", type=int, help="CPU threads for torch")
    g.add_argument("--history-snapshots", type=int, help="weights kept for looking back, evenly spaced (default 12)")
    g.add_argument("--history-mb", type=float, help="the most disk those snapshots may take (default 256)")
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the training step (default: on CUDA only)",
    )


TRAIN_FIELDS = (
    "batch_size",
    "grad_accum",
    "lr",
    "warmup_steps",
    "max_steps",
    "max_time",
    "eval_every",
    "seed",
    "device",
    "threads",
    "compile",
    "history_snapshots",
    "history_mb",
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake in the arguments is one clear line (argparse prints its whole usage block)."""

    def error(self, message):
        print(f"newleaf: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Newleaf: train and play with a small GPT.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a corpus (or resume a run)")
    p.add_argument(
        "--corpus",
        nargs="+",
        help="file(s) (.txt .md .jsonl .csv) or builtin:NAME; "
        "default: Tiny Shakespeare, or the offline dataset without network",
    )
    p.add_argument("--csv-column", help="text column of a .csv corpus")
    p.add_argument(
        "--tokenizer",
        help="auto | char | gpt2 | bpe:VOCAB (e.g. bpe:1024); default auto: the scaled recipe's pick (else char)",
    )
    p.add_argument("--out", required=True, help="run directory to create (or to continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_args(p)
    _add_train_args(p)

    p = sub.add_parser(
        "finetune",
        help="fine-tune a run or a GPT-2 model on text or conversations",
        description="Fine-tune a base model on plain text or on conversations (the loss counts only "
        "the assistant's tokens), with full fine-tuning or LoRA. The base and the result "
        "are measured on held-out data before and after.",
    )
    p.add_argument(
        "--from",
        dest="base",
        help="base model: a run directory, hf:NAME (e.g. hf:distilgpt2), a local "
        "Hugging Face GPT-2 folder, or scratch:PRESET (a fresh model; the "
        "default for the built-in demo task)",
    )
    p.add_argument(
        "--data",
        nargs="+",
        help='file(s): .jsonl/.json conversations ({"messages": [...]}, '
        "instruction/output, prompt/completion), .csv, or plain text; or "
        "builtin:arithmetic (the demo task), builtin:shakespeare, ...",
    )
    p.add_argument("--out", required=True, help="run directory to create (or to continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the fine-tuning run in --out")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"), help="which checkpoint of a base run")
    p.add_argument("--method", default="full", choices=("full", "lora"))
    p.add_argument("--freeze-layers", type=int, default=0, help="full: keep the first N blocks as they are")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--lora-dropout", type=float, default=0.0)
    p.add_argument("--lora-layers", help="blocks that get adapters, e.g. 2,3 (default: all)")
    p.add_argument("--prompt-column", help="CSV: the column with the prompts")
    p.add_argument("--response-column", help="CSV: the column with the responses")
    p.add_argument("--csv-column", help="CSV of plain text: the text column")
    p.add_argument(
        "--too-long",
        default="truncate",
        choices=("truncate", "drop"),
        help="examples longer than the context: cut their end, or leave them out",
    )
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--no-eval", action="store_true", help="skip measuring the model before and after")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_train_args(p)

    p = sub.add_parser("chat", help="reply to a message as the assistant; prints only the reply")
    p.add_argument("--run", required=True)
    p.add_argument("--message", required=True, help="the user's message")
    p.add_argument("--system", help="a system message before it")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    _add_sampling_args(p)

    p = sub.add_parser("info", help="describe a run: config, size, progress, best validation loss")
    p.add_argument("--run", required=True)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("datasets", help="list the built-in datasets")

    p = sub.add_parser("sample", help="continue a prompt with a trained model; prints only the continuation")
    p.add_argument("--run", required=True)
    p.add_argument("--prompt", default="\n")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    _add_sampling_args(p)

    p = sub.add_parser("export-hf", help="export a run as a Hugging Face transformers model folder")
    p.add_argument("--run", required=True)
    p.add_argument("--out", required=True, help="folder to create (must not exist, or be empty)")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))

    p = sub.add_parser("import-hf", help="make a run from GPT-2-family weights (a Hub id or a local HF folder)")
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        help="e.g. gpt2, distilgpt2, or a folder with config.json + model.safetensors",
    )
    p.add_argument("--out", required=True, help="run directory to create")

    p = sub.add_parser(
        "push",
        help="publish a run on the Hugging Face Hub as a model transformers loads, with a model card",
        description="Export a run (weights, tokenizer, a model card with metrics, loss curve and samples) and upload "
        "it to the Hugging Face Hub. The token comes from HF_TOKEN or `hf auth login`; it is never written anywhere.",
    )
    p.add_argument("--run", required=True)
    p.add_argument("--repo", required=True, help="repository name: NAME (under your account) or OWNER/NAME")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))

    p = sub.add_parser(
        "space",
        help="make a run into a Hugging Face Space of its own (a folder; --push uploads it)",
        description="Write a ready Gradio Space: the app, the engine and the run as its read-only example, which "
        "visitors generate from, look inside and fine-tune a copy of. ZeroGPU-ready.",
    )
    p.add_argument("--run", required=True)
    p.add_argument("--out", help="folder to create (must not exist, or be empty)")
    p.add_argument("--push", metavar="NAME", help="also upload it as the Space NAME or OWNER/NAME")
    p.add_argument("--private", action="store_true", help="create the Space as private")
    p.add_argument("--checkpoint", default="best", choices=("best", "last"))
    return parser


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--max-new-tokens", type=int, default=200)
    g.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    g.add_argument("--top-k", type=int)
    g.add_argument("--top-p", type=float)
    g.add_argument("--min-p", type=float)
    g.add_argument("--repetition-penalty", type=float, default=1.0)
    g.add_argument("--presence-penalty", type=float, default=0.0)
    g.add_argument("--frequency-penalty", type=float, default=0.0)
    g.add_argument("--seed", type=int)
    g.add_argument("--num-samples", type=int, default=1)
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable); not printed")
    g.add_argument("--device", default="cpu")
    g.add_argument(
        "--int8", action="store_true", help="int8 weights for faster CPU sampling (slightly different output)"
    )


# ----------------------------------------------------------------------------------------------------------


def cmd_train(args) -> int:
    out = Path(args.out)
    info = distributed.setup()  # several processes under torchrun; a no-op otherwise
    try:
        if info.is_main:  # one process prepares the run directory, the others wait for it
            _prepare_train_run(args, out)
        distributed.barrier(info)
        if runs.read_config(out).get("finetune"):  # the app runs every job as `train --resume`: fine-tuning too
            if info.enabled:
                raise NewleafError("Fine-tuning runs train in one process; start them without torchrun.")
            return _fit_finetune(out, args.quiet)
        trainer = Trainer(out)
        with StopOnSignal(trainer), _progress(trainer, args.quiet or not info.is_main) as callback:
            result = trainer.fit(callbacks=[callback], resume=True)
    finally:
        distributed.cleanup()
    if info.is_main:
        print(result.message)
    return 0 if result.state in ("completed", "stopped") else 1


def _prepare_train_run(args, out: Path) -> None:
    """Create the run directory, or update a resumed run's settings."""

    overrides = {k: getattr(args, k) for k in TRAIN_FIELDS if getattr(args, k) is not None}
    if args.resume:
        config = runs.read_config(out)
        # the data, tokenizer and shape are the run's own: say so rather than silently ignore such flags
        ignored = [
            f"--{k.replace('_', '-')}"
            for k in ("corpus", "csv_column", "preset", "n_layer", "n_head", "n_embd", "block_size", "dropout")
            if getattr(args, k, None) is not None
        ]
        ignored += ["--tokenizer"] * (args.tokenizer is not None) + ["--recipe"] * (args.recipe != SCALED)
        if ignored:
            print(
                f"newleaf: note: a resumed run keeps its own data, tokenizer and model shape; ignoring "
                f"{', '.join(ignored)}.",
                file=sys.stderr,
            )
        if overrides:  # e.g. a larger --max-steps to train further; validated before it is saved
            config["train"] = {**config["train"], **overrides}
            TrainConfig.from_dict(config["train"])
            atomic_write_json(out / runs.CONFIG, config)
        return
    if (out / runs.CONFIG).exists():
        raise NewleafError(f"{out} already holds a run: pass --resume to continue it, or choose another --out.")
    if args.corpus:
        corpus = resolve_corpus(args.corpus, csv_column=args.csv_column)
    else:
        corpus, note = default_corpus()
        print(note, file=sys.stderr)
    recipe, tokenizer_spec = _recipe(args, corpus.text)
    # the recipe, then the preset and flags the user gave; checked before the (possibly slow) tokenizer work
    preset = args.preset or recipe["preset"]
    shape = {} if args.preset else dict(recipe.get("overrides", {}))
    shape.update(
        {
            k: v
            for k, v in dict(
                n_layer=args.n_layer,
                n_head=args.n_head,
                n_embd=args.n_embd,
                block_size=args.block_size,
                dropout=args.dropout,
            ).items()
            if v is not None
        }
    )
    preset_config(preset, 1, **shape)
    train = dict(recipe["train"])
    if args.max_steps or args.max_time:  # the user's budget replaces the recipe's
        train.update(max_steps=args.max_steps or NO_STEP_LIMIT, max_time=args.max_time)
    train_cfg = TrainConfig(**{**train, **overrides})
    print(
        f"Corpus: {corpus.name}, {len(corpus.text):,} characters. Building the {tokenizer_spec} tokenizer...",
        file=sys.stderr,
    )
    tokenizer = make_tokenizer(tokenizer_spec, corpus.text)
    model_cfg = preset_config(preset, tokenizer.vocab_size, **shape)
    prepare_run(
        out,
        corpus.text,
        tokenizer,
        model_cfg,
        train_cfg,
        data_name=corpus.name,
        extra={"preset": args.preset or f"recipe:{args.recipe}"},
    )


def _recipe(args, text: str) -> tuple[dict, str]:
    """(recipe, tokenizer spec): a fixed recipe as it is, with characters unless --tokenizer says (the fixed ones
    were tuned on characters; so is a shape picked by hand with --preset), or the scaled one, picked for the time
    budget on this machine, saying what it picked and why."""
    asked = None if (args.tokenizer or AUTO).strip().lower() == AUTO else args.tokenizer
    if args.recipe != SCALED or args.preset:
        return RECIPES[DEFAULT_CPU_RECIPE if args.recipe == SCALED else args.recipe], asked or "char"
    device = pick_device(args.device or "auto")
    budget = args.max_time or DEFAULT_BUDGET_S
    choice = choose(budget, flops_rate(device), char_vocab=len(set(text)), memory_limit=available_memory(device),
                    tokenizer=asked, train_chars=len(split_text(text)[0]))  # fmt: skip
    hint = " (--tokenizer chooses the tokenizer)" if choice.better_tokenizer else ""
    print(f"Recipe: {choice.why()}{hint}", file=sys.stderr)
    shape, train = choice.settings()
    return dict(preset="micro", overrides=shape, train=train), asked or choice.tokenizer


def cmd_finetune(args) -> int:
    out = Path(args.out)
    overrides = {k: getattr(args, k) for k in TRAIN_FIELDS if getattr(args, k) is not None}
    if args.resume:
        config = runs.read_config(out)
        if not config.get("finetune"):
            raise NewleafError(f"{out} is not a fine-tuning run; continue it with `python -m core train --resume`.")
        if overrides:
            config["train"] = {**config["train"], **overrides}
            TrainConfig.from_dict(config["train"])
            atomic_write_json(out / runs.CONFIG, config)
        return _fit_finetune(out, args.quiet, evaluate=False if args.no_eval else None)
    if (out / runs.CONFIG).exists():
        raise NewleafError(f"{out} already holds a run: pass --resume to continue it, or choose another --out.")
    if not args.data:
        raise NewleafError("Choose the data to fine-tune on with --data (a file, or builtin:arithmetic for the demo).")
    demo = len(args.data) == 1 and task_for(args.data[0]) is not None
    if not args.base:
        if not demo:
            raise NewleafError("Choose a base model with --from: a run directory, hf:NAME or a Hugging Face folder.")
        args.base = DEMO_BASE  # the demo works without a model of your own
    try:
        layers = [int(x) for x in args.lora_layers.split(",")] if args.lora_layers else None
    except ValueError:
        raise NewleafError(
            f"--lora-layers takes block numbers separated by commas, like 0,1; got {args.lora_layers!r}."
        ) from None
    ft = finetune.FinetuneConfig(
        method=args.method,
        freeze_layers=args.freeze_layers,
        lora_rank=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_layers=layers,
        too_long=args.too_long,
        val_fraction=args.val_fraction,
        evaluate=not args.no_eval,
    )
    ft.validate()
    train_cfg = finetune.train_config(args.method, demo=demo, **overrides)
    base = finetune.load_base(args.base, which=args.checkpoint)
    print(f"Base: {finetune.describe_base(base.source)}. Preparing the data...", file=sys.stderr)
    finetune.prepare_finetune(
        out,
        base,
        args.data,
        ft=ft,
        train=train_cfg,
        prompt_column=args.prompt_column,
        response_column=args.response_column,
        csv_column=args.csv_column,
    )
    config = runs.read_config(out)
    d, counts = config["data"], config["finetune"]["params"]
    if d["format"] == "sft":
        print(
            f"Data: {d['name']}: {d['train_examples']:,} training and {d['val_examples']:,} validation conversations.",
            file=sys.stderr,
        )
    else:
        print(
            f"Data: {d['name']}: {d['train_tokens']:,} training / {d['val_tokens']:,} validation tokens (plain text).",
            file=sys.stderr,
        )
    for note in d.get("notes", []):
        print(f"Note: {note}", file=sys.stderr)
    print(
        f"Method: {ft.method}; {counts['trainable']:,} of {counts['total']:,} parameters train "
        f"({counts['trainable_fraction']:.2%}).",
        file=sys.stderr,
    )
    return _fit_finetune(out, args.quiet)


def _fit_finetune(out: Path, quiet: bool, evaluate: bool | None = None) -> int:
    trainer = Trainer(out)  # the one Ctrl-C asks to stop (it saves a checkpoint first)
    with StopOnSignal(trainer), _progress(trainer, quiet) as callback:

        def both(event, data):
            callback(event, data)
            if event == "evaluation" and not quiet:
                print(
                    f"Measured the {'base' if data['which'] == 'base' else 'fine-tuned'} model in "
                    f"{data['seconds']:.1f} s.",
                    file=sys.stderr,
                )

        result = finetune.run_finetune(out, callbacks=[both], evaluate=evaluate, trainer=trainer)
    evals = read_eval(out)
    if evals.get("finetuned") and evals["finetuned"].get("step") == result.step:
        print(_eval_table(evals))
    print(result.message)
    return 0 if result.state in ("completed", "stopped") else 1


def _eval_table(evals: dict) -> str:
    before, after = evals.get("base") or {}, evals.get("finetuned") or {}
    rows = [
        ("validation loss", "val_loss", "{:.4f}"),
        ("perplexity", "perplexity", "{:.2f}"),
        ("exact match", "exact_match", "{:.1%}"),
        ("BLEU", "bleu", "{:.1f}"),
        ("ROUGE-L", "rouge_l", "{:.3f}"),
        ("distinct-1", "distinct_1", "{:.3f}"),
        ("distinct-2", "distinct_2", "{:.3f}"),
    ]
    lines = [f"{'':18s}{'base':>12s}{'fine-tuned':>12s}"]
    for label, key, fmt in rows:
        if key in after:
            b = fmt.format(before[key]) if key in before else "-"
            lines.append(f"{label:18s}{b:>12s}{fmt.format(after[key]):>12s}")
    return "\n".join(lines)


class _progress:
    """A tqdm bar on stderr driven by the trainer's callbacks."""

    def __init__(self, trainer, quiet: bool):
        self.trainer, self.quiet, self.bar = trainer, quiet, None

    def __enter__(self):
        return self.callback

    def callback(self, event: str, data: dict) -> None:
        if self.quiet:
            return
        if event == "start":
            budget = f" (time budget {data['max_time']:.0f} s)" if data.get("max_time") else ""
            total = data["max_steps"] if data["max_steps"] < NO_STEP_LIMIT else None  # a time budget only
            self.bar = tqdm(
                total=total,
                initial=data["step"],
                unit="step",
                file=sys.stderr,
                dynamic_ncols=True,
                desc=f"training{budget}",
            )
            self.bar.write(f"{data['params']:,} parameters on {data['device']}", file=sys.stderr)
        elif event in ("step", "eval") and self.bar is not None:
            self.bar.update(data["step"] - self.bar.n)
            post = {"loss": f"{data['train_loss']:.3f}", "tok/s": f"{data['tokens_per_sec']:.0f}"}
            if "val_loss" in data:
                post["val"] = f"{data['val_loss']:.3f}"
            self.bar.set_postfix(post)
        elif event == "sample" and self.bar is not None:
            self.bar.write(f"--- sample at step {data['step']} ---\n{data['text'][:300]}", file=sys.stderr)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def cmd_info(args) -> int:
    config = runs.read_config(args.run)
    model_cfg = GPTConfig.from_dict(config["model"])
    last = runs.checkpoint_meta(args.run, "last")
    best = runs.checkpoint_meta(args.run, "best")
    status = runs.live_status(args.run)  # "running" only while its process is
    info = {
        "run": str(args.run),
        "state": status.get("state"),
        "message": status.get("message"),
        "model": config["model"],
        "parameters": param_count(model_cfg),
        "tokenizer": config.get("tokenizer"),
        "data": config.get("data"),
        "train": config.get("train"),
        "steps_done": last["step"] if last else 0,
        "best_val_loss": best.get("val_loss") if best else None,
    }
    if config.get("finetune"):
        info.update(finetune=config["finetune"], eval=read_eval(args.run))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = config["model"]
    print(f"run:        {info['run']} ({info['state']}: {info['message']})")
    print(
        f"model:      {m['n_layer']} layers, {m['n_head']} heads, width {m['n_embd']}, context {m['block_size']}, "
        f"{format_count(info['parameters'])} parameters"
    )
    print(f"tokenizer:  {config['tokenizer']['description']}")
    d = config["data"]
    if d.get("format") == "sft":
        print(
            f"data:       {d['name']}: {d['train_examples']:,} training / {d['val_examples']:,} validation "
            f"conversations"
        )
    else:
        print(f"data:       {d['name']}: {d['train_tokens']:,} training / {d['val_tokens']:,} validation tokens")
    t = config["train"]
    budget = []
    if t["max_steps"] < NO_STEP_LIMIT:
        budget.append(f"{t['max_steps']:,} steps")
    if t.get("max_time"):
        budget.append(f"{t['max_time']:g} s")
    print(f"steps done: {info['steps_done']:,}" + (f" (budget: {' or '.join(budget)})" if budget else ""))
    bv = info["best_val_loss"]
    print(f"best val:   {bv:.4f}" if bv is not None else "best val:   (not evaluated yet)")
    ft = config.get("finetune")
    if ft:
        p = ft["params"]
        print(
            f"fine-tune:  {ft['method']} from {finetune.describe_base(ft['base'])}; {p['trainable']:,} of "
            f"{p['total']:,} parameters train"
        )
        line = finetune.summarize(read_eval(args.run), config["data"].get("val_is_train", False))
        if line:
            print(f"evaluation: {line}")
    return 0


def cmd_datasets(args) -> int:
    for ds in BUILTIN_DATASETS.values():
        print(f"builtin:{ds.name:16s} {ds.description}")
    for task in TASKS.values():
        print(f"builtin:{task.name:16s} fine-tuning demo: {task.describe()}")
    return 0


def _sampling_model_and_params(args, **extra):
    """The run's model (int8 when asked) and the sampling settings of the command's flags."""
    model, tokenizer = runs.load_model(args.run, which=args.checkpoint, device=args.device)
    if args.int8:
        model = quantize_int8(model)
    knobs = (
        "max_new_tokens",
        "temperature",
        "top_k",
        "top_p",
        "min_p",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "stop",
    )
    return model, tokenizer, SamplingParams(**{k: getattr(args, k) for k in knobs}, **extra)


def cmd_sample(args) -> int:
    model, tokenizer, params = _sampling_model_and_params(args, num_samples=args.num_samples)
    texts = [""] * params.num_samples
    for ev in stream(model, tokenizer, args.prompt, params):
        if params.num_samples == 1:
            sys.stdout.write(ev.text)
            sys.stdout.flush()
        else:
            texts[ev.row] += ev.text
    if params.num_samples > 1:
        sys.stdout.write("\n\n".join(texts))
    if sys.stdout.isatty():  # piped output is exactly the continuation
        sys.stdout.write("\n")
    return 0


def cmd_chat(args) -> int:
    config = runs.read_config(args.run)
    model, tokenizer, params = _sampling_model_and_params(args)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": args.message}
    ]
    for piece in stream_reply(model, tokenizer, config, messages, params):
        sys.stdout.write(piece)
        sys.stdout.flush()
    if sys.stdout.isatty():
        sys.stdout.write("\n")
    return 0


def cmd_export_hf(args) -> int:
    out = export_hf(args.run, args.out, which=args.checkpoint)
    print(
        f"Exported to {out}. Load it with transformers: AutoModelForCausalLM.from_pretrained({str(out)!r}) "
        f"and AutoTokenizer.from_pretrained({str(out)!r})."
    )
    return 0


def cmd_import_hf(args) -> int:
    out = import_hf_as_run(args.source, args.out)
    print(f'Imported {args.source} into {out}. Try: python -m core sample --run {out} --prompt "Hello"')
    return 0


def cmd_push(args) -> int:
    url = push_run(args.run, args.repo, private=args.private, which=args.checkpoint)
    print(f"Published {runs.title(args.run)} at {url}")
    return 0


def cmd_space(args) -> int:
    if not args.out and not args.push:
        raise NewleafError("Say where the Space goes: --out DIR for a folder, --push NAME to upload it, or both.")
    if args.push:  # the name and the token are checked before the folder is built
        url = push_space(args.run, args.push, private=args.private, which=args.checkpoint, out_dir=args.out)
        print(f"Published the Space at {url}" + (f" (its folder: {args.out})" if args.out else ""))
        return 0
    out = build_space(args.run, args.out, which=args.checkpoint)
    print(f"Wrote the Space to {out}. Try it: cd {out} && python app.py")
    return 0


COMMANDS = {
    "train": cmd_train,
    "finetune": cmd_finetune,
    "info": cmd_info,
    "datasets": cmd_datasets,
    "sample": cmd_sample,
    "chat": cmd_chat,
    "export-hf": cmd_export_hf,
    "import-hf": cmd_import_hf,
    "push": cmd_push,
    "space": cmd_space,
}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except NewleafError as e:
        print(f"newleaf: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system refused: a name too long, no permission, a full disk...
        name = str(e.filename or "")
        name = f" ({name[:60]}…)" if len(name) > 60 else f" ({name})" if name else ""
        print(f"newleaf: error: {e.strerror or e}{name}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("newleaf: interrupted", file=sys.stderr)
        return 130
