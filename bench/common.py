"""Helpers shared by the benchmarks: best-of-N timing and the one-line report format."""

from __future__ import annotations

import time


def timed(fn, repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time of `repeats` calls after `warmup` calls: the least disturbed by other work."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def timed_together(fns: dict, repeats: int = 3, warmup: int = 1) -> dict:
    """Best wall time of each function, the calls taken in turn (a, b, a, b, ...): a slow spell on a shared
    machine then hits every contender rather than whichever happened to run during it."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def report(name: str, ours: float, peer: float, unit: str) -> float:
    """Print `NAME: ours X, peer Y, ratio Z` (higher is better for ours) and return the ratio."""
    ratio = ours / peer
    print(f"{name}: ours {ours:,.1f} {unit}, peer {peer:,.1f} {unit}, ratio {ratio:.2f}", flush=True)
    return ratio
