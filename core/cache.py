"""Where downloads are kept, and whether downloading is allowed at all.

$NEWLEAF_CACHE (default ~/.cache/newleaf)   Tiny Shakespeare, tiktoken's GPT-2 files, the speed probe
NEWLEAF_OFFLINE=1                            forbids every download (the test suite sets it)
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "NEWLEAF_CACHE"
OFFLINE_ENV = "NEWLEAF_OFFLINE"


def cache_dir() -> Path:
    """$NEWLEAF_CACHE, else ~/.cache/newleaf; created on first use."""
    env = os.environ.get(CACHE_ENV)
    path = Path(env) if env else Path.home() / ".cache" / "newleaf"
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_offline() -> bool:
    """NEWLEAF_OFFLINE=1 forbids every download (the test suite sets it)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")
