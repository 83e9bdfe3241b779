"""``[models]``: the model tables' section of the config (declared like the others: see
``async_amp.config``)."""

from __future__ import annotations

from dataclasses import dataclass

from .keys import key
from .values import boolean, integer, number, text, time_zone

__all__ = ["ModelsConfig"]


@dataclass(frozen=True, slots=True)
class ModelsConfig:
    """``[models]``: the model tables (sessions, users, pages, days) built from the events."""

    enabled: bool = key(
        False,
        boolean,
        "Build the model tables after every `extract` (the local days its hours touched); "
        "`async-amp model` builds them on demand either way. See [models.md](models.md).",
    )
    time_zone: str = key(
        "UTC",
        time_zone,
        "IANA name of the models' days (`America/New_York`): set it to the project's time "
        "zone in Amplitude, so `daily` matches Amplitude's charts.",
    )
    lateness_hours: int = key(
        72,
        integer(0, 24 * 30),
        "Upload hours after a local day ends that can still add events to it: a day is "
        "`final` once every hour up to this many after its end is extracted, `provisional` "
        "before.",
    )
    reconcile_tolerance: float = key(
        0.001,
        number(0.0),
        "`reconcile` fails (exit 1) when a final day's figure differs from Amplitude's by more "
        "than this share of Amplitude's (`0`: any difference).",
    )
    memory_limit: str = key(
        "256MB",
        text,
        "DuckDB's memory limit while building (it spills to a temporary folder beyond it).",
    )
