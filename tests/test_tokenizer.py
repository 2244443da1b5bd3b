"""Tokenizers: round trips for the three kinds, save/load, and the errors a user can meet."""

import json
import os

import numpy as np
import pytest
import rustbpe
import tiktoken.load
import tiktoken.registry
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import DownloadError, TokenizerError
from core.tokenizer import BPETokenizer, CharTokenizer, GPT2Tokenizer, Tokenizer, load_tokenizer, make_tokenizer

SAMPLES = [
    "hello world",
    "你好，世界",
    "🌱🚀 👩‍💻",  # the last one is a ZWJ sequence: 3 code points, one glyph
    "cafe\u0301 n\u0303 a\u030a\u0323",  # combining marks
    "line one\nline two\r\n\ttabbed\t\n\n\n  indented",
    "  spaces  at both ends  ",
    "<|endoftext|>",
    "",
]
KINDS = ["char", "gpt2", "bpe"]


@pytest.fixture(scope="module")
def corpus(shakespeare_text):
    return shakespeare_text + "\n" + "\n".join(SAMPLES)  # so the char and bpe vocabularies cover the samples


@pytest.fixture(scope="module")
def toks(corpus):
    return {
        "char": CharTokenizer.from_text(corpus),
        "gpt2": GPT2Tokenizer(),
        "bpe": BPETokenizer.train(corpus[:200_000] + "\n".join(SAMPLES), 512),  # small corpus: fast
    }


# ----------------------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip(toks, kind, text):
    tok = toks[kind]
    ids = tok.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")


