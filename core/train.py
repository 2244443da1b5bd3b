"""The trainer: the optimizer (AdamW, or Muon for the hidden matrices), the learning-rate schedule, gradient
clipping and accumulation, periodic evaluation, samples and checkpoints, exact resume, and stop.

A job is a run directory (core/runs.py), made by core/prepare.py or core/finetune.py. `Trainer(run_dir).fit()`
trains it, from scratch or from its last checkpoint; `fit(time_slice=...)` trains only a slice of it, for hardware
lent a few seconds at a time (core/slices.py). What it trains is given to it (core/trainable.py: a fresh
GPT, or a base with frozen layers or LoRA) and so is its data (core/run_data.py: a token stream, or
conversations whose loss counts only the replies); by default both are what the run's config.json describes.
Progress reaches callers through callbacks (the CLI draws a progress bar with them) and through the run
directory's files (the app follows those, from another process).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel

from core import distributed, files, history, runs, trainable
from core.device import autocast, describe_device, pick_device
from core.errors import CheckpointError, NewleafError
from core.messages import Text
from core.optim import make_optimizer
from core.run_data import log_sample_params, open_run_data, perplexity
from core.tokenizer import load_tokenizer
from core.train_config import TrainConfig, lr_at

Callback = Callable[[str, dict], None]  # (event, data); events: start, step, eval, sample, checkpoint, end


@dataclass
class FitResult:
    state: str  # completed | stopped | failed | paused (a slice's time was up: the run goes on in the next one)
    message: str
    step: int
    best_val_loss: float | None
    text: Text | None = None  # the message as a Text (core/messages.py), to say it in another language


@dataclass(frozen=True)
class TimeSlice:
    """A slice of a longer run (core/slices.py): train until `deadline` (a time.monotonic() value), at least one
    step, then checkpoint and return "paused"; the status stays "running" and names the slice's `seconds`."""

    seconds: float
    deadline: float

    @classmethod
    def starting_now(cls, seconds: float) -> TimeSlice:
        return cls(seconds, time.monotonic() + seconds)


@dataclass
class _Progress:
    """Where a fit() stands; what a checkpoint keeps of it makes resuming exact."""

    step: int
    t_start: float  # wall-clock start, moved back by the time trained before a resume
    best_val: float | None
    loss_sum: float = 0.0  # train loss summed since the last log line (its mean is logged)
    steps_since_log: int = 0
    t_log: float = 0.0  # when the last log line was written

    def elapsed(self) -> float:
        return time.time() - self.t_start


