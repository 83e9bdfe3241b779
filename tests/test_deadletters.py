"""Dead letters: a line that cannot become a row no longer blocks its hour.

The real simulator serves an hour whose first member ends with crafted lines: some events,
some lines no converter can turn into a row (not JSON, not an object, invalid UTF-8, a byte
order mark, a raw NUL, a key twice, an unpaired surrogate, spaces alone), and empty lines.
The hour commits; every good line is a row, every bad line is in the hour's quarantine file
byte for byte, the manifest names each (member, line number, sha256), a warning names the
hour, and the run exits 0. Expected answers come from the lines as served, split here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from async_amp.cli.commands.ops import render_status, render_verify
from async_amp.config import AzureConfig, Config
from async_amp.output.columnar.query import MAX_EVENT_BYTES
from async_amp.output.delta.verify import verify_table
from async_amp.output.manifest import MANIFEST_NAME, hour_folder
from async_amp.output.stores import make_sink
from async_amp.readback.checks import verify
from async_amp.readback.status import read_status
from async_amp.reports import build_report
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import run_simulator

from .azurite import Azurite
from .delta_helpers import local_delta_sink
from .helpers import DAY1, KEY, NOW, SECRET, make_config, run
from .test_parquet_e2e import download

pytestmark = pytest.mark.anyio

HOUR = DAY1.replace(hour=10)

GOOD = [b'{"uuid":"good-1","event_type":"ok"}', b'{"uuid":"good-2","event_time":"epoch"}']
BAD = [
    b'{"uuid":"bad-json",',
    b'["an","array"]',
    b'"a string"',
    b'{"uuid":"bad-utf8","city":"\xff\xfe"}',
    b'\xef\xbb\xbf{"uuid":"bom"}',
    b'{"uuid":"nul",\x00"city":"x"}',
    b'{"uuid":"twice","uuid":"again"}',
    b'{"uuid":"surrogate","city":"\\ud800"}',
    b"   \r",
]


def crafted() -> bytes:
    """Good and bad lines interleaved, with empty lines (no events) between some."""
    lines: list[bytes] = []
    for number, bad in enumerate(BAD):
        lines.append(bad)
        if number % 3 == 0:
            lines.append(b"")
        if number < len(GOOD):
            lines.append(GOOD[number])
    return b"\n".join(lines) + b"\n"


def dataset() -> Dataset:
    return Dataset(events_per_hour=40, pages_per_hour=2, crafted={HOUR: crafted()})


def served(
    ds: Dataset, hostile: list[bytes] = BAD
) -> tuple[str, list[bytes], list[tuple[int, bytes]]]:
    """The crafted member, its event lines (good ones), and its bad lines with their numbers."""
    page = ds.pages(HOUR)[0]
    data = ds.ndjson(HOUR, page)
    good, bad = [], []
    for number, line in enumerate(data.split(b"\n")[:-1], start=1):
        if line in hostile:
            bad.append((number, line))
        elif line:
            good.append(line)
    return ds.member_name(HOUR, page), good, bad


def sink_for(config: Config, fmt: str) -> Any:
    if fmt == "delta":
        return local_delta_sink(config)
    return make_sink(config, run_id="test-run", environ={})


async def extract(
    fmt: str, ds: Dataset, out: Path, caplog: pytest.LogCaptureFixture, *, dedupe: bool = False
) -> tuple[Any, Config]:
    async with run_simulator(ds, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, out, max_attempts=2)
        config = replace(config, output=replace(config.output, format=fmt, dedupe=dedupe))
        with caplog.at_level(logging.INFO, logger="async_amp"):
            summary = await run(config, HOUR, HOUR, sink=sink_for(config, fmt))
        assert sim.request_count() == 1  # the hour was not retried
    return summary, config


def assert_quarantined(
    folder: Path, letters: list[dict[str, Any]], member: str, bad: list[tuple[int, bytes]]
) -> None:
    assert (folder / "_quarantine.ndjson").read_bytes() == b"".join(b + b"\n" for _, b in bad)
    assert [(d["source"], d["line"], d["sha256"], d["bytes"]) for d in letters] == [
        (member, n, hashlib.sha256(b).hexdigest(), len(b)) for n, b in bad
    ]
    assert all(d["why"] for d in letters)


def assert_warned(caplog: pytest.LogCaptureFixture, count: int) -> None:
    warned = [r.__dict__ for r in caplog.records if r.__dict__.get("event") == "hour.quarantined"]
    assert len(warned) == 1
    assert warned[0]["lines"] == count
    assert "2026-11-01T10" in warned[0]["detail"]


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
async def test_bad_lines_are_quarantined_and_the_hour_commits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fmt: str
) -> None:
    ds = dataset()
    member, good, bad = served(ds)
    summary, config = await extract(fmt, ds, tmp_path, caplog)
    assert summary.exit_code == 0, summary.to_json()
    assert summary.count("complete") == 1
    assert_warned(caplog, len(bad))
    other = ds.pages(HOUR)[1]
    other_lines = ds.event_count(HOUR, other)
    if fmt == "parquet":
        folder = tmp_path / hour_folder("website", HOUR)
        manifest = json.loads((folder / MANIFEST_NAME).read_bytes())
        entry = next(f for f in manifest["files"] if f.get("source") == member)
        uuids = pq.read_table(folder / entry["name"])["uuid"].to_pylist()
        assert manifest["quarantined_lines"] == len(bad)
        letters = manifest["dead_letters"]
        quarantine = next(f for f in manifest["files"] if f["name"] == "_quarantine.ndjson")
        assert quarantine["events"] == len(bad)
        assert manifest["events"] == len(good) + other_lines + len(bad)
        source = next(s for s in manifest["sources"] if s["name"] == member)
        assert source["lines"] == len(good) + len(bad)  # empty lines are no events
        report = await verify(sink_for(config, fmt), "website", HOUR, HOUR)
        assert report.ok, report.problems
    else:
        table = DeltaTable(str(tmp_path / "website")).to_pyarrow_table()
        uuids = [
            u
            for u, s in zip(
                table["uuid"].to_pylist(), table["_source_file"].to_pylist(), strict=True
            )
            if s == member
        ]
        assert table.num_rows == len(good) + other_lines
        folder = tmp_path / "website" / "_async_amp" / hour_folder("", HOUR).lstrip("/")
        manifest = json.loads((folder / MANIFEST_NAME).read_bytes())
        assert manifest["quarantined_lines"] == len(bad)
        letters = manifest["dead_letters"]
        assert [d["source"] for d in letters] == [member] * len(bad)
        assert manifest["delta"]["rows"] == table.num_rows
        assert manifest["events"] == len(good) + other_lines + len(bad)
        source = next(s for s in manifest["sources"] if s["name"] == member)
        assert source["lines"] == len(good) + len(bad)
        assert not (folder / "_delta_commit.json").exists()
        report = await verify_table(sink_for(config, fmt), "website", HOUR, HOUR)
        assert report.ok, report.problems
    assert uuids == [json.loads(line)["uuid"] for line in good]
    assert_quarantined(folder, letters, member, bad)
    # verify names the hour's dead letters and where they are, in text and in JSON
    kept = str((folder / "_quarantine.ndjson").resolve())
    shown = render_verify(report)
    assert f"  {len(bad)} lines in 1 hour could not become rows" in shown, shown
    assert f"    2026-11-01T10:00:00Z: {len(bad)} lines in {kept}\n" in shown, shown
    as_json = report.to_json()
    assert as_json["quarantined_lines"] == len(bad)
    assert as_json["quarantined"] == [
        {"hour": "2026-11-01T10:00:00Z", "lines": len(bad), "file": kept}
    ]
    assert summary.results[HOUR].quarantined == len(bad)  # the run's summary names the hour
    status = await read_status(sink_for(config, fmt), "website", HOUR, HOUR, now=NOW, lag_hours=2)
    assert [(h.state, h.quarantined) for h in status.hours] == [("complete", len(bad))]
    shown = render_status(status)
    assert f"2026-11-01T10:00:00Z: {len(bad)} lines" in shown
    report = await build_report(sink_for(config, fmt), "website", HOUR, HOUR, now=NOW, lag_hours=2)
    assert report.days[0].events == len(good) + other_lines  # the quarantine is no events


# A line of spaces (DuckDB skips it: it is found once every row went through the filter), sent
# twice, and a good line sent twice
DUPLICATED_BAD = [b"  \t "]
DUPLICATED = [GOOD[0], DUPLICATED_BAD[0], GOOD[0], DUPLICATED_BAD[0], GOOD[1]]


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
async def test_with_dedupe_bad_lines_are_quarantined_and_no_row_is_dropped_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, fmt: str
) -> None:
    """dedupe = true: the duplicate filter has seen the member's first rows when its bad lines
    turn up; the member is read again without them, and that read keeps the first copy of
    each uuid, as if the bad lines had never been there."""
    ds = Dataset(
        events_per_hour=40, pages_per_hour=2, crafted={HOUR: b"\n".join(DUPLICATED) + b"\n"}
    )
    member, good, bad = served(ds, DUPLICATED_BAD)
    assert [line for _, line in bad] == [DUPLICATED_BAD[0]] * 2
    firsts = list(dict.fromkeys(json.loads(line)["uuid"] for line in good))
    assert len(good) - len(firsts) == 1  # the good line sent twice
    summary, config = await extract(fmt, ds, tmp_path, caplog, dedupe=True)
    assert summary.exit_code == 0, summary.to_json()
    assert summary.results[HOUR].quarantined == len(bad)
    if fmt == "parquet":
        folder = tmp_path / hour_folder("website", HOUR)
        record = json.loads((folder / MANIFEST_NAME).read_bytes())
        entry = next(f for f in record["files"] if f.get("source") == member)
        uuids = pq.read_table(folder / entry["name"])["uuid"].to_pylist()
        report = await verify(sink_for(config, fmt), "website", HOUR, HOUR)
    else:
        table = DeltaTable(str(tmp_path / "website")).to_pyarrow_table()
        pairs = zip(table["uuid"].to_pylist(), table["_source_file"].to_pylist(), strict=True)
        uuids = [u for u, source in pairs if source == member]
        folder = tmp_path / "website" / "_async_amp" / hour_folder("", HOUR).lstrip("/")
        record = json.loads((folder / MANIFEST_NAME).read_bytes())
        report = await verify_table(sink_for(config, fmt), "website", HOUR, HOUR)
    assert uuids == firsts
    assert record["dropped_duplicates"] == 1
    assert_quarantined(folder, record["dead_letters"], member, bad)
    assert report.ok, report.problems


async def test_an_hour_without_bad_lines_has_no_quarantine(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ds = Dataset(events_per_hour=40, pages_per_hour=2, crafted={HOUR: b"\n".join(GOOD) + b"\n\n"})
    summary, _ = await extract("parquet", ds, tmp_path, caplog)
    assert summary.exit_code == 0
    folder = tmp_path / hour_folder("website", HOUR)
    assert not (folder / "_quarantine.ndjson").exists()
    manifest = json.loads((folder / MANIFEST_NAME).read_bytes())
    assert "dead_letters" not in manifest
    assert manifest["events"] == ds.hour_event_count(HOUR) + len(GOOD)
    assert not [r for r in caplog.records if r.__dict__.get("event") == "hour.quarantined"]


@pytest.mark.parametrize("keep_gzip", [False, True])
async def test_ndjson_counts_only_lines_that_are_events(tmp_path: Path, keep_gzip: bool) -> None:
    ds = Dataset(events_per_hour=40, pages_per_hour=2, crafted={HOUR: b"\n\n" + crafted() + b"\n"})
    page = ds.pages(HOUR)[0]
    async with run_simulator(ds, api_key=KEY, secret_key=SECRET) as sim:
        summary = await run(make_config(sim.base_url, tmp_path, keep_gzip=keep_gzip), HOUR, HOUR)
    assert summary.exit_code == 0
    folder = tmp_path / hour_folder("website", HOUR)
    manifest = json.loads((folder / MANIFEST_NAME).read_bytes())
    data = ds.ndjson(HOUR, page)
    non_empty = sum(1 for line in data.split(b"\n") if line)
    name = ds.member_name(HOUR, page).split("/", 1)[1]
    entry = next(f for f in manifest["files"] if f["name"] == (name if keep_gzip else name[:-3]))
    assert entry["events"] == non_empty
    stored = (folder / entry["name"]).read_bytes()
    assert stored == (ds.gz(HOUR, page) if keep_gzip else data)  # still byte for byte


async def test_a_long_line_is_converted_and_one_beyond_the_limit_quarantined(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A valid line of 12 MB needs more than an engine's usual memory: it is converted all
    the same; one of twice MAX_EVENT_BYTES (DuckDB's line limit) is kept in the quarantine."""
    noise = random.Random(0)  # text that does not compress like a bomb
    long_value = noise.randbytes(6_000_000).hex()
    long_line = json.dumps({"uuid": "long", "event_properties": {"text": long_value}}).encode()
    too_long = b'{"uuid":"too-long","city":"' + noise.randbytes(MAX_EVENT_BYTES).hex().encode()
    too_long += b'"}'
    ds = Dataset(
        events_per_hour=20,
        pages_per_hour=1,
        crafted={HOUR: long_line + b"\n" + too_long + b"\n" + GOOD[0] + b"\n"},
    )
    lines = ds.ndjson(HOUR, ds.pages(HOUR)[0]).split(b"\n")
    summary, _ = await extract("parquet", ds, tmp_path, caplog)
    assert summary.exit_code == 0, summary.to_json()
    folder = tmp_path / hour_folder("website", HOUR)
    manifest = json.loads((folder / MANIFEST_NAME).read_bytes())
    table = pq.read_table(folder / manifest["files"][0]["name"])
    uuids = table["uuid"].to_pylist()
    assert uuids[-2:] == ["long", "good-1"] and "too-long" not in uuids
    assert json.loads(table["event_properties"][len(uuids) - 2].as_py())["text"] == long_value
    number = lines.index(too_long) + 1
    assert [(d["line"], d["bytes"]) for d in manifest["dead_letters"]] == [(number, len(too_long))]
    assert (folder / "_quarantine.ndjson").read_bytes() == too_long + b"\n"
    assert_warned(caplog, 1)


