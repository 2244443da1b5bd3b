"""The whole app, launched in-process, driven through its API with gradio_client as several sessions:
load data, start a tiny training run, poll until losses arrive, stop, generate, attention; isolation
between sessions; the concurrent-jobs queue; a bad upload. Also the language switch, called directly."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import plotly.io
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from core import runs
from playground import model_choices, tab_finetune
from playground.i18n import EN, ZH, t
from playground.jobs import Jobs
from playground.settings import Settings
from playground.ui import build_app
from tests.apps import free_port
from tests.reliability.helpers import wait_for

TOKEN_A, TOKEN_B = "session-a-secret", "session-b-secret"
TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0, preset="tiny")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEWLEAF_RUNS", str(root))
        mp.setenv("NEWLEAF_TRAIN_THREADS", "1")
        settings = Settings.from_env()
        jobs = Jobs(root, max_concurrent=1, train_threads=1, poll_seconds=0.2)
        demo, ctx = build_app(settings, jobs)
        port = free_port()
        demo.queue(default_concurrency_limit=4)
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
        url = f"http://127.0.0.1:{port}/"
        try:
            yield {
                "url": url,
                "root": root,
                "jobs": jobs,
                "client": lambda: Client(url, verbose=False, download_files=str(root.parent / "downloads")),
            }
        finally:
            demo.close()
            jobs.shutdown()


def start(client, token, title, steps=400, eval_every=20, lang="en", batch_size=8, **model):
    """Start training through the Train tab's API with a tiny model (`model` overrides its shape)."""
    m = {**TINY, **model}
    out = client.predict(
        token,
        title,
        3e-3,
        batch_size,
        steps,
        0,
        eval_every,
        1,
        lang,
        m["n_layer"],
        m["n_head"],
        m["n_embd"],
        m["block_size"],
        m["dropout"],
        m["preset"],
        api_name="/start_training",
    )
    return out[0], out


def poll(client, token, run_id):
    return client.predict(token, run_id, False, 0.6, "en", api_name="/poll_training")


def loss_traces(plot_value):
    """Traces with points; a tick that sent nothing new gives no figure."""
    if not isinstance(plot_value, dict) or "plot" not in plot_value:
        return []
    return [t for t in plotly.io.from_json(plot_value["plot"]).data if len(t.x or ())]


def test_train_poll_stop_generate_attention(app):
    a = app["client"]()
    a.predict("shakespeare", None, "", "char", 1024, api_name="/load_data")
    run_id, first = start(a, TOKEN_A, "alpha", steps=5000)
    assert run_id and ("queued" in first[1] or "running" in first[1])

    def losses_arrived():
        out = poll(a, TOKEN_A, run_id)
        names = {t.name for t in loss_traces(out[2])}
        return out if "validation" in names else None

    out = wait_for(losses_arrived)
    assert "running" in out[0]
    a.predict(TOKEN_A, run_id, "en", api_name="/stop_training")
    wait_for(lambda: "stopped" in poll(a, TOKEN_A, run_id)[0])
    assert runs.checkpoint_meta(app["root"] / run_id)["step"] > 0

    gen = a.predict(TOKEN_A, run_id, "ROMEO:", 30, 0.0, 0, 1.0, 0.0, 1.0, 0.0, 0.0, -1, "", 1, api_name="/generate")
    assert len(gen[0]) == 30  # a character-level model: 30 new tokens are 30 characters
    plot, note = a.predict(TOKEN_A, run_id, "To be or not", "1", "1", "en", api_name="/attention")
    heat = plotly.io.from_json(plot["plot"]).data[0]
    assert heat.type == "heatmap" and len(heat.z) == len("To be or not")


