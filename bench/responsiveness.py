"""A responsive app during training: the latency of a generation request through the app while a training
job runs, against the same request with the machine idle, measured in one run.

    python -m bench.responsiveness

The app runs a training process at lower priority (nice 10), so the UI's own requests go first; its threads
are NEWLEAF_TRAIN_THREADS (default: every core). Also measured: the sampler's own compute with and without
such a training process running.
"""

from __future__ import annotations

import os
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
            times = []
            for _ in range(repeats):
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
                times.append(time.perf_counter() - t)
            return statistics.median(times)

        try:
            latency()  # warm up the model cache
            idle = latency()
            new_run("busy", 1_000_000)
            jobs.start(token, "busy")
            while (
                runs.read_status(root / "busy").get("message", "").startswith("Starting")
                or not (root / "busy" / runs.METRICS).exists()
            ):
                time.sleep(0.5)
            busy = latency()
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
    idle = statistics.median(once() for _ in range(repeats))
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
        try:
            while not (Path(d) / "run" / "metrics.jsonl").exists() and proc.poll() is None:
                time.sleep(0.5)  # until it trains
            busy = statistics.median(once() for _ in range(repeats))
        finally:
            proc.kill()
            proc.wait()
    return busy / idle


if __name__ == "__main__":
    main()
