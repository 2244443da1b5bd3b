"""Shared fixtures. Nothing in the test suite touches the network: downloads are fed local files from
../shared/data (see ../shared/README.md)."""

import os
import shutil
from pathlib import Path

import pytest

# Two cores, shared with whatever else runs: one torch thread per test process is faster for these tiny
# models than two threads fighting over the cores (measured 11 ms vs 130 ms a step under load).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("NEWLEAF_TRAIN_THREADS", "1")  # the same for the training processes the app starts
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (found from further up when the tests run from a copy, as mutation testing does)
SHARED_DATA = next(
    (a / "shared" / "data" for a in REPO.parents if (a / "shared" / "data").is_dir()), REPO.parent / "shared" / "data"
)
SHAKESPEARE = SHARED_DATA / "tinyshakespeare.txt"

# tiktoken caches each download under the sha1 of its URL (../shared/README.md).
_TIKTOKEN_FILES = {
    "6d1cbeee0f20b3d9449abfede4726ed8212e3aee": "vocab.bpe",
    "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6": "encoder.json",
}


@pytest.fixture(scope="session", autouse=True)
def offline_caches(tmp_path_factory):
    """Seed tiktoken's and Newleaf's download caches from ../shared/data, so the product's real download
    code runs offline. Session-wide and automatic: no test may reach the network."""
    tk = tmp_path_factory.mktemp("tiktoken-cache")
    for name, src in _TIKTOKEN_FILES.items():
        shutil.copy(SHARED_DATA / "gpt2" / src, tk / name)
    nl = tmp_path_factory.mktemp("newleaf-cache")
    shutil.copy(SHAKESPEARE, nl / "tinyshakespeare.txt")
    old = {k: os.environ.get(k) for k in ("TIKTOKEN_CACHE_DIR", "NEWLEAF_CACHE", "NEWLEAF_OFFLINE")}
    os.environ["TIKTOKEN_CACHE_DIR"] = str(tk)
    os.environ["NEWLEAF_CACHE"] = str(nl)
    os.environ["NEWLEAF_OFFLINE"] = "1"  # belt and braces: never try a real download in tests
    yield {"tiktoken": tk, "newleaf": nl}
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def shakespeare_text():
    return SHAKESPEARE.read_text(encoding="utf-8")