class Trainer:
    def __init__(self, run_dir, device: str | None = None, model: trainable.PlainGPT | None = None):
        """`model`: what to train (core/trainable.py); default: what the run's config.json describes."""
        self.run_dir = Path(run_dir)
        config = runs.read_config(self.run_dir)
        try:
            self.cfg = TrainConfig.from_dict(config["train"])
            self.data_info = config["data"]
            self.model = model or trainable.for_run(self.run_dir, config)
            self.tokenizer = load_tokenizer(self.run_dir)
            self.data = open_run_data(self.run_dir, config)
        except (KeyError, TypeError) as e:
            raise CheckpointError(
                Text("train.config_bad", path=str(self.run_dir / runs.CONFIG), reason=str(e))
            ) from None
        self.model_cfg = self.model.model_cfg
        self.config = config
        self.dist = distributed.current()  # several processes under torchrun, or one
        self.device = pick_device(device or self.cfg.device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.stop_event = threading.Event()
        # fields every status write of this trainer adds: a job trained in slices names the app's process that runs
        # it (core/slices.py), whichever process the slice itself runs in
        self.status_extra: dict = {}
        self.time_slice: TimeSlice | None = None  # set by fit(): the slice being trained, or None for the whole run

    # -- pieces ------------------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the loop to end after the current step (with a checkpoint). Safe from any thread."""
        self.stop_event.set()

    def _stop_requested(self) -> bool:
        return self.stop_event.is_set() or (self.run_dir / runs.STOP_FILE).exists()

    def evaluate(self, model) -> float:
        """The validation loss (core/run_data.py: fixed windows, or the first validation conversations)."""
        return self.data.validation_loss(model, self.cfg.batch_size, self.cfg.eval_batches, self.device)

    def bits_per_char(self, loss: float) -> float:
        """Nats per token -> bits per character of the validation text: comparable across tokenizers."""
        return loss * (runs.bpc_scale(self.data_info, "val") or 1 / math.log(2))

    def sample(self, model, step: int) -> str:
        """A short sample for the log; its own seeded generator leaves the training RNG untouched."""
        return self.data.sample(model, self.tokenizer, log_sample_params(self.cfg.sample_tokens, self.cfg.seed + step))

    def _build(self):
        torch.manual_seed(self.cfg.seed)
        model = self.model.build().to(self.device)
        groups = self.model.optimizer_groups(model, self.cfg.weight_decay, self.cfg.optimizer == "muon")
        optimizer = make_optimizer(
            groups, self.cfg.optimizer, self.cfg.lr, (self.cfg.beta1, self.cfg.beta2), self.device
        )
        batch_gen = torch.Generator().manual_seed(self.cfg.seed)
        return model, optimizer, batch_gen

    def _wrap(self, model):
        """The module the training steps call: DDP across processes, compiled on CUDA (or when asked), but never
        for a slice: compiling takes tens of seconds and each slice builds the model anew (on ZeroGPU, in a process
        of its own), so every slice would pay for it again out of its few seconds on the GPU."""
        net = model
        if self.dist.enabled:
            net = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if self.time_slice is None and (self.cfg.compile or (self.cfg.compile is None and self.device.type == "cuda")):
            net = torch.compile(net)  # the forward/backward only: evaluation, samples and checkpoints use `model`
        return net

    def _trainer_tensors(self, model, optimizer, batch_gen) -> tuple[dict, dict]:
        tensors, skeleton = runs.state_to_tensors(optimizer.state_dict(), "optim")
        tensors.update(self.model.extra_tensors(model))  # LoRA adapters
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
        meta = files.read_json(ck / "meta.json")
        weights = runs.load_tensors(ck / "model.safetensors")
        t = runs.load_tensors(ck / "trainer.safetensors")
        self.model.restore(model, weights, t, str(ck / "model.safetensors"))
        try:
            optimizer.load_state_dict(runs.tensors_to_state(meta["optimizer"], t))
            torch.set_rng_state(t["rng.cpu"])
            batch_gen.set_state(t["rng.batches"])
            if self.device.type == "cuda" and "rng.cuda" in t:
                torch.cuda.set_rng_state(t["rng.cuda"], self.device)
        except (KeyError, ValueError, RuntimeError) as e:
            raise CheckpointError(Text("train.state_bad", path=str(ck), reason=str(e))) from None
        return meta

    def _status(self, state: str, message: Text, step: int) -> None:
        if self.dist.is_main:
            runs.write_status(
                self.run_dir,
                state,
                message,
                step=step,
                max_steps=self.cfg.max_steps,
                max_time=self.cfg.max_time,
                **self.status_extra,
            )

    def _running_message(self) -> Text:
        if self.time_slice is not None:
            return Text(self.model.running_in_slices, device=self.device.type, seconds=f"{self.time_slice.seconds:g}")
        where = Text("status.processes", device=self.device.type, n=self.dist.world) if self.dist.enabled else None
        return Text(self.model.running, where=where or self.device.type)

    # -- the loop ----------------------------------------------------------------------------------------

    def fit(
        self, callbacks: list[Callback] = (), resume: bool = True, time_slice: TimeSlice | None = None
    ) -> FitResult:
        """Train the run to its end (or a stop, or divergence); with `time_slice`, only until the slice's deadline
        (then the state is "paused": checkpointed, and the status still says "running")."""
        cfg, run_dir, main = self.cfg, self.run_dir, self.dist.is_main  # only process 0 writes and reports
        self.time_slice = time_slice
        if cfg.threads:
            torch.set_num_threads(cfg.threads)

        def emit(event, data):
            for cb in callbacks if main else ():
                cb(event, data)

        model, optimizer, batch_gen = self._build()
        meta = self._restore(model, optimizer, batch_gen) if resume else None
        net = self._wrap(model)
        micro = distributed.local_micro_batches(cfg.grad_accum, self.dist)  # this process's micro-batches
        best = runs.checkpoint_meta(run_dir, "best") if meta else None
        # how many evenly spaced copies of the weights the run keeps for looking back (core/history.py)
        self.history_keep = history.capacity(cfg, history.snapshot_bytes(model))
        if main:
            self._reset_logs(meta)
            if not meta:
                self._snapshot(model, 0)  # the untrained model: where "learning over time" starts
        p = _Progress(  # the clock starts here: a time budget is for training, not for the setup above
            step=meta["step"] if meta else 0,
            t_start=time.time() - (meta or {}).get("elapsed_s", 0.0),
            best_val=best.get("val_loss") if best else None,
        )
        # the running average of train_loss between log lines is part of the state, for an exact resume
        p.loss_sum, p.steps_since_log = meta.get("log_window", (0.0, 0)) if meta else (0.0, 0)
        self._status("running", self._running_message(), p.step)
        emit(
            "start",
            {
                "step": p.step,
                "max_steps": cfg.max_steps,
                "max_time": cfg.max_time,
                "params": model.num_params(),
                "trainable_params": self.model.trainable_count(model),
                "device": str(self.device),
            },
        )
        p.t_log = time.time()
        model.train()
        state, message = self._loop(model, net, optimizer, batch_gen, micro, p, emit)

        if state != "failed" and _needs_final_checkpoint(run_dir, p.step):
            self._checkpoint(model, optimizer, batch_gen, p, {"step": p.step, "elapsed_s": p.elapsed()}, emit)
        if state == "completed":
            message = _finished_message(cfg, p)
        if state == "paused":  # a paused run is still running: its next slice goes on from the checkpoint just written
            self._status("running", self._running_message(), p.step)
        else:
            self._status(state, message, p.step)
        # a stop request is used up once honoured; one that arrived while the run started is honoured too (a stop
        # that arrives after a slice's last step is left for the next slice, which honours it at once)
        if main and state != "paused":
            (run_dir / runs.STOP_FILE).unlink(missing_ok=True)
        emit("end", {"state": state, "message": str(message), "step": p.step, "best_val_loss": p.best_val})
        return FitResult(state, str(message), p.step, p.best_val, message)

    def _reset_logs(self, meta: dict | None) -> None:
        """What was logged after the checkpoint will be logged again, identically; a fresh start logs anew.
        What a killed checkpoint writer left behind goes too."""
        for name in (runs.METRICS, runs.SAMPLES):
            if meta:
                runs.truncate_jsonl(self.run_dir / name, meta["step"])
            else:
                (self.run_dir / name).unlink(missing_ok=True)
        runs.clean_checkpoints(self.run_dir)
        history.reset(self.run_dir, meta["step"] if meta else None)

    def _snapshot(self, model, step: int) -> None:
        """A history snapshot at `step` when one is due and the disk has room to spare (only the main process calls
        this). A snapshot that cannot be written is left out: the run goes on, and the next checkpoint says so if
        the disk is really in trouble."""
        if not history.due(step, self.cfg.eval_every, self.history_keep):
            return
        weights = self.model.checkpoint_weights(model)
        if history.room(self.run_dir, sum(v.numel() * v.element_size() for v in weights.values())):
            try:
                history.save(self.run_dir, step, weights, self.cfg.eval_every, self.history_keep)
            except CheckpointError:
                pass

    def _loop(self, model, net, optimizer, batch_gen, micro, p: _Progress, emit) -> tuple[str, Text]:
        """Train until the budget is used, a stop is asked for, the weights go bad, or the slice's time is up (after
        one step at least, so that every slice moves the run on): (state, message)."""
        cfg, first = self.cfg, p.step
        diverged = None  # set by the main process when the validation loss goes bad; all processes stop on it
        while True:
            elapsed = p.elapsed()
            # every process takes the same branch: divergence, the budget and a stop request are agreed on
            bad, done, stop, paused = distributed.each_any_across(
                [
                    diverged is not None,
                    p.step >= cfg.max_steps or bool(cfg.max_time and elapsed >= cfg.max_time),
                    self._stop_requested(),
                    self.time_slice is not None and p.step > first and time.monotonic() >= self.time_slice.deadline,
                ],
                self.dist,
                self.device,
            )
            if bad:
                return "failed", diverged or Text("status.diverged_elsewhere")
            if done:
                return "completed", Text("status.finished")
            if stop:
                return "stopped", Text("status.stopped", step=p.step)
            if paused:
                return "paused", Text("status.slice_done", step=p.step, seconds=f"{self.time_slice.seconds:g}")
            progress = p.step / cfg.max_steps
            if cfg.max_time:
                progress = max(progress, elapsed / cfg.max_time)
            lr = lr_at(cfg, p.step, progress)
            for group in optimizer.param_groups:
                group["lr"] = lr
            step_loss, grad_norm = self._train_step(model, net, batch_gen, micro)
            if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
                what = (
                    Text("status.loss_became", value=str(step_loss))
                    if not math.isfinite(step_loss)
                    else Text("status.gradients_became", value=str(grad_norm))
                )
                return "failed", _diverged_message(self.run_dir, p.step + 1, what)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            p.step += 1
            p.loss_sum += step_loss
            p.steps_since_log += 1
            diverged = self._after_step(model, optimizer, batch_gen, p, lr, emit)

    def _train_step(self, model, net, batch_gen, micro) -> tuple[float, float]:
        """One optimizer step's gradients: every micro-batch drawn, this process's share computed; returns the
        step's mean loss (over all processes) and the gradient norm, measured (and clipped) either way: a
        finite loss can still have non-finite gradients."""
        cfg = self.cfg
        step_loss = 0.0
        for i in range(cfg.grad_accum):
            # every process draws every micro-batch (same generator, same windows) and keeps its share
            x, y = self.data.batch(cfg.batch_size, batch_gen, self.device)
            if i not in micro:
                continue
            # DDP averages gradients over processes once, at the last local micro-batch
            sync = nullcontext() if not self.dist.enabled or i == micro[-1] else net.no_sync()
            with sync, autocast(self.device):
                _, loss = net(x, y)
                (loss / len(micro)).backward()
            step_loss += loss.item() / cfg.grad_accum
        step_loss = distributed.sum_across(step_loss, self.dist, self.device)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or math.inf).item()
        return step_loss, grad_norm

    def _after_step(self, model, optimizer, batch_gen, p: _Progress, lr: float, emit) -> Text | None:
        """The main process's logging, evaluation, sample and checkpoint after a step. Returns a message when
        the validation loss went bad (then nothing is checkpointed), else None."""
        cfg = self.cfg
        final = p.step >= cfg.max_steps or bool(cfg.max_time and p.elapsed() >= cfg.max_time)
        do_eval = p.step % cfg.eval_every == 0 or final
        if not self.dist.is_main or not (p.step % cfg.log_every == 0 or do_eval):
            return None
        now = time.time()
        tokens_per_step = self.data.tokens_per_step(cfg.batch_size, cfg.grad_accum)
        record = {
            "step": p.step,
            "train_loss": p.loss_sum / p.steps_since_log,
            "lr": lr,
            "tokens_per_sec": tokens_per_step * p.steps_since_log / max(1e-9, now - p.t_log),
            "elapsed_s": now - p.t_start,
            "tokens_seen": p.step * tokens_per_step,
        }
        if do_eval:
            val = self.evaluate(model)
            if not math.isfinite(val):  # the weights went bad: no checkpoint of them, stop at the loop's top
                return _diverged_message(self.run_dir, p.step, Text("status.val_loss_became", value=str(val)))
            record.update(val_loss=val, val_bpc=self.bits_per_char(val))
            if self.model.reports_perplexity:
                record["val_ppl"] = perplexity(val)
        files.append_jsonl(self.run_dir / runs.METRICS, record)
        emit("eval" if do_eval else "step", record)
        if p.step % (cfg.sample_every or cfg.eval_every) == 0 or final:
            text = self.sample(model, p.step)
            files.append_jsonl(self.run_dir / runs.SAMPLES, {"step": p.step, "text": text})
            emit("sample", {"step": p.step, "text": text})
        p.t_log, p.steps_since_log, p.loss_sum = time.time(), 0, 0.0
        self._snapshot(model, p.step)  # before the checkpoint: a resume from it takes this snapshot again
        if p.step % (cfg.checkpoint_every or cfg.eval_every) == 0 or final:
            self._checkpoint(model, optimizer, batch_gen, p, record, emit)
        self._status("running", self._running_message(), p.step)
        return None

    def _checkpoint(self, model, optimizer, batch_gen, p: _Progress, record: dict, emit) -> None:
        if not self.dist.is_main:
            return
        is_best = record.get("val_loss") is not None and (p.best_val is None or record["val_loss"] < p.best_val)
        if is_best:
            p.best_val = record["val_loss"]
        tensors, skeleton = self._trainer_tensors(model, optimizer, batch_gen)
        ck_meta = {
            "step": p.step,
            "elapsed_s": record["elapsed_s"],
            "optimizer": skeleton,
            "log_window": [p.loss_sum, p.steps_since_log],
            "hardware": describe_device(self.device),
            **{k: record[k] for k in ("train_loss", "val_loss") if record.get(k) is not None},
        }
        try:
            runs.save_checkpoint(self.run_dir, self.model.checkpoint_weights(model), tensors, ck_meta, best=is_best)
        except CheckpointError as e:  # e.g. a full disk: the run says why it ended; the last checkpoint stays
            try:
                runs.write_status(self.run_dir, "failed", e.text or str(e), step=p.step, max_steps=self.cfg.max_steps)
            except NewleafError:
                pass
            raise
        emit("checkpoint", {"step": p.step, "best": is_best})


def _diverged_message(run_dir, step: int, what: Text) -> Text:
    last = runs.checkpoint_meta(run_dir, "last")
    kept = Text("status.last_good_kept", step=last["step"]) if last else Text("status.no_checkpoint_yet")
    return Text("status.diverged", step=step, what=what, kept=kept)


def _finished_message(cfg: TrainConfig, p: _Progress) -> Text:
    """How a run that completed ended: all its steps, or its time budget first; and its best validation loss."""
    if p.step >= cfg.max_steps or not cfg.max_time:
        done = Text("status.finished_steps", step=p.step)
    else:
        done = Text("status.finished_time", step=p.step, seconds=f"{cfg.max_time:,.0f}")
    return done if not p.best_val else Text("status.best_val", done=done, loss=f"{p.best_val:.4f}")


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
