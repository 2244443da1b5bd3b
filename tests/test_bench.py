"""The benchmark scripts still run and print their one-line format. CI never runs the full benchmarks (they
take minutes and their figures depend on the machine): this runs the sampling one at a tiny shape, which
also checks the decoder's greedy tokens against transformers' generate() on the same weights."""

import re

import torch

from bench import sampling
from bench.common import timed_together
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
    assert len(lines) == 3  # fp32 vs HF, cached vs not, int8 vs HF
    for line in lines:
        m = LINE.match(line)
        assert m, line
        assert float(m["ratio"]) > 0
    assert ours > 0 and peer > 0


def test_timed_together_times_every_contender_in_turn():
    order = []
    best = timed_together({"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=0)
    assert order == ["a", "b"] * 3
    assert set(best) == {"a", "b"} and all(t >= 0 for t in best.values())


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
