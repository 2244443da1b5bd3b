import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from core import files, runs
from core.errors import CheckpointError, ConfigError, CorpusError
from core.model import GPT, preset_config
from core.prepare import prepare_run
from core.tokenizer import CharTokenizer
from core.train import Trainer
from core.train_config import TrainConfig, lr_at

VOLATILE = ("tokens_per_sec", "elapsed_s")


def make_run(path, text, *, preset="tiny", dropout=0.0, **train):
    tok = CharTokenizer.from_text(text)
    cfg = preset_config(preset, tok.vocab_size, dropout=dropout)
    defaults = dict(
        batch_size=8,
        max_steps=40,
        eval_every=10,
        eval_batches=4,
        log_every=5,
        warmup_steps=5,
        lr=3e-3,
        sample_tokens=20,
        device="cpu",
    )
    defaults.update(train)
    return prepare_run(path, text, tok, cfg, TrainConfig(**defaults), data_name="test")


def metrics(run_dir):
    records, _ = files.read_jsonl(Path(run_dir) / runs.METRICS)
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in records]


def test_validation_loss_falls_below_unigram_entropy(tmp_path, shakespeare_text):
    counts = Counter(shakespeare_text)
    n = len(shakespeare_text)
    unigram = -sum(c / n * math.log(c / n) for c in counts.values())  # nats per character, ~3.3
    run = make_run(
        tmp_path / "r",
        shakespeare_text,
        preset="nano",
        max_steps=300,
        eval_every=100,
        batch_size=16,
        lr=1e-2,
        warmup_steps=20,
    )
    result = Trainer(run).fit()
    assert result.state == "completed" and result.step == 300
    records = [r for r in metrics(run) if "val_loss" in r]
    assert records[0]["val_loss"] > records[-1]["val_loss"]
    assert records[-1]["val_loss"] < unigram - 0.6, (records[-1]["val_loss"], unigram)
    # bits per character = nats per token / ln 2 for a character-level tokenizer
    assert records[-1]["val_bpc"] == pytest.approx(records[-1]["val_loss"] / math.log(2), rel=1e-3)


def test_resume_continues_exactly(tmp_path, shakespeare_text):
    text = shakespeare_text[:60_000]
    whole = make_run(tmp_path / "whole", text, dropout=0.1)
    Trainer(whole).fit()

    parts = make_run(tmp_path / "parts", text, dropout=0.1)
    trainer = Trainer(parts)

    def stop_at_15(event, data):  # not on a checkpoint or log boundary
        if event in ("step", "eval") and data["step"] == 15:
            trainer.request_stop()

    first = trainer.fit(callbacks=[stop_at_15])
    assert first.state == "stopped" and first.step == 15
    assert runs.checkpoint_meta(parts, "last")["step"] == 15
    second = Trainer(parts).fit()
    assert second.state == "completed" and second.step == 40

    assert metrics(parts) == metrics(whole)
    s_parts, _ = files.read_jsonl(parts / runs.SAMPLES)
    s_whole, _ = files.read_jsonl(whole / runs.SAMPLES)
    assert s_parts == s_whole
    w1 = runs.load_tensors(runs.checkpoint_dir(parts) / "model.safetensors")
    w2 = runs.load_tensors(runs.checkpoint_dir(whole) / "model.safetensors")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_resume_after_a_crash_drops_metrics_logged_past_the_checkpoint(tmp_path, shakespeare_text):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], max_steps=20)
    Trainer(run).fit()
    # pretend the process died after logging steps the checkpoint does not hold
    files.append_jsonl(run / runs.METRICS, {"step": 25, "train_loss": 1.0})
    with open(run / runs.METRICS, "a") as f:
        f.write('{"step": 30, "train_lo')  # a line cut short by the crash
    config = runs.read_config(run)
    config["train"]["max_steps"] = 30
    files.atomic_write_json(run / runs.CONFIG, config)
    Trainer(run).fit()
    steps = [r["step"] for r in metrics(run)]
    assert steps == sorted(set(steps)) and steps[-1] == 30 and steps.count(25) == 1


