"""Hours other writers commit while ``compact --relayout`` converts the table, kept.

The conversion reads snapshot ``V``, writes every day's files (minutes on a large table), then
commits ``CREATE OR REPLACE`` in the day layout. delta-rs' ``create_table_with_add_actions``
opens the table again for that commit and removes every file it finds: an hour another writer
committed after ``V`` (any day, the conversion's days or not) would be removed with the rest,
its rows in none of the new files, while that writer reports the hour complete. Commits after
the conversion are safe by themselves: its metadata change makes every commit made on an
older snapshot conflict, and their next attempt sees the day layout (``LayoutChangedError``).

So the conversion commits with no rebasing (``max_commit_retries = 0``: at the version after
the one delta-rs read, or a conflict and the whole conversion again), and then commits again,
in the day layout, every hour a log entry between ``V`` and its own commit replaced: the
hour's rows as that entry left them, read from its snapshot. An hour committed again since
(its application transaction no longer that entry's: compared for equality, not order, as
writers' clocks differ) is left as it is."""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from .base import TableLocation, log_entry
from .files import put_file, table_schema
from .layout import hour_app_id
from .rewrite import write_rows
from .table import METADATA_PREFIX, replace_hour

__all__ = ["HourCommit", "hour_commits", "replay_hours"]

_HOUR_TXN = re.compile(r"async-amp:(\d{4}-\d{2}-\d{2}T\d{2})")


@dataclass(frozen=True, slots=True)
class HourCommit:
    """The last log entry of a range that replaced one hour."""

    version: int
    txn: int
    """The version of the hour's application transaction in that entry."""
    metadata: dict[str, Any]


def hour_commits(location: TableLocation, after: int, before: int) -> dict[datetime, HourCommit]:
    """The hours that log entries ``after < version < before`` replaced, each its last."""
    hours: dict[datetime, HourCommit] = {}
    for version in range(after + 1, before):
        body = log_entry(location, version)
        if body is None:
            continue  # never: the entries before a commit made are all there
        actions = [json.loads(line) for line in body.splitlines() if line.strip()]
        info: dict[str, Any] = next((a["commitInfo"] for a in actions if "commitInfo" in a), {})
        metadata = {
            k.removeprefix(METADATA_PREFIX): v
            for k, v in info.items()
            if k.startswith(METADATA_PREFIX) and k != f"{METADATA_PREFIX}commit_id"
        }
        for action in actions:
            match = _HOUR_TXN.fullmatch(action.get("txn", {}).get("appId", ""))
            if match:
                hour = datetime.strptime(match[1], "%Y-%m-%dT%H").replace(tzinfo=UTC)
                hours[hour] = HourCommit(version, int(action["txn"]["version"]), metadata)
    return hours


class _Superseded(Exception):
    """The hour was committed again after the entry being replayed."""


def replay_hours(location: TableLocation, hours: dict[datetime, HourCommit]) -> int:
    """Commit each hour again as its entry left it (see the module); return how many were."""
    replayed = 0
    for hour, commit in sorted(hours.items()):
        app_id = hour_app_id(hour)

        def unless_newer(snapshot: DeltaTable, app_id: str = app_id, txn: int = commit.txn) -> None:
            if snapshot.transaction_version(app_id) != txn:
                raise _Superseded

        old = DeltaTable(location.uri, version=commit.version, storage_options=location.options())
        rows = (pc.field("date") == pa.scalar(hour.date(), pa.date32())) & (
            pc.field("hour") == pa.scalar(hour.hour, pa.int32())
        )
        with tempfile.TemporaryDirectory(prefix="async-amp-replay-") as work:
            paths = write_rows(old.to_pyarrow_dataset(), Path(work), row_filter=rows)
            files = [put_file(location, path, hour) for path in paths]
        try:
            replace_hour(
                location,
                hour,
                files,
                schema=table_schema(),
                metadata={**commit.metadata, "replayed": "relayout"},
                on_snapshot=unless_newer,
            )
        except _Superseded:
            continue
        replayed += 1
    return replayed
