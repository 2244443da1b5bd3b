"""core.data: every bad corpus gets its own clear message; formats load; split, token files and batches behave."""

import json

import numpy as np
import pytest
import torch

from core.data import (
    Corpus,
    check_token_counts,
    corpus_stats,
    get_batch,
    load_corpus,
    open_tokens,
    read_text_file,
    split_text,
    write_tokens,
)
from core.errors import CorpusError

PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00\x1f\xf3\xffa"


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


# ---------------------------------------------------------------------------------------------------------------------
# Bad inputs: one specific message each, naming the file


def test_missing_file(tmp_path):
    with pytest.raises(CorpusError, match=r"File not found: .*nothere\.txt"):
        read_text_file(tmp_path / "nothere.txt")


def test_directory(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(CorpusError, match=r"^folder is a folder, not a file"):
        read_text_file(tmp_path / "folder")


def test_empty_file(tmp_path):
    with pytest.raises(CorpusError, match=r"^empty\.txt is empty \(0 bytes\)"):
        read_text_file(write(tmp_path, "empty.txt", b""))


def test_whitespace_only(tmp_path):
    with pytest.raises(CorpusError, match=r"^blank\.txt contains only whitespace"):
        read_text_file(write(tmp_path, "blank.txt", "  \n\t\r\n  \n"))


def test_bom_only_counts_as_whitespace(tmp_path):
    with pytest.raises(CorpusError, match="only whitespace"):
        read_text_file(write(tmp_path, "bom.txt", b"\xef\xbb\xbf\n"))


def test_binary_png_says_binary_not_utf8(tmp_path):
    with pytest.raises(CorpusError, match=r"^photo\.txt looks like a binary file.*NUL bytes") as info:
        read_text_file(write(tmp_path, "photo.txt", PNG_BYTES * 50))
    assert "UTF-8" not in str(info.value)


def test_binary_mostly_control_characters(tmp_path):
    data = bytes([1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 16, 65]) * 100  # no NULs, but hardly text
    with pytest.raises(CorpusError, match=r"^junk\.bin looks like a binary file.*control characters"):
        read_text_file(write(tmp_path, "junk.bin", data))


def test_a_few_control_characters_are_fine(tmp_path):
    text = "plain text with a bell \x07 and an escape \x1b[0m in it\n" * 20
    assert read_text_file(write(tmp_path, "log.txt", text)) == text


def test_utf16_says_utf16(tmp_path):
    with pytest.raises(CorpusError, match=r"^win\.txt is UTF-16 text, not UTF-8"):
        read_text_file(write(tmp_path, "win.txt", "hello world".encode("utf-16")))


def test_invalid_utf8_reports_byte_and_offset(tmp_path):
    data = b"a" * 1234 + b"\xff" + b"rest of the text"
    with pytest.raises(CorpusError) as info:
        read_text_file(write(tmp_path, "notes.txt", data))
    assert str(info.value) == (
        "notes.txt is not valid UTF-8 text: invalid byte 0xff at byte offset 1234. Save it as UTF-8 and try again."
    )


def test_invalid_utf8_offset_counts_the_bom(tmp_path):
    # Latin-1 "café" after a BOM: the bad byte 0xe9 sits at offset 3 (BOM) + 3 ("caf").
    with pytest.raises(CorpusError, match=r"invalid byte 0xe9 at byte offset 6\."):
        read_text_file(write(tmp_path, "latin.txt", b"\xef\xbb\xbfcaf\xe9 au lait"))


def test_too_large_checked_before_reading(tmp_path, monkeypatch):
    path = write(tmp_path, "big.txt", "x" * 5000)
    monkeypatch.setattr(type(path), "read_bytes", lambda self: pytest.fail("read a file over the limit"))
    with pytest.raises(CorpusError, match=r"^big\.txt is 5,000 bytes, larger than the 1,000 bytes limit"):
        read_text_file(path, max_bytes=1000)


def test_too_large_says_megabytes(tmp_path):
    path = write(tmp_path, "big.txt", "x" * (3 * 1024 * 1024))
    with pytest.raises(CorpusError, match=r"^big\.txt is 3 MB, larger than the 2 MB limit"):
        read_text_file(path, max_bytes=2 * 1024 * 1024)


def test_limit_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWLEAF_MAX_CORPUS_BYTES", "10")
    with pytest.raises(CorpusError, match="larger than the 10 bytes limit"):
        read_text_file(write(tmp_path, "a.txt", "more than ten bytes"))


def test_several_files_share_the_limit(tmp_path):
    a, b = write(tmp_path, "a.txt", "x" * 600), write(tmp_path, "b.txt", "y" * 600)
    with pytest.raises(CorpusError, match=r"Together these 2 files are 1,200 bytes"):
        load_corpus([a, b], max_bytes=1000)


def test_jsonl_malformed_line_number(tmp_path):
    good = json.dumps({"text": "fine"})
    lines = [good, "", good, '{"text": "unterminated"', good]
    with pytest.raises(CorpusError, match=r"^docs\.jsonl, line 4: not valid JSON"):
        read_text_file(write(tmp_path, "docs.jsonl", "\n".join(lines)))


def test_jsonl_missing_text_field(tmp_path):
    lines = [json.dumps({"text": "one"}), json.dumps({"body": "two"})]
    with pytest.raises(CorpusError, match=r'^docs\.jsonl, line 2: no "text" string field'):
        read_text_file(write(tmp_path, "docs.jsonl", "\n".join(lines)))


def test_jsonl_text_must_be_a_string(tmp_path):
    with pytest.raises(CorpusError, match=r'line 1: no "text" string field'):
        read_text_file(write(tmp_path, "docs.jsonl", json.dumps({"text": 42})))


def test_csv_missing_chosen_column(tmp_path):
    path = write(tmp_path, "rows.csv", "title,body\nA,first\nB,second\n")
    with pytest.raises(CorpusError, match=r"^rows\.csv has no column 'text'\. Available columns: 'title', 'body'\."):
        read_text_file(path, csv_column="text")


def test_csv_several_columns_and_no_text(tmp_path):
    path = write(tmp_path, "rows.csv", "title,body\nA,first\nB,second\n")
    with pytest.raises(CorpusError, match=r"^rows\.csv has several columns.*Available columns: 'title', 'body'\."):
        read_text_file(path)


# ---------------------------------------------------------------------------------------------------------------------
# Formats that work


def test_txt_and_md(tmp_path):
    assert read_text_file(write(tmp_path, "a.txt", "hello\nworld\n")) == "hello\nworld\n"
    assert read_text_file(write(tmp_path, "b.md", "# Title\n\nSome *text*.\n")) == "# Title\n\nSome *text*.\n"
    assert read_text_file(write(tmp_path, "c.weird", "unknown extensions are text")) == "unknown extensions are text"


def test_crlf_normalised_and_bom_stripped(tmp_path):
    assert read_text_file(write(tmp_path, "win.txt", b"\xef\xbb\xbfone\r\ntwo\r\n")) == "one\ntwo\n"


def test_jsonl(tmp_path):
    lines = [json.dumps({"text": "first doc\nline two", "id": 1}), "", "   ", json.dumps({"text": "second"})]
    assert read_text_file(write(tmp_path, "d.jsonl", "\r\n".join(lines))) == "first doc\nline two\n\nsecond"


def test_csv_text_column_skips_empty_rows(tmp_path):
    path = write(tmp_path, "r.csv", 'id,text\n1,hello\n2,\n3,"multi\nline"\n4,NA\n')
    assert read_text_file(path) == "hello\nmulti\nline\nNA"  # "NA" is text, not a missing value


def test_csv_only_column_and_chosen_column(tmp_path):
    assert read_text_file(write(tmp_path, "one.csv", "lines\nalpha\nbeta\n")) == "alpha\nbeta"
    path = write(tmp_path, "two.csv", "title,body\nA,first\nB,second\n")
    assert read_text_file(path, csv_column="body") == "first\nsecond"


def test_several_files_join(tmp_path):
    a = write(tmp_path, "a.txt", "alpha")
    b = write(tmp_path, "b.jsonl", json.dumps({"text": "beta"}))
    corpus = load_corpus([a, b])
    assert corpus == Corpus(text="alpha\n\nbeta", name="a.txt + b.jsonl", sources=[str(a), str(b)])


def test_single_path_and_custom_name(tmp_path):
    corpus = load_corpus(str(write(tmp_path, "a.txt", "alpha")), name="My corpus")
    assert (corpus.text, corpus.name) == ("alpha", "My corpus")


def test_no_files(tmp_path):
    with pytest.raises(CorpusError, match="No corpus files"):
        load_corpus([])


# ---------------------------------------------------------------------------------------------------------------------
# Statistics and split


def test_corpus_stats_on_a_known_string():
    stats = corpus_stats("hello world\nhé\n")
    assert stats["characters"] == 15
    assert stats["bytes"] == 16  # é is two bytes in UTF-8
    assert stats["lines"] == 2
    assert stats["words"] == 3
    assert stats["distinct_characters"] == 10  # h e l o ' ' w r d \n é
    assert stats["top_characters"][0] == ("l", 3)
    assert dict(stats["top_characters"]) == {
        "l": 3,
        "h": 2,
        "o": 2,
        "\n": 2,
        "e": 1,
        " ": 1,
        "w": 1,
        "r": 1,
        "d": 1,
        "é": 1,
    }
    assert stats["preview"] == "hello world\nhé\n"


def test_corpus_stats_last_line_without_newline_and_preview_cap():
    stats = corpus_stats("a\nb" + "c" * 5000)
    assert stats["lines"] == 2
    assert len(stats["preview"]) == 1000
    assert len(corpus_stats("".join(chr(0x4E00 + i) for i in range(50)))["top_characters"]) == 20


def test_split_is_90_10_with_validation_at_the_end():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))  # no newlines: the cut cannot move
    train, val = split_text(text)
    assert (len(train), len(val)) == (900, 100)
    assert train + val == text
    assert val == text[-100:]


