"""Publishing a run (core/card.py, core/publish.py, core/space.py): the model card parsed back with
huggingface_hub's card tools, the export loaded by transformers the way the card says, the name and token checks,
and the uploads made by `python -m core push` / `space --push` against a local recording stand-in for the Hub
(HF_ENDPOINT; the real Hub cannot be reached from the tests). The token is never written anywhere."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, SpaceCard
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from core import files, runs
from core.card import LOSS_CURVE, N_SAMPLES
from core.errors import NewleafError, PublishError
from core.hf import export_hf
from core.model import preset_config
from core.prepare import prepare_run
from core.publish import check_repo_name, resolve_token
from core.space import build_space
from core.tokenizer import CharTokenizer
from core.train import Trainer
from core.train_config import TrainConfig
from tests.conftest import REPO
from tests.hub_server import OWNER, HubServer

TOKEN = "hf_NewleafTestToken0123456789abcdefXYZ"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shakespeare_text):
    """A run trained briefly on Tiny Shakespeare (so its card links the Hub's copy of the data set)."""
    root = tmp_path_factory.mktemp("publish")
    text = shakespeare_text[:40_000]
    tok = CharTokenizer.from_text(text)
    train = TrainConfig(
        batch_size=8,
        max_steps=30,
        eval_every=10,
        eval_batches=4,
        log_every=5,
        warmup_steps=5,
        lr=3e-3,
        sample_tokens=20,
        device="cpu",
    )
    run = prepare_run(
        root / "runs" / "sonnets",
        text,
        tok,
        preset_config("tiny", tok.vocab_size, dropout=0.0),
        train,
        data_name="Tiny Shakespeare",
    )
    Trainer(run).fit()
    config = runs.read_config(run)
    files.atomic_write_json(run / runs.CONFIG, {**config, "title": "Sonnets"})
    return run


def cli(*args, env_extra=None, hf_home=None):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT")}
    env.update(PYTHONIOENCODING="utf-8", HF_HOME=str(hf_home or Path(os.environ.get("TMPDIR", "/tmp")) / "no-hf-home"))
    env.update(env_extra or {})
    r = subprocess.run(
        [sys.executable, "-m", "core", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )
    return r.returncode, r.stdout, r.stderr


def _token_nowhere(*roots: Path) -> None:
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), f"the token was written to {path}"


# ----------------------------------------------------------------------------------------------------------
# The card and the folder


def test_the_card_parses_and_reports_metrics_curve_and_samples(trained, tmp_path):
    out = export_hf(trained, tmp_path / "export", repo_id="someone/sonnets")
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert data.datasets == ["karpathy/tiny_shakespeare"]
    assert "perplexity" in data.metrics
    best = runs.checkpoint_meta(trained, "best")["val_loss"]
    scale = runs.bpc_scale(runs.read_config(trained)["data"], "val")
    values = {r.metric_type: r.metric_value for r in data.eval_results}
    assert values["loss"] == pytest.approx(best, abs=1e-4)
    assert values["bits_per_character"] == pytest.approx(best * scale, abs=1e-4)
    assert all(r.dataset_name == "Tiny Shakespeare" for r in data.eval_results)
    text = card.text
    assert f"| validation loss (nats per token) | {best:.4f} |" in text
    assert f"| bits per character | {best * scale:.4f} |" in text
    assert "| steps | 30 |" in text and "| tokens seen | 7,680 |" in text and "| hardware | CPU (" in text
    assert f"![Training and validation loss by step]({LOSS_CURVE})" in text
    assert text.count("**Sample ") == N_SAMPLES
    assert 'pipeline("text-generation", model="someone/sonnets")' in text
    with Image.open(out / LOSS_CURVE) as image:
        assert image.format == "PNG" and image.size == (800, 450)
        assert len(image.convert("RGB").getcolors(1 << 16)) > 20  # lines, axes and labels, not a blank canvas


def test_the_three_lines_of_the_card_generate_with_transformers(trained, tmp_path):
    out = export_hf(trained, tmp_path / "export")
    card = ModelCard.load(out / "README.md").text
    three = card.split("## Use it in three lines")[1].split("```python\n")[1].split("```")[0]
    assert len(three.strip().splitlines()) == 3
    code = three.replace("PATH_OR_REPO", str(out))
    torch.manual_seed(0)
    printed = io.StringIO()
    exec(compile(code, "card", "exec"), {"print": lambda s: printed.write(s)})  # the card's own code, as written
    prompt = json.loads(three.split("print(generate(")[1].split(", max_new_tokens")[0])
    assert printed.getvalue().startswith(prompt) and len(printed.getvalue()) > len(prompt)
    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    assert model.config.n_layer == runs.read_config(trained)["model"]["n_layer"]
    assert tok.decode(tok("ab").input_ids) == "ab"


@pytest.mark.parametrize(
    "name", ["", "   ", "a/b/c", "bad--name", "x..y", "-lead", "trail-", "sp ace", "ünï", "x" * 97, "name.git", "../up"]
)
def test_bad_repository_names_are_refused_with_the_rule(name):
    with pytest.raises(PublishError, match="name"):
        check_repo_name(name)


@pytest.mark.parametrize("name", ["sonnets", "someone/sonnets", "Org_1/model.v2", "a"])
def test_good_repository_names_pass(name):
    assert check_repo_name(f" {name} ") == name


def test_no_token_says_where_one_comes_from(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("core.publish.get_token", lambda: None)
    with pytest.raises(PublishError, match="HF_TOKEN"):
        resolve_token(None)
    with pytest.raises(PublishError, match="spaces or invisible"):
        resolve_token("hf_abc def")
    assert resolve_token("  hf_typed  ") == "hf_typed"
    monkeypatch.setattr("core.publish.get_token", lambda: "hf_from_login")
    assert resolve_token("") == "hf_from_login"


# ----------------------------------------------------------------------------------------------------------
# Uploads, through the CLI, to the recording endpoint


def test_push_uploads_a_repo_transformers_loads_and_never_keeps_the_token(trained, tmp_path):
    hf_home = tmp_path / "hf-home"
    with HubServer(TOKEN) as hub:
        code, out, err = cli(
            "push",
            "--run",
            trained,
            "--repo",
            "sonnets",
            "--private",
            env_extra={"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN},
            hf_home=hf_home,
        )
    assert code == 0, err
    assert out.strip() == f"Published Sonnets at {hub.url}/{OWNER}/sonnets"
    assert hub.record.created == [{"name": "sonnets", "organization": OWNER, "visibility": "private", "type": "model"}]
    (commit,) = hub.record.commits
    assert commit["repo_id"] == f"{OWNER}/sonnets" and commit["repo_type"] == "model"
    got = commit["files"]
    assert set(got) == {
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        LOSS_CURVE,
    }
    # what arrived is a model transformers loads, and its card names the repository it lives in
    received = tmp_path / "received"
    received.mkdir()
    for name, data in got.items():
        (received / name).write_bytes(data)
    model = AutoModelForCausalLM.from_pretrained(received)
    ours = runs.model_tensors(runs.load_model(trained)[0])
    assert torch.equal(
        load_file(received / "model.safetensors")["transformer.wte.weight"], ours["transformer.wte.weight"]
    )
    assert model.config.vocab_size == runs.read_config(trained)["model"]["vocab_size"]
    card = ModelCard(got["README.md"].decode())
    assert f'model="{OWNER}/sonnets"' in card.text and card.data.model_name == "sonnets"
    # the token went only into the Authorization header, and nowhere on disk or in the output
    for request in hub.record.requests:
        assert TOKEN.encode() not in request["body"]
    assert all(TOKEN.encode() not in data for data in got.values())
    assert TOKEN not in out + err
    _token_nowhere(trained.parent, hf_home, tmp_path)


def test_a_refused_token_and_an_unreachable_hub_are_one_line_each(trained, tmp_path):
    with HubServer(TOKEN) as hub:
        wrong = "hf_wrongTokenWrongToken"
        code, out, err = cli(
            "push", "--run", trained, "--repo", "sonnets", env_extra={"HF_ENDPOINT": hub.url, "HF_TOKEN": wrong}
        )
    assert code == 2 and err.count("\n") == 1 and "refused the token" in err and wrong not in err
    assert hub.record.commits == [] and hub.record.created == []

    code, _, err = cli(
        "push",
        "--run",
        trained,
        "--repo",
        "sonnets",
        env_extra={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": TOKEN},
    )
    assert code == 2 and err.count("\n") == 1 and "could not be reached" in err and TOKEN not in err


def test_no_token_a_bad_name_or_no_run_is_one_line_before_anything_is_sent(trained, tmp_path, monkeypatch, capsys):
    """In-process (nothing here may reach a network): the checks that come before any request."""
    from core.cli import main

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("core.publish.get_token", lambda: None)  # no `hf auth login` token either
    cases = [
        (["push", "--run", str(trained), "--repo", "sonnets"], "newleaf: error: No Hugging Face token"),
        (["push", "--run", str(trained), "--repo", "two//slashes"], "not a valid Hugging Face repository name"),
        (["push", "--run", str(tmp_path / "nothing"), "--repo", "x"], "does not exist"),
        (["space", "--run", str(trained)], "--out DIR"),
        (["space", "--run", str(trained), "--push", "x"], "No Hugging Face token"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)


# ----------------------------------------------------------------------------------------------------------
# A Space


def test_space_folder_has_front_matter_requirements_app_and_the_example(trained, tmp_path):
    out = build_space(trained, tmp_path / "space")
    card = SpaceCard.load(out / "README.md")
    meta = card.data.to_dict()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["python_version"] == "3.11"
    assert meta["suggested_hardware"] == "zero-a10g" and meta["sdk_version"].split(".")[0] == "6"
    assert "ZeroGPU" in card.text and "cpu-basic" in card.text
    requirements = (out / "requirements.txt").read_text()
    assert (
        "spaces" in requirements
        and "gradio" in requirements
        and "spaces" not in (REPO / "requirements.txt").read_text()
    )
    assert (out / "app.py").read_text() == (REPO / "app.py").read_text()
    assert (out / "core" / "model.py").is_file() and (out / "playground" / "locales" / "zh.toml").is_file()
    assert not list(out.rglob("__pycache__"))
    (example,) = (out / "runs").iterdir()
    config = runs.read_config(example)
    assert config["owner"] == runs.SHARED_OWNER and config["title"] == "Sonnets"
    assert runs.checkpoint_dir(example, "best") is not None and not (example / "data").exists()
    with pytest.raises(NewleafError, match="already exists and is not empty"):
        build_space(trained, out)


def test_space_push_uploads_a_gradio_space(trained, tmp_path):
    with HubServer(TOKEN) as hub:
        code, out, err = cli(
            "space",
            "--run",
            trained,
            "--push",
            "sonnets-space",
            "--out",
            tmp_path / "space",
            env_extra={"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN},
        )
    assert code == 0, err
    assert out.startswith(f"Published the Space at {hub.url}/spaces/{OWNER}/sonnets-space")
    assert hub.record.created[0]["type"] == "space" and hub.record.created[0]["sdk"] == "gradio"
    (commit,) = hub.record.commits
    assert commit["repo_type"] == "space" and commit["repo_id"] == f"{OWNER}/sonnets-space"
    names = set(commit["files"])
    assert {"README.md", "app.py", "requirements.txt", "core/cli.py", "playground/ui.py"} <= names
    assert any(n.startswith("runs/example-sonnets/checkpoints/") and n.endswith("model.safetensors") for n in names)
    assert f"spaces/{OWNER}/sonnets-space" in commit["files"]["README.md"].decode()
    _token_nowhere(tmp_path)


def test_the_space_starts_as_spaces_run_it_and_generates_from_its_example(trained, tmp_path):
    """As a Space runs it: the built folder's app.py in a fresh process, from that folder, with SPACE_ID set (so
    the Space's limits, and spaces.GPU around the model's work); a visitor generates from the example through
    gradio_client and gets what the engine writes, and may not change the example."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from core.engine import SamplingParams, generate
    from tests.test_desktop import free_port, serves, stop

    space = build_space(trained, tmp_path / "space")
    (example,) = (space / "runs").iterdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("NEWLEAF_RUNS", "PORT", "CI", "PYTHONPATH")}
    env.update(SPACE_ID=f"{OWNER}/sonnets-space", GRADIO_SERVER_PORT=str(port), PYTHONIOENCODING="utf-8")
    log = open(tmp_path / "space.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while not serves(url) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert serves(url), (tmp_path / "space.log").read_text()
        client = Client(url, verbose=False)
        visitor = "a-visitor-of-the-space"
        knobs = dict(
            max_new_tokens=30,
            temperature=0.0,
            top_k=0,
            top_p=1.0,
            min_p=0.0,
            repetition_penalty=1.0,
            presence_penalty=0.0,
            frequency_penalty=0.0,
            seed=None,
            stop="",
            num_samples=1,
        )
        out = client.predict(visitor, example.name, "ROMEO:", **knobs, api_name="/generate")
        model, tok = runs.load_model(example)
        assert out[0] == generate(model, tok, "ROMEO:", SamplingParams(max_new_tokens=30, temperature=0))[0].text
        assert len(out[0]) > 0
        fig, note = client.predict(visitor, example.name, "To be", "1", "all", "en", api_name="/attention")
        assert json.loads(fig["plot"])["data"] and note
        with pytest.raises(AppError, match="shared example"):
            client.predict(visitor, example.name, "en", api_name="/ask_delete")
        assert Path(f"/proc/{proc.pid}/cwd").resolve() == space.resolve()  # the Space's own copy of the code ran
    finally:
        stop(proc)
        log.close()
