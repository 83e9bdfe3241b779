"""Helpers for the Delta tests: build a DeltaSink, read the table back, compare with the simulator."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from deltalake import DeltaTable

from async_amp.config import Config
from async_amp.hours import hour_range
from async_amp.output.delta import DeltaSink, make_delta_sink
from async_amp.output.stores.local import LocalSink
from async_amp.simulator.dataset import Dataset


def local_delta_sink(config: Config, run_id: str = "test-run") -> DeltaSink:
    inner = LocalSink(config.output.dir, run_id=run_id, fsync=False)
    return make_delta_sink(config, inner, run_id=run_id, environ={})


def expected_uuids(dataset: Dataset, first: datetime, last: datetime) -> Counter[str]:
    """Every uuid the simulator serves for the hours, with its multiplicity."""
    out: Counter[str] = Counter()
    for hour in hour_range(first, last):
        for page in dataset.pages(hour):
            for line in dataset.ndjson(hour, page).splitlines():
                out[json.loads(line)["uuid"]] += 1
    return out


def expected_rows_per_hour(
    dataset: Dataset, first: datetime, last: datetime
) -> dict[tuple[Any, int], int]:
    return {
        (h.date(), h.hour): sum(dataset.event_count(h, p) for p in dataset.pages(h))
        for h in hour_range(first, last)
        if dataset.pages(h)
    }


def read_table(uri: str, storage_options: dict[str, str] | None = None) -> pa.Table:
    return DeltaTable(uri, storage_options=storage_options).to_pyarrow_table()


def rows_per_hour(table: pa.Table) -> dict[tuple[Any, int], int]:
    counts = table.group_by(["date", "hour"]).aggregate([("uuid", "count")])
    return {
        (d, h): n
        for d, h, n in zip(
            counts["date"].to_pylist(),
            counts["hour"].to_pylist(),
            counts["uuid_count"].to_pylist(),
            strict=True,
        )
    }


def table_dir(root: Path, project: str = "website") -> Path:
    return root / project


def assert_commit_facts(table: Path, manifest: dict[str, Any]) -> list[Path]:
    """The manifest's ``delta`` section against the table's own log: its version is there and
    that commit added exactly the files, bytes and rows it states (read from the entry's add
    actions and their stats). The files added, as paths."""
    facts = manifest["delta"]
    entry = table / "_delta_log" / f"{facts['table_version']:020d}.json"
    actions = [json.loads(line) for line in entry.read_text().splitlines() if line.strip()]
    adds = [a["add"] for a in actions if "add" in a]
    assert len(adds) == facts["files"], entry
    assert sum(a["size"] for a in adds) == facts["bytes"], entry
    assert sum(json.loads(a["stats"])["numRecords"] for a in adds) == facts["rows"], entry
    return [table / a["path"] for a in adds]
