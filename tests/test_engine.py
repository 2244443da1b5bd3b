import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from core import decoder, runs
from core.decoder import KVCache
from core.engine import (
    MAX_STOP_CHARS,
    MAX_STOP_STRINGS,
    SamplingParams,
    _partial_stop,
    _RowText,
    apply_penalties,
    attention_maps,
    filter_logits,
    generate,
    generate_tokens,
    logit_lens,
    next_token_distribution,
    prompt_logits,
    stream,
)
from core.errors import ConfigError, TokenizerError
from core.model import GPT, GPTConfig
from core.tokenizer import GPT2Tokenizer
from core.train import Trainer
from tests.test_train import make_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shakespeare_text):
    run = make_run(
        tmp_path_factory.mktemp("engine") / "r", shakespeare_text[:200_000], max_steps=150, eval_every=150, lr=1e-2
    )
    Trainer(run).fit()
    return runs.load_model(run)


def test_kv_cache_equals_full_recompute_at_every_step_including_after_the_window_slides(trained):
    model, tok = trained
    block = model.config.block_size  # 32: 60 new tokens slide the window several times
    prompt = tok.encode("ROMEO:\nWhat light")
    params = SamplingParams(max_new_tokens=60, temperature=1.0, seed=0, top_alternatives=tok.vocab_size)
    seq = list(prompt)
    slid = 0
    for step in generate_tokens(model, prompt, params):
        window = seq[-step.context_len :]
        assert step.context_len == min(len(seq), block)  # past the context: exactly the last block_size tokens
        slid += len(seq) > block
        full = F.softmax(prompt_logits(model, window), dim=-1)
        cached = torch.zeros(tok.vocab_size)
        for i, p in step.alternatives[0]:
            cached[i] = p
        assert torch.allclose(cached, full, atol=1e-5), len(seq)
        seq.append(step.tokens[0])
    assert slid > 0  # the window did slide


@pytest.mark.parametrize("rows", [1, 3])
def test_every_row_of_a_batch_matches_a_recompute_of_its_own_window_after_the_slide(trained, rows):
    """Each of several sampled rows conditions on exactly its own last block_size tokens once the window slides
    (re-prefilled from the rows' own histories, not the first row's)."""
    model, tok = trained
    block = model.config.block_size
    prompt = tok.encode("KING:")
    params = SamplingParams(max_new_tokens=block + 12, temperature=1.0, seed=5, num_samples=rows,
                            top_alternatives=tok.vocab_size)  # fmt: skip
    seqs = [list(prompt) for _ in range(rows)]
    for step in generate_tokens(model, prompt, params):
        for r in range(rows):
            full = F.softmax(prompt_logits(model, seqs[r][-step.context_len :]), dim=-1)
            cached = torch.zeros(tok.vocab_size)
            for i, p in step.alternatives[r]:
                cached[i] = p
            assert torch.allclose(cached, full, atol=1e-5), (r, len(seqs[r]))
            seqs[r].append(step.tokens[r])
    assert len(seqs[0]) > block and (rows == 1 or seqs[0] != seqs[1])


