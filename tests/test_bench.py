"""The benchmark scripts still run and print their one-line format. CI never runs the full benchmarks (they
take minutes and their figures depend on the machine): this runs the sampling one at a tiny shape, which
also checks the decoder's greedy tokens against transformers' generate() on the same weights."""

import re

import torch

from bench import sampling
from bench.common import report, timed_together
from core import decoder

LINE = re.compile(
    r"^(?P<name>.+): ours (?P<ours>[\d,.]+) (?P<unit>\S+), peer (?P<peer>[\d,.]+) (?P=unit), "
    r"ratio (?P<ratio>[\d.]+)$"
)


def test_sampling_bench_prints_a_line_per_comparison_with_weights_split_across_threads(monkeypatch, capsys):
    monkeypatch.setattr(decoder, "SPLIT_BYTES", 0)  # the split path, whose tokens the bench compares with HF's
    monkeypatch.setattr(decoder, "MIN_SPLIT_COLUMNS", 8)
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ours, peer = sampling.run(
            n_layer=2, n_head=2, n_embd=32, block_size=32, new_tokens=24, repeats=1, uncached=True
        )
    finally:
        torch.set_num_threads(previous)
    lines = capsys.readouterr().out.strip().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    names = [m["name"] for m in parsed]
    assert names == [
        "sampling vs HF generate (2L/32w, 24 tokens)",
        "kv-cache vs no cache (2L/32w, 24 tokens)",
        "sampling int8 (opt-in) vs HF generate (2L/32w, 24 tokens)",
    ]
    for m in parsed:  # the ratio is ours over the peer, as printed (each figure rounded to one decimal)
        o, p = float(m["ours"].replace(",", "")), float(m["peer"].replace(",", ""))
        assert m["unit"] == "tokens/s" and o > 0 and p > 0
        assert (o - 0.05) / (p + 0.05) - 0.005 <= float(m["ratio"]) <= (o + 0.05) / (p - 0.05) + 0.005
    # what run() returns is the first line's pair, the tokens per second of each side
    assert abs(ours - float(parsed[0]["ours"].replace(",", ""))) <= 0.051
    assert abs(peer - float(parsed[0]["peer"].replace(",", ""))) <= 0.051


def test_report_prints_the_ratio_of_ours_to_the_peer(capsys):
    assert report("x", 300.0, 200.0, "tokens/s") == 1.5
    assert capsys.readouterr().out == "x: ours 300.0 tokens/s, peer 200.0 tokens/s, ratio 1.50\n"


def test_the_cache_is_compared_like_with_like(capsys):
    """Both sides decode through the model's own forward (no one-token decoder), give the same tokens, and are
    timed the same way (best of N, in turn)."""
    torch.manual_seed(0)
    model = sampling.GPT(sampling.GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=40, vocab_size=20)).eval()
    prompt = [1, 2, 3]
    assert sampling.ours_cached_forward(model, prompt, 30) == sampling.ours_uncached(model, prompt, 30)
    ratio = sampling.report_cache(model, prompt, 30, repeats=2, shape="tiny")
    assert ratio > 0 and "kv-cache vs no cache (tiny)" in capsys.readouterr().out


