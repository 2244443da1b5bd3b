"""The Runs tab: its table, compared curves, downloads and deletes, through gradio_client against the tab
launched in-process; and its zip and figure builders directly."""

import json
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from core import files, runs
from core.errors import CheckpointError, NewleafError
from core.run_archive import checkpoint_zip, hf_zip
from core.train import Trainer
from playground import tab_runs
from playground.charts_runs import RunCurves, loss_overlay
from playground.jobs import SHARED_OWNER, Jobs, owner_id
from tests.apps import free_port, tab_context
from tests.test_train import make_run

TOKEN_A, TOKEN_B = "token-of-browser-a", "token-of-browser-b"
PICKLE = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def _own(run_dir: Path, owner: str, title: str) -> Path:
    config = runs.read_config(run_dir)
    config.update(owner=owner, title=title)
    files.atomic_write_json(run_dir / runs.CONFIG, config)
    return run_dir


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, shakespeare_text):
    root = tmp_path_factory.mktemp("runs")
    text = shakespeare_text[:30_000]
    alpha = make_run(root / "alpha", text, max_steps=20, eval_every=10)
    Trainer(alpha).fit()
    _own(alpha, owner_id(TOKEN_A), "Alpha")
    with open(alpha / runs.FEEDBACK, "w", encoding="utf-8") as f:
        f.write('{"rating": 1}\n{"rating": 1}\n{"rating": -1, "text": "meh"}\n{"rating": 1, "te')  # last cut short
    beta = make_run(root / "beta", text, max_steps=10, eval_every=5, lr=1e-3)
    Trainer(beta).fit()
    _own(beta, owner_id(TOKEN_A), "Beta")
    shutil.copytree(alpha, root / "example")
    _own(root / "example", SHARED_OWNER, "Example")
    shutil.copytree(beta, root / "other")
    _own(root / "other", owner_id(TOKEN_B), "Other")
    return root


@pytest.fixture(scope="module")
def app(runs_dir):
    jobs = Jobs(runs_dir)
    with gr.Blocks() as demo:
        ctx = tab_context(jobs)
        with gr.Tab("Runs"):
            tab_runs.create_tab(ctx)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_port=port, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    yield {"url": url, "jobs": jobs, "root": runs_dir}
    demo.close()
    jobs.shutdown()


def client(app):
    return Client(app["url"], verbose=False, download_files=str(app["root"].parent / "client-downloads"))


def table(c, token, lang="en"):
    out = c.predict(token, lang, api_name="/list_runs")
    return [dict(zip(out["headers"], row)) for row in out["data"]], out["headers"]


# ----------------------------------------------------------------------------------------------------------
# Through the app


def test_list_shows_own_runs_and_shared_examples_only(app):
    c = client(app)
    rows, headers = table(c, TOKEN_A)
    by_id = {r["Run ID"]: r for r in rows}
    assert set(by_id) == {"alpha", "beta", "example"}
    alpha = by_id["alpha"]
    assert alpha["Title"] == "Alpha" and by_id["example"]["Title"] == "Example (example)"
    assert alpha["State"] == "completed" and alpha["Steps"] == "20 / 20"
    assert (alpha["👍"], alpha["👎"]) == (2, 1) and (by_id["beta"]["👍"], by_id["beta"]["👎"]) == (0, 0)
    best = min(r["val_loss"] for r in files.read_jsonl(app["root"] / "alpha" / runs.METRICS)[0] if "val_loss" in r)
    assert float(alpha["Best val loss"]) == pytest.approx(best, abs=1e-4)
    assert float(alpha["Best val bits/char"]) > 0
    assert "layers" in alpha["Model"] and "params" in alpha["Model"] and alpha["Tokenizer"].startswith("char (")
    assert alpha["Data"] == "test"

    rows_b, _ = table(c, TOKEN_B)
    assert {r["Run ID"] for r in rows_b} == {"other", "example"}
    _, headers_zh = table(c, TOKEN_A, "zh")
    assert headers_zh[0] == "名称" and len(headers_zh) == len(headers)


def test_compare_overlays_the_curves_of_both_runs(app):
    c = client(app)
    out = c.predict(TOKEN_A, ["alpha", "beta"], True, False, "en", api_name="/compare_runs")
    fig = json.loads(out["plot"])
    names = [tr["name"] for tr in fig["data"]]
    assert names == ["Alpha · train", "Alpha · validation", "Beta · train", "Beta · validation"]
    assert fig["layout"]["yaxis"]["type"] == "log"
    val = fig["data"][1]
    assert val["x"][-1] == 20 and "markers" in val["mode"]
    # a run of another session cannot be compared (or even confirmed to exist)
    with pytest.raises(AppError, match="does not exist"):
        c.predict(TOKEN_A, ["alpha", "other"], False, False, "en", api_name="/compare_runs")


