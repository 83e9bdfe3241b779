"""The plan of a run: which hours of a range to fetch, skip, leave for later or to other shards.

Pure functions of the range, the hours already done and the clock; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ..hours import HOUR, available_until, hour_range

__all__ = ["Plan", "chop", "hour_runs", "make_plan", "shard_hours"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a run will do: every hour of the range falls in exactly one list."""

    hours: tuple[datetime, ...]
    to_fetch: tuple[datetime, ...]
    done: tuple[datetime, ...]
    not_available: tuple[datetime, ...]
    other_shards: tuple[datetime, ...] = ()
    recheck: tuple[datetime, ...] = ()  # complete hours asked again (also in ``to_fetch``)
    tentative: tuple[datetime, ...] = ()  # young empty hours asked again (also in ``to_fetch``)
    newest: datetime | None = None  # the newest hour exportable when the plan was made
    gaps: tuple[datetime, ...] = ()  # hours earlier runs left behind, filled by --since-last


def chop(hours: Sequence[datetime], width: int) -> list[list[datetime]]:
    """Cut hours into windows of at most ``width`` consecutive hours (gaps start a new one)."""
    windows: list[list[datetime]] = []
    for hour in hours:
        current = windows[-1] if windows else None
        if current and len(current) < width and current[-1] + HOUR == hour:
            current.append(hour)
        else:
            windows.append([hour])
    return windows


def hour_runs(hours: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive hours as ``(first, last)`` runs, in order: the ranges to re-extract."""
    ordered = sorted(set(hours))
    return [(run[0], run[-1]) for run in chop(ordered, max(len(ordered), 1))]


def shard_hours(hours: Sequence[datetime], shard: tuple[int, int]) -> set[datetime]:
    """Shard ``K/N`` of a range: the K-th of N contiguous, nearly equal blocks of its hours.

    It depends only on the range, so N workers given the same range agree without talking,
    and blocks stay contiguous so request windows still work inside each.
    """
    index, count = shard
    size, extra = divmod(len(hours), count)
    start = (index - 1) * size + min(index - 1, extra)
    return set(hours[start : start + size + (1 if index <= extra else 0)])


def make_plan(
    first: datetime,
    last: datetime,
    *,
    done: set[datetime],
    now: datetime,
    lag_hours: int,
    shard: tuple[int, int] | None = None,
    recheck_since: datetime | None = None,
    tentative: frozenset[datetime] = frozenset(),
) -> Plan:
    """``recheck_since``: complete hours from then on are fetched again (``--recheck``);
    ``tentative``: done hours that are empty but young, fetched again too."""
    newest = available_until(now, lag_hours)
    hours = tuple(hour_range(first, last))
    mine = shard_hours(hours, shard) if shard else set(hours)
    again = {h for h in done if recheck_since is not None and h >= recheck_since}
    again |= done & tentative
    kept = done - again
    return Plan(
        hours=hours,
        to_fetch=tuple(h for h in hours if h <= newest and h not in kept and h in mine),
        done=tuple(h for h in hours if h <= newest and h in kept and h in mine),
        not_available=tuple(h for h in hours if h > newest and h in mine),
        other_shards=tuple(h for h in hours if h not in mine),
        recheck=tuple(h for h in hours if h <= newest and h in again - tentative and h in mine),
        tentative=tuple(h for h in hours if h <= newest and h in tentative and h in mine),
        newest=newest,
    )
