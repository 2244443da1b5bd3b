"""Corpora and token data: load and validate text files, describe them, split them, store token ids, batch them.

Reading top to bottom:
  1. limits             - how big a corpus may be
  2. reading one file   - checks that give the user one clear sentence each, then the format (.txt/.md, .jsonl, .csv)
  3. corpora            - one or more files joined into a `Corpus`
  4. statistics         - what the UI shows about a corpus
  5. train / val split  - and the check that both parts are long enough for the context length
  6. token storage      - token ids as a compact binary file, read back as a memmap
  7. batching           - random contiguous windows for next-token training

Nothing here knows about tokenizers: functions take plain text or token ids.
"""

import io
import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.errors import ConfigError, CorpusError
from core.files import atomic_write
from core.messages import Text
from core.units import format_bytes

# ----------------------------------------------------------------------------------------------------------------------
# 1. Limits

DEFAULT_MAX_CORPUS_BYTES = 200 * 1024 * 1024
MAX_CORPUS_BYTES_ENV = "NEWLEAF_MAX_CORPUS_BYTES"

PathLike = str | os.PathLike


def max_corpus_bytes(max_bytes: int | None = None) -> int:
    """The size limit in force: the argument if given, else $NEWLEAF_MAX_CORPUS_BYTES, else the default."""
    if max_bytes is not None:
        return max_bytes
    env = os.environ.get(MAX_CORPUS_BYTES_ENV)
    if not env:
        return DEFAULT_MAX_CORPUS_BYTES
    try:
        return int(env)
    except ValueError:
        raise ConfigError(f"{MAX_CORPUS_BYTES_ENV} must be a whole number of bytes, not {env!r}.") from None


# ----------------------------------------------------------------------------------------------------------------------
# 2. Reading one file
#
# Checks run cheapest-first and in the order that gives the truest message: existence, directory, size (os.stat, before
# reading anything), then one read of the bytes, UTF-16 / binary (a PNG must say "binary", not "invalid byte"), UTF-8,
# whitespace. The file is read once; parsing .jsonl / .csv works on the decoded text.

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_BINARY_SAMPLE_BYTES = 8192
_BINARY_CONTROL_FRACTION = 0.3  # "mostly" control characters; real text has next to none
# Control bytes that text files do contain: tab, newline, vertical tab, form feed, carriage return, escape (ANSI logs).
_TEXT_CONTROLS = {9, 10, 11, 12, 13, 27}
_NON_CONTROL_BYTES = bytes(b for b in range(256) if not (b < 32 or b == 127) or b in _TEXT_CONTROLS)


def read_text_file(path: PathLike, *, csv_column: str | None = None, max_bytes: int | None = None) -> str:
    """Read one corpus file as text, validated, with "\\r\\n" turned into "\\n".

    .jsonl: the "text" field of each line's object, joined with blank lines. .csv: one column (csv_column, else the one
    named "text", else the only one), rows joined with newlines. Anything else (.txt, .md, ...) is plain text.
    Every problem raises a CorpusError whose message names the file.
    """
    path = Path(path)
    name = path.name
    text = read_checked_text(path, max_corpus_bytes(max_bytes))
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _parse_jsonl(text, name)
    if suffix == ".csv":
        return parse_csv_text(text, name, csv_column)
    return text


def read_checked_text(path: Path, limit: int, kind: str = "text") -> str:
    """A file's text once it is known to exist, be a file, hold something, fit the size limit and be UTF-8
    text; otherwise a CorpusError naming the file (`kind` says what it should hold: "text", "data")."""
    name = path.name
    if not path.exists():
        raise CorpusError(Text("data.not_found", path=str(path)))
    if path.is_dir():
        raise CorpusError(Text("data.folder", name=name, kind=Text(f"what.{kind}")))
    size = os.stat(path).st_size
    if size == 0:
        raise CorpusError(Text("data.empty", name=name, kind=Text(f"what.{kind}")))
    if size > limit:
        raise CorpusError(
            Text(
                "data.too_big", name=name, size=format_bytes(size), limit=format_bytes(limit), env=MAX_CORPUS_BYTES_ENV
            )
        )
    return _decode(path.read_bytes(), name)


def _decode(data: bytes, name: str) -> str:
    """Bytes -> text, or a CorpusError saying why these bytes are not UTF-8 text."""
    if data.startswith(_UTF16_BOMS):
        raise CorpusError(Text("data.utf16", name=name))
    if b"\x00" in data:
        raise CorpusError(Text("data.binary_nul", name=name))
    sample = data[:_BINARY_SAMPLE_BYTES]
    n_control = len(sample.translate(None, _NON_CONTROL_BYTES))  # what is left after deleting the non-controls
    if n_control > _BINARY_CONTROL_FRACTION * len(sample):
        raise CorpusError(Text("data.binary_control", name=name))

    bom = len(_UTF8_BOM) if data.startswith(_UTF8_BOM) else 0  # a UTF-8 BOM is harmless: drop it
    try:
        text = data[bom:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = bom + e.start  # offset in the file as the user has it, BOM included
        raise CorpusError(Text("data.not_utf8", name=name, byte=data[offset], offset=offset)) from None
    if not text or text.isspace():
        raise CorpusError(Text("data.whitespace", name=name))
    return text.replace("\r\n", "\n")


def json_problem(e: Exception) -> str:
    """What json.loads disliked, in a few words: its own message, or what Python itself refused."""
    if isinstance(e, json.JSONDecodeError):
        return e.msg
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e).split(";")[0]  # e.g. an integer of thousands of digits


