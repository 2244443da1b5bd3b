"""Bad input, fuzzed with hypothesis: corpus and dataset parsers (txt, md, jsonl, csv, chat formats), the tokenizer
loader, the checkpoint loaders and the Hugging Face importer get random bytes, truncated files, huge lines, wrong
types, deeply nested JSON, invalid UTF-8, zero-width and right-to-left characters.

Every case must end in success or a NewleafError with a message (what the app shows the user) -- never another
exception, which the app would report as "Something went wrong", and never a hang. Successful text must be real
Unicode (no lone surrogates), so that what loads can also be tokenized and saved.
"""

from __future__ import annotations

import base64
import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from safetensors.torch import save_file

from core import files, hf, runs
from core.data import load_corpus, read_text_file
from core.errors import NewleafError
from core.sft_data import load_finetune_data
from core.tokenizer import load_tokenizer
from tests.reliability.helpers import fuzz, no_hang, trained_run

# ----------------------------------------------------------------------------------------------------------
# Strategies

# zero-width, right-to-left and bidi controls, a combining accent, NUL, a BOM, quotes and JSON/CSV syntax
WEIRD = list(
    "\u200b\u200c\u200d\u2060\ufeff\u202e\u202d\u2066\u2069\u200f\u200e\u061c\u0301\x00\r\n\t\"',{}[]:\\ é東🙂"
) + ["\u05e9\u05dc\u05d5\u05dd", "مرحبا", "<|user|>", "<|endoftext|>"]
text = st.lists(st.characters(codec="utf-8") | st.sampled_from(WEIRD), max_size=30).map("".join)
KEYS = [
    "text",
    "messages",
    "conversations",
    "role",
    "content",
    "from",
    "value",
    "instruction",
    "input",
    "output",
    "prompt",
    "completion",
    "system",
    "kind",
    "chars",
    "special_tokens",
    "pattern",
    "vocab_size",
    "requested_vocab_size",
    "name",
    "dir",
    "step",
    "model",
    "n_layer",
    "n_head",
    "n_embd",
    "block_size",
    "user",
    "assistant",
    "human",
    "gpt",
]
scalars = st.none() | st.booleans() | st.integers(-3, 300) | st.integers() | st.floats() | text | st.sampled_from(KEYS)
json_values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | text, c, max_size=5),
    max_leaves=25,
)


def deep(n: int) -> bytes:
    return b'{"text": ' + b"[" * n + b"]" * n + b"}"


SPECIAL_LINES = [
    deep(50),
    deep(5000),
    deep(100_000),  # nested deeper than Python's recursion limit
    b'{"text": ' + b"1" * 5000 + b"}",  # an integer too long for int()
    b'{"text": "\\ud800 lone surrogate"}',  # JSON's spelling of a non-character
    b'{"text": "' + b"a" * 300_000 + b'"}',  # a huge line
    b"\xff\xfe\x00\x01",
    b"\xc3\x28",
    b"\xed\xa0\x80",  # invalid UTF-8
    b"\xef\xbb\xbf" + b'{"text": "bom"}',  # a byte-order mark
    b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\\u202eolleh"}]}',
    b'{"conversations": [{"from": ["list"], "value": "x"}]}',
    b'{"instruction": {"a": 1}, "output": "x"}',
    b'{"prompt": "p", "completion": ""}',
    b'{"text": "ok"}',
    b'text,prompt,response\n"unterminated,x,y',
    b'"""',
]


@st.composite
def line(draw) -> bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return json.dumps(draw(json_values), ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    if kind == 1:
        raw = json.dumps(draw(json_values)).encode("utf-8", "surrogatepass")
        return raw[: draw(st.integers(0, len(raw)))]  # truncated
    if kind == 2:
        return draw(st.binary(max_size=40))
    if kind == 3:
        return draw(st.sampled_from(SPECIAL_LINES))
    if kind == 4:  # a CSV row
        cells = draw(st.lists(text | st.sampled_from(KEYS), min_size=1, max_size=4))
        quote = draw(st.booleans())
        return ",".join(f'"{c}"' if quote else c for c in cells).encode("utf-8", "surrogatepass")
    return draw(text).encode("utf-8", "surrogatepass")


@st.composite
def document(draw) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=300))
    return draw(st.sampled_from([b"\n", b"\r\n"])).join(draw(st.lists(line(), max_size=8)))


# ----------------------------------------------------------------------------------------------------------
# The allowed outcomes


