"""A concurrency bound that backs off while the server pushes back (AIMD).

Amplitude allows about 5 concurrent REST requests per project and answers 429 beyond. Every
throttled answer halves the number of requests allowed in flight (never below one); every
``recover_after`` clean responses give one slot back, up to the configured maximum.
"""

from __future__ import annotations

from types import TracebackType

import anyio

__all__ = ["AdaptiveLimiter"]


class AdaptiveLimiter:
    def __init__(self, maximum: int, *, recover_after: int = 4) -> None:
        self.maximum = maximum
        self._limiter = anyio.CapacityLimiter(maximum)
        self._recover_after = recover_after
        self._clean = 0
        self.throttle_events = 0

    @property
    def current(self) -> int:
        return int(self._limiter.total_tokens)

    @property
    def in_flight(self) -> int:
        return self._limiter.borrowed_tokens

    def throttled(self) -> int:
        """The server said slow down: halve the allowed concurrency. Returns the new bound."""
        self.throttle_events += 1
        self._clean = 0
        self._limiter.total_tokens = max(1, self.current // 2)
        return self.current

    def succeeded(self) -> None:
        """A clean response: after enough of them, allow one more request in flight."""
        if self.current >= self.maximum:
            return
        self._clean += 1
        if self._clean >= self._recover_after:
            self._clean = 0
            self._limiter.total_tokens = self.current + 1

    async def __aenter__(self) -> None:
        await self._limiter.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._limiter.release()
