"""The ``delta-layout`` case: the day layout against the hour layout, on one large day.

A day of ``DAY_EVENTS`` synthetic events (about 1 GB as NDJSON: wide JSON properties, as the
throughput data's), in 24 hourly files of 3 archive members each, is put into two tables: one
partitioned by ``date`` (async-amp's layout), one by ``date`` and ``hour`` (the layout before).
For each, in a process of its own (its peak RSS is the row's):

- ``compact``: ``compact_day`` of the day (day layout: one sorted file; hour layout: delta-rs'
  ``OPTIMIZE`` within each hour), wall time and peak RSS;
- ``hour commit``: replacing one hour of the compacted day (``replace_hour``; in the day layout
  this rewrites the rest of the day's file), wall time.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..common import WORK_DIR
from ..measure import Bench
from ..results import CaseResult, Row

NAME = "delta-layout"
ORDER = 71
DAY_EVENTS = 615_000
QUICK_EVENTS = 61_500
DAY = datetime(2026, 11, 1, tzinfo=UTC)
MEMBERS = 3


def _rows(at: datetime, n: int, tag: str) -> Any:
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    from async_amp.output.delta.files import DATA_SCHEMA, FILE_SCHEMA  # noqa: PLC0415

    index = pa.array(range(n), pa.int64())
    text = pc.cast(index, pa.string())
    props = pc.binary_join_element_wise(
        '{"page_path":"/blog/post-', text, '","page_title":"' + "A title " * 40 + '"}', ""
    )
    columns: dict[str, Any] = {}
    ts = pa.timestamp("us", tz="UTC")
    for field in FILE_SCHEMA:
        t = field.type
        if field.name == "uuid":
            columns[field.name] = pc.binary_join_element_wise(f"{tag}{at:%Y%m%d%H}", text, "-")
        elif field.name == "event_type":
            columns[field.name] = pc.take(
                pa.array(["Page Viewed", "Button Clicked", "Scroll Depth Reached", "Sign Up"]),
                pc.cast(pc.modulo(index, 4), pa.int32()),
            )
        elif field.name in ("event_properties", "user_properties", "data"):
            columns[field.name] = props
        elif field.name == "_export_hour":
            columns[field.name] = pa.array([at] * n, ts)
        elif field.name == "hour":
            columns[field.name] = pa.array([at.hour] * n, pa.int32())
        elif pa.types.is_timestamp(t):
            base = pa.scalar(at, ts)
            seconds = pc.multiply(pc.modulo(index, 3600), 1_000_000)
            columns[field.name] = pc.add(base, pc.cast(seconds, pa.duration("us")))
        elif pa.types.is_integer(t):
            columns[field.name] = pc.cast(pc.modulo(index, 1000), t)
        elif pa.types.is_floating(t):
            columns[field.name] = pc.cast(pc.divide(pc.cast(index, pa.float64()), 7.0), t)
        elif pa.types.is_boolean(t):
            columns[field.name] = pc.equal(pc.modulo(index, 2), 0)
        else:
            columns[field.name] = pc.binary_join_element_wise(field.name, text, "-")
    table = pa.table(columns).cast(FILE_SCHEMA)
    return table, table.select(DATA_SCHEMA.names)


def _worker(layout: str, folder: str, events: int) -> dict[str, Any]:
    """Build the table of ``layout``, compact the day, replace one hour (in this process)."""
    import pyarrow.parquet as pq  # noqa: PLC0415
    from deltalake import DeltaTable  # noqa: PLC0415

    from async_amp.output.delta.base import TableLocation  # noqa: PLC0415
    from async_amp.output.delta.compact import compact_day  # noqa: PLC0415
    from async_amp.output.delta.files import put_file, table_schema  # noqa: PLC0415
    from async_amp.output.delta.table import replace_hour  # noqa: PLC0415

    work = Path(folder)
    location = TableLocation(str(work / "table"))
    day_layout = layout == "day"
    partitions = ["date"] if day_layout else ["date", "hour"]
    DeltaTable.create(location.uri, table_schema(), partition_by=partitions)
    per_member = events // 24 // MEMBERS
    ndjson = 0
    build = time.perf_counter()
    for h in range(24):
        at = DAY + timedelta(hours=h)
        files = []
        for m in range(MEMBERS):
            rows, plain = _rows(at, per_member, f"m{m}-")
            ndjson += int(rows.nbytes)
            local = work / f"{h}-{m}.parquet"
            pq.write_table(rows if day_layout else plain, local, compression="zstd")
            files.append(put_file(location, local, at, day_layout=day_layout))
        replace_hour(location, at, files, schema=table_schema(), metadata={})
    build_s = time.perf_counter() - build
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    compact_day(location, DAY.date(), retention_hours=168)
    compact_s = time.perf_counter() - started
    compact_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    table = DeltaTable(location.uri)
    meta = [pq.ParquetFile(u).metadata for u in table.file_uris()]
    at = DAY + timedelta(hours=7)
    rows, plain = _rows(at, per_member, "new-")
    local = work / "new.parquet"
    pq.write_table(rows if day_layout else plain, local, compression="zstd")
    started = time.perf_counter()
    replace_hour(
        location,
        at,
        [put_file(location, local, at, day_layout=day_layout)],
        schema=table_schema(),
        metadata={},
    )
    commit_s = time.perf_counter() - started
    return {
        "layout": layout,
        "events": per_member * 24 * MEMBERS,
        "arrow_bytes": ndjson,
        "build_s": round(build_s, 2),
        "compact_s": round(compact_s, 2),
        "rss_before_compact_kib": before,
        "peak_rss_kib": compact_rss,
        "files_after_compact": len(meta),
        "row_groups_after_compact": sum(m.num_row_groups for m in meta),
        "hour_commit_s": round(commit_s, 3),
    }


def _measure(layout: str, events: int) -> dict[str, Any]:
    folder = WORK_DIR / "delta-layout" / layout
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    code = (
        "import json, sys; from benchmarks.cases.delta_layout import _worker; "
        "print(json.dumps(_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, layout, str(folder), str(events)],
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(folder, ignore_errors=True)
    if done.returncode:
        return {"layout": layout, "error": done.stderr.strip().splitlines()[-1:]}
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def run(bench: Bench) -> CaseResult:
    events = QUICK_EVENTS if bench.quick else DAY_EVENTS
    result = CaseResult(
        NAME,
        f"Delta layouts on one day of {events:,} events (24 hours x {MEMBERS} members): "
        "compact time and peak RSS, and an hour's commit on the compacted day",
        {"events": events},
    )
    day, hour = _measure("day", events), _measure("hour", events)
    result.params["day"], result.params["hour"] = day, hour
    for m in (day, hour):
        if "error" in m:
            result.rows.append(Row(m["layout"], "async-amp", available=False, note=str(m["error"])))
            continue
        result.rows.append(
            Row(
                f"compact, {m['layout']} layout",
                "async-amp" if m["layout"] == "day" else "reference",
                wall_s=m["compact_s"],
                peak_rss=m["peak_rss_kib"] * 1024,
                events=m["events"],
                note=f"{m['files_after_compact']} files, {m['row_groups_after_compact']} row "
                f"groups; hour commit after it {m['hour_commit_s']:.2f} s",
            )
        )
    if "error" not in day and "error" not in hour:
        result.headline.append(
            f"day layout vs hour layout: compact {day['compact_s']:.1f} s vs "
            f"{hour['compact_s']:.1f} s ({day['compact_s'] / hour['compact_s']:.2f}x), peak RSS "
            f"{day['peak_rss_kib'] / 1024:.0f} vs {hour['peak_rss_kib'] / 1024:.0f} MiB, "
            f"files {day['files_after_compact']} vs {hour['files_after_compact']}, an hour's "
            f"commit on the compacted day {day['hour_commit_s']:.2f} s vs "
            f"{hour['hour_commit_s']:.2f} s ({day['hour_commit_s'] / hour['hour_commit_s']:.1f}x)"
        )
    return result