def test_a_shorter_slide_keep_re_prefills_less_often_and_still_matches_recompute_of_its_window(trained):
    model, tok = trained
    block = model.config.block_size
    prompt = tok.encode("ROMEO:\nWhat light")
    params = SamplingParams(max_new_tokens=60, temperature=1.0, seed=0, top_alternatives=tok.vocab_size)
    seq, lengths = list(prompt), []
    for step in generate_tokens(model, prompt, params, slide_keep=block // 2):
        lengths.append(step.context_len)
        full = F.softmax(prompt_logits(model, seq[-step.context_len :]), dim=-1)
        cached = torch.zeros(tok.vocab_size)
        for i, p in step.alternatives[0]:
            cached[i] = p
        assert torch.allclose(cached, full, atol=1e-5), len(seq)
        seq.append(step.tokens[0])
    assert block // 2 in lengths and max(lengths) == block


def test_kv_cache_chunked_prefill_matches_full_forward():
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=24, vocab_size=40)).eval()
    x = torch.randint(0, 40, (2, 20))
    full, _ = model(x)
    cache = KVCache.for_model(model, 2)
    parts = [
        model(x[:, :7], kv_cache=cache)[0],
        model(x[:, 7:8], kv_cache=cache)[0],
        model(x[:, 8:], kv_cache=cache)[0],
    ]
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)
    assert cache.pos == 20


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_one_token_decoder_equals_the_models_forward_with_weights_split_across_threads(
    monkeypatch, activation, bias, threads
):
    """The decoder's own layouts (weights split per thread, tall weights kept as rows, the GELU scales folded
    into c_fc and c_proj) compute what the model computes, for several rows at once."""
    monkeypatch.setattr(decoder, "SPLIT_BYTES", 0)  # split even this small model's weights
    monkeypatch.setattr(decoder, "MIN_SPLIT_COLUMNS", 8)
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(n_layer=2, n_head=2, n_embd=48, block_size=16, vocab_size=30, bias=bias, activation=activation)
    ).eval()
    with torch.no_grad():
        for p in model.parameters():  # biases start at zero: give every parameter a value that matters
            p.normal_(0, 0.3)
    x = torch.randint(0, 30, (2, 12))
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        one_token = decoder.Decoder(model)
        if threads > 1:  # the split really happens
            assert any(p.dim() == 3 for p in _closure_tensors(one_token.layers[0].qkv))
        cache = KVCache.for_model(model, 2)
        with torch.inference_mode():
            full, _ = model(x)
            steps = [one_token.step(x[:, i], cache) for i in range(x.size(1))]
    finally:
        torch.set_num_threads(previous)
    assert torch.allclose(torch.stack(steps, dim=1), full, atol=1e-5)


def _closure_tensors(fn):
    return [c.cell_contents for c in fn.__closure__ or () if isinstance(c.cell_contents, torch.Tensor)]


def test_greedy_is_deterministic_and_top_k_1_equals_greedy(trained):
    model, tok = trained
    greedy = generate(model, tok, "KING:", SamplingParams(max_new_tokens=40, temperature=0))[0].text
    assert generate(model, tok, "KING:", SamplingParams(max_new_tokens=40, temperature=0))[0].text == greedy
    for seed in (1, 2):
        k1 = generate(model, tok, "KING:", SamplingParams(max_new_tokens=40, temperature=1.3, top_k=1, seed=seed))
        assert k1[0].text == greedy


def test_seed_reproduces_and_samples_are_batched(trained):
    model, tok = trained
    p = dict(max_new_tokens=30, temperature=1.0, num_samples=4)
    a = generate(model, tok, "\n", SamplingParams(seed=7, **p))
    b = generate(model, tok, "\n", SamplingParams(seed=7, **p))
    assert [c.text for c in a] == [c.text for c in b]
    assert len({c.text for c in a}) > 1  # the rows are sampled independently
    assert all(len(c.token_ids) == 30 for c in a)
    seeded = SamplingParams(seed=None, **p)
    generate(model, tok, "\n", seeded)
    assert isinstance(seeded.seed, int)  # the seed used is reported back


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.5, 0.25, 0.15, 0.06, 0.04])
    logits = probs.log()
    for p, kept in ((0.5, 1), (0.6, 2), (0.75, 2), (0.76, 3), (0.9, 3), (0.91, 4), (1.0, 5)):
        out = filter_logits(logits, 1.0, top_p=p)
        assert torch.isfinite(out).sum().item() == kept, p
        dist = next_token_distribution(logits, 1.0, top_p=p)
        assert torch.allclose(dist[:kept], probs[:kept] / probs[:kept].sum())


