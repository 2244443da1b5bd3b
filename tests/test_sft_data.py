"""Fine-tuning data (core/sft_data.py): formats, specific messages, truncation, storage and batches."""

import json

import pytest
import torch

from core.chat import TokenChatTemplate
from core.errors import CorpusError
from core.sft_data import Examples, encode_conversations, load_finetune_data, write_examples
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
    with pytest.raises(CorpusError, match="no column 'reply'.*'question', 'answer', 'notes'"):
        load_finetune_data(f, prompt_column="question", response_column="reply")
    f.write_text("prompt,response\nHi,Hello\nHow?,\n")
    with pytest.raises(CorpusError, match=r"qa.csv, row 3: empty response"):
        load_finetune_data(f)


def test_plain_text_is_continued_pretraining(tmp_path):
    (tmp_path / "notes.txt").write_text("Some plain text.\n" * 5)
    data = load_finetune_data(tmp_path / "notes.txt")
    assert data.kind == "text" and data.text.startswith("Some plain text.")
    f = write_jsonl(tmp_path / "docs.jsonl", [{"text": "one"}, {"text": "two"}])
    assert load_finetune_data(f).text == "one\n\ntwo"
    with pytest.raises(CorpusError, match="holds conversations but notes.txt holds plain text"):
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
    ],
)
def test_specific_messages_name_the_line(tmp_path, line, fragment):
    f = write_jsonl(tmp_path / "bad.jsonl", [{"messages": QA}, line])
    with pytest.raises(CorpusError, match=fragment):
        load_finetune_data(f)


def test_unknown_builtin_and_missing_file(tmp_path):
    with pytest.raises(CorpusError, match="Known datasets: arithmetic"):
        load_finetune_data("builtin:nope")
    with pytest.raises(CorpusError, match="File not found"):
        load_finetune_data(tmp_path / "nope.jsonl")


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
