"""Refusals in the app, handler by handler (issue 15): `friendly` turns a NewleafError into a message in the page's
language and, on the page, leaves every output as it was (an API caller gets an error); each refusal names the
field or thing and says what is allowed, in English and in Chinese. Plus the small things: the Train form after a
reload, the progress line of a queued run, Resume after a time budget, the pickers' default, "(empty)" replies, the
fine-tune preview's count, a BPE too large for its text, the statistics table's header. The browser walks the same
cases in tests/test_browser_calm.py."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
import requests
import tiktoken

from core import files, runs
from core.errors import NewleafError
from core.finetune import prepare_finetune
from core.messages import Text
from core.trainable import FinetuneConfig
from playground import context, corpus_choice, finetune_setup, tab_data, tab_finetune, tab_model, tab_train
from playground.i18n import EN, ZH, say
from playground.job_view import progress_html, status_markdown, with_budget
from playground.jobs import Jobs, owner_id
from playground.run_picker import refreshed_choices
from playground.settings import Settings
from tests.chinese import english_words

TOKEN = "refusals-token"
TINY = [2, 2, 32, 32, 0.0, "tiny"]  # n_layer, n_head, n_embd, block_size, dropout, preset


@pytest.fixture
def ctx(tmp_path):
    jobs = Jobs(tmp_path / "runs", max_concurrent=1, train_threads=1)
    yield SimpleNamespace(settings=Settings.from_env(), jobs=jobs)
    jobs.shutdown()


@pytest.fixture
def on_the_page(monkeypatch):
    """Handlers called as the page's own queued events: the messages they show beside the page, collected."""
    shown = []
    monkeypatch.setattr(context, "_from_the_page", lambda: True)
    monkeypatch.setattr(gr, "Warning", lambda message, **_: shown.append(("warning", message)))
    monkeypatch.setattr(gr, "Info", lambda message, **_: shown.append(("info", message)))
    return shown


def start(ctx, lang="en", lr=0.002, batch=8, steps=100, max_time=0, eval_every=10, seed=1, model=TINY):
    return tab_train.on_start(ctx, TOKEN, None, 0, "t", lr, batch, steps, max_time, eval_every, seed, lang, *model)


# -- friendly: a refusal on the page is a message, and the outputs stay ----------------------------------------


def test_a_refusal_on_the_page_warns_and_leaves_every_output(ctx, on_the_page):
    assert start(ctx, steps=None) == gr.skip()  # one skip: Gradio skips every output of the event
    assert on_the_page == [("warning", "Steps is empty; give it a number.")]


def test_a_refusal_from_an_api_client_is_an_error_in_its_language(ctx):
    with pytest.raises(gr.Error, match="“步数”是空的；请填一个数字。"):
        start(ctx, lang="zh", steps="")


def test_a_streaming_handler_refuses_the_same_way(on_the_page):
    @context.friendly
    def stream(lang):
        yield "first"
        raise NewleafError(Text("jobs.not_training"))

    assert list(stream("zh")) == ["first", gr.skip()]
    assert on_the_page == [("warning", "这个运行没有在训练。")]


def test_a_bug_is_still_an_error_but_says_so_in_the_pages_language(on_the_page):
    @context.friendly
    def broken(lang):
        return int(None)

    with pytest.raises(gr.Error) as info:
        broken("zh")
    assert "出了点问题（TypeError:" in info.value.message and on_the_page == []


# -- 2: every refusal of Start names the field and says what is allowed ----------------------------------------


REFUSED_STARTS = [  # (what is typed, the message in English, in Chinese)
    (dict(steps=None), "Steps is empty; give it a number.", "“步数”是空的；请填一个数字。"),
    (dict(steps="lots"), "Steps must be a number; got 'lots'.", "“步数”必须是数字；收到的是 'lots'。"),
    (dict(steps=2.5), "Steps must be a whole number; got 2.5.", "“步数”必须是整数；收到的是 2.5。"),
    (dict(lr=-0.01), "Learning rate must be from 1e-06 to 1; got -0.01.", "“学习率”必须在 1e-06 到 1 之间"),
    (dict(max_time=-5), "Time budget must be from 0 to 86,400; got -5.", "“时间预算”必须在 0 到 86,400 之间"),
    (dict(batch=0), "Batch size must be from 1 to 128; got 0.", "“批大小”必须在 1 到 128 之间；收到的是 0。"),
    (dict(eval_every=0), "Evaluate every (steps) must be at least 1; got 0.", None),
    (dict(seed=-3), "Seed must be from 0 to 9,223,372,036,854,775,807; got -3.", None),
    (
        dict(model=[500, *TINY[1:]]),
        "Layers must be from 1 to 24; got 500.",
        "“层数”必须在 1 到 24 之间；收到的是 500。",
    ),
    (dict(model=[2, 5, 48, 32, 0.0, "tiny"]), "width n_embd=48 must be divisible by", "n_embd=48 必须能被注意力头数"),
]


