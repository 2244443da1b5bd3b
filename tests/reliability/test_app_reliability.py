"""The whole app, launched in-process as app.py launches it (bounded queue, upload limit), driven with
gradio_client by several sessions at once:

- four sessions train, poll and generate at the same time; none can see, stop or delete another's run; the
  concurrent-jobs limit queues the extra jobs with a visible position; nothing deadlocks and all finish;
  generation keeps being answered while jobs train;
- a training process that dies (killed, or failing) shows as failed with the reason, can be resumed, and the
  app keeps serving;
- 100 rapid generate requests are each answered or refused as busy ("Queue is full"), with bounded memory;
- run ids and file names from clients cannot leave the runs directory; uploads are size-checked; a run's zip
  can be uploaded, and a hostile one is refused.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from core import files, runs
from playground import tab_generate
from playground.jobs import SHARED_OWNER, Jobs
from playground.settings import Settings
from playground.ui import build_app, launch_kwargs, queue_kwargs
from tests import test_app
from tests.reliability.helpers import own, rss_bytes, trained_run, wait_for
from tests.test_app import poll

TOKENS = [f"reliability-session-{i}-secret" for i in range(4)]
TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, dropout=0.0, preset="tiny")
MAX_QUEUE = 12
NOT_YOURS = "not a valid run name|does not exist|belongs to another session|confirm with"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability-app")
    root = base / "runs"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "NEWLEAF_RUNS": str(root),
            "NEWLEAF_TRAIN_THREADS": "1",
            "NEWLEAF_MAX_UPLOAD_MB": "1",
            "NEWLEAF_MAX_QUEUE": str(MAX_QUEUE),
            "NEWLEAF_MAX_NEW_TOKENS": "50",
            "NEWLEAF_MAX_CONTEXT": "64",
            "NEWLEAF_GENERATE_CONCURRENCY": "2",
        }.items():
            mp.setenv(name, value)
        mp.delenv("SPACE_ID", raising=False)
        settings = Settings.from_env()
        own(trained_run(root / "example", max_steps=3, eval_every=3), SHARED_OWNER, "Example")
        (base / "outside").mkdir()
        (base / "outside" / "secret.txt").write_text("do not touch")
        jobs = Jobs(root, max_concurrent=2, train_threads=1, poll_seconds=0.1)
        demo, _ = build_app(settings, jobs)
        demo.queue(**queue_kwargs(settings))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True, **launch_kwargs(settings))
        url = f"http://127.0.0.1:{port}/"
        try:
            yield {
                "url": url,
                "root": root,
                "base": base,
                "jobs": jobs,
                "settings": settings,
                "client": lambda: Client(url, verbose=False, download_files=str(base / "downloads")),
            }
        finally:
            demo.close()
            jobs.shutdown()


def start(client, token, title, steps=8, eval_every=4, **model):
    return test_app.start(client, token, title, steps, eval_every, batch_size=4, **model)


def generate(client, token, run_id, prompt="ROMEO:", n=5):
    return client.predict(token, run_id, prompt, n, 0.0, 0, 1.0, 0.0, 1.0, 0.0, 0.0, 1, "", 1, api_name="/generate")


def state(app, run_id) -> str:
    return app["jobs"].state(run_id)["state"]


# ----------------------------------------------------------------------------------------------------------
# Four sessions at once


def test_four_sessions_train_poll_and_generate_at_once(app):
    barrier = threading.Barrier(4)
    results, errors = {}, []
    run_ids: dict[int, str] = {}
    ids_ready = threading.Event()

    def session(i):
        c, token = app["client"](), TOKENS[i]
        seen = {"statuses": [], "generated_while_training": 0}
        c.predict("shakespeare", None, "", "char", 1024, api_name="/load_data")
        barrier.wait(timeout=120)
        run_id, out = start(c, token, f"session {i}")
        run_ids[i] = run_id
        seen["statuses"].append(out[1])
        while True:
            status = poll(c, token, run_id)[0] or ""
            seen["statuses"].append(status)
            if "completed" in status:
                break
            assert "failed" not in status, status
            # generation is answered while jobs train (from the shared example: this job has no weights yet)
            if app["jobs"].procs and seen["generated_while_training"] < 2:
                assert len(generate(c, token, "example")[0]) == 5
                seen["generated_while_training"] += 1
            time.sleep(1.0)  # as the page's timer does; a busier loop would only slow the training processes
        seen["own_generation"] = generate(c, token, run_id)[0]
        ids_ready.wait(timeout=300)
        # none of the other sessions' runs can be seen, stopped, deleted, loaded or used
        for j, other in run_ids.items():
            if j == i:
                continue
            for api, args in (
                ("/stop_training", (token, other, "en")),
                ("/ask_delete", (token, other, "en")),
                ("/delete_run", (token, other, "en")),
                ("/load_run", (token, other, "en")),
                ("/download_checkpoint", (token, other, "best", "en")),
            ):
                with pytest.raises(AppError, match=NOT_YOURS):
                    c.predict(*args, api_name=api)
            with pytest.raises(AppError, match=NOT_YOURS):
                generate(c, token, other)
            assert "step" not in (poll(c, token, other)[0] or "")
        listed = str(c.predict(token, "en", api_name="/list_runs"))
        seen["listed_own"] = run_id in listed
        seen["listed_others"] = [r for j, r in run_ids.items() if j != i and r in listed]
        results[i] = seen

    def guarded(i):
        try:
            session(i)
        except BaseException as e:  # reported below, with the session it happened in
            errors.append((i, repr(e)))

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(run_ids) == 4 or errors, timeout=300, what="four runs to start")
    ids_ready.set()
    for t in threads:
        t.join(timeout=400)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a session is stuck"
    for i, seen in results.items():
        assert seen["listed_own"] and not seen["listed_others"], seen
        assert seen["own_generation"] and len(seen["own_generation"]) == 5
        assert state(app, run_ids[i]) == "completed"
    # two slots: at least two of the four jobs waited, and their position was shown
    positions = {
        int(m) for s in results.values() for status in s["statuses"] for m in re.findall(r"position (\d+)", status)
    }
    assert {1, 2} <= positions, positions
    assert sum(s["generated_while_training"] for s in results.values()) >= 1


# ----------------------------------------------------------------------------------------------------------
# A training process that dies


def test_a_dying_training_process_shows_as_failed_and_can_be_resumed(app):
    c, token = app["client"](), TOKENS[0]
    c.predict("shakespeare", None, "", "char", 1024, api_name="/load_data")
    run_id, _ = start(c, token, "doomed", steps=5000, eval_every=5)
    path = app["root"] / run_id
    wait_for(lambda: runs.checkpoint_meta(path) is not None, timeout=180, every=0.05, what="a first checkpoint")
    pid = app["jobs"].procs[run_id].pid
    os.kill(pid, signal.SIGKILL)  # what the out-of-memory killer does

    status = wait_for(
        lambda: (s := poll(c, token, run_id)[0]) and "failed" in s and s, timeout=60, what="the run to show as failed"
    )
    assert "killed by SIGKILL (out of memory?)" in status and "Resume" in status
    killed_at = runs.checkpoint_meta(path)["step"]
    # the app keeps serving: the list, the failed run's own checkpoint, other endpoints
    assert run_id in str(c.predict(token, "en", api_name="/list_runs"))
    assert len(generate(c, token, run_id)[0]) == 5

    # a process that fails with an error: its message becomes the reason
    (path / "data" / "train.bin").write_bytes((path / "data" / "train.bin").read_bytes() + b"\0")
    c.predict(token, run_id, False, 0.6, "en", api_name="/resume_training")
    status = wait_for(
        lambda: (s := poll(c, token, run_id)[0]) and "failed" in s and s, timeout=120, what="the corrupt run to fail"
    )
    assert "Training failed (exit code 2): train.bin is not a token file" in status

    # repaired, it resumes from its last checkpoint and goes on
    (path / "data" / "train.bin").write_bytes((path / "data" / "train.bin").read_bytes()[:-1])
    c.predict(token, run_id, False, 0.6, "en", api_name="/resume_training")
    wait_for(
        lambda: (runs.checkpoint_meta(path) or {}).get("step", 0) > killed_at,
        timeout=180,
        what="training to go on after the resume",
    )
    c.predict(token, run_id, "en", api_name="/stop_training")
    wait_for(lambda: state(app, run_id) == "stopped", timeout=120, what="the stop")
    assert runs.checkpoint_meta(path)["step"] > killed_at
    metrics = [r["step"] for r in files.read_jsonl(path / runs.METRICS)[0]]
    assert metrics == sorted(set(metrics))  # nothing logged twice across the kill and the resumes


def test_a_job_that_dies_on_a_full_disk_is_not_left_running(app, monkeypatch):
    """The worker dies and the disk is full, so the app cannot write its end either: once, the page then showed
    "running" forever, Resume said "already training" and Stop "not training" until the app restarted."""
    c, token = app["client"](), TOKENS[1]
    c.predict("shakespeare", None, "", "char", 1024, api_name="/load_data")
    run_id, _ = start(c, token, "full disk", steps=5000, eval_every=5)
    path = app["root"] / run_id
    wait_for(lambda: runs.checkpoint_meta(path) is not None, timeout=180, every=0.05, what="a first checkpoint")

    def disk_full(*args, **kwargs):
        raise files.write_error(OSError(28, "No space left on device"), "status.json")

    monkeypatch.setattr(runs, "write_status", disk_full)  # the app's own writes fail from now on
    os.kill(app["jobs"].procs[run_id].pid, signal.SIGKILL)  # and the worker dies without a word
    status = wait_for(
        lambda: (s := poll(c, token, run_id)[0]) and "failed" in s and s, timeout=60, what="the run to show as failed"
    )
    assert "killed by SIGKILL" in status
    assert json_state(path) == "running"  # status.json itself could not be corrected yet
    with pytest.raises(AppError, match="not training"):
        c.predict(token, run_id, "en", api_name="/stop_training")
    monkeypatch.undo()  # space is back: the end is written, and the run resumes
    wait_for(lambda: json_state(path) == "failed", timeout=30, what="the end written once space is back")
    killed_at = runs.checkpoint_meta(path)["step"]
    c.predict(token, run_id, False, 0.6, "en", api_name="/resume_training")
    wait_for(lambda: runs.checkpoint_meta(path)["step"] > killed_at, timeout=180, what="training to go on")
    c.predict(token, run_id, "en", api_name="/stop_training")
    wait_for(lambda: state(app, run_id) == "stopped", timeout=120, what="the stop")


def json_state(path) -> str:
    return files.read_json(path / runs.STATUS)["state"]


# ----------------------------------------------------------------------------------------------------------
# 100 rapid generate requests


def test_a_hundred_rapid_generate_requests_are_answered_or_refused_as_busy(app):
    clients = [app["client"]() for _ in range(4)]
    for c in clients:  # warm: the model is in the cache, the clients connected
        assert generate(c, TOKENS[0], "example")
    before = rss_bytes()
    prompts = ["ROMEO:", "JULIET:", "To be", "What, ho!", "My lord"]
    jobs = [
        clients[i % 4].submit(
            TOKENS[i % 4],
            "example",
            prompts[i % 5],
            5,
            0.8,
            50,
            0.95,
            0.0,
            1.0,
            0.0,
            0.0,
            i,
            "",
            1,
            api_name="/generate",
        )
        for i in range(100)
    ]
    answered, busy, other = 0, [], []
    for job in jobs:
        try:
            out = job.result(timeout=300)
            assert isinstance(out[0], str) and out[0]
            answered += 1
        except Exception as e:  # noqa: BLE001 - every refusal is sorted below
            (busy if "Queue is full" in str(e) else other).append(f"{type(e).__name__}: {e}")
    assert not other, other[:3]
    print(f"100 rapid requests: {answered} answered, {len(busy)} refused as busy")
    assert answered + len(busy) == 100 and answered >= MAX_QUEUE // 2
    assert all("Please try again" in b for b in busy)
    growth = rss_bytes() - before
    assert growth < 300 * 1024 * 1024, f"memory grew by {growth / 2**20:.0f} MB"
    assert generate(clients[0], TOKENS[0], "example")  # and it still answers


def test_a_full_queue_refuses_at_once_with_a_busy_message(app, monkeypatch):
    """Made deterministic: generation is held until the queue has filled, so the refusals do not depend on speed."""
    gate, real = threading.Event(), tab_generate.get_model

    def held(*args, **kwargs):
        gate.wait(120)
        return real(*args, **kwargs)

    monkeypatch.setattr(tab_generate, "get_model", held)
    c = app["client"]()
    extra = 5
    jobs = [
        c.submit(TOKENS[0], "example", "ROMEO:", 5, 0.0, 0, 1.0, 0.0, 1.0, 0.0, 0.0, 1, "", 1, api_name="/generate")
        for _ in range(MAX_QUEUE + 2 + extra)
    ]  # 2 generation slots
    try:
        wait_for(lambda: sum(j.done() for j in jobs) >= extra, timeout=120, what="the refusals")
    finally:
        gate.set()
    answered, busy = 0, []
    for job in jobs:
        try:
            job.result(timeout=120)
            answered += 1
        except Exception as e:  # noqa: BLE001
            busy.append(str(e))
    assert busy and all(b == "Queue is full! Please try again." for b in busy), busy
    assert answered >= MAX_QUEUE and answered + len(busy) == len(jobs)


# ----------------------------------------------------------------------------------------------------------
# Names, files and limits from clients


def test_run_ids_from_clients_cannot_leave_the_runs_directory(app):
    c, token = app["client"](), TOKENS[1]
    outside = app["base"] / "outside"
    os.symlink(outside, app["root"] / "linked")
    bad_ids = ["../outside", "/etc", "example/../../outside", "linked", "run\n"]
    calls = {
        "/poll_training": lambda r: poll(c, token, r),
        "/stop_training": lambda r: c.predict(token, r, "en", api_name="/stop_training"),
        "/resume_training": lambda r: c.predict(token, r, False, 0.6, "en", api_name="/resume_training"),
        "/load_run": lambda r: c.predict(token, r, "en", api_name="/load_run"),
        "/download_checkpoint": lambda r: c.predict(token, r, "best", "en", api_name="/download_checkpoint"),
        "/download_hf": lambda r: c.predict(token, r, "best", "en", api_name="/download_hf"),
        "/ask_delete": lambda r: c.predict(token, r, "en", api_name="/ask_delete"),
        "/delete_run": lambda r: c.predict(token, r, "en", api_name="/delete_run"),
        "/compare_runs": lambda r: c.predict(token, [r], False, False, "en", api_name="/compare_runs"),
        "/generate": lambda r: generate(c, token, r),
        "/next_token": lambda r: c.predict(token, r, "To be", 0.8, 50, 0.95, 0.0, "en", api_name="/next_token"),
        "/attention": lambda r: c.predict(token, r, "To be", "1", "1", "en", api_name="/attention"),
    }
    for bad in bad_ids:
        for api, call in calls.items():
            try:
                out = call(bad)
            except AppError as e:
                assert re.search(NOT_YOURS + "|no training job|not training|no run", str(e)), (api, bad, str(e))
            else:  # only the poll may answer, and with nothing from the run
                assert api == "/poll_training" and "step" not in str(out[0] or ""), (api, bad, out)
    assert (outside / "secret.txt").read_text() == "do not touch" and (app["root"] / "example").is_dir()


def call(app, api: str, *data) -> tuple[str, str]:
    """A raw call of Gradio's REST API (no gradio_client: it would upload a local path itself): (event, data)."""
    url = f"{app['url']}gradio_api/call/{api}"
    event_id = httpx.post(url, json={"data": list(data)}, timeout=60).json()["event_id"]
    text = httpx.get(f"{url}/{event_id}", timeout=120).text
    events = re.findall(r"^event: (\w+)\ndata: (.*)$", text, flags=re.M)
    return events[-1]


