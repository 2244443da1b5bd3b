"""The Fine-tune tab, in the whole app launched in-process and driven through its API with gradio_client: check the
demo data, fine-tune a tiny fresh model on the small arithmetic task, follow it to the end, read the before / after
results and compare replies; bad data and an offline Hub model give the engine's specific messages; another
session can neither stop nor follow the run. (That fine-tuning raises the demo's accuracy is core's own test, in
tests/test_finetune.py.)
"""
import plotly.io
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError

from core import runs
from playground import tab_finetune
from tests.test_app import app, wait_for  # noqa: F401  (the app fixture: the whole app on a temporary runs dir)

TOKEN_A, TOKEN_B = "finetune-session-a", "finetune-session-b"
TINY_FRESH = ("scratch", None, "distilgpt2", "", "tiny")  # base_kind, base_run, hub_model, folder, preset
NO_COLUMNS = ("", "", "truncate")                          # prompt_column, response_column, too_long


def check(client, token, source, files=None, base=TINY_FRESH):
    return client.predict(token, *base, source, files, *NO_COLUMNS, "en", api_name="/check_finetune_data")


def start(client, token, title, source="builtin:arithmetic-small", steps=40, base=TINY_FRESH):
    # method, freeze_layers, lora_rank, lora_alpha, lora_dropout, lora_layers, then lr, steps, max_time, seed
    return client.predict(token, title, *base, source, None, *NO_COLUMNS, "full", 0, 8, 16, 0.0, "",
                          3e-3, steps, 0, 1, "en", api_name="/start_finetune")


def poll(client, token, run_id):
    # status, progress, loss plot, samples, headline, results table, timer
    return client.predict(token, run_id, "en", api_name="/poll_finetune")


def traces(plot_value):
    if not isinstance(plot_value, dict) or "plot" not in plot_value:
        return []
    return [t for t in plotly.io.from_json(plot_value["plot"]).data if len(t.x or ())]


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
    base = tab_finetune.BaseChoice("scratch:nano", tab_finetune.preset_config("nano", 32), None, {}, "fresh",
                                   scratch=True)
    full = tab_finetune.params_markdown(base, tab_finetune.finetune_config("full", 0, 8, 16, 0, ""))
    frozen = tab_finetune.params_markdown(base, tab_finetune.finetune_config("full", 1, 8, 16, 0, ""))
    lora = tab_finetune.params_markdown(base, tab_finetune.finetune_config("lora", 0, 2, 16, 0, "0,1"))
    counts = [int(md.split("**")[1].replace(",", "")) for md in (full, frozen, lora)]
    assert counts[0] > counts[1] > counts[2] > 0 and "(100.0%)" in full
    assert "leaves none to train" in tab_finetune.params_markdown(
        base, tab_finetune.finetune_config("full", 3, 8, 16, 0, ""))
