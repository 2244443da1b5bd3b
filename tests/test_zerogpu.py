"""ZeroGPU (playground/zerogpu.py): on a Space, the app's GPU work runs in functions decorated with the real
`spaces.GPU` (installed here; off ZeroGPU hardware its decorator is a no-op, so the same functions run on the
CPU); off a Space `spaces` is never imported. The Space itself is started and used in tests/test_publish.py."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

EXPECTED = {
    "playground.tab_generate.completions_on_gpu": 60,
    "playground.tab_generate.reply_on_gpu": 60,
    "playground.tab_generate.next_token_on_gpu": 15,
    "playground.tab_attention.maps_on_gpu": 15,
    "playground.tab_lens.lens_on_gpu": 15,
}

PROBE = """
import json, sys
import playground.tab_generate, playground.tab_attention, playground.tab_lens
from playground import zerogpu
print(json.dumps({
    "spaces": zerogpu.spaces.__name__ if zerogpu.spaces else None,
    "imported": "spaces" in sys.modules,
    "functions": zerogpu.GPU_FUNCTIONS,
    "zero": zerogpu.on_zero_gpu(),
}))
"""


def probe(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "SPACES_ZERO_GPU")}
    r = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_on_a_space_the_gpu_work_is_decorated_by_spaces_with_fitting_durations():
    pytest.importorskip("spaces")
    seen = probe(SPACE_ID="someone/newleaf")
    assert seen["spaces"] == "spaces" and seen["imported"] and not seen["zero"]
    assert seen["functions"] == EXPECTED


def test_off_a_space_spaces_is_not_imported():
    seen = probe()
    assert seen["spaces"] is None and not seen["imported"]
    assert seen["functions"] == EXPECTED  # the same functions, undecorated


def test_the_decorator_from_spaces_keeps_plain_functions_and_generators_working(monkeypatch):
    spaces = pytest.importorskip("spaces")
    from playground import zerogpu

    calls = []
    real = spaces.GPU

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(zerogpu, "spaces", spaces)
    monkeypatch.setattr(spaces, "GPU", recording)

    @zerogpu.gpu(7)
    def double(x):
        return 2 * x

    @zerogpu.gpu(9)
    def count(n):
        yield from range(n)

    assert double(21) == 42 and list(count(3)) == [0, 1, 2]
    assert calls == [{"duration": 7}, {"duration": 9}]


def test_on_device_leaves_a_cpu_model_on_the_cpu_without_a_gpu():
    import torch

    from core.model import GPT, preset_config
    from playground.zerogpu import on_device

    model = GPT(preset_config("tiny", 10))
    assert on_device(model) is model
    assert model.transformer.wte.weight.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_on_zero_gpu_training_processes_are_given_no_gpu(tmp_path, monkeypatch):
    """A training job runs in its own process, outside any spaces.GPU function: on ZeroGPU it sees no GPU (and so
    trains on the Space's CPU) instead of reaching for one it cannot hold."""
    from playground.jobs import Jobs
    from playground.settings import Settings
    from playground.ui import build_app

    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("NEWLEAF_RUNS", str(tmp_path / "runs"))
    _, ctx = build_app(Settings.from_env())
    try:
        assert ctx.jobs.cpu_only and ctx.jobs.worker_env()["CUDA_VISIBLE_DEVICES"] == ""
    finally:
        ctx.jobs.shutdown()
    monkeypatch.delenv("SPACES_ZERO_GPU")
    jobs = Jobs(tmp_path / "elsewhere")
    try:
        assert not jobs.cpu_only and jobs.worker_env().get("CUDA_VISIBLE_DEVICES") == os.environ.get(
            "CUDA_VISIBLE_DEVICES"
        )
    finally:
        jobs.shutdown()
