"""Sizes and counts written for people: "12,345 bytes", "3.5 MB", "1.2 GB"; "156.22K" parameters."""

from __future__ import annotations

KB, MB, GB = 1024, 1024**2, 1024**3


def format_bytes(n: float) -> str:
    """Bytes in the unit a person reads best. Small sizes (tests, custom limits) stay exact bytes, so a message
    never says '0.0 MB'; from 100 KB on, MB or GB with one decimal (dropped when it is 0)."""
    if abs(n) < 100 * KB:
        return f"{int(n):,} bytes"
    value, unit = (n / GB, "GB") if abs(n) >= GB else (n / MB, "MB")
    text = f"{value:,.1f}"
    return f"{text[:-2] if text.endswith('.0') else text} {unit}"


def format_count(n: float) -> str:
    """A large count with a K / M / B suffix (two decimals), a small one as it is."""
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))
