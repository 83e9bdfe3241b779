"""The table's layout: day partitions (new tables), or date and hour (tables of before 0.x).

**Day layout** (``partitionColumns = ["date"]``): a day is one folder, ``date=2026-11-01/``.
Each hour's commit adds one file per archive member (holding the hour's rows, with ``hour`` as
an ordinary column) and replaces the hour's earlier rows, found by the ``_export_hour``
statistics of the day's files: files of that hour alone are removed, files that hold other
hours too (a compacted day) are rewritten without it, in the same commit. ``compact`` rewrites
each day into as few files as its size allows, sorted by ``event_type`` then ``event_time``,
with large row groups: a year is about 365 files (``docs/delta.md`` has the measurements).

**Hour layout** (``partitionColumns = ["date", "hour"]``): what async-amp wrote before. It keeps
working (an hour is its partition), and ``compact --relayout`` converts it in one commit.

Both layouts have the same columns (the event columns, ``date``, ``hour``), so readers' queries
do not change. The table properties below are set on every table async-amp creates, compacts
or converts, so other writers (Spark, Databricks, Fabric) keep them too.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Final

from ..columnar.schema import COLUMNS, EXTRA, LINEAGE

__all__ = [
    "CHECKPOINT_INTERVAL",
    "DAY_PARTITIONS",
    "HOUR_PARTITIONS",
    "SORT_KEY",
    "STATS_COLUMNS",
    "TABLE_PROPERTIES",
    "day_app_id",
    "hour_app_id",
    "is_day_layout",
    "missing_properties",
]

DAY_PARTITIONS: Final = ("date",)
HOUR_PARTITIONS: Final = ("date", "hour")
SORT_KEY: Final = ("event_type", "event_time")
"""A compacted day's order: one event type's rows together (compression, and pruning on
``event_type``), in time order within it (pruning on ``event_time``)."""

STATS_COLUMNS: Final = (
    *(c.name for c in (*COLUMNS, EXTRA, *LINEAGE) if c.kind != "json"),
    "hour",
)
"""Every column readers filter on: all but the JSON text ones (no useful bounds)."""

CHECKPOINT_INTERVAL: Final = 24
"""A checkpoint about once a day of hourly commits: a reader replays at most 23 JSON commits."""

TABLE_PROPERTIES: Final = {
    # min/max/nullCount for exactly these columns, whoever writes (delta-rs' optimize kept
    # the first 32 columns only without it)
    "delta.dataSkippingStatsColumns": ",".join(STATS_COLUMNS),
    "delta.checkpointInterval": str(CHECKPOINT_INTERVAL),
}


def missing_properties(configuration: Mapping[str, str | None] | None) -> dict[str, str]:
    """The properties of ``TABLE_PROPERTIES`` that ``configuration`` lacks or differs on."""
    have = configuration or {}
    return {k: v for k, v in TABLE_PROPERTIES.items() if have.get(k) != v}


def is_day_layout(partition_columns: list[str]) -> bool:
    return tuple(partition_columns) == DAY_PARTITIONS


def hour_app_id(hour: datetime) -> str:
    """The application transaction id every commit of ``hour`` carries (see ``replace_hour``)."""
    return f"async-amp:{hour:%Y-%m-%dT%H}"


def day_app_id(day: date) -> str:
    """The application transaction id of every commit that removes files of ``day``.

    Two such commits conflict whatever else they do. delta-rs does not see every conflict of
    removals by itself: a commit removing a file that a concurrent compaction (``dataChange =
    false``) removed first is let through, and the day would hold the compacted copy of its
    rows as well as the new ones (measured with deltalake 1.6.6)."""
    return f"async-amp:day:{day:%Y-%m-%d}"