def test_download_checkpoint_zip_holds_safetensors_and_config(app):
    c = client(app)
    path = Path(c.predict(TOKEN_A, "alpha", "best", "en", api_name="/download_checkpoint"))
    assert path.name.startswith("Alpha-checkpoint-best-step-") and path.suffix == ".zip"
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    base = path.stem
    assert f"{base}/config.json" in names and f"{base}/tokenizer.json" in names
    assert any(n.endswith("/model.safetensors") for n in names)
    assert not any(n.endswith(PICKLE) for n in names) and not any("/data/" in n for n in names)
    # a shared example can be downloaded by anyone; another session's run by no one else
    assert Path(c.predict(TOKEN_B, "example", "last", "en", api_name="/download_checkpoint")).exists()
    with pytest.raises(AppError, match="does not exist"):
        c.predict(TOKEN_B, "alpha", "best", "en", api_name="/download_checkpoint")
    with pytest.raises(AppError, match="Pick a run"):
        c.predict(TOKEN_A, None, "best", "en", api_name="/download_checkpoint")


def test_a_download_is_built_once_per_checkpoint_where_gradio_serves_it(runs_dir, tmp_path):
    """Each download of a big checkpoint once wrote it twice (our folder, then Gradio's cache) and again on every
    click: the zip is now built once, in Gradio's cache folder, and handed out again."""
    cache = tmp_path / "gradio-cache"
    jobs = Jobs(runs_dir, downloads_dir=cache / "newleaf-downloads")
    try:
        ctx = SimpleNamespace(jobs=jobs)
        first = Path(tab_runs.download_zip(ctx, TOKEN_A, "alpha", "best", "checkpoint"))
        built = first.stat().st_mtime_ns
        again = Path(tab_runs.download_zip(ctx, TOKEN_A, "alpha", "best", "checkpoint"))
        assert again == first and again.stat().st_mtime_ns == built  # reused, not rebuilt
        assert cache in first.parents and owner_id(TOKEN_A) in first.parts
        other = Path(tab_runs.download_zip(ctx, TOKEN_A, "alpha", "last", "checkpoint"))
        assert other != first or runs.checkpoint_dir(runs_dir / "alpha", "best") == runs.checkpoint_dir(
            runs_dir / "alpha", "last"
        )
    finally:
        jobs.shutdown()


def test_a_session_cannot_fill_the_disk(runs_dir, tmp_path):
    """On a public Space one session's runs and downloads have an allowance; shared examples and other sessions'
    runs do not count against it."""
    jobs = Jobs(runs_dir, downloads_dir=tmp_path / "downloads")
    try:
        used = jobs.usage(TOKEN_A)
        alpha_and_beta = sum(
            f.stat().st_size for name in ("alpha", "beta") for f in (runs_dir / name).rglob("*") if f.is_file()
        )
        assert used == alpha_and_beta and jobs.usage(TOKEN_B) < used
        jobs.max_session_bytes = used + 1000
        jobs.check_room(TOKEN_A, need=1000)  # just fits
        with pytest.raises(NewleafError, match=r"Your runs and downloads take .* of the .* one session may use"):
            jobs.new_run_dir(TOKEN_A, "one more", need=1001)
        with pytest.raises(NewleafError, match="delete runs you no longer need"):
            tab_runs.download_zip(SimpleNamespace(jobs=jobs), TOKEN_A, "alpha", "best", "huggingface")
        jobs.check_room(TOKEN_B, need=1000)  # another session has its own allowance
    finally:
        jobs.shutdown()


def test_load_run_answers_with_its_title(app):
    c = client(app)
    assert "Example" in c.predict(TOKEN_A, "example", "en", api_name="/load_run")
    with pytest.raises(AppError, match="does not exist"):
        c.predict(TOKEN_A, "other", "en", api_name="/load_run")


