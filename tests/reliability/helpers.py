"""What the reliability tests share: small runs made on the spot, owners, waiting, and the fuzzing settings."""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, settings

from core import files, runs
from core.model import GPTConfig
from core.prepare import prepare_run
from core.tokenizer import CharTokenizer
from core.train import Trainer
from core.train_config import TrainConfig
from playground.jobs import owner_id
from tests.conftest import REPO, SHAKESPEARE  # noqa: F401  (REPO: for the modules importing it from here)

TEXT = SHAKESPEARE.read_text(encoding="utf-8")[:40_000]

# Fuzzing: no wall-clock deadline (a slow, shared CI machine must not fail a test), the same examples on every
# run (derandomize: CI is reproducible), and a moderate number of them: the whole fuzz part takes well under a
# minute. NEWLEAF_FUZZ_EXAMPLES raises the count for a longer local hunt.
FUZZ_EXAMPLES = int(os.environ.get("NEWLEAF_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    deadline=None,
    derandomize=FUZZ_EXAMPLES is None,
    database=None,
    print_blob=True,
    suppress_health_check=list(HealthCheck),
    max_examples=FUZZ_EXAMPLES or 60,
)


def fuzz(max_examples: int):
    return settings(FUZZ, max_examples=FUZZ_EXAMPLES or max_examples)


def make_run(path, text: str = TEXT, *, n_layer=2, n_head=2, n_embd=32, block_size=32, **train) -> Path:
    """A run directory of a small character-level model (not trained yet)."""
    tok = CharTokenizer.from_text(text)
    cfg = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, vocab_size=tok.vocab_size)
    defaults = dict(
        batch_size=4,
        max_steps=6,
        eval_every=3,
        eval_batches=1,
        log_every=3,
        warmup_steps=2,
        sample_every=10**6,
        sample_tokens=4,
        lr=3e-3,
        device="cpu",
        threads=1,
    )
    defaults.update(train)
    return prepare_run(path, text, tok, cfg, TrainConfig(**defaults), data_name="test")


def trained_run(path, **kw) -> Path:
    run = make_run(path, **kw)
    result = Trainer(run).fit()
    assert result.state == "completed", result
    return run


def own(run_dir, token: str, title: str | None = None) -> Path:
    """Give a run to the browser session holding `token` (as the app records it: a hash of the token)."""
    config = runs.read_config(run_dir)
    config.update(owner=owner_id(token) if token != "shared-example" else token, title=title or Path(run_dir).name)
    files.atomic_write_json(Path(run_dir) / runs.CONFIG, config)
    return Path(run_dir)


def wait_for(predicate, timeout: float = 120.0, every: float = 0.2, what: str = "the condition"):
    """Poll until predicate() is truthy. The timeout only guards against a hang: passing never depends on speed."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@contextmanager
def no_hang(seconds: int = 60):
    """Fail (instead of hanging CI) when the body runs for minutes: a parser that loops forever is a bug."""

    def alarm(*_):
        raise TimeoutError(f"hung for more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")
