"""The speed probe behind the app's time estimates."""

import json

from core import probe


def test_a_disturbed_first_measurement_is_healed_by_the_next_process(tmp_path, monkeypatch):
    monkeypatch.setenv("NEWLEAF_CACHE", str(tmp_path))
    measured = iter([1e9, 5e10, 2e10])  # busy machine, quiet machine, busy again
    monkeypatch.setattr(probe, "measure_flops_rate", lambda device="cpu": next(measured))
    rates = []
    for _ in range(3):  # three app starts: a fresh process cache each time
        monkeypatch.setattr(probe, "_rates", {})
        rates.append(probe.flops_rate("cpu"))
    assert rates == [1e9, 5e10, 5e10]
    assert list(json.loads((tmp_path / "probe.json").read_text()).values()) == [5e10]
    assert probe.flops_rate("cpu") == 5e10  # within a process: measured once


def test_the_estimate_follows_the_flop_count(monkeypatch):
    from core.model import GPTConfig

    monkeypatch.setattr(probe, "_rates", {})
    monkeypatch.setattr(probe, "flops_rate", lambda device="cpu": 1e10)
    small = GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, vocab_size=65)
    big = GPTConfig(n_layer=4, n_head=2, n_embd=64, block_size=32, vocab_size=65)
    assert probe.estimate_step_seconds(big, 8) > probe.estimate_step_seconds(small, 8) > 0
    assert probe.estimate_step_seconds(small, 16) == 2 * probe.estimate_step_seconds(small, 8)
