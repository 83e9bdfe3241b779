"""Scheduling: how a plan's hours are cut into export requests, and when each is started.

``window_hours = N`` cuts the hours into windows of at most N consecutive hours, all started
at once (the limiter bounds how many are in flight). ``window_hours = "auto"`` first asks one
hour per slot alone (the probes); their archive sizes give the bytes per hour, from which
:func:`auto_window` sizes the windows of the rest: large enough to pay the fixed cost of a
request once per many hours, small enough to keep every slot busy (about one window per slot)
and each archive under ``AUTO_MAX_WINDOW_BYTES``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import anyio

from ..logs import log
from .plan import chop

__all__ = [
    "AUTO_MAX_WINDOW_BYTES",
    "AUTO_MAX_WINDOW_HOURS",
    "Observed",
    "Probes",
    "auto_window",
    "schedule",
]

AUTO_MAX_WINDOW_BYTES = 64 * 1024**2  # keep a window's archive (and its retry) moderate
AUTO_MAX_WINDOW_HOURS = 7 * 24
AUTO_BLIND_WINDOW_HOURS = 24  # nothing observed (every probe failed): stay modest


@dataclass(frozen=True, slots=True)
class Observed:
    """A clean request: how many hours it covered and how many ZIP bytes it brought."""

    hours: int
    zip_bytes: int


def auto_window(remaining: int, *, slots: int, observed: Sequence[Observed]) -> int:
    """Hours per request for ``remaining`` hours over ``slots`` slots, from what was observed."""
    width = max(1, math.ceil(remaining / slots))
    hours_seen = sum(o.hours for o in observed)
    if not hours_seen:
        return max(1, min(width, AUTO_BLIND_WINDOW_HOURS))
    per_hour = sum(o.zip_bytes for o in observed) / hours_seen
    if per_hour > 0:
        width = min(width, max(1, int(AUTO_MAX_WINDOW_BYTES // per_hour)))
    return max(1, min(width, AUTO_MAX_WINDOW_HOURS))


@dataclass(slots=True)
class Probes:
    """The probe hours still out; ``done`` is set once the last of them has come back."""

    pending: set[datetime] = field(default_factory=set)
    done: anyio.Event = field(default_factory=anyio.Event)

    def finished(self, window: Sequence[datetime]) -> None:
        """A request for ``window`` ended (well or not)."""
        if self.pending and window[0] in self.pending:
            self.pending.discard(window[0])
            if not self.pending:
                self.done.set()


async def schedule(
    hours: Sequence[datetime],
    *,
    window_hours: int | Literal["auto"],
    slots: int,
    launch: Callable[[list[datetime]], None],
    probes: Probes,
    observed: Sequence[Observed],
) -> None:
    """Start a request (``launch``) for every window of ``hours``."""
    if window_hours != "auto":
        for window in chop(hours, window_hours):
            launch(window)
        return
    probe, rest = list(hours[:slots]), list(hours[slots:])
    probes.pending = set(probe)
    for hour in probe:
        launch([hour])
    if not rest:
        return
    await probes.done.wait()
    width = auto_window(len(rest), slots=slots, observed=observed)
    hours_seen = sum(o.hours for o in observed)
    log.info(
        "window.auto",
        window_hours=width,
        hours=len(rest),
        probe_hours=hours_seen,
        zip_bytes_per_hour=sum(o.zip_bytes for o in observed) / hours_seen if hours_seen else 0,
    )
    for window in chop(rest, width):
        launch(window)
