"""The model tables computed in plain Python from the simulator's raw NDJSON lines: the
independent answer the product's DuckDB SQL (``async_amp.models``) is checked against.

It follows docs/models.md's rules, written again here without SQL: local days of
``event_time`` in the time zone, each ``uuid`` once, sessions keyed by (``amplitude_id``,
``session_id``) on the local day of ``session_id``, events of a session ordered by
(``event_time``, ``uuid``), the report's page view / path / source / company keys.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from async_amp.config import ReportConfig

_HOST = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)?(?:www[.])?([^/?#:]*)")
_SUFFIX = re.compile(r"[.](com|co[.][a-z][a-z]|com[.][a-z][a-z])$")
_LAST_MS = 32_503_680_000_000


def _text(value: Any) -> str | None:
    """A JSON value as SQL's ``json_extract_string`` gives it."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return None


def normalise_source(value: str) -> str | None:
    match = _HOST.match(value.strip(" ").lower())
    host = _SUFFIX.sub("", match.group(1) if match else "", count=1)
    return host or None


def _pick(props: Any, keys: Iterable[str]) -> str | None:
    if not isinstance(props, dict):
        return None
    for key in keys:
        value = _text(props.get(key))
        if value not in (None, "", "EMPTY"):
            return value
    return None


@dataclass(frozen=True)
class Ev:
    uuid: str | None
    event_type: str | None
    amp: str | None
    user_id: str | None
    session_id: int | None
    t: datetime
    created: datetime | None
    country: str | None
    city: str | None
    platform: str | None
    os_name: str | None
    device_family: str | None
    device_type: str | None
    is_pv: bool
    path: str | None
    source: str
    company: str | None
    day: date
    sday: date | None
    cday: date | None

    @property
    def order(self) -> tuple[datetime, bool, str]:
        return (self.t, self.uuid is None, self.uuid or "")


def _session_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def parse(raw: dict[str, Any], settings: ReportConfig, zone: ZoneInfo) -> Ev | None:
    """One exported event as the models read it; ``None`` without an ``event_time``."""
    t = _time(raw.get("event_time"))
    if t is None:
        return None
    props, uprops = raw.get("event_properties"), raw.get("user_properties")
    sid = _session_id(raw.get("session_id"))
    sday = None
    if sid is not None and 0 < sid < _LAST_MS:
        sday = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=sid)).astimezone(zone)
        sday = sday.date()
    created = _time(raw.get("user_creation_time"))
    source = _pick(props, settings.source_keys) or _pick(uprops, settings.source_keys)
    return Ev(
        uuid=_text(raw.get("uuid")),
        event_type=_text(raw.get("event_type")),
        amp=_text(raw.get("amplitude_id")),
        user_id=_text(raw.get("user_id")),
        session_id=sid,
        t=t,
        created=created,
        country=_text(raw.get("country")),
        city=_text(raw.get("city")),
        platform=_text(raw.get("platform")),
        os_name=_text(raw.get("os_name")),
        device_family=_text(raw.get("device_family")),
        device_type=_text(raw.get("device_type")),
        is_pv=raw.get("event_type") in settings.page_view_events,
        path=_pick(props, settings.page_path_keys),
        source=(normalise_source(source) if source is not None else None) or "direct",
        company=_pick(uprops, settings.company_keys),
        day=t.astimezone(zone).date(),
        sday=sday,
        cday=created.astimezone(zone).date() if created else None,
    )


def read_events(lines: Iterable[bytes], settings: ReportConfig, zone: ZoneInfo) -> list[Ev]:
    """Every line once per uuid (the first copy), in the order given."""
    seen: set[str] = set()
    out = []
    for line in lines:
        if not line.strip():
            continue
        ev = parse(json.loads(line), settings, zone)
        if ev is None:
            continue
        if ev.uuid is not None:
            if ev.uuid in seen:
                continue
            seen.add(ev.uuid)
        out.append(ev)
    return out


def _last(values: Iterable[str | None]) -> str | None:
    found = [v for v in values if v is not None]
    return found[-1] if found else None


