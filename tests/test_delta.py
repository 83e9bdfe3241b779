"""Delta output on the local sink: whole hours per commit, resume, --force, readers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable

from async_amp.testing.server import run_simulator

from .delta_helpers import (
    expected_rows_per_hour,
    expected_uuids,
    local_delta_sink,
    read_table,
    rows_per_hour,
)
from .helpers import DAY1, KEY, SECRET, last_hour_of, make_config, run, small_dataset

pytestmark = pytest.mark.anyio


async def test_two_days_at_concurrency_8_into_delta_read_back_by_deltalake_and_duckdb(
    tmp_path: Path,
) -> None:
    quiet = frozenset({DAY1.replace(hour=3)})
    dataset = small_dataset(quiet_hours=quiet)
    last = last_hour_of(DAY1, days=2)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=8)
        summary = await run(config, DAY1, last, sink=local_delta_sink(config))
        assert summary.exit_code == 0, summary.to_json()
        assert summary.count("empty") == 1 and summary.count("complete") == 47
        table = read_table(str(tmp_path / "website"))
        assert rows_per_hour(table) == expected_rows_per_hour(dataset, DAY1, last)
        assert Counter(table["uuid"].to_pylist()) == expected_uuids(dataset, DAY1, last)
        dt = DeltaTable(str(tmp_path / "website"))
        con = duckdb.connect()
        con.register("events", dt.to_pyarrow_dataset())
        got = con.sql("SELECT count(*), count(DISTINCT uuid) FROM events").fetchall()[0]
        assert got == (table.num_rows, len(set(table["uuid"].to_pylist())))
        sim.reset_log()
        again = await run(config, DAY1, last, sink=local_delta_sink(config))
        assert sim.request_count() == 0 and again.exit_code == 0
