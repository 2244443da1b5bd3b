"""Fine-tuning data (core/sft_data.py): formats, specific messages, truncation, storage and batches."""

import json

import pytest
import torch

from core.chat import TokenChatTemplate
from core.errors import CorpusError
from core.sft_data import Encoded, Examples, encode_conversations, load_finetune_data, write_examples
from core.tokenizer import CharTokenizer

TEMPLATE = TokenChatTemplate()
QA = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def write_jsonl(path, objs):
    path.write_text("\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs) + "\n", encoding="utf-8")
    return path


def test_the_common_shapes_become_the_same_conversations(tmp_path):
    f = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            {"messages": QA},
            {"instruction": "Hi", "output": "Hello"},
            {"instruction": "Translate", "input": "chat", "output": "cat", "system": "You translate."},
            {"prompt": "Hi", "completion": "Hello"},
            {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
            "",  # blank lines are skipped
        ],
    )
    data = load_finetune_data(f)
    assert data.kind == "chat" and len(data.conversations) == 5
    assert data.conversations[0] == data.conversations[1] == data.conversations[3] == data.conversations[4] == QA
    assert data.conversations[2] == [
        {"role": "system", "content": "You translate."},
        {"role": "user", "content": "Translate\n\nchat"},
        {"role": "assistant", "content": "cat"},
    ]
    arr = tmp_path / "alpaca.json"
    arr.write_text(json.dumps([{"instruction": "Hi", "output": "Hello"}]))
    assert load_finetune_data(arr).conversations == [QA]


def test_csv_with_prompt_and_response_columns(tmp_path):
    f = tmp_path / "qa.csv"
    f.write_text('question,answer,notes\nHi,Hello,x\n"Two, words",Yes,y\n')
    data = load_finetune_data(f)  # question / answer found by name
    assert data.kind == "chat" and data.conversations[1][0]["content"] == "Two, words"
    data = load_finetune_data(f, prompt_column="notes", response_column="answer")
    assert data.conversations[0] == [{"role": "user", "content": "x"}, {"role": "assistant", "content": "Hello"}]
    with pytest.raises(CorpusError, match="qa.csv has no column 'reply'.*'question', 'answer', 'notes'"):
        load_finetune_data(f, prompt_column="question", response_column="reply")
    f.write_text("prompt,response\nHi,Hello\nHow?,\n")
    with pytest.raises(CorpusError, match=r"qa.csv, row 3: empty response in column 'response'"):
        load_finetune_data(f)


def test_plain_text_is_continued_pretraining(tmp_path):
    (tmp_path / "notes.txt").write_text("Some plain text.\n" * 5)
    data = load_finetune_data(tmp_path / "notes.txt")
    assert data.kind == "text" and data.text.startswith("Some plain text.")
    f = write_jsonl(tmp_path / "docs.jsonl", [{"text": "one"}, {"text": "two"}])
    assert load_finetune_data(f).text == "one\n\ntwo"
    with pytest.raises(CorpusError, match="c.jsonl holds conversations but notes.txt holds plain text"):
        load_finetune_data([write_jsonl(tmp_path / "c.jsonl", [{"messages": QA}]), tmp_path / "notes.txt"])


@pytest.mark.parametrize(
    "line, fragment",
    [
        ('{"messages": [', r"bad.jsonl, line 2: not valid JSON"),
        ('{"question": "Hi", "answer": "Hello"}', r"bad.jsonl, line 2: missing fields.*'question', 'answer'"),
        ('{"instruction": "Hi"}', r'bad.jsonl, line 2: missing field "output"'),
        ('{"prompt": "Hi", "completion": 3}', r'line 2: "completion" must be a string'),
        (
            '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "  "}]}',
            r"bad.jsonl, line 2, message 2: empty assistant turn",
        ),
        ('{"messages": [{"role": "user", "content": "Hi"}]}', r"line 2: no assistant message"),
        ('{"messages": [{"role": "bot", "content": "Hi"}]}', r"line 2, message 1: unknown role 'bot'"),
        ('{"messages": [{"role": "user"}]}', r'line 2, message 1: missing field "content"'),
        ("[1, 2]", r"line 2: expected a JSON object, found list"),
        ('{"messages": [', r"bad.jsonl, line 2: not valid JSON \(Expecting value, column 15\)"),
        ('{"messages": [{"content": "Hi"}]}', r'line 2, message 1: missing field "role"'),
        ('{"messages": [{"from": "human", "value": "Hi"}]}', r'line 2, message 1: missing field "role"'),
        ('{"conversations": [{"from": ["human"], "value": "Hi"}]}', r"line 2, message 1: unknown speaker \['human'\]"),
        ('{"messages": []}', r'line 2: "messages" must be a non-empty list'),
        ('{"messages": "Hi"}', r'line 2: "messages" must be a non-empty list'),
        ('{"output": "Hello"}', r'line 2: missing field "instruction": an Alpaca-style example needs "instruction"'),
        ('{"instruction": "Hi", "output": 3}', r'line 2: "output" must be a string, not int'),
        ('{"prompt": "Hi"}', r'line 2: missing field "completion": a prompt/completion example needs both fields'),
        ('{"completion": "Hello"}', r'line 2: missing field "prompt"'),
        ("{}", r"line 2: missing fields.*\(found keys: none\)"),
        (json.dumps(dict.fromkeys("abcdefghi", 1)), r"found keys: 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'\)"),
        (
            '{"messages": [{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "a"}]}',
            r"bad.jsonl, line 2, message 1: the text holds an invalid character \(a lone surrogate, U\+D800\)",
        ),
    ],
)
def test_specific_messages_name_the_line(tmp_path, line, fragment):
    f = write_jsonl(tmp_path / "bad.jsonl", [{"messages": QA}, line])
    with pytest.raises(CorpusError, match=fragment):
        load_finetune_data(f)


