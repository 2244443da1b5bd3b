"""Tokenizers: text <-> token ids. One interface, three kinds.

    char   one token per character of the training text (nanoGPT's Shakespeare model)
    gpt2   GPT-2's byte-level BPE, 50257 tokens, run by tiktoken (downloaded once, then cached)
    bpe    a byte-level BPE trained on the corpus: trained with rustbpe, run with tiktoken (as in nanochat)

A tokenizer is saved as `tokenizer.json` (+ `tokenizer.bpe` for a trained BPE, in tiktoken's text format)
and loaded back with `load_tokenizer`. Nothing is pickled.

Byte-level BPE works on UTF-8 bytes, so one token may hold half a character: `decode` then shows U+FFFD,
`decode_bytes` gives the raw bytes (for streaming), and `token_pieces` groups such tokens so that every
piece it returns is whole text.

Special tokens (chat markers such as "<|user|>", added by fine-tuning) take the ids after the ordinary
vocabulary. `encode` of ordinary text never yields them, whatever the text says, so a marker can only come
from a chat template; `decode` shows them as their names. They are saved in tokenizer.json.
"""

from __future__ import annotations

import base64
import json
import operator
import os
import re
import tempfile
from pathlib import Path

import rustbpe
import tiktoken

from core.cache import cache_dir
from core.errors import DownloadError, TokenizerError, network_reason
from core.files import atomic_write_bytes, atomic_write_json
from core.messages import Text

CONFIG_FILE = "tokenizer.json"
RANKS_FILE = "tokenizer.bpe"
KINDS = ("char", "gpt2", "bpe")
SPECS = "'char', 'gpt2' or 'bpe:VOCAB' (e.g. 'bpe:1024')"
MIN_BPE_VOCAB = 256  # rustbpe starts from the 256 byte values (and panics below that)
MAX_BPE_VOCAB = 65536  # ids then fit in uint16
MIN_USES_PER_TOKEN = 10  # how often, on average, a trained BPE's tokens should appear in the text they serve

# ----------------------------------------------------------------------------------------------------------
# The interface


class Tokenizer:
    kind: str
    base_vocab_size: int  # ordinary tokens: ids 0..base_vocab_size-1
    special_tokens: dict[str, int] = {}  # name -> id, ids base_vocab_size.. in order (set per instance)

    @property
    def vocab_size(self) -> int:
        """The real size, special tokens included: ids are 0..vocab_size-1."""
        return self.base_vocab_size + len(self.special_tokens)

    def add_special_tokens(self, names) -> list[int]:
        """Give each name not yet known the next id after the vocabulary; returns the ids of all `names`."""
        specials = dict(self.special_tokens)  # the class default is shared: never mutate it
        for name in names:
            if not isinstance(name, str) or not name:
                raise TokenizerError(f"A special token needs a non-empty name; got {name!r}.")
            if name not in specials:
                specials[name] = self.base_vocab_size + len(specials)
        self.special_tokens = specials
        return [specials[n] for n in names]

    def _special_names(self) -> list[str]:
        return sorted(self.special_tokens, key=self.special_tokens.get)

    def _special_config(self) -> dict:
        return {"special_tokens": dict(self.special_tokens)} if self.special_tokens else {}

    def _segments(self, ids: list[int]):
        """(ordinary ids, None) and (None, special name) pieces of `ids`, in order."""
        base, names, run = self.base_vocab_size, self._special_names(), []
        for i in ids:
            if i < base:
                run.append(i)
                continue
            if run:
                yield run, None
                run = []
            yield None, names[i - base]
        if run:
            yield run, None

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def decode_bytes(self, ids) -> bytes:
        raise NotImplementedError

    def save(self, directory) -> None:
        raise NotImplementedError

    def description(self) -> Text:
        """What this tokenizer is, in a few words (a Text: the app says it in the page's language)."""
        raise NotImplementedError

    def describe(self) -> str:
        return str(self.description())

    def summary(self) -> dict:
        """What config.json records of a run's tokenizer."""
        return {"kind": self.kind, "vocab_size": self.vocab_size, "description": self.describe()}

    @property
    def eot_id(self) -> int | None:
        return None

    def token_pieces(self, text: str) -> list[str]:
        """The text cut at token boundaries, for showing tokens. Tokens that split a character are grouped,
        so every piece is valid text and "".join(pieces) == text."""
        pieces, buf = [], b""
        for i in self.encode(text):
            buf += self.decode_bytes([i])
            try:
                pieces.append(buf.decode("utf-8"))
                buf = b""
            except UnicodeDecodeError:
                pass  # part of a character: wait for the tokens that hold the rest of its bytes
        if buf:
            pieces.append(buf.decode("utf-8", errors="replace"))
        return pieces

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.describe()}>"