def outcome(fn, *args, **kwargs):
    """Call fn: a result, or None after a NewleafError with a message. Anything else fails the test."""
    with no_hang():
        try:
            return fn(*args, **kwargs)
        except NewleafError as e:
            assert str(e).strip(), f"{type(e).__name__} with an empty message"
            return None


def real_text(s: str) -> None:
    assert isinstance(s, str) and s.strip()
    s.encode("utf-8")  # no lone surrogates


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------------------------------------
# Corpora and fine-tuning data


@fuzz(150)
@given(
    data=document(),
    suffix=st.sampled_from([".txt", ".md", ".jsonl", ".csv", ".JSONL"]),
    column=st.none() | st.sampled_from(["text", "prompt", "nope"]) | text,
)
@example(data=b"text\n" + b"x" * 200_000 + b"\n", suffix=".csv", column=None)
@example(data=b'\xef\xbb\xbf{"text": "\\u200b\\u202e"}\n', suffix=".jsonl", column=None)
def test_corpus_parsers(scratch, data, suffix, column):
    path = write(scratch, f"corpus{suffix}", data)
    result = outcome(read_text_file, path, csv_column=column, max_bytes=1_000_000)
    if result is not None:
        real_text(result)
    corpus = outcome(load_corpus, [path, path], csv_column=column, max_bytes=2_000_000)
    if corpus is not None:
        real_text(corpus.text)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".txt"])
@pytest.mark.parametrize("special", SPECIAL_LINES, ids=range(len(SPECIAL_LINES)))
def test_every_special_line_in_every_format(scratch, suffix, special):
    path = write(scratch, f"special{suffix}", special + b"\n")
    for fn in (read_text_file, load_finetune_data):
        result = outcome(fn, path)
        if isinstance(result, str):
            real_text(result)


@st.composite
def chat_record(draw):
    """Near-valid examples of every accepted shape, with wrong types and missing fields mixed in."""
    content = text | json_values
    message = st.fixed_dictionaries(
        {},
        optional={
            "role": st.sampled_from(["user", "assistant", "system", "bot"]) | json_values,
            "content": content,
            "from": st.sampled_from(["human", "gpt", "x"]) | json_values,
            "value": content,
        },
    )
    shapes = [
        st.fixed_dictionaries({"messages": st.lists(message, max_size=4) | json_values}),
        st.fixed_dictionaries({"conversations": st.lists(message, max_size=4)}),
        st.fixed_dictionaries(
            {}, optional={"instruction": content, "input": content, "output": content, "system": content}
        ),
        st.fixed_dictionaries({}, optional={"prompt": content, "completion": content, "system": content}),
        st.fixed_dictionaries({"text": content}),
        json_values,
    ]
    return draw(st.one_of(shapes))


@fuzz(150)
@given(
    records=st.lists(chat_record(), max_size=6),
    suffix=st.sampled_from([".jsonl", ".json", ".csv"]),
    mutate=st.integers(0, 3),
    cut=st.integers(0, 10**6),
    noise=line(),
)
def test_finetune_parsers(scratch, records, suffix, mutate, cut, noise):
    if suffix == ".json":
        data = json.dumps(records).encode("utf-8", "surrogatepass")
    elif suffix == ".jsonl":
        data = b"\n".join(json.dumps(r).encode("utf-8", "surrogatepass") for r in records)
    else:
        rows = [["prompt", "response"]] + [[str(r)[:40], str(r)[40:80]] for r in records]
        data = "\n".join(",".join(json.dumps(c) for c in row) for row in rows).encode("utf-8", "surrogatepass")
    if mutate == 1:
        data = data[: cut % (len(data) + 1)]
    elif mutate == 2:
        data = data + b"\n" + noise
    path = write(scratch, f"chat{suffix}", data)
    result = outcome(load_finetune_data, path, max_bytes=1_000_000)
    if result is not None:
        if result.kind == "text":
            real_text(result.text)
        for conversation in result.conversations:
            for m in conversation:
                assert m["role"] in ("system", "user", "assistant")
                m["content"].encode("utf-8")
    outcome(load_finetune_data, [path, path], prompt_column="prompt", response_column="response", max_bytes=2_000_000)


# ----------------------------------------------------------------------------------------------------------
# Tokenizers


