"""The Look inside tab (attention, logit lens, over training) through gradio_client against the tab as ui.py builds
it, each view checked against the engine: the lens's output row is the model's own prediction, and the view at a
step is what that step's weights do when loaded directly. Then the pure pieces (the attention text view, the lens
grid, drawing a step) directly."""

import math
import re

import gradio as gr
import numpy as np
import plotly.io
import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError

from core import files, history, runs
from core.engine import SamplingParams, attention_maps, generate, prompt_logits
from core.train import Trainer
from playground import charts_inspect, tab_attention, tab_history, tab_lens
from playground.i18n import ZH
from playground.jobs import Jobs, owner_id
from playground.ui import look_inside
from tests.apps import free_port, tab_context
from tests.test_train import make_run

TOKEN_A, TOKEN_B = "token-of-browser-a", "token-of-browser-b"
RUN, BARE = "alpha", "bare"  # BARE was trained with history off
PROMPT = "ROMEO: What light through yonder"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, shakespeare_text):
    root = tmp_path_factory.mktemp("runs")
    for name, snapshots in ((RUN, 12), (BARE, 0)):
        run = make_run(root / name, shakespeare_text[:30_000], max_steps=30, eval_every=10, history_snapshots=snapshots)
        Trainer(run).fit()
        config = runs.read_config(run)
        config.update(owner=owner_id(TOKEN_A), title=name.title())
        files.atomic_write_json(run / runs.CONFIG, config)
    return root