def test_stop_file_stops_with_a_checkpoint(tmp_path, shakespeare_text):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], max_steps=1000)

    def stop_soon(event, data):
        if event in ("step", "eval") and data["step"] == 10:
            (run / runs.STOP_FILE).touch()

    result = Trainer(run).fit(callbacks=[stop_soon])
    assert result.state == "stopped" and result.step == 10
    assert runs.checkpoint_meta(run)["step"] == 10
    assert runs.read_status(run)["state"] == "stopped"


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, shakespeare_text, monkeypatch):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], max_steps=40)
    calls = {"n": 0}
    original = GPT.forward

    def poisoned(self, idx, targets=None, **kw):
        logits, loss = original(self, idx, targets, **kw)
        if targets is not None and self.training:
            calls["n"] += 1
            if calls["n"] > 25:
                loss = loss * float("nan")
        return logits, loss

    monkeypatch.setattr(GPT, "forward", poisoned)
    result = Trainer(run).fit()
    assert result.state == "failed"
    assert "loss became nan" in result.message and "step 20" in result.message
    assert runs.checkpoint_meta(run)["step"] == 20
    assert runs.read_status(run)["state"] == "failed"
    # the kept checkpoint still loads
    model, _ = runs.load_model(run)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_run_directory_holds_no_pickle(tmp_path, shakespeare_text):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], max_steps=20)
    Trainer(run).fit()
    files = [p for p in run.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".pt", ".pth", ".pkl", ".pickle", ".bin") and p.parent.name != "data"]
    for p in files:  # nothing in the run is a pickle stream (protocol 2+ starts with 0x80)
        assert not p.read_bytes()[:1] == b"\x80", p
    names = {p.name for p in files}
    assert {
        "config.json",
        "status.json",
        "metrics.jsonl",
        "samples.jsonl",
        "tokenizer.json",
        "model.safetensors",
        "trainer.safetensors",
        "meta.json",
        "last.json",
        "best.json",
        "train.bin",
        "val.bin",
    } <= names
    record = json.loads((run / runs.METRICS).read_text().splitlines()[0])
    assert {"step", "train_loss", "lr", "tokens_per_sec", "elapsed_s"} <= set(record)


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path, shakespeare_text):
    run = make_run(tmp_path / "r", shakespeare_text[:30_000], max_steps=10)
    Trainer(run).fit()
    weights = runs.checkpoint_dir(run) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        runs.load_model(run)
    with pytest.raises(CheckpointError, match="corrupt"):
        Trainer(run).fit()


def test_pickle_weights_are_refused(tmp_path):
    evil = tmp_path / "model.pt"
    evil.write_bytes(b"\x80\x04anything")
    with pytest.raises(CheckpointError, match="pickle"):
        runs.load_tensors(evil)


def test_corpus_shorter_than_the_context_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="context length"):
        make_run(tmp_path / "r", "To be or not to be, that is the question.")


def test_model_too_large_for_memory_is_refused(tmp_path, shakespeare_text, monkeypatch):
    monkeypatch.setenv("NEWLEAF_MEMORY_LIMIT_MB", "50")
    with pytest.raises(ConfigError, match="needs about .* but only 50 MB"):
        make_run(tmp_path / "r", shakespeare_text[:30_000], preset="small", batch_size=64)
    assert not (tmp_path / "r").exists()


def test_existing_run_is_never_overwritten(tmp_path, shakespeare_text):
    make_run(tmp_path / "r", shakespeare_text[:30_000])
    before = (tmp_path / "r" / "config.json").read_bytes()
    with pytest.raises(ConfigError, match="already holds a run"):
        make_run(tmp_path / "r", shakespeare_text[:30_000])
    assert (tmp_path / "r" / "config.json").read_bytes() == before


