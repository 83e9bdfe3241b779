"""A table of the hour layout (``date``/``hour`` partitions, what async-amp wrote before):
extract, status, verify and report keep working on it, and ``compact --relayout`` converts it
to day partitions in one commit, rows unchanged; it is then written in the new layout."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from deltalake import DeltaTable

from async_amp.delta.files import table_schema
from async_amp.delta.layout import TABLE_PROPERTIES
from async_amp.simulator.background import BackgroundSimulator

from .delta_helpers import expected_uuids
from .e2e import spawn
from .helpers import DAY1, KEY, SECRET, small_dataset
from .test_delta_runs import assert_table_is, cli, env_for


def test_an_hour_layout_table_keeps_working_and_relayout_converts_it_in_one_commit(
    tmp_path: Path,
) -> None:
    first, last = DAY1, DAY1 + timedelta(hours=3)
    uri = str(tmp_path / "out" / "website")
    DeltaTable.create(uri, table_schema(), partition_by=["date", "hour"], name="website")
    span = ["--start", f"{first:%Y-%m-%dT%H}", "--end", f"{last:%Y-%m-%dT%H}"]
    dataset = small_dataset()
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        env = env_for(sim.base_url, tmp_path / "out")
        run = spawn(env, tmp_path, first, last, "--concurrency", "3")
        _, err = run.communicate(timeout=300)
        assert run.returncode == 0, err[-2000:]
        table = DeltaTable(uri)
        assert table.metadata().partition_columns == ["date", "hour"]
        assert all("/hour=" in u for u in table.file_uris())
        assert_table_is(uri, dataset, first, last)
        status = cli(env, tmp_path, "status", "--json", *span)
        assert json.loads(status.stdout)["totals"]["complete"] == 4, status.stderr
        assert cli(env, tmp_path, "verify", *span).returncode == 0
        page = tmp_path / "report.html"
        report = cli(env, tmp_path, "report", *span, "--html", str(page))
        assert report.returncode == 0 and page.stat().st_size > 0, report.stderr
        # the conversion: one commit, every row unchanged
        before = DeltaTable(uri).to_pyarrow_table().sort_by("uuid")
        version = DeltaTable(uri).version()
        day = ["--start", "2026-11-01", "--end", "2026-11-01"]
        done = cli(env, tmp_path, "compact", "--relayout", *day, "--json")
        assert done.returncode == 0, done.stderr
        [converted] = json.loads(done.stdout)["relayout"]
        assert converted == {"project": "website", "days": 1, "version": version + 1}
        table = DeltaTable(uri, version=version + 1)
        assert table.history(1)[0]["operation"] == "CREATE OR REPLACE TABLE"
        assert table.metadata().partition_columns == ["date"]
        assert table.metadata().configuration.items() >= TABLE_PROPERTIES.items()
        after = table.to_pyarrow_table()
        assert after.sort_by("uuid").equals(before.select(after.column_names))
        assert len(table.file_uris()) == 1
        # again: nothing to convert; then an hour re-extracted in the new layout
        again = cli(env, tmp_path, "compact", "--relayout", *day, "--json")
        assert json.loads(again.stdout)["relayout"][0]["days"] == 0
        sim.change_hour(DAY1 + timedelta(hours=2))
        rerun = spawn(env, tmp_path, first, last, "--force")
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err[-2000:]
        dataset = sim.dataset
    table = DeltaTable(uri)
    assert table.metadata().partition_columns == ["date"]
    assert all("/hour=" not in u for u in table.file_uris())
    assert_table_is(uri, dataset, first, last)
    assert cli(env, tmp_path, "verify", *span).returncode == 0
    assert expected_uuids(dataset, first, last)