def test_top_p_keeps_the_right_tokens_whatever_their_order():
    """Probabilities not in sorted order, in two rows ordered differently: the kept set is found in sorted order
    and mapped back to each token's own place."""
    probs = torch.tensor([[0.06, 0.5, 0.04, 0.25, 0.15], [0.25, 0.04, 0.15, 0.06, 0.5]])
    logits = probs.log()
    for p, kept in (
        (0.5, ({1}, {4})),
        (0.6, ({1, 3}, {0, 4})),
        (0.76, ({1, 3, 4}, {0, 2, 4})),
        (0.91, ({0, 1, 3, 4}, {0, 2, 3, 4})),
    ):
        out = filter_logits(logits, 1.0, top_p=p)
        for row in range(2):
            assert set(torch.isfinite(out[row]).nonzero().flatten().tolist()) == kept[row], (p, row)
            assert torch.equal(out[row][torch.isfinite(out[row])], logits[row][torch.isfinite(out[row])])


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(1, 19), max_size=6, unique=True))
def test_prefill_in_any_chunks_equals_the_full_forward(cuts):
    """The causal mask of a chunk that follows cached positions is offset by them: every way of cutting the
    sequence gives the logits of one full forward pass, in every position (with the explicit attention path too)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=24, vocab_size=40)).eval()
    x = torch.randint(0, 40, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, _ = model(x)
        bounds = [0, *sorted(cuts), 20]
        cache = KVCache.for_model(model, 2)
        parts = [model(x[:, a:b], kv_cache=cache)[0] for a, b in zip(bounds, bounds[1:])]
        assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)
        cache, maps = KVCache.for_model(model, 2), []
        parts = [model(x[:, a:b], kv_cache=cache, attention_out=maps)[0] for a, b in zip(bounds, bounds[1:])]
        assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-5)


def test_the_next_token_distribution_of_a_batch_with_every_filter():
    """What the next-token panel draws: per row, the probabilities the sampler would draw from (greedy: all on
    the most likely token of that row), with top-k and min-p applied as the sampler applies them."""
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0], [-1.0, 0.5, 3.0, 1.0]])
    greedy = next_token_distribution(logits, temperature=0.0)
    assert greedy.dtype == torch.float32 and greedy.tolist() == [[1.0, 0, 0, 0], [0, 0, 1.0, 0]]
    plain = next_token_distribution(logits)  # temperature 1 by default: the model's own probabilities
    assert torch.allclose(plain, F.softmax(logits, dim=-1))
    for kw in (dict(top_k=2), dict(min_p=0.3), dict(top_p=0.7), dict(temperature=0.5, top_k=3, min_p=0.05)):
        dist = next_token_distribution(logits, **{"temperature": 1.0, **kw})
        expected = F.softmax(filter_logits(logits, **{"temperature": 1.0, **kw}), dim=-1)
        assert torch.allclose(dist, expected) and torch.allclose(dist.sum(-1), torch.ones(2)), kw
    assert (next_token_distribution(logits, top_k=2) > 0).sum(-1).tolist() == [2, 2]
    assert (next_token_distribution(logits, min_p=0.3) > 0).sum(-1).tolist() == [2, 1]


def test_top_k_and_min_p_as_defined():
    probs = torch.tensor([0.4, 0.3, 0.2, 0.07, 0.03])
    logits = probs.log()
    assert torch.isfinite(filter_logits(logits, 1.0, top_k=2)).tolist() == [True, True, False, False, False]
    # min_p=0.2 keeps tokens with p >= 0.2 * 0.4 = 0.08
    assert torch.isfinite(filter_logits(logits, 1.0, min_p=0.2)).tolist() == [True, True, True, False, False]
    # temperature reshapes softmax(logits / T): lower T sharpens
    sharp, flat = next_token_distribution(logits, 0.5), next_token_distribution(logits, 2.0)
    assert sharp[0] > probs[0] > flat[0]
    assert torch.allclose(next_token_distribution(logits, 0.5), F.softmax(logits / 0.5, -1))
    assert next_token_distribution(logits, 0.0).tolist() == [1.0, 0, 0, 0, 0]


def test_repetition_presence_and_frequency_penalties_as_defined():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    history = torch.tensor([[True, True, False, False]])
    counts = torch.tensor([[2.0, 0.0, 0.0, 1.0]])
    out = apply_penalties(logits, history, None, SamplingParams(repetition_penalty=2.0))
    assert out.tolist() == [[1.0, -2.0, 0.5, 3.0]]  # positive divided, negative multiplied, only seen tokens
    out = apply_penalties(logits, history, counts, SamplingParams(presence_penalty=0.5, frequency_penalty=0.25))
    assert out.tolist() == [[2.0 - 0.5 - 0.5, -1.0, 0.5, 3.0 - 0.5 - 0.25]]


def test_repetition_penalty_reduces_repeats(trained):
    model, tok = trained
    plain = generate(model, tok, "the ", SamplingParams(max_new_tokens=80, temperature=0))[0]
    penal = generate(model, tok, "the ", SamplingParams(max_new_tokens=80, temperature=0, repetition_penalty=1.5))[0]
    assert len(set(penal.token_ids)) > len(set(plain.token_ids))


def test_stop_string_stops_and_is_not_printed(trained):
    model, tok = trained
    full = generate(model, tok, "\n", SamplingParams(max_new_tokens=60, temperature=0))[0].text
    stop = full[20:23]
    first = full.find(stop)
    out = generate(model, tok, "\n", SamplingParams(max_new_tokens=60, temperature=0, stop=[stop]))[0]
    assert out.text == full[:first] and out.finish_reason == "stop"
    streamed = "".join(
        ev.text for ev in stream(model, tok, "\n", SamplingParams(max_new_tokens=60, temperature=0, stop=[stop]))
    )
    assert streamed == full[:first]


def test_attention_rows_sum_to_one_and_are_zero_above_the_diagonal(trained):
    model, tok = trained
    ids = tok.encode("To be, or not to be")
    maps = attention_maps(model, ids)
    assert len(maps) == model.config.n_layer
    for m in maps:
        assert m.shape == (model.config.n_head, len(ids), len(ids))
        assert torch.allclose(m.sum(-1), torch.ones(m.shape[:2]), atol=1e-5)
        assert (m.triu(diagonal=1) == 0).all()
        assert (m.diagonal(dim1=-2, dim2=-1) > 0).all()


def test_the_logit_lens_last_layer_is_the_models_own_prediction(trained):
    model, tok = trained
    text = "ROMEO:\nWhat light through yonder window breaks? It is the east"  # longer than the context
    ids = tok.encode(text)
    V, L, block = tok.vocab_size, model.config.n_layer, model.config.block_size
    lens = logit_lens(model, ids, top_k=V)
    window = ids[-block:]
    assert lens.top_probs.shape == (L + 1, block, V) and lens.positions == list(range(block))
    logits, _ = model(torch.tensor(window)[None])
    own = torch.softmax(logits[0].float(), dim=-1)  # (T, V): the model's next-token distribution at each position
    assert torch.allclose(lens.top_probs[-1], own.sort(-1, descending=True).values, atol=1e-6)
    mine = torch.zeros(block, V).scatter_(-1, lens.top_ids[-1], lens.top_probs[-1])
    assert torch.allclose(mine, own, atol=1e-6)  # the same tokens with the same probabilities
    assert torch.allclose(mine[-1], torch.softmax(prompt_logits(model, ids), -1), atol=1e-6)
    # the probability of the token that really follows, at each layer; none after the last position
    following = torch.tensor(window[1:])
    assert torch.allclose(lens.next_probs[-1, :-1], own[:-1].gather(-1, following[:, None])[:, 0], atol=1e-6)
    assert torch.isnan(lens.next_probs[:, -1]).all()
    # the earlier layers are other distributions, each a distribution; a trained model's last layer beats its
    # embeddings at predicting the text
    assert torch.allclose(lens.top_probs.sum(-1), torch.ones(L + 1, block), atol=1e-5)
    assert not torch.allclose(lens.top_probs[0], lens.top_probs[-1], atol=1e-3)
    assert lens.next_probs[-1, :-1].log().mean() > lens.next_probs[0, :-1].log().mean()
    # only the last positions, computed over the whole window: the same numbers
    tail = logit_lens(model, ids, top_k=3, last=5)
    assert tail.positions == list(range(block - 5, block))
    assert torch.allclose(tail.top_probs, lens.top_probs[:, -5:, :3], atol=1e-6)


def test_streaming_never_splits_a_multibyte_character():
    tok = GPT2Tokenizer()
    text = "Seedlings 🌱 grow; 你好，世界! 👩‍💻 naïve café — ∑ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"
    ids = tok.encode(text)
    assert len(ids) > len(text.split())  # several characters take more than one byte-level token
    row = _RowText(stop=[])
    pieces = [row.push(tok.decode_bytes([i])) for i in ids] + [row.finish()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    # a piece ends on a character boundary: some tokens produced nothing yet (half an emoji)
    assert "" in pieces[:-1]


def test_streaming_from_a_model_with_a_byte_level_vocabulary():
    torch.manual_seed(0)
    tok = GPT2Tokenizer()
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=tok.vocab_size))
    events = list(stream(model, tok, "Hi", SamplingParams(max_new_tokens=40, temperature=1.0, seed=3)))
    ids = [e.token_id for e in events if e.finish_reason != "eos"]
    streamed = "".join(e.text for e in events)
    assert streamed == tok.decode_bytes(ids).decode("utf-8", errors="replace")


def test_stop_string_split_across_tokens_is_held_back():
    row = _RowText(stop=["END"])
    assert row.push(b"abcE") == "abc"  # "E" might start "END"
    assert row.push(b"N") == ""
    assert row.push(b"D and more") == ""
    assert row.stopped and row.text == "abc"
    row = _RowText(stop=["END"])
    assert row.push(b"xE") == "x"
    assert row.push(b"Z") == "EZ"  # it was not the stop string after all


@settings(max_examples=300, deadline=None)
@given(text=st.text("abE", max_size=12), stop=st.text("abE", min_size=1, max_size=6))
def test_the_held_back_tail_is_the_longest_start_of_the_stop_string(text, stop):
    longest = next((n for n in range(min(len(stop) - 1, len(text)), 0, -1) if text.endswith(stop[:n])), 0)
    assert _partial_stop(text, stop) == longest


def test_stop_strings_are_bounded_in_number_and_length(trained):
    """A request with 100,000 stop strings once took 74 s for 20 tokens: it is refused at once."""
    model, tok = trained
    with pytest.raises(ConfigError, match=f"At most {MAX_STOP_STRINGS} stop strings are allowed; got 100,000"):
        generate(model, tok, "hi", SamplingParams(max_new_tokens=20, stop=[f"s{i}" for i in range(100_000)]))
    with pytest.raises(ConfigError, match=f"at most {MAX_STOP_CHARS} characters long; one has 5,000"):
        generate(model, tok, "hi", SamplingParams(max_new_tokens=5, stop=["x" * 5000]))
    # the most allowed, duplicates among them, still generate (and duplicates are checked once)
    stops = [f"zz{i}" for i in range(MAX_STOP_STRINGS - 1)] + ["zz0"]
    out = generate(model, tok, "hi", SamplingParams(max_new_tokens=5, temperature=0, stop=stops))[0]
    assert len(out.token_ids) == 5
    assert len(_RowText(stops).stop) == MAX_STOP_STRINGS - 1


def test_bad_sampling_settings_and_unseen_characters(trained):
    model, tok = trained
    for kw, msg in (
        (dict(temperature=-1), "temperature"),
        (dict(top_p=0), "top_p"),
        (dict(top_k=0), "top_k"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(num_samples=0), "num_samples"),
    ):
        with pytest.raises(ConfigError, match=msg):
            generate(model, tok, "hi", SamplingParams(**kw))
    with pytest.raises(TokenizerError, match="never saw"):
        generate(model, tok, "résumé ✓", SamplingParams(max_new_tokens=5))


def test_token_probabilities_are_reported(trained):
    model, tok = trained
    c = generate(model, tok, "\n", SamplingParams(max_new_tokens=10, temperature=0.8, seed=1))[0]
    assert len(c.token_probs) == len(c.alternatives) == 10
    for tid, p, alts in zip(c.token_ids, c.token_probs, c.alternatives):
        assert 0 < p <= 1 and len(alts) == 10
        assert [a[1] for a in alts] == sorted((a[1] for a in alts), reverse=True)
        if tid in dict(alts):  # its probability is reported the same way in both places
            assert math.isclose(dict(alts)[tid], p, rel_tol=1e-6)
        else:  # a token outside the top 10 is no more likely than the 10th
            assert p <= alts[-1][1] + 1e-7


def test_int8_sampling_stays_close_to_fp32(trained):
    from core.engine import quantize_int8

    model, tok = trained
    q = quantize_int8(model)
    ids = tok.encode("ROMEO:\nWhat light through yonder")
    full, quant = F.softmax(prompt_logits(model, ids), -1), F.softmax(prompt_logits(q, ids), -1)
    assert (full - quant).abs().max() < 0.05
    assert type(model.transformer.h[0].attn.c_attn) is torch.nn.Linear  # the original is untouched
    out = generate(q, tok, "KING:", SamplingParams(max_new_tokens=20, temperature=0))[0]
    assert len(out.token_ids) == 20


def test_int8_decode_step_equals_the_int8_models_forward(trained):
    """The fast one-token path runs the same int8 kernels as the quantized model's own forward."""
    from core.decoder import Decoder
    from core.engine import quantize_int8

    model, tok = trained
    q = quantize_int8(model)
    assert Decoder.supports(q)
    ids = tok.encode("ROMEO:\nWhat light")
    # int8 activations are scaled per call, so the reference is the module path on the same one new row
    a, b = KVCache.for_model(q, 1), KVCache.for_model(q, 1)
    with torch.inference_mode():
        q(torch.tensor([ids[:-1]]), kv_cache=a)
        q(torch.tensor([ids[:-1]]), kv_cache=b)
        fast = Decoder(q).step(torch.tensor([ids[-1]]), a)[0]
        module = q(torch.tensor([[ids[-1]]]), kv_cache=b)[0][0, -1]
    assert torch.allclose(fast, module, atol=1e-5)


