"""Training in slices (core/slices.py, playground/slices.py): a run trained a slice at a time ends exactly as one
trained in one go; a fine-tuning run measures its base and its result in calls of their own; and a job the app
trains in slices (as on ZeroGPU) is followed, queued, stopped, refreshed, restarted and shut down as a training
process is. Tiny models, a few steps; no test depends on how fast the machine is (a slice of 0 s trains exactly one
step; jobs that must be caught running are held between two slices by a gate)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from core import files, finetune, history, runs
from core.errors import NewleafError
from core.evaluate import read_eval
from core.finetune import prepare_finetune, run_finetune, train_config
from core.messages import Text
from core.slices import MEASURE, MORE, next_slice
from core.train import Trainer
from core.trainable import FinetuneConfig
from playground import slices as app_slices
from playground import tab_finetune, tab_train
from playground.jobs import Jobs
from playground.settings import Settings
from tests.conftest import REPO
from tests.reliability.helpers import make_run, own, wait_for

TOKEN = "slices-session"
VOLATILE = ("tokens_per_sec", "elapsed_s", "seconds", "updated")


def logged(run: Path, name: str = runs.METRICS) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in files.read_jsonl(run / name)[0]]


def tensors(run: Path, which: str, name: str) -> dict:
    return runs.load_tensors(runs.checkpoint_dir(run, which) / name)


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def assert_same_run(sliced: Path, whole: Path) -> None:
    """Metrics, samples, checkpoints (weights, optimizer and RNG state) and history snapshots all identical."""
    assert logged(sliced) == logged(whole) and logged(sliced)
    assert logged(sliced, runs.SAMPLES) == logged(whole, runs.SAMPLES)
    for which in ("last", "best"):
        for name in ("model.safetensors", "trainer.safetensors"):
            assert same_tensors(tensors(sliced, which, name), tensors(whole, which, name)), (which, name)
    assert [s.step for s in history.snapshots(sliced)] == [s.step for s in history.snapshots(whole)]


def slices_until_done(run: Path, seconds: float = 0) -> tuple[dict, list[dict]]:
    """Call next_slice as the app does until the run ends; returns the last result and every one."""
    results, ended = [], None
    while True:
        result = next_slice(run, seconds, runs.in_app_worker(), ended)
        results.append(result)
        if result["state"] not in (MORE, MEASURE):
            return result, results
        ended = result if result["state"] == MEASURE else None


# ----------------------------------------------------------------------------------------------------------
# The engine: core/slices.py


def test_a_run_trained_in_slices_ends_exactly_as_one_trained_in_one_go(tmp_path):
    whole = make_run(tmp_path / "whole", max_steps=12, eval_every=4, log_every=2)
    sliced = make_run(tmp_path / "sliced", max_steps=12, eval_every=4, log_every=2)
    assert Trainer(whole).fit().state == "completed"

    first = next_slice(sliced, 0, runs.in_app_worker())  # a slice of 0 s trains one step: the least a slice does
    assert first["state"] == MORE and first["step"] == 1 and runs.checkpoint_meta(sliced)["step"] == 1
    status = runs.read_status(sliced)  # between two slices the job still runs, and says how
    assert status["state"] == "running" and status["message"] == "Training on cpu in slices of 0 s."
    assert runs.status_text(status) == Text("status.training_slices", device="cpu", seconds="0")
    assert status["worker"] == runs.IN_APP and status["pid"] == runs.in_app_worker()["pid"]

    last, results = slices_until_done(sliced)
    assert last["state"] == "completed" and last["step"] == 12 and len(results) == 11  # one step each
    assert last["message"] == runs.read_status(whole)["message"] == runs.read_status(sliced)["message"]
    assert_same_run(sliced, whole)


def test_dropout_and_a_slice_that_ends_between_log_lines_resume_exactly(tmp_path):
    """Dropout draws from the RNG every step and a log line averages the loss of several steps: both carried over."""
    whole = make_run(tmp_path / "whole", max_steps=9, eval_every=3, log_every=3)
    sliced = make_run(tmp_path / "sliced", max_steps=9, eval_every=3, log_every=3)
    for run in (whole, sliced):
        config = runs.read_config(run)
        config["model"]["dropout"] = 0.2
        files.atomic_write_json(run / runs.CONFIG, config)
    Trainer(whole).fit()
    assert slices_until_done(sliced)[0]["state"] == "completed"
    assert_same_run(sliced, whole)


def test_the_runs_time_budget_still_ends_a_run_trained_in_slices(tmp_path):
    run = make_run(tmp_path / "r", max_steps=10**6, max_time=0.5, eval_every=5, log_every=5)
    waited, results, began = 0.0, [], time.monotonic()
    while not results or results[-1]["state"] == MORE:
        if results:  # a wait between two slices, as for a GPU on ZeroGPU
            time.sleep(0.2)
            waited += 0.2
        results.append(next_slice(run, 0.05, runs.in_app_worker()))
    wall = time.monotonic() - began
    assert results[-1]["state"] == "completed" and len(results) > 1
    assert runs.status_text(runs.read_status(run)).fields["done"].key == "status.finished_time"
    # the training time travels in the checkpoints; the waits between slices are not counted in it
    assert runs.checkpoint_meta(run)["elapsed_s"] <= wall - waited


def test_a_stop_during_a_slice_ends_the_run_at_a_checkpoint(tmp_path):
    run = make_run(tmp_path / "r", max_steps=10**6, eval_every=5, log_every=5)
    assert next_slice(run, 0, runs.in_app_worker())["state"] == MORE
    (run / runs.STOP_FILE).touch()  # as Jobs.stop does
    result = next_slice(run, 3600, runs.in_app_worker())
    assert result["state"] == "stopped" and result["step"] == 1 == runs.checkpoint_meta(run)["step"]
    assert runs.read_status(run)["state"] == "stopped" and not (run / runs.STOP_FILE).exists()


def test_a_refusal_inside_a_slice_comes_back_as_words_not_as_an_error(tmp_path):
    """On ZeroGPU the slice runs in another process, which would hand back only the error's class."""
    run = make_run(tmp_path / "r")
    (run / "tokenizer.json").unlink()
    result = next_slice(run, 1, runs.in_app_worker())
    assert result["state"] == "failed" and "tokenizer.json" in result["message"] and result["text"]["key"]
    json.dumps(result)  # plain data, as it must be to cross a process boundary


