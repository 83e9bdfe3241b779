"""``reconcile``: the lake's daily figures next to the ones Amplitude's charts show.

Amplitude's Dashboard REST API event segmentation (``GET /api/2/events/segmentation``,
``i=1``: per day, in the project's time zone, by ``event_time``) is asked for totals and
uniques of all events (``_all``) and of each event type asked for, at most two requests in
flight (it shares the 5-concurrent-requests limit with everything else on the project; 429
and 5xx are retried, honouring ``Retry-After``). Each day's figure is set beside the model
tables' (``daily.events`` / ``daily.active_users``; ``daily_events.events`` / ``users``), with
the difference and, where one is known, why they differ: a provisional day (late events may
still arrive), a day never built (outside the extracted range, or ``model`` not run). A final
day that differs by more than ``[models] reconcile_tolerance`` (a share of Amplitude's
figure) fails the reconciliation.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal

import aiohttp
import anyio

from ..backoff import backoff_delay
from ..config import Credentials
from ..errors import CredentialsError, StorageError
from .schema import table
from .store import ModelStore

__all__ = ["Reconciliation", "Row", "ask_amplitude", "compare", "lake_figures"]

SEGMENTATION_PATH = "/api/2/events/segmentation"
IN_FLIGHT = 2
ALL = "_all"
Metric = Literal["events", "users"]
_M = {"events": "totals", "users": "uniques"}
_RNG = random.Random()


@dataclass(frozen=True, slots=True)
class Row:
    """One day, event type and metric: the lake's figure, Amplitude's, and why they differ."""

    day: date
    event_type: str  # ``_all``: every event
    metric: Metric
    lake: int | None  # None: the day is not built
    amplitude: int
    status: str  # final, provisional, not built
    reason: str = ""

    @property
    def difference(self) -> int | None:
        return None if self.lake is None else self.lake - self.amplitude

    def off_by(self, tolerance: float) -> bool:
        """A final day whose figure differs by more than ``tolerance`` of Amplitude's."""
        if self.status != "final" or self.difference is None:
            return False
        return abs(self.difference) > tolerance * abs(self.amplitude)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    project: str
    first: date
    last: date
    tolerance: float
    rows: tuple[Row, ...]

    @property
    def failures(self) -> tuple[Row, ...]:
        return tuple(r for r in self.rows if r.off_by(self.tolerance))

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


async def ask_amplitude(
    base_url: str,
    credentials: Credentials,
    first: date,
    last: date,
    event_types: Sequence[str],
    *,
    connect_timeout_s: float = 30.0,
    read_timeout_s: float = 120.0,
    max_attempts: int = 5,
) -> dict[tuple[str, Metric], list[int]]:
    """Amplitude's per-day figures for every (event type, metric), ``first`` to ``last``."""
    limit = anyio.Semaphore(IN_FLIGHT)
    answers: dict[tuple[str, Metric], list[int]] = {}
    timeout = aiohttp.ClientTimeout(connect=connect_timeout_s, sock_read=read_timeout_s)
    headers = {"Authorization": f"Basic {credentials.basic_token}"}
    url = base_url.rstrip("/") + SEGMENTATION_PATH
    days = (last - first).days + 1

    async def one(session: aiohttp.ClientSession, event: str, metric: Metric) -> None:
        params = {
            "e": json.dumps({"event_type": event}),
            "m": _M[metric],
            "start": f"{first:%Y%m%d}",
            "end": f"{last:%Y%m%d}",
            "i": "1",
        }
        for attempt in range(1, max_attempts + 1):
            async with limit, session.get(url, params=params) as response:
                if response.status in (401, 403):
                    msg = (
                        f"Amplitude refused the keys for the Dashboard REST API "
                        f"(HTTP {response.status}): check AMP_API_KEY/AMP_SECRET_KEY and "
                        "the region"
                    )
                    raise CredentialsError(msg)
                if response.status == 200:
                    series = _series(await response.json(content_type=None), days)
                    answers[(event, metric)] = series
                    return
                retry_after = response.headers.get("Retry-After", "")
                status = response.status
            if status not in (429, 500, 502, 503, 504) or attempt == max_attempts:
                msg = f"event segmentation of {event!r} answered HTTP {status}"
                raise StorageError(msg)
            after = float(retry_after) if retry_after.isdigit() else None
            wait = backoff_delay(attempt, base_s=1.0, max_s=60.0, rng=_RNG, retry_after=after)
            await anyio.sleep(min(wait, 900.0))

    try:
        async with (
            aiohttp.ClientSession(headers=headers, timeout=timeout) as session,
            anyio.create_task_group() as tg,
        ):
            for event in (ALL, *event_types):
                for metric in ("events", "users"):
                    tg.start_soon(one, session, event, metric)
    except* (CredentialsError, StorageError) as group:
        raise group.exceptions[0] from None
    except* (aiohttp.ClientError, TimeoutError) as group:
        msg = f"cannot reach Amplitude's Dashboard REST API at {base_url}: {group.exceptions[0]}"
        raise StorageError(msg) from None
    return answers


def _series(body: Any, days: int) -> list[int]:
    try:
        values = [int(v) for v in body["data"]["series"][0]]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        msg = f"event segmentation answered something unexpected: {exc!r}"
        raise StorageError(msg) from None
    if len(values) != days:
        msg = f"event segmentation answered {len(values)} days, not {days}"
        raise StorageError(msg)
    return values


async def lake_figures(
    store: ModelStore, first: date, last: date
) -> tuple[dict[tuple[date, str, Metric], int], dict[date, str]]:
    """The model tables' figures per (day, event type, metric), and each built day's status."""
    figures: dict[tuple[date, str, Metric], int] = {}
    status: dict[date, str] = {}
    for row in (await store.read_days(table("daily"), first, last)).to_pylist():
        status[row["day"]] = row["status"]
        figures[(row["day"], ALL, "events")] = row["events"]
        figures[(row["day"], ALL, "users")] = row["active_users"]
    for row in (await store.read_days(table("daily_events"), first, last)).to_pylist():
        if row["event_type"] is not None:
            figures[(row["day"], row["event_type"], "events")] = row["events"]
            figures[(row["day"], row["event_type"], "users")] = row["users"]
    return figures, status


def compare(
    project: str,
    first: date,
    last: date,
    answers: Mapping[tuple[str, Metric], list[int]],
    figures: Mapping[tuple[date, str, Metric], int],
    status: Mapping[date, str],
    *,
    tolerance: float,
    extracted: Mapping[date, str],
) -> Reconciliation:
    """The rows, day by day (``extracted``: a reason per day known to lack hours)."""
    rows = []
    for (event, metric), series in sorted(answers.items()):
        for k, theirs in enumerate(series):
            day = first + timedelta(days=k)
            built = status.get(day)
            if built is None:
                why = extracted.get(day, "not built: run async-amp model for it")
                rows.append(Row(day, event, metric, None, theirs, "not built", why))
                continue
            ours = figures.get((day, event, metric), 0)
            reason = ""
            if ours != theirs:
                reason = extracted.get(day, "") or (
                    "provisional: late events may still arrive" if built != "final" else ""
                )
            rows.append(Row(day, event, metric, ours, theirs, built, reason))
    rows.sort(key=lambda r: (r.day, r.event_type != ALL, r.event_type, r.metric))
    return Reconciliation(project, first, last, tolerance, tuple(rows))
