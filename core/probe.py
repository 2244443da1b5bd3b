"""How fast this machine trains: a short measured probe, cached, that turns FLOP counts into seconds.

The probe times a few training steps of a small reference model once per process and device (a fraction of
a second on a CPU) and records the best FLOP rate seen; the estimate for any config is its FLOPs per step
divided by that rate. Cached in-process and in the Newleaf cache directory, keyed by device and thread count.
"""

from __future__ import annotations

import json
import threading
import time

import torch

from core.cache import cache_dir
from core.errors import CheckpointError
from core.files import atomic_write_json
from core.model import GPT, GPTConfig, flops_per_token

_lock = threading.Lock()
_rates: dict[str, float] = {}
PROBE = GPTConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65)
PROBE_BATCH = 8


def _key(device: torch.device) -> str:
    return f"{device.type}-{torch.get_num_threads()}threads-torch{torch.__version__}"


def _cache_file():
    return cache_dir() / "probe.json"


def measure_flops_rate(device: torch.device | str = "cpu", steps: int = 3) -> float:
    """Training FLOP/s reached on the reference model (forward, backward, AdamW)."""
    device = torch.device(device)
    torch.manual_seed(0)
    model = GPT(PROBE).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, PROBE.vocab_size, (PROBE_BATCH, PROBE.block_size), device=device)
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        _, loss = model(x, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - t)
    return flops_per_token(PROBE) * PROBE_BATCH * PROBE.block_size / min(times)


def flops_rate(device: torch.device | str = "cpu") -> float:
    """This machine's FLOP rate: measured once per process and kept as the best seen (also across processes,
    in the cache file). A probe disturbed by other work (a training job, a test run) only ever reads slower,
    so keeping the maximum heals a bad first measurement instead of keeping it forever."""
    device = torch.device(device)
    key = _key(device)
    with _lock:
        if key in _rates:
            return _rates[key]
        try:
            saved = json.loads(_cache_file().read_text())
        except (OSError, ValueError):
            saved = {}
        saved = saved if isinstance(saved, dict) else {}
        before = saved.get(key) if isinstance(saved.get(key), (int, float)) and saved.get(key) > 0 else 0.0
        rate = max(before, measure_flops_rate(device))
        if rate > before:
            try:
                atomic_write_json(_cache_file(), {**saved, key: rate})
            except (OSError, CheckpointError):
                pass  # a read-only cache only costs a re-measure next time
        _rates[key] = rate
        return rate


def estimate_step_seconds(
    cfg: GPTConfig, batch_size: int, grad_accum: int = 1, device: torch.device | str = "cpu"
) -> float:
    tokens = batch_size * grad_accum * cfg.block_size
    return flops_per_token(cfg) * tokens / flops_rate(device)
