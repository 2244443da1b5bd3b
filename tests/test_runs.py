"""core/runs.py: what a run list reads of a run (its best validation record, its feedback), read incrementally;
the bits-per-character scale; a run's title; its status as the processes have it."""

import json
import os
import subprocess
import sys

from core import files, runs


def _log(path, *records):
    with open(path, "a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_the_best_record_and_the_feedback_are_read_incrementally(tmp_path, monkeypatch):
    metrics = tmp_path / runs.METRICS
    _log(metrics, {"step": 10, "train_loss": 3.0}, {"step": 20, "val_loss": 2.5, "val_bpc": 3.6}, [1, 2], "x")
    _log(tmp_path / runs.FEEDBACK, {"rating": 1}, {"rating": -1}, {"rating": 1}, {"rating": 5}, 7)
    assert runs.best_logged(tmp_path) == {"step": 20, "val_loss": 2.5, "val_bpc": 3.6}
    assert runs.feedback_counts(tmp_path) == (2, 1)

    offsets = []
    real = runs.read_jsonl

    def recording(path, offset=0):
        offsets.append((path.name, offset))
        return real(path, offset)

    monkeypatch.setattr(runs, "read_jsonl", recording)
    assert runs.best_logged(tmp_path)["step"] == 20 and offsets == []  # nothing new: nothing read
    size = metrics.stat().st_size
    _log(metrics, {"step": 30, "val_loss": float("nan")}, {"step": 40, "val_loss": 2.1, "val_bpc": 3.0})
    assert runs.best_logged(tmp_path) == {"step": 40, "val_loss": 2.1, "val_bpc": 3.0}
    assert offsets == [(runs.METRICS, size)]  # only what the log gained
    # a resume rewrites the log (a new file): it is read again from the start
    files.write_jsonl(metrics, [{"step": 10, "val_loss": 2.9}])
    assert runs.best_logged(tmp_path) == {"step": 10, "val_loss": 2.9}
    assert offsets[-1] == (runs.METRICS, 0)
    assert runs.best_logged(tmp_path / "nowhere") is None and runs.feedback_counts(tmp_path / "nowhere") == (0, 0)


def test_bits_per_character_scale():
    data = {"val_tokens": 1000, "val_chars": 4000, "train_tokens": 9000, "train_chars": 36000}
    assert abs(runs.bpc_scale(data) - 0.25 / 0.6931471805599453) < 1e-12
    assert runs.bpc_scale(data, "train") == runs.bpc_scale(data)
    for bad in ({}, {"val_tokens": 0, "val_chars": 5}, {"val_tokens": "x", "val_chars": 5}, ["x"], None):
        assert runs.bpc_scale(bad) is None


def test_a_runs_title(tmp_path):
    assert runs.title(tmp_path / "nameless") == "nameless"
    (tmp_path / runs.CONFIG).write_text(json.dumps({"title": "Alpha"}))
    assert runs.title(tmp_path) == "Alpha"
    (tmp_path / runs.CONFIG).write_text("[1]")
    assert runs.title(tmp_path) == tmp_path.name


def test_a_run_whose_process_is_gone_is_not_running(tmp_path):
    (tmp_path / runs.CONFIG).write_text("{}")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    runs.write_status(tmp_path, "running", "Training on cpu.", pid=ended.pid)
    status = runs.live_status(tmp_path)
    assert status["state"] == "failed" and "ended without saying why" in status["message"]
    # a live process that is this run's worker (its command line names the run, relative to its own folder)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", tmp_path.name], cwd=tmp_path.parent)
    try:
        runs.write_status(tmp_path, "running", "Training on cpu.", pid=alive.pid)
        assert runs.live_status(tmp_path)["state"] == "running"
        runs.write_status(tmp_path, "running", "Training on cpu.", pid=os.getpid())  # not a worker of this run
        assert runs.live_status(tmp_path)["state"] == "failed"
    finally:
        alive.kill()
        alive.wait()
