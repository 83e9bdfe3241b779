"""Retry policy: when an hour is asked again, after how long, and when it is given up.

Pure functions, no I/O: the pipeline applies them. Backoff is "full jitter" (a random wait up
to ``base * 2^(attempt-1)``, capped at ``max``) and never undercuts a server's
``Retry-After`` (itself capped at ``MAX_RETRY_AFTER_S``). An hour that has used its
``max_attempts`` fails with its last error; the others go again together when the whole window
goes again, else each alone (so one bad hour cannot keep failing its neighbours).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

__all__ = ["MAX_RETRY_AFTER_S", "RetryPlan", "backoff_delay", "plan_retry"]

MAX_RETRY_AFTER_S = 900.0


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    retry_after: float | None,
    rng: random.Random,
) -> float:
    """Seconds to wait before attempt ``attempt + 1``."""
    delay = rng.uniform(0, min(max_s, base_s * 2 ** (attempt - 1)))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER_S))
    return delay


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