def test_schedule_warms_up_then_decays_to_the_budget():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(0.1)
    assert lr_at(cfg, 9, 9 / 110) == pytest.approx(1.0)
    assert lr_at(cfg, 10, 10 / 110) == pytest.approx(1.0)
    assert lr_at(cfg, 60, 60 / 110) == pytest.approx(0.55)
    assert lr_at(cfg, 110, 1.0) == pytest.approx(0.1)
    timed = TrainConfig(lr=1.0, warmup_steps=0, max_steps=10**9, max_time=100.0, min_lr_ratio=0.0)
    assert lr_at(timed, 500, 0.5) == pytest.approx(0.5)  # progress comes from the time used


def test_gradient_accumulation_matches_a_bigger_batch(tmp_path, shakespeare_text):
    """Two micro-batches of 4 give the same first step as the same 8 windows at once."""
    from core.data import get_batch, open_tokens

    text = shakespeare_text[:30_000]
    run = make_run(tmp_path / "r", text, batch_size=4, grad_accum=2, max_steps=1, warmup_steps=0)
    trainer = Trainer(run)
    model, opt, gen = trainer._build()
    data = open_tokens(run / "data" / "train.bin", trainer.model_cfg.vocab_size)
    xa, ya = get_batch(data, 4, 32, gen)
    xb, yb = get_batch(data, 4, 32, gen)
    _, loss = model(torch.cat([xa, xb]), torch.cat([ya, yb]))
    loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    for x, y in ((xa, ya), (xb, yb)):
        _, loss = model(x, y)
        (loss / 2).backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, expected[n], atol=1e-6), n


def test_wsd_schedule_holds_then_decays():
    cfg = TrainConfig(lr=1.0, warmup_steps=0, max_steps=100, schedule="wsd", cooldown_frac=0.4, min_lr_ratio=0.0)
    assert lr_at(cfg, 10, 0.1) == 1.0 and lr_at(cfg, 60, 0.6) == 1.0
    assert lr_at(cfg, 80, 0.8) == pytest.approx(0.5)
    assert lr_at(cfg, 100, 1.0) == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="linear")


def test_schedules_end_at_their_floor_and_stay_there_past_the_budget():
    """A time budget can be overrun by the last step (progress past 1): the learning rate stays at its floor.
    With a floor above zero both schedules land exactly on it; a time budget's cosine ignores warmup in its
    progress (the warmup is counted in steps, the decay in time)."""
    for schedule in ("cosine", "wsd"):
        cfg = TrainConfig(lr=2.0, warmup_steps=0, max_steps=100, schedule=schedule, min_lr_ratio=0.1)
        assert lr_at(cfg, 100, 1.0) == pytest.approx(0.2)
        assert lr_at(cfg, 150, 1.5) == pytest.approx(0.2)
    wsd = TrainConfig(lr=1.0, warmup_steps=0, max_steps=100, schedule="wsd", cooldown_frac=0.5, min_lr_ratio=0.2)
    assert lr_at(wsd, 75, 0.75) == pytest.approx(0.6)  # half way down from 1.0 to 0.2
    timed = TrainConfig(lr=1.0, warmup_steps=50, max_steps=10**9, max_time=100.0, min_lr_ratio=0.0)
    assert lr_at(timed, 60, 0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))


def test_muon_trains_and_resumes_exactly(tmp_path, shakespeare_text):
    text = shakespeare_text[:60_000]
    whole = make_run(tmp_path / "whole", text, optimizer="muon", schedule="wsd", max_steps=30)
    Trainer(whole).fit()
    parts = make_run(tmp_path / "parts", text, optimizer="muon", schedule="wsd", max_steps=30)
    trainer = Trainer(parts)

    def stop(event, data):
        if event in ("step", "eval") and data["step"] == 15:
            trainer.request_stop()

    trainer.fit(callbacks=[stop])
    Trainer(parts).fit()
    assert metrics(parts) == metrics(whole)
    records = [r for r in metrics(whole) if "val_loss" in r]
    assert records[-1]["val_loss"] < records[0]["val_loss"]


