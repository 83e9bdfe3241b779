"""``async-amp compact``: rewrite each day's small hourly files into few large ones, then vacuum.

Every hourly commit adds at least one small Parquet file (a quiet project's hour may be a few
kilobytes); a month is then hundreds of files, which every reader pays to open. ``compact``
rewrites each day of the range (``compact.compact_day``: one commit per day, ``dataChange =
false``: no row changes, every snapshot reads the same rows) and then ``vacuum``s, which
deletes data files older than ``retention_hours`` that the latest snapshot does not reference:
replaced hours, files already compacted, files of writes that lost a commit conflict. Keep the
retention above the longest query or copy that may still read an older snapshot, and above the
longest write (default 168 hours, Delta's own default). ``relayout=True`` first converts a
table of the hour layout to days (``compact.relayout``, one commit); without it, the replay of
a conversion that a crash cut short is finished first all the same (``replay.py``).

Safe beside extractions: a compaction that meets a concurrent hourly commit of the same day
conflicts, and is redone (bounded, with backoff) on the new snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ...config import Config
from ...errors import ConfigError, StorageError
from .compact import CompactResult, RelayoutResult, compact_day, relayout
from .replay import finish_relayout
from .table import DELTA_ERRORS, TableLocation, delta_error_text, open_table

__all__ = ["DEFAULT_RETENTION_HOURS", "CompactRequest", "compact", "days_of", "locator"]

DEFAULT_RETENTION_HOURS = 168


def locator(config: Config, environ: Mapping[str, str]) -> Callable[[str], TableLocation]:
    """Where ``config`` puts each project's table."""
    from .location import azure_locator, gcs_locator, local_locator, s3_locator  # noqa: PLC0415

    if config.output.sink == "azure":
        return azure_locator(config.azure, environ)
    if config.output.sink == "s3":
        return s3_locator(config.s3, environ)
    if config.output.sink == "gcs":
        return gcs_locator(config.gcs, environ)
    return local_locator(config.output.dir)


def days_of(first: datetime, last: datetime) -> list[date]:
    day, days = first.date(), []
    while day <= last.date():
        days.append(day)
        day += timedelta(days=1)
    return days


@dataclass(frozen=True, slots=True)
class CompactRequest:
    """What to compact: every day from ``first`` to ``last`` of each project's table, keeping
    files younger than ``retention_hours``; ``relayout_first``: convert each hour-layout
    table to days first. ``on_day`` / ``on_relayout`` are called as each is done (the latter
    also for a conversion's replay finished without ``relayout_first``)."""

    first: datetime
    last: datetime
    projects: Sequence[str]
    environ: Mapping[str, str]
    retention_hours: int = DEFAULT_RETENTION_HOURS
    on_day: Callable[[str, CompactResult], None] | None = None
    relayout_first: bool = False
    on_relayout: Callable[[str, RelayoutResult], None] | None = None


def _finish(location: TableLocation) -> RelayoutResult | None:
    """A conversion's replay that a crash cut short, finished (``replay.finish_relayout``)."""
    replayed = finish_relayout(location)
    if not replayed:
        return None
    version = open_table(location)
    return RelayoutResult(0, 0, 0, 0, version.version() if version else -1, replayed)


def compact(config: Config, request: CompactRequest) -> list[tuple[str, CompactResult]]:
    """Compact what ``request`` names (blocking): the Delta format's table maintenance
    (``output/maintain.py`` checks that the output is Delta)."""
    retention_hours = request.retention_hours
    if retention_hours < 1:
        msg = (
            f"--retention-hours {retention_hours}: at least 1 (a younger file may belong to a "
            "write that is not committed yet)"
        )
        raise ConfigError(msg)
    on_day, on_relayout = request.on_day, request.on_relayout
    locate = locator(config, request.environ)
    done: list[tuple[str, CompactResult]] = []
    for project in request.projects:
        location = locate(project)
        try:
            converted = relayout(location) if request.relayout_first else _finish(location)
        except DELTA_ERRORS as exc:
            msg = f"cannot convert {location.uri} to day partitions: "
            raise StorageError(msg + delta_error_text(exc, location)) from None
        if converted is not None and on_relayout is not None:
            on_relayout(project, converted)
        for day in days_of(request.first, request.last):
            try:
                result = compact_day(location, day, retention_hours=retention_hours)
            except DELTA_ERRORS as exc:
                msg = f"cannot compact {day} of {location.uri}: {delta_error_text(exc, location)}"
                raise StorageError(msg) from None
            done.append((project, result))
            if on_day is not None:
                on_day(project, result)
    return done
