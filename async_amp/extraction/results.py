"""What an extraction returns: frozen, typed values, the same facts the CLI prints.

``ExtractResult`` holds one ``ProjectResult`` per project; ``exit_code`` is the CLI's (0: every
available hour is complete or empty; 1: some are not); ``raise_for_failures()`` turns the
second case into ``IncompleteExtraction``; ``to_json()`` is the CLI's ``--summary-json``.
``RunSummary`` is the tally a project's run counts into; a ``ProjectResult`` is its frozen copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ..errors import AsyncAmpError
from ..hours import iso_hour
from .plan import Plan

if TYPE_CHECKING:  # readback's checks load the streaming core; results are only typed with them
    from ..readback import StatusReport, VerifyReport

__all__ = [
    "ExtractResult",
    "FailedHour",
    "HourResult",
    "IncompleteExtraction",
    "MergedIdsResult",
    "ProjectResult",
    "RunSummary",
    "StatusResult",
    "VerifyResult",
]


@dataclass(frozen=True, slots=True)
class HourResult:
    """How one hour ended: committed (complete or empty) or failed after its last attempt."""

    hour: datetime
    status: Literal["complete", "empty", "failed"]
    attempts: int
    events: int = 0
    bytes: int = 0  # stored: what the hour's files hold, in its format
    files: int = 0
    error: str = ""
    project: str = ""
    received_bytes: int = 0  # the hour's members as Amplitude sent them (.json.gz bytes)
    ndjson_bytes: int = 0  # the same, decompressed
    recheck: Literal["", "unchanged", "changed", "kept"] = ""  # ``--recheck``: what it found
    quarantined: int = 0  # lines kept in the hour's quarantine file instead of rows


@dataclass(frozen=True, slots=True)
class FailedHour:
    """An hour still incomplete after every attempt, and the last error it met."""

    project: str
    hour: datetime
    error: str
    attempts: int


@dataclass(frozen=True, slots=True)
class MergedIdsResult:
    """What a run did with the export's merged-IDs feed (the ``merged_ids`` table)."""

    hours: int = 0  # hours read and committed
    rows: int = 0
    bytes_read: int = 0
    skipped: int = 0  # hours the table already had (unchanged)
    changed: tuple[datetime, ...] = ()  # hours Amplitude rewrote, replaced
    failed: tuple[tuple[datetime, str], ...] = ()  # hours still unread after every attempt

    def to_json(self) -> dict[str, Any]:
        return {
            "hours": self.hours,
            "rows": self.rows,
            "bytes_read": self.bytes_read,
            "skipped": self.skipped,
            "changed_hours": [iso_hour(h) for h in self.changed],
            "failed_hours": [iso_hour(h) for h, _ in self.failed],
        }


