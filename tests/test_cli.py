"""The command line, run as a user runs it: `python -m core ...` in a subprocess."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, SHAKESPEARE


def cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "core", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def assert_user_error(r, fragment):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("newleaf: error: "), r.stderr
    assert r.stderr.rstrip().endswith(errors[0])  # the last thing printed
    assert fragment in errors[0], errors[0]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    r = cli(
        "train",
        "--corpus",
        SHAKESPEARE,
        "--preset",
        "tiny",
        "--max-steps",
        30,
        "--eval-every",
        15,
        "--batch-size",
        8,
        "--out",
        out,
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "Finished 30 steps" in r.stdout
    return out


def test_train_info_and_resume(trained_run):
    r = cli("info", "--run", trained_run, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["steps_done"] == 30 and info["state"] == "completed"
    assert info["parameters"] > 0 and info["best_val_loss"] is not None
    r = cli("train", "--out", trained_run, "--resume", "--max-steps", 45, "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads(cli("info", "--run", trained_run, "--json").stdout)["steps_done"] == 45
    r = cli("info", "--run", trained_run)
    assert "steps done: 45 (budget: 45 steps)" in r.stdout


def test_default_corpus_is_named(tmp_path):
    r = cli("train", "--preset", "tiny", "--max-steps", 2, "--eval-every", 2, "--out", tmp_path / "r", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "Tiny Shakespeare" in r.stderr


def test_offline_default_corpus(tmp_path):
    r = cli(
        "train",
        "--preset",
        "tiny",
        "--max-steps",
        2,
        "--eval-every",
        2,
        "--out",
        tmp_path / "r",
        "--quiet",
        env={"NEWLEAF_CACHE": str(tmp_path / "empty-cache"), "NEWLEAF_OFFLINE": "1"},
    )
    assert r.returncode == 0, r.stderr
    assert "offline" in r.stderr.lower() and "python" in r.stderr.lower()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--corpus", "no/such/file.txt"], "file.txt"),
        (["--preset", "enormous"], "Unknown preset 'enormous'"),
        (["--preset", "tiny", "--n-embd", "30", "--n-head", "4"], "divisible"),
        (["--tokenizer", "wordpiece"], "wordpiece"),
        (["--tokenizer", "bpe:100"], "between 256 and 65536"),
        (["--corpus", "builtin:nope"], "nope"),
        (["--lr", "-1"], "learning rate"),
        (["--n-layer", "two"], "--n-layer: invalid int value"),
        (["--device", "bogus"], "Unknown device"),
    ],
)
def test_user_mistakes_give_one_clear_line(tmp_path, args, fragment):
    r = cli("train", "--out", tmp_path / "r", "--quiet", "--max-steps", 1, *args)
    assert_user_error(r, fragment)
    assert not (tmp_path / "r").exists()  # nothing half-made is left to block the corrected command


def test_bad_corpus_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_user_error(cli("train", "--corpus", empty, "--out", tmp_path / "r1"), "empty")
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 50)
    assert_user_error(cli("train", "--corpus", binary, "--out", tmp_path / "r2"), "binary")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 au lait ".encode("latin-1") * 100)
    assert_user_error(cli("train", "--corpus", latin, "--out", tmp_path / "r3"), "byte offset 3")
    short = tmp_path / "short.txt"
    short.write_text("Too short for any context. " * 3)
    assert_user_error(cli("train", "--corpus", short, "--preset", "micro", "--out", tmp_path / "r4"), "context length")


def test_existing_run_and_bad_resume(trained_run, tmp_path):
    before = (trained_run / "config.json").read_bytes()
    assert_user_error(cli("train", "--out", trained_run, "--preset", "tiny"), "--resume")
    assert (trained_run / "config.json").read_bytes() == before
    assert_user_error(cli("train", "--out", tmp_path / "nothing", "--resume"), "does not exist")
    assert_user_error(cli("info", "--run", tmp_path), "not a Newleaf run")


def test_corrupt_checkpoint_from_the_cli(trained_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    (copy / "checkpoints" / "last.json").write_text("{not json")
    assert_user_error(cli("train", "--out", copy, "--resume"), "corrupt")


def test_sample_prints_only_the_continuation(trained_run):
    r = cli("sample", "--run", trained_run, "--prompt", "ROMEO:", "--max-new-tokens", 25, "--seed", 3)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) == 25  # character-level: 25 new tokens are 25 characters, and nothing else
    again = cli("sample", "--run", trained_run, "--prompt", "ROMEO:", "--max-new-tokens", 25, "--seed", 3)
    assert again.stdout == r.stdout


def test_sample_with_unseen_characters(trained_run):
    r = cli("sample", "--run", trained_run, "--prompt", "你好")
    assert_user_error(r, "never saw")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--seed", str(10**22)], "The seed must be a whole number from 0 to"),  # 23 digits
        (["--seed", "-5"], "The seed must be a whole number from 0 to"),
    ],
)
def test_out_of_range_seeds_give_one_clear_line(tmp_path, args, fragment):
    r = cli("train", "--out", tmp_path / "r", "--quiet", "--max-steps", 1, "--preset", "tiny", *args)
    assert_user_error(r, fragment)
    assert not (tmp_path / "r").exists()


def test_a_sampling_seed_out_of_range_gives_one_clear_line(trained_run):
    assert_user_error(cli("sample", "--run", trained_run, "--seed", str(2**80)), "The seed must be")


def test_names_too_long_for_the_file_system_give_one_clear_line(tmp_path, trained_run):
    long_name = "x" * 300
    assert_user_error(
        cli("train", "--out", tmp_path / long_name, "--preset", "tiny", "--max-steps", 1), "File name too long"
    )
    assert_user_error(cli("info", "--run", tmp_path / long_name), "File name too long")
    assert_user_error(cli("sample", "--run", tmp_path / long_name), "File name too long")


def test_info_does_not_call_a_run_whose_process_died_running(trained_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs anything
    status = json.loads((copy / "status.json").read_text())
    (copy / "status.json").write_text(json.dumps({**status, "state": "running", "pid": dead.pid}))
    info = json.loads(cli("info", "--run", copy, "--json").stdout)
    assert info["state"] == "failed" and "ended without saying why" in info["message"]
    assert "running" not in cli("info", "--run", copy).stdout.splitlines()[0]