def test_newton_schulz_batch_equals_one_matrix_at_a_time():
    from core.optim import newton_schulz

    torch.manual_seed(0)
    for shape in ((3, 16, 48), (3, 48, 16)):  # wide and tall: the tall ones are done transposed
        g = torch.randn(*shape)
        batched = newton_schulz(g)
        for i in range(shape[0]):
            assert torch.allclose(batched[i], newton_schulz(g[i]), atol=1e-5)
        # orthogonalised: the singular values are pulled towards 1 (Muon's quintic lands in about 0.7..1.2)
        sv = torch.linalg.svdvals(batched[0])
        assert sv.min() > 0.5 and sv.max() < 1.3
        # it depends on the gradient's direction, not its size: a tiny or a huge gradient gives the same update
        assert torch.allclose(newton_schulz(g * 1e-3), batched, atol=1e-4)
        assert torch.allclose(newton_schulz(g * 1e3), batched, atol=1e-4)


def test_compile_wraps_the_training_step_and_changes_nothing_else(tmp_path, shakespeare_text, monkeypatch):
    """torch.compile is on by default on CUDA only; asked for, it wraps the training forward. Here with
    dynamo's eager backend (no C++ toolchain needed), whose results equal the plain model's."""
    text = shakespeare_text[:60_000]
    plain = make_run(tmp_path / "plain", text, max_steps=12)
    Trainer(plain).fit()
    real_compile, compiled = torch.compile, []

    def eager_compile(module, **kw):
        compiled.append(module)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    run = make_run(tmp_path / "compiled", text, max_steps=12, compile=True)
    Trainer(run).fit()
    assert len(compiled) == 1
    assert metrics(run) == metrics(plain)
    Trainer(make_run(tmp_path / "auto", text, max_steps=2)).fit()  # automatic: not on the CPU
    assert len(compiled) == 1
    with pytest.raises(ConfigError, match="compile"):
        TrainConfig(compile="yes")


def _tiny_gpt():
    torch.manual_seed(0)
    return GPT(preset_config("tiny", 11, n_layer=2, n_head=2, n_embd=8, block_size=8))


def test_make_optimizer_builds_the_groups_and_settings_asked_for():
    """AdamW: the decayed (2-D) and undecayed (1-D) groups with the given learning rate and betas, fused on a CPU.
    Muon: the blocks' matrices in Muon, everything else in AdamW, no parameter in both."""
    from core.optim import Combined, Muon, make_optimizer

    model = _tiny_gpt()
    names = {id(p): n for n, p in model.named_parameters()}
    adamw = make_optimizer(model.optimizer_groups(0.1), "adamw", 0.02, (0.8, 0.95), torch.device("cpu"))
    assert isinstance(adamw, torch.optim.AdamW)
    assert [(g["lr"], g["betas"], g["weight_decay"], g["fused"]) for g in adamw.param_groups] == [
        (0.02, (0.8, 0.95), 0.1, True),
        (0.02, (0.8, 0.95), 0.0, True),
    ]

    muon = make_optimizer(
        model.optimizer_groups(0.1, split_hidden=True), "muon", 0.02, (0.8, 0.95), torch.device("cpu")
    )
    assert isinstance(muon, Combined)
    hidden, rest = muon.optimizers
    assert isinstance(hidden, Muon) and isinstance(rest, torch.optim.AdamW)
    in_muon = [names[id(p)] for g in hidden.param_groups for p in g["params"]]
    in_adamw = [names[id(p)] for g in rest.param_groups for p in g["params"]]
    assert in_muon and all(n.startswith("transformer.h.") and n.endswith(".weight") for n in in_muon)
    assert sorted(in_muon + in_adamw) == sorted(names.values())  # each parameter in exactly one optimizer
    assert [(g["lr"], g["weight_decay"]) for g in hidden.param_groups] == [(0.02, 0.1)]
    assert [(g["lr"], g["betas"], g["weight_decay"], g["fused"]) for g in rest.param_groups] == [
        (0.02, (0.8, 0.95), 0.1, True),
        (0.02, (0.8, 0.95), 0.0, True),
    ]
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(model.optimizer_groups(0.1), "sgd", 0.02, (0.9, 0.95), torch.device("cpu"))