def check_unicode(text: str, where: str) -> None:
    """JSON can spell a lone surrogate ("\\ud800"), which is not a character: refuse it here, by name, rather
    than fail later when the text is tokenized or saved."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise CorpusError(Text("data.surrogate", where=where, code=ord(text[e.start]))) from None


def _parse_jsonl(text: str, name: str) -> str:
    """One JSON object per line; its "text" string is a document. Blank lines are skipped."""
    docs = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as e:
            where = Text("where.line", name=name, line=lineno)
            raise CorpusError(Text("data.jsonl_json", where=where, problem=json_problem(e))) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise CorpusError(Text("data.jsonl_no_text", where=Text("where.line", name=name, line=lineno)))
        if obj["text"]:
            check_unicode(obj["text"], Text("where.line", name=name, line=lineno))
            docs.append(obj["text"])
    text = "\n\n".join(docs)  # a blank line between documents, as between files
    if not text or text.isspace():
        raise CorpusError(Text("data.jsonl_empty", name=name))
    return text


def read_csv_table(text: str, name: str):
    """A CSV file's text as a pandas table of strings, or a CorpusError naming the file. Every cell stays a
    string, and only empty cells count as missing: a row reading "NA" or "null" is text."""
    import pandas as pd  # noqa: PLC0415  heavy (~0.4 s to import) and only CSV needs it: `import core.data` stays light

    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise CorpusError(Text("data.csv_unreadable", name=name, reason=str(e).strip())) from None


def parse_csv_text(text: str, name: str, csv_column: str | None) -> str:
    """One column of a CSV file, rows joined with newlines; empty cells are skipped."""
    df = read_csv_table(text, name)
    columns = [str(c) for c in df.columns]
    listed = ", ".join(repr(c) for c in columns)
    if csv_column is not None:
        if csv_column not in df.columns:
            raise CorpusError(Text("data.csv_no_column", name=name, column=csv_column, listed=listed))
        column = csv_column
    elif "text" in df.columns:
        column = "text"
    elif len(columns) == 1:
        column = df.columns[0]
    else:
        raise CorpusError(Text("data.csv_which_column", name=name, listed=listed))
    text = "\n".join(df[column].dropna())
    if not text or text.isspace():
        raise CorpusError(Text("data.csv_column_empty", name=name, column=column))
    return text


# ----------------------------------------------------------------------------------------------------------------------
# 3. Corpora


@dataclass
class Corpus:
    text: str
    name: str  # shown to the user: "tinyshakespeare.txt", "a.txt + b.jsonl", "Tiny Shakespeare"
    sources: list[str] = field(default_factory=list)  # where the text came from: file paths, a URL, a folder


def load_corpus(
    paths: PathLike | Sequence[PathLike],
    *,
    csv_column: str | None = None,
    max_bytes: int | None = None,
    name: str | None = None,
) -> Corpus:
    """Load one file or several; several are joined with a blank line between them. The size limit applies to each
    file and to all of them together, both checked with os.stat before anything is read."""
    paths = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not paths:
        raise CorpusError(Text("data.no_files"))
    limit = max_corpus_bytes(max_bytes)
    if len(paths) > 1:
        total = sum(os.stat(p).st_size for p in paths if p.is_file())
        if total > limit:
            raise CorpusError(
                Text(
                    "data.files_too_big",
                    n=len(paths),
                    size=format_bytes(total),
                    limit=format_bytes(limit),
                    env=MAX_CORPUS_BYTES_ENV,
                )
            )
    texts = [read_text_file(p, csv_column=csv_column, max_bytes=limit) for p in paths]
    return Corpus(
        text="\n\n".join(texts),
        name=name or " + ".join(p.name for p in paths),
        sources=[str(p) for p in paths],
    )


# ----------------------------------------------------------------------------------------------------------------------
# 4. Statistics

PREVIEW_CHARS = 1000
TOP_CHARACTERS = 20


def corpus_stats(text: str, tokenizer=None) -> dict:
    """Numbers the UI shows about a corpus. top_characters is a list of (character, count), most common first.
    With a tokenizer, also the number of tokens, the vocabulary size and characters per token."""
    counts = Counter(text)
    n_lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)  # a last line without "\n" counts
    extra = {}
    if tokenizer is not None:
        n_tokens = len(tokenizer.encode(text))
        extra = {
            "tokens": n_tokens,
            "vocab_size": tokenizer.vocab_size,
            "chars_per_token": len(text) / max(1, n_tokens),
        }
    return {
        **extra,
        "characters": len(text),
        "bytes": len(text.encode("utf-8")),
        "lines": n_lines,
        "words": len(text.split()),
        "distinct_characters": len(counts),
        "preview": text[:PREVIEW_CHARS],
        "top_characters": counts.most_common(TOP_CHARACTERS),
    }


# ----------------------------------------------------------------------------------------------------------------------
# 5. Train / validation split

SPLIT_SNAP_CHARS = 200  # how far the split may move to land on a line break


def split_text(text: str, val_fraction: float = 0.1) -> tuple[str, str]:
    """The first (1 - val_fraction) of the text trains, the end validates. `train + val == text`.

    The cut is a character index, moved to just after the nearest newline if one lies within SPLIT_SNAP_CHARS (and
    within 1% of the text), so no word or line is cut in half; otherwise it stays where it is.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"The validation fraction must be between 0 and 1 (exclusive), not {val_fraction}.")
    n = len(text)
    cut = int(round(n * (1.0 - val_fraction)))
    window = min(SPLIT_SNAP_CHARS, n // 100)
    if window > 0:
        before = text.rfind("\n", cut - window, cut)  # index of a "\n" in [cut - window, cut)
        after = text.find("\n", cut, cut + window)
        candidates = [i + 1 for i in (before, after) if i != -1]
        if candidates:
            cut = min(candidates, key=lambda c: abs(c - cut))
    cut = min(max(cut, 1), n - 1) if n >= 2 else cut  # both parts non-empty whenever possible
    return text[:cut], text[cut:]


def check_token_counts(n_train: int, n_val: int, block_size: int) -> None:
    """Both parts need at least one full window (block_size inputs + 1 target) for training and evaluation."""
    need = block_size + 1
    for part, n in (("training", n_train), ("validation", n_val)):
        if n < need:
            smaller = Text("data.context_at_most", block=n - 1) if n >= 2 else Text("data.context_smaller")
            raise CorpusError(
                Text(
                    "data.part_too_short", part=Text(f"what.{part}"), n=n, block=block_size, need=need, smaller=smaller
                )
            )


# ----------------------------------------------------------------------------------------------------------------------
# 6. Token storage: a flat array of ids, 2 bytes each when the vocabulary allows (it almost always does)


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def write_tokens(path: PathLike, ids, vocab_size: int) -> None:
    """Write token ids as raw uint16/uint32. Atomic: a reader sees the old file or the new one, never half of one."""
    dtype = token_dtype(vocab_size)
    arr = np.asarray(ids)
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(f"token ids must lie in [0, {vocab_size}); got {arr.min()}..{arr.max()}")
    arr = arr.astype(dtype, copy=False).ravel()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_array(path, arr)


def write_array(path: Path, arr: np.ndarray) -> None:
    """A numpy array's raw bytes to a file, atomically (a temporary file, then a rename)."""
    atomic_write(path, lambda tmp: arr.tofile(tmp))


def open_tokens(path: PathLike, vocab_size: int) -> np.ndarray:
    """Token ids written by write_tokens, as a read-only memmap (an empty array for an empty file)."""
    path = Path(path)
    dtype = token_dtype(vocab_size)
    if not path.is_file():
        raise CorpusError(f"Token file not found: {path}.")
    size = path.stat().st_size
    if size % dtype.itemsize:
        raise CorpusError(f"{path.name} is not a token file for a vocabulary of {vocab_size:,} (wrong size).")
    if size == 0:
        return np.zeros(0, dtype=dtype)  # numpy cannot memmap an empty file
    return np.memmap(path, dtype=dtype, mode="r")


# ----------------------------------------------------------------------------------------------------------------------
# 7. Batching


def get_batch(
    tokens: np.ndarray,
    batch_size: int,
    block_size: int,
    generator: torch.Generator,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """batch_size random windows of block_size + 1 contiguous tokens: x is each window's first block_size tokens,
    y the same shifted by one (the next token at every position). Offsets come from torch.randint on `generator`, so
    restoring the generator's state reproduces the same batches."""
    n = len(tokens)
    if n < block_size + 1:
        raise CorpusError(Text("data.too_short", n=n, block=block_size, need=block_size + 1))
    starts = torch.randint(n - block_size, (batch_size,), generator=generator).numpy()  # (B,)
    windows = np.asarray(tokens)[starts[:, None] + np.arange(block_size + 1)]  # (B, T+1), one gather from the memmap
    windows = torch.from_numpy(windows.astype(np.int64))
    x, y = windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)
    device = torch.device(device)
    if device.type == "cuda":  # pinned memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.contiguous().to(device), y.contiguous().to(device)