@pytest.fixture(scope="module")
def demo_settings():
    ft = FinetuneConfig(method="lora", lora_rank=4, lora_dropout=0.1)
    train = train_config("lora", demo=True, max_steps=8, eval_every=4, log_every=2, batch_size=8, device="cpu")
    return ft, train


def test_fine_tuning_in_slices_measures_before_and_after_in_calls_of_their_own(tmp_path, demo_settings):
    ft, train = demo_settings
    whole = prepare_finetune(tmp_path / "whole", "scratch:tiny", "builtin:arithmetic-small", ft=ft, train=train)
    sliced = prepare_finetune(tmp_path / "sliced", "scratch:tiny", "builtin:arithmetic-small", ft=ft, train=train)
    one_go = run_finetune(whole)
    assert one_go.state == "completed"

    first = next_slice(sliced, 0, runs.in_app_worker())  # the base, measured in a call of its own
    assert first["state"] == MORE and first["step"] == 0
    assert "base" in read_eval(sliced) and runs.checkpoint_dir(sliced, "last") is None
    results, ended = [], None
    while True:
        result = next_slice(sliced, 0, runs.in_app_worker(), ended)
        results.append(result)
        if result["state"] == MEASURE:  # training ended: the next call measures the result
            assert result["step"] == 8 and "finetuned" not in read_eval(sliced)
            status = runs.read_status(sliced)  # while that call waits for its turn the job still runs
            assert status["state"] == "running" and runs.status_text(status).key == "status.measuring_finetuned"
            assert status["worker"] == runs.IN_APP
        if result["state"] not in (MORE, MEASURE):
            break
        ended = result if result["state"] == MEASURE else None
    assert [r["state"] for r in results] == [MORE] * 7 + [MEASURE, "completed"]
    assert result["message"] == one_go.message and "base 0% -> fine-tuned" in result["message"]
    assert runs.read_status(sliced)["message"] == runs.read_status(whole)["message"]
    strip = {k: {m: v for m, v in d.items() if m not in VOLATILE} for k, d in read_eval(whole).items()}
    assert {k: {m: v for m, v in d.items() if m not in VOLATILE} for k, d in read_eval(sliced).items()} == strip
    assert logged(sliced) == logged(whole)
    assert same_tensors(tensors(sliced, "last", "trainer.safetensors"), tensors(whole, "last", "trainer.safetensors"))


