"""Training jobs trained in slices in the app's own process, instead of in a training process of their own: on
ZeroGPU, where a GPU exists only inside the app's spaces.GPU functions, and wherever NEWLEAF_TRAIN_SLICE_SECONDS asks
for it (a CPU Space, the tests: the very same code, with spaces.GPU a no-op there).

    train_slice(run_dir, seconds, status)   one slice of a run (core/slices.py: resume, train, checkpoint), on the
                                            GPU lent for it; plain data in and out (on ZeroGPU it runs in a process
                                            that spaces forks to hold the GPU)
    SliceWorker(run_dir, seconds)           a thread that calls train_slice until the run completes, fails, or is
                                            stopped (the STOP file, as for a training process)

playground/jobs.py starts a SliceWorker where it would start a training process, and follows it the same way: the
run directory says where the job is, and status.json names this process as its worker (core/runs.py, in_app_worker).

Durations: a slice trains for at most SLICE_SECONDS, and asks ZeroGPU for SLICE_SECONDS + SLICE_MARGIN_SECONDS. The
margin covers what a call does besides training: CUDA's start, the model and the optimizer loaded from the last
checkpoint, the last step begun before the deadline (with its evaluation, sample and checkpoint), the checkpoint at
the slice's end; or, in a call of its own, one measurement of a fine-tuning run's model. The shorter the duration,
the sooner ZeroGPU lends a GPU and the less of the day's quota a call holds; the longer the slice, the less of each
call goes to loading. torch.compile is off in slices (core/train.py: each slice would compile again).
"""

from __future__ import annotations

import sys
import threading
import traceback
from pathlib import Path

from core import runs
from core.errors import NewleafError
from core.messages import Text
from core.slices import MEASURE, MORE, next_slice
from playground.zerogpu import gpu, on_zero_gpu

SLICE_SECONDS = 45  # training in one slice on ZeroGPU
SLICE_MARGIN_SECONDS = 30  # the rest of the call: loading, the last step, the checkpoint; or one measurement
GPU_SECONDS = SLICE_SECONDS + SLICE_MARGIN_SECONDS


def slice_length(setting: float | None) -> float | None:
    """How long a job's slices are: the setting (NEWLEAF_TRAIN_SLICE_SECONDS) where there is one, at most
    SLICE_SECONDS on ZeroGPU (what the GPU's duration fits); SLICE_SECONDS on ZeroGPU without one; else None
    (training processes)."""
    if on_zero_gpu():
        return min(setting, SLICE_SECONDS) if setting else SLICE_SECONDS
    return setting or None


@gpu(GPU_SECONDS)
def train_slice(run_dir: str, seconds: float, status: dict, ended: dict | None = None) -> dict:
    """The run's next slice on the device here (on ZeroGPU: the GPU lent for this call); see core/slices.py."""
    return next_slice(run_dir, seconds, status, ended)


class SliceWorker:
    """The thread of a job trained in slices. It never writes how the job failed: it keeps why in `failure`, and the
    job manager writes it (as it does for a training process that died), where a full disk cannot lose it."""

    def __init__(self, run_dir: Path, seconds: float):
        self.run_dir, self.seconds = Path(run_dir), seconds
        self.status = runs.in_app_worker()  # what every status write of the job adds: this process is its worker
        self.failure: Text | str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"newleaf-slices-{self.run_dir.name}")

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """No new slice after the one running now (which the STOP file ends at a checkpoint)."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _stop_requested(self) -> bool:
        return self._stop.is_set() or (self.run_dir / runs.STOP_FILE).exists()

    def _run(self) -> None:
        ended = None  # training ended: the next call measures the fine-tuned model
        try:
            while True:
                if ended is None and self._stop_requested():  # asked to stop between two slices
                    self._stopped()
                    return
                result = train_slice(str(self.run_dir), self.seconds, self.status, ended)
                if result["state"] in (MORE, MEASURE):
                    ended = result if result["state"] == MEASURE else None
                    continue
                if result["state"] == "failed":
                    self.failure = Text.from_json(result.get("text")) or result.get("message") or None
                return
        except NewleafError as e:
            self.failure = Text("jobs.slice_failed", why=e.text or str(e))
        except Exception as e:  # a slice that could not run: on ZeroGPU no GPU lent, the day's quota used, an abort
            print(f"newleaf jobs: a slice of {self.run_dir.name} failed\n{traceback.format_exc()}", file=sys.stderr)
            self.failure = Text("jobs.slice_failed", why=str(e) or type(e).__name__)

    def _stopped(self) -> None:
        """End the job at its last checkpoint, as the trainer does when it sees the STOP file."""
        step = runs.checkpoint_step(self.run_dir)
        previous = runs.read_status(self.run_dir)
        budget = {k: previous[k] for k in ("max_steps", "max_time") if k in previous}
        runs.write_status(self.run_dir, "stopped", Text("status.stopped", step=step), step=step, **budget)
        (self.run_dir / runs.STOP_FILE).unlink(missing_ok=True)
