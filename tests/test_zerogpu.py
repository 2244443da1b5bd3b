"""ZeroGPU (playground/zerogpu.py): on a Space, the app's GPU work runs in functions decorated with the real
`spaces.GPU` (installed here; off ZeroGPU hardware its decorator is a no-op, so the same functions run on the
CPU); off a Space `spaces` is never imported. On ZeroGPU itself, spaces wraps each of them with the duration it asks
for, training slices included (playground/slices.py). The Space itself is started and used in tests/test_publish.py."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

EXPECTED = {
    "playground.tab_generate.completions_on_gpu": 60,
    "playground.tab_generate.reply_on_gpu": 60,
    "playground.tab_generate.next_token_on_gpu": 15,
    "playground.tab_attention.maps_on_gpu": 15,
    "playground.tab_lens.lens_on_gpu": 15,
    "playground.slices.train_slice": 75,  # a training slice of 45 s, plus loading and the last checkpoint
}

PROBE = """
import json, sys
import playground.tab_generate, playground.tab_attention, playground.tab_lens, playground.slices
from playground import zerogpu
print(json.dumps({
    "spaces": zerogpu.spaces.__name__ if zerogpu.spaces else None,
    "imported": "spaces" in sys.modules,
    "functions": zerogpu.GPU_FUNCTIONS,
    "zero": zerogpu.on_zero_gpu(),
}))
"""


def probe(code=PROBE, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("SPACE_ID", "SPACES_ZERO_GPU")}
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**base, **env}, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_on_a_space_the_gpu_work_is_decorated_by_spaces_with_fitting_durations():
    pytest.importorskip("spaces")
    seen = probe(SPACE_ID="someone/newleaf")
    assert seen["spaces"] == "spaces" and seen["imported"] and not seen["zero"]
    assert seen["functions"] == EXPECTED


# On ZeroGPU hardware: spaces' real decorator, in its ZeroGPU mode, wraps each function. That mode patches torch's CUDA
# when it is imported, which a CPU build of torch (as here) lacks: only that one module of spaces is stood in for; the
# decorator, its wrapper and its client are spaces' own. Nothing is called: no GPU is asked for.
ZERO_PROBE = textwrap.dedent(
    """
    import inspect, json, sys, types
    import torch
    if torch.version.cuda is None:
        stub = types.ModuleType("spaces.zero.torch")
        stub.is_in_bad_fork, stub.patch = (lambda: False), (lambda: None)
        sys.modules["spaces.zero.torch"] = stub
    import playground.tab_generate, playground.tab_attention, playground.tab_lens, playground.slices
    from playground import slices, zerogpu
    from spaces.zero.decorator import decorated_cache
    wrapped = {}
    for module in (playground.tab_generate, playground.tab_attention, playground.tab_lens, slices):
        for name, fn in vars(module).items():
            if inspect.isfunction(fn) and fn in decorated_cache and hasattr(fn, "zerogpu"):
                duration = inspect.getclosurevars(fn).nonlocals["duration"]
                wrapped[f"{fn.__wrapped__.__module__}.{fn.__wrapped__.__qualname__}"] = duration
    print(json.dumps({
        "zero": zerogpu.on_zero_gpu(),
        "wrapped": wrapped,
        "functions": zerogpu.GPU_FUNCTIONS,
        "slice_seconds": slices.slice_length(None),
    }))
    """
)


def test_on_zero_gpu_every_gpu_function_is_wrapped_by_spaces_with_its_duration():
    """Training slices too: on ZeroGPU a job trains in the app's process, in calls of GPU_SECONDS each."""
    pytest.importorskip("spaces")
    from playground import slices

    seen = probe(
        ZERO_PROBE,
        SPACE_ID="someone/newleaf",
        SPACES_ZERO_GPU="true",
        SPACES_ZERO_DEVICE_API_URL="http://127.0.0.1:9/",  # spaces needs one on ZeroGPU; nothing is sent to it
    )
    assert seen["zero"] and seen["functions"] == EXPECTED and seen["wrapped"] == EXPECTED
    assert seen["slice_seconds"] == slices.SLICE_SECONDS
    # the duration fits the slice: its seconds of training, plus the margin for loading and the checkpoint
    assert EXPECTED["playground.slices.train_slice"] == slices.SLICE_SECONDS + slices.SLICE_MARGIN_SECONDS
    assert slices.SLICE_MARGIN_SECONDS >= 20 and slices.GPU_SECONDS <= 120


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


def test_on_zero_gpu_jobs_train_in_slices_and_never_in_a_process_with_a_gpu(tmp_path, monkeypatch):
    """On ZeroGPU a GPU exists only inside the app's spaces.GPU functions: jobs train in slices there
    (playground/slices.py); a training process, were one ever started, would see no GPU rather than reach for one it
    cannot hold. Elsewhere jobs are training processes, as they always were."""
    from playground import slices
    from playground.jobs import Jobs
    from playground.settings import Settings
    from playground.ui import build_app

    monkeypatch.delenv("NEWLEAF_TRAIN_SLICE_SECONDS", raising=False)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.setenv("NEWLEAF_RUNS", str(tmp_path / "runs"))
    _, ctx = build_app(Settings.from_env())
    try:
        assert ctx.jobs.slice_seconds == slices.SLICE_SECONDS
        assert ctx.jobs.cpu_only and ctx.jobs.worker_env()["CUDA_VISIBLE_DEVICES"] == ""
    finally:
        ctx.jobs.shutdown()
    monkeypatch.delenv("SPACES_ZERO_GPU")
    jobs = Jobs(tmp_path / "elsewhere")
    try:
        assert jobs.slice_seconds is None and not jobs.cpu_only
        assert jobs.worker_env().get("CUDA_VISIBLE_DEVICES") == os.environ.get("CUDA_VISIBLE_DEVICES")
    finally:
        jobs.shutdown()
