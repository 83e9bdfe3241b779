"""Hours that change after the fact: ``extract --recheck DURATION`` asks complete hours younger
than DURATION again, replaces the ones whose members differ and leaves the others untouched.

The simulator's data for an hour changes between runs (``ExportSimulator.change_hour``), as
when Amplitude backfills late events into an hour that was already exported.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from azure.storage.blob import BlobServiceClient as SyncBlobServiceClient
from deltalake import DeltaTable

from async_amp.config import AzureConfig
from async_amp.config.load import load_config
from async_amp.config.values import duration
from async_amp.errors import ConfigError
from async_amp.extraction.recheck import judge, recheck_since
from async_amp.hours import hour_range
from async_amp.output.manifest import FileEntry, Manifest, hour_folder
from async_amp.output.stores import make_sink
from async_amp.output.stores.azure import AzureSink
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import run_simulator

from .azurite import Azurite
from .delta_helpers import expected_uuids, local_delta_sink, read_table
from .helpers import (
    KEY,
    NOW,
    SECRET,
    assert_output_matches,
    cli_extract,
    make_config,
    run,
    small_dataset,
)

pytestmark = pytest.mark.anyio

FIRST = datetime(2026, 11, 25, tzinfo=UTC)
NEWEST = datetime(2026, 11, 26, 9, tzinfo=UTC)  # NOW minus the 2 h availability lag
INSIDE = datetime(2026, 11, 26, 5, tzinfo=UTC)  # within 12 h of NOW
OUTSIDE = datetime(2026, 11, 25, 10, tzinfo=UTC)  # older than 12 h


def data_files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*.json") if "logs" not in p.parts}


def test_recheck_replaces_the_changed_hour_and_touches_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = small_dataset()
    span = ("--start", "2026-11-25", "--end", "2026-11-26T09")
    with BackgroundSimulator(old, api_key=KEY, secret_key=SECRET) as sim:
        first = cli_extract(sim.base_url, out, *span)
        assert first.returncode == 0, first.stderr
        before = data_files(out)
        sim.change_hour(INSIDE)  # late events for an hour inside the window ...
        sim.change_hour(OUTSIDE)  # ... and for one older than it
        sim.reset_log()
        summary_json = tmp_path / "summary.json"
        again = cli_extract(
            sim.base_url,
            out,
            *span,
            "--recheck",
            "12h",
            "--summary-json",
            str(summary_json),
            "--log-format",
            "json",
        )
        assert again.returncode == 0, again.stderr
        asked = sorted(r.start for r in sim.requests if r.start is not None)
        new = sim.dataset
    assert asked == list(hour_range(datetime(2026, 11, 26, tzinfo=UTC), NEWEST))

    report = json.loads(summary_json.read_text())
    project = report["projects"]["website"]
    assert (project["rechecked"], project["changed"]) == (10, 1)
    assert project["changed_hours"] == ["2026-11-26T05:00:00Z"]
    assert report["totals"]["changed"] == 1
    assert "  rechecked 10 hours, 1 changed: 2026-11-26T05:00:00Z" in again.stdout.splitlines()

    events = [json.loads(line) for line in again.stderr.splitlines() if line.startswith("{")]
    (changed,) = [e for e in events if e["event"] == "hour.changed"]
    assert changed["hour"] == "2026-11-26T05:00:00Z"
    assert changed["events_before"] == old.hour_event_count(INSIDE)
    assert changed["events_after"] == new.hour_event_count(INSIDE) == changed["events_before"] + 1
    assert len([e for e in events if e["event"] == "hour.unchanged"]) == 9

    after = data_files(out)
    touched = {p for p in after if before.get(p) != after[p]}
    assert touched and all(f"{hour_folder('website', INSIDE)}/" in str(p) for p in touched)
    assert_output_matches(out, new, INSIDE, INSIDE)  # the new data, byte for byte
    assert_output_matches(out, old, FIRST, INSIDE - timedelta(hours=1))  # OUTSIDE kept: old
    assert_output_matches(out, old, INSIDE + timedelta(hours=1), NEWEST)
    assert not (out / ".async-amp-staging").exists()


async def test_an_hour_that_now_answers_404_keeps_its_data(tmp_path: Path) -> None:
    old = small_dataset()
    async with run_simulator(old, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path)
        await run(config, INSIDE, INSIDE)
        sim.change_hour(INSIDE, events=0)  # the API now says "no data" for it
        rechecking = make_config(sim.base_url, tmp_path, recheck=timedelta(hours=12))
        summary = await run(rechecking, INSIDE, INSIDE)
        assert sim.request_count(status=404) == 1
    assert summary.exit_code == 0
    assert [r.recheck for r in summary.results.values()] == ["kept"]
    assert_output_matches(tmp_path, old, INSIDE, INSIDE)


async def test_recheck_into_azure_keeps_unchanged_blobs_etags(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    azure = AzureConfig(container=azure_container, retries=0)

    def etags() -> dict[str, str]:
        with SyncBlobServiceClient.from_connection_string(azurite.connection_string) as service:
            blobs = service.get_container_client(azure_container).list_blobs()
            return {b.name: str(b.etag) for b in blobs}

    first, last = datetime(2026, 11, 26, 3, tzinfo=UTC), NEWEST
    async with run_simulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path)
        sink = AzureSink.from_config(azure, run_id="one", environ=env)
        assert (await run(config, first, last, sink=sink)).exit_code == 0
        before = etags()
        sim.change_hour(INSIDE)
        rechecking = make_config(sim.base_url, tmp_path, recheck=timedelta(hours=12))
        sink = AzureSink.from_config(azure, run_id="two", environ=env)
        summary = await run(rechecking, first, last, sink=sink)
    assert summary.exit_code == 0 and summary.result("website").changed_hours == (INSIDE,)
    after = etags()
    moved = {name for name in after if before.get(name) != after[name]}
    assert moved and all("/date=2026-11-26/hour=05/" in name for name in moved)
    assert set(after) == set(before)


async def test_recheck_into_delta_commits_only_the_changed_hour(tmp_path: Path) -> None:
    first, last = INSIDE - timedelta(hours=1), INSIDE + timedelta(hours=1)
    uri = str(tmp_path / "website")
    async with run_simulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path)
        assert (await run(config, first, last, sink=local_delta_sink(config))).exit_code == 0
        version = DeltaTable(uri).version()
        sim.change_hour(INSIDE)
        rechecking = make_config(sim.base_url, tmp_path, recheck=timedelta(hours=12))
        summary = await run(rechecking, first, last, sink=local_delta_sink(rechecking))
        new = sim.dataset
        assert sim.request_count() == 2 * 3  # every hour asked twice: once, then rechecked
    result = summary.result("website")
    assert summary.exit_code == 0 and result.changed_hours == (INSIDE,)
    assert result.rechecked == 3
    table = DeltaTable(uri)
    assert table.version() == version + 1  # one commit: the changed hour; none for the rest
    assert table.history(1)[0]["async_amp.hour"] == "2026-11-26T05"
    assert Counter(read_table(uri)["uuid"].to_pylist()) == expected_uuids(new, first, last)


async def test_recheck_into_parquet_rewrites_only_the_changed_hour(tmp_path: Path) -> None:
    first, last = INSIDE - timedelta(hours=1), INSIDE + timedelta(hours=1)
    async with run_simulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path)
        config = replace(config, output=replace(config.output, format="parquet"))
        sink = make_sink(config, run_id="one", environ={})
        assert (await run(config, first, last, sink=sink)).exit_code == 0
        before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}
        sim.change_hour(INSIDE)
        rechecking = replace(config, extract=replace(config.extract, recheck=timedelta(hours=12)))
        sink = make_sink(rechecking, run_id="two", environ={})
        summary = await run(rechecking, first, last, sink=sink)
        new = sim.dataset
    assert summary.exit_code == 0
    assert summary.result("website").changed_hours == (INSIDE,)
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.parquet")}
    assert set(after) == set(before)
    moved = {p for p in after if after[p] != before[p]}
    assert moved and all(f"{hour_folder('website', INSIDE)}/" in str(p) for p in moved)
    rows = pq.read_table(tmp_path / hour_folder("website", INSIDE)).num_rows
    assert rows == new.hour_event_count(INSIDE)


# --------------------------------------------------------------------------- pure pieces


def test_recheck_since_is_the_oldest_hour_that_ended_within_the_duration() -> None:
    now = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    assert recheck_since(now, timedelta(0)) is None
    # 12:30 - 12 h = 00:30: the hour 00:00-01:00 ends after it, the hour before does not
    assert recheck_since(now, timedelta(hours=12)) == datetime(2026, 11, 26, 0, tzinfo=UTC)
    exact = datetime(2026, 11, 26, 12, tzinfo=UTC)  # 00:00 exactly: hour 23 ended then
    assert recheck_since(exact, timedelta(hours=12)) == datetime(2026, 11, 26, 0, tzinfo=UTC)


def _manifest(*members: tuple[str, str, int]) -> Manifest:
    files = tuple(
        FileEntry(name=n.removesuffix(".gz"), bytes=1, events=e, sha256=d, source=f"1/{n}")
        for n, d, e in members
    )
    status = "complete" if files else "empty"
    return Manifest(
        hour=NOW,
        status=status,
        files=files,
        attempts=1,
        extracted_at=NOW,  # type: ignore[arg-type]
    )


def test_judge_compares_source_members_by_digest() -> None:
    a, b = ("1_x#0.json.gz", "aa", 5), ("1_x#1.json.gz", "bb", 7)
    assert judge(_manifest(a, b), _manifest(b, a)).outcome == "unchanged"
    changed = judge(_manifest(a, b), _manifest(a, ("1_x#1.json.gz", "cc", 8)))
    assert (changed.outcome, changed.differ, changed.events_before) == ("changed", 1, 12)
    grown = judge(_manifest(a), _manifest(a, b))
    assert (grown.outcome, grown.added, grown.removed) == ("changed", 1, 0)
    assert judge(_manifest(a, b), _manifest()).outcome == "kept"  # 404: keep the rows
    assert judge(None, _manifest(a)).outcome == "changed"
    assert judge(_manifest(), _manifest()).outcome == "unchanged"


@pytest.mark.parametrize(
    ("text", "hours"), [("48h", 48), ("2d", 48), ("1w", 168), (" 6H ", 6), ("0", 0), ("off", 0)]
)
def test_durations(text: str, hours: int) -> None:
    assert duration(text) == timedelta(hours=hours)


def test_a_bad_recheck_duration_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[extract]\nrecheck = "48 hours"\n')
    with pytest.raises(ConfigError, match=r'\[extract\] recheck must be a duration such as "48h"'):
        load_config(path, environ={})
