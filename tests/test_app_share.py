"""The Runs tab's Share section (playground/share_section.py): the app, started as a user starts it with
HF_ENDPOINT pointing at a local recording stand-in for the Hub, publishes a run as a model and as a Space through
gradio_client; the field checks answer in the page's language; the typed token is never written anywhere."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from core import files, runs
from core.errors import NewleafError
from playground.jobs import owner_id
from playground.share_section import checked_repo, checked_token
from tests.conftest import REPO
from tests.hub_server import OWNER, HubServer
from tests.test_desktop import free_port, serves, stop

TOKEN = "hf_ShareSectionToken0123456789ABCDEFGH"
BROWSER = "owner-token-of-a-browser"


@pytest.fixture(scope="module")
def app(tmp_path_factory, shakespeare_text):
    from core.train import Trainer
    from tests.test_train import make_run

    root = tmp_path_factory.mktemp("share")
    run = make_run(root / "runs" / "verses", shakespeare_text[:30_000], max_steps=20, eval_every=10)
    Trainer(run).fit()
    config = runs.read_config(run)
    files.atomic_write_json(run / runs.CONFIG, {**config, "owner": owner_id(BROWSER), "title": "Verses"})
    with HubServer(TOKEN) as hub:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "SPACE_ID", "PORT", "CI")}
        env.update(
            NEWLEAF_RUNS=str(root / "runs"),
            HF_ENDPOINT=hub.url,
            HF_HOME=str(root / "hf-home"),
            GRADIO_SERVER_PORT=str(port),
            PYTHONIOENCODING="utf-8",
        )
        log = open(root / "app.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "app.py", "--no-browser"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while not serves(url) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert serves(url), (root / "app.log").read_text()
        try:
            yield {"client": Client(url, verbose=False), "hub": hub, "root": root, "run": run}
        finally:
            stop(proc)
            log.close()


def test_publish_the_model_from_the_share_section(app):
    c, hub = app["client"], app["hub"]
    message = c.predict(BROWSER, "verses", "best", "verses-model", TOKEN, True, "en", api_name="/publish_model")
    assert (
        message == f"Published **Verses** as a model: [{hub.url}/{OWNER}/verses-model]({hub.url}/{OWNER}/verses-model)"
    )
    assert hub.record.created[-1] == {
        "name": "verses-model",
        "organization": OWNER,
        "visibility": "private",
        "type": "model",
    }
    commit = hub.record.commits[-1]
    assert commit["repo_id"] == f"{OWNER}/verses-model"
    assert {"README.md", "model.safetensors", "loss_curve.png", "tokenizer.json"} <= set(commit["files"])


def test_publish_a_space_from_the_share_section(app):
    c, hub = app["client"], app["hub"]
    message = c.predict(
        BROWSER, "verses", "last", f"{OWNER}/verses-space", TOKEN, False, "zh", api_name="/publish_space"
    )
    assert message.startswith("已将 **Verses** 发布为 Space") and f"{hub.url}/spaces/{OWNER}/verses-space" in message
    commit = hub.record.commits[-1]
    assert commit["repo_type"] == "space" and "app.py" in commit["files"]
    assert any(n.startswith("runs/example-verses/") for n in commit["files"])


def test_the_fields_are_checked_in_the_page_language(app):
    c = app["client"]
    with pytest.raises(AppError, match="Repository name"):
        c.predict(BROWSER, "verses", "best", "", TOKEN, False, "en", api_name="/publish_model")
    with pytest.raises(AppError, match="仓库名称 'bad--name' 无效"):
        c.predict(BROWSER, "verses", "best", "bad--name", TOKEN, False, "zh", api_name="/publish_model")
    with pytest.raises(AppError, match="Hugging Face token"):  # no token typed, none in the environment
        c.predict(BROWSER, "verses", "best", "ok-name", "", False, "en", api_name="/publish_model")
    with pytest.raises(AppError, match="refused the token"):
        c.predict(BROWSER, "verses", "best", "ok-name", "hf_notTheRightOne", False, "en", api_name="/publish_model")
    with pytest.raises(AppError, match="does not exist"):  # another session's run, or none
        c.predict("someone-else", "verses", "best", "ok-name", TOKEN, False, "en", api_name="/publish_model")


def test_the_token_is_never_written(app):
    """After every upload above: the token is in no file of the runs directory, the Hugging Face home, the
    app's log or Gradio's upload cache."""
    test_publish_the_model_from_the_share_section(app)  # at least one upload, whatever ran before
    roots = [app["root"], Path(os.environ.get("GRADIO_TEMP_DIR", Path("/tmp") / "gradio"))]
    for root in roots:
        for path in Path(root).rglob("*") if root.exists() else ():
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), f"the token was written to {path}"


def test_on_a_shared_server_an_empty_token_box_is_refused_not_filled_from_the_server(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_theServersOwnToken")
    with pytest.raises(NewleafError, match="never uses a token of its own"):
        checked_token("", on_space=True, lang="en")
    assert checked_token("", on_space=False, lang="en") == "hf_theServersOwnToken"  # a desktop: the user's own
    assert checked_token(" hf_typed ", on_space=True, lang="en") == "hf_typed"
    with pytest.raises(NewleafError, match="不可见字符"):
        checked_token("hf_a b", on_space=True, lang="zh")
    assert checked_repo("  me/model ", "en") == "me/model"