@pytest.mark.azure
async def test_bad_lines_are_quarantined_in_azure_blob_storage(
    tmp_path: Path, azurite: Azurite, azure_container: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The same hour into Parquet on Azurite: the quarantine blob is committed with the hour
    (staged blocks, manifest last), and ``verify`` reads it back against the manifest."""
    ds = dataset()
    member, good, bad = served(ds)
    async with run_simulator(ds, api_key=KEY, secret_key=SECRET) as sim:
        base = make_config(sim.base_url, tmp_path / "unused", max_attempts=2)
        config = replace(
            base,
            output=replace(base.output, sink="azure", format="parquet"),
            azure=AzureConfig(container=azure_container, retries=2, retry_backoff_s=0.05),
        )
        environ = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
        with caplog.at_level(logging.INFO, logger="async_amp"):
            summary = await run(
                config, HOUR, HOUR, sink=make_sink(config, run_id="test-run", environ=environ)
            )
    assert summary.exit_code == 0, summary.to_json()
    assert summary.results[HOUR].quarantined == len(bad)
    assert_warned(caplog, len(bad))
    root = await download(azurite, azure_container, tmp_path / "copy")
    folder = root / hour_folder("website", HOUR)
    manifest = json.loads((folder / MANIFEST_NAME).read_bytes())
    assert_quarantined(folder, manifest["dead_letters"], member, bad)
    entry = next(f for f in manifest["files"] if f.get("source") == member)
    uuids = pq.read_table(folder / entry["name"])["uuid"].to_pylist()
    assert uuids == [json.loads(line)["uuid"] for line in good]
    sink = make_sink(config, run_id="verify", environ=environ)
    try:
        report = await verify(sink, "website", HOUR, HOUR)
    finally:
        await sink.aclose()
    assert report.ok, report.problems
