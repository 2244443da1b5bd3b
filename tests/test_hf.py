"""Hugging Face interop (core/hf.py): GPT-2 weights in, runs out, checked against transformers itself."""

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from core import hf, runs
from core.cli import main as cli_main
from core.errors import CheckpointError, ConfigError, DownloadError
from core.model import preset_config
from core.prepare import prepare_run
from core.tokenizer import make_tokenizer
from core.train import Trainer
from core.train_config import TrainConfig
from tests.conftest import REPO

PROMPT = "ROMEO:\nWhat"


def cli(*args):
    """`python -m core ...` as a user runs it; stdout as exact UTF-8 text (no newline translation)."""
    r = subprocess.run(
        [sys.executable, "-m", "core", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        timeout=300,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    return r.returncode, r.stdout.decode("utf-8"), r.stderr.decode("utf-8", errors="replace")


def tiny_gpt2(path, vocab_size=50257, seed=0):
    """A random GPT-2 saved by transformers. Every weight is nudged off its init (biases and LayerNorms
    included, which start at 0 and 1) so a mapping that drops or misplaces one shows in the logits."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=vocab_size))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    model.eval().save_pretrained(path, safe_serialization=True)
    return model


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    return path, tiny_gpt2(path)


# ----------------------------------------------------------------------------------------------------------
# Import


@pytest.mark.parametrize("vocab_size", [50257, 1000])
def test_imported_logits_equal_transformers(tmp_path, hf_gpt2, vocab_size):
    path, theirs = hf_gpt2 if vocab_size == 50257 else (tmp_path / "v1000", tiny_gpt2(tmp_path / "v1000", 1000, 1))
    ours, _ = hf.load_hf_model(path)
    ids = torch.randint(0, vocab_size, (2, 64), generator=torch.Generator().manual_seed(0))  # the full context
    with torch.no_grad():
        expected = theirs(ids).logits
        got, _ = ours(ids)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    if vocab_size == 50257:
        model, tok = hf.load_hf_gpt2(path)
        assert tok.kind == "gpt2" and model.config.block_size == 64
    else:
        with pytest.raises(CheckpointError, match="not GPT-2's"):
            hf.load_hf_gpt2(path)


def test_names_without_the_transformer_prefix(tmp_path, hf_gpt2):
    # The Hub's own gpt2 / distilgpt2 files name tensors "h.0.attn.c_attn.weight", with the mask buffers.
    from safetensors.torch import load_file, save_file

    path, theirs = hf_gpt2
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text((path / "config.json").read_text())
    tensors = {k.removeprefix("transformer."): v for k, v in load_file(path / "model.safetensors").items()}
    tensors["h.0.attn.bias"] = torch.ones(1, 1, 64, 64).tril()
    tensors["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    save_file(tensors, tmp_path / "bare" / "model.safetensors", metadata={"format": "pt"})
    ours, _ = hf.load_hf_gpt2(tmp_path / "bare")
    ids = torch.arange(40)[None] * 997 % 50257
    with torch.no_grad():
        torch.testing.assert_close(ours(ids)[0], theirs(ids).logits, atol=1e-5, rtol=1e-5)


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker folder
        return os.mkdir, (str(self.marker),)


def test_pickle_weights_are_refused_unread(tmp_path, hf_gpt2):
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((hf_gpt2[0] / "config.json").read_text())
    marker = tmp_path / "pickle-ran"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="pickle") as e:
        hf.load_hf_gpt2(folder)
    assert "pytorch_model.bin" in str(e.value) and "safetensors" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"activation_function": "relu"}, "activation_function"),
        ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon"),
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"add_cross_attention": True}, "cross-attention"),
        ({"n_inner": 100}, "n_inner"),
        ({"model_type": "gpt_neo"}, "gpt_neo"),
    ],
)
def test_configs_this_architecture_cannot_represent(tmp_path, hf_gpt2, change, fragment):
    config = json.loads((hf_gpt2[0] / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=fragment):
        hf.load_hf_gpt2(tmp_path)


def test_hub_id_offline_is_a_clear_download_error():
    # NEWLEAF_OFFLINE=1 (conftest): the Hugging Face cache is read, the network never touched.
    with pytest.raises(DownloadError, match="offline|NEWLEAF_OFFLINE"):
        hf.load_hf_gpt2("newleaf-tests/no-such-model")
    with pytest.raises(CheckpointError, match="No folder"):
        hf.load_hf_gpt2("./no/such/folder")


def test_imported_run_samples_like_transformers(tmp_path, hf_gpt2, capsys):
    path, theirs = hf_gpt2
    run = tmp_path / "imported"
    rc, stdout, stderr = cli("import-hf", "--from", path, "--out", run)
    assert rc == 0, stderr
    assert runs.read_config(run)["source"] == {"hf": str(path)}
    model, tok = runs.load_model(run)
    prompt, n = "Hello, my name is", 30
    ids = tok.encode(prompt)
    out = theirs.generate(
        torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=n, do_sample=False
    )[0, len(ids) :].tolist()
    if tok.eot_id in out:  # both stop at <|endoftext|>
        out = out[: out.index(tok.eot_id)]
    rc, stdout, stderr = cli("sample", "--run", run, "--prompt", prompt, "--temperature", 0, "--max-new-tokens", n)
    assert rc == 0, stderr
    assert stdout == tok.decode(out)
    assert len(set(out)) > 5  # varied text, so a decoding difference would show
    assert cli_main(["info", "--run", str(run)]) == 0
    assert "imported from Hugging Face" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="not empty"):
        hf.import_hf_as_run(path, run)

    # ... and back out: the exported folder is the same model, with GPT-2's tokenizer beside it
    exported = hf.export_hf(run, tmp_path / "exported")
    again = AutoModelForCausalLM.from_pretrained(exported)
    x = torch.tensor([their_ids := AutoTokenizer.from_pretrained(exported)(prompt).input_ids])
    assert their_ids == ids
    new = again.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False)[0, len(ids) :]
    assert AutoTokenizer.from_pretrained(exported).decode(new, skip_special_tokens=True) == stdout


# ----------------------------------------------------------------------------------------------------------
# Export


@pytest.fixture(scope="module")
def train_run(tmp_path_factory, shakespeare_text):
    """train_run(spec): a tiny run trained briefly with that tokenizer, once per module."""
    done = {}

    def make(spec):
        if spec not in done:
            text = shakespeare_text[:20_000]
            tok = make_tokenizer(spec, text)
            # Enough steps that greedy text is not one token repeated; a 50257-token output layer makes each gpt2
            # step slow here, so that run stays short (the imported-run test covers varied gpt2 text).
            steps, lr = {"char": (300, 1e-2), "bpe:512": (300, 3e-3), "gpt2": (10, 1e-2)}[spec]
            train = TrainConfig(
                batch_size=8,
                max_steps=steps,
                eval_every=steps // 2,
                eval_batches=2,
                log_every=5,
                warmup_steps=5,
                lr=lr,
                sample_tokens=5,
                device="cpu",
            )
            run = tmp_path_factory.mktemp(spec.replace(":", "")) / "run"
            prepare_run(
                run,
                text,
                tok,
                preset_config("tiny", tok.vocab_size),
                train,
                data_name="Tiny Shakespeare (first 20,000 characters)",
            )
            Trainer(run).fit()
            done[spec] = run
        return done[spec]

    return make


@pytest.fixture(scope="module", params=["char", "bpe:512", "gpt2"])
def exported(request, train_run):
    """Each kind of run exported, and loaded back with transformers."""
    run = train_run(request.param)
    out = hf.export_hf(run, run.parent / "hf")
    model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info  # no missing, unexpected or mismatched weights
    return run, out, model.eval(), AutoTokenizer.from_pretrained(out)


def test_exported_model_matches_the_run(exported):
    run, out, theirs, their_tok = exported
    ours, tok = runs.load_model(run)
    ids = torch.tensor([tok.encode(PROMPT + " is this? I will not, my lord; the king is dead.\n" * 2)[:32]])
    assert ids.shape[1] == 32  # the whole context
    with torch.no_grad():
        torch.testing.assert_close(theirs(ids).logits, ours(ids)[0], atol=1e-5, rtol=1e-5)

    prompt_ids = tok.encode(PROMPT)
    assert their_tok(PROMPT).input_ids == prompt_ids
    n = ours.config.block_size - len(prompt_ids)  # fill the context, no further
    x = torch.tensor([prompt_ids])
    new = theirs.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False)[0, x.shape[1] :]
    rc, stdout, stderr = cli("sample", "--run", run, "--prompt", PROMPT, "--temperature", 0, "--max-new-tokens", n)
    assert rc == 0, stderr
    assert stdout == their_tok.decode(new, skip_special_tokens=True)


def test_exported_tokenizer_round_trips(exported, shakespeare_text):
    run, out, _, their_tok = exported
    _, tok = runs.load_model(run)
    # text neither tokenizer was built from, and spaces before punctuation (a decode "clean-up" would eat them)
    for text in (shakespeare_text[30_000:32_000], "Nay , sir . I do n't know ; 'tis he ! Is it ?  Ay\n\n"):
        ids = their_tok(text).input_ids
        assert ids == tok.encode(text)
        assert their_tok.decode(ids) == text


def test_model_card_and_no_overwrite(exported):
    run, out, _, _ = exported
    card = (out / "README.md").read_text()
    steps = runs.checkpoint_meta(run, "last")["step"]
    best = runs.checkpoint_meta(run, "best")["val_loss"]
    assert f"| steps | {steps:,} |" in card and f"| validation loss (nats per token) | {best:.4f} |" in card
    assert "Tiny Shakespeare (first 20,000 characters)" in card and "AutoModelForCausalLM" in card
    config = json.loads((out / "config.json").read_text())
    assert config["n_positions"] == 32 and config["tie_word_embeddings"] is True
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ConfigError, match="not empty"):
        hf.export_hf(run, out)
    assert sorted(p.name for p in out.iterdir()) == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_export_from_the_cli(train_run, tmp_path):
    run = train_run("char")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    rc, _, stderr = cli("export-hf", "--run", run, "--out", tmp_path / "busy")
    assert rc == 2 and stderr.startswith("newleaf: error: ") and "not empty" in stderr and "Traceback" not in stderr
    assert os.listdir(tmp_path / "busy") == ["notes.txt"]
    rc, stdout, stderr = cli("export-hf", "--run", run, "--out", tmp_path / "hf", "--checkpoint", "last")
    assert rc == 0, stderr
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(os.listdir(tmp_path / "hf"))
    assert "AutoModelForCausalLM" in stdout


@pytest.mark.parametrize("spec", ["char", "bpe:300", "gpt2"])
def test_special_tokens_keep_their_ids(tmp_path, shakespeare_text, spec):
    # Chat fine-tuning adds markers after the ordinary vocabulary; the exported tokenizer must give them the same ids.
    tok = make_tokenizer(spec, shakespeare_text[:5_000])
    if not hasattr(tok, "add_special_tokens"):
        pytest.skip("this tokenizer has no special tokens")
    user, assistant = tok.add_special_tokens(["<|user|>", "<|assistant|>"])
    hf.write_tokenizer_files(tmp_path, tok, block_size=64)
    their_tok = AutoTokenizer.from_pretrained(tmp_path)
    assert their_tok.convert_tokens_to_ids(["<|user|>", "<|assistant|>"]) == [user, assistant]
    assert len(their_tok) == tok.vocab_size
    ids = [user] + tok.encode("ROMEO: hi") + [assistant] + tok.encode("Well, sir.")
    assert their_tok.decode(ids) == tok.decode(ids)
    assert their_tok.decode(ids, skip_special_tokens=True) == "ROMEO: hiWell, sir."