@pytest.mark.parametrize("kwargs, english, chinese", REFUSED_STARTS)
def test_start_names_the_field_it_refuses(ctx, kwargs, english, chinese):
    with pytest.raises(gr.Error) as info:
        start(ctx, **kwargs)
    assert english in info.value.message
    if chinese:
        with pytest.raises(gr.Error) as info:
            start(ctx, lang="zh", **kwargs)
        assert chinese in info.value.message and not english_words(info.value.message), info.value.message
    assert not list(ctx.jobs.root.iterdir())  # nothing was made


def test_the_estimate_says_what_a_knob_allows_where_the_numbers_go(ctx):
    said = tab_model.show_estimate(ctx, None, 8, "en", 0, 500, 2, 32, 32, 0.0)
    assert said == "⚠️ **Layers must be from 1 to 24; got 500.**"
    assert "parameters" in tab_model.show_estimate(ctx, None, 8, "en", 0, 2, 2, 32, 32, 0.0)


def test_the_fine_tune_numbers_are_named_too(ctx):
    values = ("full", 0, 8, 16, 0.0, "")
    for train, words in [
        ((-0.01, 10, 0, 1), "Learning rate must be from 1e-06 to 1; got -0.01."),
        ((1e-3, None, 0, 1), "Steps is empty; give it a number."),
        ((1e-3, 10, -5, 1), "Time budget must be from 0 to 86,400; got -5."),
    ]:
        with pytest.raises(NewleafError, match=words.replace("(", r"\(").replace(".", r"\.")):
            finetune_setup.create_finetune_run(
                ctx, TOKEN, "", ("scratch", None, None, None, "tiny"), ("builtin:arithmetic-small",) + (None,) * 4,
                values, train,
            )  # fmt: skip
    with pytest.raises(NewleafError, match="LoRA rank must be at least 1; got 0"):
        finetune_setup.finetune_config("lora", 0, 0, 16, 0.0, "")
    finetune_setup.finetune_config("full", 0, None, None, None, "")  # LoRA's fields, hidden, are not asked for


def test_gpt2_without_network_names_the_tokenizer(ctx, tmp_path, monkeypatch):
    def no_network(url):
        raise requests.ConnectionError(f"HTTPSConnectionPool: Max retries exceeded with url: {url}")

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.setattr(corpus_choice, "_tokenizers", corpus_choice.OrderedDict())
    for lang, words in (("en", "GPT-2's tokenizer files are not on this machine"), ("zh", "没有 GPT-2 分词器的文件")):
        with pytest.raises(gr.Error) as info:
            tab_data.on_load(ctx, "python-stdlib", None, "", "gpt2", 1024, lang)
        assert words in info.value.message and "HTTPSConnectionPool" not in info.value.message


# -- 3: what the job manager and the trainer write, said in Chinese ---------------------------------------------


@pytest.fixture
def worker(ctx):
    """A live process standing in for a run's training worker (its command line names the run)."""
    run_id, path = ctx.jobs.new_run_dir(TOKEN, "x")
    path.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(path)])
    yield SimpleNamespace(run_id=run_id, path=path, pid=proc.pid)
    proc.kill()
    proc.wait()


def test_status_lines_of_the_job_manager_and_the_trainer_in_chinese(ctx, worker):
    run_id, path = worker.run_id, worker.path
    files.atomic_write_json(path / runs.CONFIG, {"owner": owner_id(TOKEN), "train": {"max_steps": 7777}})
    for message in (
        Text("jobs.waiting"),
        Text("jobs.starting"),
        Text("status.training", where="cpu"),
        Text("status.best_val", done=Text("status.finished_time", step=260, seconds="25"), loss="2.4975"),
        Text("jobs.failed_because", code=1, detail="..."),
    ):
        # "running" is what the processes say: a process that stands in for this run's worker (its command line
        # names the run, as the real one does) is running
        runs.write_status(path, "running", message, pid=worker.pid)
        said = status_markdown(ctx.jobs.state(run_id), "zh")
        assert said.startswith("🏃 **训练中** — ") and not english_words(said), said
    with pytest.raises(NewleafError) as info:
        ctx.jobs.check_read("someone-else", run_id)
    assert say(info.value, "zh") == f"运行 {run_id} 不存在（或属于另一个会话）。"


# -- 7: the small things ---------------------------------------------------------------------------------------


def test_the_progress_line_of_a_queued_run_reads_its_budget(tmp_path):
    files.atomic_write_json(tmp_path / runs.CONFIG, {"train": {"max_steps": 7777, "max_time": 180.0}})
    queued = {"state": "queued", "message": "Waiting for a free training slot.", "step": 0}
    line = progress_html(with_budget(tmp_path, queued), [], "en")
    assert "step 0 of 7,777 · 0 s of 180 s" in line and "step 0 of 1 " not in line


def test_resume_after_a_time_budget_says_so():
    assert tab_train.finished_message({"step": 260, "max_steps": 100_000, "max_time": 25.0}, "en") == (
        "This run used its whole time budget (25 s) and stopped at step 260; start a new run, with a larger time "
        "budget, to train more."
    )
    assert tab_train.finished_message({"step": 100, "max_steps": 100, "max_time": 25.0}, "en") == EN["train.finished"]
    assert "时间预算" in tab_train.finished_message({"step": 260, "max_steps": 100_000, "max_time": 25.0}, "zh")


