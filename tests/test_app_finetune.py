"""The Fine-tune tab, in the whole app launched in-process and driven through its API with gradio_client: check the
demo data, fine-tune a tiny fresh model on the small arithmetic task, follow it to the end, read the before / after
results and compare replies; bad data and an offline Hub model give the engine's specific messages; another
session can neither stop nor follow the run. (That fine-tuning raises the demo's accuracy is core's own test, in
tests/test_finetune.py.)
"""

from types import SimpleNamespace

import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from core import runs
from core.errors import ConfigError, CorpusError, NewleafError
from core.hf import KNOWN_HUB_SHAPES
from core.model import GPTConfig
from playground import finetune_setup, form_values, tab_finetune
from playground.i18n import ZH, t
from playground.jobs import Jobs
from playground.settings import Settings
from tests.test_app import app, wait_for  # noqa: F401  (the app fixture: the whole app on a temporary runs dir)
from tests.test_app import loss_traces as traces

TOKEN_A, TOKEN_B = "finetune-session-a", "finetune-session-b"
TINY_FRESH = ("scratch", None, "distilgpt2", "", "tiny")  # base_kind, base_run, hub_model, folder, preset
NO_COLUMNS = ("", "", "truncate")  # prompt_column, response_column, too_long


def check(client, token, source, files=None, base=TINY_FRESH, lang="en", *csv_column):
    """csv_column: passed only when given, so the call without it (as made before it existed) is tested too."""
    return client.predict(token, *base, source, files, *NO_COLUMNS, lang, *csv_column, api_name="/check_finetune_data")


def start(client, token, title, source="builtin:arithmetic-small", steps=40, base=TINY_FRESH):
    # method, freeze_layers, lora_rank, lora_alpha, lora_dropout, lora_layers, then lr, steps, max_time, seed
    return client.predict(
        token,
        title,
        *base,
        source,
        None,
        *NO_COLUMNS,
        "full",
        0,
        8,
        16,
        0.0,
        "",
        3e-3,
        steps,
        0,
        1,
        "en",
        api_name="/start_finetune",
    )


def poll(client, token, run_id):
    # status, progress, loss plot, samples, headline, results table, timer
    return client.predict(token, run_id, "en", api_name="/poll_finetune")


def test_check_data_shows_what_was_understood(app):
    c = app["client"]()
    info = check(c, TOKEN_A, "builtin:arithmetic")
    assert "Two-digit addition" in info and "8,200 conversations" in info and "200 of them are held-out" in info
    assert "fits the context" in info and "<|user|>What is" in info and "<|assistant|>" in info


def test_fine_tune_runs_to_the_end_with_results_before_and_after(app):
    a, b = app["client"](), app["client"]()
    out = start(a, TOKEN_A, "demo")
    run_id, status = out[0], out[1]
    assert run_id and ("queued" in status or "running" in status)
    assert "What is" in out[-1]  # the compare box is prefilled with held-out questions
    config = runs.read_config(app["root"] / run_id)
    assert config["finetune"]["method"] == "full" and config["finetune"]["task"]["name"] == "arithmetic-small"
    assert config["title"] == "demo" and config["train"]["max_steps"] == 40

    # another session can neither stop nor follow it
    with pytest.raises(AppError, match="belongs to another session"):
        b.predict(TOKEN_B, run_id, "en", api_name="/stop_finetune")
    theirs = poll(b, TOKEN_B, run_id)
    assert "belongs to another session" in theirs[0] and not traces(theirs[2])

    jobs = app["jobs"]
    wait_for(lambda: jobs.state(run_id)["state"] == "completed" and run_id not in jobs.procs, timeout=120)
    status, _, plot, samples, headline, table = poll(a, TOKEN_A, run_id)[:6]
    assert "completed" in status and "Exact match on 20 held-out prompts" in status
    assert {t.name for t in traces(plot)} >= {"train (raw)", "validation"}
    assert "<|assistant|>" in samples
    assert "→ fine-tuned" in headline
    rows = {row[0]: row[1:] for row in table["data"]}
    before, after = rows["Exact match (%)"]
    assert isinstance(before, (int, float)) and isinstance(after, (int, float)) and 0 <= before <= 100
    assert all(isinstance(v, (int, float)) for v in rows["Validation loss"])

    compared = a.predict(TOKEN_A, run_id, "What is 2 + 3?\n\nWhat is 4 + 4?", "en", api_name="/compare_finetune")
    assert compared["headers"] == ["Prompt", "Base", "Fine-tuned"]
    assert [r[0] for r in compared["data"]] == ["What is 2 + 3?", "What is 4 + 4?"]
    with pytest.raises(AppError, match="belongs to another session"):
        b.predict(TOKEN_B, run_id, "What is 2 + 3?", "en", api_name="/compare_finetune")
    with pytest.raises(AppError, match="not training"):
        a.predict(TOKEN_A, run_id, "en", api_name="/stop_finetune")
    assert run_id in str(a.predict(TOKEN_A, "en", api_name="/list_runs"))  # the Runs tab lists it too
    # the result is a base for more fine-tuning, for its owner only
    as_base = ("run", run_id, "distilgpt2", "", "nano")
    assert "fits the context of 32 tokens" in check(a, TOKEN_A, "builtin:arithmetic-small", base=as_base)
    with pytest.raises(AppError, match="belongs to another session"):
        check(b, TOKEN_B, "builtin:arithmetic-small", base=as_base)