def test_unknown_builtin_and_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="dataset 'nope'. Known datasets: arithmetic, arithmetic-small, shakespeare"):
        load_finetune_data("builtin:nope")
    with pytest.raises(CorpusError, match="File not found"):
        load_finetune_data(tmp_path / "nope.jsonl")


def test_a_text_field_beside_any_conversation_field_is_still_a_conversation(tmp_path):
    """The first example decides: plain text only when it has "text" and none of the conversation fields."""
    convs = {
        "messages": {"messages": QA},
        "conversations": {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
    }
    for key, obj in convs.items():
        f = write_jsonl(tmp_path / f"{key}.jsonl", [{"text": "t", **obj}])
        assert load_finetune_data(f).conversations == [QA], key
    halves = {"instruction": "output", "output": "instruction", "prompt": "completion", "completion": "prompt"}
    for key, missing in halves.items():
        f = write_jsonl(tmp_path / f"{key}.jsonl", [{"text": "t", key: "x"}])
        with pytest.raises(CorpusError, match=f'line 1: missing field "{missing}"'):
            load_finetune_data(f)
    f = write_jsonl(tmp_path / "neither.jsonl", [{"question": "Hi", "answer": "Hello"}])
    with pytest.raises(CorpusError, match="line 1: missing fields"):
        load_finetune_data(f)
    arr = tmp_path / "docs.json"
    arr.write_text(json.dumps([{"text": "one"}]))
    with pytest.raises(CorpusError, match='docs.json: plain text goes in a .jsonl file with a "text" field'):
        load_finetune_data(arr)
    arr.write_text(json.dumps([{"messages": QA}, {"prompt": "Hi"}]))
    with pytest.raises(CorpusError, match='docs.json, item 2: missing field "completion"'):
        load_finetune_data(arr)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(CorpusError, match="empty.jsonl is empty .*some data in it"):
        load_finetune_data(tmp_path / "empty.jsonl")
    gap = write_jsonl(tmp_path / "gap.jsonl", [{"messages": QA}, "", {"prompt": "Hi", "completion": "Hello"}])
    assert load_finetune_data(gap).conversations == [QA, QA]  # a blank line in the middle is skipped, not the end


def test_a_system_field_is_used_only_where_the_messages_cannot_hold_one(tmp_path):
    system = {"role": "system", "content": "Be brief."}
    f = write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"system": "Be brief.", "messages": QA},
            {
                "system": "Be brief.",
                "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
            },
            {"system": "Be brief.", "prompt": "Hi", "completion": "Hello"},
        ],
    )
    assert load_finetune_data(f).conversations == [QA, QA, [system, *QA]]


def test_several_files_are_named_joined_and_limited_together(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("A" * 10)
    b.write_text("B" * 10)
    both = load_finetune_data([a, b], max_bytes=20)  # exactly at the limit: fine
    assert (both.kind, both.name, both.sources, both.text) == (
        "text",
        "a.txt + b.txt",
        [str(a), str(b)],
        "A" * 10 + "\n\n" + "B" * 10,
    )
    with pytest.raises(CorpusError, match="Together these 2 files are 20 bytes, larger than the 19 bytes limit"):
        load_finetune_data([a, b], max_bytes=19)
    with pytest.raises(CorpusError, match="a.txt is 10 bytes, larger than the 9 bytes limit"):
        load_finetune_data(a, max_bytes=9)  # one file: its own message
    c = write_jsonl(tmp_path / "c.jsonl", [{"messages": QA}])
    d = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "Hi", "completion": "Hello"}])
    chats = load_finetune_data([c, d])
    assert (chats.kind, chats.name, chats.sources, chats.conversations) == (
        "chat",
        "c.jsonl + d.jsonl",
        [str(c), str(d)],
        [QA, QA],
    )
    with pytest.raises(CorpusError, match="cannot be combined"):
        load_finetune_data(["builtin:arithmetic-small", str(c)])
    task = load_finetune_data("builtin:arithmetic-small")
    assert task.kind == "chat" and task.name == "One-digit addition" and len(task.held_out) == 20


