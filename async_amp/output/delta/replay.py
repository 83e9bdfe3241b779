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
writers' clocks differ) is left as it is.

A crash between the conversion's commit and the end of the replay (a SIGKILL, a machine
lost) would leave the hours committed meanwhile missing (an hour new to the table) or as
they were in ``V`` (an hour committed again): never twice, as the conversion removed every
file it found, but their writers reported them complete. So before its commit the conversion
records ``V`` in ``_async_amp/relayout/<its commit id>.json`` (delta-rs 1.6.6 refuses table
properties of its own), deleted once the replay is done; ``finish_relayout`` (every
``compact``, with or without ``--relayout``) finds the conversion a record names in the log
and replays what is still to replay: an hour replayed already carries the replay's
transaction, no longer the entry's, and is skipped. A record whose conversion is not in the
log (it failed, or was killed before committing) is deleted once the table is in days. The
replay needs the log entries from ``V`` to the conversion, which Delta keeps for
``delta.logRetentionDuration`` (30 days): a conversion left unfinished for longer can no
longer be repaired."""

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

from .base import CommitConflictError, TableLocation, log_entry, open_table
from .files import put_file, table_schema
from .layout import hour_app_id, is_day_layout
from .rewrite import write_rows
from .store import TableFiles
from .table import METADATA_PREFIX, committed_version, replace_hour

__all__ = [
    "HourCommit",
    "finish_relayout",
    "hour_commits",
    "record_relayout",
    "replay_hours",
]

RECORDS = "_async_amp/relayout"
"""Where each conversion records the version it converted until its replay is done."""
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


def record_relayout(location: TableLocation, read: int, commit_id: str) -> str:
    """Record that commit ``commit_id`` converts snapshot ``read``; return the record's name."""
    name = f"{RECORDS}/{commit_id}.json"
    TableFiles(location).put(name, json.dumps({"read": read}).encode(), exclusive=False)
    return name


def finish_relayout(location: TableLocation) -> int:
    """Replay what the conversions recorded left to replay (see the module), and delete their
    records; return how many hours were replayed. 0 at once when there is no record."""
    files = TableFiles(location)
    records = sorted(files.names(RECORDS))
    if not records:
        return 0
    table = open_table(location)
    if table is None or not is_day_layout(table.metadata().partition_columns):
        return 0  # no conversion committed: the records are of conversions in flight or dead
    replayed = 0
    for name in records:
        commit_id = name.rsplit("/", 1)[-1].removesuffix(".json")
        try:
            read = int(json.loads(files.read(name))["read"])
            version = committed_version(location, read, commit_id)
        except (ValueError, KeyError, TypeError, CommitConflictError):
            pass  # never committed (or its log entries are cleaned up): nothing to replay
        else:
            replayed += replay_hours(location, hour_commits(location, read, version))
        files.delete(name)
    return replayed


def replay_hours(location: TableLocation, hours: dict[datetime, HourCommit]) -> int:
    """Commit each hour again as its entry left it (see the module); return how many were."""
    replayed = 0
    latest = open_table(location)
    for hour, commit in sorted(hours.items()):
        app_id = hour_app_id(hour)
        if latest is not None and latest.transaction_version(app_id) != commit.txn:
            continue  # replayed already, or committed again since: nothing to read

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
