"""Built-in datasets: Tiny Shakespeare (downloaded once, then cached) and an offline corpus made on the spot from the
Python standard library's own source code, so a machine without network still has something to train on.

Reading top to bottom (the cache directory and the offline switch are core/cache.py's):
  1. Tiny Shakespeare: download, verify, cache
  2. python-stdlib: the offline corpus
  3. the registry of built-in datasets, and resolving what the user asked for ("builtin:NAME" or file paths)
"""

import functools
import hashlib
import os
import sysconfig
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.cache import OFFLINE_ENV, cache_dir, is_offline
from core.data import Corpus, load_corpus
from core.errors import CorpusError, DownloadError
from core.files import atomic_write_bytes
from core.messages import Text

# ----------------------------------------------------------------------------------------------------------------------
# 1. Tiny Shakespeare

TINY_SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINY_SHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"
TINY_SHAKESPEARE_FILE = "tinyshakespeare.txt"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _download_error(message: Text, reason: str) -> DownloadError:
    """A DownloadError that also carries the bare `reason`, so callers can compose their own sentence."""
    err = DownloadError(message)
    err.reason = reason
    return err


def tinyshakespeare_path() -> Path:
    return cache_dir() / TINY_SHAKESPEARE_FILE


def is_tinyshakespeare_cached() -> bool:
    """True when the cached copy exists and is the right file (a corrupt copy counts as not cached)."""
    path = tinyshakespeare_path()
    return path.is_file() and _md5(path.read_bytes()) == TINY_SHAKESPEARE_MD5


def download_tinyshakespeare(*, url: str = TINY_SHAKESPEARE_URL, timeout: float = 15.0, force: bool = False) -> Path:
    """The path of the cached Tiny Shakespeare, downloading it first if needed (urllib; file:// URLs work too).

    The download is verified by md5 before it is written, and written atomically, so the cache only ever holds the
    right file. With NEWLEAF_OFFLINE=1 a missing file is an error and the network is never touched.
    """
    dest = tinyshakespeare_path()
    if not force and is_tinyshakespeare_cached():
        return dest
    if is_offline():
        raise _download_error(Text("datasets.offline", env=OFFLINE_ENV), f"not cached, and {OFFLINE_ENV}=1")

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as e:  # no network, refused, timeout, bad URL
        reason = str(getattr(e, "reason", None) or e)
        raise _download_error(Text("datasets.no_download", url=url, reason=reason), reason) from e

    got = _md5(data)
    if got != TINY_SHAKESPEARE_MD5:
        raise _download_error(
            Text("datasets.wrong_file", url=url, got=got, expected=TINY_SHAKESPEARE_MD5), "checksum mismatch"
        )

    atomic_write_bytes(dest, data)
    return dest


def load_tinyshakespeare() -> Corpus:
    return load_corpus(download_tinyshakespeare(), name="Tiny Shakespeare")


# ----------------------------------------------------------------------------------------------------------------------
# 2. python-stdlib: the offline corpus, made from the .py files of the Python running this code.
#
# Nothing is committed: the text is whatever this interpreter ships, read in sorted order so it is the same on every
# run of the same Python. Tests, IDLE and installed packages are left out (not stdlib code as people write it), and so
# are the `encodings` codec tables, which are mostly long runs of escaped bytes.

STDLIB_MAX_CHARS = 2_000_000
_STDLIB_SKIP_DIRS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__", "encodings"}


def _stdlib_files(root: Path) -> list[str]:
    """Relative POSIX paths of the stdlib's .py files worth reading, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Prune in place so os.walk never descends into skipped folders (site-packages can be huge).
        dirnames[:] = [d for d in dirnames if d not in _STDLIB_SKIP_DIRS and not d.startswith("config-")]
        rel_dir = Path(dirpath).relative_to(root)
        found += [(rel_dir / f).as_posix() for f in filenames if f.endswith(".py")]
    return sorted(found)


@functools.lru_cache(maxsize=1)
def _stdlib_text() -> tuple[str, str]:
    """(text, stdlib folder). Files are added whole until the text passes STDLIB_MAX_CHARS."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for rel in _stdlib_files(root):
        if total >= STDLIB_MAX_CHARS:
            break
        try:
            source = (root / rel).read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # unreadable or not UTF-8: skip it, there are plenty more
        source = source.replace("\r\n", "\n").strip()
        part = f"# ---- file: {rel} ----\n{source}\n"
        parts.append(part)
        total += len(part) + 1
    if not parts:
        raise CorpusError(Text("datasets.no_stdlib", root=str(root)))
    return "\n".join(parts), str(root)


def load_python_stdlib() -> Corpus:
    text, root = _stdlib_text()
    return Corpus(text=text, name="Python standard library source", sources=[root])


# ----------------------------------------------------------------------------------------------------------------------
# 3. Registry and resolution


@dataclass
class BuiltinDataset:
    name: str  # what the user types after "builtin:"
    title: str  # what the UI shows
    description: str  # one line
    needs_download: bool
    load: Callable[[], Corpus]


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    d.name: d
    for d in (
        BuiltinDataset(
            name="shakespeare",
            title="Tiny Shakespeare",
            description="About 1.1 million characters of Shakespeare's plays; the classic character-level corpus.",
            needs_download=True,
            load=load_tinyshakespeare,
        ),
        BuiltinDataset(
            name="python-stdlib",
            title="Python standard library source",
            description="About 2 million characters of this machine's Python standard library source; no download.",
            needs_download=False,
            load=load_python_stdlib,
        ),
    )
}

OFFLINE_DATASET = "python-stdlib"
BUILTIN_PREFIX = "builtin:"


def load_builtin(name: str) -> Corpus:
    dataset = BUILTIN_DATASETS.get(name)
    if dataset is None:
        known = ", ".join(BUILTIN_DATASETS)
        raise CorpusError(Text("datasets.unknown", name=name, known=known))
    return dataset.load()


def resolve_corpus(spec: str | os.PathLike | list, csv_column: str | None = None) -> Corpus:
    """ "builtin:NAME" for a built-in dataset, else one file path or a list of them."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    builtins = [s for s in specs if isinstance(s, str) and s.startswith(BUILTIN_PREFIX)]
    if not builtins:
        return load_corpus(specs, csv_column=csv_column)
    if len(specs) > 1:
        raise CorpusError(Text("datasets.combined"))
    return load_builtin(builtins[0][len(BUILTIN_PREFIX) :])


def default_corpus() -> tuple[Corpus, str]:
    """Tiny Shakespeare when it is cached or can be downloaded, else the offline dataset; the string says which, why."""
    was_cached = is_tinyshakespeare_cached()
    try:
        path = download_tinyshakespeare()
    except DownloadError as e:
        offline = BUILTIN_DATASETS[OFFLINE_DATASET]
        reason = getattr(e, "reason", str(e))
        return offline.load(), (
            f"Tiny Shakespeare is not available offline ({reason}); using the offline dataset {offline.title} instead."
        )
    corpus = load_corpus(path, name=BUILTIN_DATASETS["shakespeare"].title)
    how = "cached" if was_cached else f"downloaded to {path}"
    return corpus, f"Using Tiny Shakespeare ({how})."
