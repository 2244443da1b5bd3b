"""The Generate and Attention tabs: generation, next-token bars and attention maps through gradio_client
against the two tabs launched in-process (with ownership and error messages); and their pure pieces
(settings, figures, the next-token bars from cached logits, feedback, the model cache) directly."""

import math
import re
import shutil
from types import SimpleNamespace

import gradio as gr
import numpy as np
import plotly.io
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from core import files, runs
from core.chat import reply
from core.engine import SamplingParams, generate
from core.errors import ConfigError, NewleafError
from core.model import GPT
from core.train import Trainer
from playground import charts_inspect, form_values, tab_attention, tab_generate
from playground.i18n import EN, ZH
from playground.jobs import Jobs, owner_id
from playground.model_cache import ModelCache, get_model
from playground.run_picker import readable_runs, run_summary
from playground.settings import Settings
from tests.apps import free_port, tab_context
from tests.test_train import make_run

TOKEN_A, TOKEN_B = "token-of-browser-a", "token-of-browser-b"
RUN = "alpha"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, shakespeare_text):
    root = tmp_path_factory.mktemp("runs")
    run = make_run(root / RUN, shakespeare_text[:30_000], max_steps=20, eval_every=10)
    Trainer(run).fit()
    config = runs.read_config(run)
    config.update(owner=owner_id(TOKEN_A), title="Alpha")
    files.atomic_write_json(run / runs.CONFIG, config)
    return root