def test_sessions_cannot_touch_each_others_runs(app):
    a, b = app["client"](), app["client"]()
    a.predict("shakespeare", None, "", "char", 1024, api_name="/load_data")
    run_id, _ = start(a, TOKEN_A, "private", steps=3000)
    try:
        with pytest.raises(AppError, match="belongs to another session"):
            b.predict(TOKEN_B, run_id, "en", api_name="/stop_training")
        with pytest.raises(AppError, match="belongs to another session"):
            b.predict(TOKEN_B, run_id, "en", api_name="/ask_delete")
        table = b.predict(TOKEN_B, "en", api_name="/list_runs")
        assert run_id not in str(table)
        assert run_id in str(a.predict(TOKEN_A, "en", api_name="/list_runs"))
        # B's poll of A's run shows nothing of it
        assert not loss_traces(poll(b, TOKEN_B, run_id)[2])
        # nor does a resume: the same answer as for a run that does not exist (not "already training")
        with pytest.raises(AppError) as theirs:
            b.predict(TOKEN_B, run_id, False, 0.6, "en", api_name="/resume_training")
        with pytest.raises(AppError) as missing:
            b.predict(TOKEN_B, "no-such-run", False, 0.6, "en", api_name="/resume_training")
        assert "does not exist" in str(theirs.value)
        assert str(theirs.value).replace(run_id, "RUN") == str(missing.value).replace("no-such-run", "RUN")
        assert app["jobs"].state(run_id)["state"] in ("queued", "running")
    finally:
        a.predict(TOKEN_A, run_id, "en", api_name="/stop_training")
        wait_for(lambda: app["jobs"].state(run_id)["state"] in ("stopped", "completed"))


def test_concurrent_jobs_wait_in_a_queue(app):
    a, b = app["client"](), app["client"]()
    for c in (a, b):
        c.predict("shakespeare", None, "", "char", 1024, api_name="/load_data")
    first, _ = start(a, TOKEN_A, "first", steps=3000)
    second, out = start(b, TOKEN_B, "second", steps=50)
    try:
        wait_for(lambda: app["jobs"].state(first)["state"] == "running")
        status = poll(b, TOKEN_B, second)[0]
        assert "queued" in status and "position 1" in status
        a.predict(TOKEN_A, first, "en", api_name="/stop_training")
        wait_for(lambda: app["jobs"].state(first)["state"] == "stopped")
        wait_for(lambda: app["jobs"].state(second)["state"] == "completed", timeout=180)
    finally:
        for c, tok, rid in ((a, TOKEN_A, first), (b, TOKEN_B, second)):
            try:
                c.predict(tok, rid, "en", api_name="/stop_training")
            except AppError:
                pass


