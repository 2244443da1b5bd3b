"""Training jobs of the app: who owns which run, a queue with a global limit on concurrent jobs, and one
training *process* per job.

A job runs the same command a user would type (`python -m core train --out RUN --resume`) in its own
process and talks to the app only through its run directory. So a crash of training cannot take the app
down, a stop is reliable, the UI never freezes, and a page refresh (or an app restart) loses nothing: the
run directory says where the job is.

Ownership: each browser session holds a random owner token (in its browser storage); a run records the
SHA-256 of its owner's token. Only the owner can see, stop or delete a run, except runs marked as shared
examples, which everyone can read.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from core import runs
from core.errors import NewleafError
from core.messages import Text

SHARED_OWNER = "shared-example"
WORKER_LOG = "worker.log"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ACTIVE_STATES = ("queued", "running")


def new_owner_token() -> str:
    return secrets.token_urlsafe(24)


def owner_id(token: str | None) -> str:
    if not token or not isinstance(token, str):
        raise NewleafError(Text("jobs.no_identity"))
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]


def slug(text: str, limit: int = 32) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()
    return s[:limit].strip("-") or "run"


class Jobs:
    def __init__(self, runs_dir, max_concurrent: int = 1, train_threads: int = 1, poll_seconds: float = 0.5):
        self.root = Path(runs_dir).resolve()
        self.max_concurrent = max(1, max_concurrent)
        self.train_threads = max(1, train_threads)
        self.lock = threading.RLock()
        self.queue: list[str] = []  # run ids waiting for a free slot, oldest first
        self.procs: dict[str, subprocess.Popen] = {}  # run id -> its training process
        self.orphans: dict[str, int] = {}  # run id -> pid of a process an earlier app started
        self._closed = threading.Event()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise NewleafError(Text("jobs.no_runs_dir", path=str(self.root), reason=str(e.strerror))) from None
        self._recover()
        self._thread = threading.Thread(target=self._monitor, args=(poll_seconds,), daemon=True, name="newleaf-jobs")
        self._thread.start()

    # -- paths and access -------------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        """The directory of a run id; ids that could leave the runs directory are refused."""
        if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
            raise NewleafError(Text("jobs.bad_name", run_id=run_id))
        path = self.root / run_id
        if path.is_symlink() or path.resolve().parent != self.root:
            raise NewleafError(Text("jobs.bad_name", run_id=run_id))
        return path

    def new_run_dir(self, title: str) -> tuple[str, Path]:
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(title)}-{secrets.token_hex(3)}"
        return run_id, self.run_dir(run_id)

    def owner_of(self, run_id: str) -> str | None:
        try:
            return runs.read_config(self.run_dir(run_id)).get("owner")
        except NewleafError:
            return None

    def check_read(self, token: str, run_id: str) -> Path:
        path = self.run_dir(run_id)
        owner = self.owner_of(run_id)
        if owner is None or owner not in (owner_id(token), SHARED_OWNER):
            raise NewleafError(Text("jobs.not_yours", run_id=run_id))
        return path

    def check_write(self, token: str, run_id: str) -> Path:
        path = self.run_dir(run_id)
        if self.owner_of(run_id) != owner_id(token):
            if self.owner_of(run_id) == SHARED_OWNER:
                raise NewleafError(Text("jobs.shared", run_id=run_id))
            raise NewleafError(Text("jobs.not_yours", run_id=run_id))
        return path

    def list_runs(self, token: str | None) -> list[dict]:
        """Runs this session may see (its own, then shared examples), newest first."""
        mine = owner_id(token) if token else None
        out = []
        for d in self.root.iterdir() if self.root.exists() else ():
            if not d.is_dir() or d.is_symlink() or not _RUN_ID.fullmatch(d.name):
                continue
            try:
                config = runs.read_config(d)
            except NewleafError:
                continue
            owner = config.get("owner")
            if owner not in (mine, SHARED_OWNER):
                continue
            out.append(
                {
                    "id": d.name,
                    "title": config.get("title", d.name),
                    "shared": owner == SHARED_OWNER,
                    "created": config.get("created", 0),
                    "config": config,
                    **self.state(d.name),
                }
            )
        out.sort(key=lambda r: (r["shared"], -r["created"]))
        return out

    # -- starting and stopping --------------------------------------------------------------------------

    def start(self, token: str, run_id: str) -> dict:
        """Queue a run (new, or stopped / failed to be resumed); it starts when a slot is free."""
        path = self.check_write(token, run_id)
        with self.lock:
            if run_id in self.procs or run_id in self.queue or run_id in self.orphans:
                raise NewleafError(Text("jobs.already"))
            self.queue.append(run_id)
            runs.write_status(
                path,
                "queued",
                Text("jobs.waiting"),
                step=(runs.checkpoint_meta(path) or {}).get("step", 0),
            )
        self._schedule()
        return self.state(run_id)

    def stop(self, token: str, run_id: str) -> dict:
        """Stop a job: a queued one leaves the queue; a running one saves a checkpoint, then ends."""
        path = self.check_write(token, run_id)
        with self.lock:
            if run_id in self.queue:
                self.queue.remove(run_id)
                runs.write_status(
                    path,
                    "stopped",
                    Text("jobs.dequeued"),
                    step=(runs.checkpoint_meta(path) or {}).get("step", 0),
                )
                return self.state(run_id)
            proc = self.procs.get(run_id)
        status = runs.read_status(path)
        if proc is None and not (status.get("state") == "running" and runs.worker_alive(status.get("pid"), path)):
            raise NewleafError(Text("jobs.not_training"))
        (path / runs.STOP_FILE).touch()  # the trainer checks it every step and checkpoints before leaving
        return self.state(run_id)

    def delete(self, token: str, run_id: str) -> None:
        path = self.check_write(token, run_id)
        with self.lock:
            if run_id in self.procs or run_id in self.queue or run_id in self.orphans:
                raise NewleafError(Text("jobs.stop_first"))
            shutil.rmtree(path)

    def state(self, run_id: str) -> dict:
        """status.json, plus the queue position of a waiting job."""
        status = runs.read_status(self.run_dir(run_id))
        with self.lock:
            if run_id in self.queue:
                status["state"] = "queued"
                status["queue_position"] = self.queue.index(run_id) + 1
        return status

    def has_process(self, run_id: str) -> bool:
        """Whether this app's process for the run is still alive (it can outlive a "completed" status: a
        fine-tuning job goes on to measure the fine-tuned model)."""
        with self.lock:
            return run_id in self.procs

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every job gracefully (checkpoint first), then end the monitor. For tests and app exit."""
        self._closed.set()
        with self.lock:
            self.queue.clear()
            procs = dict(self.procs)
        for run_id in procs:
            (self.run_dir(run_id) / runs.STOP_FILE).touch()
        deadline = time.time() + timeout
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._thread.join(timeout=2)

    # -- the worker processes ---------------------------------------------------------------------------

    def _command(self, path: Path) -> list[str]:
        return [sys.executable, "-m", "core", "train", "--out", str(path), "--resume", "--quiet"]

    def _launch(self, run_id: str) -> None:
        path = self.run_dir(run_id)
        env = {**os.environ, "OMP_NUM_THREADS": str(self.train_threads), "PYTHONUNBUFFERED": "1"}
        repo = Path(__file__).resolve().parents[1]
        (path / runs.STOP_FILE).unlink(missing_ok=True)  # a stale request must not stop the new process
        log = open(path / WORKER_LOG, "ab")
        try:
            # Lower priority: the app's own requests (generation, page loads) go first on a shared CPU.
            proc = subprocess.Popen(
                self._command(path),
                cwd=repo,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=lambda: os.nice(10),
            )
        finally:
            log.close()
        self.procs[run_id] = proc
        runs.write_status(
            path,
            "running",
            Text("jobs.starting"),
            pid=proc.pid,
            step=(runs.checkpoint_meta(path) or {}).get("step", 0),
        )

    def _schedule(self) -> None:
        with self.lock:
            while (
                self.queue and len(self.procs) + len(self.orphans) < self.max_concurrent and not self._closed.is_set()
            ):
                run_id = self.queue.pop(0)
                try:
                    self._launch(run_id)
                except (OSError, NewleafError) as e:
                    why = (e.text or str(e)) if isinstance(e, NewleafError) else str(e)
                    runs.write_status(self.run_dir(run_id), "failed", Text("jobs.start_failed", why=why))

    def _reap(self) -> None:
        with self.lock:
            finished = [(rid, p) for rid, p in self.procs.items() if p.poll() is not None]
            for rid, _ in finished:
                del self.procs[rid]
            gone = [rid for rid, pid in self.orphans.items() if not runs.worker_alive(pid, self.run_dir(rid))]
            for rid in gone:
                del self.orphans[rid]
        for rid in gone:  # not our child: its exit code is unknown, but its status says whether it finished
            path = self.run_dir(rid)
            if runs.read_status(path).get("state") in ACTIVE_STATES:
                runs.write_status(
                    path,
                    "failed",
                    Text("jobs.orphan_gone"),
                    step=(runs.checkpoint_meta(path) or {}).get("step", 0),
                )
        for rid, proc in finished:
            path = self.run_dir(rid)
            status = runs.read_status(path)
            if status.get("state") in ACTIVE_STATES:  # it died without saying why: say it for it
                runs.write_status(
                    path,
                    "failed",
                    _death_reason(proc.returncode, path),
                    step=(runs.checkpoint_meta(path) or {}).get("step", 0),
                )

    def _monitor(self, poll: float) -> None:
        while not self._closed.wait(poll):
            try:
                self._reap()
                self._schedule()
            except Exception as e:  # keep serving whatever one run directory does
                print(f"newleaf jobs: {e}", file=sys.stderr)

    def _recover(self) -> None:
        """After an app restart: a job the old app queued, or whose process has gone, is stopped (it can be
        resumed from its last checkpoint); a process still training is followed until it ends and holds
        its slot meanwhile."""
        for d in self.root.iterdir():
            if not d.is_dir() or not (d / runs.STATUS).exists():
                continue
            status = runs.read_status(d)
            if status.get("state") not in ACTIVE_STATES:
                continue
            if status.get("state") == "running" and runs.worker_alive(status.get("pid"), d):
                self.orphans[d.name] = status["pid"]
            else:
                runs.write_status(
                    d,
                    "stopped",
                    Text("jobs.interrupted"),
                    step=(runs.checkpoint_meta(d) or {}).get("step", 0),
                )


def _death_reason(returncode: int, path: Path) -> Text:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return Text("jobs.killed_oom" if name == "SIGKILL" else "jobs.killed", signal=name)
    lines = []
    try:
        lines = (path / WORKER_LOG).read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        pass
    errors = [line for line in lines if line.startswith("newleaf: error:")]
    detail = errors[-1].removeprefix("newleaf: error:").strip() if errors else (lines[-1] if lines else "")
    if detail:
        return Text("jobs.failed_because", code=returncode, detail=detail)
    return Text("jobs.failed", code=returncode)