ASCII_RANKS = {bytes([b]): b for b in range(256)}
PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]"""
    r"""|\s+(?!\S)|\s+"""
)  # GPT-4's split pattern, as a trained BPE saves it


@st.composite
def tokenizer_files(draw):
    kind = draw(st.sampled_from(["char", "bpe", "gpt2", "other"]) | json_values)
    config = {"kind": kind}
    if draw(st.booleans()):
        config["chars"] = draw(
            st.lists(st.sampled_from(list("abc \n") + WEIRD) | json_values, max_size=8) | json_values
        )
    if draw(st.booleans()):
        config.update(
            pattern=draw(st.sampled_from([PATTERN, r"\w+|\s+", "(", "[a-"]) | text),
            vocab_size=draw(st.integers(250, 262) | json_values),
            requested_vocab_size=draw(st.integers(0, 300) | json_values),
            name=draw(st.none() | text | json_values),
        )
    if draw(st.booleans()):
        config["special_tokens"] = draw(
            st.dictionaries(text, st.integers(0, 300) | json_values, max_size=3) | json_values
        )
    if draw(st.integers(0, 5)) == 0:
        config = draw(json_values)
    raw = json.dumps(config).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 5)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    ranks = dict(ASCII_RANKS)
    extra = draw(st.lists(st.binary(min_size=2, max_size=4), max_size=4, unique=True))
    for token in extra:
        ranks.setdefault(token, len(ranks))
    lines = [base64.b64encode(t) + b" %d" % r for t, r in ranks.items()]
    mode = draw(st.integers(0, 4))
    if mode == 1:
        lines = lines[: draw(st.integers(0, len(lines)))]
    elif mode == 2:
        lines.insert(draw(st.integers(0, len(lines))), draw(line()))
    elif mode == 3:
        lines[draw(st.integers(0, len(lines) - 1))] = b"@@@ 12"
    return raw, b"\n".join(lines)


@fuzz(150)
@given(files=tokenizer_files())
@example(files=(b'{"kind": "char", "chars": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b""))
@example(files=(b'{"kind": "char", "chars": ["a"], "special_tokens": {"x": ' + b"9" * 5000 + b"}}", b""))
def test_tokenizer_loader(scratch, files):
    folder = scratch / "tok"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    write(folder, "tokenizer.json", files[0])
    write(folder, "tokenizer.bpe", files[1])
    tok = outcome(load_tokenizer, folder)
    if tok is not None:
        ids = outcome(tok.encode, "abc Hello 東京 \u202e\u200b")
        if ids is not None:
            outcome(tok.decode, ids)
        outcome(tok.decode, [0, tok.vocab_size - 1])


# ----------------------------------------------------------------------------------------------------------
# Checkpoints


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory.mktemp("fuzz-run") / "good", max_steps=3, eval_every=3)


def safetensors_bytes(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


@st.composite
def crafted_safetensors(draw) -> bytes:
    tensors = {}
    for _ in range(draw(st.integers(0, 3))):
        name = draw(st.sampled_from(["transformer.wte.weight", "transformer.wpe.weight", "x"]) | text)
        tensors[name] = {
            "dtype": draw(
                st.sampled_from(
                    ["F32", "F16", "BF16", "I64", "U8", "BOOL", "F64", "I8", "F8_E4M3", "U64", "C64", "XYZ"]
                )
                | json_values
            ),
            "shape": draw(st.lists(st.integers(-1, 70), max_size=3) | json_values),
            "data_offsets": draw(
                st.lists(st.integers(-1, 10**6) | st.integers(), min_size=2, max_size=2) | json_values
            ),
        }
    if draw(st.booleans()):
        tensors["__metadata__"] = draw(json_values)
    return safetensors_bytes(tensors, draw(st.binary(max_size=400)))


TARGETS = [
    "config.json",
    "tokenizer.json",
    "checkpoints/last.json",
    "checkpoints/best.json",
    "meta.json",
    "model.safetensors",
    "trainer.safetensors",
]


@fuzz(120)
@given(
    target=st.sampled_from(TARGETS),
    how=st.integers(0, 4),
    cut=st.integers(0, 10**7),
    noise=document(),
    value=json_values,
    crafted=crafted_safetensors(),
)
def test_checkpoint_loaders(good_run, tmp_path_factory, target, how, cut, noise, value, crafted):
    run = tmp_path_factory.mktemp("ck") / "run"
    shutil.copytree(good_run, run, ignore=shutil.ignore_patterns("data"))
    ck = runs.checkpoint_dir(run, "last")
    path = ck / target if target in ("meta.json", "model.safetensors", "trainer.safetensors") else run / target
    original = path.read_bytes()
    if how == 0:
        path.write_bytes(original[: cut % (len(original) + 1)])  # truncated
    elif how == 1:
        path.write_bytes(noise)  # random bytes / lines
    elif how == 2:
        path.write_bytes(json.dumps(value).encode("utf-8", "surrogatepass"))  # the wrong JSON
    elif how == 3:
        path.write_bytes(crafted)  # a hand-made safetensors header
    else:  # one field of the JSON changed
        try:
            doc = json.loads(original)
            key = sorted(doc)[cut % len(doc)] if isinstance(doc, dict) and doc else None
            if key is not None:
                doc[key] = value
            path.write_text(json.dumps(doc))
        except (ValueError, UnicodeDecodeError):
            path.write_bytes(original[::-1])
    for which in ("last", "best"):
        loaded = outcome(runs.load_model, run, which)
        if loaded is not None:
            model, tok = loaded
            assert model.config.vocab_size == tok.vocab_size
    outcome(runs.checkpoint_dir, run, "last")
    outcome(runs.checkpoint_meta, run, "best")
    outcome(files.read_json, path)
    outcome(runs.read_config, run)
    outcome(runs.load_tensors, path if path.suffix == ".safetensors" else ck / "model.safetensors")


@pytest.mark.parametrize("payload", [b"", b"{}", b"[]", b"null", b'"x"', b"1" * 5000, deep(100_000), b"\xff"])
def test_json_readers_on_hostile_json(tmp_path, payload):
    path = tmp_path / "x.json"
    path.write_bytes(payload)
    outcome(files.read_json, path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.json").write_bytes(payload)
    outcome(runs.checkpoint_dir, tmp_path, "last")
    outcome(files.read_json, tmp_path)  # a folder where a file should be


# ----------------------------------------------------------------------------------------------------------
# Hugging Face folders


GPT2_NAMES = [
    "wte.weight",
    "wpe.weight",
    "ln_f.weight",
    "ln_f.bias",
    "h.0.ln_1.weight",
    "h.0.ln_1.bias",
    "h.0.attn.c_attn.weight",
    "h.0.attn.c_attn.bias",
    "h.0.attn.c_proj.weight",
    "h.0.attn.c_proj.bias",
    "h.0.ln_2.weight",
    "h.0.ln_2.bias",
    "h.0.mlp.c_fc.weight",
    "h.0.mlp.c_fc.bias",
    "h.0.mlp.c_proj.weight",
    "h.0.mlp.c_proj.bias",
    "lm_head.weight",
    "h.0.attn.bias",
]


@st.composite
def hf_folder(draw):
    config = {"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 8, "n_positions": 16, "vocab_size": 11}
    for key in draw(
        st.lists(
            st.sampled_from(
                [
                    "model_type",
                    "n_layer",
                    "n_head",
                    "n_embd",
                    "n_positions",
                    "vocab_size",
                    "n_ctx",
                    "activation_function",
                    "layer_norm_epsilon",
                    "n_inner",
                    "resid_pdrop",
                    "scale_attn_weights",
                ]
            ),
            max_size=3,
        )
    ):
        config[key] = draw(json_values | st.integers(0, 10**12))
    if draw(st.integers(0, 6)) == 0:
        config = draw(json_values)
    shapes = {
        "wte.weight": (11, 8),
        "wpe.weight": (16, 8),
        "h.0.attn.c_attn.weight": (8, 24),
        "h.0.attn.c_attn.bias": (24,),
        "h.0.attn.c_proj.weight": (8, 8),
        "h.0.mlp.c_fc.weight": (8, 32),
        "h.0.mlp.c_fc.bias": (32,),
        "h.0.mlp.c_proj.weight": (32, 8),
        "lm_head.weight": (11, 8),
    }
    tensors = {}
    for name in GPT2_NAMES:
        if draw(st.integers(0, 9)) == 0:
            continue
        shape = shapes.get(name, (8,))
        if draw(st.integers(0, 9)) == 0:
            shape = tuple(draw(st.lists(st.integers(0, 5), max_size=4)))
        dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool, torch.float32]))
        tensors[name] = torch.zeros(shape, dtype=dtype)
    index = None
    if draw(st.integers(0, 3)) == 0:
        index = {
            "weight_map": draw(
                st.dictionaries(
                    text,
                    st.sampled_from(["model.safetensors", "../x.safetensors", "pytorch_model.bin"]) | json_values,
                    max_size=3,
                )
                | json_values
            )
        }
    return config, tensors, index, draw(st.booleans())


@fuzz(100)
@given(spec=hf_folder())
def test_hf_import_of_random_folders(scratch, spec):
    config, tensors, index, single = spec
    folder = scratch / "hf"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    save_file(tensors, str(folder / ("model.safetensors" if single else "shard.safetensors")))
    if index is not None:
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    loaded = outcome(hf.load_hf_model, folder)
    if loaded is not None:
        model, _ = loaded
        assert model.config.n_embd == 8