def test_bad_data_and_an_offline_hub_model_give_specific_messages(app, tmp_path):
    c = app["client"]()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "Hi", "completion": "Yo"}\n{"prompt": "Hi", "completion": "Yo"\n')
    with pytest.raises(AppError, match=r"bad\.jsonl, line 2: not valid JSON"):
        check(c, TOKEN_A, "upload", [handle_file(str(bad))])
    good = tmp_path / "pairs.csv"
    good.write_text("question,answer\nWho are you?,Newleaf.\nSay hi,Hi there!\n")
    assert "2 conversations" in check(c, TOKEN_A, "upload", [handle_file(str(good))])
    hub = ("hub", None, "newleaf-tests/no-such-model", "", "nano")
    with pytest.raises(AppError, match="not in the Hugging Face cache"):
        start(c, TOKEN_A, "offline", base=hub)
    with pytest.raises(AppError, match="not a Hugging Face Hub model id"):
        check(c, TOKEN_A, "builtin:arithmetic-small", base=("hub", None, "../secrets", "", "nano"))
    assert not [r for r in app["jobs"].list_runs(TOKEN_A) if r["title"] == "offline"]


def test_parameter_preview_full_frozen_and_lora():
    base = finetune_setup.BaseChoice(
        "scratch:nano", finetune_setup.preset_config("nano", 32), None, {}, "fresh", scratch=True
    )
    full = finetune_setup.params_markdown(base, finetune_setup.finetune_config("full", 0, 8, 16, 0, ""))
    frozen = finetune_setup.params_markdown(base, finetune_setup.finetune_config("full", 1, 8, 16, 0, ""))
    lora = finetune_setup.params_markdown(base, finetune_setup.finetune_config("lora", 0, 2, 16, 0, "0,1"))
    counts = [int(md.split("**")[1].replace(",", "")) for md in (full, frozen, lora)]
    assert counts[0] > counts[1] > counts[2] > 0 and "(100.0%)" in full
    assert "leaves none to train" in finetune_setup.params_markdown(
        base, finetune_setup.finetune_config("full", 3, 8, 16, 0, "")
    )


def test_the_parameter_preview_says_when_the_data_may_add_embedding_rows():
    """For a run or Hub base the preview cannot count the rows the data adds (chat markers, new characters):
    it says so, unless the data cannot add any (a built-in plain-text corpus on a byte-level tokenizer)."""
    ft = finetune_setup.finetune_config("lora", 0, 2, 16, 0, "")
    hub = finetune_setup.BaseChoice(
        "hf:distilgpt2", GPTConfig(**KNOWN_HUB_SHAPES["distilgpt2"]), None, {}, "distilgpt2"
    )
    char_run = finetune_setup.BaseChoice(
        "runs/x", finetune_setup.preset_config("tiny", 40), None, {"tokenizer": {"kind": "char"}}, "x"
    )
    approx = t("ft.params.approx_data")
    assert approx in finetune_setup.params_markdown(hub, ft, "en", "builtin:arithmetic")  # chat markers
    assert approx in finetune_setup.params_markdown(hub, ft, "en", finetune_setup.UPLOAD)  # not known yet
    assert approx not in finetune_setup.params_markdown(hub, ft, "en", "builtin:shakespeare")
    assert approx in finetune_setup.params_markdown(char_run, ft, "en", "builtin:shakespeare")  # new characters
    assert ZH["ft.params.approx_data"] in finetune_setup.params_markdown(hub, ft, "zh", "builtin:arithmetic")
    # a fresh model keeps its own note (its whole vocabulary comes from the data), unless the data is a demo task,
    # whose vocabulary is known: then the count is exact (tests/test_refusals.py checks it against a prepared run)
    fresh = finetune_setup.BaseChoice(
        "scratch:nano", finetune_setup.preset_config("nano", 32), None, {}, "fresh", scratch=True
    )
    assert t("ft.params.approx") in finetune_setup.params_markdown(fresh, ft, "en", finetune_setup.UPLOAD)
    assert t("ft.params.approx") not in finetune_setup.params_markdown(fresh, ft, "en", "builtin:arithmetic")


def test_headline_says_when_validation_reused_the_training_questions():
    evals = {
        "base": {"items": 4, "exact_match": 0.25, "val_loss": 2.0},
        "finetuned": {"items": 4, "exact_match": 0.75, "val_loss": 1.0},
    }
    held_out = tab_finetune.results_markdown(evals, "en")
    assert "4 held-out questions" in held_out and "25%" in held_out and "75%" in held_out
    reused = tab_finetune.results_markdown(evals, "en", val_is_train=True)
    assert "4 training questions (too few examples to hold any out)" in reused and "held-out" not in reused
    assert "75%" in reused
    zh = tab_finetune.results_markdown(evals, "zh", val_is_train=True)
    assert "训练问题" in zh and "留出问题" not in zh
    base_only = {"base": evals["base"]}
    assert "training questions" in tab_finetune.results_markdown(base_only, "en", val_is_train=True)
    assert "held-out questions" in tab_finetune.results_markdown(base_only, "en")
    assert "训练问题" in tab_finetune.results_markdown(base_only, "zh", val_is_train=True)


def test_a_small_conversation_set_is_reported_as_reusing_the_training_examples(tmp_path):
    pairs = tmp_path / "few.csv"
    pairs.write_text("question,answer\nWho are you?,Newleaf.\nSay hi,Hi there!\n")
    data = finetune_setup.load_data(Settings.from_env(), finetune_setup.UPLOAD, [str(pairs)], "", "")
    base = finetune_setup.BaseChoice(
        "scratch:tiny", finetune_setup.preset_config("tiny", 32), None, {}, "fresh", scratch=True
    )
    facts = finetune_setup.data_facts(data, base, "truncate")
    assert "too few to hold some out" in finetune_setup.render_data_report(facts, "en")
    assert ZH["ft.check.no_hold_out"].format(n=2) in finetune_setup.render_data_report(facts, "zh")


CSV_ROWS = "id,body\n" + "".join(f"{i},The quick brown fox jumps over the lazy dog number {i}.\n" for i in range(60))


def test_csv_text_column_for_plain_text_fine_tuning(app, tmp_path):
    c = app["client"]()
    table = tmp_path / "notes.csv"
    table.write_text(CSV_ROWS)
    # without the column: the engine's message names the columns there are
    with pytest.raises(AppError, match=r"several columns and none is called 'text'.*Available columns: 'id', 'body'"):
        check(c, TOKEN_A, "upload", [handle_file(str(table))])
    info = check(c, TOKEN_A, "upload", [handle_file(str(table))], TINY_FRESH, "en", "body")
    assert "plain text" in info and "notes.csv" in info
    assert "\nThe quick brown fox jumps over the lazy dog number 0.\n" in info and "0,The" not in info
    assert "纯文本" in check(c, TOKEN_A, "upload", [handle_file(str(table))], TINY_FRESH, "zh", "body")
    with pytest.raises(AppError, match="has no column 'nope'"):
        check(c, TOKEN_A, "upload", [handle_file(str(table))], TINY_FRESH, "en", "nope")

    # directly: the data, and a run made from it (not started), is plain text from that column only
    s = Settings.from_env()
    data = finetune_setup.load_data(s, finetune_setup.UPLOAD, [str(table)], "", "", " body ")
    assert data.kind == "text" and "fox" in data.text and "0,The" not in data.text
    with pytest.raises(CorpusError, match="not both"):
        finetune_setup.load_data(s, finetune_setup.UPLOAD, [str(table)], "id", "body", "body")
    jobs = Jobs(tmp_path / "runs", max_concurrent=1, train_threads=1)
    try:
        ctx = SimpleNamespace(settings=s, jobs=jobs)
        run_id, note = finetune_setup.create_finetune_run(
            ctx,
            TOKEN_A,
            "",
            ("scratch", None, "", "", "tiny"),
            ("upload", [str(table)], "", "", "truncate"),
            ("full", 0, 8, 16, 0.0, ""),
            (3e-3, 5, 0, 1),
            "en",
            "body",
        )
        config = runs.read_config(jobs.run_dir(run_id))
        assert config["data"]["format"] == "text" and config["data"]["name"] == "notes.csv"
        assert "Fine-tuning" in note
        with pytest.raises(CorpusError, match="none is called 'text'"):
            finetune_setup.create_finetune_run(
                ctx,
                TOKEN_A,
                "",
                ("scratch", None, "", "", "tiny"),
                ("upload", [str(table)], "", "", "truncate"),
                ("full", 0, 8, 16, 0.0, ""),
                (3e-3, 5, 0, 1),
                "en",
            )
    finally:
        jobs.shutdown()


def test_fine_tune_tab_in_chinese():
    """Choices keep their values with Chinese labels; the tab's own messages and reports are Chinese in zh."""
    for fn in (
        finetune_setup.source_choices,
        tab_finetune.base_kind_choices,
        tab_finetune.method_choices,
        tab_finetune.too_long_choices,
    ):
        en, zh = fn("en"), fn("zh")
        assert [v for _, v in en] == [v for _, v in zh] and [label for label, _ in en] != [label for label, _ in zh]
    zh_sources = {v: label for label, v in finetune_setup.source_choices("zh")}
    assert zh_sources["builtin:arithmetic"].startswith("演示：两位数加法")
    assert finetune_setup.source_choices("en")[0][0].startswith("Demo: Two-digit addition: 8,000 training questions")
    with pytest.raises(ConfigError, match="冻结的层数"):
        finetune_setup.finetune_config("full", "many", 8, 16, 0, "", lang="zh")
    with pytest.raises(ConfigError, match="Frozen layers must be a number"):
        finetune_setup.finetune_config("full", "many", 8, 16, 0, "")
    with pytest.raises(ConfigError, match="用逗号分隔"):
        form_values.parse_layers("a,b", "zh")
    facts = {
        "chat": True,
        "name": "demo",
        "examples": 10,
        "held_out": 2,
        "block": 32,
        "note": "",
        "why": "",
        "chars": 100,
        "tokens": None,
        "preview": "<|user|>hi",
    }
    zh = finetune_setup.render_data_report(facts, "zh")
    assert "10 段对话" in zh and "2 个是留出的问题" in zh and "conversations" not in zh
    assert "10 conversations" in finetune_setup.render_data_report(facts, "en")
    assert finetune_setup.render_data_report(None, "zh") == ZH["ft.data.none"]


def test_check_data_in_chinese(app):
    info = check(app["client"](), TOKEN_A, "builtin:arithmetic-small", lang="zh")
    assert "段对话" in info and "conversations" not in info


def test_local_folders_are_read_only_where_the_apps_owner_allows(tmp_path):
    """A typed folder once reached anything on the server (another instance's runs), and the answer told whether a
    path like /root/.ssh existed. Now no folder is read unless listed in NEWLEAF_LOCAL_MODEL_DIRS, and a path is
    judged before it is looked up."""
    import dataclasses

    allowed = tmp_path / "models"
    (allowed / "tiny-gpt2").mkdir(parents=True)
    (allowed / "tiny-gpt2" / "config.json").write_text(
        '{"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 8, "n_positions": 16, "vocab_size": 50257}'
    )
    secret = tmp_path / "secret"
    secret.mkdir()
    (allowed / "link-out").symlink_to(secret)
    jobs = Jobs(tmp_path / "runs")
    try:
        off = SimpleNamespace(settings=Settings.from_env(), jobs=jobs)
        assert off.settings.local_model_dirs == ()
        answers = set()
        for typed in (str(secret), str(tmp_path / "no-such-folder"), str(allowed / "tiny-gpt2")):
            with pytest.raises(NewleafError, match="Local folders are off.*NEWLEAF_LOCAL_MODEL_DIRS") as e:
                finetune_setup.base_choice(off, TOKEN_A, "folder", None, "", typed, "tiny")
            answers.add(str(e.value))
        assert len(answers) == 1  # the same words whether the path exists or not
        on = SimpleNamespace(settings=dataclasses.replace(off.settings, local_model_dirs=(allowed,)), jobs=jobs)
        answers = set()
        for typed in (str(secret), str(tmp_path / "no-such-folder"), str(allowed / "link-out"), "../../etc"):
            with pytest.raises(NewleafError, match="not inside the folders this app may read a model from") as e:
                finetune_setup.base_choice(on, TOKEN_A, "folder", None, "", typed, "tiny")
            answers.add(str(e.value))
        assert len(answers) == 1
        base = finetune_setup.base_choice(on, TOKEN_A, "folder", None, "", str(allowed / "tiny-gpt2"), "tiny")
        assert base.model_cfg.n_embd == 8 and base.spec == str(allowed / "tiny-gpt2")
        with pytest.raises(NewleafError, match="No folder"):  # inside the allowed folders, existence may be said
            finetune_setup.base_choice(on, TOKEN_A, "folder", None, "", str(allowed / "missing"), "tiny")
    finally:
        jobs.shutdown()
