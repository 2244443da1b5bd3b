"""Another user's generation latency while a stranger attacks the app the ways a public Space invites, against
the same requests with nobody attacking, measured in turn in one run:

    uploads   two runs with the largest logs an upload may carry (100,000 lines each), their run list refreshed
              over and over
    stops     generation requests with the most stop strings allowed, and with 100,000 (refused)
    disk      a job whose worker dies while the app cannot write (a full disk), the app noticing it meanwhile

    python -m bench.hostile [--repeats 7]

Target (issue 13): each within 2x idle. The figures go in RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from gradio_client import Client, handle_file

from bench.common import report
from core import files, runs
from core.datasets import load_builtin
from core.model import preset_config
from core.prepare import prepare_run
from core.run_archive import checkpoint_zip
from core.tokenizer import CharTokenizer
from core.train import Trainer
from core.train_config import TrainConfig
from playground.jobs import owner_id
from playground.settings import Settings
from playground.ui import build_app

VICTIM, STRANGER = "bench-victim", "bench-stranger"
MAX_LOG_LINES = 100_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def big_log_zip(run: Path, dest: Path) -> Path:
    """The run's checkpoint zip with a metrics log of the most lines an upload may hold (real records)."""
    (dest.parent / "plain").mkdir(parents=True, exist_ok=True)
    plain = checkpoint_zip(run, dest.parent / "plain", "last")
    line = json.dumps({"step": 1, "train_loss": 2.0, "lr": 1e-3, "tokens_per_sec": 1.0, "elapsed_s": 1.0}) + "\n"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/" + runs.METRICS):
                data = (line * MAX_LOG_LINES).encode()
            zout.writestr(info.filename, data)
    return dest


class Attack:
    """A stranger's requests sent over and over from a thread of its own while the victim is measured."""

    def __init__(self, send):
        self.send, self.stop, self.sent = send, threading.Event(), 0

    def __enter__(self):
        def loop():
            while not self.stop.is_set():
                try:
                    self.send()
                except Exception:  # refusals are the point; keep attacking
                    pass
                self.sent += 1

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=120)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    ratios = {}
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "runs"
        os.environ["NEWLEAF_RUNS"] = str(root)
        text = load_builtin("shakespeare").text
        tok = CharTokenizer.from_text(text)
        served = prepare_run(
            root / "served", text, tok, preset_config("micro", tok.vocab_size),
            TrainConfig(max_steps=20, eval_every=20, sample_tokens=1, device="cpu"),
            extra={"owner": owner_id(VICTIM), "title": "served"},
        )  # fmt: skip
        Trainer(served).fit()
        upload = big_log_zip(served, Path(d) / "zips" / "big-logs.zip")
        demo, ctx = build_app(Settings.from_env())
        demo.queue()
        port = _free_port()
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
        url = f"http://127.0.0.1:{port}/"
        victim, stranger = Client(url, verbose=False), Client(url, verbose=False)

        def generate(client, owner, stop="", run_id="served"):
            return client.predict(owner, run_id, "ROMEO:", 60, 0.0, 0, 1.0, 0.0, 1.0, 0.0, 0.0, -1, stop, 1,
                                  api_name="/generate")  # fmt: skip

        def latency() -> float:
            t = time.perf_counter()
            generate(victim, VICTIM)
            return time.perf_counter() - t

        def measure(name: str, attack) -> None:
            idle, busy = [], []
            for _ in range(args.repeats):  # in turn: a slow spell of the machine hits both
                idle.append(latency())
                with Attack(attack) as a:
                    busy.append(latency())
                if not a.sent:
                    raise RuntimeError(f"the {name} attack sent nothing: the measurement would mean nothing")
            i, b = statistics.median(idle), statistics.median(busy)
            print(f"{name}: victim's generation {i * 1000:.0f} ms idle, {b * 1000:.0f} ms under attack")
            ratios[name] = report(f"hostile {name} (victim requests per second, attacked vs idle)", 1 / b, 1 / i,
                                  "req/s")  # fmt: skip

        try:
            latency()  # load the model once
            for _ in range(2):
                stranger.predict(STRANGER, handle_file(str(upload)), 0, "en", api_name="/upload_run")
            measure("uploads", lambda: stranger.predict(STRANGER, "en", api_name="/list_runs"))
            own = next(r["id"] for r in ctx.jobs.list_runs(STRANGER) if not r["shared"])  # an uploaded run
            most = "\n".join(f"{i:03d}" + "x" * 196 for i in range(32))
            many = ",".join(f"s{i}" for i in range(100_000))
            measure("stops", lambda: (generate(stranger, STRANGER, most, own), generate(stranger, STRANGER, many, own)))
            measure("disk", lambda: dying_job_on_a_full_disk(ctx.jobs, served.parent))
        finally:
            demo.close()
            ctx.jobs.shutdown()
    return ratios


def dying_job_on_a_full_disk(jobs, root: Path) -> None:
    """Start a job for the stranger, make the app's own writes fail for it as a full disk does, kill its worker,
    and wait until the app has noticed (its state comes from the process)."""
    run_id, path = jobs.new_run_dir(STRANGER, "doomed")
    text = load_builtin("shakespeare").text[:200_000]
    tok = CharTokenizer.from_text(text)
    prepare_run(path, text, tok, preset_config("tiny", tok.vocab_size),
                TrainConfig(max_steps=10**6, eval_every=50, device="cpu"),
                extra={"owner": owner_id(STRANGER), "title": "doomed"})  # fmt: skip
    jobs.start(STRANGER, run_id)
    deadline = time.time() + 60
    while run_id not in jobs.procs and time.time() < deadline:
        time.sleep(0.1)
    real = runs.write_status

    def full_disk(run_dir, *a, **k):
        if Path(run_dir) == path:
            raise files.write_error(OSError(28, "No space left on device"), Path(run_dir) / runs.STATUS)
        return real(run_dir, *a, **k)

    runs.write_status = full_disk
    try:
        proc = jobs.procs.get(run_id)
        if proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
        while jobs.state(run_id)["state"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.2)
    finally:
        runs.write_status = real
    jobs.delete(STRANGER, run_id)


if __name__ == "__main__":
    main()
