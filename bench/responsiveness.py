"""A responsive app during training: the latency of a generation request through the app while a training
job runs, against the same request with the machine idle, measured in one run.

    python -m bench.responsiveness

The app caps a training process's threads (NEWLEAF_TRAIN_THREADS, default: cores - 1) and lowers its
priority (nice 10), so the UI's own requests go first.
"""
from __future__ import annotations

import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import report


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None, repeats: int = 7, new_tokens: int = 100) -> float:
    from gradio_client import Client

    from core import runs
    from core.datasets import load_builtin
    from core.model import preset_config
    from core.tokenizer import CharTokenizer
    from core.train import Trainer, TrainConfig, prepare_run
    from playground.jobs import Jobs, owner_id
    from playground.settings import Settings
    from playground.ui import build_app

    token = "bench-owner"
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        os.environ["NEWLEAF_RUNS"] = str(root)
        text = load_builtin("shakespeare").text
        tok = CharTokenizer.from_text(text)

        def new_run(name, steps):
            run = prepare_run(root / name, text, tok, preset_config("micro", tok.vocab_size),
                              TrainConfig(max_steps=steps, eval_every=steps, sample_tokens=1, device="cpu"),
                              extra={"owner": owner_id(token), "title": name})
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
                client.predict(token, "served", "ROMEO:", new_tokens, 0.0, 0, 1.0, 0.0, 1.0, 0.0, 0.0, -1, "", 1,
                               api_name="/generate")
                times.append(time.perf_counter() - t)
            return statistics.median(times)

        try:
            latency()  # warm up the model cache
            idle = latency()
            new_run("busy", 1_000_000)
            jobs.start(token, "busy")
            while runs.read_status(root / "busy").get("message", "").startswith("Starting") or \
                    not (root / "busy" / runs.METRICS).exists():
                time.sleep(0.5)
            busy = latency()
            jobs.stop(token, "busy")
        finally:
            jobs.shutdown()
            demo.close()
    # ratio = idle / busy: 1.0 means training costs generation nothing; the target is >= 0.5 (within 2x)
    print(f"generation latency: idle {idle * 1000:.0f} ms, during training {busy * 1000:.0f} ms "
          f"({busy / idle:.2f}x idle; target <= 2x)")
    return report("responsiveness (generation requests per second, during training vs idle)", 1 / busy, 1 / idle,
                  "req/s")


if __name__ == "__main__":
    main()
