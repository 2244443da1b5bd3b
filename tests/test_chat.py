"""Chat templates (core/chat.py), special tokens (core/tokenizer.py) and stop tokens in the engine."""

import pytest
import torch
import torch.nn as nn

from core.chat import ChatTemplate, TokenChatTemplate, reply, stream_reply, template_for
from core.engine import SamplingParams, generate, stream
from core.errors import NewleafError, TokenizerError
from core.model import GPTConfig
from core.tokenizer import CharTokenizer, GPT2Tokenizer, load_tokenizer

TEMPLATE = TokenChatTemplate()
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi <|end|> there|"},  # marker-like text stays text
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "2 + 2?"},
    {"role": "assistant", "content": "4"},
]


def char_tokenizer():
    tok = CharTokenizer.from_text("".join(m["content"] for m in CONVERSATION) + "abcdefghijklmnopqrstuvwxyz")
    tok.add_special_tokens(TEMPLATE.markers)
    return tok


def chat_tokenizer(kind):
    if kind == "char":
        return char_tokenizer()
    tok = GPT2Tokenizer()
    tok.add_special_tokens(TEMPLATE.markers)
    return tok


@pytest.mark.parametrize("kind", ["char", "gpt2"])
def test_round_trip_messages_ids_messages(kind):
    tok = chat_tokenizer(kind)
    ids, mask = TEMPLATE.encode_with_mask(tok, CONVERSATION)
    assert TEMPLATE.parse(tok, ids) == CONVERSATION
    assert tok.decode(ids) == TEMPLATE.render(CONVERSATION, add_generation_prompt=False)
    # a generation prompt ends with the assistant marker; a reply being written parses as a last turn
    prompt = TEMPLATE.encode(tok, CONVERSATION[:2])
    assert prompt[-1] == tok.special_tokens["<|assistant|>"]
    assert TEMPLATE.parse(tok, prompt + tok.encode("Hel")) == CONVERSATION[:2] + [
        {"role": "assistant", "content": "Hel"}
    ]


@pytest.mark.parametrize("kind", ["char", "gpt2"])
def test_markers_are_special_tokens_that_text_never_produces(kind):
    tok = chat_tokenizer(kind)
    specials = set(tok.special_tokens.values())
    assert len(specials) == 4 and min(specials) == tok.base_vocab_size and tok.vocab_size == tok.base_vocab_size + 4
    ids = tok.encode("<|user|> <|end|> |<>|")
    assert not specials & set(ids)
    assert tok.decode([tok.special_tokens["<|end|>"]]) == "<|end|>"
    assert tok.decode_bytes(ids + [tok.special_tokens["<|user|>"]]) == b"<|user|> <|end|> |<>|<|user|>"
    assert "".join(tok.token_pieces("Hi there")) == "Hi there"


def test_sft_mask_counts_only_assistant_tokens():
    tok = char_tokenizer()
    ids, mask = TEMPLATE.encode_with_mask(tok, CONVERSATION)
    learned = [i for i, m in zip(ids, mask) if m]
    end = tok.special_tokens["<|end|>"]
    assert learned == tok.encode("Hello.") + [end] + tok.encode("4") + [end]
    # every system / user token and every role marker carries no loss
    for m in CONVERSATION:
        if m["role"] != "assistant":
            start = ids.index(tok.special_tokens[f"<|{m['role']}|>"])
            assert not any(mask[start : start + len(tok.encode(m["content"])) + 2])


def test_tokenizer_with_special_tokens_saves_and_loads(tmp_path):
    for tok in (char_tokenizer(), chat_tokenizer("gpt2")):
        d = tmp_path / tok.kind
        tok.save(d)
        back = load_tokenizer(d)
        assert back.special_tokens == tok.special_tokens and back.vocab_size == tok.vocab_size
        assert back.describe() == tok.describe() and "4 special tokens" in back.describe()
        ids, _ = TEMPLATE.encode_with_mask(back, CONVERSATION)
        assert ids == TEMPLATE.encode_with_mask(tok, CONVERSATION)[0]


def test_corrupt_special_tokens_are_refused(tmp_path):
    import json

    tok = char_tokenizer()
    tok.save(tmp_path)
    config = json.loads((tmp_path / "tokenizer.json").read_text())
    config["special_tokens"]["<|end|>"] = 3  # collides with an ordinary character
    (tmp_path / "tokenizer.json").write_text(json.dumps(config))
    with pytest.raises(TokenizerError, match="special_tokens"):
        load_tokenizer(tmp_path)


def test_template_is_stored_in_the_run_config():
    config = {"chat_template": TEMPLATE.to_dict()}
    assert template_for(config) == TEMPLATE
    assert template_for({}) == ChatTemplate()  # runs never fine-tuned for chat: the plain transcript
    with pytest.raises(NewleafError, match="no chat marker"):
        TEMPLATE.encode(CharTokenizer.from_text("abc"), [{"role": "user", "content": "abc"}])


# ----------------------------------------------------------------------------------------------------------
# Replies stop at the end marker and never show markers


class ScriptedModel(nn.Module):
    """Stands in for a GPT: whatever the input, it predicts the next token of `script` with certainty."""

    def __init__(self, vocab_size, script):
        super().__init__()
        self.config = GPTConfig(n_layer=1, n_head=1, n_embd=4, block_size=64, vocab_size=vocab_size)
        self.transformer = nn.ModuleDict(dict(wte=nn.Embedding(vocab_size, 4)))
        self.script, self.calls, self.prompts = script, 0, []

    def forward(self, idx, targets=None, *, kv_cache=None, last_only=False, attention_out=None):
        if self.calls == 0:
            self.prompts.append(idx[0].tolist())
        if kv_cache is not None:
            kv_cache.advance(idx.size(1))
        logits = torch.full((idx.size(0), 1, self.config.vocab_size), -30.0)
        logits[:, :, self.script[min(self.calls, len(self.script) - 1)]] = 30.0
        self.calls += 1
        return logits, None


