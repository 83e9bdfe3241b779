"""Faults the simulated Export API can inject, and the plans that decide when.

A plan is any ``Callable[[RequestInfo], Fault | Injection | None]``: it sees each request's
window and attempt number and answers what goes wrong, if anything. ``FaultPlan`` has the
ready-made ones (on the first attempts, always, every n-th hour, at random, chained).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from async_amp.simulator.dataset import hours_between, utc_hour
from async_amp.simulator.site_model import _mix, _unit

__all__ = ["Fault", "FaultFn", "FaultPlan", "Injection", "RequestInfo"]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class Fault(enum.Enum):
    """What can go wrong with one export request."""

    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"  # with Retry-After
    HTTP_504 = "http_504"  # the real API's "export timed out"
    HTTP_429 = "http_429"  # with Retry-After
    HTTP_400 = "http_400"  # the real API's "export would exceed 4 GB"
    RESET_BEFORE_HEADERS = "reset_before_headers"  # TCP connection closed, no response
    CUT_BODY = "cut_body"  # Content-Length promised, connection aborted half way
    ZIP_TRUNCATED = "zip_truncated"  # body ends cleanly, but the ZIP stops mid-member
    CORRUPT_GZIP = "corrupt_gzip"  # a member's gzip is broken; the ZIP CRC matches it
    MISSING_PARTITION = "missing_partition"  # one page of the hour is not in the ZIP
    STALL = "stall"  # half the body, then silence for ``stall_s`` seconds
    UNSAFE_NAME = "unsafe_name"  # an extra member named like ``../../evil.json.gz``
    HTML_200 = "html_200"  # 200 with an HTML error page
    EMPTY_ZIP = "empty_zip"  # a valid ZIP with no members
    FOREIGN_MEMBER = "foreign_member"  # an extra member for an hour outside the window
    DUPLICATE_MEMBER = "duplicate_member"  # the same member twice

    @property
    def status(self) -> int | None:
        """The HTTP status of a fault that is just an error status, else None."""
        return _FAULT_STATUS.get(self)


_FAULT_STATUS: Final[dict[Fault, int]] = {
    Fault.HTTP_500: 500,
    Fault.HTTP_502: 502,
    Fault.HTTP_503: 503,
    Fault.HTTP_504: 504,
    Fault.HTTP_429: 429,
    Fault.HTTP_400: 400,
}
_FAULT_BODY: Final[dict[Fault, str]] = {
    Fault.HTTP_500: "Internal Server Error",
    Fault.HTTP_502: "Bad Gateway",
    Fault.HTTP_503: "Service Unavailable",
    Fault.HTTP_504: "Gateway Timeout: the export took too long, try a shorter range",
    Fault.HTTP_429: "Too many concurrent requests for this project",
    Fault.HTTP_400: "Raw data response exceeds 4GB limit, please shorten the time range",
}
_CONTENT_FAULTS: Final = frozenset(
    {
        Fault.ZIP_TRUNCATED,
        Fault.CORRUPT_GZIP,
        Fault.MISSING_PARTITION,
        Fault.UNSAFE_NAME,
        Fault.FOREIGN_MEMBER,
        Fault.DUPLICATE_MEMBER,
    }
)
_HTML_ERROR: Final = (
    "<!DOCTYPE html>\n<html><head><title>Amplitude | Something went wrong</title></head>"
    "<body><h1>We're sorry, but something went wrong.</h1>"
    "<p>Please try again later.</p></body></html>\n"
)


# --------------------------------------------------------------------------- fault plans


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What a fault plan sees: the requested window and which attempt at it this is."""

    start: datetime
    end: datetime
    attempt: int  # 1 for the first request of this exact window, then 2, 3...

    @property
    def hours(self) -> list[datetime]:
        return hours_between(self.start, self.end)


@dataclass(frozen=True, slots=True)
class Injection:
    """A fault aimed at one hour of the window (content faults act on that hour)."""

    fault: Fault
    hour: datetime | None = None