def test_sampling_filters_at_their_edge_values():
    logits = torch.tensor([[2.0, 0.5, -1.0, 1.0]])
    # temperature 0 (greedy) leaves the logits unscaled; the filters still apply
    assert filter_logits(logits, 0.0, top_k=2).tolist() == [[2.0, float("-inf"), float("-inf"), 1.0]]
    # top_p = 1 keeps every token, even one whose probability is lost in float32's rounding of the running sum
    assert torch.isfinite(filter_logits(torch.tensor([[20.0, 0.0, -20.0]]), 1.0, top_p=1.0)).all()
    # min_p = 1 keeps the most likely tokens, ties included
    assert torch.isfinite(filter_logits(torch.tensor([[1.0, 1.0, 0.0]]), 1.0, min_p=1.0)).tolist() == [
        [True, True, False]
    ]
    # the distribution is float32 whatever the logits' type
    for t in (0.0, 1.0):
        assert next_token_distribution(logits.bfloat16(), t).dtype == torch.float32


def test_penalties_one_at_a_time_and_below_one():
    logits = torch.tensor([[0.5, -0.5, 0.5]])
    history = torch.tensor([[True, True, False]])
    counts = torch.tensor([[3.0, 0.0, 0.0]])
    # a positive logit below 1 is divided too
    assert apply_penalties(logits, history, None, SamplingParams(repetition_penalty=2.0)).tolist() == [
        [0.25, -1.0, 0.5]
    ]
    assert apply_penalties(logits, history, counts, SamplingParams(presence_penalty=0.5)).tolist() == [[0.0, -0.5, 0.5]]
    assert apply_penalties(logits, history, counts, SamplingParams(frequency_penalty=0.5)).tolist() == [
        [-1.0, -0.5, 0.5]
    ]


