"""The trainer: AdamW, warmup + cosine decay, gradient clipping and accumulation, periodic evaluation,
samples and checkpoints, exact resume, and stop.

A job is a run directory (see core/runs.py). `prepare_run` writes the config, tokenizer and token files;
`Trainer(run_dir).fit()` trains it, from scratch or from its last checkpoint. Progress reaches callers
through callbacks (the CLI draws a progress bar with them) and through the run directory's files (the app
follows those, from another process).

A fine-tuning run (prepared by core/finetune.py) trains in this same loop: it starts from its base weights,
may train only some parameters (frozen layers, LoRA), and its data may be conversations whose loss counts only
the assistant's tokens (core/sft_data.py).
"""
from __future__ import annotations

import math
import signal
from contextlib import nullcontext
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch

from core import distributed, runs
from core.data import check_token_counts, get_batch, open_tokens, split_text, write_tokens
from core.device import autocast, available_memory, pick_device
from core.engine import SamplingParams, generate
from core.errors import CheckpointError, ConfigError, NewleafError
from core.model import GPT, GPTConfig, format_bytes, training_memory
from core.optim import OPTIMIZERS, make_optimizer
from core.tokenizer import Tokenizer, load_tokenizer

# ----------------------------------------------------------------------------------------------------------
# Settings


@dataclass
class TrainConfig:
    batch_size: int = 16
    grad_accum: int = 1              # micro-batches per optimizer step
    lr: float = 1e-3
    optimizer: str = "adamw"         # "adamw", or "muon" for the hidden weight matrices (core/optim.py)
    schedule: str = "cosine"         # "cosine", or "wsd": warmup, stable, then a linear decay
    cooldown_frac: float = 0.4       # wsd: the final fraction of the budget spent decaying
    min_lr_ratio: float = 0.1        # the schedule decays to lr * min_lr_ratio
    warmup_steps: int = 100
    max_steps: int = 2000
    max_time: float | None = None    # seconds; when set, the learning rate decays to this budget
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0           # 0 turns clipping off
    eval_every: int = 200
    eval_batches: int = 20           # validation windows evaluated = eval_batches * batch_size
    sample_every: int = 0            # 0: sample at each evaluation
    sample_tokens: int = 200
    checkpoint_every: int = 0        # 0: checkpoint at each evaluation
    log_every: int = 10
    seed: int = 1337
    device: str = "auto"
    threads: int = 0                 # CPU threads for torch; 0 keeps torch's default
    compile: bool | None = None      # torch.compile the training forward; None: on CUDA only (no gain measured on CPU)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        positive = ("batch_size", "grad_accum", "max_steps", "eval_every", "eval_batches", "log_every")
        for name in positive:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive whole number; got {v!r}.")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"The learning rate must be a positive number; got {self.lr!r}.")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps must be 0 or more; got {self.warmup_steps}.")
        if self.max_time is not None and not self.max_time > 0:
            raise ConfigError(f"max_time must be a positive number of seconds; got {self.max_time!r}.")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"min_lr_ratio must be in [0, 1]; got {self.min_lr_ratio}.")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}.")
        if self.schedule not in ("cosine", "wsd"):
            raise ConfigError(f"schedule must be 'cosine' or 'wsd'; got {self.schedule!r}.")
        if self.compile not in (None, True, False):
            raise ConfigError(f"compile must be true, false or null (automatic); got {self.compile!r}.")
        if not 0 < self.cooldown_frac <= 1:
            raise ConfigError(f"cooldown_frac must be in (0, 1]; got {self.cooldown_frac}.")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warmup over the first warmup_steps, then a decay from lr to lr * min_lr_ratio driven by
    `progress`, the fraction of the step or time budget used: cosine from the end of warmup to 1, or
    (wsd) constant until the last cooldown_frac of the budget and linear from there."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    lo = cfg.min_lr_ratio
    if cfg.schedule == "wsd":
        t = min(1.0, max(0.0, (progress - (1 - cfg.cooldown_frac)) / cfg.cooldown_frac))
        return cfg.lr * (1 - (1 - lo) * t)
    warm = cfg.warmup_steps / cfg.max_steps if cfg.max_time is None else 0.0
    t = min(1.0, max(0.0, (progress - warm) / max(1e-9, 1.0 - warm)))
    return cfg.lr * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t)))


# ----------------------------------------------------------------------------------------------------------
# Preparing a run directory


