"""The retry policy of every Azure SDK call (``azure.AzureSink``)."""

from __future__ import annotations

import random
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.storage.blob.aio import ExponentialRetry

from ...backoff import backoff_delay
from .shared import TIMEOUT_RETRIES

__all__ = ["RETRY_BACKOFF_MAX_S", "TIMEOUT_RETRIES", "BoundedRetry"]

RETRY_BACKOFF_MAX_S = 30.0


class BoundedRetry(ExponentialRetry):
    """The storage SDK's retry policy (5xx incl. 503 ServerBusy, 408, connection errors) with a
    short first delay, doubling up to a cap, and jitter: ``retries`` tries take seconds, not the
    SDK's default 15 s + 18 s + 24 s.

    A call that timed out (no connection within the connect timeout, no answer or no byte of
    the body taken within the read timeout) is tried once more at most, whatever ``retries``
    says: each such try costs a whole timeout, and a store that stalls every call is the run
    guard's to judge (``guard.RunGuard.store_failed``), not worth four timeouts per call."""

    def __init__(self, *, retries: int, first_s: float, max_s: float = RETRY_BACKOFF_MAX_S) -> None:
        super().__init__(
            initial_backoff=0,
            increment_base=2,
            retry_total=retries,
            random_jitter_range=0,
            # the SDK also keeps separate budgets (3 each) that would cap ``retries`` silently
            retry_connect=retries,
            retry_read=retries,
            retry_status=retries,
        )
        self._first_s = first_s
        self._max_s = max_s
        self._timeout_tries = 1 + min(retries, TIMEOUT_RETRIES)
        self._rng = random.Random()

    def increment(
        self,
        settings: dict[str, Any],
        request: Any,
        response: Any = None,
        error: AzureError | None = None,
    ) -> bool:
        if isinstance(error, ServiceRequestTimeoutError | ServiceResponseTimeoutError):
            settings["timeouts"] = timeouts = settings.get("timeouts", 0) + 1
            if timeouts >= self._timeout_tries:
                return False
        return bool(super().increment(settings, request, response, error))

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        count = max(1, int(settings.get("count", 1)))
        return backoff_delay(
            count, base_s=self._first_s, max_s=self._max_s, rng=self._rng, jitter="equal"
        )
