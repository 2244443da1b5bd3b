"""Training jobs of the app: who owns which run, a queue with a global limit on concurrent jobs, and one
training *process* per job (or, on ZeroGPU, a thread that trains it in slices).

A job runs the same command a user would type (`python -m core train --out RUN --resume`) in its own
process and talks to the app only through its run directory. So a crash of training cannot take the app
down, a stop is reliable, the UI never freezes, and a page refresh (or an app restart) loses nothing: the
run directory says where the job is.

On ZeroGPU a GPU exists only inside the app's own spaces.GPU functions, so there (and wherever `slice_seconds` asks
for it) a job is trained in slices by a thread of the app (playground/slices.py) instead: the same queue, limits,
stop, files and status lines; status.json names the app as the job's worker, the thread says whether it lives, and
after an app restart such a job reads as stopped, to be resumed, like one whose process is gone.

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
import tempfile
import threading
import time
from pathlib import Path

from core import runs
from core.errors import NewleafError
from core.messages import Text
from core.units import format_bytes
from playground.slices import SliceWorker

SHARED_OWNER = runs.SHARED_OWNER
WORKER_LOG = "worker.log"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ACTIVE_STATES = ("queued", "running")
DOWNLOAD_MAX_AGE_S = 3600  # download zips older than this are removed when the next one is built


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
    def __init__(
        self,
        runs_dir,
        max_concurrent: int = 1,
        train_threads: int = 1,
        poll_seconds: float = 0.5,
        max_session_bytes: int = 0,
        downloads_dir=None,
        cpu_only: bool = False,
        slice_seconds: float | None = None,
    ):
        """max_session_bytes: the disk one session's runs and downloads may take (0: no limit).
        downloads_dir: where download zips are built (the app puts them in Gradio's cache, which then serves
        them as they are instead of copying them). cpu_only: on ZeroGPU a GPU exists only inside the app's
        spaces.GPU functions, so training processes use the CPU. slice_seconds: train jobs in this process, in
        slices of so many seconds (playground/slices.py), instead of in training processes."""
        self.root = Path(runs_dir).resolve()
        self.max_session_bytes = max_session_bytes
        self.downloads = Path(downloads_dir or Path(tempfile.gettempdir()) / "newleaf-downloads")
        self.cpu_only = cpu_only
        self.slice_seconds = slice_seconds
        self.max_concurrent = max(1, max_concurrent)
        self.train_threads = max(1, train_threads)
        self.lock = threading.RLock()
        self.queue: list[str] = []  # run ids waiting for a free slot, oldest first
        self.procs: dict[str, subprocess.Popen] = {}  # run id -> its training process
        self.orphans: dict[str, dict] = {}  # run id -> the status naming a process an earlier app started
        self.slices: dict[str, SliceWorker] = {}  # run id -> the thread training it in slices
        self.unrecorded: dict[str, dict] = {}  # run id -> an end the app could not write yet (a full disk)
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

    def new_run_dir(self, token: str, title: str, need: int = 0) -> tuple[str, Path]:
        """A fresh run id and its folder (not created yet) for this session, when its disk allowance has room
        for `need` more bytes."""
        self.check_room(token, need)
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug(title)}-{secrets.token_hex(3)}"
        return run_id, self.run_dir(run_id)

    def owner_of(self, run_id: str) -> str | None:
        try:
            config = runs.read_config(self.run_dir(run_id))
        except NewleafError:
            return None
        return config.get("owner") if isinstance(config, dict) else None

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
        """Runs this session may see (its own, then shared examples), newest first. A run whose files are
        broken is left out of the list; it never breaks the list of the others."""
        mine = owner_id(token) if token else None
        out = []
        for d in self.root.iterdir() if self.root.exists() else ():
            if not d.is_dir() or d.is_symlink() or not _RUN_ID.fullmatch(d.name):
                continue
            try:
                summary = self._summary(d, mine)
            except (NewleafError, OSError, AttributeError, TypeError, ValueError) as e:
                print(f"newleaf jobs: run {d.name} left out of a list: {e}", file=sys.stderr)
                continue
            if summary is not None:
                out.append(summary)
        out.sort(key=lambda r: (r["shared"], -r["created"]))
        return out

    def _summary(self, d: Path, mine: str | None) -> dict | None:
        config = runs.read_config(d)
        if not isinstance(config, dict):
            return None
        owner = config.get("owner")
        if owner not in (mine, SHARED_OWNER):
            return None
        title, created = config.get("title"), config.get("created")
        return {
            "id": d.name,
            "title": title if isinstance(title, str) and title else d.name,
            "shared": owner == SHARED_OWNER,
            "created": created if isinstance(created, (int, float)) and not isinstance(created, bool) else 0,
            "config": config,
            **self.state(d.name),
        }

    # -- disk -----------------------------------------------------------------------------------------------

    def usage(self, token: str) -> int:
        """Bytes this session's runs and downloads take on disk (shared examples are nobody's)."""
        mine = owner_id(token)
        folders = [self.run_dir(r["id"]) for r in self.list_runs(token) if not r["shared"]]
        folders.append(self.downloads / mine)
        return sum(f.stat().st_size for d in folders if d.is_dir() for f in d.rglob("*") if f.is_file())

    def check_room(self, token: str, need: int = 0) -> None:
        """Refuse what would take this session past its disk allowance (a public Space shares one disk)."""
        if not self.max_session_bytes:
            return
        used = self.usage(token)
        if used + need > self.max_session_bytes:
            more = Text("jobs.disk_need", need=format_bytes(need)) if need else ""
            raise NewleafError(Text("jobs.disk_full", used=format_bytes(used), max=format_bytes(self.max_session_bytes),
                                    more=more))  # fmt: skip

    def download_folder(self, token: str, run_id: str, key: str) -> Path:
        """The folder a download of this run is built in, by what it holds (`key`: the checkpoint and kind): a
        second download of the same checkpoint finds its zip there and reuses it. Folders of any session older
        than DOWNLOAD_MAX_AGE_S are removed first."""
        now = time.time()
        for d in self.downloads.glob("*/*") if self.downloads.is_dir() else ():
            try:
                if d.is_dir() and now - d.stat().st_mtime > DOWNLOAD_MAX_AGE_S:
                    shutil.rmtree(d, ignore_errors=True)
            except OSError:
                pass
        folder = self.downloads / owner_id(token) / f"{self.run_dir(run_id).name}-{key}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- starting and stopping --------------------------------------------------------------------------

    def start(self, token: str, run_id: str) -> dict:
        """Queue a run (new, or stopped / failed to be resumed); it starts when a slot is free."""
        path = self.check_write(token, run_id)
        self.check_room(token)  # its checkpoints will take more
        with self.lock:
            if self._busy(run_id):
                raise NewleafError(Text("jobs.already"))
            self.unrecorded.pop(run_id, None)
            self.queue.append(run_id)
            runs.write_status(
                path,
                "queued",
                Text("jobs.waiting"),
                step=runs.checkpoint_step(path),
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
                    step=runs.checkpoint_step(path),
                )
                return self.state(run_id)
            worker = self.procs.get(run_id) or self.slices.get(run_id)
        status = runs.read_status(path)
        if worker is None and not (status.get("state") == "running" and runs.status_alive(status, path)):
            raise NewleafError(Text("jobs.not_training"))
        (path / runs.STOP_FILE).touch()  # the trainer checks it every step and checkpoints before leaving
        return self.state(run_id)

    def delete(self, token: str, run_id: str) -> None:
        path = self.check_write(token, run_id)
        with self.lock:
            if self._busy(run_id):
                raise NewleafError(Text("jobs.stop_first"))
            shutil.rmtree(path)
            self.unrecorded.pop(run_id, None)

    def state(self, run_id: str) -> dict:
        """status.json as the processes have it: plus the queue position of a waiting job; an end the app
        could not write yet (a full disk); and "failed" for a run that says it is running but whose training
        process (or slicing thread) is gone (it could not say so itself)."""
        path = self.run_dir(run_id)
        with self.lock:
            worker = self.slices.get(run_id)
            tracked = run_id in self.procs or run_id in self.orphans or (worker is not None and worker.alive())
            position = self.queue.index(run_id) + 1 if run_id in self.queue else None
            unrecorded = self.unrecorded.get(run_id)
        status = runs.read_status(path) if tracked else runs.live_status(path)
        if unrecorded:
            status.update(unrecorded)
        if position:
            status.update(state="queued", queue_position=position)
        return status

    def has_process(self, run_id: str) -> bool:
        """Whether this app's process (or slicing thread) for the run is still alive (it can outlive a "completed"
        status: a fine-tuning job goes on to measure the fine-tuned model)."""
        with self.lock:
            worker = self.slices.get(run_id)
            return run_id in self.procs or (worker is not None and worker.alive())

    def _busy(self, run_id: str) -> bool:
        """Whether the run is waiting, training, or followed after a restart (the caller holds the lock)."""
        return run_id in self.procs or run_id in self.queue or run_id in self.orphans or run_id in self.slices

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every job gracefully (checkpoint first), then end the monitor. For tests and app exit."""
        self._closed.set()
        with self.lock:
            self.queue.clear()
            procs, slices = dict(self.procs), dict(self.slices)
        for run_id in [*procs, *slices]:
            (self.run_dir(run_id) / runs.STOP_FILE).touch()
        for worker in slices.values():
            worker.stop()
        deadline = time.time() + timeout
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for worker in slices.values():  # a thread cannot be killed: one still running ends with the app
            worker.join(max(0.1, deadline - time.time()))
        self._thread.join(timeout=2)

    # -- the worker processes ---------------------------------------------------------------------------

    def _command(self, path: Path) -> list[str]:
        return [sys.executable, "-m", "core", "train", "--out", str(path), "--resume", "--quiet"]

    def worker_env(self) -> dict:
        """The environment of a training process: its threads, and no GPU where it may not have one."""
        env = {**os.environ, "OMP_NUM_THREADS": str(self.train_threads), "PYTHONUNBUFFERED": "1"}
        if self.cpu_only:
            env["CUDA_VISIBLE_DEVICES"] = ""
        return env

    def _launch(self, run_id: str) -> None:
        path = self.run_dir(run_id)
        (path / runs.STOP_FILE).unlink(missing_ok=True)  # a stale request must not stop the new process
        if self.slice_seconds is not None:
            self._launch_slices(run_id, path)
            return
        env = self.worker_env()
        repo = Path(__file__).resolve().parents[1]
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
            step=runs.checkpoint_step(path),
        )

    def _launch_slices(self, run_id: str, path: Path) -> None:
        """Train the job here, in slices (playground/slices.py): its status names this process as the worker."""
        worker = SliceWorker(path, self.slice_seconds)
        runs.write_status(
            path,
            "running",
            Text("jobs.starting_slices", seconds=f"{self.slice_seconds:g}"),
            step=runs.checkpoint_step(path),
            **worker.status,
        )
        self.slices[run_id] = worker
        worker.start()

    def _running(self) -> int:
        return len(self.procs) + len(self.orphans) + len(self.slices)

    def _schedule(self) -> None:
        with self.lock:
            while self.queue and self._running() < self.max_concurrent and not self._closed.is_set():
                run_id = self.queue.pop(0)
                try:
                    self._launch(run_id)
                except (OSError, NewleafError) as e:
                    why = (e.text or str(e)) if isinstance(e, NewleafError) else str(e)
                    self._record_end(run_id, Text("jobs.start_failed", why=why))

    def _reap(self) -> None:
        with self.lock:
            finished = [(rid, p) for rid, p in self.procs.items() if p.poll() is not None]
            for rid, _ in finished:
                del self.procs[rid]
            ended = [(rid, w) for rid, w in self.slices.items() if not w.alive()]
            for rid, _ in ended:
                del self.slices[rid]
            gone = [rid for rid, status in self.orphans.items() if not runs.status_alive(status, self.run_dir(rid))]
            for rid in gone:
                del self.orphans[rid]
        for rid in gone:  # not our child: its exit code is unknown, but its status says whether it finished
            path = self.run_dir(rid)
            if runs.read_status(path).get("state") in ACTIVE_STATES:
                self._record_end(rid, Text("jobs.orphan_gone"))
        for rid, proc in finished:
            if runs.read_status(self.run_dir(rid)).get("state") in ACTIVE_STATES:  # it died without saying why
                self._record_end(rid, _death_reason(proc.returncode, self.run_dir(rid)))
        for rid, worker in ended:
            if runs.read_status(self.run_dir(rid)).get("state") in ACTIVE_STATES:  # it could not say how it ended
                self._record_end(rid, worker.failure or Text("jobs.slices_gone"))
        with self.lock:
            pending = dict(self.unrecorded)
        for rid, end in pending.items():  # space may be back: try again
            self._record_end(rid, runs.status_text(end))

    def _record_end(self, run_id: str, message: str | Text) -> None:
        """Write a job's end (failed, with why) into its status.json; when the disk refuses (full, read-only),
        keep it here, so the page still shows it, and try again on the next round."""
        path = self.run_dir(run_id)
        try:
            runs.write_status(path, "failed", message, step=runs.checkpoint_step(path))
        except (NewleafError, OSError):
            end = {"state": "failed", "message": str(message)}
            if isinstance(message, Text):
                end["text"] = message.to_json()
            with self.lock:
                self.unrecorded[run_id] = end
            return
        with self.lock:
            self.unrecorded.pop(run_id, None)

    def _monitor(self, poll: float) -> None:
        while not self._closed.wait(poll):
            try:
                self._reap()
                self._schedule()
            except Exception as e:  # keep serving whatever one run directory does
                print(f"newleaf jobs: {e}", file=sys.stderr)

    def _recover(self) -> None:
        """After an app restart: a job the old app queued, or whose process has gone (a job the old app trained in
        slices: with it), is stopped (it can be resumed from its last checkpoint); a process still training is
        followed until it ends and holds its slot meanwhile."""
        for d in self.root.iterdir():
            if not d.is_dir() or not (d / runs.STATUS).exists():
                continue
            status = runs.read_status(d)
            if status.get("state") not in ACTIVE_STATES:
                continue
            if status.get("state") == "running" and runs.status_alive(status, d):
                self.orphans[d.name] = status
            else:
                runs.write_status(
                    d,
                    "stopped",
                    Text("jobs.interrupted"),
                    step=runs.checkpoint_step(d),
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
