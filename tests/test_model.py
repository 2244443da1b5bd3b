import pytest
import torch

from core.errors import ConfigError
from core.model import (
    GPT,
    PRESETS,
    GPTConfig,
    flops_per_token,
    inference_memory,
    param_count,
    preset_config,
    training_memory,
)


def tiny(**kw):
    d = dict(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=50)
    d.update(kw)
    return GPTConfig(**d)


def test_causal_later_tokens_never_change_earlier_logits():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    x = torch.randint(0, 50, (3, 16))
    logits, _ = model(x)
    for t in (0, 5, 15):
        y = x.clone()
        y[:, t:] = torch.randint(0, 50, (3, 16 - t))
        other, _ = model(y)
        assert torch.allclose(logits[:, :t], other[:, :t], atol=1e-6)
        if t < 15:  # and the changed position itself does change (the test can fail)
            assert not torch.allclose(logits[:, t:], other[:, t:])


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = GPT(tiny(n_embd=64, n_head=4))
    x = torch.randint(0, 50, (4, 16))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        _, loss = model(x, y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 3.5  # about ln(50) at the start
    assert loss.item() < 0.05


@pytest.mark.parametrize("name", list(PRESETS))
def test_param_count_matches_the_model(name):
    vocab = 50257 if name == "gpt2" else 65
    cfg = preset_config(name, vocab)
    if name == "gpt2":
        assert param_count(cfg) == 124_439_808  # GPT-2 small, as Hugging Face counts it
        return
    assert param_count(cfg) == GPT(cfg).num_params()


def test_param_count_without_bias():
    cfg = tiny(bias=False)
    assert param_count(cfg) == GPT(cfg).num_params()


def test_estimates_grow_with_size():
    small, big = preset_config("micro", 65), preset_config("small", 65)
    assert flops_per_token(big) > flops_per_token(small) > 6 * (param_count(small) - 64 * 128) - 1
    m_small, m_big = training_memory(small, 8), training_memory(big, 8)
    assert m_big["total"] > m_small["total"]
    assert m_small["optimizer"] == 2 * m_small["weights"]
    assert training_memory(small, 16)["activations"] > m_small["activations"]


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(n_embd=30, n_head=4), "divisible"),
        (dict(n_layer=0), "n_layer must be a whole number from 1 to 1,024; got 0"),
        (dict(n_embd=10**400), "n_embd must be a whole number from 1 to 65,536; got a number of 401 digits"),
        (dict(block_size=-3), "block_size must be a whole number from 1 to"),
        (dict(dropout=1.5), "dropout"),
        (dict(vocab_size="65"), "vocab_size"),
    ],
)
def test_impossible_shapes_are_refused(kw, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**kw)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="Unknown preset 'huge'.*tiny"):
        preset_config("huge", 65)


def test_attention_capture_matches_the_fused_path():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    x = torch.randint(0, 50, (2, 10))
    fused, _ = model(x)
    maps = []
    explicit, _ = model(x, attention_out=maps)
    assert torch.allclose(fused, explicit, atol=1e-5)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 10, 10)
    assert torch.allclose(maps[0].sum(-1), torch.ones(2, 2, 10))
    assert (maps[0].triu(diagonal=1) == 0).all()


def test_too_long_input_is_refused():
    model = GPT(tiny())
    with pytest.raises(ConfigError, match="longer than the context length 16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_tied_head_and_gpt2_names():
    model = GPT(tiny())
    assert model.lm_head.weight is model.transformer.wte.weight
    names = dict(model.named_parameters())
    assert "transformer.h.0.attn.c_attn.weight" in names and "transformer.h.1.mlp.c_proj.bias" in names


def test_masked_targets_carry_no_loss():
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    x = torch.randint(0, 50, (1, 8))
    y = torch.randint(0, 50, (1, 8))
    y_masked = y.clone()
    y_masked[:, :4] = -1
    logits, loss = model(x, y_masked)
    expected = torch.nn.functional.cross_entropy(logits[0, 4:], y[0, 4:])
    assert torch.allclose(loss, expected)


def test_activation_choice_and_old_configs():
    old = GPTConfig.from_dict(dict(n_layer=1, n_head=1, n_embd=8, block_size=4, vocab_size=5))
    assert old.activation == "gelu_tanh"  # runs saved before the setting existed keep GPT-2's GELU
    assert GPTConfig().activation == "gelu"
    with pytest.raises(ConfigError, match="activation"):
        tiny(activation="relu")
    torch.manual_seed(0)
    a = GPT(tiny(activation="gelu")).eval()
    b = GPT(tiny(activation="gelu_tanh")).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 50, (1, 8))
    la, lb = a(x)[0], b(x)[0]
    assert torch.allclose(la, lb, atol=1e-2) and not torch.equal(la, lb)


def test_flops_per_token_is_the_palm_count_of_the_model():
    """6N + 12·L·C·T for a training step, a third of it for a forward pass; N counted from the model itself,
    without the position embedding (a lookup, no multiply)."""
    cfg = tiny()
    model = GPT(cfg)
    n = model.num_params() - model.transformer.wpe.weight.numel()
    step = 6 * n + 12 * 2 * 32 * 16  # L=2, C=32, T=16
    assert flops_per_token(cfg) == flops_per_token(cfg, training=True) == float(step)
    assert flops_per_token(cfg, training=False) == pytest.approx(step / 3)