def test_bad_upload_gives_a_specific_message(app, tmp_path):
    c = app["client"]()
    binary = tmp_path / "photo.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 200)
    with pytest.raises(AppError, match="binary"):
        c.predict("upload", [handle_file(str(binary))], "", "char", 1024, api_name="/load_data")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("na\xefve caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(AppError, match="not valid UTF-8.*byte offset 2"):
        c.predict("upload", [handle_file(str(latin))], "", "char", 1024, api_name="/load_data")
    good = tmp_path / "notes.md"
    good.write_text("# Notes\n" + "A small corpus of my own notes. " * 200)
    stats = c.predict("upload", [handle_file(str(good))], "", "char", 1024, api_name="/load_data")
    assert "notes.md" in stats[0] and "tokens" in stats[0]


def test_model_too_large_is_refused_before_training(app):
    c = app["client"]()
    c.predict("shakespeare", None, "", "char", 1024, api_name="/load_data")
    with pytest.raises(AppError, match="needs about .* more than the"):
        c.predict(
            TOKEN_A, "huge", 1e-3, 128, 10, 0, 5, 1, "en", 24, 16, 1024, 1024, 0.0, "gpt2", api_name="/start_training"
        )


def test_every_string_has_both_languages():
    app_keys = {k for k in ZH if not k.startswith("core.")}  # core.*: the engine's sentences (test_messages.py)
    assert set(EN) == app_keys
    for key in EN:
        assert EN[key].count("{") == ZH[key].count("{"), key


def _hook(ctx, elem_id):
    """The handler the language switch runs to redraw the component `elem_id`."""
    for fn, _, outputs in ctx.tr.hooks:
        if elem_id in [getattr(o, "elem_id", None) for o in (outputs if isinstance(outputs, list) else [outputs])]:
            return fn
    raise AssertionError(f"no language hook draws #{elem_id}")


def test_switching_to_chinese_relabels_choices_and_redraws_live_text(tmp_path):
    jobs = Jobs(tmp_path / "runs", max_concurrent=1, train_threads=1)
    try:
        demo, ctx = build_app(Settings.from_env(), jobs)
        # choices: Chinese labels, the same values, and no value sent (the selection stays)
        updates = dict(zip(ctx.tr.components, ctx.tr.updates("zh")))
        radios = {c.elem_id or c.label: u for c, u in updates.items() if "choices" in u}
        tokenizer = next(u for u in radios.values() if "char" in [v for _, v in u["choices"]])
        assert tokenizer["choices"][:2] == [(ZH["data.tok.auto"], "auto"), (ZH["data.tok.char"], "char")]
        assert "value" not in tokenizer
        preset = radios["model-preset"]["choices"]
        assert [v for _, v in preset] == [v for _, v in model_choices.preset_choices("en")]
        assert {v: label for label, v in preset}["tiny"] == f"tiny — {ZH['model.preset.tiny']}"
        # the Train status with no job, and the Model estimate, drawn again in Chinese
        status = _hook(ctx, "train-status")(None, None, [], False, 0.6, "zh")
        assert status[0] == ZH["train.no_job"]
        estimate = _hook(ctx, "model-estimate")(None, 8, "zh", 0, 2, 2, 32, 32, 0.0)
        assert "个参数" in estimate and "训练所需内存" in estimate and "parameters" not in estimate
        assert "parameters" in _hook(ctx, "model-estimate")(None, 8, "en", 0, 2, 2, 32, 32, 0.0)
        assert _hook(ctx, "data-stats")(None, "zh") == ZH["data.none"]
        # the Fine-tune, Generate and Attention tabs: choices relabelled, live text drawn again
        for elem_id in ("ft-base-kind", "ft-source", "ft-method", "ft-too-long"):
            component = next(c for c in updates if c.elem_id == elem_id)
            zh_choices = updates[component]["choices"]
            assert [v for _, v in zh_choices] == [v for _, v in component.choices] and "value" not in updates[component]
            assert [label for label, _ in zh_choices] != [label for label, _ in component.choices]
        ft_view = _hook(ctx, "ft-status")(None, None, [], "zh")
        assert ft_view[0] == ZH["ft.no_job"] and ft_view[4] == ZH["ft.results.waiting"]
        assert _hook(ctx, "ft-data-info")(None, "zh") == ZH["ft.data.none"]
        compared = _hook(ctx, "ft-compared")(
            tab_finetune.compare_table([{"prompt": "p", "base": "b", "finetuned": "f"}]), "zh"
        )
        assert list(compared.columns) == [ZH["ft.col.prompt"], ZH["ft.col.base"], ZH["ft.col.finetuned"]]
        assert compared.values.tolist() == [["p", "b", "f"]]
        assert _hook(ctx, "gen-run-info")(None, None, "zh") == ""
        heads = _hook(ctx, "attn-head")(None, None, None, "1", "all", 1, "zh")[0]
        assert heads["choices"] == [(ZH["attn.head.all"], "all"), ("1", "1")] and "value" not in heads
    finally:
        jobs.shutdown()


def test_status_and_progress_of_a_run_in_chinese():
    from playground.job_view import progress_html, status_markdown

    state = {"state": "running", "message": "Training on cpu.", "max_steps": 500, "max_time": 180}
    records = [{"step": 20, "elapsed_s": 10.0}]
    assert status_markdown(state, "zh").startswith(f"🏃 **{ZH['train.state.running']}**")
    assert "running" in status_markdown(state, "en")
    assert t("train.progress.step_of", "zh", step="20", max_steps="500") in progress_html(state, records, "zh")
    assert "step 20 of 500" in progress_html(state, records, "en")


def test_train_and_fine_tune_tabs_follow_a_job_through_one_view(tmp_path):
    """Their handlers, called directly: both tabs follow a job with job_view.JobView, each with its own outputs
    (Train 8, Fine-tune 9, plus the compare box on re-attach); only the Fine-tune tab says why it cannot follow."""
    import gradio as gr

    from playground import tab_train

    jobs = Jobs(tmp_path / "runs", max_concurrent=1, train_threads=1)
    try:
        ctx = SimpleNamespace(jobs=jobs)
        recs = [{"step": 1}]
        train = tab_train.on_tick(ctx, TOKEN_A, None, 7, recs, False, 0.6, "en")
        assert len(train) == 8 and train[:5] == [gr.skip()] * 5 and train[6:] == [7, recs]
        assert train[5].active is False  # nothing followed: the timer stops
        ft = tab_finetune.on_tick(ctx, TOKEN_A, None, 7, recs, "en")
        assert len(ft) == 9 and ft[:6] == [gr.skip()] * 6 and ft[7:] == [7, recs] and ft[6].active is False
        assert tab_train.on_tick(ctx, TOKEN_A, "nope", 0, [], False, 0.6, "en")[0] == gr.skip()
        assert tab_finetune.on_tick(ctx, TOKEN_A, "nope", 0, [], "en")[0].startswith("❌ Run nope does not exist")
        assert tab_train.reattach(ctx, None, None, "en") == [gr.skip()] * (8 + len(tab_train.FORM))  # view, form
        assert tab_finetune.reattach(ctx, TOKEN_A, "nope", "en") == [gr.skip()] * 10
        with pytest.raises(gr.Error, match=ZH["train.no_stop"]):
            tab_train.on_stop(ctx, TOKEN_A, None, "zh")
    finally:
        jobs.shutdown()


def test_app_exits_with_one_line_when_the_runs_directory_cannot_be_made(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {**os.environ, "NEWLEAF_RUNS": str(blocker / "runs")}
    out = subprocess.run(
        [sys.executable, "app.py"],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("newleaf: error:") and "Traceback" not in out.stderr


def test_the_data_tabs_tokenizer_is_reused_at_start():
    """A BPE trained when the corpus is loaded is not trained again when Start reads the same corpus."""
    from playground import corpus_choice

    text = "the cat sat on the mat. " * 300
    first = corpus_choice.tokenizer_for("bpe:300", text)
    assert corpus_choice.tokenizer_for("bpe:300", "".join(list(text))) is first  # the same text, read again
    assert corpus_choice.tokenizer_for("char", text) is not first


def test_a_seed_torch_cannot_take_is_refused_before_a_run_is_made(tmp_path):
    """Seed 2**80 was accepted, and the job then failed with "Overflow when unpacking long long"."""
    from types import SimpleNamespace

    from core.errors import ConfigError
    from playground import tab_train

    jobs = Jobs(tmp_path / "runs")
    try:
        ctx = SimpleNamespace(settings=Settings.from_env(), jobs=jobs)
        model = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0, preset="tiny")
        train = dict(lr=3e-3, batch_size=4, max_steps=5, max_time=0, eval_every=5, seed=2**80)
        choice = {"source": "shakespeare", "tokenizer": "char"}
        with pytest.raises(ConfigError, match="The seed must be a whole number from 0 to"):
            tab_train.create_run(ctx, TOKEN_A, choice, "seed", model, train)
        assert not any((tmp_path / "runs").iterdir())
    finally:
        jobs.shutdown()
