"""LoRA (core/lora.py): only the adapters train, merging gives the same model, counts are right."""

import pytest
import torch

from core import lora
from core.errors import ConfigError
from core.model import GPT, GPTConfig
from core.trainable import FinetuneConfig, parameter_counts

CFG = GPTConfig(n_layer=3, n_head=2, n_embd=16, block_size=16, vocab_size=30)


def model_with_lora(**kw):
    torch.manual_seed(0)
    model = GPT(CFG)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    lora.apply_lora(model, **kw)
    return model, base


def train_a_little(model, steps=5):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randint(0, CFG.vocab_size, (4, CFG.block_size), generator=g)
        _, loss = model(x, torch.roll(x, -1, dims=1))
        loss.backward()
        opt.step()
        opt.zero_grad()


def test_adapted_model_starts_equal_to_the_base():
    torch.manual_seed(0)
    plain = GPT(CFG).eval()
    model, _ = model_with_lora()
    x = torch.randint(0, CFG.vocab_size, (2, 10))
    torch.testing.assert_close(model.eval()(x)[0], plain(x)[0])  # B starts at zero


def test_only_the_adapters_train():
    model, base = model_with_lora(rank=4, layers=[1, 2])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert not any(n.startswith("transformer.h.0.") for n in trainable)
    assert len(trainable) == 2 * 2 * len(lora.TARGETS)  # A and B, 2 layers, 4 projections
    train_a_little(model)
    after = model.state_dict()
    for k, v in base.items():
        owner, leaf = k.rsplit(".", 1)
        key = f"{owner}.base.{leaf}" if f"{owner}.base.{leaf}" in after else k
        assert torch.equal(after[key], v), k
    assert any(after[n].abs().sum() > 0 for n in trainable if n.endswith("lora_B"))


def test_merged_weights_give_the_same_logits_as_the_adapted_model():
    model, _ = model_with_lora(rank=4, alpha=8.0, dropout=0.1)
    train_a_little(model)
    model.eval()  # dropout off: the adapted model is then a fixed function
    x = torch.randint(0, CFG.vocab_size, (2, CFG.block_size))
    with torch.no_grad():
        adapted, _ = model(x)
        plain = GPT(CFG)
        plain.load_state_dict(lora.merged_tensors(model), strict=False)  # what a checkpoint holds
        merged, _ = lora.merge(model)(x)
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain.eval()(x)[0], adapted, atol=1e-5, rtol=1e-5)
    assert not lora.lora_modules(model)  # merge left plain nn.Linear layers


def test_adapter_state_round_trips():
    model, _ = model_with_lora(rank=2)
    train_a_little(model, 2)
    saved = lora.adapter_tensors(model)
    other, _ = model_with_lora(rank=2)
    lora.load_adapter_tensors(other, saved)
    assert all(torch.equal(other.state_dict()[k], v) for k, v in saved.items())
    wrong, _ = model_with_lora(rank=3)
    with pytest.raises(ConfigError, match="rank"):
        lora.load_adapter_tensors(wrong, saved)


@pytest.mark.parametrize(
    "ft",
    [
        FinetuneConfig(method="lora", lora_rank=4, lora_layers=[0, 2]),
        FinetuneConfig(method="lora", lora_targets=["attn.c_attn", "mlp.c_fc"]),
        FinetuneConfig(method="full"),
        FinetuneConfig(method="full", freeze_layers=2),
    ],
)
def test_parameter_counts_match_the_model(ft):
    torch.manual_seed(0)
    model = GPT(CFG)
    if ft.method == "lora":
        lora.apply_lora(model, ft.lora_rank, ft.lora_alpha, ft.lora_dropout, ft.lora_layers, ft.lora_targets)
    else:
        for block in model.transformer.h[: ft.freeze_layers]:
            block.requires_grad_(False)
    counts = parameter_counts(CFG, ft)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["trainable"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "kw, fragment",
    [
        (dict(rank=0), "rank"),
        (dict(alpha=-1.0), "alpha"),
        (dict(dropout=1.0), "dropout"),
        (dict(layers=[5]), "0 to 2"),
        (dict(targets=["attn.q"]), "attn.q"),
    ],
)
def test_bad_settings_are_refused(kw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        lora.apply_lora(GPT(CFG), **kw)
