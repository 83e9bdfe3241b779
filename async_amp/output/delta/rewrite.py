"""Rewriting a day layout's files: an hour out of a compacted day, a day into few sorted files.

Rows are read from the table's files with pyarrow (through delta-rs' object store for Azure
and S3) and written by DuckDB into local Parquet files (zstd, row groups as large as
``ROW_GROUP_BYTES`` of rows allows, up to ``ROW_GROUP_ROWS``), which ``files.put_file`` then
puts into the table. DuckDB sorts a compacted day within ``DUCKDB_MEMORY`` and spills the rest
to the local work folder, so memory does not grow with the day.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.transaction import RemoveAction

from ..columnar.convert import write_parquet
from .base import TableLocation, local_path
from .files import FILE_SCHEMA, DataFile, put_file

__all__ = [
    "ROW_GROUP_BYTES",
    "ROW_GROUP_ROWS",
    "DayFile",
    "day_files",
    "file_dataset",
    "hour_replacement",
    "remove_action",
    "write_rows",
]

ROW_GROUP_ROWS: Final = 8_388_608
"""Direct Lake's guidance: row groups of 8 M rows or more where the data allows."""
ROW_GROUP_BYTES: Final = 256 * 1024**2
"""Uncompressed bytes of one row group: what DuckDB's writer holds in memory at a time."""
FILE_BYTES: Final = 1024**3
"""A compacted day's files are cut at this size (Parquet bytes): one file for most days."""
DUCKDB_MEMORY: Final = "512MB"
_BATCH_ROWS: Final = 16_384
_MIN_GROUP_ROWS: Final = 16_384


@dataclass(frozen=True, slots=True)
class DayFile:
    """One live data file of a day, as the snapshot's ``add`` action describes it."""

    path: str
    size: int
    rows: int | None
    first_hour: datetime | None
    last_hour: datetime | None
    """``_export_hour``'s bounds from the file's statistics (None: unknown)."""

    def holds_only(self, hour: datetime) -> bool:
        return self.first_hour == hour and self.last_hour == hour

    def may_hold(self, hour: datetime) -> bool:
        if self.first_hour is None or self.last_hour is None:
            return True
        return self.first_hour <= hour <= self.last_hour