def test_csv_columns_found_chosen_or_refused(tmp_path):
    f = tmp_path / "notes.csv"
    f.write_text("title,body\nOne,first body\nTwo,second body\n")
    assert load_finetune_data(f, csv_column="body").text == "first body\nsecond body"  # no pair: plain text
    f.write_text("prompt,body\nHi,first body\n")  # a prompt without a response column is no pair
    assert load_finetune_data(f, csv_column="body").kind == "text"
    f.write_text("question,answer,body\nHi,Hello,x\n")
    assert load_finetune_data(f, csv_column="body").text == "x"  # a column asked for: plain text, even with a pair
    for given in (dict(prompt_column="question"), dict(response_column="answer")):
        with pytest.raises(CorpusError, match="notes.csv: choose both a prompt column and a response column"):
            load_finetune_data(f, **given)
    f.write_text('question,answer\n,Hello\n"a, b",c\n')
    assert load_finetune_data(f).conversations[0][0] == {"role": "user", "content": ""}  # an empty prompt cell
    both = load_finetune_data([f, write_jsonl(tmp_path / "more.jsonl", [{"messages": QA}])])  # CSV pairs are chat
    assert both.kind == "chat" and len(both.conversations) == 3
    f.write_text('question,answer\n"unclosed,Hello\n')
    with pytest.raises(CorpusError, match="notes.csv"):
        load_finetune_data(f)


# ----------------------------------------------------------------------------------------------------------
# Encoding, storage, batches


def tokenizer_for(convs):
    tok = CharTokenizer.from_text("".join(m["content"] for c in convs for m in c))
    tok.add_special_tokens(TEMPLATE.markers)
    return tok


def test_examples_longer_than_the_context_are_truncated_or_dropped_and_counted():
    short = QA
    long_reply = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello " * 10}]
    long_prompt = [{"role": "user", "content": "Hi " * 20}, {"role": "assistant", "content": "Hello"}]
    convs = [short, long_reply, long_prompt]
    tok = tokenizer_for(convs)
    cut = encode_conversations(convs, tok, TEMPLATE, block_size=16, too_long="truncate")
    assert (cut.truncated, cut.dropped, len(cut.ids)) == (1, 1, 2)  # the long prompt leaves no reply: dropped
    assert all(len(ids) <= 17 for ids in cut.ids)
    assert str(cut.report(16, "truncate", "training")) == (
        "2 of 3 training examples were longer than the context of 16 "
        "tokens: 1 truncated to fit, 1 dropped (no reply left after "
        "truncation)."
    )
    drop = encode_conversations(convs, tok, TEMPLATE, block_size=16, too_long="drop")
    assert (drop.truncated, drop.dropped, drop.kept_indices) == (0, 2, [0])
    assert "2 dropped (longer than the context)" in str(drop.report(16, "drop", "training"))


def test_the_context_boundary_and_the_counts_of_what_did_not_fit():
    """block_size + 1 tokens fit whole; each truncated and each dropped example is counted, and a dropped one does
    not stop the examples after it; a cut that leaves one reply token keeps the example."""
    reply_first = [{"role": "assistant", "content": "abcdefgh"}]  # <|assistant|> a b c d e f g h <|end|>: 10 tokens
    no_reply = [{"role": "user", "content": "abcdefgh"}, {"role": "assistant", "content": "a"}]
    tok = tokenizer_for([reply_first])
    whole = encode_conversations([reply_first], tok, TEMPLATE, block_size=9)
    assert (whole.truncated, whole.dropped, [len(i) for i in whole.ids]) == (0, 0, [10])
    assert whole.report(9, "truncate", "training") is None
    cut = encode_conversations([no_reply, reply_first, no_reply, reply_first], tok, TEMPLATE, block_size=8)
    assert (cut.truncated, cut.dropped, cut.kept_indices) == (2, 2, [1, 3])
    assert [len(i) for i in cut.ids] == [9, 9] and cut.masks[0] == [False] + [True] * 8
    assert str(cut.report(8, "truncate", "training")).endswith(
        ": 2 truncated to fit, 2 dropped (no reply left after truncation)."
    )
    one = encode_conversations([reply_first], tok, TEMPLATE, block_size=1)  # <|assistant|> a: one token to learn
    assert (one.truncated, one.dropped, one.ids) == (1, 0, [[tok.special_tokens["<|assistant|>"], tok.encode("a")[0]]])
    assert str(one.report(1, "truncate", "fine-tuning")) == (
        "1 of 1 fine-tuning examples were longer than the context of 1 tokens: 1 truncated to fit."
    )


