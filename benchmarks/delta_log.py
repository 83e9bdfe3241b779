"""Delta log growth: opening the table and listing its partitions after N hourly commits.

    .venv/bin/python -m benchmarks.delta_log [--commits 2000] [--json PATH]

Writes ``--commits`` hourly commits (each a predicate overwrite of one (date, hour) partition,
as ``format = "delta"`` does, 50 rows each) into two local tables: one as async-amp writes it
(delta-rs' default checkpoint every 100 commits) and the reference with checkpoints disabled
(``delta.checkpointInterval`` beyond the run, so a reader replays every JSON commit). At each
milestone it times, in a fresh process-state (a new ``DeltaTable``), ``DeltaTable(uri)`` +
``partitions()``, median of 5, and reports the ratio reference / async-amp.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from async_amp.delta.table import PARTITION_BY, hour_predicate

MILESTONES = (100, 500, 1000, 2000)
ROWS = 50
FIRST = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(hour: datetime) -> pa.Table:
    return pa.table(
        {
            "uuid": pa.array([f"{hour:%Y%m%d%H}-{i}" for i in range(ROWS)]),
            "event_time": pa.array([hour] * ROWS, pa.timestamp("us", tz="UTC")),
            "date": pa.array([hour.date()] * ROWS, pa.date32()),
            "hour": pa.array([hour.hour] * ROWS, pa.int32()),
        }
    )


def _commit(uri: str, hour: datetime, configuration: dict[str, str] | None) -> None:
    write_deltalake(
        uri,
        _rows(hour),
        mode="overwrite",
        partition_by=list(PARTITION_BY),
        predicate=hour_predicate(hour),
        configuration=configuration,
    )


def _open_and_list(uri: str, repeat: int = 5) -> tuple[float, int]:
    times = []
    count = 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = len(DeltaTable(uri).partitions())
        times.append(time.perf_counter() - started)
    return statistics.median(times), count


def run(commits: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="delta-log-"))
    tables = {
        "async-amp (checkpoint every 100)": (str(work / "checkpointed"), None),
        "reference (no checkpoint)": (
            str(work / "plain"),
            {"delta.checkpointInterval": str(commits * 10)},
        ),
    }
    rows: list[dict[str, Any]] = []
    write_s = dict.fromkeys(tables, 0.0)
    try:
        done = 0
        for milestone in sorted(m for m in (*MILESTONES, commits) if m <= commits):
            if milestone == done:
                continue
            for name, (uri, conf) in tables.items():
                started = time.perf_counter()
                for n in range(done, milestone):
                    _commit(uri, FIRST + timedelta(hours=n), conf if n == 0 else None)
                write_s[name] += time.perf_counter() - started
            done = milestone
            row: dict[str, Any] = {"commits": milestone}
            for name, (uri, _) in tables.items():
                seconds, partitions = _open_and_list(uri)
                assert partitions == milestone, (name, partitions)
                log = Path(uri) / "_delta_log"
                row[name] = {
                    "open_and_list_s": round(seconds, 4),
                    "checkpoints": len(list(log.glob("*.checkpoint.parquet"))),
                    "log_files": len(list(log.iterdir())),
                }
            ours, ref = row["async-amp (checkpoint every 100)"], row["reference (no checkpoint)"]
            row["ratio_reference_over_async_amp"] = round(
                ref["open_and_list_s"] / ours["open_and_list_s"], 2
            )
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {
        "case": "delta_log_growth",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "rows_per_commit": ROWS,
        "write_s": {k: round(v, 1) for k, v in write_s.items()},
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commits", type=int, default=2000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = run(args.commits)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
