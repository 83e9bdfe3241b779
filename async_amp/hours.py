"""Hours: the unit of completeness. Pure functions for parsing and formatting them."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from .errors import ConfigError

__all__ = [
    "HOUR",
    "Bound",
    "HourFile",
    "MemberName",
    "amplitude_param",
    "available_until",
    "floor_hour",
    "hour_bound",
    "hour_bounds",
    "hour_range",
    "iso_hour",
    "new_run_id",
    "parse_bound",
    "parse_hour_file",
    "parse_member_name",
    "whole_hour",
]

HOUR = timedelta(hours=1)
Bound = str | date | datetime  # a start or end: the CLI's strings, a date, an aware datetime

_DAY_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$", re.ASCII)
_ISO_HOUR_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{1,2})(?::00(?::00)?)?Z?$", re.ASCII)
_AMP_HOUR_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})$", re.ASCII)
_RELATIVE_RE = re.compile(r"^-(\d+)([hd])$", re.ASCII)
# [-]<id>_<YYYY-MM-DD>_<H>[#<n>].json.gz, H not zero-padded.
_HOUR_FILE_RE = re.compile(
    r"^(-?)(\d+)_(\d{4})-(\d{2})-(\d{2})_(\d{1,2})(?:#(\d+))?\.json\.gz$", re.ASCII
)


def floor_hour(moment: datetime) -> datetime:
    """The UTC hour that contains ``moment``."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def whole_hour(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime, checked to be a whole hour (``ValueError`` if not)."""
    if value.tzinfo is None or value.utcoffset() is None:
        msg = f"hour must be timezone-aware, got naive {value!r}"
        raise ValueError(msg)
    hour = value.astimezone(UTC)
    if hour.minute or hour.second or hour.microsecond:
        msg = f"hour must be at minute 0, got {hour.isoformat()}"
        raise ValueError(msg)
    return hour


def iso_hour(hour: datetime) -> str:
    """``2026-11-01T05:00:00Z``: the form used in manifests and logs."""
    return hour.strftime("%Y-%m-%dT%H:00:00Z")


def amplitude_param(hour: datetime) -> str:
    """``20261101T05``: the form of the Export API's ``start``/``end`` parameters."""
    return hour.strftime("%Y%m%dT%H")


def _hour(*parts: str, text: str) -> datetime:
    year, month, day, hour = parts
    try:
        return datetime(int(year), int(month), int(day), int(hour), tzinfo=UTC)
    except ValueError:
        msg = f"{text!r} is not a real date/hour"
        raise ConfigError(msg) from None


def parse_bound(text: str, *, is_end: bool, now: datetime | None = None) -> datetime:
    """Parse a ``--start``/``--end`` value into the first (or last, for an end) hour it covers.

    Accepts ``YYYY-MM-DD`` (a whole UTC day), ``YYYY-MM-DDTHH``, Amplitude's ``YYYYMMDDTHH``,
    and relative ``-7d`` / ``-12h`` (days are whole UTC days counted back from today).
    """
    value = text.strip()
    if m := _DAY_RE.match(value):
        start = _hour(*m.groups(), "0", text=text)
        return start + timedelta(hours=23) if is_end else start
    if m := _ISO_HOUR_RE.match(value):
        return _hour(*m.groups(), text=text)
    if m := _AMP_HOUR_RE.match(value):
        return _hour(*m.groups(), text=text)
    if m := _RELATIVE_RE.match(value):
        current = floor_hour(now or datetime.now(UTC))
        amount, unit = int(m.group(1)), m.group(2)
        try:
            if unit == "h":
                return current - timedelta(hours=amount)
            day = current.date() - timedelta(days=amount)
            start = datetime.combine(day, datetime.min.time(), UTC)
        except (OverflowError, ValueError):
            msg = f"{text!r} reaches before the year 1: use a nearer relative bound"
            raise ConfigError(msg) from None
        return start + timedelta(hours=23) if is_end else start
    msg = (
        f"cannot read {text!r} as a date or hour: use YYYY-MM-DD (a whole UTC day), "
        "YYYY-MM-DDTHH, YYYYMMDDTHH or a relative -7d / -12h"
    )
    raise ConfigError(msg)


def hour_bound(value: Bound, *, is_end: bool, now: datetime) -> datetime:
    """A ``start``/``end`` argument as an hour: the CLI's strings, a ``date`` (the whole UTC
    day) or a timezone-aware ``datetime`` (the hour it falls in)."""
    if isinstance(value, str):
        return parse_bound(value, is_end=is_end, now=now)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            msg = f"{value!r} has no timezone: pass an aware datetime (e.g. tzinfo=UTC)"
            raise ConfigError(msg)
        return floor_hour(value)
    if isinstance(value, date):
        start = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return start + timedelta(hours=23) if is_end else start
    msg = f"{value!r} is not a date, an aware datetime or a string such as '2026-11-01'"
    raise ConfigError(msg)


