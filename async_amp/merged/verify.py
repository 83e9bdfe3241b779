"""``verify`` of the ``merged_ids`` table: its hours as a reader sees them.

Files (ndjson, gzip, parquet): every hour with a manifest through ``readback.checks.verify``,
as an events hour (sizes, sha256, lines or Parquet rows; stray files in an hour without a
manifest). Hours without a manifest are normal here (no merge that hour) and not listed.
Delta: each hour's rows in the table's latest version against its manifest's count.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import anyio

from ..hours import hour_range
from ..readback.checks import HourCheck, Problem, VerifyReport, verify
from . import merged_table
from .store import DeltaMergedTable, FilesTable

if TYPE_CHECKING:
    from ..output.open import Output

__all__ = ["verify_merged_ids"]


def _delta_rows(table: DeltaMergedTable) -> dict[datetime, int]:
    from deltalake import DeltaTable  # noqa: PLC0415 - only for Delta outputs

    location = table.location
    rows = (
        DeltaTable(location.uri, storage_options=location.options())
        .to_pyarrow_table(columns=["_export_hour"])
        .group_by("_export_hour")
        .aggregate([("_export_hour", "count")])
        .to_pylist()
    )
    return {r["_export_hour"]: int(r["_export_hour_count"]) for r in rows}


async def _delta_hours(table: DeltaMergedTable, done: Sequence[datetime]) -> list[HourCheck]:
    counted = await anyio.to_thread.run_sync(_delta_rows, table)
    checks = []
    for hour in done:
        manifest = await table.manifest(hour)
        expected = manifest.events if manifest is not None else 0
        actual = counted.get(hour, 0)
        problems: tuple[Problem, ...] = ()
        if actual != expected:
            detail = "the table's rows of the hour differ from its manifest"
            problems = (Problem(hour, "events", "merged_ids", detail, expected, actual),)
        size = manifest.size if manifest is not None else 0
        files = manifest.file_count if manifest is not None else 0
        state: Literal["ok", "bad"] = "bad" if problems else "ok"
        checks.append(HourCheck(hour, state, files, size, actual, problems))
    return checks


async def verify_merged_ids(
    output: Output, project: str, first: datetime, last: datetime, *, concurrency: int
) -> VerifyReport | None:
    """The ``merged_ids`` table's report, ``None`` when it has no hour in the range."""
    table = merged_table(output.config.output.data_format, output.store, output.sink, project)
    done = sorted(await table.completed(hour_range(first, last)))
    name = f"{project}/merged_ids"
    if isinstance(table, FilesTable):
        report = await verify(output.store, table.root, first, last, concurrency=concurrency)
        kept = tuple(h for h in report.hours if h.state != "no_manifest" or h.problems)
        if not kept:
            return None
        return replace(report, project=name, where=table.describe(), hours=kept)
    if not done:
        return None
    assert isinstance(table, DeltaMergedTable)
    started = time.monotonic()
    checks = await _delta_hours(table, done)
    return VerifyReport(
        project=name,
        where=table.describe(),
        first=first,
        last=last,
        hours=tuple(checks),
        seconds=time.monotonic() - started,
    )
