"""Retry policy: when an hour is asked again, after how long, and when it is given up.

Pure functions, no I/O: the pipeline applies them. Backoff (``backoff_delay``, the one formula
every retry in the package uses: hours, Delta commit conflicts, the run guard's probe, the
Azure SDK's policy) is a random wait up to ``base * 2^(attempt-1)``, capped at ``max``: "full
jitter" (from 0) for hours, "equal jitter" (from half) where one thing is tried again, and
never undercuts a server's ``Retry-After`` (itself capped at ``MAX_RETRY_AFTER_S``). An hour
that has used its
``max_attempts`` fails with its last error; the others go again together when the whole window
goes again, else each alone (so one bad hour cannot keep failing its neighbours).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["MAX_RETRY_AFTER_S", "Jitter", "RetryPlan", "backoff_delay", "plan_retry"]

MAX_RETRY_AFTER_S = 900.0

Jitter = Literal["full", "equal"]


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    rng: random.Random,
    retry_after: float | None = None,
    jitter: Jitter = "full",
) -> float:
    """Seconds to wait before attempt ``attempt + 1`` (``attempt`` >= 1 tries so far).

    The ceiling ``base_s * 2^(attempt-1)``, capped at ``max_s``, is jittered: ``"full"``, a
    wait anywhere from 0 to it (retries of many hours spread out); ``"equal"``, from half of it
    (one thing tried again waits about as planned). Never less than ``retry_after``.
    """
    ceiling = min(max_s, base_s * 2.0 ** min(attempt - 1, 64))  # 2^64: past any cap, no overflow
    delay = rng.uniform(ceiling / 2 if jitter == "equal" else 0.0, ceiling)
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
