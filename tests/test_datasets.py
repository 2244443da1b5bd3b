"""core.datasets: Tiny Shakespeare's download and cache (fed file:// URLs, never the network), the offline corpus,
and choosing a corpus."""

import hashlib
import urllib.error
import urllib.request

import pytest

from core import datasets
from core.cache import cache_dir
from core.datasets import (
    BUILTIN_DATASETS,
    TINY_SHAKESPEARE_MD5,
    default_corpus,
    download_tinyshakespeare,
    load_builtin,
    resolve_corpus,
)
from core.errors import CorpusError, DownloadError
from tests.conftest import SHAKESPEARE

UNREACHABLE = "http://127.0.0.1:9/nothing"  # the discard port: connection refused at once


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty (not yet created) Newleaf cache with downloads allowed."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("NEWLEAF_CACHE", str(cache))
    monkeypatch.delenv("NEWLEAF_OFFLINE", raising=False)
    return cache


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a URL fails the test."""
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("tried to use the network"))


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------------------
# Cache directory and download


def test_cache_dir_is_created_on_demand(fresh_cache):
    assert not fresh_cache.exists()
    assert cache_dir() == fresh_cache and fresh_cache.is_dir()


def test_cache_dir_default_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("NEWLEAF_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "newleaf"


def test_download_from_file_url(fresh_cache):
    path = download_tinyshakespeare(url=SHAKESPEARE.as_uri())
    assert path == fresh_cache / "tinyshakespeare.txt"
    assert md5(path) == TINY_SHAKESPEARE_MD5
    assert sorted(p.name for p in fresh_cache.iterdir()) == ["tinyshakespeare.txt"]  # no temp file left


def test_download_happens_once(fresh_cache, no_network):
    (fresh_cache).mkdir()
    (fresh_cache / "tinyshakespeare.txt").write_bytes(SHAKESPEARE.read_bytes())
    assert md5(download_tinyshakespeare(url=UNREACHABLE)) == TINY_SHAKESPEARE_MD5


def test_force_downloads_again(fresh_cache):
    download_tinyshakespeare(url=SHAKESPEARE.as_uri())
    with pytest.raises(DownloadError):
        download_tinyshakespeare(url=UNREACHABLE, force=True)


def test_corrupt_cache_is_replaced(fresh_cache):
    fresh_cache.mkdir()
    (fresh_cache / "tinyshakespeare.txt").write_text("half a download")
    path = download_tinyshakespeare(url=SHAKESPEARE.as_uri())
    assert md5(path) == TINY_SHAKESPEARE_MD5


def test_md5_mismatch_keeps_nothing(fresh_cache, tmp_path):
    impostor = tmp_path / "impostor.txt"
    impostor.write_text("To be or not to be, that is not the whole play.\n")
    with pytest.raises(DownloadError, match=r"is not Tiny Shakespeare \(md5 .*\), so it was not kept"):
        download_tinyshakespeare(url=impostor.as_uri())
    assert list(fresh_cache.iterdir()) == []


def test_unreachable_host_gives_offline_hint(fresh_cache):
    with pytest.raises(DownloadError) as info:
        download_tinyshakespeare(url=UNREACHABLE, timeout=5)
    message = str(info.value)
    assert message.startswith(f"Could not download Tiny Shakespeare from {UNREACHABLE} (")
    assert "You seem to be offline: use the built-in offline dataset 'python-stdlib' or upload a text file." in message
    assert not (fresh_cache / "tinyshakespeare.txt").exists()


def test_missing_file_url(fresh_cache, tmp_path):
    with pytest.raises(DownloadError, match="Could not download Tiny Shakespeare"):
        download_tinyshakespeare(url=(tmp_path / "absent.txt").as_uri())


def test_offline_with_empty_cache_never_touches_the_network(fresh_cache, monkeypatch, no_network):
    monkeypatch.setenv("NEWLEAF_OFFLINE", "1")
    with pytest.raises(DownloadError, match=r"not cached and NEWLEAF_OFFLINE=1 forbids downloading it.*python-stdlib"):
        download_tinyshakespeare(url=SHAKESPEARE.as_uri())


def test_session_cache_is_used(offline_caches, no_network):
    path = download_tinyshakespeare()
    assert path == offline_caches["newleaf"] / "tinyshakespeare.txt"
    corpus = load_builtin("shakespeare")
    assert corpus.name == "Tiny Shakespeare" and len(corpus.text) == 1_115_394


# ---------------------------------------------------------------------------------------------------------------------
# Choosing a corpus


def test_default_corpus_uses_cached_shakespeare(no_network):
    corpus, message = default_corpus()
    assert corpus.name == "Tiny Shakespeare" and len(corpus.text) == 1_115_394
    assert message == "Using Tiny Shakespeare (cached)."


def test_default_corpus_downloads_when_it_can(fresh_cache, monkeypatch):
    real_urlopen = urllib.request.urlopen
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, **kw: real_urlopen(SHAKESPEARE.as_uri(), **kw))
    corpus, message = default_corpus()
    assert corpus.name == "Tiny Shakespeare"
    assert message.startswith("Using Tiny Shakespeare (downloaded to ")


def test_default_corpus_falls_back_offline(fresh_cache, monkeypatch, no_network):
    monkeypatch.setenv("NEWLEAF_OFFLINE", "1")
    corpus, message = default_corpus()
    assert corpus.name == "Python standard library source"
    assert message.startswith("Tiny Shakespeare is not available offline (")
    assert message.endswith("using the offline dataset Python standard library source instead.")


def test_default_corpus_falls_back_when_the_download_fails(fresh_cache, monkeypatch):
    def refuse(url, **kw):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    corpus, message = default_corpus()
    assert corpus.name == "Python standard library source"
    assert "Connection refused" in message


def test_python_stdlib_is_offline_deterministic_and_large(no_network):
    datasets._stdlib_text.cache_clear()
    first = load_builtin("python-stdlib")
    datasets._stdlib_text.cache_clear()
    second = load_builtin("python-stdlib")
    assert first.text == second.text
    assert 1_000_000 < len(first.text) < 2_500_000
    headers = [line for line in first.text.split("\n") if line.startswith("# ---- file: ")]
    names = [h[len("# ---- file: ") : -len(" ----")] for h in headers]
    assert names == sorted(names) and len(names) > 10
    assert first.text.startswith(headers[0] + "\n")
    assert not any(part in {"test", "tests", "idlelib", "site-packages"} for n in names for part in n.split("/"))
    assert "\r" not in first.text


def test_builtin_registry():
    assert {"shakespeare", "python-stdlib"} <= set(BUILTIN_DATASETS)
    for name, dataset in BUILTIN_DATASETS.items():
        assert dataset.name == name and dataset.title and "\n" not in dataset.description
    assert BUILTIN_DATASETS["shakespeare"].needs_download and not BUILTIN_DATASETS["python-stdlib"].needs_download


def test_unknown_builtin_lists_names():
    known = r"Unknown built-in dataset 'nope'\. Known datasets: shakespeare, python-stdlib"
    with pytest.raises(CorpusError, match=known):
        load_builtin("nope")


def test_resolve_corpus(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.csv"
    a.write_text("alpha")
    b.write_text("title,body\nx,beta\n")
    assert resolve_corpus("builtin:python-stdlib").name == "Python standard library source"
    assert resolve_corpus(str(a)).text == "alpha"
    assert resolve_corpus([str(a), str(b)], csv_column="body").text == "alpha\n\nbeta"
    with pytest.raises(CorpusError, match="cannot be combined"):
        resolve_corpus(["builtin:shakespeare", str(a)])
    with pytest.raises(CorpusError, match="Known datasets"):
        resolve_corpus("builtin:nope")
