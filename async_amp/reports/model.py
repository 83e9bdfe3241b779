"""The report as values: everything the HTML shows, computed once, nothing but numbers and text."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Literal

from ..config import ReportConfig
from .aggregate import DayFacts

__all__ = [
    "BlogPost",
    "Drop",
    "HourCell",
    "HourState",
    "Lead",
    "ModelDay",
    "NewKey",
    "Report",
    "ReportScope",
    "suspicious_drops",
]

HourState = Literal["complete", "empty", "missing", "failed", "not_available"]
Ranking = tuple[tuple[str, int], ...]
WEEK = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class ReportScope:
    """What a report covers and how it reads it, said once for both of its sources (the
    events: ``build.report_from_events``; the model tables: ``from_models.report_from_models``):
    ``project``'s UTC hours ``first`` to ``last`` (inclusive), the current time ``now`` (the
    freshness; hours less than ``lag_hours`` old are not yet available) and ``[report]``."""

    project: str
    first: datetime
    last: datetime
    now: datetime
    lag_hours: int
    settings: ReportConfig = field(default_factory=ReportConfig)


@dataclass(frozen=True, slots=True)
class HourCell:
    """One hour of the range as storage shows it (``events``: the manifest's count)."""

    hour: datetime
    state: HourState
    events: int = 0
    attempts: int = 0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Drop:
    """An hour whose archive was whole but far below the same hour of earlier weeks."""

    hour: datetime
    events: int
    baseline: float


@dataclass(frozen=True, slots=True)
class NewKey:
    kind: Literal["field", "property"]
    name: str
    day: date


@dataclass(frozen=True, slots=True)
class BlogPost:
    path: str
    title: str
    views: int
    visitors: int
    continued: int  # visitors with another event in the same session after their first view
    daily: tuple[int, ...]  # views per day of the range

    @property
    def continued_share(self) -> float:
        return self.continued / self.visitors if self.visitors else 0.0


@dataclass(frozen=True, slots=True)
class Lead:
    user_id: str
    last_visit: datetime
    first_visit: datetime
    days: int
    events: int
    country: str
    city: str
    company: str


@dataclass(frozen=True, slots=True)
class ModelDay:
    """One row of the model table ``daily`` (a local day of ``[models] time_zone``)."""

    day: date
    events: int
    active_users: int
    new_users: int
    sessions: int
    page_views: int
    avg_session_s: float | None
    status: str


@dataclass(frozen=True, slots=True)
class Report:
    project: str
    where: str
    first: datetime
    last: datetime
    now: datetime
    lag_hours: int
    settings: ReportConfig
    hours: tuple[HourCell, ...]
    days: tuple[DayFacts, ...]
    drops: tuple[Drop, ...]
    new_keys: tuple[NewKey, ...]
    baseline_keys: int
    event_types: Ranking
    countries: Ranking
    cities: Ranking
    sources: Ranking
    oses: Ranking
    browsers: Ranking
    device_types: Ranking
    blog: tuple[BlogPost, ...]
    blog_views: int
    leads: tuple[Lead, ...]
    identified_total: int
    weekday_hour: Mapping[tuple[int, int], int]
    session_lengths: Ranking
    rows_read: int
    model_days: tuple[ModelDay, ...] = ()  # the model tables' days of the range, when built
    model_zone: str = ""
    basis: Literal["events", "models"] = "events"  # what the panels past health were read from
    quality_counted: bool = True  # duplicates and _extra rows are known (models: manifests)
    users_total: int = 0  # models: distinct amplitude_id of the range's days

    @property
    def page_views(self) -> int:
        if self.basis == "models":
            return sum(d.page_views for d in self.model_days)
        return sum(d.page_views for d in self.days)

    @property
    def newest_complete(self) -> datetime | None:
        done = [c.hour for c in self.hours if c.state in ("complete", "empty")]
        return max(done) if done else None

    def count(self, state: HourState) -> int:
        return sum(1 for c in self.hours if c.state == state)


def suspicious_drops(
    cells: Sequence[HourCell], ratio: float, *, min_baseline: float = 20.0
) -> list[Drop]:
    """Complete or empty hours below ``ratio`` x the median of the same hour 1-4 weeks before.

    Only earlier weeks whose hour was itself read (complete or empty) count; an hour needs one
    at least, and a baseline of ``min_baseline`` events, so quiet projects are not all flagged.
    """
    known = {c.hour: c.events for c in cells if c.state in ("complete", "empty")}
    drops: list[Drop] = []
    for cell in cells:
        if cell.hour not in known:
            continue
        before = [known[h] for k in range(1, 5) if (h := cell.hour - k * WEEK) in known]
        if not before:
            continue
        baseline = statistics.median(before)
        if baseline >= min_baseline and cell.events < ratio * baseline:
            drops.append(Drop(cell.hour, cell.events, float(baseline)))
    return drops


def new_keys(
    fields: Mapping[str, date], properties: Mapping[str, date], first_day: date
) -> tuple[list[NewKey], int]:
    """Keys first seen after the range's first day with data, and how many were there from it."""
    found: list[NewKey] = []
    baseline = 0
    pairs: Iterable[tuple[Literal["field", "property"], Mapping[str, date]]] = (
        ("field", fields),
        ("property", properties),
    )
    start = min([*fields.values(), *properties.values()], default=first_day)
    for kind, seen in pairs:
        for name, day in seen.items():
            if day > start:
                found.append(NewKey(kind, name, day))
            else:
                baseline += 1
    found.sort(key=lambda k: (k.day, k.kind, k.name))
    return found, baseline
