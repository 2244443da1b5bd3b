"""Fine-tuning runs (core/finetune.py): from a run, from scratch, from a local Hugging Face GPT-2; full, frozen
layers and LoRA; the demo task; evaluation before and after; resume; the CLI."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from core import files, lora, runs
from core.chat import reply, template_for
from core.cli import main as cli_main
from core.demo_task import TASKS, to_conversation
from core.engine import SamplingParams
from core.errors import CheckpointError, ConfigError
from core.evaluate import exact_match, greedy_replies, read_eval
from core.finetune import compare, load_base_model, prepare_finetune, run_finetune, train_config
from core.train import Trainer
from core.trainable import FinetuneConfig
from tests.conftest import REPO
from tests.test_cli import cli
from tests.test_train import make_run, metrics

HANDFUL = [
    [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Newleaf."}],
    [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}],
    [{"role": "user", "content": "2 + 3?"}, {"role": "assistant", "content": "5"}],
    [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi there!"}],
    [
        {"role": "system", "content": "Be loud."},
        {"role": "user", "content": "Say hi"},
        {"role": "assistant", "content": "HI!"},
    ],
]
GREEDY = SamplingParams(max_new_tokens=20, temperature=0.0)


def write_chat(path, conversations=HANDFUL):
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations), encoding="utf-8")
    return path


def quick(method="full", **kw):
    d = dict(
        batch_size=8,
        max_steps=400,
        eval_every=100,
        log_every=10,
        warmup_steps=10,
        lr=1e-2,
        eval_batches=2,
        sample_tokens=12,
        device="cpu",
    )
    d.update(kw)
    return train_config(method, **d)


@pytest.fixture(scope="module")
def base_run(tmp_path_factory, shakespeare_text):
    """A tiny character-level model pretrained briefly on Shakespeare (which has no digits, no chat markers)."""
    run = make_run(
        tmp_path_factory.mktemp("base") / "sh", shakespeare_text[:100_000], max_steps=60, eval_every=30, lr=1e-2
    )
    Trainer(run).fit()
    return run


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory, base_run):
    tmp = tmp_path_factory.mktemp("chat")
    run = prepare_finetune(tmp / "ft", str(base_run), write_chat(tmp / "chat.jsonl"), train=quick())
    result = run_finetune(run)
    assert result.state == "completed", result.message
    return run


# ----------------------------------------------------------------------------------------------------------
# Chat fine-tuning


def test_a_handful_of_chat_examples_are_answered_exactly(chat_run):
    model, tok = runs.load_model(chat_run)  # a plain GPT, as any run gives
    config = runs.read_config(chat_run)
    for conv in HANDFUL:
        assert reply(model, tok, config, conv[:-1], GREEDY) == conv[-1]["content"], conv


def test_the_run_keeps_its_template_tokenizer_and_base(chat_run, base_run):
    config = runs.read_config(chat_run)
    tok = runs.load_model(chat_run)[1]
    assert config["chat_template"]["kind"] == "special_tokens"
    assert set(tok.special_tokens) == set(template_for(config).markers)
    base_tok = runs.load_model(base_run)[1]
    assert not {"2", "5", "+"} & set(base_tok.chars) and {"2", "5", "+"} <= set(tok.chars)  # characters added
    assert config["finetune"]["base"]["kind"] == "run" and config["data"]["val_is_train"] is True
    n_old = base_tok.vocab_size
    assert config["model"]["vocab_size"] == tok.vocab_size == len(config["finetune"]["new_token_ids"]) + n_old
    assert tok.chars[:n_old] == base_tok.chars  # old ids keep their meaning
    base_model, _ = load_base_model(chat_run)  # the base, copied in: the run needs nothing outside itself
    sh_model, _ = runs.load_model(base_run)
    old = torch.arange(n_old)
    assert torch.equal(base_model.transformer.wte.weight[old], sh_model.transformer.wte.weight)
    evals = read_eval(chat_run)
    assert evals["base"]["exact_match"] == 0.0 and evals["finetuned"]["exact_match"] == 1.0
    assert evals["finetuned"]["val_loss"] < evals["base"]["val_loss"]
    assert {"bleu", "rouge_l", "distinct_1", "distinct_2", "perplexity", "examples"} <= set(evals["finetuned"])
    records = metrics(chat_run)
    assert records[-1]["step"] == 400 and "val_ppl" in records[-1]
    samples, _ = files.read_jsonl(chat_run / runs.SAMPLES)
    assert samples[-1]["text"].startswith("<|")  # the first validation prompt, markers shown, then the reply
    rows = compare(chat_run, ["Who are you?"])
    assert rows[0]["finetuned"] == "Newleaf." and rows[0]["base"] != "Newleaf."


def test_chat_cli_prints_only_the_reply(chat_run):
    r = cli("chat", "--run", chat_run, "--message", "Who are you?", "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "Newleaf."
    r = cli("chat", "--run", chat_run, "--message", "Say hi", "--system", "Be loud.", "--temperature", "0")
    assert r.stdout == "HI!", r.stderr


# ----------------------------------------------------------------------------------------------------------
# The demo task


@pytest.mark.parametrize("name, n_test", [("arithmetic", 200), ("arithmetic-small", 20)])
def test_demo_task_is_deterministic_and_held_out(name, n_test):
    task = TASKS[name]
    train, test = task.items()
    assert (train, test) == task.items()
    assert len(test) == n_test and not {i["question"] for i in train} & {i["question"] for i in test}
    assert train[0]["answer"] == str(eval(train[0]["question"][len("What is ") : -1]))

    def operands(item):  # "What is 3 + 5?" -> {3, 5}: the same question as "What is 5 + 3?"
        return frozenset(int(x) for x in item["question"][len("What is ") : -1].split(" + "))

    # no held-out sum is trained on with its operands swapped (the split once leaked 161 of 200 that way)
    assert not {operands(i) for i in train} & {operands(i) for i in test}


def test_fine_tuning_raises_demo_accuracy_by_a_wide_margin(tmp_path):
    # the small variant: one-digit sums, a tiny model from scratch (which takes a bigger learning rate)
    run = prepare_finetune(
        tmp_path / "demo",
        "scratch:tiny",
        "builtin:arithmetic-small",
        # 1,600 steps: with no commuted twin of a held-out sum in training, the sums must really be learned
        train=train_config("full", demo=True, lr=3e-3, max_steps=1600, eval_every=800, device="cpu"),
    )
    result = run_finetune(run)
    evals = read_eval(run)
    before, after = evals["base"]["exact_match"], evals["finetuned"]["exact_match"]
    assert before <= 0.1 and after >= 0.6, (before, after)
    assert evals["finetuned"]["items"] == 20 and "base 0% -> fine-tuned" in result.message
    # the same number, computed from the held-out questions directly
    model, tok = runs.load_model(run)
    held_out = TASKS["arithmetic-small"].items()[1]
    replies = greedy_replies(
        model, tok, template_for(runs.read_config(run)), [[to_conversation(i)[0]] for i in held_out], max_new_tokens=8
    )
    assert exact_match(replies, [i["answer"] for i in held_out]) == after


# ----------------------------------------------------------------------------------------------------------
# Methods


def test_lora_run_trains_only_adapters_and_new_token_rows(tmp_path, base_run):
    run = prepare_finetune(
        tmp_path / "lora",
        str(base_run),
        write_chat(tmp_path / "c.jsonl"),
        ft=FinetuneConfig(method="lora", lora_rank=4),
        train=quick("lora", max_steps=30),
    )
    config = runs.read_config(run)
    counts, new = config["finetune"]["params"], config["finetune"]["new_token_ids"]
    trainer = Trainer(run)
    model, _, _ = trainer._build()
    assert counts["trainable"] == trainer.model.trainable_count(model) < counts["total"] / 2
    run_finetune(run, evaluate=False)
    base = runs.load_tensors(run / "base.safetensors")
    merged = runs.load_tensors(runs.checkpoint_dir(run, "last") / "model.safetensors")
    assert set(base) == set(merged)  # a plain GPT
    wrapped = {f"transformer.h.{i}.{t}.weight" for i in range(2) for t in lora.TARGETS}
    for k in base:
        if k == "transformer.wte.weight":
            old = torch.tensor(sorted(set(range(base[k].shape[0])) - set(new)))
            assert torch.equal(merged[k][old], base[k][old])
            assert not torch.equal(merged[k][new], base[k][new])
        elif k in wrapped:
            assert not torch.equal(merged[k], base[k]), k
        else:
            assert torch.equal(merged[k], base[k]), k
    # the adapted model (restored from the checkpoint) and the merged weights give the same logits
    model, _, _ = trainer._build()
    ck = runs.checkpoint_dir(run, "last")
    trainer.model.restore(model, merged, runs.load_tensors(ck / "trainer.safetensors"), str(ck))
    plain, _ = runs.load_model(run, which="last")
    x = torch.randint(0, model.config.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(plain(x)[0], model.eval()(x)[0], atol=1e-5, rtol=1e-5)


def test_lora_run_resumes_exactly(tmp_path, base_run):
    data = write_chat(tmp_path / "c.jsonl")
    ft = FinetuneConfig(method="lora", lora_rank=4, lora_dropout=0.1)
    cfg = dict(max_steps=20, eval_every=10, log_every=5)
    whole = prepare_finetune(tmp_path / "whole", str(base_run), data, ft=ft, train=quick("lora", **cfg))
    run_finetune(whole, evaluate=False)
    parts = prepare_finetune(tmp_path / "parts", str(base_run), data, ft=ft, train=quick("lora", **cfg))
    trainer = Trainer(parts)

    def stop_at_15(event, d):  # on a log line, not on a checkpoint
        if event in ("step", "eval") and d["step"] == 15:
            trainer.request_stop()

    assert trainer.fit(callbacks=[stop_at_15]).step == 15
    run_finetune(parts, evaluate=False)
    assert metrics(parts) == metrics(whole)
    for name in ("model.safetensors", "trainer.safetensors"):
        a = runs.load_tensors(runs.checkpoint_dir(parts) / name)
        b = runs.load_tensors(runs.checkpoint_dir(whole) / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert any(k.startswith("lora.") for k in runs.load_tensors(runs.checkpoint_dir(parts) / "trainer.safetensors"))


def test_full_fine_tuning_can_freeze_the_first_layers(tmp_path, base_run):
    run = prepare_finetune(
        tmp_path / "frozen",
        str(base_run),
        write_chat(tmp_path / "c.jsonl"),
        ft=FinetuneConfig(freeze_layers=1),
        train=quick(max_steps=10),
    )
    run_finetune(run, evaluate=False)
    base = runs.load_tensors(run / "base.safetensors")
    after = runs.load_tensors(runs.checkpoint_dir(run, "last") / "model.safetensors")
    assert all(torch.equal(after[k], base[k]) for k in base if k.startswith("transformer.h.0."))
    assert not torch.equal(after["transformer.h.1.attn.c_attn.weight"], base["transformer.h.1.attn.c_attn.weight"])
    with pytest.raises(ConfigError, match="leaves none to train"):
        prepare_finetune(tmp_path / "all", str(base_run), tmp_path / "c.jsonl", ft=FinetuneConfig(freeze_layers=2))


def test_plain_text_continued_pretraining(tmp_path, base_run, shakespeare_text):
    (tmp_path / "more.txt").write_text(shakespeare_text[200_000:260_000])
    run = prepare_finetune(tmp_path / "text", str(base_run), tmp_path / "more.txt", train=quick(max_steps=40))
    config = runs.read_config(run)
    assert "chat_template" not in config and config["data"]["format"] == "text"
    from core.tokenizer import load_tokenizer

    tok, base_tok = load_tokenizer(run), load_tokenizer(base_run)
    assert not tok.special_tokens and tok.chars[: base_tok.vocab_size] == base_tok.chars  # no markers for text
    run_finetune(run)
    evals = read_eval(run)
    assert evals["finetuned"]["val_loss"] < evals["base"]["val_loss"]
    assert "distinct_2" in evals["finetuned"] and "exact_match" not in evals["finetuned"]


# ----------------------------------------------------------------------------------------------------------
# A Hugging Face GPT-2 as the base, offline


def save_tiny_gpt2(path):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50257))
    model.eval().save_pretrained(path, safe_serialization=True)
    return model


def test_a_local_transformers_gpt2_is_a_base_offline(tmp_path):
    theirs = save_tiny_gpt2(tmp_path / "tiny-gpt2")
    run = prepare_finetune(
        tmp_path / "ft",
        f"hf:{tmp_path / 'tiny-gpt2'}",
        write_chat(tmp_path / "c.jsonl"),
        ft=FinetuneConfig(method="lora"),
        train=quick("lora", max_steps=4, eval_every=2, batch_size=2),
    )
    config = runs.read_config(run)
    assert config["finetune"]["base"] == {"kind": "hf", "name": str(tmp_path / "tiny-gpt2")}
    assert config["tokenizer"]["kind"] == "gpt2" and config["model"]["vocab_size"] == 50257 + 4
    base, tok = load_base_model(run)
    ids = torch.tensor([tok.encode("Hello there, general")])
    with torch.no_grad():  # the copied-in base computes what transformers computes, on the old vocabulary
        torch.testing.assert_close(base(ids)[0][..., :50257], theirs(ids).logits, atol=1e-5, rtol=1e-5)
    assert run_finetune(run).state == "completed"
    model, tok = runs.load_model(run)
    text = reply(model, tok, config, HANDFUL[0][:-1], SamplingParams(max_new_tokens=5, temperature=0))
    assert "<|" not in text
    # a plain folder path works too
    assert prepare_finetune(tmp_path / "ft2", tmp_path / "tiny-gpt2", tmp_path / "c.jsonl", train=quick(max_steps=1))


# ----------------------------------------------------------------------------------------------------------
# Errors and the command line


def test_bad_bases_give_clear_errors(tmp_path, base_run):
    data = write_chat(tmp_path / "c.jsonl")
    with pytest.raises(CheckpointError, match="No run or model folder"):
        prepare_finetune(tmp_path / "x", tmp_path / "nothing", data)
    with pytest.raises(ConfigError, match="Unknown preset"):
        prepare_finetune(tmp_path / "x", "scratch:enormous", data)
    with pytest.raises(ConfigError, match="already holds a run"):
        prepare_finetune(base_run, "scratch:tiny", data)


def test_cli_finetune_and_the_app_worker_command(tmp_path, base_run, capsys):
    data = write_chat(tmp_path / "c.jsonl")
    out = tmp_path / "cli"
    code = cli_main(
        [
            "finetune",
            "--from",
            str(base_run),
            "--data",
            str(data),
            "--out",
            str(out),
            "--method",
            "lora",
            "--lora-rank",
            "2",
            "--max-steps",
            "6",
            "--eval-every",
            "3",
            "--batch-size",
            "4",
            "--lr",
            "1e-2",
            "--seed",
            "3",
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "exact match" in captured.out and "Finished 6 steps" in captured.out
    assert "parameters train" in captured.err
    config = runs.read_config(out)
    assert config["train"]["lr"] == 1e-2 and config["train"]["seed"] == 3 and config["finetune"]["lora_rank"] == 2
    # the app's job manager runs every job as `python -m core train --out RUN --resume`: fine-tuning too
    assert cli_main(["train", "--out", str(out), "--resume", "--max-steps", "9", "--quiet"]) == 0
    assert runs.checkpoint_meta(out)["step"] == 9 and read_eval(out)["finetuned"]["step"] == 9
    assert cli_main(["info", "--run", str(out)]) == 0
    assert "lora from run" in capsys.readouterr().out


def test_cli_demo_needs_no_base_of_its_own(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        cli_main(["finetune", "--data", "builtin:arithmetic-small", "--out", str(out), "--max-steps", "2", "--quiet"])
        == 0
    )
    captured = capsys.readouterr()
    assert "a fresh nano model" in captured.err
    assert "Exact match on 20 held-out prompts: base 0% -> fine-tuned" in captured.out
    assert (
        cli_main(
            [
                "finetune",
                "--data",
                "builtin:arithmetic-small",
                "--out",
                str(tmp_path / "n"),
                "--no-eval",
                "--max-steps",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    assert read_eval(tmp_path / "n") == {} and runs.read_config(tmp_path / "n")["finetune"]["evaluate"] is False


def test_ctrl_c_during_cli_fine_tuning_saves_and_stops(tmp_path):
    """Ctrl-C used to reach a Trainer that was not the one training: the run went on to its last step."""
    out = tmp_path / "sums"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core",
            "finetune",
            "--data",
            "builtin:arithmetic-small",
            "--from",
            "scratch:tiny",
            "--max-steps",
            "100000",
            "--eval-every",
            "20",
            "--no-eval",
            "--out",
            str(out),
            "--quiet",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not (out / runs.METRICS).exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.1)  # wait until it trains
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    status = runs.read_status(out)
    assert status["state"] == "stopped" and "Stopped at step" in stdout
    assert runs.checkpoint_meta(out, "last")["step"] == status["step"] < 100000


def test_cli_user_mistakes_are_one_line(tmp_path, base_run):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}\n'
        '{"prompt": "Hi", "completion": "Yo"\n'
    )
    r = cli("finetune", "--from", base_run, "--data", bad, "--out", tmp_path / "r")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("newleaf: error: bad.jsonl, line 2: not valid JSON")
    assert not (tmp_path / "r" / "config.json").exists()


def test_reply_metrics():
    from core.evaluate import bleu, distinct_n, exact_match, rouge_l

    preds, refs = ["82", " 17 ", "the cat sat"], ["82", "17", "the cat sat on the mat"]
    assert exact_match(preds, refs) == pytest.approx(2 / 3)
    assert 0 < bleu(preds, refs) < 100 and bleu(refs, refs) == pytest.approx(100)
    assert rouge_l(refs, refs) == pytest.approx(1.0) and 0 < rouge_l(preds, refs) < 1
    assert rouge_l(["你好"], ["你好"]) == pytest.approx(1.0)  # no ASCII words: compared by characters
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b", "c d"], 2) == 1.0 and distinct_n([], 2) == 0


def test_the_summary_says_when_validation_reuses_the_training_examples():
    from core.finetune import summarize

    evals = {"base": {"exact_match": 0.0}, "finetuned": {"exact_match": 0.5, "items": 4}}
    assert str(summarize(evals)) == "Exact match on 4 held-out prompts: base 0% -> fine-tuned 50%."
    assert "4 training prompts (too few examples to hold any out)" in str(summarize(evals, val_is_train=True))