def test_uploaded_file_names_are_never_used_to_write(app):
    """Gradio stores uploads under names it makes safe; the app only reads them. A client naming a server file
    instead of uploading one is refused by Gradio before the app sees it."""
    body = ("Line of my corpus. " * 400).encode()
    r = httpx.post(app["url"] + "gradio_api/upload", files=[("files", ("../../../escaped.txt", body))])
    assert r.status_code == 200, r.text
    stored = Path(r.json()[0])
    assert stored.name == "escaped.txt" and ".." not in stored.parts and stored.read_bytes() == body
    assert not list(app["base"].rglob("escaped.txt")) and not Path("/tmp/escaped.txt").exists()
    event, data = call(
        app,
        "load_data",
        "upload",
        [{"path": str(stored), "meta": {"_type": "gradio.FileData"}}],
        "",
        "char",
        1024,
        "en",
    )
    assert event == "complete" and "escaped.txt" in data
    for path in (app["base"] / "outside" / "secret.txt", Path("/etc/passwd")):
        event, data = call(
            app,
            "load_data",
            "upload",
            [{"path": str(path), "meta": {"_type": "gradio.FileData"}}],
            "",
            "char",
            1024,
            "en",
        )
        assert event == "error" and "do not touch" not in data and "root:" not in data


def test_upload_size_limit_is_enforced_by_the_server(app, tmp_path):
    big = b"x" * int(1.2 * 1024 * 1024)  # NEWLEAF_MAX_UPLOAD_MB=1
    r = httpx.post(app["url"] + "gradio_api/upload", files=[("files", ("big.txt", big))])
    assert r.status_code == 413 and "maximum allowed size" in r.text
    path = tmp_path / "big.txt"
    path.write_bytes(big)
    with pytest.raises(ValueError, match="exceeds the maximum file size"):  # gradio_client checks it first
        app["client"]().predict("upload", [handle_file(str(path))], "", "char", 1024, api_name="/load_data")