def test_muon_steps_as_defined():
    """Two steps of Muon by hand: Nesterov momentum 0.95, the update orthogonalised with 5 Newton-Schulz steps and
    scaled by 0.2 * sqrt(max dim), decoupled weight decay (none unless asked for)."""
    from core.optim import Muon, newton_schulz

    torch.manual_seed(0)
    grads = [torch.randn(6, 4), torch.randn(6, 4)]
    for wd in (None, 0.1):
        p = torch.nn.Parameter(torch.randn(6, 4))
        expected, buf = p.detach().clone(), torch.zeros(6, 4)
        opt = Muon([p], lr=0.05) if wd is None else Muon([p], lr=0.05, weight_decay=wd)
        for g in grads:
            p.grad = g.clone()
            opt.step()
            buf = 0.95 * buf + 0.05 * g
            update = newton_schulz((0.05 * g + 0.95 * buf)[None], 5)[0]
            expected = expected * (1 - 0.05 * (wd or 0.0)) - 0.05 * 0.2 * 6**0.5 * update
        assert torch.allclose(p.detach(), expected, atol=1e-6), wd


def test_combined_optimizer_clears_gradients_and_refuses_a_foreign_state():
    from core.optim import Combined

    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    both = Combined(torch.optim.SGD([a], lr=0.1), torch.optim.SGD([b], lr=0.1))
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    both.zero_grad()
    assert a.grad is None and b.grad is None  # freed, not zero-filled
    for state in ({"optimizers": [both.optimizers[0].state_dict()]}, {}, [1, 2]):
        with pytest.raises(ValueError, match="different optimizer"):
            both.load_state_dict(state)


@pytest.mark.parametrize(
    "kw",
    [
        dict(batch_size=0),
        dict(max_steps=1.5),
        dict(log_every=True),
        dict(lr=0.0),
        dict(lr=float("inf")),
        dict(max_time=0.0),
        dict(min_lr_ratio=1.5),
        dict(history_snapshots=-1),
        dict(history_snapshots=1.5),
        dict(compile="yes"),
        dict(history_mb=-1),
        dict(history_mb=float("inf")),
        dict(history_mb="10"),
        dict(cooldown_frac=0.0),
        dict(cooldown_frac=1.5),
    ],
)
def test_training_settings_out_of_range_are_refused(kw):
    with pytest.raises(ConfigError):
        TrainConfig(**kw)


def test_training_settings_at_the_edge_of_their_range_are_taken():
    edges = (
        dict(max_time=0.5),
        dict(min_lr_ratio=1.0),
        dict(min_lr_ratio=0.0),
        dict(compile=False),
        dict(history_snapshots=0),
        dict(history_mb=0),
        dict(history_mb=0.5),
        dict(cooldown_frac=1.0),
    )
    for kw in edges:
        TrainConfig(**kw)  # no error


def test_memory_check_keeps_a_tenth_of_the_memory_free(monkeypatch):
    from core import train_config
    from core.model import training_memory

    cfg = preset_config("tiny", 65)
    need = training_memory(cfg, 8)["total"]
    monkeypatch.setattr(train_config, "available_memory", lambda device: int(need / 0.95))
    with pytest.raises(ConfigError, match=r"needs about \d.* to train at batch size 8, but only"):
        train_config.check_memory(cfg, TrainConfig(batch_size=8))
    monkeypatch.setattr(train_config, "available_memory", lambda device: int(need / 0.85))
    train_config.check_memory(cfg, TrainConfig(batch_size=8))  # no error


def test_a_time_budget_counts_the_decay_from_the_start_whatever_the_step_budget():
    timed = TrainConfig(lr=1.0, warmup_steps=50, max_steps=100, max_time=100.0, min_lr_ratio=0.0)
    assert lr_at(timed, 75, 0.75) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.75)))
