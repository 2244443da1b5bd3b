"""A responsive app during training: the latency of a generation request through the app while a training
job runs, against the same request with the machine idle, measured in one run.

    python -m bench.responsiveness

The app runs a training process at lower priority (nice 10), so the UI's own requests go first; its threads
are NEWLEAF_TRAIN_THREADS (default: every core). Also measured: the sampler's own compute with and without
such a training process running.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from gradio_client import Client

from bench.common import report
from core import runs
from core.datasets import load_builtin
from core.engine import SamplingParams, generate_tokens
from core.model import GPT, GPTConfig, preset_config
from core.prepare import prepare_run
from core.tokenizer import CharTokenizer
from core.train import Trainer
from core.train_config import TrainConfig
from playground.jobs import Jobs, owner_id
from playground.settings import Settings
from playground.ui import build_app


class PausedOrTraining:
    """A training process, paused (SIGSTOP) for the idle measurements and running for the busy ones, taken in
    turn so that a slow spell of the shared machine hits both. It must really train while it is called busy:
    a process that died, or got no CPU time during a busy measurement, stops the benchmark with an error
    (it would otherwise measure an idle machine and call it busy)."""

    def __init__(self, pid: int, alive):
        self.pid, self.alive = pid, alive
        self.cpu = None

    def _cpu_ticks(self) -> int | None:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks

    def busy(self) -> None:
        self._check_alive()
        os.kill(self.pid, signal.SIGCONT)
        time.sleep(0.2)  # let it get going
        self.cpu = self._cpu_ticks()

    def idle(self) -> None:
        self._check_alive()
        if self.cpu is not None:  # the busy measurement that just ended: did it train?
            now = self._cpu_ticks()
            if now is not None and now <= self.cpu:
                raise RuntimeError("the training process got no CPU time while it was measured as busy")
        os.kill(self.pid, signal.SIGSTOP)
        time.sleep(0.2)
        self.cpu = None

    def _check_alive(self) -> None:
        if not self.alive():
            raise RuntimeError("the training process died: an idle machine would be measured as busy")

    def end(self) -> None:
        try:
            os.kill(self.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def in_turn(measure, training: PausedOrTraining, repeats: int) -> tuple[float, float]:
    """Median idle and busy values of `measure`, idle and busy taken in turn."""
    idle, busy = [], []
    for _ in range(repeats):
        training.idle()
        idle.append(measure())
        training.busy()
        busy.append(measure())
    training.idle()  # checks the last busy measurement too
    return statistics.median(idle), statistics.median(busy)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None, repeats: int = 7, new_tokens: int = 100) -> float:
    token = "bench-owner"
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        os.environ["NEWLEAF_RUNS"] = str(root)
        text = load_builtin("shakespeare").text
        tok = CharTokenizer.from_text(text)

        def new_run(name, steps):
            run = prepare_run(
                root / name,
                text,
                tok,
                preset_config("micro", tok.vocab_size),
                TrainConfig(max_steps=steps, eval_every=steps, sample_tokens=1, device="cpu"),
                extra={"owner": owner_id(token), "title": name},
            )
            return run

        Trainer(new_run("served", 20)).fit()  # the model the requests sample from
        settings = Settings.from_env()
        jobs = Jobs(root, max_concurrent=1, train_threads=settings.train_threads)
        demo, _ = build_app(settings, jobs)
        demo.queue()
        port = _free_port()
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)

        def latency() -> float:
            t = time.perf_counter()
            client.predict(
                token,
                "served",
                "ROMEO:",
                new_tokens,
                0.0,
                0,
                1.0,
                0.0,
                1.0,
                0.0,
                0.0,
                -1,
                "",
                1,
                api_name="/generate",
            )
            return time.perf_counter() - t

        try:
            latency()  # warm up the model cache
            new_run("busy", 1_000_000)
            jobs.start(token, "busy")
            while not (root / "busy" / runs.METRICS).exists():
                if not jobs.has_process("busy") and jobs.state("busy")["state"] != "queued":
                    raise RuntimeError(f"the training job did not start: {jobs.state('busy').get('message')}")
                time.sleep(0.5)
            proc = jobs.procs["busy"]
            training = PausedOrTraining(proc.pid, lambda: proc.poll() is None)
            try:
                idle, busy = in_turn(latency, training, repeats)
            finally:
                training.end()
            jobs.stop(token, "busy")
        finally:
            jobs.shutdown()
            demo.close()
    compute_ratio = generation_compute_under_training(settings.train_threads, repeats)
    print(
        f"generation latency: idle {idle * 1000:.0f} ms, during training {busy * 1000:.0f} ms "
        f"({busy / idle:.2f}x idle; target <= 2x)"
    )
    print(
        f"generation compute alone (256 tokens, no HTTP): {compute_ratio:.2f}x idle while a training process "
        f"runs with {settings.train_threads} thread(s) at nice 10"
    )
    return report(
        "responsiveness (generation requests per second, during training vs idle)", 1 / busy, 1 / idle, "req/s"
    )


def generation_compute_under_training(threads: int, repeats: int = 7) -> float:
    """The sampler's own time for 256 tokens (the app's default shape, its context holding them all), while a
    training process runs as the app starts one (its thread count, nice 10), over the same with the machine
    idle. More sensitive than the latency through the app, which HTTP and streaming dominate."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=264, vocab_size=65)).eval()

    def once() -> float:
        t = time.perf_counter()
        for _ in generate_tokens(model, [1] * 8, SamplingParams(max_new_tokens=256, temperature=0)):
            pass
        return time.perf_counter() - t

    once()
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "core", "train", "--out", f"{d}/run", "--quiet", "--max-time", "300"],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: os.nice(10),
        )
        training = PausedOrTraining(proc.pid, lambda: proc.poll() is None)
        try:
            while not (Path(d) / "run" / "metrics.jsonl").exists():
                training.busy()  # checks it is alive; waits until it trains
                time.sleep(0.3)
            idle, busy = in_turn(once, training, repeats)
        finally:
            training.end()
            proc.kill()
            proc.wait()
    return busy / idle


if __name__ == "__main__":
    main()