def test_row_text_flushes_replaces_bad_bytes_and_cuts_at_the_first_stop():
    row = _RowText(stop=[])
    assert row.push(b"ab") == "ab"
    assert row.push(b"\xe4\xbd") == ""  # half a character: held
    assert row.finish() == "\ufffd"  # the end of the stream flushes it, replaced
    assert _RowText(stop=[]).push(b"x\xffy") == "x\ufffdy"  # a byte that is no UTF-8 at all
    held = _RowText(stop=["END"])
    assert held.push(b"xEN") == "x"  # "EN" may begin "END": held back ...
    assert held.finish() == "EN"  # ... until the stream ends without it
    first = _RowText(stop=["END"])
    assert first.push(b"xEENDyEND") == "xE" and first.stopped  # cut at the first stop; all before it given at once
    assert first.finish() == ""  # nothing held back after a stop
    start = _RowText(stop=["END"])
    assert start.push(b"ENDx") == "" and start.stopped


def test_a_row_that_runs_out_of_tokens_finishes_with_length():
    from core.tokenizer import CharTokenizer

    torch.manual_seed(0)
    tok = CharTokenizer.from_text("abcdefgh")
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=tok.vocab_size))
    events = list(stream(model, tok, "ab", SamplingParams(max_new_tokens=5, num_samples=2, temperature=1.0, seed=1)))
    for r in range(2):
        reasons = [e.finish_reason for e in events if e.row == r]
        assert reasons == [None] * 4 + ["length"], r


