"""``status``: which hours of a range are complete, empty, missing, not yet available, or
have an unreadable manifest, per day, from the manifests alone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal

from ..hours import available_until, hour_range, iso_hour
from .bounded import map_bounded
from .range import RangeReport

if TYPE_CHECKING:  # only typed with it: status loads no sink module of its own
    from ..output.stores.base import Sink

HourState = Literal["complete", "empty", "missing", "not_available", "invalid"]
STATES: tuple[HourState, ...] = ("complete", "empty", "missing", "not_available", "invalid")
STRIP_CHARS: dict[HourState, str] = {
    "complete": "#",
    "empty": ".",
    "missing": "-",
    "not_available": " ",
    "invalid": "!",
}
OUTSIDE_RANGE = "_"
LEGEND: dict[str, str] = {
    "#": "complete",
    ".": "empty (Amplitude had no data)",
    "-": "missing (no manifest)",
    " ": "not yet available",
    "!": "unreadable manifest",
    OUTSIDE_RANGE: "outside --start/--end",
}


# --- status -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HourStatus:
    """One hour as its manifest (or the lack of one) shows it."""

    hour: datetime
    state: HourState
    events: int = 0
    bytes: int = 0
    files: int = 0
    detail: str = ""  # why a manifest is unreadable
    received_bytes: int = 0  # as Amplitude sent the hour's members (.json.gz bytes)
    ndjson_bytes: int = 0  # decompressed; ``bytes`` is what is stored
    quarantined: int = 0  # lines kept in the hour's quarantine file instead of rows

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hour": iso_hour(self.hour),
            "state": self.state,
            "events": self.events,
            "bytes": self.bytes,
            "received_bytes": self.received_bytes,
            "ndjson_bytes": self.ndjson_bytes,
            "files": self.files,
        }
        if self.detail:
            out["detail"] = self.detail
        if self.quarantined:
            out["quarantined"] = self.quarantined
        return out


def _count(hours: Sequence[HourStatus], state: HourState) -> int:
    return sum(1 for h in hours if h.state == state)


@dataclass(frozen=True, slots=True)
class DayStatus:
    """The hours of one UTC day that fall inside the range (all 24 unless the range cuts it)."""

    day: date
    hours: tuple[HourStatus, ...]

    def count(self, state: HourState) -> int:
        return _count(self.hours, state)

    @property
    def events(self) -> int:
        return sum(h.events for h in self.hours)

    @property
    def bytes(self) -> int:
        return sum(h.bytes for h in self.hours)

    @property
    def strip(self) -> str:
        """24 characters, one per hour of the day (``STRIP_CHARS``; ``_`` outside the range)."""
        cells = [OUTSIDE_RANGE] * 24
        for status in self.hours:
            cells[status.hour.hour] = STRIP_CHARS[status.state]
        return "".join(cells)

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.day.isoformat(),
            **{state: self.count(state) for state in STATES},
            "events": self.events,
            "bytes": self.bytes,
            "strip": self.strip,
            "hours": [h.to_json() for h in self.hours],
        }


@dataclass(frozen=True, slots=True)
class StatusReport(RangeReport):
    now: datetime
    lag_hours: int
    days: tuple[DayStatus, ...]

    @property
    def hours(self) -> tuple[HourStatus, ...]:
        return tuple(h for day in self.days for h in day.hours)

    @property
    def available_until(self) -> datetime:
        return available_until(self.now, self.lag_hours)

    def counted(self) -> tuple[HourStatus, ...]:
        return self.hours

    def count(self, state: HourState) -> int:
        return _count(self.hours, state)

    def hours_in(self, state: HourState) -> list[datetime]:
        return [h.hour for h in self.hours if h.state == state]

    def to_json(self) -> dict[str, Any]:
        return {
            **self.head_json(),
            "now": self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "availability_lag_hours": self.lag_hours,
            "available_until": iso_hour(self.available_until),
            "legend": LEGEND,
            "totals": {
                "hours": len(self.hours),
                **{state: self.count(state) for state in STATES},
                "events": self.events,
                "bytes": self.bytes,
                "received_bytes": sum(h.received_bytes for h in self.hours),
                "ndjson_bytes": sum(h.ndjson_bytes for h in self.hours),
                "files": self.files,
            },
            "missing_hours": [iso_hour(h) for h in self.hours_in("missing")],
            "invalid_hours": [iso_hour(h) for h in self.hours_in("invalid")],
            "days": [d.to_json() for d in self.days],
        }


async def read_status(
    sink: Sink,
    project: str,
    first: datetime,
    last: datetime,
    *,
    now: datetime,
    lag_hours: int,
    concurrency: int = 8,
) -> StatusReport:
    """The state of every hour from ``first`` to ``last`` (inclusive), grouped by UTC day.

    One ``completed_hours`` call finds the hours with a manifest; only those manifests are read
    (``concurrency`` at a time). A manifest always wins: an hour that has one is complete or
    empty even if it is newer than the availability lag.
    """
    hours = list(hour_range(first, last))
    newest = available_until(now, lag_hours)
    done = sorted(await sink.completed_hours(project, hours))

    async def read(hour: datetime) -> HourStatus | None:
        try:
            manifest = await sink.read_manifest(project, hour)
        except (ValueError, OSError) as exc:
            return HourStatus(hour, "invalid", detail=str(exc))
        if manifest is None:  # removed since the listing
            return None
        if manifest.status not in ("complete", "empty"):
            return HourStatus(hour, "invalid", detail=f"unknown status {manifest.status!r}")
        return HourStatus(
            hour,
            manifest.status,
            events=manifest.events,
            bytes=manifest.size,
            files=manifest.file_count,
            received_bytes=manifest.received_bytes,
            ndjson_bytes=manifest.ndjson_bytes,
            quarantined=manifest.quarantined,
        )

    found = await map_bounded(done, read, concurrency)
    days: dict[date, list[HourStatus]] = {}
    for hour in hours:
        status = found.get(hour) or HourStatus(
            hour, "not_available" if hour > newest else "missing"
        )
        days.setdefault(hour.date(), []).append(status)
    return StatusReport(
        project=project,
        where=sink.describe(),
        first=first,
        last=last,
        now=now,
        lag_hours=lag_hours,
        days=tuple(DayStatus(day, tuple(items)) for day, items in days.items()),
    )