def test_limits_through_the_app(app):
    c, token = app["client"](), TOKENS[2]
    c.predict("shakespeare", None, "", "char", 1024, api_name="/load_data")
    with pytest.raises(AppError, match="A context of 128 tokens is more than the 64 allowed here"):
        start(c, token, "too long", block_size=128)
    with pytest.raises(AppError, match="max_new_tokens is limited to 50"):
        generate(c, token, "example", n=51)


def test_upload_a_run_zip(app, tmp_path):
    a, b = app["client"](), app["client"]()

    def mine():
        return {r["id"] for r in app["jobs"].list_runs(TOKENS[3]) if not r["shared"]}

    before = mine()
    zip_path = a.predict(TOKENS[3], "example", "best", "en", api_name="/download_checkpoint")
    message = a.predict(TOKENS[3], handle_file(zip_path), "en", api_name="/upload_run")
    assert "Uploaded **Example**" in message
    uploaded = sorted(mine() - before)
    assert len(uploaded) == 1 and runs.read_config(app["root"] / uploaded[0])["owner"] != SHARED_OWNER
    assert len(generate(a, TOKENS[3], uploaded[0])[0]) == 5
    with pytest.raises(AppError, match=NOT_YOURS):  # another session does not see it
        generate(b, TOKENS[2], uploaded[0])

    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(zip_path) as zin, zipfile.ZipFile(hostile, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
        zout.writestr("../../../outside/evil.py", "print('hi')")
    with pytest.raises(AppError, match="unsafe path"):
        a.predict(TOKENS[3], handle_file(str(hostile)), "en", api_name="/upload_run")
    with zipfile.ZipFile(hostile, "w") as zout:
        zout.writestr("run/checkpoints/model.pt", b"\x80\x02cos\nsystem\n")
    with pytest.raises(AppError, match="pickle-based files .* can run arbitrary code"):
        a.predict(TOKENS[3], handle_file(str(hostile)), "en", api_name="/upload_run")
    assert not (app["base"] / "outside" / "evil.py").exists()
    assert mine() - before == set(uploaded)
    assert not [p for p in app["root"].iterdir() if p.name.startswith(".")]  # no half-imported run left