@pytest.fixture(scope="module")
def client(runs_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEWLEAF_RUNS", str(runs_dir))
        jobs = Jobs(runs_dir)
        with gr.Blocks() as demo:
            ctx = tab_context(jobs)
            look_inside(ctx)
        port = free_port()
        demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
        try:
            yield Client(f"http://127.0.0.1:{port}/", verbose=False)
        finally:
            demo.close()
            jobs.shutdown()


def figure(value):
    return plotly.io.from_json(value["plot"])


# ----------------------------------------------------------------------------------------------------------
# Through the app, against the engine


def test_the_logit_lens_output_row_is_the_models_own_prediction(client, runs_dir):
    fig, note = client.predict(TOKEN_A, RUN, PROMPT, "en", api_name="/logit_lens")
    (grid,) = figure(fig).data
    model, tok = runs.load_model(runs_dir / RUN)
    L, block = model.config.n_layer, model.config.block_size
    window = tok.encode(PROMPT)[-block:]
    P = min(len(window), tab_lens.MAX_POSITIONS)
    assert list(grid.y) == ["embeddings"] + [f"block {i}" for i in range(1, L)] + [f"block {L} (output)"]
    z, text = np.array(grid.z, dtype=float), np.array(grid.text)
    assert z.shape == text.shape == (L + 1, P)
    with torch.no_grad():
        logits, _ = model(torch.tensor(window)[None])
    own = torch.softmax(logits[0, -P:].float(), -1)  # (P, V): the model's next-token distribution
    top = own.max(-1)
    assert np.allclose(z[-1], top.values.numpy(), atol=1e-4)
    assert list(text[-1]) == [charts_inspect.visible(tok.decode([i])) for i in top.indices.tolist()]
    assert (z > 0).all() and (z <= 1).all()
    # the note counts how often the output's favourite is the token that really follows
    following = window[-P + 1 :]
    hits = sum(int(a) == b for a, b in zip(top.indices[:-1], following))
    assert f"The last {P} of the prompt's {len(tok.encode(PROMPT))} tokens." in note
    assert f"really follows at {hits} of {P - 1} positions" in note
    assert "“" in grid.customdata[-1][0] and "1. " in grid.customdata[-1][0]  # the hover lists the favourites


def test_over_training_step_zero_is_the_untrained_snapshot_loaded_directly(client, runs_dir):
    slider, note, status, attention, bars, sample = client.predict(
        TOKEN_A, RUN, PROMPT, "1", "2", "en", api_name="/history"
    )
    run = runs_dir / RUN
    steps = [s.step for s in history.snapshots(run)]
    assert steps == [0, 10, 20, 30] and slider["maximum"] == len(steps) - 1 and slider["value"] == 0
    assert note.startswith(f"{len(steps)} points in training.")
    assert status.startswith("**Step 0** of 30 (snapshot 1 of 4)")
    first, tok = runs.load_weights_file(run, run / history.HISTORY_DIR / history.snapshot_name(0))
    ids = tok.encode(PROMPT)
    assert sample == generate(first, tok, ids, SamplingParams(max_new_tokens=60, **history.SAMPLE))[0].text
    (heat,) = figure(attention).data  # layer 1, head 2
    z = np.array(heat.z, dtype=float)
    expected = attention_maps(first, ids)[0][1].numpy()
    assert np.allclose(z[np.tril_indices(len(ids))], expected[np.tril_indices(len(ids))], atol=1e-3)
    # the bars follow the finished model's favourites; at step 0 they hold the untrained model's probabilities
    last, _ = runs.load_model(run, "last")
    followed = torch.topk(torch.softmax(prompt_logits(last, ids), -1), tab_history.BARS).indices
    (bar,) = figure(bars).data
    at_zero = torch.softmax(prompt_logits(first, ids), -1)[followed]
    assert np.allclose(np.array(bar.x, dtype=float), at_zero.numpy(), atol=1e-6)
    assert [str(y).rstrip("\u200b") for y in bar.y] == [charts_inspect.visible(tok.decode([i])) for i in followed]


def test_moving_the_slider_shows_each_step_as_loading_it_would(runs_dir):
    run = runs_dir / RUN
    data = tab_history.compute_history(run, PROMPT)
    listed = history.snapshots(run)
    for index, snap in enumerate(listed):
        status, attention, bars, sample = tab_history.draw(data, index, "2", "all")
        model, tok = runs.load_weights_file(run, snap.path)
        ids = tok.encode(PROMPT)
        assert f"**Step {snap.step}** of 30" in status
        assert sample == generate(model, tok, ids, SamplingParams(max_new_tokens=60, **history.SAMPLE))[0].text
        maps = attention_maps(model, ids)[1]  # layer 2, every head
        assert len(attention.data) == maps.shape[0]
        for h, trace in enumerate(attention.data):
            z = np.array(trace.z, dtype=float)
            assert np.allclose(z[np.tril_indices(len(ids))], maps[h].numpy()[np.tril_indices(len(ids))], atol=1e-3)
        probs = torch.softmax(prompt_logits(model, ids), -1)
        top = int(probs.argmax())
        assert f"“{charts_inspect.visible(tok.decode([top]))}” ({float(probs[top]):.1%})" in status
    # the last point is the last checkpoint, marked as such; it has a logged validation loss
    assert listed[-1].kind == "history" and data["steps"][-1]["val_loss"] is not None
    assert "validation loss" in tab_history.draw(data, len(listed) - 1, "1", "1")[0]


def test_a_run_without_history_shows_its_last_checkpoint(client):
    slider, note, status, *_ = client.predict(TOKEN_A, BARE, PROMPT, "1", "1", "en", api_name="/history")
    assert slider["maximum"] == 1 and slider["interactive"] is False
    assert note.startswith("1 points in training.") and "kept no snapshots" in note
    assert "the last checkpoint" in status


def test_other_sessions_and_empty_prompts(client):
    for api in ("/logit_lens", "/history"):
        extra = () if api == "/logit_lens" else ("1", "1")
        with pytest.raises(AppError, match="belongs to another session"):
            client.predict(TOKEN_B, RUN, PROMPT, *extra, "en", api_name=api)
    with pytest.raises(AppError, match=re.escape(ZH["lens.no_prompt"])):
        client.predict(TOKEN_A, RUN, "", "zh", api_name="/logit_lens")
    with pytest.raises(AppError, match=re.escape(ZH["hist.no_prompt"])):
        client.predict(TOKEN_A, RUN, "", "1", "1", "zh", api_name="/history")
    with pytest.raises(AppError, match=re.escape(ZH["attn.err.head"].format(n=2, head=7))):
        client.predict(TOKEN_A, RUN, PROMPT, "1", "7", "zh", api_name="/history")


def test_the_views_in_chinese(client):
    fig, note = client.predict(TOKEN_A, RUN, PROMPT, "zh", api_name="/logit_lens")
    assert figure(fig).data[0].y[0] == ZH["lens.embeddings"] and "个位置中" in note and "。 " not in note
    _, note, status, attention, bars, _ = client.predict(TOKEN_A, RUN, PROMPT, "1", "1", "zh", api_name="/history")
    assert status.startswith("**第 0 步**，共 30 步") and "训练过程中的 4 个时间点" in note
    assert figure(attention).data[0].hovertemplate.startswith("“%{y}” #%{customdata[0]} 看向 “%{x}”")


# ----------------------------------------------------------------------------------------------------------
# The attention text view


def test_the_text_view_shades_the_prompt_by_where_one_token_looks():
    labels = ["a", " ", "\n", "b"]
    maps = np.zeros((1, 2, 4, 4))
    maps[0, 0] = [[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.2, 0.2, 0.6, 0], [0.1, 0.6, 0.1, 0.2]]
    maps[0, 1] = np.tril(np.ones((4, 4))) / np.arange(1, 5)[:, None]
    data = {"labels": labels, "maps": maps.tolist(), "n_layer": 1, "n_head": 2}
    page = tab_attention.query_html(data, "1", "1", 4)
    spans = re.findall(r'<span class="nl-tok ([^"]*)" data-pos="(\d+)" title="([^"]*)" style="[^"]*?([\d.]+)\)">', page)
    assert [int(pos) for _, pos, _, _ in spans] == [1, 2, 3, 4]
    assert spans[3][0].strip() == "nl-q"  # the chosen token is framed
    assert spans[1][2] == "“␠” #2: 60.0% of the attention" and float(spans[1][3]) == 0.85  # the darkest
    assert "<b>“b” #4</b> looks most at “␠” #2 60%, “b” #4 20%" in page and "(head 1)" in page
    assert "⏎\n" in page  # a line break shows, and breaks the line
    # an earlier token cannot see later ones: they are faded; "all" is the mean of the heads
    page = tab_attention.query_html(data, "1", "all", 2)
    assert page.count("nl-future") == 2 and "the mean of the layer's heads" in page
    assert "“a” #1 50%" in page and "“␠” #2 50%" in page


def test_a_click_on_a_token_chooses_it():
    class Event:
        index = 3

    assert tab_attention.click_token(Event()) == 3


def test_the_lens_grid_from_plain_data():
    data = {
        "inputs": ["a", " "],
        "following": [" ", None],
        "top": [  # [layer][position]: the favourites
            [[("a", 0.5), ("b", 0.2)], [("x", 0.3), ("y", 0.1)]],
            [[(" ", 0.9), ("a", 0.05)], [("\n", 0.4), ("b", 0.2)]],
        ],
        "next_probs": [[0.01, None], [0.9, None]],
        "n_tokens": 2,
        "window": 2,
        "block_size": 32,
    }
    fig = tab_lens.draw(data)
    (grid,) = fig.data
    assert list(grid.y) == ["embeddings", "block 1 (output)"]
    assert [list(r) for r in grid.text] == [["a", "x"], ["␠", "⏎"]] and grid.z[1][0] == 0.9
    assert grid.customdata[1][0] == "block 1 (output), after “a”:<br>1. “␠” 90.0%<br>2. “a” 5.0%<br>" + (
        "the text goes on with “␠”: 90.0%"
    )
    assert "the text goes on" not in grid.customdata[1][1]  # nothing follows the last position
    assert tab_lens.lens_note(data) == (
        "The last 2 of the prompt's 2 tokens. At the output, the favourite is the token that really follows at 1 of "
        "1 positions."
    )
    assert math.isclose(fig.layout.height, 140 + 40 * 2)
