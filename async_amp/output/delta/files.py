"""An hour's data files: written by the converter, put into the table, described for the log.

The Delta sink writes each member's rows as one Parquet file with the Parquet format's own
writer (``columnar.write_parquet``: zstd, row groups of ``ROW_GROUP_ROWS``, at most one row
group in memory), into a local spool. ``put_file`` then moves it into the hour's partition
folder of the table (``date=YYYY-MM-DD/part-...parquet``; ``date=YYYY-MM-DD/hour=H/`` in
a table of the hour layout, see ``layout.py``), streaming it through delta-rs' own object
store for Azure and S3 (the same storage options the table is opened with), and returns what
the ``add`` action needs: the path, the size, and statistics read from the file's footer.

Statistics are what let readers skip files: ``numRecords``, ``nullCount`` of every column, and
``minValues``/``maxValues`` of every column but the JSON text ones (the same format as
delta-rs' own writer: timestamps as ``2026-11-01T05:00:00.123456Z``, dates as
``2026-11-01``). Partition columns are not in the files (``date``; ``hour`` too in the hour
layout): they come from each file's partition values, as the protocol says.

A file put into the table is invisible until a commit names it. One a run never commits (it
was killed, or every commit attempt conflicted) is an orphan that ``compact``'s vacuum deletes
once it is older than the retention.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake.transaction import AddAction

from ..columnar.schema import plain_schema
from .base import TableLocation, local_path
from .layout import STATS_COLUMNS as _STATS_COLUMNS

__all__ = [
    "DATA_SCHEMA",
    "FILE_SCHEMA",
    "DataFile",
    "file_stats",
    "partition_folder",
    "partition_values",
    "put_file",
    "table_schema",
]

DATA_SCHEMA: Final = plain_schema()
"""The columns of every data file: the event schema with JSON as plain text, no partitions."""
FILE_SCHEMA: Final = DATA_SCHEMA.append(pa.field("hour", pa.int32(), nullable=False))
"""The columns of the day layout's data files: ``hour`` is a column there, not a partition."""
STATS_COLUMNS: Final = frozenset(_STATS_COLUMNS)
"""Columns whose min and max go into the log (JSON text gives no useful bounds)."""
MAX_STAT_CHARS: Final = 256
"""Longer string bounds are left out (a reader then reads the file): the log stays small."""
_CHUNK: Final = 8 * 1024**2


def table_schema() -> pa.Schema:
    """The table's columns: the data files' columns, then ``date`` and ``hour``."""
    return DATA_SCHEMA.append(pa.field("date", pa.date32(), nullable=False)).append(
        pa.field("hour", pa.int32(), nullable=False)
    )


def partition_values(hour: datetime, *, day_layout: bool = True) -> dict[str, str | None]:
    """The partition values of ``hour``'s files, as the log spells them: ``date`` (and, in
    the hour layout, ``hour``)."""
    if day_layout:
        return {"date": f"{hour:%Y-%m-%d}"}
    return {"date": f"{hour:%Y-%m-%d}", "hour": str(hour.hour)}


def partition_folder(hour: datetime, *, day_layout: bool = True) -> str:
    """``date=2026-11-01`` (the hour layout: ``date=2026-11-01/hour=5``): the file's folder."""
    if day_layout:
        return f"date={hour:%Y-%m-%d}"
    return f"date={hour:%Y-%m-%d}/hour={hour.hour}"


@dataclass(frozen=True, slots=True)
class DataFile:
    """One data file put into the table, not yet committed."""

    path: str
    """Relative to the table's root, e.g. ``date=2026-11-01/hour=5/part-...zstd.parquet``."""
    size: int
    rows: int
    stats: str
    partition: dict[str, str | None]

    def add_action(self, *, data_change: bool = True) -> AddAction:
        return AddAction(
            path=self.path,
            size=self.size,
            partition_values=self.partition,
            modification_time=int(time.time() * 1000),
            data_change=data_change,
            stats=self.stats,
        )


def _stat_value(value: Any) -> Any:
    """A footer's min or max as the log's JSON spells it; ``None`` when it is left out (a
    NaN or infinite number has no JSON spelling)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):  # strftime writes year 1 as "1", not "0001"
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            return None
        return f"{value.year:04d}-{value:%m-%dT%H:%M:%S.%fZ}"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and len(value) > MAX_STAT_CHARS:
        return None
    if isinstance(value, bool | int | float | str):
        return value
    return None


def _bounds(stats: pq.Statistics) -> tuple[Any, Any] | None:
    """A row group's min and max as Python values; ``None`` when Python cannot hold them (a
    timestamp outside years 1-9999 raises): statistics never fail a write because of data."""
    try:
        return stats.min, stats.max
    except (OverflowError, ValueError, pa.ArrowException):
        return None


def file_stats(meta: pq.FileMetaData) -> str:
    """The ``stats`` JSON of an ``add`` action, from a Parquet file's footer."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    groups = [meta.row_group(i) for i in range(meta.num_row_groups)]
    for index in range(meta.num_columns):
        name = meta.schema.column(index).path
        columns = [group.column(index) for group in groups]
        stats = [c.statistics for c in columns]
        if all(s is not None and s.has_null_count for s in stats):
            nulls[name] = sum(s.null_count for s in stats if s is not None)
        if name not in STATS_COLUMNS:
            continue
        lows, highs, known = [], [], True
        for group, s in zip(groups, stats, strict=True):
            if s is not None and s.has_min_max and (bounds := _bounds(s)) is not None:
                lows.append(bounds[0])
                highs.append(bounds[1])
            elif not (s is not None and s.has_null_count and s.null_count == group.num_rows):
                known = False  # a row group with values but no bounds: no bounds for the file
        if known and lows:
            low, high = _stat_value(min(lows)), _stat_value(max(highs))
            if low is not None and high is not None:
                mins[name], maxs[name] = low, high
    return json.dumps(
        {"numRecords": meta.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls},
        separators=(",", ":"),
    )


def put_file(
    location: TableLocation, local: Path, hour: datetime, *, day_layout: bool = True
) -> DataFile:
    """Put the Parquet file ``local`` into ``hour``'s folder of the table (blocking).

    Local tables: a hard link when the spool is on the same file system, a copy otherwise.
    Azure and S3: streamed through delta-rs' object store in parts (``_CHUNK`` at a time).
    ``local`` stays where it is (its staging removes it): a commit that failed after the put
    (a conflict too many, a timeout) is tried again with the same staged files. The file
    stays invisible to readers until a commit's ``add`` action names it.
    """
    meta = pq.read_metadata(local)
    size = local.stat().st_size
    stats = file_stats(meta)
    folder_name = partition_folder(hour, day_layout=day_layout)
    path = f"{folder_name}/part-00000-{uuid.uuid4()}-c000.zstd.parquet"
    folder = local_path(location.uri)
    if folder is not None:
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.hardlink_to(local)
        except OSError:  # another file system (or one without links)
            shutil.copyfile(local, target)
    else:
        # the handler under deltalake.fs.DeltaStorageHandler: its stream takes bytes (the
        # pyarrow wrapper hands it Buffers), and a stream not closed is never completed
        from deltalake._internal import DeltaFileSystemHandler  # noqa: PLC0415

        store = DeltaFileSystemHandler(location.uri, location.options())
        out = store.open_output_stream(path)
        with local.open("rb") as src:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
        # completes the upload: only now does the object exist (the stub omits close())
        out.close()  # type: ignore[attr-defined]
    return DataFile(path, size, meta.num_rows, stats, partition_values(hour, day_layout=day_layout))
