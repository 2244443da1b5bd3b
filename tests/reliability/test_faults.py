"""Faults that are not a kill: a full disk while a checkpoint is written, a runs directory that cannot be written,
and a loss that becomes NaN or infinite. Each ends in one clear message and a run whose last good checkpoint
still loads and resumes."""

from __future__ import annotations

import errno
import math
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from core import cli, files, runs
from core.errors import CheckpointError, NewleafError
from core.model import GPT
from core.train import Trainer
from playground.jobs import Jobs
from tests.reliability.helpers import make_run

STEPS, EVERY = 6, 2  # checkpoints at steps 2, 4, 6


def no_leftovers(run: Path) -> bool:
    ckdir = run / runs.CKPT_DIR
    return not any(p.name.startswith(".") for p in ckdir.iterdir())


class FullDisk:
    """safetensors' save_file that writes half a file, then fails as a full disk makes it fail."""

    def __init__(self, fail_from_call: int):
        self.calls, self.fail_from = 0, fail_from_call
        self.real = runs.save_file

    def __call__(self, tensors, filename, metadata=None):
        self.calls += 1
        if self.calls < self.fail_from:
            return self.real(tensors, filename, metadata=metadata)
        Path(filename).write_bytes(b"\0" * 1000)  # what had fit
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


# ----------------------------------------------------------------------------------------------------------
# A full disk


def test_disk_full_during_a_checkpoint_fails_clearly_and_keeps_the_previous_one(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", max_steps=STEPS, eval_every=EVERY)
    monkeypatch.setattr(runs, "save_file", FullDisk(fail_from_call=3))  # 2 files per checkpoint: step 4 fails
    with pytest.raises(CheckpointError) as e:
        Trainer(run).fit()
    message = str(e.value)
    assert "Could not save the checkpoint of step 4: No space left on device" in message
    assert "the previous checkpoint (step 2) is intact" in message
    status = runs.read_status(run)
    assert status["state"] == "failed" and status["message"] == message
    assert no_leftovers(run)  # the half-written checkpoint folder is gone
    assert runs.checkpoint_meta(run, "last")["step"] == 2
    runs.load_model(run, "last")

    monkeypatch.undo()  # space was freed: resume finishes the run
    result = Trainer(run).fit()
    assert result.state == "completed" and result.step == STEPS


def test_disk_full_while_writing_the_pointer_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    run = make_run(tmp_path / "run", max_steps=STEPS, eval_every=EVERY)
    real = files.atomic_write_bytes
    calls = {"last.json": 0}

    def full_on_second_pointer(path, data):
        if Path(path).name == "last.json":
            calls["last.json"] += 1
            if calls["last.json"] == 2:
                raise files.write_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path)
        return real(path, data)

    monkeypatch.setattr(files, "atomic_write_bytes", full_on_second_pointer)
    with pytest.raises(CheckpointError, match=r"step 4: No space left on device; the previous checkpoint \(step 2\)"):
        Trainer(run).fit()
    assert runs.checkpoint_meta(run, "last")["step"] == 2 and no_leftovers(run)
    assert [d.name for d in (run / runs.CKPT_DIR).iterdir() if d.is_dir()] == [runs.checkpoint_dir(run).name]