@dataclass(frozen=True, slots=True)
class ProjectResult:
    """One project's run: how many hours ended in which state, and what it cost."""

    name: str
    plan: Plan = field(repr=False)
    results: tuple[HourResult, ...] = field(default=(), repr=False)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes_downloaded: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why the run stopped starting hours (one line), else ""
    merged_ids: MergedIdsResult | None = None  # the merged-IDs feed, when the export has one

    def count(self, status: str) -> int:
        """Hours that ended ``complete``, ``empty`` or ``failed``."""
        return sum(1 for r in self.results if r.status == status)

    @property
    def complete(self) -> int:
        return self.count("complete")

    @property
    def empty(self) -> int:
        return self.count("empty")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def in_order(self) -> tuple[HourResult, ...]:
        """The hours' results, oldest hour first."""
        return tuple(sorted(self.results, key=lambda r: r.hour))

    @property
    def skipped(self) -> int:
        """Hours already complete before the run (not asked again)."""
        return len(self.plan.done)

    @property
    def not_available(self) -> int:
        """Hours too recent to export (``availability_lag_hours``)."""
        return len(self.plan.not_available)

    @property
    def unfinished(self) -> int:
        """Hours the run meant to fetch but never finished (it was stopped)."""
        return len(self.plan.to_fetch) - len(self.results)

    @property
    def events(self) -> int:
        return sum(r.events for r in self.results)

    @property
    def bytes_written(self) -> int:
        """Bytes stored: what the committed hours' files hold (Parquet: the Parquet files)."""
        return sum(r.bytes for r in self.results)

    @property
    def bytes_received(self) -> int:
        """The committed hours' members as Amplitude sent them (``bytes_downloaded``: every
        response, retries and ZIP framing included)."""
        return sum(r.received_bytes for r in self.results)

    @property
    def bytes_ndjson(self) -> int:
        """The committed hours' NDJSON: their members decompressed."""
        return sum(r.ndjson_bytes for r in self.results)

    @property
    def failed_hours(self) -> tuple[FailedHour, ...]:
        return tuple(
            FailedHour(self.name, r.hour, r.error, r.attempts)
            for r in self.in_order
            if r.status == "failed"
        )

    @property
    def rechecked(self) -> int:
        """Complete hours asked again (``--recheck``)."""
        return sum(1 for r in self.results if r.recheck)

    @property
    def changed_hours(self) -> tuple[datetime, ...]:
        """Rechecked hours that came back different, and were replaced."""
        return tuple(sorted(r.hour for r in self.results if r.recheck == "changed"))

    @property
    def quarantined_hours(self) -> tuple[HourResult, ...]:
        """Hours committed with lines kept in their quarantine file."""
        return tuple(r for r in self.in_order if r.quarantined)

    @property
    def mb_per_s(self) -> float:
        """MB of NDJSON extracted a second, whatever the format stores."""
        return round(self.bytes_ndjson / 1e6 / self.seconds, 1) if self.seconds else 0

    @property
    def exit_code(self) -> int:
        merged_failed = self.merged_ids is not None and self.merged_ids.failed
        return 1 if self.failed or self.unfinished or self.stopped or merged_failed else 0

    def to_json(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "hours_requested": len(self.plan.hours),
            "complete": self.complete,
            "empty": self.empty,
            "failed": self.failed,
            "skipped": self.skipped,
            "not_available": self.not_available,
            "failed_hours": [iso_hour(f.hour) for f in self.failed_hours],
            "not_available_hours": [iso_hour(h) for h in self.plan.not_available],
            "events": self.events,
            "bytes_written": self.bytes_written,
            "bytes_stored": self.bytes_written,
            "bytes_ndjson": self.bytes_ndjson,
            "bytes_received": self.bytes_received,
            "bytes_downloaded": self.bytes_downloaded,
            "requests": self.requests,
            "retries": self.retries,
            "throttled": self.throttled,
            "seconds": round(self.seconds, 3),
            "mb_per_s": self.mb_per_s,
            "exit_code": self.exit_code,
            "stopped": self.stopped,
            "rechecked": self.rechecked,
            "changed": len(self.changed_hours),
            "changed_hours": [iso_hour(h) for h in self.changed_hours],
            "quarantined_lines": sum(r.quarantined for r in self.quarantined_hours),
            "quarantined_hours": [iso_hour(r.hour) for r in self.quarantined_hours],
            **({"merged_ids": self.merged_ids.to_json()} if self.merged_ids is not None else {}),
        }


@dataclass(slots=True)
class RunSummary:
    """One project's tally while its run goes (the flow counts into it). Every figure read
    from it, the exit code included, is its frozen copy's (:meth:`result`, the API's
    ``ProjectResult``): computed in one place."""

    run_id: str
    plan: Plan
    project: str = ""
    results: dict[datetime, HourResult] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    bytes_in: int = 0
    seconds: float = 0.0
    stopped: str = ""  # why the run stopped starting hours (one line), else ""

    def result(self, project: str | None = None) -> ProjectResult:
        """A frozen copy of the tally, as the API returns it."""
        return ProjectResult(
            name=self.project if project is None else project,
            plan=self.plan,
            results=tuple(self.results.values()),
            requests=self.requests,
            retries=self.retries,
            throttled=self.throttled,
            bytes_downloaded=self.bytes_in,
            seconds=self.seconds,
            stopped=self.stopped,
        )

    def count(self, status: str) -> int:
        return self.result().count(status)

    @property
    def failed(self) -> list[HourResult]:
        """The failed hours, in order."""
        return [r for r in self.result().in_order if r.status == "failed"]

    @property
    def events(self) -> int:
        return self.result().events

    @property
    def bytes_written(self) -> int:
        return self.result().bytes_written

    @property
    def exit_code(self) -> int:
        return self.result().exit_code


