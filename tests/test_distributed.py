"""Distributed data parallel training on the CPU (gloo, 2 processes under torchrun): the loss curve
matches one process with the same global batch."""

import os
import socket
import subprocess
import sys

import pytest

from core import files, runs
from core.train import Trainer
from tests.conftest import REPO
from tests.test_train import make_run


def torchrun(run_dir, nproc=2):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1",
            f"--master_port={port}",
            "-m",
            "core",
            "train",
            "--out",
            str(run_dir),
            "--resume",
            "--quiet",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def curve(run_dir):
    records, _ = files.read_jsonl(run_dir / runs.METRICS)
    return [(r["step"], r["train_loss"], r.get("val_loss"), r["lr"]) for r in records]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path, shakespeare_text):
    text = shakespeare_text[:50_000]
    settings = dict(batch_size=4, grad_accum=2, max_steps=30, eval_every=10, log_every=5, lr=3e-3)
    one = make_run(tmp_path / "one", text, **settings)
    two = make_run(tmp_path / "two", text, **settings)
    Trainer(one).fit()
    r = torchrun(two)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = curve(one), curve(two)
    assert [x[0] for x in a] == [x[0] for x in b] and len(a) == 6
    for (step, la, va, lra), (_, lb, vb, lrb) in zip(a, b):
        assert lb == pytest.approx(la, rel=1e-4, abs=1e-5), step
        assert lrb == pytest.approx(lra)
        if va is not None:
            assert vb == pytest.approx(va, rel=1e-4, abs=1e-5), step
    assert runs.read_status(two)["state"] == "completed"
    assert runs.checkpoint_meta(two)["step"] == 30
    assert "2 processes" not in runs.read_status(one)["message"]


def test_grad_accum_must_split_over_the_processes(tmp_path, shakespeare_text):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], batch_size=4, grad_accum=1, max_steps=5)
    r = torchrun(run)
    assert r.returncode != 0
    assert "grad_accum (1) must be a multiple of 2" in r.stderr