def test_timed_together_times_every_contender_in_turn():
    order = []
    best = timed_together({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=0)
    assert order == ["a", "b"] * 3
    assert set(best) == {"a", "b"} and all(t >= 0 for t in best.values())


def test_the_responsiveness_bench_refuses_to_call_an_idle_machine_busy():
    """Its training process must be alive and really training while it measures "busy"."""
    import subprocess
    import sys
    import time

    import pytest

    from bench.responsiveness import PausedOrTraining

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # alive, but does nothing
    try:
        training = PausedOrTraining(sleeper.pid, lambda: sleeper.poll() is None)
        training.busy()
        with pytest.raises(RuntimeError, match="got no CPU time while it was measured as busy"):
            training.idle()
    finally:
        sleeper.kill()
        sleeper.wait()
    with pytest.raises(RuntimeError, match="the training process died"):
        PausedOrTraining(sleeper.pid, lambda: sleeper.poll() is None).busy()
    worker = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # alive and busy: accepted
    try:
        training = PausedOrTraining(worker.pid, lambda: worker.poll() is None)
        training.busy()
        time.sleep(0.3)  # a measurement
        training.idle()
        training.end()
    finally:
        worker.kill()
        worker.wait()


def test_gpu_check_runs_end_to_end_at_a_tiny_shape_on_the_cpu(tmp_path, capsys):
    """bench/gpu_check.py's logic, as it runs on a GPU but tiny and on the CPU: a run trained by the app's trainer,
    its throughput and MFU, the same-step ratio against GPT2LMHeadModel, sampling against transformers' generate()
    on the exported weights, and equal greedy tokens after the reload in transformers."""
    import json

    from bench import gpu_check
    from core import runs

    assert gpu_check.main(["--tiny", "--steps", "20", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("device: CPU; MFU against")
    assert out[1].startswith("train recipe-tiny compile=off: 20 steps, ") and "MFU " in out[1]
    ratios = [line for line in out if LINE.match(line)]
    assert [LINE.match(line)["name"] for line in ratios] == [
        "training step recipe-tiny compile=off",
        "sampling recipe-tiny",
    ]
    assert "reload in transformers recipe-tiny: greedy tokens equal" in out
    summary = json.loads(out[-1])
    assert summary["recipe-tiny compile=off"]["steps"] == 20 and summary["recipe-tiny"]["same"] is True
    assert 0 < summary["recipe-tiny compile=off"]["mfu"] < 1
    assert runs.checkpoint_meta(tmp_path / "recipe-tiny-eager", "last")["step"] == 20


def test_the_hostile_bench_runs_every_attack_and_reports_a_ratio_for_each(monkeypatch, tmp_path, capsys):
    """One repeat of each attack through a real app: each attack sends requests (the bench refuses to report one that
    sent nothing) and each gives its line; the figures themselves are for a quiet machine (BENCHMARKS.md 4b)."""
    from bench import hostile

    monkeypatch.setenv("NEWLEAF_RUNS", str(tmp_path / "runs"))  # the bench points it at its own folder
    ratios = hostile.main(["--repeats", "1"])
    assert set(ratios) == {"uploads", "stops", "disk"} and all(r > 0 for r in ratios.values())
    out = capsys.readouterr().out
    for name in ratios:
        assert f"hostile {name} (victim requests per second, attacked vs idle): ours" in out


def test_the_scaling_sweep_sends_a_model_knob_to_the_model_and_the_rest_to_the_trainer(monkeypatch, tmp_path):
    from bench import scaling  # noqa: PLC0415

    calls = []

    def run_one(rung, budget, text, tokenizer, corpus, threads, steps, train, shape):
        calls.append((rung.lr, budget, steps, train, shape))
        return {"val_bits_per_char": 2.0}

    monkeypatch.setattr(scaling, "run_one", run_one)
    monkeypatch.setattr(scaling, "load_builtin", lambda name: type("C", (), {"text": "abc"}))
    results = tmp_path / "sweep.jsonl"
    scaling.main(["sweep", "--rung", "4L/128", "--budget", "90", "--results", str(results),
                  "--variants", ";dropout=0.1,weight_decay=0.3;lr=8e-3"])  # fmt: skip
    rung_lr = next(r.lr for r in scaling.LADDER if r.name == "4L/128")
    assert calls == [
        (rung_lr, 90.0, None, {}, {}),
        (rung_lr, 90.0, None, {"weight_decay": 0.3}, {"dropout": 0.1}),
        (8e-3, 90.0, None, {}, {}),
    ]
    assert len(results.read_text().splitlines()) == 3