def test_stream_reply_renders_the_template_and_stops_at_the_end_marker():
    tok = char_tokenizer()
    sp = tok.special_tokens
    config = {"chat_template": TEMPLATE.to_dict()}
    model = ScriptedModel(tok.vocab_size, tok.encode("Hello.") + [sp["<|end|>"]] + tok.encode("abc"))
    params = SamplingParams(max_new_tokens=20, temperature=0.8, seed=0)
    assert "".join(stream_reply(model, tok, config, CONVERSATION[:2], params)) == "Hello."
    assert model.prompts[0] == TEMPLATE.encode(tok, CONVERSATION[:2])
    # a model that starts another turn instead of ending its own is stopped there: no marker is ever shown
    model = ScriptedModel(tok.vocab_size, tok.encode("ab") + [sp["<|user|>"]] + tok.encode("c"))
    assert reply(model, tok, config, CONVERSATION[:2], SamplingParams(max_new_tokens=20)) == "ab"


def test_engine_takes_token_ids_and_stop_token_ids():
    tok = char_tokenizer()
    end = tok.special_tokens["<|end|>"]
    model = ScriptedModel(tok.vocab_size, tok.encode("abc") + [end] + tok.encode("zz"))
    ids = tok.encode("Hi")
    out = generate(model, tok, ids, SamplingParams(max_new_tokens=10, stop_token_ids=[end]))[0]
    assert out.text == "abc" and out.finish_reason == "eos" and out.token_ids == tok.encode("abc")
    assert model.prompts[0] == ids
    model = ScriptedModel(tok.vocab_size, tok.encode("abc") + [end] + tok.encode("zz"))
    events = list(stream(model, tok, "Hi", SamplingParams(max_new_tokens=6)))  # no stop token: runs to the limit
    assert "".join(e.text for e in events) == "abc<|end|>zz"


def test_both_templates_round_trip_through_the_run_config_with_their_own_markers():
    token = TokenChatTemplate(system="<|sys|>", user="<|usr|>", assistant="<|bot|>", end="<|eot|>")
    plain = ChatTemplate(system="S: ", user="Q: ", assistant="A: ", end="\n\n")
    assert template_for({"chat_template": token.to_dict()}) == token
    assert template_for({"chat_template": plain.to_dict()}) == plain
    assert type(template_for({"chat_template": plain.to_dict()})) is ChatTemplate


def test_the_generation_prompt_is_added_by_default_and_only_then():
    tok = char_tokenizer()
    turn = CONVERSATION[:2]
    ids, _ = TEMPLATE.encode_with_mask(tok, turn)
    assistant = tok.special_tokens["<|assistant|>"]
    assert TEMPLATE.encode(tok, turn) == [*ids, assistant]
    assert TEMPLATE.encode(tok, turn, add_generation_prompt=False) == ids
    shown = "<|system|>Be brief.<|end|><|user|>Hi <|end|> there|<|end|>"
    assert TEMPLATE.render(turn) == shown + "<|assistant|>"
    assert TEMPLATE.render(turn, add_generation_prompt=False) == shown
    plain = ChatTemplate()
    tok = CharTokenizer.from_text(plain.render(turn[1:]))
    assert plain.render(turn[1:]) == "User: Hi <|end|> there|\nAssistant: "
    assert plain.render(turn[1:], add_generation_prompt=False) == "User: Hi <|end|> there|\n"
    assert plain.encode(tok, turn[1:]) == tok.encode("User: Hi <|end|> there|\nAssistant: ")
    assert plain.encode(tok, turn[1:], add_generation_prompt=False) == tok.encode("User: Hi <|end|> there|\n")


def test_parse_takes_a_tensor_and_a_missing_marker_is_named():
    tok = char_tokenizer()
    ids, _ = TEMPLATE.encode_with_mask(tok, CONVERSATION)
    assert TEMPLATE.parse(tok, torch.tensor(ids)) == CONVERSATION
    partial = CharTokenizer.from_text("abc")
    partial.add_special_tokens(["<|system|>", "<|assistant|>"])
    with pytest.raises(NewleafError, match=r"no chat marker tokens <\|user\|>, <\|end\|>:"):
        TEMPLATE.marker_ids(partial)


def test_only_text_turns_of_known_roles_reach_the_template_and_the_last_must_be_the_users():
    from core.chat import normalize_history

    history = [
        "a bare string",
        None,
        {"role": "tool", "content": "42"},
        {"role": "user", "content": [{"text": "Hi "}, "there"]},
        {"role": "assistant", "content": None},
    ]
    assert normalize_history(history) == [{"role": "user", "content": "Hi there"}]
    tok = char_tokenizer()
    config = {"chat_template": TEMPLATE.to_dict()}
    model = ScriptedModel(tok.vocab_size, tok.encode("4") + [tok.special_tokens["<|end|>"]])
    assert reply(model, tok, config, CONVERSATION[1:4], SamplingParams(max_new_tokens=5)) == "4"
    for bad in ([], CONVERSATION[1:3]):
        with pytest.raises(NewleafError, match="must end with a user message"):
            reply(model, tok, config, bad, SamplingParams(max_new_tokens=5))