def prepare_run(run_dir, text: str, tokenizer: Tokenizer, model_cfg: GPTConfig, train_cfg: TrainConfig,
                data_name: str = "corpus", val_fraction: float = 0.1, extra: dict | None = None) -> Path:
    """Create a run directory: split and tokenize the corpus, check it is long enough for the context,
    check the model fits in memory, and write config.json, the tokenizer and the token files."""
    run_dir = Path(run_dir)
    if (run_dir / runs.CONFIG).exists():
        raise ConfigError(f"{run_dir} already holds a run; resume it or choose another output directory.")
    if model_cfg.vocab_size != tokenizer.vocab_size:
        raise ConfigError(f"The model's vocab_size ({model_cfg.vocab_size}) differs from the tokenizer's "
                          f"({tokenizer.vocab_size}).")
    # the device must exist before anything is written, and the memory check is for that device
    check_memory(model_cfg, train_cfg, pick_device(train_cfg.device))
    train_text, val_text = split_text(text, val_fraction)
    train_ids, val_ids = tokenizer.encode(train_text), tokenizer.encode(val_text)
    check_token_counts(len(train_ids), len(val_ids), model_cfg.block_size)
    try:
        (run_dir / "data").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NewleafError(f"Cannot create the run directory {run_dir}: {e.strerror}.") from None
    write_tokens(run_dir / "data" / "train.bin", train_ids, tokenizer.vocab_size)
    write_tokens(run_dir / "data" / "val.bin", val_ids, tokenizer.vocab_size)
    tokenizer.save(run_dir)
    config = {
        "model": model_cfg.to_dict(),
        "train": asdict(train_cfg),
        "tokenizer": {"kind": tokenizer.kind, "vocab_size": tokenizer.vocab_size,
                      "description": tokenizer.describe()},
        "data": {
            "name": data_name, "val_fraction": val_fraction,
            "train_tokens": len(train_ids), "val_tokens": len(val_ids),
            "train_chars": len(train_text), "val_chars": len(val_text),
            "val_bytes": len(val_text.encode("utf-8")),
        },
        "created": time.time(),
        **(extra or {}),
    }
    runs.atomic_write_json(run_dir / runs.CONFIG, config)
    runs.write_status(run_dir, "created", "Ready to train.", step=0)
    return run_dir


def check_memory(model_cfg: GPTConfig, train_cfg: TrainConfig, device: torch.device | None = None) -> None:
    need = training_memory(model_cfg, train_cfg.batch_size)["total"]
    have = available_memory(device)
    if have is not None and need > 0.9 * have:
        raise ConfigError(f"This model needs about {format_bytes(need)} to train at batch size "
                          f"{train_cfg.batch_size}, but only {format_bytes(have)} of memory is free. "
                          f"Choose a smaller model, context or batch size.")


# ----------------------------------------------------------------------------------------------------------
# Training


Callback = Callable[[str, dict], None]  # (event, data); events: start, step, eval, sample, checkpoint, end


@dataclass
class FitResult:
    state: str          # completed | stopped | failed
    message: str
    step: int
    best_val_loss: float | None


