"""The engine's sentences (core/messages.py): every key is used by the code and said in Chinese with the same
placeholders; a Text is its English when printed (the CLI's words do not change) and travels through status.json;
an error raised with one is said in the page's language by the app, with English for what a language lacks. And
the engine-side fixes of issue 15: a failed download says "no network" rather than the raw connection error, a
time budget's end is told apart from the last step, distinct-n of empty replies is 0."""

import string
import subprocess
import sys

import pytest
import requests
import tiktoken

from core import runs
from core.errors import CheckpointError, ConfigError, CorpusError, DownloadError, NewleafError, network_reason
from core.evaluate import distinct_n
from core.messages import MESSAGES, Text, join
from core.tokenizer import BPETokenizer, CharTokenizer, GPT2Tokenizer
from core.train import _finished_message, _Progress
from core.train_config import TrainConfig
from playground import i18n
from playground.i18n import ZH, say
from tests.chinese import english_words
from tests.conftest import REPO


def placeholders(text: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def test_every_message_is_said_in_chinese_with_the_same_placeholders():
    missing = [k for k in MESSAGES if f"core.{k}" not in ZH]
    assert not missing, f"zh.toml lacks these engine messages: {missing}"
    wrong = [k for k in MESSAGES if placeholders(ZH[f"core.{k}"]) != placeholders(MESSAGES[k])]
    assert not wrong, wrong


def test_every_message_is_used_by_the_code():
    sources = "".join(p.read_text(encoding="utf-8") for d in ("core", "playground") for p in (REPO / d).glob("*.py"))
    built = ("what.",)  # keys made from a value: Text(f"what.{part}")
    unused = [k for k in MESSAGES if f'"{k}"' not in sources.replace(f'"{k}": ', "") and not k.startswith(built)]
    assert not unused, f"core/messages.py holds messages no code says: {unused}"


def test_a_text_is_its_english_and_survives_json():
    where = Text("where.line", name="notes.jsonl", line=3)
    text = Text("data.jsonl_json", where=where, problem="Expecting value")
    assert str(text) == (
        "notes.jsonl, line 3: not valid JSON (Expecting value). Each line of a .jsonl file must be one JSON object "
        'like {"text": "..."}.'
    )
    assert Text.from_json(text.to_json()) == text
    assert Text.from_json({"key": "no.such.key", "fields": {}}) is None and Text.from_json("words") is None
    assert str(text.replace("notes", "mine")).startswith("mine.jsonl, line 3")
    assert str(join(Text("status.stopped", step=7), None, Text("status.ready"))) == "Stopped at step 7. Ready to train."
    with pytest.raises(KeyError):
        Text("no.such.key")


def test_an_error_keeps_its_english_for_the_cli_and_its_text_for_the_app():
    e = CorpusError(Text("data.utf16", name="a.txt"))
    assert str(e) == "a.txt is UTF-16 text, not UTF-8. Save it as UTF-8 and try again." and e.text.key == "data.utf16"
    assert say(e, "zh") == "a.txt 是 UTF-16 文本，不是 UTF-8。请另存为 UTF-8 后再试。"
    assert say(e, "en") == str(e)
    plain = NewleafError("An English sentence.")
    assert plain.text is None and say(plain, "zh") == "An English sentence."  # no key: its own words


def test_a_language_without_a_message_falls_back_to_its_english(monkeypatch):
    monkeypatch.setitem(i18n.STRINGS, "zh", {k: v for k, v in ZH.items() if k != "core.files.missing"})
    text = Text("runs.save_failed", step=5, reason="No space left on device", kept=Text("runs.no_earlier"))
    assert say(text, "zh").startswith("无法保存第 5 步的检查点：No space left on device；此前没有检查点")
    assert say(Text("files.missing", path="/x"), "zh") == "/x is missing."


def test_status_json_keeps_the_message_to_say_it_in_another_language(tmp_path):
    runs.write_status(tmp_path, "failed", Text("jobs.killed_oom", signal="SIGKILL"), step=3)
    status = runs.read_status(tmp_path)
    assert status["message"] == (
        "The training process was killed by SIGKILL (out of memory?). Resume to continue from the last checkpoint."
    )
    assert (
        say(runs.status_text(status), "zh")
        == "训练进程被 SIGKILL 终止（内存不足？）。继续训练即可从最后一个检查点接着来。"
    )
    runs.write_status(tmp_path, "running", "Plain words, from an older version.")
    assert say(runs.status_text(runs.read_status(tmp_path)), "zh") == "Plain words, from an older version."


# -- what the Chinese page shows of the engine: no English words but names -------------------------------------


def test_tokenizer_descriptions_in_chinese():
    char = CharTokenizer.from_text("hello world")
    char.add_special_tokens(["<|user|>", "<|end|>"])
    bpe = BPETokenizer.train("the cat sat on the mat. " * 40, 300)
    described = [say(t.description(), "zh") for t in (char, GPT2Tokenizer(), bpe)]
    assert described[0] == "字符级，8 个符号 + 2 个特殊词元"
    assert described[1] == "GPT-2 BPE，50257 个词元"
    assert all(not english_words(d) for d in described), described


@pytest.mark.parametrize(
    "error",
    [
        ConfigError(Text("model.heads_divide", n_embd=48, n_head=5, heads="[1, 2, 3, 4, 6, 8, 12, 16]")),
        CorpusError(
            Text(
                "data.part_too_short",
                part=Text("what.validation"),
                n=12,
                block=64,
                need=65,
                smaller=Text("data.context_at_most", block=11),
            )
        ),
        CheckpointError(Text("runs.untrained", path="runs/a")),
        ConfigError(Text("train_config.memory", need="9.1 GB", batch=64, have="3.2 GB")),
        DownloadError(Text("tokenizer.gpt2_download", why=Text("net.offline"), cache="/tmp/tiktoken")),
        NewleafError(Text("jobs.not_yours", run_id="20260101-a-1b2c3d")),
        NewleafError(
            Text("tokenizer.unknown_chars", n=12, shown=Text("tokenizer.and_more", shown="'€'", n=2), known=65)
        ),
    ],
    ids=lambda e: e.text.key,
)
def test_engine_errors_in_chinese_have_no_english_words(error):
    said = say(error, "zh")
    assert said != str(error) and not english_words(said), said


# -- a failed download, a time budget, empty replies -----------------------------------------------------------


def test_a_failed_download_says_no_network_not_the_raw_error(tmp_path, monkeypatch):
    def no_network(url):
        raise requests.ConnectionError(f"HTTPSConnectionPool(host='x'): Max retries exceeded with url: {url}")

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    with pytest.raises(DownloadError) as info:
        GPT2Tokenizer()
    message = str(info.value)
    assert "GPT-2's tokenizer files" in message and "(no network)" in message and "character tokenizer" in message
    assert "HTTPSConnectionPool" not in message
    assert "没有网络" in say(info.value, "zh")
    assert network_reason(ValueError("odd")) == "ValueError: odd"  # anything else: its own short reason


def test_a_run_that_used_its_time_budget_says_so():
    cfg = TrainConfig(max_steps=1000, max_time=30.0)
    by_time = _finished_message(cfg, _Progress(step=260, t_start=0.0, best_val=2.5))
    assert str(by_time) == "Finished after 260 steps: the time budget of 30 s was used. Best validation loss 2.5000."
    by_steps = _finished_message(cfg, _Progress(step=1000, t_start=0.0, best_val=None))
    assert str(by_steps) == "Finished 1000 steps."


def test_distinct_n_of_empty_replies_is_zero():
    assert distinct_n([""], 1) == 0.0 and distinct_n([""] * 10, 2) == 0.0  # saying nothing is no variety
    assert distinct_n(["", "a b"], 1) == pytest.approx(2 / 3)
    assert distinct_n(["7", "7", "8"], 2) == pytest.approx(2 / 3)  # short replies count as themselves
    assert distinct_n(["a b a b"], 1) == 0.5 and distinct_n(["a b", "c d"], 2) == 1.0 and distinct_n([], 2) == 0


def test_the_cli_still_says_one_english_line(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfeh\x00i\x00")
    out = subprocess.run(
        [sys.executable, "-m", "core", "train", "--corpus", str(bad), "--out", str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode != 0
    line = "newleaf: error: bad.txt is UTF-16 text, not UTF-8. Save it as UTF-8 and try again."
    assert line in out.stderr.splitlines(), out.stderr
