"""Percentiles of latency samples."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank ``q``-th percentile (0-100) of ascending values; None if empty."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def latency_summary(samples_ns: list[int]) -> dict[str, float | None]:
    """p50/p95/p99/max in ms of latency samples given in ns."""
    values = sorted(s / 1e6 for s in samples_ns)
    return {
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "p99_ms": percentile(values, 99),
        "max_ms": values[-1] if values else None,
    }