def test_a_slice_is_never_compiled(tmp_path, monkeypatch):
    """Each slice builds the model anew (on ZeroGPU in a process of its own): compiling would be paid every slice."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(module) or module)
    run = make_run(tmp_path / "r", max_steps=2, compile=True)
    assert slices_until_done(run)[0]["state"] == "completed" and not compiled
    Trainer(run).fit()  # the whole run (completed: nothing left to train) still compiles as asked
    assert compiled


# ----------------------------------------------------------------------------------------------------------
# The app: jobs trained in slices (playground/slices.py, playground/jobs.py)


class Gate:
    """Stands in for playground.slices.train_slice and holds a job after its `hold`-th slice until opened: the job is
    then running, between two slices, for as long as a test needs (`then` runs when it opens)."""

    def __init__(self, hold: int, then=None):
        self.real, self.hold, self.then = app_slices.train_slice, hold, then
        self.calls = 0
        self.waiting, self.opened = threading.Event(), threading.Event()

    def __call__(self, *args):
        self.calls += 1
        result = self.real(*args)
        if self.calls == self.hold:
            self.waiting.set()
            assert self.opened.wait(120), "the gate was never opened"
            if self.then is not None:
                self.then()
        return result


@pytest.fixture
def gate(monkeypatch):
    def install(hold: int, then=None) -> Gate:
        g = Gate(hold, then)
        monkeypatch.setattr(app_slices, "train_slice", g)
        return g

    return install


@pytest.fixture
def root(tmp_path):
    path = (tmp_path / "runs").resolve()
    path.mkdir()
    return path


def sliced_jobs(root: Path, seconds: float = 0, poll_seconds: float = 0.05) -> Jobs:
    return Jobs(root, max_concurrent=1, poll_seconds=poll_seconds, slice_seconds=seconds)


def test_the_job_limit_and_queue_hold_with_sliced_jobs_and_each_ends_as_in_one_go(root, gate, tmp_path):
    reference = make_run(tmp_path / "reference", max_steps=6, eval_every=3, log_every=3)
    Trainer(reference).fit()
    for name in ("a", "b"):
        own(make_run(root / name, max_steps=6, eval_every=3, log_every=3), TOKEN)
    g = gate(hold=2)
    jobs = sliced_jobs(root)
    try:
        assert jobs.start(TOKEN, "a")["state"] == "running"
        assert jobs.start(TOKEN, "b")["queue_position"] == 1
        assert g.waiting.wait(60)
        a = jobs.state("a")
        assert a["state"] == "running" and runs.status_text(a).key == "status.training_slices"
        assert jobs.state("b")["state"] == "queued" and jobs.has_process("a") and not jobs.has_process("b")
        with pytest.raises(NewleafError, match="already training"):
            jobs.start(TOKEN, "a")
        with pytest.raises(NewleafError, match="Stop this run before deleting it"):
            jobs.delete(TOKEN, "a")
        with pytest.raises(NewleafError, match="does not exist"):  # another session's, as for any job
            jobs.stop("someone-else", "a")
        assert runs.read_status(root / "a")["pid"] == runs.in_app_worker()["pid"]  # this process is the worker
        g.opened.set()
        # the status says completed a moment before its thread ends and the job manager lets it go
        wait_for(lambda: jobs.state("b")["state"] == "completed" and not jobs.slices, 120, what="both jobs to end")
        assert jobs.state("a")["state"] == "completed" and not jobs.slices
        for name in ("a", "b"):
            assert_same_run(root / name, reference)
        jobs.delete(TOKEN, "a")  # ended: it may go
    finally:
        jobs.shutdown()


def test_a_page_refresh_reattaches_to_a_sliced_job_and_other_processes_see_it_running(root, gate):
    own(make_run(root / "r", max_steps=6, eval_every=2, log_every=2), TOKEN, title="Sliced")
    g = gate(hold=2)
    jobs = sliced_jobs(root)
    try:
        jobs.start(TOKEN, "r")
        assert g.waiting.wait(60)
        ctx = SimpleNamespace(jobs=jobs, settings=Settings.from_env())
        view = tab_train.reattach(ctx, TOKEN, "r", "en")  # what a page load runs for the run it followed
        assert view[0].startswith("🏃 **running** — Training on cpu in slices of 0 s.")
        assert view[5].active is True  # the page keeps polling
        assert len(view[7]) == 1 and view[7][0]["step"] == 2  # the metrics so far
        assert tab_finetune.VIEW.snapshot(jobs, root / "r", "r", 0)[3] is True
        # another process (the CLI here) reads the job as running too: its worker is this app, alive
        info = subprocess.run(
            [sys.executable, "-m", "core", "info", "--run", str(root / "r"), "--json"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert info.returncode == 0, info.stderr
        assert json.loads(info.stdout)["state"] == "running"
        g.opened.set()
        wait_for(lambda: jobs.state("r")["state"] == "completed", 120, what="the job to complete")
        done = tab_train.reattach(ctx, TOKEN, "r", "en")
        assert done[0].startswith("✅ **completed**") and done[5].active is False
    finally:
        jobs.shutdown()


def test_stop_between_two_slices_ends_the_job_at_its_checkpoint_and_it_resumes(root, gate, tmp_path):
    reference = make_run(tmp_path / "reference", max_steps=6, eval_every=3, log_every=3)
    Trainer(reference).fit()
    own(make_run(root / "r", max_steps=6, eval_every=3, log_every=3), TOKEN)
    g = gate(hold=2)
    jobs = sliced_jobs(root)
    try:
        jobs.start(TOKEN, "r")
        assert g.waiting.wait(60)
        assert jobs.stop(TOKEN, "r")["state"] == "running"  # asked; it stops before its next slice
        assert (root / "r" / runs.STOP_FILE).exists()
        g.opened.set()
        wait_for(lambda: jobs.state("r")["state"] == "stopped", 60, what="the job to stop")
        status = runs.read_status(root / "r")
        assert status["step"] == 2 == runs.checkpoint_meta(root / "r")["step"] and g.calls == 2  # no slice more
        assert status["message"] == "Stopped at step 2." and status["max_steps"] == 6
        assert not (root / "r" / runs.STOP_FILE).exists()
        wait_for(lambda: not jobs.slices, 30, what="the thread to be reaped")
        with pytest.raises(NewleafError, match="not training"):
            jobs.stop(TOKEN, "r")
        jobs.start(TOKEN, "r")  # resumed from step 2, exactly
        wait_for(lambda: jobs.state("r")["state"] == "completed", 120, what="the resumed job to complete")
        assert_same_run(root / "r", reference)
    finally:
        jobs.shutdown()


def test_stop_during_a_slice_ends_the_job_at_a_checkpoint(root):
    own(make_run(root / "r", max_steps=10**6, eval_every=2, log_every=2), TOKEN)
    jobs = sliced_jobs(root, seconds=3600)  # one long slice: the stop lands inside it
    try:
        jobs.start(TOKEN, "r")
        wait_for(lambda: logged(root / "r"), 60, what="the first logged step")
        jobs.stop(TOKEN, "r")
        wait_for(lambda: jobs.state("r")["state"] == "stopped", 60, what="the job to stop")
        step = runs.read_status(root / "r")["step"]
        assert step >= 2 and runs.checkpoint_meta(root / "r")["step"] == step
        assert runs.status_text(runs.read_status(root / "r")) == Text("status.stopped", step=step)
    finally:
        jobs.shutdown()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the SystemExit, on purpose
@pytest.mark.parametrize(
    "death, reason",
    [
        (SystemExit, "Training in slices ended without saying why"),  # the thread ends without a word
        (RuntimeError("No GPU was free"), "A slice of training could not run: No GPU was free."),
    ],
)
def test_a_sliced_job_whose_thread_died_reads_failed_and_can_be_resumed(root, gate, death, reason):
    own(make_run(root / "r", max_steps=4, eval_every=2, log_every=2), TOKEN)

    def die():
        raise death

    g = gate(hold=1, then=die)
    jobs = sliced_jobs(root, poll_seconds=3600)  # no reaping: the state alone must tell
    try:
        jobs.start(TOKEN, "r")
        assert g.waiting.wait(60)
        g.opened.set()
        wait_for(lambda: not jobs.slices["r"].alive(), 60, what="the thread to end")
        assert runs.read_status(root / "r")["state"] == "running"  # it could not say so itself
        assert jobs.state("r")["state"] == "failed" and not jobs.has_process("r")
        jobs._reap()  # the monitor's round: why is written down
        status = runs.read_status(root / "r")
        assert status["state"] == "failed" and status["message"].startswith(reason)
        g.hold = 0
        jobs.start(TOKEN, "r")  # resumed from its last checkpoint
        wait_for(lambda: not jobs.slices["r"].alive(), 120, what="the resumed job")
        assert runs.read_status(root / "r")["state"] == "completed"
    finally:
        jobs.shutdown()


def test_after_an_app_restart_a_sliced_job_reads_stopped_and_resumes(root, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for name, pid in (("other-app", dead.pid), ("same-pid", runs.in_app_worker()["pid"])):  # a container's app
        own(make_run(root / name, max_steps=4, eval_every=2, log_every=2), TOKEN)  # gets the same pid again
        assert next_slice(root / name, 0, runs.in_app_worker())["state"] == MORE
        status = {**runs.in_app_worker(), "pid": pid, "pid_started": runs.process_started(pid)}
        runs.write_status(root / name, "running", Text("status.training_slices", device="cpu", seconds="0"), **status)
        assert runs.live_status(root / name)["state"] == "failed"  # read by anyone but an app that follows it
    jobs = sliced_jobs(root)
    try:
        for name in ("other-app", "same-pid"):
            status = runs.read_status(root / name)
            assert status["state"] == "stopped" and status["message"].startswith("Interrupted when the app restarted")
            assert jobs.state(name)["state"] == "stopped" and status["step"] == 1
        jobs.start(TOKEN, "other-app")
        wait_for(lambda: jobs.state("other-app")["state"] == "completed", 120, what="the resumed job")
    finally:
        jobs.shutdown()


def test_shutdown_stops_sliced_jobs_gracefully(root):
    own(make_run(root / "r", max_steps=10**6, eval_every=2, log_every=2), TOKEN)
    jobs = sliced_jobs(root, seconds=3600)
    jobs.start(TOKEN, "r")
    wait_for(lambda: logged(root / "r"), 60, what="the first logged step")
    worker = jobs.slices["r"]
    jobs.shutdown(timeout=60)
    assert not worker.alive()
    status = runs.read_status(root / "r")
    assert status["state"] == "stopped" and status["step"] == runs.checkpoint_meta(root / "r")["step"] >= 2


def test_a_fine_tuning_job_in_slices_is_followed_until_it_has_measured_the_result(root, demo_settings):
    ft, train = demo_settings
    run = prepare_finetune(root / "ft", "scratch:tiny", "builtin:arithmetic-small", ft=ft, train=train)
    own(run, TOKEN)
    jobs = sliced_jobs(root, seconds=0.05)
    try:
        jobs.start(TOKEN, "ft")
        wait_for(lambda: not jobs.has_process("ft"), 120, what="the job to end")
        status = jobs.state("ft")
        assert status["state"] == "completed" and "base 0% -> fine-tuned" in status["message"]
        assert finetune.summarize(read_eval(run)) is not None and read_eval(run)["finetuned"]["step"] == 8
    finally:
        jobs.shutdown()


def test_runs_status_alive_knows_an_app_by_its_pid_and_when_it_started(tmp_path):
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = runs.process_started(app.pid)
        status = {"state": "running", "worker": runs.IN_APP, "pid": app.pid, "pid_started": started}
        assert runs.status_alive(status, tmp_path)
        assert not runs.status_alive({**status, "pid_started": started - 1}, tmp_path)  # a later process, same pid
        assert not runs.status_alive({**status, "pid": runs.in_app_worker()["pid"]}, tmp_path)  # this app: Jobs knows
        assert not runs.status_alive({"state": "running", "pid": app.pid}, tmp_path)  # not this run's worker process
    finally:
        app.kill()
        app.wait()
    assert not runs.status_alive(status, tmp_path)


def test_the_slice_length_setting(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.delenv("NEWLEAF_TRAIN_SLICE_SECONDS", raising=False)
    assert Settings.from_env().train_slice_seconds is None and app_slices.slice_length(None) is None
    monkeypatch.setenv("NEWLEAF_TRAIN_SLICE_SECONDS", "20")
    assert Settings.from_env().train_slice_seconds == 20 and app_slices.slice_length(20) == 20
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")  # on ZeroGPU: always in slices, and never longer than fits the GPU
    assert app_slices.slice_length(None) == app_slices.SLICE_SECONDS
    assert app_slices.slice_length(10_000) == app_slices.SLICE_SECONDS and app_slices.slice_length(20) == 20
