"""The Dashboard REST API's event segmentation, answered by the simulator from its own events.

``GET /api/2/events/segmentation?e={"event_type":"_all"}&m=totals&start=YYYYMMDD&end=YYYYMMDD&i=1``
(``m=uniques`` for distinct ``amplitude_id``; ``e`` names one event type, or ``_all``) with the
Export API's Basic auth answers like Amplitude: ``{"data": {"series": [[...]], "seriesLabels":
[0], "xValues": ["2026-11-01", ...], "seriesCollapsed": [[{"setId": "", "value": N}]]}}``,
counted by ``event_time`` in the project's time zone (``Segmentation.time_zone``), each
``uuid`` once, over every event the dataset holds (late ones included: an event can be
uploaded up to three days after it happened). ``Segmentation.disagree`` adds to a day's
figure, so a test can make the simulator and the lake differ.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from aiohttp import web

from .dataset import Dataset, hours_between

__all__ = ["SEGMENTATION_PATH", "Segmentation", "SegmentationEndpoint"]

SEGMENTATION_PATH: Final = "/api/2/events/segmentation"
_MAX_DELAY = timedelta(days=3)  # the dataset's latest arrivals (site_model: under 3 days)


@dataclass(frozen=True, slots=True)
class Segmentation:
    """How the simulated project answers event segmentation."""

    time_zone: str = "UTC"
    # (day, metric "totals"/"uniques", event type or "_all") -> added to the true figure
    disagree: Callable[[date, str, str], int] = field(default=lambda _d, _m, _e: 0)
    latency_s: float = 0.05  # each answer takes this long, so overlapping requests show


class SegmentationEndpoint:
    """The request handler, with the in-flight count tests look at."""

    def __init__(
        self,
        dataset: Dataset,
        settings: Segmentation,
        check_auth: Callable[[str | None], tuple[int, str] | None],
    ) -> None:
        self.dataset = dataset
        self.settings = settings
        self._check_auth = check_auth
        self._zone = ZoneInfo(settings.time_zone)
        self._hours: dict[datetime, list[tuple[str, str, str, str]]] = {}
        self.in_flight = 0
        self.max_in_flight_seen = 0
        self.requests = 0

    def _events(self, hour: datetime) -> list[tuple[str, str, str, str]]:
        """(uuid, local day, event type, amplitude_id) of an upload hour's events."""
        found = self._hours.get(hour)
        if found is None:
            found = []
            for page in self.dataset.pages(hour):
                for line in self.dataset.ndjson(hour, page).splitlines():
                    raw = json.loads(line)
                    t = datetime.strptime(raw["event_time"], "%Y-%m-%d %H:%M:%S.%f")
                    day = t.replace(tzinfo=UTC).astimezone(self._zone).date().isoformat()
                    found.append((raw["uuid"], day, raw["event_type"], str(raw["amplitude_id"])))
            self._hours[hour] = found
        return found

    def figures(self, first: date, last: date, metric: str, event_type: str) -> list[int]:
        start = datetime.combine(first, time(0), self._zone).astimezone(UTC)
        end = datetime.combine(last + timedelta(days=1), time(0), self._zone).astimezone(UTC)
        seen: set[str] = set()
        users: dict[str, set[str]] = {}
        totals: dict[str, int] = {}
        for hour in hours_between(start - timedelta(hours=1), end + _MAX_DELAY):
            for uuid, local, etype, amp in self._events(hour):
                if uuid in seen or event_type not in ("_all", etype):
                    continue
                seen.add(uuid)
                totals[local] = totals.get(local, 0) + 1
                users.setdefault(local, set()).add(amp)
        out = []
        day = first
        while day <= last:
            iso = day.isoformat()
            true = totals.get(iso, 0) if metric == "totals" else len(users.get(iso, ()))
            out.append(true + self.settings.disagree(day, metric, event_type))
            day += timedelta(days=1)
        return out

    async def handle(self, request: web.Request) -> web.Response:
        problem = self._check_auth(request.headers.get("Authorization"))
        if problem is not None:
            return web.Response(status=problem[0], text=problem[1])
        self.requests += 1
        self.in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self.in_flight)
        try:
            await asyncio.sleep(self.settings.latency_s)
            return self._answer(request.query)
        finally:
            self.in_flight -= 1

    def _answer(self, query: Any) -> web.Response:
        try:
            event = json.loads(query["e"])["event_type"]
            metric = query.get("m", "uniques")
            first = datetime.strptime(query["start"], "%Y%m%d").date()
            last = datetime.strptime(query["end"], "%Y%m%d").date()
        except (KeyError, ValueError, TypeError) as exc:
            return web.Response(status=400, text=f"bad parameters: {exc}")
        if metric not in ("totals", "uniques") or query.get("i", "1") != "1" or last < first:
            return web.Response(status=400, text="unsupported m, i or range")
        series = self.figures(first, last, metric, event)
        days = [(first + timedelta(days=k)).isoformat() for k in range(len(series))]
        body = {
            "data": {
                "series": [series],
                "seriesLabels": [0],
                "xValues": days,
                "seriesCollapsed": [[{"setId": "", "value": sum(series)}]],
            }
        }
        return web.json_response(body)