def test_delete_needs_confirmation_and_the_owner(app):
    root = app["root"]
    shutil.copytree(root / "beta", root / "gamma")
    _own(root / "gamma", owner_id(TOKEN_A), "Gamma")
    a, b = client(app), client(app)

    with pytest.raises(AppError, match="confirm"):  # no "Really delete?" was shown
        a.predict(TOKEN_A, "gamma", "en", api_name="/delete_run")
    assert "Really delete **Gamma**" in a.predict(TOKEN_A, "gamma", "en", api_name="/ask_delete")
    with pytest.raises(AppError, match="confirm"):  # confirming is for the run that was asked about
        a.predict(TOKEN_A, "beta", "en", api_name="/delete_run")

    # another browser session can neither ask nor confirm, not even with the owner's confirmation pending
    with pytest.raises(AppError, match="belongs to another session"):
        b.predict(TOKEN_B, "gamma", "en", api_name="/ask_delete")
    with pytest.raises(AppError, match="confirm"):
        b.predict(TOKEN_B, "gamma", "en", api_name="/delete_run")
    with pytest.raises(AppError, match="shared example"):
        a.predict(TOKEN_A, "example", "en", api_name="/ask_delete")
    assert (root / "gamma").is_dir() and (root / "example").is_dir()

    assert "Deleted **Gamma**" in a.predict(TOKEN_A, "gamma", "en", api_name="/delete_run")
    assert not (root / "gamma").exists()
    rows, _ = table(a, TOKEN_A)
    assert "gamma" not in {r["Run ID"] for r in rows}
    with pytest.raises(AppError, match="confirm"):  # one confirmation deletes one run once
        a.predict(TOKEN_A, "gamma", "en", api_name="/delete_run")


# ----------------------------------------------------------------------------------------------------------
# The builders


def test_checkpoint_zip_unzips_to_a_loadable_run(runs_dir, tmp_path):
    path = checkpoint_zip(runs_dir / "alpha", tmp_path, "last", title="Alpha: 1st try / ok")
    assert path.name.startswith("Alpha-1st-try-ok-checkpoint-last-step-20")
    with zipfile.ZipFile(path) as zf:
        zf.extractall(tmp_path / "x")
        assert zf.getinfo(f"{path.stem}/feedback.jsonl")
    folder = tmp_path / "x" / path.stem
    assert (folder / "metrics.jsonl").read_bytes() == (runs_dir / "alpha" / "metrics.jsonl").read_bytes()
    model, tok = runs.load_model(folder)  # config + tokenizer + checkpoint pointer are all there
    assert model.config.vocab_size == tok.vocab_size


def test_checkpoint_zip_of_an_untrained_run_says_so(tmp_path, shakespeare_text):
    run = _own(make_run(tmp_path / "fresh", shakespeare_text[:30_000]), "x", "Fresh")
    with pytest.raises(CheckpointError, match="Fresh has no checkpoint yet"):
        checkpoint_zip(run, tmp_path, "best")
    assert runs.feedback_counts(run) == (0, 0)


def test_download_hf_zip(runs_dir, tmp_path):
    pytest.importorskip("tokenizers")
    path = hf_zip(runs_dir / "alpha", tmp_path, "best")
    assert path.name == "Alpha-huggingface-best.zip" and not (tmp_path / "export").exists()
    with zipfile.ZipFile(path) as zf:
        names = {n.split("/", 1)[1] for n in zf.namelist()}
    assert {"config.json", "model.safetensors"} <= names and not any(n.endswith(PICKLE) for n in names)


def test_overlay_figure(tmp_path):
    a = RunCurves(
        "A",
        [{"step": 5, "train_loss": 3.0}, {"step": 10, "train_loss": 2.5, "val_loss": 2.6, "val_bpc": 3.7}],
        train_bpc_scale=1.5,
    )
    b = RunCurves("B", [{"step": 10, "train_loss": float("nan")}, {"step": 20, "train_loss": 2.0}])
    fig = loss_overlay([a, b], log_scale=False)
    assert [tr.name for tr in fig.data] == ["A · train", "A · validation", "B · train"]
    assert list(fig.data[2].x) == [20]  # a non-finite loss is left out, not drawn as a gap at infinity
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    assert fig.layout.yaxis.type == "linear"

    bpc = loss_overlay([a, b], log_scale=True, bpc=True, text={"bpc": "bits"})
    assert [tr.name for tr in bpc.data] == ["A · train", "A · validation"]  # B records no data sizes
    assert list(bpc.data[0].y) == [4.5, 3.75] and list(bpc.data[1].y) == [3.7]
    assert bpc.layout.yaxis.type == "log" and bpc.layout.yaxis.title.text == "bits"

    assert "Pick one or more runs" in loss_overlay([]).layout.annotations[0].text


def test_the_data_column_names_a_built_in_corpus_in_the_pages_language(tmp_path, shakespeare_text):
    """A built-in dataset's title is said in the page's language; a file's name is shown as it is."""
    from core.datasets import BUILTIN_DATASETS

    run = make_run(tmp_path / "r", shakespeare_text[:5000], max_steps=1)

    def data_column(name, lang):
        config = {**runs.read_config(run), "data": {"name": name}}
        return tab_runs.run_row({"id": "r", "state": "created", "config": config}, run, lang)["data"]

    stdlib = BUILTIN_DATASETS["python-stdlib"].title
    assert data_column(stdlib, "en") == "Python standard library source"
    assert data_column(stdlib, "zh") == "Python 标准库源码"
    assert data_column("my-notes.txt", "zh") == "my-notes.txt"
