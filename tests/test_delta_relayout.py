"""A table of the hour layout (``date``/``hour`` partitions, what async-amp wrote before):
extract, status, verify and report keep working on it, and ``compact --relayout`` converts it
to day partitions in one commit, rows unchanged; it is then written in the new layout."""

from __future__ import annotations

import json
import signal
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from async_amp.output.delta.base import TableLocation
from async_amp.output.delta.compact import relayout
from async_amp.output.delta.files import DataFile, put_file, table_schema
from async_amp.output.delta.layout import TABLE_PROPERTIES
from async_amp.output.delta.table import replace_hour
from async_amp.simulator.background import BackgroundSimulator

from .delta_helpers import expected_uuids
from .e2e import cli_args, spawn
from .helpers import DAY1, KEY, SECRET, small_dataset
from .test_delta_runs import assert_table_is, cli, env_for, python
from .test_delta_year import EVENTS, hour_rows

KILLED_AFTER_ITS_COMMIT = """
import json, os, signal, subprocess, sys
from async_amp.output.delta.base import TableLocation
from async_amp.output.delta.compact import relayout

uri, extract = sys.argv[1], json.loads(sys.argv[2])
relayout(
    TableLocation(uri),
    on_day=lambda day: subprocess.run(extract, check=True, capture_output=True),
    on_converted=lambda version: os.kill(os.getpid(), signal.SIGKILL),
)
"""
"""``compact --relayout`` of table ``argv[1]`` with the extraction ``argv[2]`` committing while it
writes the day (after the snapshot it converts), SIGKILLed right after its own commit."""


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
        # the conversion, in a process killed right after its commit: while it wrote the day,
        # an extraction committed (in the hour layout) hour 2 with late data, hour 3 again and
        # hour 4, new to the table, and reported them complete
        before = DeltaTable(uri).to_pyarrow_table().sort_by("uuid")
        version = DeltaTable(uri).version()
        sim.change_hour(DAY1 + timedelta(hours=2))
        window = [*cli_args(f"{DAY1:%Y-%m-%d}T02", f"{DAY1:%Y-%m-%d}T04"), "--force"]
        killed = python(env, tmp_path, "-c", KILLED_AFTER_ITS_COMMIT, uri, json.dumps(window))
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        # what the kill left: the conversion's one commit holds the rows it read, in days:
        # hour 4 is missing and hour 2 stale, although their manifests claim them
        table = DeltaTable(uri)
        converted = table.version()
        assert converted == version + 4  # the extraction's 3 commits, then the conversion
        assert table.history(1)[0]["operation"] == "CREATE OR REPLACE TABLE"
        assert table.metadata().partition_columns == ["date"]
        assert table.metadata().configuration.items() >= TABLE_PROPERTIES.items()
        after = table.to_pyarrow_table()
        assert after.sort_by("uuid").equals(before.select(after.column_names))
        assert len(table.file_uris()) == 1
        # the same command again repairs it: the three hours written again, as extracted
        day = ["--start", "2026-11-01", "--end", "2026-11-01"]
        done = cli(env, tmp_path, "compact", "--relayout", *day, "--json")
        assert done.returncode == 0, done.stderr
        [repaired] = json.loads(done.stdout)["relayout"]
        assert repaired == {
            "project": "website",
            "days": 0,
            "version": converted + 3,
            "replayed": 3,
        }
        assert_table_is(uri, sim.dataset, first, DAY1 + timedelta(hours=4))
        # then an hour re-extracted in the new layout
        sim.change_hour(DAY1 + timedelta(hours=2))
        rerun = spawn(env, tmp_path, first, last, "--force")
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err[-2000:]
        dataset = sim.dataset
    table = DeltaTable(uri)
    assert table.metadata().partition_columns == ["date"]
    assert all("/hour=" not in u for u in table.file_uris())
    assert_table_is(uri, dataset, first, DAY1 + timedelta(hours=4))
    through = ["--start", f"{first:%Y-%m-%dT%H}", "--end", f"{DAY1:%Y-%m-%d}T04"]
    assert cli(env, tmp_path, "verify", *through).returncode == 0
    assert expected_uuids(dataset, first, last)


class _Crash(Exception):
    pass


def _crash(version: int) -> None:
    raise _Crash(version)


@pytest.mark.parametrize("crash", [False, True], ids=["replayed", "crashed-then-finished"])
def test_hours_another_writer_commits_during_the_relayout_are_all_kept(
    tmp_path: Path, crash: bool
) -> None:
    """A second writer commits while the relayout writes its days (from ``on_day``: between
    the snapshot it read and its commit, no timing involved): an hour of a day the relayout
    does not cover, and an hour it covers, extracted again. Both are in the converted table,
    every other hour as it was, every file in the day layout. ``crash``: the relayout stops
    right after its commit, and running it again replays both; a third run, none."""
    location = TableLocation(str(tmp_path / "t"))
    DeltaTable.create(location.uri, table_schema(), partition_by=["date", "hour"], name="t")

    def hour_file(at: datetime, tag: str = "") -> DataFile:
        local = tmp_path / f"{tag}{at:%Y%m%d%H}.parquet"
        pq.write_table(hour_rows(at, tag).drop_columns(["hour"]), local)
        return put_file(location, local, at, day_layout=False)

    def commit(at: datetime, tag: str = "") -> None:
        replace_hour(location, at, [hour_file(at, tag)], schema=table_schema(), metadata={})

    day = datetime(2026, 11, 1, tzinfo=UTC)
    hours = [day + timedelta(hours=h) for h in range(3)]
    for at in hours:
        commit(at)
    later = day + timedelta(days=10, hours=4)  # a day the relayout has not read
    again = hours[1]  # an hour it has read, replaced meanwhile
    written: list[date] = []

    def meanwhile(converted: date) -> None:
        written.append(converted)
        if len(written) == 1:
            commit(later, "other-")
            commit(again, "other-")

    if crash:
        with pytest.raises(_Crash):
            relayout(location, on_day=meanwhile, on_converted=_crash)
        result = relayout(location)
        assert (result.days, result.replayed) == (0, 2)
    else:
        result = relayout(location, on_day=meanwhile)
        assert (result.days, result.replayed) == (1, 2)
    assert relayout(location).replayed == 0
    table = DeltaTable(location.uri)
    assert table.metadata().partition_columns == ["date"]
    assert all("/hour=" not in u for u in table.file_uris())
    expected = sorted(
        f"{'other-' if at in (later, again) else ''}{at:%Y%m%d%H}-{i}"
        for at in (*hours, later)
        for i in range(EVENTS)
    )
    assert sorted(table.to_pyarrow_table(columns=["uuid"])["uuid"].to_pylist()) == expected
