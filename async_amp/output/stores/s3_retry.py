"""botocore's retries for the S3 sink, with a bound on calls that timed out (``S3Sink``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiobotocore.retries import standard
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

from .shared import TIMEOUT_RETRIES, Answers

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["bound_timeout_retries"]

_ID = "retry-config-s3"  # aiobotocore's own handler of needs-retry.s3


def bound_timeout_retries(client: S3Client, max_attempts: int, answers: Answers) -> None:
    """botocore's standard retries (throttling, 5xx, connection errors: ``max_attempts`` in
    all), but a call that timed out (no connection, no answer, no byte of a part taken) is
    tried ``TIMEOUT_RETRIES`` more times at most, as Azure's (``azure_retry``): each such try
    costs a whole timeout, and a store that stalls every call is the run guard's to judge.
    Every try's outcome goes to ``answers``."""
    events = client.meta.events
    events.unregister("needs-retry.s3", unique_id=_ID)
    handler = standard.register_retry_handler(client, max_attempts=max_attempts)
    events.unregister("needs-retry.s3", unique_id=_ID)  # called from ours below

    async def needs_retry(**kwargs: Any) -> float | None:
        caught = kwargs.get("caught_exception")
        if kwargs.get("response") is not None:
            answers.heard()
        elif caught is not None:
            answers.missed()
        timed_out = isinstance(caught, ConnectTimeoutError | ReadTimeoutError)
        if timed_out and int(kwargs.get("attempts", 1)) > TIMEOUT_RETRIES:
            return None
        delay: float | None = await handler.needs_retry(**kwargs)
        return delay

    events.register("needs-retry.s3", needs_retry, unique_id="async-amp-" + _ID)  # type: ignore[arg-type]