def test_the_train_form_shows_a_reattached_runs_settings(ctx):
    run_id, path = ctx.jobs.new_run_dir(TOKEN, "x")
    path.mkdir()
    train = {"lr": 0.002, "batch_size": 12, "max_steps": 7777, "max_time": 25.0, "eval_every": 20, "seed": 5}
    files.atomic_write_json(path / runs.CONFIG, {"owner": owner_id(TOKEN), "title": "Mine", "train": train})
    assert tab_train.form_of(path, ctx.settings) == ["Mine", 0.002, 12, 7777, 25.0, 20, 5]
    unlimited = {**train, "max_time": ctx.settings.max_run_seconds}  # "0 = no limit" was typed
    files.atomic_write_json(path / runs.CONFIG, {"owner": owner_id(TOKEN), "title": "Mine", "train": unlimited})
    assert tab_train.form_of(path, ctx.settings)[4] == 0
    shown = tab_train.reattach(ctx, TOKEN, run_id, "en")
    assert shown[-len(tab_train.FORM) :] == ["Mine", 0.002, 12, 7777, 0, 20, 5]


def test_a_fresh_picker_prefers_a_run_that_is_not_the_arithmetic_demo(ctx):
    for name, finetune in (("text", None), ("sums", {"task": {"name": "arithmetic"}})):
        run_id, path = ctx.jobs.new_run_dir(TOKEN, name)
        (path / runs.CKPT_DIR / "step-1").mkdir(parents=True)
        files.atomic_write_json(path / runs.CKPT_DIR / "last.json", {"dir": "step-1"})
        config = {"owner": owner_id(TOKEN), "title": name, "created": 2.0 if finetune else 1.0}
        files.atomic_write_json(path / runs.CONFIG, {**config, **({"finetune": finetune} if finetune else {})})
    update = refreshed_choices(ctx, TOKEN, None, "en")
    titles = {label.split(" · ")[0]: run_id for label, run_id in update["choices"]}
    assert list(titles) == ["sums", "text"]  # newest first
    assert update["value"] == titles["text"]


def test_empty_replies_say_empty_in_the_compare_table():
    rows = [{"prompt": "What is 2 + 2?", "base": "", "finetuned": "4"}]
    assert tab_finetune.compare_table(rows, "en").values.tolist() == [["What is 2 + 2?", "(empty)", "4"]]
    zh = tab_finetune.relabel_compared(tab_finetune.compare_table(rows, "en"), "zh")
    assert zh.values.tolist() == [["What is 2 + 2?", ZH["ft.compare.empty"], "4"]]


def test_the_fine_tune_preview_counts_what_start_makes(tmp_path):
    ft = FinetuneConfig()
    base = finetune_setup.base_choice(None, None, "scratch", None, None, None, "nano")
    preview = finetune_setup.params_markdown(base, ft, "en", "builtin:arithmetic-small")
    path = prepare_finetune(tmp_path / "run", "scratch:nano", "builtin:arithmetic-small", ft=ft)
    made = runs.read_config(path)["finetune"]["params"]
    assert f"**{made['trainable']:,}** of {made['total']:,} parameters" in preview
    assert EN["ft.params.approx"] not in preview  # exact: the demo task's vocabulary is known
    assert EN["ft.params.approx"] in finetune_setup.params_markdown(base, ft, "en", "upload")


def test_a_bpe_too_large_for_its_text_is_warned_about():
    small = {"tokens": 900, "characters": 3000}
    assert tab_data.bpe_warning(1024, 1024, small, "en").startswith(
        "A BPE vocabulary of 1,024 tokens is too large for this text: its 3,000 characters make only 900 tokens"
    )
    assert "256" in tab_data.bpe_warning(1024, 1024, small, "en")  # what to choose instead
    assert tab_data.bpe_warning(1024, 1024, {"tokens": 400_000, "characters": 1_000_000}, "en") is None
    assert tab_data.bpe_warning(700, 1024, {"tokens": 400_000, "characters": 1_000_000}, "en") == EN[
        "data.bpe_small"
    ].format(got=700, asked=1024)
    assert not english_words(tab_data.bpe_warning(1024, 1024, small, "zh"))


def test_the_statistics_table_has_a_header():
    stats = {"characters": 10, "lines": 1, "words": 2, "distinct_characters": 5, "tokens": 10, "chars_per_token": 1.0}
    table = tab_data.stats_markdown({**stats, "top_characters": [("a", 3)]}, "character-level", "Using x.", "zh")
    header = table.splitlines()[2]
    assert header == f"| {ZH['data.stat.col.name']} | {ZH['data.stat.col.value']} |"


def test_the_refresh_buttons_are_not_stretched():
    css = (Path(__file__).resolve().parents[1] / "assets" / "newleaf.css").read_text(encoding="utf-8")
    assert ".nl-refresh" in css  # the browser test measures it
