"""A concurrency bound that backs off while the server pushes back (AIMD).

Amplitude allows about 5 concurrent REST requests per project and answers 429 beyond. A
throttled answer cuts the number of requests allowed in flight to three quarters (never below
one); every ``recover_after`` clean responses give one slot back, up to the configured maximum.

One burst of 429s is one signal: the requests that were already in flight when the bound was
cut carry the old epoch, and their 429s do not cut it again. Without that, 16 requests sent at
once against a limit of 8 would cut 16 -> 8 -> 4 -> 2 -> 1 on a single overload.
"""

from __future__ import annotations

import anyio

__all__ = ["AdaptiveLimiter"]


class AdaptiveLimiter:
    def __init__(self, maximum: int, *, recover_after: int = 4, decrease: float = 0.75) -> None:
        self.maximum = maximum
        self._limiter = anyio.CapacityLimiter(maximum)
        self._recover_after = recover_after
        self._decrease = decrease
        self._clean = 0
        self.epoch = 0
        self.throttle_events = 0

    @property
    def current(self) -> int:
        return int(self._limiter.total_tokens)

    @property
    def in_flight(self) -> int:
        return self._limiter.borrowed_tokens

    def throttled(self, epoch: int | None = None) -> int:
        """The server said slow down. ``epoch`` is the value of ``self.epoch`` when the
        throttled request started; a request older than the last cut does not cut again.
        Returns the bound now in force."""
        self.throttle_events += 1
        if epoch is not None and epoch != self.epoch:
            return self.current
        self.epoch += 1
        self._clean = 0
        self._limiter.total_tokens = max(1, int(self.current * self._decrease))
        return self.current

    def succeeded(self) -> None:
        """A clean response: after enough of them, allow one more request in flight."""
        if self.current >= self.maximum:
            return
        self._clean += 1
        if self._clean >= self._recover_after:
            self._clean = 0
            self._limiter.total_tokens = self.current + 1

    async def acquire(self) -> int:
        """Wait for a slot; returns the epoch to hand back to ``throttled``."""
        await self._limiter.acquire()
        return self.epoch

    def release(self) -> None:
        self._limiter.release()