def reference(
    events: list[Ev], days: list[date], status: dict[date, str]
) -> dict[str, list[dict[str, Any]]]:
    """Every model table over ``days``, as rows sorted like the product's."""
    wanted = set(days)
    sessions_of: dict[tuple[str, int], list[Ev]] = defaultdict(list)
    for ev in events:
        if ev.sday is not None and ev.amp is not None and ev.sday in wanted:
            sessions_of[(ev.amp, ev.session_id)].append(ev)  # type: ignore[index]
    sessions: list[dict[str, Any]] = []
    session_events: dict[date, list[list[Ev]]] = defaultdict(list)
    for (amp, sid), evs in sorted(sessions_of.items()):
        evs.sort(key=lambda e: e.order)
        day = evs[0].sday
        assert day is not None
        pvs = [e for e in evs if e.is_pv]
        cdays = [e.cday for e in evs if e.cday is not None]
        users = [e.user_id for e in evs if e.user_id is not None]
        sessions.append({
            "day": day, "amplitude_id": amp, "session_id": sid,
            "user_id": max(users) if users else None,
            "start_time": evs[0].t, "end_time": evs[-1].t,
            "duration_s": (evs[-1].t - evs[0].t) / timedelta(microseconds=1) / 1e6,
            "events": len(evs), "page_views": len(pvs),
            "landing_page": pvs[0].path if pvs else None,
            "exit_page": pvs[-1].path if pvs else None,
            "source": evs[0].source, "country": evs[0].country, "city": evs[0].city,
            "platform": evs[0].platform, "os_name": evs[0].os_name,
            "device_family": evs[0].device_family, "device_type": evs[0].device_type,
            "is_new_user": bool(cdays) and max(cdays) == day,
        })  # fmt: skip
        session_events[day].append(evs)
    sessions.sort(key=lambda r: (r["day"], r["amplitude_id"], r["session_id"]))
    by_day: dict[date, list[Ev]] = defaultdict(list)
    for ev in events:
        if ev.day in wanted:
            by_day[ev.day].append(ev)
    out: dict[str, list[dict[str, Any]]] = {"sessions": sessions}
    out["daily"] = []
    out["daily_events"] = []
    out["pages_daily"] = []
    out["users_daily"] = []
    for day in sorted(wanted):
        evs = sorted(by_day[day], key=lambda e: e.order)
        day_sessions = [s for s in sessions if s["day"] == day]
        out["daily"].append({
            "day": day, "events": len(evs),
            "active_users": len({e.amp for e in evs if e.amp is not None}),
            "new_users": len({e.amp for e in evs if e.amp is not None and e.cday == day}),
            "sessions": len(day_sessions),
            "page_views": sum(e.is_pv for e in evs),
            "avg_session_s": statistics.fmean(s["duration_s"] for s in day_sessions)
            if day_sessions else None,
            "status": status[day],
        })  # fmt: skip
        types: dict[str | None, list[Ev]] = defaultdict(list)
        for e in evs:
            types[e.event_type].append(e)
        for etype in sorted(types, key=lambda k: (k is not None, k or "")):
            out["daily_events"].append({
                "day": day, "event_type": etype, "events": len(types[etype]),
                "users": len({e.amp for e in types[etype] if e.amp is not None}),
            })  # fmt: skip
        out["pages_daily"] += _pages(day, evs, day_sessions, session_events[day])
        out["users_daily"] += _users_daily(day, evs, day_sessions)
    out["users"] = _users([e for d in wanted for e in by_day[d]], sessions)
    return out


def _pages(
    day: date, evs: list[Ev], sessions: list[dict[str, Any]], groups: list[list[Ev]]
) -> list[dict[str, Any]]:
    rows: dict[str | None, dict[str, Any]] = defaultdict(lambda: {
        "views": 0, "visitors": set(), "entrances": 0, "exits": 0, "session_visitors": set(),
        "went_on": set(), "gaps": [],
    })  # fmt: skip
    for e in evs:
        if e.is_pv:
            rows[e.path]["views"] += 1
            if e.amp is not None:
                rows[e.path]["visitors"].add(e.amp)
    for s in sessions:
        if s["page_views"]:
            rows[s["landing_page"]]["entrances"] += 1
            rows[s["exit_page"]]["exits"] += 1
    for group in groups:
        first_view: dict[str | None, int] = {}
        for n, e in enumerate(group):
            if not e.is_pv:
                continue
            first_view.setdefault(e.path, n)
            if n + 1 < len(group):
                rows[e.path]["gaps"].append((group[n + 1].t - e.t) / timedelta(microseconds=1))
        for path, n in first_view.items():
            rows[path]["session_visitors"].add(group[0].amp)
            if n + 1 < len(group):
                rows[path]["went_on"].add(group[0].amp)
    out = []
    for path in sorted(rows, key=lambda p: (p is not None, p or "")):
        r = rows[path]
        sv, went = len(r["session_visitors"]), len(r["went_on"])
        out.append({
            "day": day, "path": path, "views": r["views"], "visitors": len(r["visitors"]),
            "entrances": r["entrances"], "exits": r["exits"], "session_visitors": sv,
            "went_on": went, "went_on_share": went / sv if sv else None,
            "median_time_on_page_s": statistics.median(r["gaps"]) / 1e6 if r["gaps"] else None,
        })  # fmt: skip
    return out


def _user_rows(events: Iterable[Ev], sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per user of ``events`` (in order) and ``sessions``."""
    mine: dict[str, list[Ev]] = defaultdict(list)
    for e in events:
        if e.amp is not None:
            mine[e.amp].append(e)
    counts: dict[str, int] = defaultdict(int)
    for s in sessions:
        counts[s["amplitude_id"]] += 1
    out = []
    for amp in sorted(set(mine) | set(counts)):
        es = mine.get(amp, [])
        created = [e.created for e in es if e.created is not None]
        out.append({
            "amplitude_id": amp, "user_id": _last(e.user_id for e in es),
            "first_seen": es[0].t if es else None, "last_seen": es[-1].t if es else None,
            "days": len({e.day for e in es}), "sessions": counts.get(amp, 0),
            "events": len(es), "page_views": sum(e.is_pv for e in es),
            "first_source": es[0].source if es else None,
            "country": _last(e.country for e in es), "city": _last(e.city for e in es),
            "company": _last(e.company for e in es),
            "user_creation_time": max(created) if created else None,
        })  # fmt: skip
    return out


def _users_daily(day: date, evs: list[Ev], sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = _user_rows(evs, sessions)
    return [{"day": day, **{k: v for k, v in r.items() if k != "days"}} for r in rows]


def _users(events: list[Ev], sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Straight from the events of the days (not folded from ``users_daily``)."""
    return _user_rows(sorted(events, key=lambda e: e.order), sessions)