# ----------------------------------------------------------------------------------------------------------
# Character-level


class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, chars: list[str]):
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        self.base_vocab_size = len(self.chars)

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        _check_training_text(text)
        return cls(sorted(set(text)))  # ids in sorted order, like nanoGPT's char model

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` that are not in the vocabulary: distinct, in order of appearance."""
        if set(text) <= self.stoi.keys():  # the common case, fast
            return []
        return list(dict.fromkeys(c for c in text if c not in self.stoi))

    def encode(self, text: str, unknown: str = "error") -> list[int]:
        """unknown="error" raises on characters never seen in training; unknown="skip" drops them."""
        if unknown not in ("error", "skip"):
            raise TokenizerError(f"unknown= must be 'error' or 'skip'; got {unknown!r}.")
        missing = self.unknown_chars(text)
        if missing and unknown == "error":
            n = len(missing)
            shown = ", ".join(repr(c) for c in missing[:10])
            if n > 10:
                shown = Text("tokenizer.and_more", shown=shown, n=n - 10)
            key = "tokenizer.unknown_chars" if n != 1 else "tokenizer.unknown_char"
            raise TokenizerError(Text(key, n=n, shown=shown, known=len(self.chars)))
        stoi = self.stoi
        return [stoi[c] for c in text if c in stoi]

    def decode(self, ids) -> str:
        table = self.chars + self._special_names() if self.special_tokens else self.chars
        return "".join(table[i] for i in _as_ids(ids, self.vocab_size))

    def decode_bytes(self, ids) -> bytes:
        return self.decode(ids).encode("utf-8")

    def save(self, directory) -> None:
        _write_config(directory, {"kind": "char", "chars": self.chars, **self._special_config()})

    def description(self) -> Text:
        return _with_specials(self, Text("tokenizer.char", n=len(self.chars)))


# ----------------------------------------------------------------------------------------------------------
# Byte-level BPE run by tiktoken: GPT-2's, or one trained on the corpus


class _TiktokenTokenizer(Tokenizer):
    enc: tiktoken.Encoding

    def encode(self, text: str) -> list[int]:
        # Ordinary text only: "<|endoftext|>" typed by a user stays plain text and can't inject the special token.
        try:
            return self.enc.encode_ordinary(text)
        except BaseException as e:  # the regex engine's panic is a BaseException; turn it into a clear error
            if type(e).__name__ != "PanicException":
                raise
            raise TokenizerError(Text("tokenizer.split_failed", reason=str(e))) from None

    def decode(self, ids) -> str:
        ids = _as_ids(ids, self.vocab_size)
        if not self.special_tokens:
            return self.enc.decode(ids, errors="replace")
        return "".join(
            name if run is None else self.enc.decode(run, errors="replace") for run, name in self._segments(ids)
        )

    def decode_bytes(self, ids) -> bytes:
        ids = _as_ids(ids, self.vocab_size)
        if not self.special_tokens:
            return self.enc.decode_bytes(ids)
        return b"".join(
            name.encode("utf-8") if run is None else self.enc.decode_bytes(run) for run, name in self._segments(ids)
        )


class GPT2Tokenizer(_TiktokenTokenizer):
    kind = "gpt2"

    def __init__(self):
        # tiktoken caches in the temp folder by default, which may be wiped: keep the files with ours
        if "TIKTOKEN_CACHE_DIR" not in os.environ and "DATA_GYM_CACHE_DIR" not in os.environ:
            os.environ["TIKTOKEN_CACHE_DIR"] = str(cache_dir() / "tiktoken")
        try:
            self.enc = tiktoken.get_encoding("gpt2")  # downloads the BPE files once, then reads its cache
        except Exception as e:
            cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "data-gym-cache")
            raise DownloadError(Text("tokenizer.gpt2_download", why=network_reason(e), cache=cache)) from e
        self.base_vocab_size = self.enc.n_vocab  # 50257: 50256 merges and bytes, plus <|endoftext|>

    @property
    def eot_id(self) -> int:
        return self.enc.eot_token

    def save(self, directory) -> None:
        _write_config(directory, {"kind": "gpt2", **self._special_config()})

    def description(self) -> Text:
        return _with_specials(self, Text("tokenizer.gpt2", n=self.base_vocab_size))


# The split patterns a saved BPE tokenizer may use: GPT-4's (rustbpe's default) and GPT-2's (tiktoken's r50k).
SPLIT_PATTERNS = (  # kept whole, as tiktoken and rustbpe write them
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+""",  # noqa: E501
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
)


class BPETokenizer(_TiktokenTokenizer):
    kind = "bpe"

    def __init__(
        self,
        mergeable_ranks: dict[bytes, int],
        pattern: str,
        requested_vocab_size: int | None = None,
        name: str | None = None,
    ):
        _check_ranks(mergeable_ranks)
        self.mergeable_ranks, self.pattern = mergeable_ranks, pattern
        self.base_vocab_size = len(mergeable_ranks)
        self.requested_vocab_size = requested_vocab_size or self.base_vocab_size
        self.name = name or f"newleaf-bpe-{self.base_vocab_size}"
        try:
            self.enc = tiktoken.Encoding(
                name=self.name, pat_str=pattern, mergeable_ranks=mergeable_ranks, special_tokens={}
            )
        except Exception as e:  # e.g. a pattern tiktoken's regex engine can't compile
            raise TokenizerError(Text("tokenizer.bpe_build", reason=str(e))) from e

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        if (
            isinstance(vocab_size, bool)
            or not isinstance(vocab_size, int)
            or not MIN_BPE_VOCAB <= vocab_size <= MAX_BPE_VOCAB
        ):
            # Checked here: below 256 rustbpe panics, a BaseException that `except Exception` would not catch.
            raise TokenizerError(Text("tokenizer.bpe_size", min=MIN_BPE_VOCAB, max=MAX_BPE_VOCAB, got=vocab_size))
        _check_training_text(text)
        tok = rustbpe.Tokenizer()
        tok.train_from_iterator(_training_chunks(text), vocab_size)
        # rustbpe gives a list of (bytes, rank); it stops early when the text has no pair left to merge,
        # so there may be fewer than vocab_size.
        ranks = {bytes(b): r for b, r in tok.get_mergeable_ranks()}
        return cls(ranks, tok.get_pattern(), requested_vocab_size=vocab_size)

    def save(self, directory) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        # tiktoken's text format (what tiktoken.load.dump_tiktoken_bpe writes): "base64(token) rank" per line.
        # We write it ourselves: dump_tiktoken_bpe needs the blobfile package, and the file must be atomic.
        by_rank = sorted(self.mergeable_ranks.items(), key=lambda kv: kv[1])
        atomic_write_bytes(directory / RANKS_FILE, b"".join(base64.b64encode(b) + b" %d\n" % r for b, r in by_rank))
        _write_config(
            directory,
            {
                "kind": "bpe",
                "name": self.name,
                "pattern": self.pattern,
                "vocab_size": self.base_vocab_size,
                "requested_vocab_size": self.requested_vocab_size,
                **self._special_config(),
            },
        )

    def description(self) -> Text:
        if self.base_vocab_size < self.requested_vocab_size:
            text = Text("tokenizer.bpe_fewer", n=self.base_vocab_size, asked=self.requested_vocab_size)
        else:
            text = Text("tokenizer.bpe", n=self.base_vocab_size)
        return _with_specials(self, text)


def _training_chunks(text: str, size: int = 1 << 16):
    """The text in ~64 KB pieces for rustbpe, which counts words in parallel across pieces. Each cut is made
    right after a newline that is followed by a non-space character: the split pattern (GPT-4's) never joins
    across such a point, so training sees exactly the words of the whole text. (Cutting at every line does not:
    a run of newlines is one word, and the merges come out different.)"""
    boundary = re.compile(r"\n(?=\S)")
    start = 0
    while start < len(text):
        m = boundary.search(text, start + size) if start + size < len(text) else None
        end = m.end() if m else len(text)
        yield text[start:end]
        start = end


def _check_ranks(ranks: dict[bytes, int]) -> None:
    # tiktoken needs ranks 0..n-1 without gaps, and byte-level BPE needs all 256 bytes so any text encodes.
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise TokenizerError(Text("tokenizer.ranks_gaps", last=len(ranks) - 1))
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise TokenizerError(Text("tokenizer.ranks_bytes", n=len(missing)))


# ----------------------------------------------------------------------------------------------------------
# Making and loading


def make_tokenizer(spec: str, text: str | None = None) -> Tokenizer:
    """spec: "char" | "gpt2" | "bpe:VOCAB". char and bpe are built from `text`."""
    s = spec.strip().lower() if isinstance(spec, str) else ""
    if s == "gpt2":
        return GPT2Tokenizer()
    if s == "char":
        return CharTokenizer.from_text(_needs_text(text, "char"))
    if s.startswith("bpe:"):
        n = s[len("bpe:") :].strip()
        if not re.fullmatch(r"[0-9]+", n):
            raise TokenizerError(Text("tokenizer.bpe_spec", spec=spec, specs=SPECS))
        return BPETokenizer.train(_needs_text(text, "bpe"), int(n))
    raise TokenizerError(Text("tokenizer.unknown", spec=spec, specs=SPECS))


def vocab_too_large(vocab_size: int, n_tokens: int) -> bool:
    """Whether a text of n_tokens tokens is too short for a BPE vocabulary of vocab_size trained on it: its tokens
    appear fewer than MIN_USES_PER_TOKEN times each on average, so most embedding rows learn from a handful of
    examples (a 1,024-token BPE on a 3 KB file)."""
    return n_tokens < MIN_USES_PER_TOKEN * vocab_size


def vocab_for(n_tokens: int) -> int:
    """A BPE vocabulary size (a multiple of 256, at least MIN_BPE_VOCAB) whose tokens a text of n_tokens tokens
    uses often enough: what to suggest when vocab_too_large."""
    return max(MIN_BPE_VOCAB, n_tokens // MIN_USES_PER_TOKEN // 256 * 256)


def _needs_text(text, kind: str) -> str:
    if text is None:
        raise TokenizerError(f"The {kind!r} tokenizer is built from a text, and none was given.")
    return text


def load_tokenizer(directory) -> Tokenizer:
    """Read back what Tokenizer.save wrote. Anything missing or malformed raises TokenizerError."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TokenizerError(Text("tokenizer.none", path=str(directory), file=CONFIG_FILE)) from None
    except RecursionError:
        raise TokenizerError(Text("files.json_deep", path=str(path))) from None
    except ValueError as e:  # UnicodeDecodeError, JSONDecodeError, an integer of thousands of digits
        raise TokenizerError(Text("files.json_bad", path=str(path), reason=str(e))) from None
    except OSError as e:
        raise TokenizerError(Text("tokenizer.unreadable", path=str(path), reason=str(e))) from None
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind not in KINDS:
        raise TokenizerError(Text("tokenizer.kind", path=str(path), kind=kind, known=", ".join(KINDS)))

    tok = _load_base(directory, path, kind, config)
    specials = config.get("special_tokens", {})
    expected = range(tok.base_vocab_size, tok.base_vocab_size + len(specials)) if isinstance(specials, dict) else ()
    if not (
        isinstance(specials, dict)
        and all(isinstance(k, str) and k and type(v) is int for k, v in specials.items())
        and sorted(specials.values()) == list(expected)
    ):
        raise TokenizerError(Text("tokenizer.specials_bad", path=str(path), n=tok.base_vocab_size))
    tok.add_special_tokens(sorted(specials, key=specials.get))
    return tok


def _load_base(directory: Path, path: Path, kind: str, config: dict) -> Tokenizer:
    if kind == "gpt2":
        return GPT2Tokenizer()
    if kind == "char":
        chars = config.get("chars")
        if not (
            isinstance(chars, list)
            and chars
            and all(isinstance(c, str) and len(c) == 1 for c in chars)
            and len(set(chars)) == len(chars)
        ):
            raise TokenizerError(Text("tokenizer.chars_bad", path=str(path)))
        return CharTokenizer(chars)

    pattern, n, requested = config.get("pattern"), config.get("vocab_size"), config.get("requested_vocab_size")
    if not (isinstance(pattern, str) and isinstance(n, int) and isinstance(requested, int)):
        raise TokenizerError(Text("tokenizer.bpe_fields", path=str(path)))
    if pattern not in SPLIT_PATTERNS:
        # A split pattern is a regular expression run on every text: one from a file could backtrack for
        # minutes or make the regex engine panic, so only the patterns Newleaf itself writes are accepted.
        raise TokenizerError(Text("tokenizer.pattern", path=str(path)))
    ranks = _read_ranks(directory / RANKS_FILE)
    if len(ranks) != n:
        raise TokenizerError(
            Text("tokenizer.ranks_count", path=str(directory / RANKS_FILE), have=len(ranks), file=CONFIG_FILE, n=n)
        )
    return BPETokenizer(ranks, pattern, requested_vocab_size=requested, name=config.get("name"))


def _read_ranks(path: Path) -> dict[bytes, int]:
    # Parsed here rather than with tiktoken.load.load_tiktoken_bpe: that one caches every file it reads in
    # TIKTOKEN_CACHE_DIR under the hash of its path, and returns the stale copy after the file is rewritten.
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TokenizerError(Text("tokenizer.ranks_missing", path=str(path), file=CONFIG_FILE)) from None
    except OSError as e:
        raise TokenizerError(Text("tokenizer.unreadable", path=str(path), reason=str(e))) from None
    ranks = {}
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line:
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError:  # wrong field count, bad base64 (binascii.Error), or a rank that isn't a number
            raise TokenizerError(Text("tokenizer.ranks_line", path=str(path), line=lineno)) from None
    return ranks


# ----------------------------------------------------------------------------------------------------------
# Helpers


def _with_specials(tok: Tokenizer, description: Text) -> Text:
    n = len(tok.special_tokens)
    if not n:
        return description
    return Text("tokenizer.plus_special" if n == 1 else "tokenizer.plus_specials", description=description, n=n)


def _check_training_text(text) -> None:
    if not isinstance(text, str) or not text:
        raise TokenizerError(Text("tokenizer.empty_text"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates: not real text, and they could not be saved as UTF-8
        raise TokenizerError(Text("tokenizer.not_unicode", reason=e.reason, at=e.start)) from None


def _as_ids(ids, vocab_size: int) -> list[int]:
    """A list of ints from a list, a 1-D tensor or a 1-D ndarray, each checked to be a real token id."""
    if hasattr(ids, "tolist"):  # torch.Tensor, np.ndarray
        ids = ids.tolist()
    if isinstance(ids, int):  # a 0-d tensor
        ids = [ids]
    try:
        ids = [operator.index(i) for i in ids]
    except TypeError:
        raise TokenizerError("Token ids must be a flat sequence of integers.") from None
    for i in ids:
        if not 0 <= i < vocab_size:
            raise TokenizerError(f"Token id {i} is out of range for this tokenizer (0..{vocab_size - 1}).")
    return ids


def _write_config(directory, config: dict) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # ensure_ascii=False keeps the characters readable; json escapes control characters itself.
    atomic_write_json(directory / CONFIG_FILE, config, indent=1)