def hour_bounds(
    start: Bound | None,
    end: Bound | None,
    now: datetime,
    *,
    optional: bool = False,
    names: tuple[str, str] = ("start", "end"),
    hint: str = "",
) -> tuple[datetime | None, datetime | None]:
    """``start`` and ``end`` as the first and last hour (``None`` for one not given, when
    ``optional``), checked for order: the one parsing and check of a range, for the API and
    the CLI. Errors call them ``names`` (the CLI: its flags); ``hint`` follows "required"."""
    first = hour_bound(start, is_end=False, now=now) if start is not None else None
    last = hour_bound(end, is_end=True, now=now) if end is not None else None
    if (first is None or last is None) and not optional:
        msg = f"{names[0]} and {names[1]} are both required{hint}"
        raise ConfigError(msg)
    if first is not None and last is not None and last < first:
        msg = f"{names[1]} {end} is before {names[0]} {start}: swap them"
        raise ConfigError(msg)
    return first, last


def hour_range(first: datetime, last: datetime) -> Iterator[datetime]:
    """Every hour from ``first`` to ``last``, both inclusive."""
    hour = first
    while hour <= last:
        yield hour
        if hour == last:  # never step past the last hour (9999-12-31T23 + 1 h overflows)
            return
        hour += HOUR


@dataclass(frozen=True, slots=True)
class HourFile:
    """One hour's file as Amplitude names it, in an Export API archive or a cloud export:
    ``187520_2026-11-01_5#0.json.gz`` (a project's events: ``partition`` 0) or
    ``-36958_2026-11-01_5.json.gz`` (the merged-IDs feed: ``merged``, an organization's ID,
    no partition)."""

    owner: str  # the project ID, or the organization ID of the merged-IDs feed
    hour: datetime
    partition: int | None
    merged: bool

    @property
    def is_events(self) -> bool:
        """``<project_id>_<date>_<H>#<n>.json.gz``: an hour's events (one partition)."""
        return not self.merged and self.partition is not None

    @property
    def is_merged_ids(self) -> bool:
        """``-<org_id>_<date>_<H>.json.gz``: an hour of the merged-IDs feed."""
        return self.merged and self.partition is None


def parse_hour_file(base: str) -> HourFile:
    """Parse ``[-]<id>_<YYYY-MM-DD>_<H>[#<n>].json.gz`` (a base name, no folder); raise
    ``ValueError`` with the reason when ``base`` is not one or names no real hour."""
    m = _HOUR_FILE_RE.match(base)
    if m is None:
        msg = "is not <id>_<YYYY-MM-DD>_<H>#<n>.json.gz"
        raise ValueError(msg)
    dash, owner, year, month, day, hour_text, partition = m.groups()
    try:
        hour = datetime(int(year), int(month), int(day), int(hour_text), tzinfo=UTC)
    except ValueError:
        msg = "names a date or hour that does not exist"
        raise ValueError(msg) from None
    number = int(partition) if partition is not None else None
    return HourFile(owner=owner, hour=hour, partition=number, merged=bool(dash))


@dataclass(frozen=True, slots=True)
class MemberName:
    """A parsed archive member name such as ``187520/187520_2020-01-25_17#0.json.gz``."""

    project_id: str
    hour: datetime
    page: int
    base_name: str  # ``187520_2020-01-25_17#0.json.gz``

    @property
    def day(self) -> date:
        return self.hour.date()


def parse_member_name(name: str) -> MemberName:
    """Parse and vet a member name; raise ``ValueError`` with the reason when unsafe or unknown.

    Only ``<project_id>/<project_id>_<YYYY-MM-DD>_<H>#<n>.json.gz`` is accepted: no absolute
    paths, no ``..``, no backslashes or NUL bytes, no folder other than the project's own.
    """
    if "\x00" in name or "\\" in name:
        msg = "contains a NUL byte or a backslash"
        raise ValueError(msg)
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        msg = "is an absolute path"
        raise ValueError(msg)
    parts = name.split("/")
    if any(part in ("..", ".") for part in parts):
        msg = "contains '..' or '.' path segments"
        raise ValueError(msg)
    if len(parts) != 2:
        msg = "is not <project_id>/<file>"
        raise ValueError(msg)
    folder, base = parts
    parsed = parse_hour_file(base)
    if not parsed.is_events:
        msg = "is not <project_id>_<YYYY-MM-DD>_<H>#<n>.json.gz"
        raise ValueError(msg)
    if folder != parsed.owner:
        msg = f"sits in folder {folder!r}, not its project's folder {parsed.owner!r}"
        raise ValueError(msg)
    assert parsed.partition is not None
    return MemberName(
        project_id=parsed.owner, hour=parsed.hour, page=parsed.partition, base_name=base
    )


def new_run_id(kind: str = "") -> str:
    """``20261101T050000Z-1a2b3c``: when the run started, and six random hex digits."""
    tag = f"{kind}-" if kind else ""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{tag}{uuid.uuid4().hex[:6]}"


def available_until(now: datetime, lag_hours: int) -> datetime:
    """The newest hour that may be exported at ``now``: it ended ``lag_hours`` ago or more."""
    return floor_hour(now) - timedelta(hours=lag_hours) - HOUR