FaultFn = Callable[[RequestInfo], "Fault | Injection | None"]


@dataclass(frozen=True, slots=True)
class _ByHour:
    faults: Mapping[datetime, Fault]
    attempts: int | None  # fault while attempt <= attempts; None: always

    def __call__(self, info: RequestInfo) -> Injection | None:
        if self.attempts is not None and info.attempt > self.attempts:
            return None
        hits = [h for h in self.faults if info.start <= h <= info.end]
        if not hits:
            return None
        hour = min(hits)
        return Injection(self.faults[hour], hour)


@dataclass(frozen=True, slots=True)
class _EveryNth:
    n: int
    fault: Fault
    offset: int

    def __call__(self, info: RequestInfo) -> Injection | None:
        if info.attempt != 1:
            return None
        for hour in info.hours:
            if (_hour_index(hour) - self.offset) % self.n == 0:
                return Injection(self.fault, hour)
        return None


@dataclass(frozen=True, slots=True)
class _Random:
    rate: float
    seed: int
    kinds: tuple[Fault, ...]

    def __call__(self, info: RequestInfo) -> Injection | None:
        if info.attempt != 1 or not self.kinds:
            return None
        a, b = _hour_index(info.start), _hour_index(info.end)
        if _unit(self.seed, a, b, 0xFA17) >= self.rate:
            return None
        kind = self.kinds[_mix(self.seed, a, b, 0xC0DE) % len(self.kinds)]
        hours = info.hours
        return Injection(kind, hours[_mix(self.seed, a, b, 0x40) % len(hours)])


@dataclass(frozen=True, slots=True)
class _Chain:
    plans: tuple[FaultFn, ...]

    def __call__(self, info: RequestInfo) -> Fault | Injection | None:
        for plan in self.plans:
            chosen = plan(info)
            if chosen is not None:
                return chosen
        return None


class FaultPlan:
    """Ready-made fault plans; any ``Callable[[RequestInfo], Fault | Injection | None]`` works.

    Plans keyed by hour fire for every window that contains the hour (the earliest such
    hour when several match), and content faults then act on that hour.
    """

    @staticmethod
    def on_first_attempt(faults: Mapping[datetime, Fault]) -> FaultFn:
        """Each window containing one of the hours fails once, then succeeds."""
        return _ByHour(_normalise(faults), 1)

    @staticmethod
    def on_first_attempts(faults: Mapping[datetime, Fault], attempts: int) -> FaultFn:
        """Fail the first ``attempts`` tries of each window containing one of the hours."""
        return _ByHour(_normalise(faults), attempts)

    @staticmethod
    def always(faults: Mapping[datetime, Fault]) -> FaultFn:
        """The fault never clears: every attempt fails the same way."""
        return _ByHour(_normalise(faults), None)

    @staticmethod
    def every_nth_hour_first_attempt(n: int, fault: Fault, *, offset: int = 0) -> FaultFn:
        """First attempts fail for windows holding an hour whose index % n == offset."""
        if n < 1:
            msg = "n must be >= 1"
            raise ValueError(msg)
        return _EveryNth(n, fault, offset)

    @staticmethod
    def random(rate: float, seed: int = 0, kinds: Iterable[Fault] | None = None) -> FaultFn:
        """A deterministic ``rate`` of windows fail their first attempt with one of ``kinds``.

        The choice depends only on (seed, window), never on request order, so a run with
        concurrency is reproducible. Default kinds: every fault except STALL.
        """
        chosen = (
            tuple(kinds) if kinds is not None else tuple(f for f in Fault if f is not Fault.STALL)
        )
        return _Random(rate, seed, chosen)

    @staticmethod
    def chain(*plans: FaultFn) -> FaultFn:
        """The first plan that picks a fault wins."""
        return _Chain(plans)


def _normalise(faults: Mapping[datetime, Fault]) -> dict[datetime, Fault]:
    return {utc_hour(h): f for h, f in faults.items()}


def _hour_index(hour: datetime) -> int:
    return int((hour - _EPOCH).total_seconds()) // 3600