def test_disk_full_while_creating_a_run_says_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """Once a traceback (an OSError from the token write) and a half-made run directory nobody could see."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("To be, or not to be, that is the question.\n" * 200)
    out = tmp_path / "runs" / "r"
    args = ["train", "--corpus", str(corpus), "--preset", "tiny", "--max-steps", "1", "--out", str(out), "--quiet"]
    real = os.fsync

    def full_disk(fd):  # the validation tokens, written second, do not fit
        if "val.bin" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(files.os, "fsync", full_disk)
    code = cli.main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len([line for line in err if "error" in line]) == 1
    assert err[-1].startswith("newleaf: error: Could not write") and "No space left on device" in err[-1], err
    assert not out.exists() and not list(out.parent.iterdir())  # nothing half-made, not even hidden
    monkeypatch.undo()  # space was freed: the same command works
    assert cli.main(args) == 0 and runs.read_config(out)


def test_cli_says_one_clear_line_and_exits_non_zero_on_a_full_disk(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path / "run", max_steps=STEPS, eval_every=EVERY)
    monkeypatch.setattr(runs, "save_file", FullDisk(fail_from_call=3))
    code = cli.main(["train", "--out", str(run), "--resume", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith(
        "newleaf: error: Could not save the checkpoint of step 4: No space "
        "left on device; the previous checkpoint (step 2) is intact"
    )
    assert "Traceback" not in "\n".join(err)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real, small filesystem (tmpfs) when this machine lets us mount one (root in a container usually can)."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    size = 2 * 1024 * 1024
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_really_full_disk(small_tmpfs, tmp_path):
    """2 MB of disk: the token files and the first checkpoint (1.3 MB) fit, the second does not."""
    run = make_run(
        small_tmpfs / "run", n_layer=2, n_head=4, n_embd=64, block_size=32, max_steps=STEPS, eval_every=EVERY
    )
    code = cli.main(["train", "--out", str(run), "--resume", "--quiet"])
    assert code != 0
    status = runs.read_status(run)
    assert status["state"] == "failed" and "No space left on device" in status["message"], status
    last = runs.checkpoint_meta(run, "last")
    assert last is not None and last["step"] == 2
    runs.load_model(run, "last")
    assert not any(files.is_temp(p) for p in (run / runs.CKPT_DIR).iterdir())
    # with room again (the run copied to a bigger disk), it resumes from step 2 and finishes
    moved = shutil.copytree(run, tmp_path / "moved")
    result = Trainer(moved).fit()
    assert result.state == "completed" and result.step == STEPS


# ----------------------------------------------------------------------------------------------------------
# A runs directory that cannot be written


@pytest.fixture
def not_a_folder(tmp_path) -> Path:
    """A path that can never be created: its parent is a regular file (works as root, where chmod does not)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "runs"


def test_unwritable_runs_directory_gives_a_clear_error(not_a_folder):
    with pytest.raises(NewleafError, match="Cannot create the runs directory .*: Not a directory"):
        Jobs(not_a_folder)
    with pytest.raises(NewleafError, match="Could not write .*: Not a directory"):
        make_run(not_a_folder / "run")
    assert not_a_folder.parent.read_text() == "not a folder"


