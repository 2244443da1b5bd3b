"""Command line: `python -m core train|info|sample|export-hf|import-hf ...`.

A user's mistake (missing file, bad corpus, impossible shape, unknown preset) exits with status 2 and one
clear line on stderr, never a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.errors import NewleafError

DEFAULT_PRESET = "micro"


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from core.model import PRESETS
    g = p.add_argument_group("model")
    g.add_argument("--preset", default=DEFAULT_PRESET, help=f"model shape: {', '.join(PRESETS)} (default {DEFAULT_PRESET})")
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


TRAIN_FIELDS = ("batch_size", "grad_accum", "lr", "warmup_steps", "max_steps", "max_time", "eval_every", "seed",
                "device", "threads")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="Newleaf: train and play with a small GPT.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a corpus (or resume a run)")
    p.add_argument("--corpus", nargs="+", help="file(s) (.txt .md .jsonl .csv) or builtin:NAME; "
                                               "default: Tiny Shakespeare, or the offline dataset without network")
    p.add_argument("--csv-column", help="text column of a .csv corpus")
    p.add_argument("--tokenizer", default="char", help="char | gpt2 | bpe:VOCAB (e.g. bpe:1024)")
    p.add_argument("--out", required=True, help="run directory to create (or to continue with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_args(p)
    _add_train_args(p)

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
    p.add_argument("--from", dest="source", required=True, help="e.g. gpt2, distilgpt2, or a folder with "
                                                                "config.json + model.safetensors")
    p.add_argument("--out", required=True, help="run directory to create")
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


# ----------------------------------------------------------------------------------------------------------


def cmd_train(args) -> int:
    from core import runs
    from core.datasets import default_corpus, resolve_corpus
    from core.model import preset_config
    from core.tokenizer import make_tokenizer
    from core.train import StopOnSignal, Trainer, TrainConfig, prepare_run

    out = Path(args.out)
    overrides = {k: getattr(args, k) for k in TRAIN_FIELDS if getattr(args, k) is not None}
    if args.resume:
        config = runs.read_config(out)
        if overrides:  # e.g. a larger --max-steps to train further; validated before it is saved
            config["train"] = {**config["train"], **overrides}
            TrainConfig.from_dict(config["train"])
            runs.atomic_write_json(out / runs.CONFIG, config)
    else:
        if (out / runs.CONFIG).exists():
            raise NewleafError(f"{out} already holds a run: pass --resume to continue it, or choose another --out.")
        # check the settings before the (possibly slow) corpus and tokenizer work
        shape = dict(n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, block_size=args.block_size,
                     dropout=args.dropout)
        preset_config(args.preset, 1, **shape)
        train_cfg = TrainConfig(**overrides)
        if args.corpus:
            corpus = resolve_corpus(args.corpus, csv_column=args.csv_column)
        else:
            corpus, note = default_corpus()
            print(note, file=sys.stderr)
        print(f"Corpus: {corpus.name}, {len(corpus.text):,} characters. Building the {args.tokenizer} tokenizer...",
              file=sys.stderr)
        tokenizer = make_tokenizer(args.tokenizer, corpus.text)
        model_cfg = preset_config(args.preset, tokenizer.vocab_size, **shape)
        prepare_run(out, corpus.text, tokenizer, model_cfg, train_cfg, data_name=corpus.name,
                    extra={"preset": args.preset})

    trainer = Trainer(out)
    with StopOnSignal(trainer), _progress(trainer, args.quiet) as callback:
        result = trainer.fit(callbacks=[callback], resume=True)
    print(result.message)
    return 0 if result.state in ("completed", "stopped") else 1


class _progress:
    """A tqdm bar on stderr driven by the trainer's callbacks."""

    def __init__(self, trainer, quiet: bool):
        self.trainer, self.quiet, self.bar = trainer, quiet, None

    def __enter__(self):
        return self.callback

    def callback(self, event: str, data: dict) -> None:
        if self.quiet:
            return
        from tqdm import tqdm
        if event == "start":
            self.bar = tqdm(total=data["max_steps"], initial=data["step"], unit="step", file=sys.stderr,
                            dynamic_ncols=True)
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
    from core import runs
    from core.model import GPTConfig, format_count, param_count

    config = runs.read_config(args.run)
    model_cfg = GPTConfig.from_dict(config["model"])
    last = runs.checkpoint_meta(args.run, "last")
    best = runs.checkpoint_meta(args.run, "best")
    status = runs.read_status(args.run)
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
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    m = config["model"]
    print(f"run:        {info['run']} ({info['state']}: {info['message']})")
    print(f"model:      {m['n_layer']} layers, {m['n_head']} heads, width {m['n_embd']}, context {m['block_size']}, "
          f"{format_count(info['parameters'])} parameters")
    print(f"tokenizer:  {config['tokenizer']['description']}")
    d = config["data"]
    print(f"data:       {d['name']}: {d['train_tokens']:,} training / {d['val_tokens']:,} validation tokens")
    print(f"steps done: {info['steps_done']} of {config['train']['max_steps']}")
    bv = info["best_val_loss"]
    print(f"best val:   {bv:.4f}" if bv is not None else "best val:   (not evaluated yet)")
    return 0


def cmd_datasets(args) -> int:
    from core.datasets import BUILTIN_DATASETS
    for ds in BUILTIN_DATASETS.values():
        print(f"builtin:{ds.name:16s} {ds.description}")
    return 0


def cmd_sample(args) -> int:
    from core.engine import SamplingParams, stream
    from core.runs import load_model

    model, tokenizer = load_model(args.run, which=args.checkpoint, device=args.device)
    params = SamplingParams(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        min_p=args.min_p, repetition_penalty=args.repetition_penalty, presence_penalty=args.presence_penalty,
        frequency_penalty=args.frequency_penalty, seed=args.seed, stop=args.stop, num_samples=args.num_samples)
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


def cmd_export_hf(args) -> int:
    from core.hf import export_hf

    out = export_hf(args.run, args.out, which=args.checkpoint)
    print(f"Exported to {out}. Load it with transformers: AutoModelForCausalLM.from_pretrained({str(out)!r}) "
          f"and AutoTokenizer.from_pretrained({str(out)!r}).")
    return 0


def cmd_import_hf(args) -> int:
    from core.hf import import_hf_as_run

    out = import_hf_as_run(args.source, args.out)
    print(f"Imported {args.source} into {out}. Try: python -m core sample --run {out} --prompt \"Hello\"")
    return 0


COMMANDS = {"train": cmd_train, "info": cmd_info, "datasets": cmd_datasets, "sample": cmd_sample,
            "export-hf": cmd_export_hf, "import-hf": cmd_import_hf}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except NewleafError as e:
        print(f"newleaf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("newleaf: interrupted", file=sys.stderr)
        return 130