def test_the_one_token_decoder_takes_only_a_plain_or_int8_gpt():
    """Anything it could not reproduce (a LoRA wrapper, a hook, fp16 weights, not a GPT) decodes through forward."""
    from torch.ao.quantization import quantize_dynamic

    from core import lora
    from core.decoder import Decoder

    def tiny():
        return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11))

    assert Decoder.supports(tiny())
    assert not Decoder.supports(torch.nn.Linear(2, 2))
    hooked = tiny()
    hooked.transformer.h[0].mlp.c_fc.register_forward_hook(lambda *a: None)
    assert not Decoder.supports(hooked)
    pre = tiny()
    pre.lm_head.register_forward_pre_hook(lambda *a: None)
    assert not Decoder.supports(pre)
    adapted = tiny()
    lora.apply_lora(adapted, rank=2)
    assert not Decoder.supports(adapted)
    assert not Decoder.supports(quantize_dynamic(tiny().eval(), {torch.nn.Linear}, dtype=torch.float16))


def test_int8_quantizes_a_copy_and_leaves_the_model_as_it_was():
    from core.engine import quantize_int8

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantize_int8(model)
    assert q is not model and not q.training
    assert all(m.training for m in model.modules())  # still training, every layer
    assert all(type(m) is torch.nn.Linear for b in model.transformer.h for m in (b.attn.c_attn, b.mlp.c_fc))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_the_kv_cache_takes_the_models_dtype_and_shape():
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11)).to(torch.bfloat16)
    cache = KVCache.for_model(model, 3)
    assert cache.kv.dtype == torch.bfloat16 and cache.kv.shape == (2, 3, 2, 8, 2, 8) and cache.pos == 0