@pytest.fixture(scope="module")
def app(runs_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEWLEAF_RUNS", str(runs_dir))
        jobs = Jobs(runs_dir)
        with gr.Blocks() as demo:
            ctx = tab_context(jobs)
            with gr.Tab("Generate"):
                tab_generate.create_tab(ctx)
            with gr.Tab("Attention"):
                tab_attention.create_tab(ctx)
        port = free_port()
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
        try:
            yield {
                "client": Client(
                    f"http://127.0.0.1:{port}/", verbose=False, download_files=str(runs_dir.parent / "client-downloads")
                ),
                "root": runs_dir,
                "jobs": jobs,
            }
        finally:
            demo.close()
            jobs.shutdown()


def knobs(**over):
    k = dict(
        max_new_tokens=40,
        temperature=0.0,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        repetition_penalty=1.0,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        seed=None,
        stop="",
    )
    k.update(over)
    return k


def plot_data(value) -> tuple:
    """The traces of a gr.Plot value as gradio_client returns it (plotly JSON, arrays possibly base64)."""
    return plotly.io.from_json(value["plot"]).data


# ----------------------------------------------------------------------------------------------------------
# Through the app


def test_generate_greedy_matches_the_engine(app, runs_dir):
    out = app["client"].predict(TOKEN_A, RUN, "ROMEO:", **knobs(), num_samples=1, api_name="/generate")
    text, seed_used = out[0], out[4]
    model, tok = runs.load_model(runs_dir / RUN)
    expected = generate(model, tok, "ROMEO:", SamplingParams(max_new_tokens=40, temperature=0))[0].text
    assert text == expected and len(text) > 0
    assert out[1:4] == ("", "", "") and isinstance(seed_used, (int, float))
    tokens = out[5]  # the coloured token view: one entry per generated token
    assert "".join(t["token"] for t in tokens) == text.replace("\n", "⏎")


def test_generate_several_samples_with_a_seed_is_reproducible(app):
    args = dict(**knobs(temperature=1.0, seed=1234, max_new_tokens=20), num_samples=3)
    a = app["client"].predict(TOKEN_A, RUN, "ROMEO", **args, api_name="/generate")
    b = app["client"].predict(TOKEN_A, RUN, "ROMEO", **args, api_name="/generate")
    assert a[:3] == b[:3] and all(a[:3]) and a[3] == "" and a[4] == 1234


def test_next_token_bars(app):
    fig, summary = app["client"].predict(TOKEN_A, RUN, "ROMEO", 1.0, 0, 1.0, 0.0, "en", api_name="/next_token")
    raw, after = plot_data(fig)
    assert len(raw["x"]) == tab_generate.NEXT_TOP and list(raw["x"]) == sorted(raw["x"], reverse=True)
    assert math.isclose(sum(after["x"]), sum(raw["x"]), rel_tol=1e-4)  # T=1 and no cut-offs: unchanged
    assert "can still be drawn" in summary
    fig, _ = app["client"].predict(TOKEN_A, RUN, "ROMEO", 1.0, 3, 1.0, 0.0, "en", api_name="/next_token")
    assert sum(p > 0 for p in plot_data(fig)[1]["x"]) == 3  # top-k = 3


def test_attention_figure(app):
    fig, note = app["client"].predict(TOKEN_A, RUN, "To be, or", "1", "2", "en", api_name="/attention")
    assert "9 tokens" in note
    (trace,) = plot_data(fig)
    z = np.array(trace["z"], dtype=float)
    assert z.shape == (9, 9)
    assert np.isnan(z[np.triu_indices(9, 1)]).all()  # the causal mask is blank
    assert np.allclose(np.nansum(z, axis=1), 1, atol=2e-3)  # every row sums to 1
    # all heads: one small heatmap per head; a prompt longer than the context keeps its last block_size tokens
    fig, note = app["client"].predict(TOKEN_A, RUN, "ROMEO: " * 10, "2", "all", "en", api_name="/attention")
    block = runs.read_config(app["root"] / RUN)["model"]["block_size"]
    traces = plot_data(fig)
    assert len(traces) == runs.read_config(app["root"] / RUN)["model"]["n_head"]
    assert np.array(traces[0]["z"], dtype=float).shape == (block, block)
    assert f"only the last {block}" in note


def test_other_sessions_cannot_use_a_run(app):
    c = app["client"]
    for call in (
        lambda: c.predict(TOKEN_B, RUN, "ROMEO:", **knobs(), num_samples=1, api_name="/generate"),
        lambda: c.predict(TOKEN_B, RUN, "ROMEO", 1.0, 0, 1.0, 0.0, "en", api_name="/next_token"),
        lambda: c.predict(TOKEN_B, RUN, "ROMEO", "1", "all", "en", api_name="/attention"),
    ):
        with pytest.raises(AppError, match="belongs to another session"):
            call()
    with pytest.raises(AppError, match="No run selected"):
        c.predict(TOKEN_A, None, "ROMEO:", **knobs(), num_samples=1, api_name="/generate")


def test_clear_errors_for_bad_input(app):
    c = app["client"]
    with pytest.raises(AppError, match="never saw in training: '€'"):
        c.predict(TOKEN_A, RUN, "ROMEO €", **knobs(), num_samples=1, api_name="/generate")
    with pytest.raises(AppError, match="never saw in training"):
        c.predict(TOKEN_A, RUN, "€", "1", "all", "en", api_name="/attention")
    with pytest.raises(AppError, match="max_new_tokens is limited to 2000; got 1000000"):
        c.predict(TOKEN_A, RUN, "ROMEO", **knobs(max_new_tokens=10**6), num_samples=1, api_name="/generate")
    with pytest.raises(AppError, match="Type a prompt first"):
        c.predict(TOKEN_A, RUN, "", 1.0, 0, 1.0, 0.0, "en", api_name="/next_token")


def test_the_run_picker_offers_only_readable_runs_with_a_checkpoint(app):
    (app["root"] / "untrained").mkdir(exist_ok=True)
    files.atomic_write_json(app["root"] / "untrained" / runs.CONFIG, {"owner": owner_id(TOKEN_A), "title": "New"})
    ctx = SimpleNamespace(jobs=app["jobs"])
    assert readable_runs(ctx, TOKEN_A) == [("Alpha · completed", RUN)]
    assert readable_runs(ctx, TOKEN_B) == [] and readable_runs(ctx, None) == []
    assert "tokenizer" in run_summary(ctx, TOKEN_A, RUN)


def test_generate_and_attention_in_chinese(app):
    """The session language reaches every handler: the tabs' own messages and the run's line are Chinese."""
    c = app["client"]
    with pytest.raises(AppError, match=re.escape(ZH["gen.no_run"])):
        c.predict(TOKEN_A, None, "ROMEO:", **knobs(), num_samples=1, lang="zh", api_name="/generate")
    with pytest.raises(AppError, match=re.escape(ZH["gen.chat.empty"])):
        c.predict(TOKEN_A, RUN, "  ", [], **knobs(), lang="zh", api_name="/chat")
    with pytest.raises(AppError, match=re.escape(ZH["gen.no_prompt"])):
        c.predict(TOKEN_A, RUN, "", 1.0, 0, 1.0, 0.0, "zh", api_name="/next_token")
    with pytest.raises(AppError, match=re.escape(ZH["attn.no_prompt"])):
        c.predict(TOKEN_A, RUN, "", "1", "all", "zh", api_name="/attention")
    with pytest.raises(AppError, match=re.escape(ZH["gen.no_run"])):
        c.predict(TOKEN_A, None, "ROMEO", "1", "all", "zh", api_name="/attention")
    fig, note = c.predict(TOKEN_A, RUN, "To be, or", "1", "all", "zh", api_name="/attention")
    assert note == ZH["attn.note"].format(n=9) and "全部" in plotly.io.from_json(fig["plot"]).layout.title.text
    _, summary = c.predict(TOKEN_A, RUN, "ROMEO", 1.0, 0, 1.0, 0.0, "zh", api_name="/next_token")
    assert "可能被抽中" in summary
    ctx = SimpleNamespace(jobs=app["jobs"])
    line = run_summary(ctx, TOKEN_A, RUN, "zh")
    assert "分词器" in line and "层" in line and "tokenizer" not in line
    assert readable_runs(ctx, TOKEN_A, "zh") == [("Alpha · 已完成", RUN)]


def test_chat_streams_a_reply(app, runs_dir):
    chosen = knobs(max_new_tokens=15, temperature=1.0, seed=7)
    history, box = app["client"].predict(TOKEN_A, RUN, "Hello", [], **chosen, api_name="/chat")
    assert box == "" and [m["role"] for m in history] == ["user", "assistant"]

    def text(content):  # Gradio may hand content back as a list of parts
        return "".join(p["text"] for p in content) if isinstance(content, list) else content

    assert text(history[0]["content"]) == "Hello"
    # the reply is the engine's own reply to the same conversation with the same seed
    model, tok = runs.load_model(runs_dir / RUN)
    params = SamplingParams(max_new_tokens=15, temperature=1.0, seed=7)
    expected = reply(model, tok, runs.read_config(runs_dir / RUN), [{"role": "user", "content": "Hello"}], params)
    assert expected.strip() and text(history[1]["content"]) == expected


# ----------------------------------------------------------------------------------------------------------
# Pure pieces


def test_settings_from_the_ui():
    p = tab_generate.make_params(50, 0.7, 0, 1.0, 0.0, 1.0, 0.0, 0.0, -1, "\\n\\n, THE END", 2, limit=100)
    assert (p.top_k, p.top_p, p.min_p, p.seed, p.num_samples) == (None, None, None, None, 2)
    assert p.stop == ["\n\n", "THE END"]
    assert form_values.parse_stop("a,b\nc") == ["a,b", "c"]  # several lines: one stop string per line
    assert form_values.parse_stop("x,y,x,y") == ["x", "y"]
    # 100,000 stop strings once took 74 s for 20 tokens (a quadratic de-duplication, then a check per string):
    # refused at once, in the page's language
    with pytest.raises(ConfigError, match="Stop strings: at most 32, each at most 200 characters"):
        form_values.parse_stop(",".join(f"s{i}" for i in range(100_000)))
    with pytest.raises(ConfigError, match="停止字符串"):
        form_values.parse_stop("x" * 201, "zh")
    assert len(form_values.parse_stop(",".join(f"s{i}" for i in range(32)))) == 32
    assert tab_generate.make_params(5, 0, 3, 0.5, 0.1, 1.2, 0, 0, 7, "", limit=10).seed == 7
    with pytest.raises(ConfigError, match="limited to 10"):
        tab_generate.make_params(11, 0, 0, 1, 0, 1, 0, 0, None, "", limit=10)
    with pytest.raises(ConfigError, match="Temperature is empty"):
        tab_generate.make_params(5, None, 0, 1, 0, 1, 0, 0, None, "")


def test_the_tabs_own_messages_in_chinese():
    with pytest.raises(ConfigError, match="“温度”是空的"):
        tab_generate.make_params(5, None, 0, 1, 0, 1, 0, 0, None, "", lang="zh")
    with pytest.raises(ConfigError, match="Top-k 必须是 0"):
        tab_generate.make_params(5, 1, -2, 1, 0, 1, 0, 0, None, "", lang="zh")
    with pytest.raises(ConfigError, match="随机种子必须"):
        tab_generate.make_params(5, 1, 0, 1, 0, 1, 0, 0, -5, "", lang="zh")
    with pytest.raises(ConfigError, match="这里最多允许 10 个"):
        form_values.check_prompt_length("x" * 11, SimpleNamespace(max_prompt_chars=10), "zh")
    with pytest.raises(ConfigError, match="at most 10 are allowed here"):
        form_values.check_prompt_length("x" * 11, SimpleNamespace(max_prompt_chars=10))
    # attention: "all" is translated, the values stay; the note and errors follow the language
    en, zh = tab_attention.head_choices(2), tab_attention.head_choices(2, "zh")
    assert [v for _, v in en] == [v for _, v in zh] == ["all", "1", "2"] and zh[0] == ("全部", "all")
    data = {
        "labels": ["a", "b"],
        "maps": [[[[1.0, 0.0], [0.5, 0.5]]]],
        "n_layer": 1,
        "n_head": 1,
        "n_tokens": 5,
        "block_size": 2,
    }
    assert tab_attention.map_note(data, "zh") == ZH["attn.note.cut"].format(
        n=5, shown=2, why=ZH["attn.why.context"].format(block=2)
    )
    with pytest.raises(NewleafError, match="这个模型的层编号是 1 到 1"):
        tab_attention.draw(data, 3, "all", "zh")
    with pytest.raises(NewleafError, match="This model has heads 1 to 1 per layer; got 2"):
        tab_attention.draw(data, 1, "2")


def test_attention_heatmap_blanks_the_causal_mask():
    T, H = 5, 3
    att = torch.softmax(
        torch.randn(H, T, T).masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")), dim=-1
    )
    labels = ["a", " ", "\n", "b", "a"]
    fig = charts_inspect.attention_figure(att.numpy(), labels, head=1)
    z = np.array(fig.data[0].z, dtype=float)
    assert np.isnan(z[np.triu_indices(T, 1)]).all()
    assert np.allclose(z[np.tril_indices(T)], att[1].numpy()[np.tril_indices(T)], atol=1e-4)
    names = list(fig.layout.yaxis.categoryarray)  # a category per token: repeated tokens keep their own row
    assert len(set(names)) == T and list(fig.data[0].y) == names
    assert [n.rstrip("\u200b") for n in names] == ["a", "␠", "⏎", "b", "a"]  # what the ticks show
    # the hover names both tokens, their positions (repeated tokens told apart) and the weight
    hover = fig.data[0].hovertemplate
    assert hover.startswith("“%{y}” #%{customdata[0]} looks at “%{x}” #%{customdata[1]}: %{z:.1%}")
    assert list(fig.data[0].customdata[4][1]) == [5, 2]
    grid = charts_inspect.attention_figure(att.numpy(), labels, head=None)
    assert len(grid.data) == H and all(np.isnan(np.array(d.z, dtype=float)[0, 1:]).all() for d in grid.data)


def test_next_token_bars_follow_the_sliders_without_the_model(runs_dir, monkeypatch):
    model, tok = runs.load_model(runs_dir / RUN)
    data = tab_generate.next_token_data(model, tok, "ROMEO")

    def no_forward(*a, **k):
        raise AssertionError("the model must not run again")

    monkeypatch.setattr(GPT, "forward", no_forward)
    cold, _ = tab_generate.next_token_bars(data, 0.5, 0, 1.0, 0.0)
    hot, _ = tab_generate.next_token_bars(data, 1.5, 0, 1.0, 0.0)
    assert cold.data[1].x[0] > hot.data[1].x[0]  # lower temperature: the favourite gets likelier
    assert cold.data[0].x == hot.data[0].x  # the model's own distribution does not move
    greedy, summary = tab_generate.next_token_bars(data, 0, 0, 1.0, 0.0)
    assert list(greedy.data[1].x) == [1.0] + [0.0] * (len(greedy.data[1].x) - 1) and "greedy" in summary
    nucleus, _ = tab_generate.next_token_bars(data, 1.0, 0, 0.1, 0.0)
    kept = [p for p in nucleus.data[1].x if p > 0]
    assert 1 <= len(kept) < len(nucleus.data[1].x) and math.isclose(sum(kept), 1, rel_tol=1e-5)
    assert tab_generate.next_token_bars(None, 1, 0, 1, 0) == (None, "")


def test_alternatives_chart_shows_whitespace():
    state = {
        "samples": [
            {"tokens": ["a", " "], "probs": [0.9, 0.4], "alts": [[("a", 0.9), ("b", 0.1)], [("\n", 0.5), (" ", 0.4)]]}
        ]
    }
    fig = tab_generate.alternatives_plot(state, 0, 1)
    assert list(fig.data[0].y) == ["⏎", "␠"] and "0.4" not in fig.layout.title.text
    assert fig.data[0].marker.color[1] == charts_inspect.ORANGE  # the token drawn
    assert tab_generate.alternatives_plot(state, 0, 5) is None


def test_feedback_is_saved_with_the_run(tmp_path):
    assert runs.feedback_counts(tmp_path) == (0, 0)
    for rating in (1, 1, -1):
        tab_generate.save_feedback(tmp_path, "ROMEO:", "text", rating, {"temperature": 0.8})
    assert runs.feedback_counts(tmp_path) == (2, 1)
    records, _ = files.read_jsonl(tmp_path / runs.FEEDBACK)
    assert set(records[0]) == {"time", "prompt", "text", "rating", "params"}


def test_model_cache_reuses_and_evicts(runs_dir, tmp_path):
    cache = ModelCache(max_models=1)
    first, _ = cache.get(runs_dir / RUN)
    assert cache.get(runs_dir / RUN)[0] is first and len(cache) == 1
    assert get_model(runs_dir / RUN)[0] is get_model(runs_dir / RUN)[0]
    # a second run pushes the first out (one model at most): asked again, the first is loaded anew
    other = shutil.copytree(runs_dir / RUN, tmp_path / "other")
    second, _ = cache.get(other)
    assert second is not first and len(cache) == 1
    assert cache.get(runs_dir / RUN)[0] is not first and len(cache) == 1
    # a new checkpoint of a run replaces its old entry instead of holding both
    cache = ModelCache(max_models=3)
    old, _ = cache.get(other, "last")
    config = runs.read_config(other)
    config["train"]["max_steps"] += 10
    files.atomic_write_json(other / runs.CONFIG, config)
    Trainer(other).fit()  # the run goes on: its last checkpoint has a new name
    new, _ = cache.get(other, "last")
    assert new is not old and len(cache) == 1


def test_strings_exist_in_both_languages():
    mine = [k for k in EN if k.startswith(("gen.", "attn."))]
    assert mine and all(ZH.get(k) for k in mine)


def test_the_next_token_bars_follow_the_prompt_and_say_calmly_what_they_cannot_read(app, runs_dir):
    ctx = SimpleNamespace(jobs=app["jobs"], settings=Settings.from_env())
    data, fig, summary = tab_generate.follow_prompt(ctx, TOKEN_A, RUN, "ROMEO", 1.0, 0, 1.0, 0.0)
    model, tok = runs.load_model(runs_dir / RUN)
    expected = torch.softmax(tab_generate.prompt_logits(model, tok.encode("ROMEO")), -1)
    assert np.allclose(fig.data[0].x, expected[data["ids"]].numpy(), atol=1e-6) and "5 tokens" in summary
    _, _, summary = tab_generate.follow_prompt(ctx, TOKEN_A, RUN, "ROMEO, what", 1.0, 0, 1.0, 0.0)
    assert "11 tokens" in summary  # another prompt, bars computed again
    # while typing: no run or no prompt clears the bars; a character the model never saw is said in the line
    assert tab_generate.follow_prompt(ctx, TOKEN_A, RUN, "", 1.0, 0, 1.0, 0.0) == (None, None, "")
    assert tab_generate.follow_prompt(ctx, TOKEN_A, None, "ROMEO", 1.0, 0, 1.0, 0.0) == (None, None, "")
    data, fig, summary = tab_generate.follow_prompt(ctx, TOKEN_A, RUN, "ROMEO €", 1.0, 0, 1.0, 0.0)
    assert data is None and fig is None and summary.startswith("⚠️") and "'€'" in summary
    _, _, summary = tab_generate.follow_prompt(ctx, TOKEN_B, RUN, "ROMEO", 1.0, 0, 1.0, 0.0)
    assert "belongs to another session" in summary
