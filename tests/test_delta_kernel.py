"""A checkpointed table read by an independent Delta reader: DuckDB's delta extension
(delta-kernel-rs), in a venv of its own pinned to the DuckDB it is built for (``make
delta-kernel``; ``make test`` installs it), and by deltalake and polars.

The table has a checkpoint (async-amp's, plain-encoded), an hour replaced after it and a day
compacted: what a reader must reconcile from the checkpoint and the JSON commits after it."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from deltalake import DeltaTable

from async_amp.output.delta.base import TableLocation
from async_amp.output.delta.compact import compact_day
from async_amp.output.delta.files import table_schema
from async_amp.output.delta.layout import CHECKPOINT_INTERVAL
from async_amp.output.delta.table import replace_hour

from .test_delta_year import EVENTS, put_hour

ROOT = Path(__file__).resolve().parent.parent
KERNEL_PYTHON = ROOT / ".venv-delta-kernel" / "bin" / "python"
START = datetime(2026, 11, 1, tzinfo=UTC)


def kernel_rows(uri: str) -> tuple[str, list[tuple[str, str, int]]]:
    assert KERNEL_PYTHON.exists(), "the delta-kernel venv is missing: run `make delta-kernel`"
    done = subprocess.run(
        [str(KERNEL_PYTHON), str(ROOT / "tests" / "delta_kernel" / "read.py"), uri],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout)
    return out["version"], [tuple(r) for r in out["rows"]]


def test_duckdbs_delta_kernel_deltalake_and_polars_read_the_checkpointed_table(
    tmp_path: Path,
) -> None:
    location = TableLocation(str(tmp_path / "t"))
    hours = [START + timedelta(hours=h) for h in range(CHECKPOINT_INTERVAL + 4)]
    for at in hours:  # one commit an hour, past the checkpoint interval
        replace_hour(
            location, at, [put_hour(location, tmp_path, at)], schema=table_schema(), metadata={}
        )
    compact_day(location, START.date(), retention_hours=0)
    again = START + timedelta(hours=5)  # re-extracted: out of the compacted day's file
    replace_hour(
        location,
        again,
        [put_hour(location, tmp_path, again, tag="new-")],
        schema=table_schema(),
        metadata={},
    )
    log = tmp_path / "t" / "_delta_log"
    [checkpoint] = log.glob("*.checkpoint.parquet")
    meta = pq.ParquetFile(checkpoint).metadata
    assert all(
        set(meta.row_group(g).column(c).encodings) <= {"PLAIN", "RLE"}
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    )
    # what was put in, in plain Python
    expected = sorted(
        (f"{'new-' if at == again else ''}{at:%Y%m%d%H}-{i}", f"{at:%Y-%m-%d}", at.hour)
        for at in hours
        for i in range(EVENTS)
    )
    version, rows = kernel_rows(location.uri)
    assert version == "1.4.4"
    assert rows == expected
    table = DeltaTable(location.uri).to_pyarrow_table(columns=["uuid", "date", "hour"])
    mine = sorted(
        zip(
            table["uuid"].to_pylist(),
            [d.isoformat() for d in table["date"].to_pylist()],
            table["hour"].to_pylist(),
            strict=True,
        )
    )
    assert mine == expected
    frame = pl.read_delta(location.uri).select("uuid", "hour")
    assert Counter(frame["hour"].to_list()) == Counter(h for _, _, h in expected)
    assert sorted(frame["uuid"].to_list()) == [u for u, _, _ in expected]