class Trainer:
    def __init__(self, run_dir, device: str | None = None):
        self.run_dir = Path(run_dir)
        config = runs.read_config(self.run_dir)
        try:
            self.model_cfg = GPTConfig.from_dict(config["model"])
            self.cfg = TrainConfig.from_dict(config["train"])
            self.data_info = config["data"]
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"{self.run_dir / runs.CONFIG} is incomplete or malformed ({e}).") from None
        self.config = config
        self.finetune = config.get("finetune") or None  # what to start from and which parameters train
        self.tokenizer = load_tokenizer(self.run_dir)
        self.dist = distributed.current()  # several processes under torchrun, or one
        self.device = pick_device(device or self.cfg.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.stop_event = threading.Event()
        vocab = self.model_cfg.vocab_size
        self.sft = self.data_info.get("format") == "sft"  # conversations (ids + loss mask), not a token stream
        if self.sft:
            from core.sft_data import Examples
            self.train_examples = Examples(self.run_dir / "data", "train", vocab)
            self.val_examples = Examples(self.run_dir / "data", "val", vocab)
            self.train_data = self.val_data = None
        else:
            self.train_data = open_tokens(self.run_dir / "data" / "train.bin", vocab)
            self.val_data = open_tokens(self.run_dir / "data" / "val.bin", vocab)

    # -- pieces ------------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the loop to end after the current step (with a checkpoint). Safe from any thread."""
        self.stop_event.set()

    def _stop_requested(self) -> bool:
        return self.stop_event.is_set() or (self.run_dir / runs.STOP_FILE).exists()

    def _build(self):
        torch.manual_seed(self.cfg.seed)
        if self.finetune:
            from core import finetune
            model = finetune.build_model(self.run_dir, self.model_cfg, self.finetune).to(self.device)
            groups = finetune.optimizer_groups(model, self.cfg.weight_decay)
        else:
            model = GPT(self.model_cfg).to(self.device)
            groups = model.optimizer_groups(self.cfg.weight_decay, split_hidden=self.cfg.optimizer == "muon")
        optimizer = make_optimizer(groups, self.cfg.optimizer, self.cfg.lr, (self.cfg.beta1, self.cfg.beta2),
                                   self.device)
        batch_gen = torch.Generator().manual_seed(self.cfg.seed)
        return model, optimizer, batch_gen

    @torch.no_grad()
    def evaluate(self, model) -> float:
        """Mean loss over fixed, evenly spaced validation windows: the same windows every time, so the
        numbers compare across steps and runs, and evaluation leaves the training RNG untouched. Conversations:
        the mean loss per assistant token of the first validation examples."""
        if self.sft:
            from core.evaluate import sft_loss
            with autocast(self.device):
                return sft_loss(model, self.val_examples, self.cfg.batch_size,
                                self.cfg.eval_batches * self.cfg.batch_size, self.device)
        model.eval()
        T = self.model_cfg.block_size
        n = self.cfg.eval_batches * self.cfg.batch_size
        last_start = len(self.val_data) - T - 1
        starts = torch.linspace(0, last_start, steps=min(n, last_start + 1)).long()
        total, count = 0.0, 0
        for chunk in starts.split(self.cfg.batch_size):
            x = torch.stack([torch.from_numpy(self.val_data[s:s + T].astype("int64")) for s in chunk.tolist()])
            y = torch.stack([torch.from_numpy(self.val_data[s + 1:s + 1 + T].astype("int64")) for s in chunk.tolist()])
            with autocast(self.device):
                _, loss = model(x.to(self.device), y.to(self.device))
            total += loss.item() * len(chunk)
            count += len(chunk)
        model.train()
        return total / count

    def bits_per_char(self, loss: float) -> float:
        """Nats per token -> bits per character of the validation text: comparable across tokenizers."""
        d = self.data_info
        return loss / math.log(2) * d["val_tokens"] / max(1, d["val_chars"])

    def sample(self, model, step: int) -> str:
        """A short sample for the log; its own seeded generator leaves the training RNG untouched."""
        params = SamplingParams(max_new_tokens=self.cfg.sample_tokens, temperature=0.8, top_k=50,
                                seed=self.cfg.seed + step)
        if self.sft:  # the greedy reply to the first validation prompt, markers shown
            from core.chat import template_for
            ids, mask = self.val_examples.example(0)
            prompt = ids[:int(mask.argmax())].tolist()
            params.temperature = 0.0
            params.stop_token_ids = template_for(self.config).stop_ids(self.tokenizer)
            return self.tokenizer.decode(prompt) + generate(model, self.tokenizer, prompt, params)[0].text
        try:
            prompt = "\n" if self.tokenizer.encode("\n") else ""
        except NewleafError:  # a character-level vocabulary without newlines
            prompt = ""
        prompt = prompt or self.tokenizer.decode(self.val_data[:1].tolist())
        return prompt + generate(model, self.tokenizer, prompt, params)[0].text

    def _trainer_tensors(self, optimizer, batch_gen, model=None) -> tuple[dict, dict]:
        tensors, skeleton = runs.state_to_tensors(optimizer.state_dict(), "optim")
        if self.finetune and model is not None:
            from core import finetune
            tensors.update(finetune.extra_trainer_tensors(model))  # LoRA adapters
        tensors["rng.cpu"] = torch.get_rng_state()
        tensors["rng.batches"] = batch_gen.get_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return tensors, skeleton

    def _restore(self, model, optimizer, batch_gen) -> dict | None:
        """Load the last checkpoint into model/optimizer/RNGs; returns its meta, or None to start fresh."""
        ck = runs.checkpoint_dir(self.run_dir, "last")
        if ck is None:
            return None
        meta = runs.read_json(ck / "meta.json")
        weights = runs.load_tensors(ck / "model.safetensors")
        t = runs.load_tensors(ck / "trainer.safetensors")
        if self.finetune:
            from core import finetune
            finetune.restore_weights(model, weights, t, str(ck))
        else:
            runs.load_model_weights(model, weights, str(ck / "model.safetensors"))
        try:
            optimizer.load_state_dict(runs.tensors_to_state(meta["optimizer"], t))
            torch.set_rng_state(t["rng.cpu"])
            batch_gen.set_state(t["rng.batches"])
            if self.device.type == "cuda" and "rng.cuda" in t:
                torch.cuda.set_rng_state(t["rng.cuda"], self.device)
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"{ck} holds an incomplete trainer state ({e}).") from None
        return meta

    # -- the loop ----------------------------------------------------------------------------------------

    def fit(self, callbacks: list[Callback] = (), resume: bool = True) -> FitResult:
        cfg, run_dir = self.cfg, self.run_dir
        if cfg.threads:
            torch.set_num_threads(cfg.threads)

        main = self.dist.is_main  # only process 0 writes the run directory and reports progress

        def emit(event, data):
            for cb in callbacks if main else ():
                cb(event, data)

        model, optimizer, batch_gen = self._build()
        meta = self._restore(model, optimizer, batch_gen) if resume else None
        micro = distributed.local_micro_batches(cfg.grad_accum, self.dist)  # this process's micro-batches
        net = model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel
            net = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile or (cfg.compile is None and self.device.type == "cuda"):
            # the forward/backward only: evaluation, sampling and checkpoints use the plain module
            net = torch.compile(net)
        step = meta["step"] if meta else 0
        elapsed_before = meta.get("elapsed_s", 0.0) if meta else 0.0
        best = runs.checkpoint_meta(run_dir, "best") if meta else None
        best_val = best.get("val_loss") if best else None
        # what was logged after the checkpoint will be logged again, identically
        for name in (runs.METRICS, runs.SAMPLES) if main else ():
            if meta:
                runs.truncate_jsonl(run_dir / name, step)
            else:
                (run_dir / name).unlink(missing_ok=True)

        tokens_per_step = cfg.batch_size * cfg.grad_accum * self.model_cfg.block_size
        if self.sft:  # examples are padded only to the longest in their batch: count their mean length
            d = self.data_info
            tokens_per_step = cfg.batch_size * cfg.grad_accum * d["train_tokens"] / max(1, d["train_examples"])
        doing = "Fine-tuning" if self.finetune else "Training"
        where = self.device.type + (f" x {self.dist.world} processes" if self.dist.enabled else "")

        def status(state, message):
            if main:
                runs.write_status(run_dir, state, message, step=step, max_steps=cfg.max_steps, max_time=cfg.max_time)

        status("running", f"{doing} on {where}.")
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if self.finetune:
            from core.finetune import trainable_count
            trainable = trainable_count(model)
        emit("start", {"step": step, "max_steps": cfg.max_steps, "max_time": cfg.max_time,
                       "params": model.num_params(), "trainable_params": trainable, "device": str(self.device)})
        t_start = time.time() - elapsed_before
        # the running average of train_loss between log lines is part of the state, for an exact resume
        loss_sum, steps_since_log = meta.get("log_window", (0.0, 0)) if meta else (0.0, 0)
        t_log = time.time()
        state, message = "completed", "Finished."
        model.train()

        def progress(elapsed):
            p = step / cfg.max_steps
            return max(p, elapsed / cfg.max_time) if cfg.max_time else p

        def checkpoint(record):
            nonlocal best_val
            if not main:
                return
            is_best = record.get("val_loss") is not None and (best_val is None or record["val_loss"] < best_val)
            if is_best:
                best_val = record["val_loss"]
            tensors, skeleton = self._trainer_tensors(optimizer, batch_gen, model)
            ck_meta = {"step": step, "elapsed_s": record["elapsed_s"], "optimizer": skeleton,
                       "log_window": [loss_sum, steps_since_log],
                       **{k: record[k] for k in ("train_loss", "val_loss") if record.get(k) is not None}}
            weights = model
            if self.finetune:  # plain GPT weights, LoRA merged in: every checkpoint loads as an ordinary model
                from core.finetune import checkpoint_tensors
                weights = checkpoint_tensors(model)
            try:
                runs.save_checkpoint(run_dir, weights, tensors, ck_meta, best=is_best)
            except CheckpointError as e:  # e.g. a full disk: the run says why it ended; the last checkpoint stays
                try:
                    runs.write_status(run_dir, "failed", str(e), step=step, max_steps=cfg.max_steps)
                except NewleafError:
                    pass
                raise
            emit("checkpoint", {"step": step, "best": is_best})

        diverged = None  # set by the main process when the validation loss goes bad; all processes stop on it
        while True:
            elapsed = time.time() - t_start
            # every process takes the same branch: divergence, the budget and a stop request are agreed on
            bad, done, stop = distributed.each_any_across(
                [diverged is not None, step >= cfg.max_steps or bool(cfg.max_time and elapsed >= cfg.max_time),
                 self._stop_requested()], self.dist, self.device)
            if bad:
                state, message = "failed", diverged or "Training stopped: the main process found the weights diverged."
                break
            if done:
                break
            if stop:
                state, message = "stopped", f"Stopped at step {step}."
                break
            lr = lr_at(cfg, step, progress(elapsed))
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_loss = 0.0
            for i in range(cfg.grad_accum):
                # every process draws every micro-batch (same generator, same windows) and keeps its share
                if self.sft:
                    x, y = self.train_examples.random_batch(cfg.batch_size, batch_gen, self.device)
                else:
                    x, y = get_batch(self.train_data, cfg.batch_size, self.model_cfg.block_size, batch_gen,
                                     self.device)
                if i not in micro:
                    continue
                # DDP averages gradients over processes once, at the last local micro-batch
                sync = nullcontext() if not self.dist.enabled or i == micro[-1] else net.no_sync()
                with sync, autocast(self.device):
                    _, loss = net(x, y)
                    (loss / len(micro)).backward()
                step_loss += loss.item() / cfg.grad_accum
            step_loss = distributed.sum_across(step_loss, self.dist, self.device)
            # the norm is measured (and clipped) either way: a finite loss can still have non-finite gradients
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf).item()
            if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
                state = "failed"
                what = f"the loss became {step_loss}" if not math.isfinite(step_loss) else \
                    f"the gradients became {grad_norm}"
                message = _diverged_message(run_dir, step + 1, what)
                break
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_sum += step_loss
            steps_since_log += 1

            final = step >= cfg.max_steps or (cfg.max_time and time.time() - t_start >= cfg.max_time)
            do_eval = step % cfg.eval_every == 0 or final
            if main and (step % cfg.log_every == 0 or do_eval):
                now = time.time()
                record = {"step": step, "train_loss": loss_sum / steps_since_log, "lr": lr,
                          "tokens_per_sec": tokens_per_step * steps_since_log / max(1e-9, now - t_log),
                          "elapsed_s": now - t_start, "tokens_seen": step * tokens_per_step}
                if do_eval:
                    val = self.evaluate(model)
                    if not math.isfinite(val):  # the weights went bad: no checkpoint of them, stop at the loop's top
                        diverged = _diverged_message(run_dir, step, f"the validation loss became {val}")
                        continue
                    record.update(val_loss=val, val_bpc=self.bits_per_char(val))
                    if self.finetune:
                        record["val_ppl"] = math.exp(min(val, 50.0))
                runs.append_jsonl(run_dir / runs.METRICS, record)
                emit("eval" if do_eval else "step", record)
                sample_every = cfg.sample_every or cfg.eval_every
                if step % sample_every == 0 or final:
                    text = self.sample(model, step)
                    runs.append_jsonl(run_dir / runs.SAMPLES, {"step": step, "text": text})
                    emit("sample", {"step": step, "text": text})
                t_log, steps_since_log, loss_sum = time.time(), 0, 0.0
                if step % (cfg.checkpoint_every or cfg.eval_every) == 0 or final:
                    checkpoint(record)
                status("running", f"{doing} on {where}.")

        if state != "failed" and _needs_final_checkpoint(run_dir, step):
            checkpoint({"step": step, "elapsed_s": time.time() - t_start})
        if state == "completed":
            message = f"Finished {step} steps." + (f" Best validation loss {best_val:.4f}." if best_val else "")
        status(state, message)
        # a stop request is used up once honoured; one that arrived while the run started is honoured too
        if main:
            (run_dir / runs.STOP_FILE).unlink(missing_ok=True)
        emit("end", {"state": state, "message": message, "step": step, "best_val_loss": best_val})
        return FitResult(state, message, step, best_val)


def _diverged_message(run_dir, step: int, what: str) -> str:
    last = runs.checkpoint_meta(run_dir, "last")
    kept = f"the last good checkpoint (step {last['step']}) is kept" if last else "no checkpoint was saved yet"
    return f"Training stopped at step {step}: {what}. {kept}; try a lower learning rate."


def _needs_final_checkpoint(run_dir, step: int) -> bool:
    last = runs.checkpoint_meta(run_dir, "last")
    return step > 0 and (last is None or last["step"] != step)


class StopOnSignal:
    """Turn SIGTERM / SIGINT into a graceful stop (checkpoint, then exit) while training runs."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, lambda *_: self.trainer.request_stop())
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
