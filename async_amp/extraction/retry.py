"""Retry policy: when an hour is asked again, after how long, and when it is given up.

Pure functions, no I/O: the pipeline applies them, waiting ``backoff.backoff_delay`` (full
jitter) between attempts. An hour that has used its ``max_attempts`` fails with its last error;
the others go again together when the whole window goes again, else each alone (so one bad
hour cannot keep failing its neighbours).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from ..backoff import backoff_delay

__all__ = ["RetryPlan", "plan_retry"]


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """Which hours go again (in which request groups, after ``delay`` s) and which fail."""

    groups: tuple[tuple[datetime, ...], ...]
    give_up: tuple[datetime, ...]
    delay: float

    @property
    def again(self) -> tuple[datetime, ...]:
        return tuple(h for group in self.groups for h in group)


def plan_retry(
    hours: Sequence[datetime],
    attempts: Mapping[datetime, int],
    *,
    max_attempts: int,
    alone: bool,
    retry_after: float | None,
    base_s: float,
    max_s: float,
    rng: random.Random,
) -> RetryPlan:
    """The retry of ``hours`` (``attempts``: how many each has had). ``alone``: every hour in
    its own request, whatever happens to the others."""
    again = [h for h in hours if attempts[h] < max_attempts]
    give_up = tuple(h for h in hours if attempts[h] >= max_attempts)
    if not again:
        return RetryPlan(groups=(), give_up=give_up, delay=0.0)
    delay = backoff_delay(
        max(attempts[h] for h in again),
        base_s=base_s,
        max_s=max_s,
        retry_after=retry_after,
        rng=rng,
    )
    if alone or len(again) != len(hours):
        groups: tuple[tuple[datetime, ...], ...] = tuple((h,) for h in again)
    else:
        groups = (tuple(again),)
    return RetryPlan(groups=groups, give_up=give_up, delay=delay)