def test_read_only_runs_directory(tmp_path):
    """A read-only filesystem under the runs directory: creating a run says so; nothing half-made is left."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        jobs = Jobs(mnt)  # an existing (empty) runs directory is fine to list...
        try:
            assert jobs.list_runs("someone") == []
            run_id, path = jobs.new_run_dir("owner", "x")
            with pytest.raises(NewleafError, match="Read-only file system"):  # ...but no run can be made in it
                make_run(path)
            assert not path.exists()
        finally:
            jobs.shutdown()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ----------------------------------------------------------------------------------------------------------
# NaN / inf


@pytest.mark.parametrize("poison", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, poison):
    run = make_run(tmp_path / f"run-{uuid.uuid4().hex[:4]}", max_steps=10, eval_every=EVERY, log_every=1)
    real_forward, calls = GPT.forward, {"n": 0}

    def forward(self, *args, **kwargs):  # the 6th training step's loss goes bad
        out = real_forward(self, *args, **kwargs)
        if self.training and isinstance(out, tuple) and out[-1] is not None:
            calls["n"] += 1
            if calls["n"] == 6:
                return (*out[:-1], out[-1] * poison)
        return out

    monkeypatch.setattr(GPT, "forward", forward)
    result = Trainer(run).fit()
    assert result.state == "failed" and result.step == 5
    assert f"the loss became {poison}" in result.message
    assert "the last good checkpoint (step 4) is kept" in result.message and "lower learning rate" in result.message
    status = runs.read_status(run)
    assert status["state"] == "failed" and status["message"] == result.message
    assert runs.checkpoint_meta(run, "last")["step"] == 4
    model, _ = runs.load_model(run, "last")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for r in files.read_jsonl(run / runs.METRICS)[0]:  # nothing non-finite was logged
        assert all(math.isfinite(v) for v in r.values() if isinstance(v, float))

    monkeypatch.undo()  # e.g. with a lower learning rate: resume from step 4
    assert Trainer(run).fit().state == "completed"


def test_finite_loss_with_non_finite_gradients_stops_before_the_update(tmp_path, monkeypatch):
    run = make_run(tmp_path / "grads", max_steps=10, eval_every=EVERY, log_every=1)
    real_forward, calls = GPT.forward, {"n": 0}

    def forward(self, *args, **kwargs):  # step 6: the loss's value is unchanged, its gradient is NaN
        out = real_forward(self, *args, **kwargs)
        if self.training and isinstance(out, tuple) and out[-1] is not None:
            calls["n"] += 1
            if calls["n"] == 6:
                w = self.transformer.wte.weight[0, 0]
                return (*out[:-1], out[-1] + torch.sqrt(w * 0))  # + 0, with d/dw = 0 * inf = NaN
        return out

    monkeypatch.setattr(GPT, "forward", forward)
    result = Trainer(run).fit()
    assert result.state == "failed" and result.step == 5 and "the gradients became nan" in result.message
    assert "the last good checkpoint (step 4) is kept" in result.message
    model, _ = runs.load_model(run, "last")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_non_finite_validation_loss_saves_no_checkpoint_of_those_weights(tmp_path, monkeypatch):
    run = make_run(tmp_path / "val", max_steps=10, eval_every=EVERY, log_every=1)
    real_evaluate, calls = Trainer.evaluate, {"n": 0}

    def evaluate(self, model):  # the second evaluation (step 2 x EVERY) finds bad weights
        calls["n"] += 1
        return float("nan") if calls["n"] == 2 else real_evaluate(self, model)

    monkeypatch.setattr(Trainer, "evaluate", evaluate)
    result = Trainer(run).fit()
    assert result.state == "failed" and "the validation loss became nan" in result.message
    assert f"the last good checkpoint (step {EVERY}) is kept" in result.message
    assert runs.checkpoint_meta(run, "last")["step"] == EVERY
    assert runs.read_status(run)["state"] == "failed"
    for r in files.read_jsonl(run / runs.METRICS)[0]:
        assert all(math.isfinite(v) for v in r.values() if isinstance(v, float))


# ----------------------------------------------------------------------------------------------------------
# An app restart while jobs run


def test_after_an_app_restart_a_still_running_job_holds_its_slot_and_its_end_is_noticed(tmp_path):
    import sys

    from tests.reliability.helpers import own, wait_for

    root = (tmp_path / "runs").resolve()
    root.mkdir()
    gone = own(make_run(root / "gone"), "a")
    runs.write_status(gone, "running", "Training.", pid=2**22 + 12345)  # a process that no longer exists
    orphan = own(make_run(root / "orphan"), "a")
    # stands in for a worker the previous app started: its command line names the run, as the real one does
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(orphan)])
    own(make_run(root / "waiting", max_steps=2, eval_every=2), "a")
    try:
        runs.write_status(orphan, "running", "Training.", pid=proc.pid)
        jobs = Jobs(root, max_concurrent=1, poll_seconds=0.1)
        try:
            assert runs.read_status(gone)["state"] == "stopped"
            assert "Interrupted when the app restarted" in runs.read_status(gone)["message"]
            assert jobs.state("orphan")["state"] == "running"
            with pytest.raises(NewleafError, match="already training"):
                jobs.start("a", "orphan")
            jobs.start("a", "waiting")
            time.sleep(1.0)
            assert jobs.state("waiting")["state"] == "queued"  # the orphan still holds the only slot
            proc.kill()
            proc.wait()
            wait_for(lambda: runs.read_status(orphan)["state"] == "failed", 30, what="the orphan marked failed")
            assert "started before the app restarted" in runs.read_status(orphan)["message"]
            wait_for(lambda: jobs.state("waiting")["state"] == "completed", 120, what="the queued job to run")
        finally:
            jobs.shutdown()
    finally:
        proc.kill()