def test_split_snaps_to_a_nearby_newline():
    text = ("word " * 19 + "end\n") * 100  # 100-character lines
    train, val = split_text(text, val_fraction=0.1)
    assert train + val == text
    assert train.endswith("\n") and abs(len(val) - len(text) // 10) <= 100


def test_split_other_fractions_and_bad_fraction():
    train, val = split_text("x" * 1000, val_fraction=0.25)
    assert len(val) == 250
    with pytest.raises(Exception, match="between 0 and 1"):
        split_text("x" * 1000, val_fraction=1.0)


def test_check_token_counts():
    check_token_counts(1000, 65, 64)  # exactly enough
    with pytest.raises(CorpusError) as info:
        check_token_counts(1000, 57, 64)
    message = str(info.value)
    assert "validation" in message and "57" in message and "64" in message
    assert "at most 56" in message and "bigger corpus" in message
    with pytest.raises(CorpusError, match=r"The training part of the corpus has only 10 tokens.*context length of 32"):
        check_token_counts(10, 1000, 32)


# ---------------------------------------------------------------------------------------------------------------------
# Token files and batches


@pytest.mark.parametrize("vocab_size, dtype", [(65, np.uint16), (65536, np.uint16), (70000, np.uint32)])
def test_tokens_round_trip(tmp_path, vocab_size, dtype):
    ids = np.random.default_rng(0).integers(0, vocab_size, size=5000)
    path = tmp_path / "train.bin"
    write_tokens(path, ids.tolist(), vocab_size)
    assert path.stat().st_size == 5000 * np.dtype(dtype).itemsize
    assert [p.name for p in tmp_path.iterdir()] == ["train.bin"]  # no temp file left behind
    tokens = open_tokens(path, vocab_size)
    assert tokens.dtype == dtype and not tokens.flags.writeable
    np.testing.assert_array_equal(tokens, ids)


def test_write_tokens_rejects_ids_outside_the_vocabulary(tmp_path):
    with pytest.raises(ValueError):
        write_tokens(tmp_path / "t.bin", [1, 2, 70000], 65536)


def test_get_batch_windows_are_shifted_contiguous_slices():
    data = np.arange(10_000, dtype=np.uint16)  # token i has value i: a window is a run of consecutive numbers
    x, y = get_batch(data, 8, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(y, x + 1)
    for row in x:
        start = int(row[0])
        assert torch.equal(row, torch.from_numpy(data[start : start + 16].astype(np.int64)))


def test_get_batch_reaches_the_end_but_not_past_it():
    data = np.arange(30, dtype=np.uint16)
    x, y = get_batch(data, 500, 10, torch.Generator().manual_seed(0))
    assert set(x[:, 0].tolist()) == set(range(20))  # every start 0..19; the last window ends on the last token
    assert int(y.max()) == 29


def test_get_batch_same_generator_state_same_batches(tmp_path):
    write_tokens(tmp_path / "t.bin", np.random.default_rng(1).integers(0, 500, 3000), 500)
    data = open_tokens(tmp_path / "t.bin", 500)
    gen = torch.Generator().manual_seed(123)
    get_batch(data, 4, 8, gen)
    state = gen.get_state()
    first = [get_batch(data, 4, 8, gen) for _ in range(3)]
    gen.set_state(state)
    again = [get_batch(data, 4, 8, gen) for _ in range(3)]
    for (x1, y1), (x2, y2) in zip(first, again):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(first[0][0], first[1][0])


def test_get_batch_too_little_data():
    with pytest.raises(CorpusError, match="context length of 8"):
        get_batch(np.arange(8), 2, 8, torch.Generator())


def test_corpus_stats_with_a_tokenizer():
    from core.tokenizer import CharTokenizer

    text = "abracadabra\n"
    stats = corpus_stats(text, CharTokenizer.from_text(text))
    assert stats["tokens"] == 12 and stats["vocab_size"] == 6 and stats["chars_per_token"] == 1.0
