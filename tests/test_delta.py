"""Delta output on the local sink: whole hours per commit, resume, --force, readers."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from async_amp import api
from async_amp.config import Config
from async_amp.errors import ConfigError
from async_amp.output.delta.compact import compact_day
from async_amp.output.delta.layout import TABLE_PROPERTIES
from async_amp.output.delta.table import TableLocation
from async_amp.output.delta.verify import verify_table
from async_amp.output.maintain import compact
from async_amp.reports import build_report
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import run_simulator
from async_amp.simulator.site_changes import ChangingDataset

from .delta_helpers import (
    assert_commit_facts,
    expected_rows_per_hour,
    expected_uuids,
    local_delta_sink,
    read_table,
    rows_per_hour,
)
from .helpers import DAY1, KEY, NOW, SECRET, last_hour_of, make_config, run, small_dataset

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
        by_hour = con.sql("SELECT date, hour, count(*) FROM events GROUP BY ALL").fetchall()
        expected = expected_rows_per_hour(dataset, DAY1, last)
        # each hour's manifest types its commit: the version is in the log and added exactly
        # the files and rows it states, which are the files and rows a reader sees for the hour
        live: Counter[tuple[object, int]] = Counter()
        for uri in dt.file_uris():
            hours = set(pq.read_table(uri, columns=["hour"])["hour"].to_pylist())
            assert len(hours) == 1  # one file per archive member: one hour each
            day = date.fromisoformat(uri.split("date=")[1][:10])
            live[day, hours.pop()] += 1
        for day, hour, rows in by_hour:
            folder = tmp_path / "website" / "_async_amp" / f"date={day}" / f"hour={hour:02d}"
            manifest = json.loads((folder / "_manifest.json").read_bytes())
            added = assert_commit_facts(tmp_path / "website", manifest)
            assert manifest["delta"]["rows"] == rows == expected[day, hour]
            assert manifest["delta"]["files"] == live[day, hour] == len(added) > 0
            assert manifest["events"] == rows and manifest["bytes"] == manifest["delta"]["bytes"]
            assert {Path(p).resolve() for p in added} <= {Path(u) for u in dt.file_uris()}
        assert len(by_hour) == 47 and not list(tmp_path.rglob("_delta_commit.json"))
        # polars, as docs/delta.md shows it (it reads through deltalake too)
        day = pl.scan_delta(str(tmp_path / "website")).filter(
            pl.col("date") == pl.date(2026, 11, 1)
        )
        per_hour = day.group_by("hour").agg(pl.len()).sort("hour").collect()
        assert dict(per_hour.iter_rows()) == {
            h: n
            for (d, h), n in expected_rows_per_hour(dataset, DAY1, last).items()
            if d == DAY1.date()
        }
        sim.reset_log()
        again = await run(config, DAY1, last, sink=local_delta_sink(config))
        assert sim.request_count() == 0 and again.exit_code == 0


async def test_force_on_one_hour_replaces_it_in_one_commit_and_every_uuid_stays_once(
    tmp_path: Path,
) -> None:
    dataset = small_dataset()
    last = DAY1 + timedelta(hours=3)
    hour = DAY1 + timedelta(hours=2)
    uri = str(tmp_path / "website")
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=4)
        assert (await run(config, DAY1, last, sink=local_delta_sink(config))).exit_code == 0
        before = DeltaTable(uri).version()
        summary = await run(config, hour, hour, sink=local_delta_sink(config), force=True)
        assert summary.exit_code == 0 and summary.count("complete") == 1
    table = DeltaTable(uri)
    assert table.version() == before + 1  # one transaction replaced the hour
    uuids = Counter(table.to_pyarrow_table()["uuid"].to_pylist())
    assert uuids == expected_uuids(dataset, DAY1, last)
    history = table.history(1)[0]
    assert history["operationParameters"]["mode"] == "Append"
    assert history["async_amp.hour"] == "2026-11-01T02"
    # the commit removed exactly the hour's old files and added its new ones, under the
    # hour's transaction id (what makes two commits of one hour conflict) and the day's
    commit = tmp_path / "website" / "_delta_log" / f"{table.version():020d}.json"
    actions = [json.loads(line) for line in commit.read_text().splitlines()]
    adds = [a["add"] for a in actions if "add" in a]
    removes = [a["remove"] for a in actions if "remove" in a]
    old = pa.table(DeltaTable(uri, version=before).get_add_actions(flatten=True)).to_pydict()
    old_paths = {p for p, h in zip(old["path"], old["min.hour"], strict=True) if h == 2}
    assert adds and all(a["partitionValues"] == {"date": "2026-11-01"} for a in adds)
    assert {r["path"] for r in removes} == old_paths and old_paths
    assert [a["txn"]["appId"] for a in actions if "txn" in a] == [
        "async-amp:2026-11-01T02",
        "async-amp:day:2026-11-01",
    ]
    # every snapshot since the first holds each hour at most once
    for version in range(before + 2):
        snap = DeltaTable(uri, version=version).to_pyarrow_table()
        counts = Counter(snap["uuid"].to_pylist())
        assert max(counts.values(), default=1) == 1, version


async def test_table_protocol_is_reader_1_writer_2_with_utc_timestamps(tmp_path: Path) -> None:
    dataset = small_dataset()
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path)
        assert (await run(config, DAY1, DAY1, sink=local_delta_sink(config))).exit_code == 0
    table = DeltaTable(str(tmp_path / "website"))
    protocol = table.protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
    assert not protocol.reader_features and not protocol.writer_features
    schema = pa.schema(table.schema().to_arrow())
    assert schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert table.metadata().partition_columns == ["date"]
    assert schema.names[-2:] == ["date", "hour"]
    assert table.metadata().configuration == TABLE_PROPERTIES
    log = sorted((tmp_path / "website" / "_delta_log").glob("*.json"))
    actions = [json.loads(line) for line in log[0].read_text().splitlines()]
    proto = next(a["protocol"] for a in actions if "protocol" in a)
    assert proto == {"minReaderVersion": 1, "minWriterVersion": 2}


async def _two_hours(tmp_path: Path, dataset: Dataset) -> Config:
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=4)
        last = DAY1 + timedelta(hours=2)
        assert (await run(config, DAY1, last, sink=local_delta_sink(config))).exit_code == 0
    return config


async def test_verify_passes_then_names_an_unclaimed_hour_and_a_lost_data_file(
    tmp_path: Path,
) -> None:
    config = await _two_hours(tmp_path, small_dataset())
    sink = local_delta_sink(config)
    last = DAY1 + timedelta(hours=2)
    report = await verify_table(sink, "website", DAY1, last)
    assert report.ok and report.checked == 3 and report.events > 0
    # a run killed between its commit and its manifest: rows nobody claims
    meta = tmp_path / "website" / "_async_amp" / "date=2026-11-01"
    (meta / "hour=00" / "_manifest.json").unlink()
    # a data file lost from under the table
    table = DeltaTable(str(tmp_path / "website"))
    files = pa.table(table.get_add_actions(flatten=True)).to_pydict()
    lost = next(p for p, h in zip(files["path"], files["min.hour"], strict=True) if h == 1)
    (tmp_path / "website" / lost).unlink()
    report = await verify_table(sink, "website", DAY1, last)
    kinds = {(p.hour.hour, p.kind) for p in report.problems}
    assert kinds == {(0, "extra"), (1, "unreadable")}, report.problems


async def test_verify_catches_rows_changed_behind_its_back(tmp_path: Path) -> None:
    config = await _two_hours(tmp_path, small_dataset())
    uri = str(tmp_path / "website")
    DeltaTable(uri).delete("date = '2026-11-01' AND hour = 2 AND event_type = 'Page Viewed'")
    report = await verify_table(
        local_delta_sink(config), "website", DAY1, DAY1 + timedelta(hours=2)
    )
    assert {(p.hour.hour, p.kind) for p in report.problems} >= {(2, "events"), (2, "corrupt")}


async def test_compact_rewrites_the_day_into_one_sorted_file_vacuums_and_changes_no_row(
    tmp_path: Path,
) -> None:
    config = await _two_hours(tmp_path, small_dataset(events_per_hour=400))
    uri = str(tmp_path / "website")
    before = DeltaTable(uri).to_pyarrow_table().sort_by("uuid")
    # another engine appends a few rows, then deletes them: a file no snapshot uses now
    extra = before.slice(0, 5).drop_columns(["_source_file"])
    extra = extra.append_column("_source_file", pa.array(["other-engine"] * 5))
    write_deltalake(uri, extra.select(before.column_names), mode="append")
    DeltaTable(uri).delete("_source_file = 'other-engine'")
    live_before = DeltaTable(uri).file_uris()
    assert len(live_before) > 3  # one file per archive member
    on_disk = sorted(str(p) for p in (tmp_path / "website").rglob("*.parquet"))
    assert len(on_disk) > len(live_before)  # replaced files stay for old snapshots
    # retention 0 (no run in flight here): what vacuum keeps is exactly the latest snapshot
    result = compact_day(TableLocation(uri), DAY1.date(), retention_hours=0)
    assert result.files_removed == len(live_before) and result.files_added == 1
    # files removed in the very millisecond of the vacuum are kept until the next one
    again = compact_day(TableLocation(uri), DAY1.date(), retention_hours=0)
    assert again.files_removed == again.files_added == 0
    table = DeltaTable(uri)
    after = table.to_pyarrow_table()
    assert after.sort_by("uuid").equals(before.select(after.column_names))
    live = sorted(table.file_uris())
    assert len(live) == 1
    assert sorted(str(p) for p in (tmp_path / "website").rglob("*.parquet")) == live
    assert result.vacuumed == len(on_disk)  # every file older than the compaction
    # one row group, sorted by event type, then event time
    file = pq.ParquetFile(live[0])
    assert file.metadata.num_row_groups == 1 and file.metadata.num_rows == before.num_rows
    read = file.read(columns=["event_type", "event_time"])
    keys = list(zip(read["event_type"].to_pylist(), read["event_time"].to_pylist(), strict=True))
    assert keys == sorted(keys, key=lambda k: (k[0] is None, k[0] or "", k[1]))
    delta = replace(config, output=replace(config.output, format="delta"))
    with pytest.raises(ConfigError, match="at least 1"):
        compact(delta, first=DAY1, last=DAY1, projects=["website"], environ={}, retention_hours=0)
    with pytest.raises(ConfigError, match="holds ndjson: there is no table to compact"):
        compact(config, first=DAY1, last=DAY1, projects=["website"], environ={})
    assert (
        tmp_path / "website" / "_async_amp" / "date=2026-11-01" / "hour=01" / "_manifest.json"
    ).exists()
    report = await verify_table(
        local_delta_sink(config), "website", DAY1, DAY1 + timedelta(hours=2)
    )
    assert report.ok, report.problems


async def test_dedupe_keeps_the_first_copy_of_each_uuid_and_the_record_counts_the_rest(
    tmp_path: Path,
) -> None:
    dataset = ChangingDataset(events_per_hour=60, pages_per_hour=2, duplicate_every=10)
    hour = DAY1 + timedelta(hours=4)
    lines = [
        json.loads(x) for p in dataset.pages(hour) for x in dataset.ndjson(hour, p).splitlines()
    ]
    firsts = list(dict.fromkeys(line["uuid"] for line in lines))
    assert len(lines) - len(firsts) > 2
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        base = make_config(sim.base_url, tmp_path)
        config = replace(base, output=replace(base.output, format="delta", dedupe=True))
        assert (await run(config, hour, hour, sink=local_delta_sink(config))).exit_code == 0
    table = DeltaTable(str(tmp_path / "website")).to_pyarrow_table()
    assert sorted(table["uuid"].to_pylist()) == sorted(firsts)
    meta = tmp_path / "website" / "_async_amp" / "date=2026-11-01" / "hour=04"
    record = json.loads((meta / "_manifest.json").read_bytes())
    assert record["duplicate_uuids"] == record["dropped_duplicates"] == len(lines) - len(firsts)
    assert record["delta"]["rows"] == len(firsts)
    assert sum(s["lines"] for s in record["sources"]) == len(lines)
    assert (await verify_table(local_delta_sink(config), "website", hour, hour)).ok


async def test_since_last_resumes_after_the_newest_hour_the_table_holds(tmp_path: Path) -> None:
    dataset = small_dataset()
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        base = make_config(sim.base_url, tmp_path, start="2026-11-01")
        config = replace(
            base,
            output=replace(base.output, format="delta"),
            environ={"AMP_API_KEY": KEY, "AMP_SECRET_KEY": SECRET},
        )
        first = await run(config, DAY1, DAY1 + timedelta(hours=5), sink=local_delta_sink(config))
        assert first.exit_code == 0
        sim.reset_log()
        # 14:00 with the 2-hour lag: hours up to 11:00 are available
        later = await api.extract(config, since_last=True, now=DAY1 + timedelta(hours=14))
        assert later.exit_code == 0
        assert sorted(r.start for r in sim.requests) == [
            DAY1 + timedelta(hours=h) for h in range(6, 12)
        ]
    last = DAY1 + timedelta(hours=11)
    table = DeltaTable(str(tmp_path / "website")).to_pyarrow_table()
    assert rows_per_hour(table) == expected_rows_per_hour(dataset, DAY1, last)


# What a Delta hour's manifest held at the top level once its facts are typed, and that the
# manifests written before the ``delta`` section did not have (their side record had them)
TYPED_KEYS = ("format", "sources", "source_lines", "duplicate_uuids", "dropped_duplicates")


def _into_side_records(meta: Path) -> dict[Path, bytes]:
    """Rewrite every hour under ``meta`` into the shape written before the manifest typed
    the table commit: its facts in ``_delta_commit.json`` beside it, listed as its file (with
    the hour's rows and table bytes), no ``delta`` section. Each manifest's new bytes."""
    written = {}
    for path in sorted(meta.rglob("_manifest.json")):
        manifest = json.loads(path.read_bytes())
        delta = manifest.pop("delta")
        record = {"hour": manifest["hour"], **delta, "extra_rows": manifest.pop("extra_rows")}
        record |= {key: manifest.pop(key) for key in TYPED_KEYS}
        body = (json.dumps(record, indent=2) + "\n").encode()
        (path.parent / "_delta_commit.json").write_bytes(body)
        entry = {
            "name": "_delta_commit.json",
            "bytes": delta["bytes"],
            "events": delta["rows"],
            "sha256": hashlib.sha256(body).hexdigest(),
            "source": "",
        }
        manifest["files"] = [entry, *manifest["files"]]
        path.write_text(json.dumps(manifest, indent=2) + "\n")
        written[path] = path.read_bytes()
    return written


async def test_an_output_with_side_records_from_before_is_read_resumed_and_rechecked(
    tmp_path: Path,
) -> None:
    first = NOW.replace(hour=4)
    changed, last = first + timedelta(hours=1), first + timedelta(hours=2)
    meta = tmp_path / "website" / "_async_amp"
    async with run_simulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        base = make_config(sim.base_url, tmp_path, recheck=timedelta(hours=12))
        config = replace(base, output=replace(base.output, format="delta"))
        plain = replace(config, extract=replace(config.extract, recheck=timedelta(0)))
        assert (await run(plain, first, last, sink=local_delta_sink(plain))).exit_code == 0
        old = _into_side_records(meta)
        assert len(old) == 3
        served = expected_rows_per_hour(sim.dataset, first, last)
        rows = [served[h.date(), h.hour] for h in (first, changed, last)]
        # status, verify and report read the hours' facts as before
        status = (await api.status(plain, start=first, end=last, now=NOW)).projects[0]
        assert [(h.state, h.events, h.files) for h in status.hours] == [
            ("complete", n, 1) for n in rows
        ]
        checked = await api.verify(plain, start=first, end=last)
        assert checked.ok and checked.projects[0].events == sum(rows), checked.to_json()
        report = await build_report(
            local_delta_sink(plain), "website", first, last, now=NOW, lag_hours=2
        )
        assert report.days[0].events == sum(rows)
        # extract resumes: every hour is done, none is asked or rewritten
        sim.reset_log()
        assert (await run(plain, first, last, sink=local_delta_sink(plain))).exit_code == 0
        assert sim.request_count() == 0
        assert {p: p.read_bytes() for p in old} == old
        # --recheck judges each hour by its side record: only the changed one is replaced
        sim.change_hour(changed)
        summary = await run(config, first, last, sink=local_delta_sink(config))
        assert summary.result("website").changed_hours == (changed,)
        new = sim.dataset
    folder = meta / f"date={changed:%Y-%m-%d}" / f"hour={changed:%H}"
    assert {p: p.read_bytes() for p in old if p.parent != folder} == {
        p: b for p, b in old.items() if p.parent != folder
    }
    rewritten = json.loads((folder / "_manifest.json").read_bytes())
    assert rewritten["delta"]["rows"] == expected_rows_per_hour(new, changed, changed).popitem()[1]
    assert not (folder / "_delta_commit.json").exists()  # its side record went with the rows
    assert Counter(read_table(str(tmp_path / "website"))["uuid"].to_pylist()) == expected_uuids(
        new, first, last
    )
    assert (await api.verify(plain, start=first, end=last)).ok
    # a side record that no longer matches its manifest is named
    record = meta / f"date={first:%Y-%m-%d}" / f"hour={first:%H}" / "_delta_commit.json"
    record.write_bytes(record.read_bytes().replace(b'"rows": ', b'"rows":  '))
    checked = await api.verify(plain, start=first, end=last)
    assert [(p.hour, p.kind, p.file) for p in checked.projects[0].problems] == [
        (first, "sha256", "_delta_commit.json")
    ]
    # the typed section is checked when read: a damaged one makes the manifest unreadable
    rewritten["delta"]["rows"] = -1
    (folder / "_manifest.json").write_text(json.dumps(rewritten))
    status = (await api.status(plain, start=changed, end=changed, now=NOW)).projects[0]
    assert [(h.state, h.detail) for h in status.hours] == [
        ("invalid", "not a valid manifest: rows must be a whole number, not -1")
    ]