def day_files(table: DeltaTable, day: date) -> list[DayFile]:
    """Every live data file of ``day`` in the snapshot ``table``."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if not actions.num_rows:
        return []
    dates = pc.cast(actions["partition.date"], pa.string()).to_pylist()
    names = actions.schema.names

    def column(name: str) -> list[Any]:
        return actions[name].to_pylist() if name in names else [None] * actions.num_rows

    rows = zip(
        actions["path"].to_pylist(),
        actions["size_bytes"].to_pylist(),
        column("num_records"),
        column("min._export_hour"),
        column("max._export_hour"),
        dates,
        strict=True,
    )
    wanted = day.isoformat()
    return [
        DayFile(path, size, n, _utc(lo), _utc(hi))
        for path, size, n, lo, hi, on in rows
        if on == wanted
    ]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def remove_action(file: DayFile, day: date, *, data_change: bool) -> RemoveAction:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return RemoveAction(file.path, data_change, now_ms, file.size, {"date": day.isoformat()})


def file_dataset(location: TableLocation, paths: Sequence[str]) -> ds.Dataset:
    """The data files ``paths`` (relative to the table's root) as one pyarrow dataset."""
    folder = local_path(location.uri)
    if folder is not None:
        return ds.dataset([str(folder / p) for p in paths], format="parquet")
    from deltalake.fs import DeltaStorageHandler  # noqa: PLC0415

    handler = DeltaStorageHandler(location.uri, location.options())
    return ds.dataset(list(paths), format="parquet", filesystem=pafs.PyFileSystem(handler))


def _group_rows(dataset: ds.Dataset) -> int:
    """Rows per row group: as many as ``ROW_GROUP_BYTES`` holds at the inputs' row size."""
    rows = size = 0
    for fragment in dataset.get_fragments():
        meta = fragment.metadata
        rows += meta.num_rows
        size += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if not rows:
        return _MIN_GROUP_ROWS
    per_row = max(1, size // rows)
    return max(_MIN_GROUP_ROWS, min(ROW_GROUP_ROWS, ROW_GROUP_BYTES // per_row))


def _connect(work: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        config={
            "threads": max(1, min(4, os.cpu_count() or 1)),
            "memory_limit": DUCKDB_MEMORY,
            "preserve_insertion_order": True,
            "temp_directory": str(work / "spill"),
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # the library prints nothing
    return con


def write_rows(
    dataset: ds.Dataset,
    work: Path,
    *,
    row_filter: pc.Expression | None = None,
    order: Sequence[str] = (),
) -> list[Path]:
    """Write ``dataset``'s rows (those ``row_filter`` keeps) in the data files' columns into
    local Parquet files under ``work`` (sorted by ``order`` when given, by DuckDB; otherwise
    one file streamed by pyarrow); return them in order. No file when no row is kept."""
    group_rows = _group_rows(dataset)
    scanner = dataset.scanner(
        columns=FILE_SCHEMA.names,
        filter=row_filter,
        batch_size=_BATCH_ROWS,
        batch_readahead=2,  # what bounds the scan's memory besides the row group written
        fragment_readahead=1,
    )
    out = work / "out"
    work.mkdir(parents=True, exist_ok=True)
    if not order:  # a copy in the same order: streamed by pyarrow, one row group buffered
        out.mkdir()
        path = out / "data_0.parquet"
        with path.open("wb") as file:
            facts = write_parquet(
                (b.cast(FILE_SCHEMA) for b in scanner.to_batches()),
                file,
                row_group_rows=group_rows,
                schema=FILE_SCHEMA,
            )
        if facts.rows:
            return [path]
        path.unlink()
        return []
    reader = scanner.to_reader()
    con = _connect(work)
    try:
        con.register("src", reader)
        columns = ", ".join(f'"{n}"' for n in FILE_SCHEMA.names)
        by = f" ORDER BY {', '.join(order)}" if order else ""
        con.execute(
            f"COPY (SELECT {columns} FROM src{by}) TO '{out}' (FORMAT parquet, "  # noqa: S608
            f"COMPRESSION zstd, ROW_GROUP_SIZE {group_rows}, FILE_SIZE_BYTES {FILE_BYTES}, "
            "PER_THREAD_OUTPUT false)"
        )
    finally:
        con.close()
    files = sorted(out.glob("*.parquet"), key=lambda p: int(p.stem.rsplit("_", 1)[-1]))
    kept = []
    for path in files:
        if ds.dataset(path).count_rows():
            kept.append(path)
        else:
            path.unlink()
    return kept


def hour_replacement(
    location: TableLocation, table: DeltaTable, hour: datetime, work: Path
) -> tuple[list[RemoveAction], list[DataFile]]:
    """What replacing ``hour`` in the day layout's snapshot ``table`` takes besides adding its
    new files: the files to remove (those of the hour alone), and the rewritten copies of the
    files that hold other hours too, without the hour's rows (already put into the table)."""
    day = hour.date()
    removes: list[RemoveAction] = []
    rewritten: list[DataFile] = []
    at = pa.scalar(hour, pa.timestamp("us", tz="UTC"))
    for index, file in enumerate(day_files(table, day)):
        if file.holds_only(hour):
            removes.append(remove_action(file, day, data_change=True))
            continue
        if not file.may_hold(hour):
            continue
        dataset = file_dataset(location, [file.path])
        of_hour = dataset.count_rows(filter=pc.field("_export_hour") == at)
        if not of_hour:
            continue
        removes.append(remove_action(file, day, data_change=True))
        others = ~(pc.field("_export_hour") == at) | pc.field("_export_hour").is_null()
        for path in write_rows(dataset, work / f"rewrite-{index}", row_filter=others):
            rewritten.append(put_file(location, path, hour))
    return removes, rewritten