@pytest.mark.parametrize(
    "kw, limit",
    [
        (dict(max_new_tokens=0), None),
        (dict(max_new_tokens=6), 5),
        (dict(temperature=-0.1), None),
        (dict(top_k=0), None),
        (dict(top_p=0.0), None),
        (dict(top_p=1.5), None),
        (dict(min_p=-0.1), None),
        (dict(min_p=1.5), None),
        (dict(repetition_penalty=0.0), None),
        (dict(num_samples=0), None),
        (dict(num_samples=65), None),
        (dict(stop=["x"] * (MAX_STOP_STRINGS + 1)), None),
        (dict(stop=["x" * (MAX_STOP_CHARS + 1)]), None),
    ],
)
def test_sampling_settings_past_their_range_are_refused(kw, limit):
    with pytest.raises(ConfigError):
        SamplingParams(**kw).validate(limit)


def test_sampling_settings_at_the_edge_of_their_range_are_taken():
    for kw, limit in (
        (dict(max_new_tokens=1), None),
        (dict(max_new_tokens=5), 5),
        (dict(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, repetition_penalty=0.5, num_samples=1), None),
        (dict(min_p=1.0, num_samples=64), None),
        (dict(stop=["x" * MAX_STOP_CHARS] * MAX_STOP_STRINGS), None),
    ):
        SamplingParams(**kw).validate(limit)  # no error
