"""Training in slices: a run trained a few seconds at a time, each slice a call of its own, for hardware that is lent
for short stretches (on a ZeroGPU Space a GPU exists only inside a function call of a minute or so; the app calls
`next_slice` inside one, again and again: playground/slices.py).

    next_slice(run_dir, seconds)   the run's next piece of work; returns where the run stands, as plain data

A piece of work is one of:
    measuring a fine-tuning run's base model       before its first step (a call of its own: measuring takes a while)
    training                                       resume from the last checkpoint, train for at most `seconds` (and
                                                   at least one step), checkpoint, return
    measuring the fine-tuned model                 after its last step (a call of its own too)

Resuming is exact (core/train.py: checkpoints hold the optimizer and every RNG, and the train loss averaged since the
last log line), so a run trained in slices ends with the metrics and the weights of one trained in one go. A time
budget (`max_time`) counts training only: the elapsed time travels in the checkpoints, and the waits between slices
are not counted. A stop (the STOP file) ends the run at a checkpoint, as always.

Everything in and out is plain data (str, numbers, dicts): on ZeroGPU the call runs in another process.
"""

from __future__ import annotations

from pathlib import Path

from core import finetune, runs
from core.errors import NewleafError
from core.messages import Text
from core.train import FitResult, TimeSlice, Trainer

MORE = "paused"  # the run goes on: call again
MEASURE = "measure"  # training ended; the next call measures the fine-tuned model (pass back what this one returned)


def next_slice(run_dir, seconds: float, status: dict | None = None, ended: dict | None = None) -> dict:
    """Do the run's next piece of work within about `seconds` (see above) and say where the run stands:
    {"state": "paused" | "measure" | "completed" | "stopped" | "failed", "step", "message", "text"}. "paused" and
    "measure" ask for another call; after "measure", pass its result back as `ended` (how training ended).
    `status`: fields every status write adds (the app names its own process there: core/runs.py, in_app_worker).
    A refusal on the way (a full disk, a broken checkpoint) is returned as "failed" with its words, not raised: the
    caller may be in another process, which would receive only the error's class."""
    try:
        trainer = Trainer(Path(run_dir))
        trainer.status_extra = dict(status or {})
        return _next(trainer, seconds, ended)
    except NewleafError as e:
        return _result(FitResult("failed", str(e), _step(run_dir), None, e.text))


def _next(trainer: Trainer, seconds: float, ended: dict | None) -> dict:
    run_dir = trainer.run_dir
    evaluate = finetune.is_finetune_run(run_dir) and finetune.evaluates(trainer)
    if ended is not None:  # training ended in the call before this one: measure what it made
        fit = FitResult(ended["ended"], ended["message"], ended["step"], None, Text.from_json(ended.get("text")))
        finetune.measure_result(trainer, fit)
        return _result(fit)
    if evaluate and finetune.base_unmeasured(run_dir):
        finetune.measure_base(trainer)
        return {"state": MORE, "step": 0, "message": "", "text": None}
    fit = trainer.fit(time_slice=TimeSlice.starting_now(seconds))
    if evaluate and finetune.result_measurable(run_dir, fit):
        # say what comes next while the next call waits for its turn (on ZeroGPU, for a GPU)
        runs.write_status(
            run_dir,
            "running",
            Text("status.measuring_finetuned"),
            step=fit.step,
            max_steps=trainer.cfg.max_steps,
            max_time=trainer.cfg.max_time,
            **trainer.status_extra,
        )
        return {**_result(fit), "state": MEASURE, "ended": fit.state}
    return _result(fit)


def _result(fit: FitResult) -> dict:
    return {
        "state": fit.state,
        "step": fit.step,
        "message": fit.message,
        "text": fit.text.to_json() if isinstance(fit.text, Text) else None,
    }


def _step(run_dir) -> int:
    try:
        return runs.checkpoint_step(run_dir)
    except NewleafError:
        return 0
