"""Where the model runs: device choice, mixed precision, and how much memory there is."""

from __future__ import annotations

import contextlib
import os
import platform

import torch

from core.errors import ConfigError
from core.messages import Text

DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str = "auto") -> torch.device:
    """CUDA if available, else Apple's MPS, else the CPU; an explicit name must be available."""
    name = (name or "auto").lower()
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("Device 'cuda' was asked for, but no CUDA GPU is available here; use --device cpu.")
        return torch.device(name)
    if name == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError("Device 'mps' was asked for, but Apple's MPS is not available here; use --device cpu.")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    if name != "auto":
        raise ConfigError(f"Unknown device {name!r}; choose one of: {', '.join(DEVICES)} (or cuda:N).")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device) -> str:
    """The hardware in words, for a model card: the GPU's name, or the CPU's architecture and threads."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    threads = torch.get_num_threads()
    return f"CPU ({platform.machine() or 'unknown'}, {threads} thread{'s' if threads != 1 else ''})"


def autocast(device: torch.device):
    """bf16 autocast on CUDA (fast and no loss scaling needed); full fp32 elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def available_memory(device: torch.device | None = None) -> int | None:
    """Bytes free for a new job on the device: the GPU's free memory, or the host's MemAvailable.
    None when unknown (then nothing is refused)."""
    if device is not None and device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    limit = os.environ.get("NEWLEAF_MEMORY_LIMIT_MB")
    if limit:
        return int(float(limit) * 1024 * 1024)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


# torch's generators take seeds up to 2**64 - 1; half of that leaves room for the seed + step of log samples
MAX_SEED = 2**63 - 1


def check_seed(seed) -> None:
    """Refuse a seed torch cannot take, before anything depends on it."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(Text("device.seed", max=MAX_SEED, seed=seed))