def test_stored_examples_are_checked_on_the_way_in_and_out(tmp_path):
    tok = tokenizer_for([QA])
    enc = encode_conversations([QA], tok, TEMPLATE, block_size=16)
    nested = tmp_path / "a" / "b"
    write_examples(nested, "train", enc, tok.vocab_size)  # the folders are made
    # the run directory's format: a run written before must stay readable
    assert sorted(p.name for p in nested.iterdir()) == [
        "sft-train.ids.bin",
        "sft-train.mask.bin",
        "sft-train.offsets.bin",
    ]
    one = Examples(nested, "train", tok.vocab_size)  # a single example is a whole split
    assert len(one) == 1 and one.example(0)[0].tolist() == enc.ids[0]
    for bad in ([[0, tok.vocab_size]], [[-1, 0]]):
        with pytest.raises(ValueError, match="token ids must lie in"):
            write_examples(tmp_path / "bad", "train", Encoded(bad, [[False, True]]), tok.vocab_size)
    ids, mask = nested / "sft-train.ids.bin", nested / "sft-train.mask.bin"
    whole_ids, whole_mask = ids.read_bytes(), mask.read_bytes()
    mask.write_bytes(whole_mask[:-1])  # the mask one short of the ids
    with pytest.raises(CorpusError, match="is corrupt"):
        Examples(nested, "train", tok.vocab_size)
    ids.write_bytes(whole_ids[: -len(whole_ids) // len(whole_mask)])  # both one token short of the offsets
    with pytest.raises(CorpusError, match="is corrupt"):
        Examples(nested, "train", tok.vocab_size)


def test_batches_pad_with_no_loss_and_learn_only_the_replies(tmp_path):
    convs = [
        QA,
        [
            {"role": "system", "content": "Be kind"},
            *QA,
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Bye now"},
        ],
    ]
    tok = tokenizer_for(convs)
    enc = encode_conversations(convs, tok, TEMPLATE, block_size=64)
    write_examples(tmp_path, "train", enc, tok.vocab_size)
    ex = Examples(tmp_path, "train", tok.vocab_size)
    assert len(ex) == 2 and ex.example(1)[0].tolist() == enc.ids[1]
    x, y = ex.batch([0, 1])
    assert x.shape == y.shape == (2, len(enc.ids[1]) - 1)  # padded to the longest example
    end = tok.special_tokens["<|end|>"]
    for row, ids in enumerate(enc.ids):
        learned = [t for t in y[row].tolist() if t != -1]
        replies = [m["content"] for m in convs[row] if m["role"] == "assistant"]
        assert learned == [t for r in replies for t in tok.encode(r) + [end]]
        assert x[row, : len(ids) - 1].tolist() == ids[:-1]
    assert (y[0, len(enc.ids[0]) - 1 :] == -1).all()  # padding
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(ex.random_batch(4, g1), ex.random_batch(4, g2)))


def test_the_validation_loss_is_the_mean_over_every_reply_token_not_a_mean_of_batch_means(tmp_path):
    """Batches of 2 with very different numbers of reply tokens: a mean of the batches' means would weigh the
    one short reply as much as all the long ones."""
    from core.model import GPT, GPTConfig
    from core.run_data import sft_loss

    convs = [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a" * n}] for n in (1, 30, 25, 2, 9)]
    tok = tokenizer_for(convs)
    enc = encode_conversations(convs, tok, TEMPLATE, block_size=64)
    write_examples(tmp_path, "val", enc, tok.vocab_size)
    ex = Examples(tmp_path, "val", tok.vocab_size)
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=tok.vocab_size))
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(len(ex)):  # one example at a time: sum of token losses / number of reply tokens
            x, y = ex.batch([i])
            logits, _ = model(x)
            losses = torch.nn.functional.cross_entropy(logits[0], y[0], ignore_index=-1, reduction="sum")
            total, count = total + losses.item(), count + int((y != -1).sum())
    assert abs(sft_loss(model, ex, batch_size=2, max_examples=5, device=torch.device("cpu")) - total / count) < 1e-5
    assert model.training  # left as it was found
