"""Backoff: the one formula every retry in the package waits by (hours, Delta commit
conflicts, the run guard's probe, the stores' SDK policies, the Dashboard API).

A random wait up to ``base * 2^(attempt-1)``, capped at ``max``: "full jitter" (from 0) for
hours, "equal jitter" (from half) where one thing is tried again, and never less than a
server's ``Retry-After`` (itself capped at ``MAX_RETRY_AFTER_S``). Pure, no I/O.
"""

from __future__ import annotations

import random
from typing import Literal

__all__ = ["MAX_RETRY_AFTER_S", "Jitter", "backoff_delay"]

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
