"""The ideal schedule of a run behind the simulator's latency model, to compare walls with:
what a perfect scheduler with the same concurrency would take (docs/benchmarks.md)."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from .results import MB

__all__ = ["ideal_of_log", "ideal_wall", "in_order_wall", "request_cost", "windows_of"]


def windows_of(first: datetime, count: int, width: int) -> list[tuple[datetime, datetime]]:
    """``count`` hours from ``first`` in windows of ``width`` hours (the last may be shorter)."""
    return [
        (first + timedelta(hours=n), first + timedelta(hours=min(n + width, count) - 1))
        for n in range(0, count, width)
    ]


def request_cost(size: int, latency: dict[str, Any]) -> float:
    """Seconds one request takes at the simulator with nothing else in flight."""
    mb = size / MB
    rate = latency.get("mb_per_s_per_conn") or 0
    return latency["fixed_s"] + latency["s_per_mb"] * mb + (mb / rate if rate else 0)


def ideal_wall(sizes: Sequence[int], concurrency: int, latency: dict[str, Any]) -> float:
    """Lower bound on wall time: the work spread perfectly over the usable slots.

    ``max(sum(t_i) / min(c, max_in_flight), max(t_i))``: no schedule can keep more than
    ``min(c, max_in_flight)`` requests busy at once, and none finishes before its longest
    request does.
    """
    costs = [request_cost(s, latency) for s in sizes]
    slots = min(concurrency, latency.get("max_in_flight") or concurrency)
    return max(sum(costs) / slots, *costs)


def ideal_of_log(log: Sequence[Sequence[Any]], concurrency: int, latency: dict[str, Any]) -> float:
    """``ideal_wall`` over the requests a run actually made (200s by size, 404s fixed cost)."""
    sizes = [int(bytes_sent) for _, _, status, bytes_sent in log if status == 200]
    costs = [request_cost(s, latency) for s in sizes]
    costs += [latency["fixed_s"]] * sum(1 for _, _, status, _ in log if status == 404)
    if not costs:
        return 0.0
    slots = min(concurrency, latency.get("max_in_flight") or concurrency)
    return max(sum(costs) / slots, *costs)


def in_order_wall(sizes: Sequence[int], concurrency: int, latency: dict[str, Any]) -> float:
    """Wall time of a bounded pool taking requests in order: each starts when a slot frees.

    What a perfect client with ``c`` slots would get, with no 429s and no overhead; it is
    above ``ideal_wall`` when the requests don't divide evenly over the slots.
    """
    slots = [0.0] * min(concurrency, latency.get("max_in_flight") or concurrency)
    for size in sizes:
        heapq.heapreplace(slots, slots[0] + request_cost(size, latency))
    return max(slots)