def test_memory_estimates_by_hand():
    """L=2, C=32, T=16, V=50, 2 heads, a micro-batch of 3. Per layer 18·C·B·T = 27,648 activations, plus the
    attention matrices 2·B·heads·T² = 3,072 when dropout is on; the logits 3·B·T·V = 7,200 and 4·B·T·C = 6,144."""
    n = param_count(tiny())
    for dropout, acts in ((0.0, 2 * 27_648 + 7_200 + 6_144), (0.1, 2 * (27_648 + 3_072) + 7_200 + 6_144)):
        for bpv in (4, 2):
            m = training_memory(tiny(dropout=dropout), 3, bytes_per_value=bpv)
            parts = {"weights": n * bpv, "gradients": n * bpv, "optimizer": 8 * n, "activations": acts * bpv}
            assert m == {**parts, "total": sum(parts.values())}, (dropout, bpv)
    # weights, the K and V of a full context for each layer (2·L·B·T·C), one row of logits per sample
    assert inference_memory(tiny()) == (n + 2 * 2 * 16 * 32 + 50) * 4
    assert inference_memory(tiny(), batch_size=3, bytes_per_value=2) == (n + 2 * 2 * 3 * 16 * 32 + 3 * 50) * 2


def test_optimizer_groups_decay_the_matrices_only_and_mark_the_hidden_ones():
    model = GPT(tiny())
    names = {id(p): n for n, p in model.named_parameters()}

    def summary(groups):
        return [(sorted(names[id(p)] for p in g["params"]), g["weight_decay"], g.get("hidden", False)) for g in groups]

    matrices = sorted(n for n, p in model.named_parameters() if p.dim() == 2)
    vectors = sorted(n for n, p in model.named_parameters() if p.dim() == 1)
    blocks = [n for n in matrices if n.startswith("transformer.h.")]
    assert vectors and len(blocks) == 2 * 4  # c_attn, attn.c_proj, c_fc, mlp.c_proj in each of 2 layers
    assert summary(model.optimizer_groups(0.1)) == [(matrices, 0.1, False), (vectors, 0.0, False)]
    assert summary(model.optimizer_groups(0.1, split_hidden=True)) == [
        (blocks, 0.1, True),
        (["transformer.wpe.weight", "transformer.wte.weight"], 0.1, False),
        (vectors, 0.0, False),
    ]


def test_a_config_with_settings_this_version_does_not_know_is_refused_by_name():
    d = {**tiny().to_dict(), "n_experts": 4, "rope": True}
    with pytest.raises(ConfigError, match="n_experts, rope"):
        GPTConfig.from_dict(d)


def test_attention_dropout_applies_in_training_only(monkeypatch):
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = GPT(tiny(dropout=0.5))
    idx = torch.randint(0, 50, (2, 8))
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])  # evaluation is deterministic, dropout or not
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kw):
        seen.append(kw.get("dropout_p", 0.0))
        return sdpa(*args, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model.train()
    model(idx)
    model.eval()
    model(idx)
    assert seen == [0.5, 0.5, 0.0, 0.0]  # two layers, training then evaluation


def test_each_size_may_be_its_limit_and_no_more_and_a_refusal_says_what_it_got():
    """Found by mutation testing: the bounds' last allowed value, the long number shown by its length from 30
    characters on, and the head counts a width divisible refusal suggests (1 to 16, those that divide it)."""
    from core.model import LIMITS

    base = dict(n_layer=1, n_head=1, n_embd=1024, block_size=1, vocab_size=1)
    for name, most in LIMITS.items():
        assert getattr(GPTConfig(**{**base, name: most}), name) == most
        with pytest.raises(ConfigError, match=rf"{name} must be a whole number from 1 to {most:,}; got {most + 1}\."):
            GPTConfig(**{**base, name: most + 1})
    with pytest.raises(ConfigError, match=r"got 1{29}\."):  # 29 digits: shown as it is
        GPTConfig(**{**base, "n_layer": int("1" * 29)})
    with pytest.raises(ConfigError, match=r"got a number of 30 digits\."):
        GPTConfig(**{**base, "n_layer": int("1" * 30)})
    with pytest.raises(
        ConfigError, match=r"n_embd=12 must be divisible by .* n_head=5 .*try n_head in \[1, 2, 3, 4, 6, 12\]\."
    ):
        GPTConfig(n_embd=12, n_head=5)
    with pytest.raises(ConfigError, match=r"dropout must be in \[0, 1\); got 1\.0\."):
        GPTConfig(dropout=1.0)
    with pytest.raises(ConfigError, match=r"activation must be one of gelu, gelu_tanh; got 'relu'\."):
        GPTConfig(activation="relu")
    with pytest.raises(ConfigError, match=r"try n_head in \[1, 2, 4, 8, 16\]\."):
        GPTConfig(n_embd=17 * 16, n_head=5)  # 17 divides it too, but only 1 to 16 are suggested


def test_a_preset_takes_the_overrides_given_and_leaves_the_ones_left_empty():
    """Found by mutation testing: an override of None means "the preset's own", any other replaces it; an unknown
    preset names the known ones."""
    from core.model import PRESETS, preset_config

    cfg = preset_config("tiny", 65, n_layer=3, n_embd=None)
    assert cfg.n_layer == 3 and cfg.n_embd == PRESETS["tiny"]["n_embd"] and cfg.vocab_size == 65
    with pytest.raises(ConfigError, match=rf"Unknown preset 'huge'; choose one of: {', '.join(PRESETS)}\."):
        preset_config("huge", 65)
