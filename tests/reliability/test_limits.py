"""Limits, each with a clear message: upload size (given to launch(max_file_size=...) and checked again on the
server), corpus size, model size (by the memory estimate), context length, max new tokens, max run time and
steps, the request queue. All configurable by environment variables; stricter on a Hugging Face Space."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from core import runs
from core.data import read_text_file
from core.engine import SamplingParams
from core.errors import ConfigError, CorpusError, NewleafError
from core.model import GPTConfig
from core.train import Trainer
from playground import corpus_choice, model_choices, tab_train
from playground.jobs import Jobs
from playground.settings import Settings
from playground.tab_generate import make_params
from playground.ui import launch_kwargs, queue_kwargs
from tests.reliability.helpers import make_run

STRICTER_ON_A_SPACE = (
    "max_upload_mb",
    "max_corpus_mb",
    "max_model_mb",
    "max_run_seconds",
    "max_steps",
    "max_new_tokens",
    "max_prompt_chars",
    "max_context",
    "max_queue",
)
ENV = {
    "max_upload_mb": "NEWLEAF_MAX_UPLOAD_MB",
    "max_corpus_mb": "NEWLEAF_MAX_CORPUS_MB",
    "max_model_mb": "NEWLEAF_MAX_MODEL_MB",
    "max_run_seconds": "NEWLEAF_MAX_RUN_SECONDS",
    "max_steps": "NEWLEAF_MAX_STEPS",
    "max_new_tokens": "NEWLEAF_MAX_NEW_TOKENS",
    "max_prompt_chars": "NEWLEAF_MAX_PROMPT_CHARS",
    "max_context": "NEWLEAF_MAX_CONTEXT",
    "max_queue": "NEWLEAF_MAX_QUEUE",
    "max_concurrent_jobs": "NEWLEAF_MAX_JOBS",
    "generate_concurrency": "NEWLEAF_GENERATE_CONCURRENCY",
}
MB = 1024 * 1024


@pytest.fixture
def clean_env(monkeypatch):
    for name in (*ENV.values(), "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_limits_are_stricter_on_a_space(clean_env):
    local = Settings.from_env()
    clean_env.setenv("SPACE_ID", "someone/newleaf")
    space = Settings.from_env()
    assert space.on_space and not local.on_space
    for name in STRICTER_ON_A_SPACE:
        assert getattr(space, name) < getattr(local, name), name


@pytest.mark.parametrize("field", list(ENV))
def test_every_limit_is_configurable(clean_env, field):
    clean_env.setenv(ENV[field], "7")
    assert getattr(Settings.from_env(), field) == 7
    clean_env.setenv("SPACE_ID", "x")  # an explicit setting wins on a Space too
    assert getattr(Settings.from_env(), field) == 7


def test_upload_and_queue_limits_reach_gradio(clean_env):
    clean_env.setenv("NEWLEAF_MAX_UPLOAD_MB", "3")
    clean_env.setenv("NEWLEAF_MAX_QUEUE", "9")
    s = Settings.from_env()
    assert launch_kwargs(s)["max_file_size"] == "3mb"
    assert queue_kwargs(s)["max_size"] == 9


def settings(**changes) -> Settings:
    return dataclasses.replace(Settings.from_env(), **changes)


def test_upload_size_is_checked_again_on_the_server(tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("word " * 2000)
    with pytest.raises(CorpusError, match="big.txt is larger than the 0.005 MB upload limit"):
        corpus_choice.load_choice({"source": "upload", "files": [str(big)]}, settings(max_upload_mb=0.005))


def test_corpus_size(tmp_path, monkeypatch):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("word " * 2000)
    b.write_text("word " * 2000)
    s = settings(max_corpus_mb=15_000 / MB)
    with pytest.raises(
        CorpusError, match="Together these 2 files are 20,000 bytes, larger than the 15,000 bytes limit"
    ):
        corpus_choice.load_choice({"source": "upload", "files": [str(a), str(b)]}, s)
    monkeypatch.setenv("NEWLEAF_MAX_CORPUS_BYTES", "5000")
    with pytest.raises(
        CorpusError, match="a.txt is 10,000 bytes, larger than the 5,000 bytes limit.*NEWLEAF_MAX_CORPUS_BYTES"
    ):
        read_text_file(a)


def test_model_size_by_the_memory_estimate():
    cfg = GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=256, vocab_size=65)
    with pytest.raises(ConfigError, match=r"needs about .* at batch size 8, more than the 100(.0)? MB allowed"):
        model_choices.check_fits(cfg, 8, settings(max_model_mb=100))
    assert model_choices.check_fits(GPTConfig(n_layer=1, n_head=1, n_embd=16, block_size=8), 1, settings()) > 0


@pytest.fixture
def ctx(tmp_path):
    jobs = Jobs(tmp_path / "runs", poll_seconds=60)
    yield SimpleNamespace(settings=settings(max_context=64, max_run_seconds=120, max_steps=500), jobs=jobs)
    jobs.shutdown()


MODEL = dict(n_layer=1, n_head=2, n_embd=16, block_size=32, dropout=0.0, preset="tiny")
TRAIN = dict(lr=1e-3, batch_size=4, max_steps=10, max_time=0, eval_every=5, seed=1)


def test_context_length(ctx):
    with pytest.raises(ConfigError, match="A context of 128 tokens is more than the 64 allowed here"):
        tab_train.create_run(ctx, "owner", None, "t", {**MODEL, "block_size": 128}, TRAIN)
    assert not list(ctx.jobs.root.iterdir())  # refused before anything was written
    estimate = model_choices.estimate_markdown({**MODEL, "block_size": 128}, None, 4, ctx.settings)
    assert "more than the 64 allowed" in estimate  # the Model tab says so before Start


def test_run_time_and_steps(ctx):
    run_id, _ = tab_train.create_run(ctx, "owner", None, "t", MODEL, {**TRAIN, "max_time": 10**9})
    assert runs.read_config(ctx.jobs.run_dir(run_id))["train"]["max_time"] == 120  # capped to the app's limit
    run_id, _ = tab_train.create_run(ctx, "owner", None, "t", MODEL, {**TRAIN, "max_time": 0})  # 0: no limit
    assert runs.read_config(ctx.jobs.run_dir(run_id))["train"]["max_time"] == 120  # ...but this app's
    with pytest.raises(NewleafError, match="At most 500 steps per run here"):
        tab_train.create_run(ctx, "owner", None, "t", MODEL, {**TRAIN, "max_steps": 501})


def test_a_time_budget_ends_training(tmp_path):
    # 2 s: time for a few steps even on a loaded machine, and far from the step budget
    run = make_run(tmp_path / "r", max_steps=10**6, max_time=2.0, eval_every=10**6, log_every=10**6)
    result = Trainer(run).fit()
    assert result.state == "completed" and 0 < result.step < 10**6


def test_max_new_tokens():
    with pytest.raises(ConfigError, match="max_new_tokens is limited to 10; got 11"):
        make_params(11, 0.8, 0, 1.0, 0.0, 1.0, 0.0, 0.0, -1, "", 1, limit=10)
    assert make_params(10, 0.8, 0, 1.0, 0.0, 1.0, 0.0, 0.0, -1, "", 1, limit=10).max_new_tokens == 10


def test_a_huge_line_is_fine_within_the_size_limit(tmp_path):
    path = tmp_path / "one-line.txt"
    path.write_text("x" * 3_000_000)  # one 3 MB line: read, not refused, and not slow
    assert len(read_text_file(path)) == 3_000_000


def test_prompt_length_is_limited_and_a_long_prompt_keeps_memory_bounded(tmp_path):
    from core.engine import generate_tokens
    from playground.form_values import check_prompt_length

    with pytest.raises(ConfigError, match="The prompt is 11 characters; at most 10 are allowed"):
        check_prompt_length("x" * 11, settings(max_prompt_chars=10))
    check_prompt_length("x" * 10, settings(max_prompt_chars=10))
    # the engine holds only the prompt's last window: a long prompt samples as its last block_size tokens do
    run = make_run(tmp_path / "r", max_steps=2, eval_every=2)
    Trainer(run).fit()
    model, tok = runs.load_model(run)
    block = model.config.block_size
    ids = tok.encode("ROMEO: " * 2000)

    def params():
        return SamplingParams(max_new_tokens=5, temperature=0.0)

    long = [s.tokens[0] for s in generate_tokens(model, ids, params())]
    assert long == [s.tokens[0] for s in generate_tokens(model, ids[-block:], params())]