@dataclass(frozen=True, slots=True)
class ExtractResult:
    """A whole run: every selected project, into one sink."""

    run_id: str
    sink: str
    projects: tuple[ProjectResult, ...]
    seconds: float = 0.0
    interrupted: bool = False
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        """0 when every available hour is complete or empty, else 1 (as the CLI's)."""
        if self.dry_run:
            return 0
        if self.interrupted:
            return 1
        return max((p.exit_code for p in self.projects), default=0)

    @property
    def failed_hours(self) -> tuple[FailedHour, ...]:
        return tuple(f for p in self.projects for f in p.failed_hours)

    def project(self, name: str) -> ProjectResult:
        """The result of the project called ``name``."""
        for result in self.projects:
            if result.name == name:
                return result
        raise KeyError(name)

    def raise_for_failures(self) -> None:
        """Raise ``IncompleteExtraction`` unless every available hour is complete or empty."""
        if self.exit_code != 0:
            raise IncompleteExtraction(self)

    def to_json(self) -> dict[str, Any]:
        """The ``--summary-json`` document."""
        projects = {p.name: p.to_json(self.run_id) for p in self.projects}
        keys = ("complete", "empty", "failed", "skipped", "not_available", "events", "changed")
        totals: dict[str, Any] = {k: sum(p[k] for p in projects.values()) for k in keys}
        for key in ("bytes_written", "bytes_stored", "bytes_ndjson", "bytes_received"):
            totals[key] = sum(p[key] for p in projects.values())
        totals["bytes_downloaded"] = sum(p["bytes_downloaded"] for p in projects.values())
        totals["failed_hours"] = [
            f"{name}:{hour}" for name, p in projects.items() for hour in p["failed_hours"]
        ]
        return {
            "run_id": self.run_id,
            "sink": self.sink,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "exit_code": self.exit_code,
            "totals": totals,
            "projects": projects,
        }


class IncompleteExtraction(AsyncAmpError):
    """Some hours are still incomplete after every attempt (or the run was stopped)."""

    def __init__(self, result: ExtractResult) -> None:
        self.result = result
        self.failed_hours = result.failed_hours
        shown = ", ".join(f"{f.project}:{iso_hour(f.hour)}" for f in self.failed_hours[:5])
        more = len(self.failed_hours) - 5
        unfinished = sum(p.unfinished for p in result.projects)
        parts = []
        if self.failed_hours:
            parts.append(
                f"{len(self.failed_hours)} hours failed: {shown}"
                + (f" and {more} more" if more > 0 else "")
            )
        if unfinished:
            parts.append(f"{unfinished} hours not finished (the run was stopped)")
        parts.extend(p.stopped for p in result.projects if p.stopped)
        parts.extend(
            f"{p.name}: merged ids of {iso_hour(h)} not read: {why}"
            for p in result.projects
            if p.merged_ids is not None
            for h, why in p.merged_ids.failed[:5]
        )
        super().__init__(f"run {result.run_id} incomplete: " + "; ".join(parts))


@dataclass(frozen=True, slots=True)
class StatusResult:
    """``status``: one report per project of which hours are complete, empty, missing..."""

    projects: tuple[StatusReport, ...]

    def to_json(self) -> dict[str, Any]:
        """``status --json``: every project's report, and totals over them."""
        totals: dict[str, int] = {}
        for report in self.projects:
            for key, value in report.to_json()["totals"].items():
                totals[key] = totals.get(key, 0) + value
        return {"projects": {r.project: r.to_json() for r in self.projects}, "totals": totals}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``verify``: one report per project of every stored file checked against its manifest."""

    projects: tuple[VerifyReport, ...]

    @property
    def ok(self) -> bool:
        """True when every stored file matches its manifest."""
        return all(r.ok for r in self.projects)

    def to_json(self) -> dict[str, Any]:
        """``verify --json``: every project's report; ``ok`` only when all are."""
        return {
            "ok": self.ok,
            "problem_count": sum(len(r.problems) for r in self.projects),
            "projects": {r.project: r.to_json() for r in self.projects},
        }