@pytest.mark.parametrize("kind", ["gpt2", "bpe"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_round_trip_any_text(toks, kind, text):
    tok = toks[kind]
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.decode_bytes(ids) == text.encode("utf-8")
    assert "".join(tok.token_pieces(text)) == text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_char_round_trip_any_text_of_its_alphabet(toks, data):
    tok = toks["char"]
    text = data.draw(st.text(alphabet=tok.chars, max_size=200))
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("kind", KINDS)
def test_decode_takes_tensors_and_arrays(toks, kind):
    tok = toks[kind]
    ids = tok.encode("To be, or not to be")
    assert tok.decode(torch.tensor(ids)) == "To be, or not to be"
    assert tok.decode(np.array(ids, dtype=np.int64)) == "To be, or not to be"
    assert tok.decode(list(np.array(ids, dtype=np.uint16))) == "To be, or not to be"
    assert tok.decode(torch.tensor(ids[0])) == tok.decode(ids[:1])  # a 0-d tensor: one id


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [[-1], ["vocab_size"], [[1, 2]]])
def test_decode_rejects_bad_ids(toks, kind, bad):
    tok = toks[kind]
    bad = [tok.vocab_size if b == "vocab_size" else b for b in bad]
    with pytest.raises(TokenizerError, match="out of range|flat sequence"):
        tok.decode(bad)


def test_decode_of_half_a_character(toks):
    tok = toks["gpt2"]
    ids = tok.encode("🌱")
    assert len(ids) > 1  # one emoji, several byte-level tokens
    assert tok.decode_bytes(ids[:1]) == "🌱".encode()[: len(tok.decode_bytes(ids[:1]))]
    assert "\ufffd" in tok.decode(ids[:1])
    assert b"".join(tok.decode_bytes([i]) for i in ids).decode("utf-8") == "🌱"


# ----------------------------------------------------------------------------------------------------------
# token_pieces


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("text", SAMPLES + ["First Citizen:\nBefore we proceed any further, hear me speak."])
def test_token_pieces(toks, kind, text):
    tok = toks[kind]
    pieces = tok.token_pieces(text)
    assert "".join(pieces) == text
    assert all(pieces)
    assert len(pieces) <= len(tok.encode(text))


def test_token_pieces_group_an_emoji_split_across_byte_tokens(toks):
    tok = toks["gpt2"]
    assert tok.token_pieces("🌱") == ["🌱"]
    pieces = tok.token_pieces("🌱🚀 👩‍💻")
    assert "".join(pieces) == "🌱🚀 👩‍💻"
    assert len(pieces) < len(tok.encode("🌱🚀 👩‍💻"))
    assert toks["char"].token_pieces("你好") == ["你", "好"]


# ----------------------------------------------------------------------------------------------------------
# Save and load


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip(toks, kind, tmp_path, shakespeare_text):
    tok = toks[kind]
    tok.save(tmp_path / "run")
    files = sorted(os.listdir(tmp_path / "run"))
    assert files == (["tokenizer.bpe", "tokenizer.json"] if kind == "bpe" else ["tokenizer.json"])  # no pickle, no temp
    back = load_tokenizer(tmp_path / "run")
    assert type(back) is type(tok) and back.kind == kind
    assert back.vocab_size == tok.vocab_size and back.describe() == tok.describe() and back.eot_id == tok.eot_id
    for text in SAMPLES + [shakespeare_text[:20_000]]:
        assert back.encode(text) == tok.encode(text)
    assert back.decode(tok.encode(SAMPLES[1])) == SAMPLES[1]


def test_saved_files_are_plain_text(toks, tmp_path):
    toks["bpe"].save(tmp_path)
    config = json.loads((tmp_path / "tokenizer.json").read_text(encoding="utf-8"))
    assert config["kind"] == "bpe" and config["requested_vocab_size"] == 512
    ranks = tiktoken.load.load_tiktoken_bpe(str(tmp_path / "tokenizer.bpe"))  # tiktoken reads our format
    assert ranks == toks["bpe"].mergeable_ranks


def test_char_save_keeps_every_character(tmp_path):
    text = 'a\n\t\r\x00\x7f\u2028\u2029"\\ é中🌱\ufeff\u0301'
    tok = CharTokenizer.from_text(text)
    tok.save(tmp_path)
    back = load_tokenizer(tmp_path)
    assert back.chars == tok.chars
    assert back.decode(back.encode(text)) == text


def test_resave_overwrites(tmp_path):
    BPETokenizer.train("hello world\n" * 50, 300).save(tmp_path)
    load_tokenizer(tmp_path)
    BPETokenizer.train("other words entirely\n" * 50, 280).save(tmp_path)
    back = load_tokenizer(tmp_path)  # not a stale copy of the first one
    assert back.requested_vocab_size == 280


def test_load_missing(tmp_path):
    with pytest.raises(TokenizerError, match="tokenizer.json is missing"):
        load_tokenizer(tmp_path / "nowhere")


@pytest.mark.parametrize("content", ['{"kind": "char", "chars": ["a"', "\xff\xfe garbage", ""])
def test_load_corrupt_json(tmp_path, content):
    (tmp_path / "tokenizer.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(TokenizerError, match="corrupt"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("config", [{"kind": "wordpiece"}, {"chars": ["a"]}, ["char"], "gpt2"])
def test_load_unknown_kind(tmp_path, config):
    (tmp_path / "tokenizer.json").write_text(json.dumps(config))
    with pytest.raises(TokenizerError, match="unknown tokenizer kind"):
        load_tokenizer(tmp_path)


@pytest.mark.parametrize("chars", [None, [], ["a", "a"], ["ab"], [1]])
def test_load_bad_chars(tmp_path, chars):
    (tmp_path / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": chars}))
    with pytest.raises(TokenizerError, match="'chars'"):
        load_tokenizer(tmp_path)


def test_load_bpe_missing_or_corrupt_ranks(toks, tmp_path):
    toks["bpe"].save(tmp_path)
    lines = (tmp_path / "tokenizer.bpe").read_bytes().splitlines(keepends=True)
    (tmp_path / "tokenizer.bpe").write_bytes(b"".join(lines[:-1]))  # truncated
    with pytest.raises(TokenizerError, match="holds 511 tokens"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.bpe").write_bytes(b"".join(lines[:-1]) + b"not!base64 511\n")
    with pytest.raises(TokenizerError, match="corrupt at line 512"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.bpe").write_bytes(b"".join(lines[:-1]) + lines[-1].replace(b" 511", b" 600"))
    with pytest.raises(TokenizerError, match="without gaps"):
        load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.bpe").unlink()
    with pytest.raises(TokenizerError, match="tokenizer.bpe is missing"):
        load_tokenizer(tmp_path)


def test_load_refuses_a_split_pattern_newleaf_did_not_write(toks, tmp_path):
    toks["bpe"].save(tmp_path)
    assert load_tokenizer(tmp_path).encode("hello") == toks["bpe"].encode("hello")
    config = json.loads((tmp_path / "tokenizer.json").read_text())
    # this one makes tiktoken's regex engine panic (a BaseException, not an Exception) on "aaaa...c"
    config["pattern"] = r"((a|aa)+)\2(?=b)|\S|\s"
    (tmp_path / "tokenizer.json").write_text(json.dumps(config))
    with pytest.raises(TokenizerError, match="known split patterns"):
        load_tokenizer(tmp_path)


# ----------------------------------------------------------------------------------------------------------
# Char


def test_char_vocab_is_sorted_characters(shakespeare_text):
    tok = CharTokenizer.from_text(shakespeare_text)
    assert tok.vocab_size == 65 and tok.chars == sorted(set(shakespeare_text))
    assert tok.encode("\n") == [0] and tok.describe() == "character-level, 65 symbols"


def test_char_unknown_characters(shakespeare_text):
    tok = CharTokenizer.from_text(shakespeare_text)
    assert tok.unknown_chars("café 中 é\t") == ["é", "中", "\t"]
    with pytest.raises(TokenizerError) as e:
        tok.encode("café 中 é\t")
    msg = str(e.value)
    assert "3 characters" in msg and "'é', '中', '\\t'" in msg and "65 characters" in msg
    assert tok.decode(tok.encode("café 中 é\t", unknown="skip")) == "caf  "
    with pytest.raises(TokenizerError, match="and 10 more"):
        tok.encode("".join(chr(0x4E00 + i) for i in range(20)))
    with pytest.raises(TokenizerError, match="unknown="):
        tok.encode("a", unknown="ignore")


# ----------------------------------------------------------------------------------------------------------
# GPT-2


def test_gpt2(toks):
    tok = toks["gpt2"]
    assert tok.vocab_size == 50257 and tok.eot_id == 50256 and tok.kind == "gpt2"
    assert tok.describe() == "GPT-2 BPE, 50257 tokens"
    ids = tok.encode("a<|endoftext|>b")
    assert 50256 not in ids and len(ids) > 3  # plain text, never the special token
    assert tok.decode(ids) == "a<|endoftext|>b"
    assert tok.encode("Hello world") == [15496, 995]


def test_gpt2_offline_raises_download_error(tmp_path, monkeypatch):
    def no_network(url):
        raise ConnectionError(f"cannot reach {url}")

    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # forget the already-loaded encoding
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache
    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    with pytest.raises(DownloadError, match="no network.*TIKTOKEN_CACHE_DIR"):
        GPT2Tokenizer()


# ----------------------------------------------------------------------------------------------------------
# BPE trained on the corpus


@pytest.mark.parametrize("vocab_size", [0, 100, 255, 65537, 10**9])
def test_bpe_vocab_size_out_of_range(vocab_size):
    with pytest.raises(TokenizerError, match="between 256 and 65536"):  # and no rustbpe panic
        BPETokenizer.train("hello world", vocab_size)
    with pytest.raises(TokenizerError, match=f"got {vocab_size}"):
        make_tokenizer(f"bpe:{vocab_size}", "hello world")


def test_bpe_empty_text():
    with pytest.raises(TokenizerError, match="empty"):
        BPETokenizer.train("", 512)
    with pytest.raises(TokenizerError, match="empty"):
        CharTokenizer.from_text("")


def test_bpe_small_corpus_learns_fewer_tokens(tmp_path):
    tok = BPETokenizer.train("hello world\n" * 100, 4096)
    assert 256 <= tok.vocab_size < 4096
    assert tok.vocab_size == len(tok.mergeable_ranks) == tok.enc.n_vocab
    assert tok.requested_vocab_size == 4096
    assert "4096" in tok.describe() and str(tok.vocab_size) in tok.describe()
    assert max(tok.encode("hello world, 你好 🌱" * 3)) < tok.vocab_size
    tok.save(tmp_path)
    back = load_tokenizer(tmp_path)
    assert back.vocab_size == tok.vocab_size and back.requested_vocab_size == 4096


def test_bpe_on_shakespeare_compresses_better_than_chars(shakespeare_text):
    bpe = BPETokenizer.train(shakespeare_text, 512)
    char = CharTokenizer.from_text(shakespeare_text)
    assert bpe.vocab_size == 512 and bpe.describe() == "BPE trained on this corpus, 512 tokens"
    assert bpe.eot_id is None
    n_bpe, n_char = len(bpe.encode(shakespeare_text)), len(char.encode(shakespeare_text))
    assert n_bpe < 0.6 * n_char
    assert bpe.decode(bpe.encode(shakespeare_text)) == shakespeare_text


def test_bpe_training_in_chunks_matches_training_on_the_whole_text(shakespeare_text):
    # The text goes to rustbpe in pieces; the pieces must not change which merges are learned.
    text = shakespeare_text[:300_000]
    whole = rustbpe.Tokenizer()
    whole.train_from_iterator(iter([text]), 600)
    assert BPETokenizer.train(text, 600).mergeable_ranks == dict(whole.get_mergeable_ranks())


def test_bpe_encodes_like_rustbpe(toks):
    # tiktoken runs the ranks rustbpe learned; both must cut text the same way.
    tok = rustbpe.Tokenizer()
    tok.train_from_iterator(iter(["hello world, hello there\n" * 30]), 300)
    ours = BPETokenizer(dict(tok.get_mergeable_ranks()), tok.get_pattern())
    for text in SAMPLES:
        assert ours.encode(text) == tok.encode(text)


# ----------------------------------------------------------------------------------------------------------
# make_tokenizer


def test_make_tokenizer(shakespeare_text):
    text = shakespeare_text[:50_000]
    assert make_tokenizer("char", text).kind == "char"
    assert make_tokenizer(" GPT2 ").kind == "gpt2"
    tok = make_tokenizer("bpe:300", text)
    assert tok.kind == "bpe" and tok.vocab_size == 300
    assert isinstance(tok, Tokenizer)


@pytest.mark.parametrize("spec", ["bpe:abc", "wordpiece", "bpe:", "bpe", "", "bpe:-5", "bpe:1e3", None])
def test_make_tokenizer_bad_spec(spec):
    with pytest.raises(TokenizerError, match="'bpe:VOCAB'"):
        make_tokenizer(spec, "some text")


@pytest.mark.parametrize("spec", ["char", "bpe:512"])
def test_make_tokenizer_needs_text(spec):
    with pytest.raises(TokenizerError, match="none was given"):
        make_tokenizer(spec)
