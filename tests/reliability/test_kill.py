"""SIGKILL the training process at random moments, some of them in the middle of writing a checkpoint: the run
directory stays readable, the last complete checkpoint loads, resume finishes the run exactly as an
uninterrupted one would have, and at most one checkpoint interval of work is lost.

The trainer is the CLI's own entry point (`python -m core train --resume`, core.cli.main). Most trials fork
it from a multiprocessing fork server that has torch imported already (a fresh interpreter costs seconds on
the CI machine); one trial runs the real `python -m core train` command. Kills are timed from what the
process has done (its first logged step, the appearance of a checkpoint's temporary folder), plus a seeded
random delay: a slow machine moves the kills to other steps, never the outcome.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core import cli, files, runs
from core.train import Trainer
from tests.reliability.helpers import REPO, make_run, wait_for

INTERVAL = 2  # a checkpoint every 2 steps (eval_every)
STEPS = 30
SEED = 20240611
SHAPE = dict(n_layer=2, n_head=4, n_embd=64, block_size=32)  # big enough that a checkpoint takes a while to write


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    template = make_run(root / "template", **SHAPE, max_steps=STEPS, eval_every=INTERVAL, log_every=INTERVAL)
    reference = root / "reference"
    shutil.copytree(template, reference)
    assert Trainer(reference).fit().state == "completed"
    ref_weights, _ = runs.load_model(reference, "last")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["core.cli", "core.train", "core.datasets", "torch._dynamo"])
    return {"root": root, "template": template, "reference": ref_weights.state_dict(), "mp": ctx}


def fresh(setup, name: str) -> Path:
    run = setup["root"] / name
    shutil.copytree(setup["template"], run)
    return run


def start_forked(setup, run: Path):
    proc = setup["mp"].Process(target=cli.main, args=(["train", "--out", str(run), "--resume", "--quiet"],))
    proc.start()
    return proc


def temp_checkpoints(run: Path) -> list[str]:
    try:
        return [e.name for e in os.scandir(run / runs.CKPT_DIR) if files.is_temp(Path(e.path)) and e.is_dir()]
    except FileNotFoundError:
        return []


def logged_steps(run: Path) -> list[int]:
    return [r["step"] for r in files.read_jsonl(run / runs.METRICS)[0]]


def kill_inside_a_write(run: Path, is_alive, kill, skip: int) -> bool:
    """Poll for a checkpoint's temporary folder and kill as soon as the (skip+1)-th one appears. True when the
    kill landed while a checkpoint was being written."""
    seen, current = 0, None
    while is_alive():
        tmp = temp_checkpoints(run)
        if tmp and tmp[0] != current:
            current = tmp[0]
            seen += 1
            if seen > skip:
                kill()
                return bool(temp_checkpoints(run))
        time.sleep(0.0005)
    return False


def check_after_kill(setup, run: Path, resume_with_cli: bool) -> dict:
    """Everything the promise says, for one killed run; returns what happened, for the trial summary."""
    # 1. the run directory is readable
    config = runs.read_config(run)
    assert config["train"]["max_steps"] == STEPS
    assert isinstance(runs.read_status(run)["state"], str)
    # 2. the last complete checkpoint loads; a half-written one is ignored
    reported = max(logged_steps(run), default=0)
    last = runs.checkpoint_meta(run, "last")
    saved = last["step"] if last else 0
    if last:
        model, tok = runs.load_model(run, "last")
        assert model.config.vocab_size == tok.vocab_size
        assert not runs.checkpoint_dir(run, "last").name.startswith(".")
        runs.load_model(run, "best")
    # 3. at most one checkpoint interval of work is lost
    assert reported - saved <= INTERVAL, (reported, saved)
    leftovers = temp_checkpoints(run)
    # 4. resume continues from the checkpoint to the end...
    if resume_with_cli:
        assert cli.main(["train", "--out", str(run), "--resume", "--quiet"]) == 0
        state = runs.read_status(run)
        assert state["state"] == "completed" and state["step"] == STEPS
    else:
        result = Trainer(run).fit()
        assert result.state == "completed" and result.step == STEPS
    # ...cleans up what the killed writer left...
    ckdir = run / runs.CKPT_DIR
    assert not temp_checkpoints(run) and not [p for p in ckdir.iterdir() if p.name.endswith(".tmp")]
    # ...logs each step once, and ends with exactly the weights of a run that was never interrupted
    steps = logged_steps(run)
    assert steps == sorted(set(steps)) and steps[-1] == STEPS
    model, _ = runs.load_model(run, "last")
    for k, v in setup["reference"].items():
        assert torch.equal(model.state_dict()[k], v), k
    return {"killed_after_step": reported, "checkpoint": saved, "leftover_tmp": bool(leftovers)}


def test_sigkill_at_random_moments_loses_at_most_one_interval(setup):
    rng = random.Random(SEED)
    outcomes = []
    for trial in range(5):
        run = fresh(setup, f"random-{trial}")
        proc = start_forked(setup, run)
        wait_for(
            lambda run=run, proc=proc: logged_steps(run) or not proc.is_alive(),
            timeout=120,
            every=0.01,
            what="the first logged step",
        )
        time.sleep(rng.uniform(0.0, 0.6))
        proc.kill()
        proc.join()
        outcomes.append(check_after_kill(setup, run, resume_with_cli=trial % 2 == 0))
    print("kill trials:", outcomes)
    # the kills landed somewhere in the middle of training (not all before it started or after it ended)
    assert any(0 < o["killed_after_step"] < STEPS for o in outcomes), outcomes


def test_sigkill_while_a_checkpoint_is_being_written(setup):
    rng = random.Random(SEED + 1)
    inside = 0
    for trial in range(3):
        run = fresh(setup, f"mid-write-{trial}")
        proc = start_forked(setup, run)
        inside += kill_inside_a_write(run, proc.is_alive, proc.kill, skip=rng.randint(0, 5))
        proc.join()
        check_after_kill(setup, run, resume_with_cli=trial == 0)
    assert inside >= 1, "no kill landed inside a checkpoint write"


def test_sigkill_of_the_real_cli_command(setup):
    """The command the app runs for every job, as its own process, killed while it writes a checkpoint."""
    run = fresh(setup, "cli")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "train", "--out", str(run), "--resume", "--quiet"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        kill_inside_a_write(run, lambda: proc.poll() is None, proc.kill, skip=2)
    finally:
        proc.kill()
        proc.wait()
    check_after_kill(setup, run, resume_with_cli=True)
