"""The report's reader and aggregation: every storage format and sink gives the same report,
and the pure pieces (drops, drift, settings) on their own."""

from __future__ import annotations

import gzip
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from async_amp import load_config
from async_amp.config import AzureConfig, ReportConfig
from async_amp.errors import ConfigError
from async_amp.output.columnar import iter_event_batches, write_parquet
from async_amp.output.manifest import MANIFEST_NAME, FileEntry, Manifest, hour_folder
from async_amp.output.stores.azure import AzureSink
from async_amp.output.stores.local import LocalSink
from async_amp.reports import Report, build_report
from async_amp.reports.model import HourCell, suspicious_drops
from async_amp.simulator.server import run_simulator

from .azurite import Azurite
from .helpers import KEY, SECRET, make_config, run
from .report_lake import (
    DATASET,
    FAILED,
    FIELD_FROM,
    FIRST,
    LAG,
    LAST,
    NOW,
    PROPERTY_FROM,
    SETTINGS,
    Lake,
    shared_lake,
)
from .s3 import S3Key, S3ServerProcess


def _same_numbers(a: Report, b: Report) -> None:
    """Everything the page shows but where the data came from."""
    assert a.hours == b.hours
    assert a.days == b.days
    assert a.rows_read == b.rows_read > 0
    assert a.blog == b.blog and a.blog
    assert a.leads == b.leads and a.leads
    assert (a.countries, a.cities, a.sources, a.oses, a.browsers, a.device_types) == (
        b.countries,
        b.cities,
        b.sources,
        b.oses,
        b.browsers,
        b.device_types,
    )
    assert a.weekday_hour == b.weekday_hour
    assert a.session_lengths == b.session_lengths
    assert a.drops == b.drops
    assert a.event_types == b.event_types


# --- Parquet ----------------------------------------------------------------------------------


PARQUET_DAYS = (FAILED.replace(hour=0), FIELD_FROM.replace(hour=23))  # Nov 6 to Nov 8


def _to_parquet(lake: Lake, out: Path) -> None:
    """Three days of the lake again, each hour as one Parquet file by the project's writer."""
    days = {f"date={d:%Y-%m-%d}" for d in (PARQUET_DAYS[0] + timedelta(days=n) for n in range(3))}
    for folder in sorted((lake.root / "website").glob("date=*/hour=*")):
        if folder.parent.name not in days:
            continue
        target = out / folder.relative_to(lake.root)
        target.mkdir(parents=True)
        try:
            manifest = Manifest.loads((folder / MANIFEST_NAME).read_bytes())
        except ValueError:
            shutil.copy(folder / MANIFEST_NAME, target / MANIFEST_NAME)  # the failed hour
            continue
        if manifest.status == "empty":
            shutil.copy(folder / MANIFEST_NAME, target / MANIFEST_NAME)
            continue
        members = []
        for entry in manifest.files:
            data = (folder / entry.name).read_bytes()
            members.append(gzip.decompress(data) if entry.name.endswith(".gz") else data)
        batches = iter_event_batches(members, export_hour=manifest.hour, source_file="hour")
        name = f"{manifest.hour:%Y-%m-%d_%H}.parquet"
        with (target / name).open("wb") as file:
            facts = write_parquet(batches, file)
        entry = FileEntry(name, facts.bytes, facts.rows, facts.sha256)
        (target / MANIFEST_NAME).write_bytes(replace(manifest, files=(entry,)).dumps())


def test_parquet_output_gives_the_same_report_as_ndjson(tmp_path: Path) -> None:
    lake = shared_lake()
    _to_parquet(lake, tmp_path)
    assert list(tmp_path.glob("website/*/*/*.parquet"))
    from_parquet = replace(lake, root=tmp_path).build(SETTINGS, *PARQUET_DAYS)
    _same_numbers(lake.build(SETTINGS, *PARQUET_DAYS), from_parquet)
    # drift in Parquet comes from _extra's keys and the JSON columns' keys
    assert ("field", "app_build", FIELD_FROM.date()) in [
        (k.kind, k.name, k.day) for k in from_parquet.new_keys
    ]
    assert ("property", "experiment_variant", PROPERTY_FROM.date()) in [
        (k.kind, k.name, k.day) for k in from_parquet.new_keys
    ]


# --- Azure ------------------------------------------------------------------------------------


@pytest.mark.azure
def test_azure_sink_gives_the_same_report_as_local(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    """The non-local path: files streamed through ``iter_file`` into a temp folder."""
    first, last = FIRST, FIRST + timedelta(days=2) - timedelta(hours=1)
    environ = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}

    def azure() -> AzureSink:
        config = AzureConfig(container=azure_container, retries=2, retry_backoff_s=0.05)
        return AzureSink.from_config(config, run_id="test-run", environ=environ)

    async def both() -> tuple[Report, Report]:
        async with run_simulator(DATASET, api_key=KEY, secret_key=SECRET) as sim:
            config = make_config(sim.base_url, tmp_path / "data", window_hours=24)
            assert (await run(config, first, last)).exit_code == 0
            assert (await run(config, first, last, sink=azure())).exit_code == 0
        reports = []
        for sink in (LocalSink(tmp_path / "data", run_id="r", fsync=False), azure()):
            try:
                reports.append(
                    await build_report(
                        sink, "website", first, last, now=NOW, lag_hours=LAG, settings=SETTINGS
                    )
                )
            finally:
                await sink.aclose()
        return reports[0], reports[1]

    local, remote = anyio.run(both)
    _same_numbers(local, remote)
    assert not list(Path(tmp_path).glob("**/async-amp-report-*"))


# --- pure pieces ------------------------------------------------------------------------------

MON = datetime(2026, 11, 2, 14, tzinfo=UTC)
WEEK = timedelta(days=7)


def _cells(*events: int | None, start: datetime = MON) -> list[HourCell]:
    return [
        HourCell(start + i * WEEK, "missing")
        if n is None
        else HourCell(start + i * WEEK, "complete", n)
        for i, n in enumerate(events)
    ]


def test_an_hour_far_below_the_same_hour_of_earlier_weeks_is_suspicious() -> None:
    drops = suspicious_drops(_cells(100, 110, 90, 30), 0.5)
    assert [(d.hour, d.events, d.baseline) for d in drops] == [(MON + 3 * WEEK, 30, 100.0)]


def test_no_drop_without_an_earlier_week_or_with_a_tiny_baseline() -> None:
    assert suspicious_drops(_cells(100), 0.5) == []
    assert suspicious_drops(_cells(10, 1), 0.5) == []  # a baseline under 20 events
    assert suspicious_drops(_cells(100, 60), 0.5) == []


def test_missing_weeks_do_not_count_in_the_baseline() -> None:
    drops = suspicious_drops(_cells(100, None, None, 10), 0.5)
    assert [d.baseline for d in drops] == [100.0]


def test_report_settings_come_from_config_toml_and_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text(
        '[report]\npage_view_events = ["pageview"]\nblog_prefix = "/articles/"\n'
        'time_zone = "Europe/Berlin"\n'
    )
    config = load_config(file, environ={"ASYNC_AMP_REPORT_PAGE_PATH_KEYS": "url_path, path"})
    assert config.report.page_view_events == ("pageview",)
    assert config.report.page_path_keys == ("url_path", "path")
    assert (config.report.blog_prefix, config.report.time_zone) == ("/articles/", "Europe/Berlin")
    assert load_config(environ={}).report == ReportConfig()


def test_bad_report_settings_are_one_message_saying_what_to_fix(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text(
        '[report]\ntime_zone = "Mars/Olympus"\nblog_prefix = "blog/"\npage_view_events = []\n'
        "drop_ratio = 1.5\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(file, environ={})
    text = str(caught.value)
    assert "4 problems" in text
    assert "'Mars/Olympus' is not an IANA time zone" in text
    assert 'blog_prefix must start with "/"' in text
    assert "page_view_events must name at least one" in text
    assert "drop_ratio must be below 1" in text


def test_the_lake_s_failed_hour_is_not_read() -> None:
    lake = shared_lake()
    cell = next(c for c in lake.report.hours if c.hour == FAILED)
    assert cell.state == "failed" and cell.events == 0
    assert (lake.root / hour_folder("website", FAILED)).is_dir()
    assert lake.report.first == FIRST and lake.report.last == LAST


def test_a_year_renders_under_5_mb() -> None:
    """A year of hours, days, the top lists and sparklines full: the page stays small."""
    from async_amp.reports import render_html
    from async_amp.reports.aggregate import SESSION_BUCKETS, DayFacts
    from async_amp.reports.model import BlogPost, Drop, Lead, NewKey

    first = datetime(2025, 1, 1, tzinfo=UTC)
    hours = [first + timedelta(hours=h) for h in range(365 * 24)]
    cells = tuple(
        HourCell(h, "complete", 5_000 + h.hour * 37, 1) if h.hour != 7 else HourCell(h, "missing")
        for h in hours
    )
    days = tuple(
        DayFacts(
            first.date() + timedelta(days=d), 120_000, 30, 12, 9_000, 3_000, 800, 20_000, 60_000
        )
        for d in range(365)
    )
    names = [f"/blog/a-rather-long-post-slug-number-{i}" for i in range(20)]
    report = Report(
        project="website",
        where="/data",
        first=first,
        last=hours[-1],
        now=hours[-1] + timedelta(hours=3),
        lag_hours=2,
        settings=ReportConfig(),
        hours=cells,
        days=days,
        drops=tuple(Drop(h, 10, 5_000.0) for h in hours[::97]),
        new_keys=tuple(NewKey("property", f"key_{i}", days[i].day) for i in range(200)),
        baseline_keys=70,
        event_types=tuple((f"Event {i}", 1000 - i) for i in range(20)),
        countries=tuple((f"Country {i}", 1000 - i) for i in range(20)),
        cities=tuple((f"City {i}, Country", 1000 - i) for i in range(20)),
        sources=tuple((f"source-{i}.example", 1000 - i) for i in range(20)),
        oses=tuple((f"OS {i}", 100 - i) for i in range(10)),
        browsers=tuple((f"Browser {i}", 100 - i) for i in range(10)),
        device_types=tuple((f"Device {i}", 100 - i) for i in range(10)),
        blog=tuple(
            BlogPost(p, f"Title {i}", 90_000 - i, 40_000, 30_000, tuple(range(365)))
            for i, p in enumerate(names)
        ),
        blog_views=2_000_000,
        leads=tuple(
            Lead(f"u_{i:07d}", hours[-1], first, 200, 5_000, "Germany", "Berlin", "Acme Corp")
            for i in range(25)
        ),
        identified_total=80_000,
        weekday_hour={(d, h): 1000 * d + h for d in range(1, 8) for h in range(24)},
        session_lengths=tuple((label, 1_000) for _, label in SESSION_BUCKETS),
        rows_read=43_800_000,
    )
    page = render_html(report).encode()
    assert len(page) < 5_000_000
    assert page.count(b'<rect class="cell ') == 365 * 24


def test_files_without_a_manifest_make_a_failed_hour(tmp_path: Path) -> None:
    """An attempt that never finished leaves data but no manifest: failed, not just missing."""
    day = datetime(2026, 11, 2, tzinfo=UTC)
    orphan = tmp_path / hour_folder("website", day + timedelta(hours=5))
    orphan.mkdir(parents=True)
    (orphan / "187520_2026-11-02_5#0.json").write_text('{"uuid": "x"}\n')
    (tmp_path / hour_folder("website", day + timedelta(hours=6))).mkdir(parents=True)  # empty

    async def build() -> Report:
        return await build_report(
            LocalSink(tmp_path, run_id="r", fsync=False),
            "website",
            day,
            day + timedelta(hours=23),
            now=day + timedelta(days=2),
            lag_hours=2,
        )

    states = {c.hour.hour: (c.state, c.detail) for c in anyio.run(build).hours}
    assert states[5] == ("failed", "data files without a manifest")
    assert states[6] == ("missing", "")
    assert sum(state == "missing" for state, _ in states.values()) == 23


# --- every output format, written by the real sinks -------------------------------------------

TWO_DAYS = (FIRST, FIRST + timedelta(days=2) - timedelta(hours=1))


def _extract_and_report(tmp_path: Path, data_format: str) -> Report:
    """Two days of the lake's dataset extracted by the sink ``[output] format`` names, then
    reported through the same sink (what ``async-amp report`` does)."""
    from async_amp.output.stores import make_sink

    async def go() -> Report:
        async with run_simulator(DATASET, api_key=KEY, secret_key=SECRET) as sim:
            base = make_config(sim.base_url, tmp_path / data_format, window_hours=24)
            config = replace(base, output=replace(base.output, format=data_format))
            sink = make_sink(config, run_id="test-run", environ={})
            assert (await run(config, *TWO_DAYS, sink=sink)).exit_code == 0
        reader = make_sink(config, run_id="read", environ={})
        try:
            return await build_report(
                reader, "website", *TWO_DAYS, now=NOW, lag_hours=LAG, settings=SETTINGS
            )
        finally:
            await reader.aclose()

    return anyio.run(go)


@pytest.fixture(scope="module")
def ndjson_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return _extract_and_report(tmp_path_factory.mktemp("ndjson"), "ndjson")


@pytest.mark.parametrize("data_format", ["gzip", "parquet", "delta"])
def test_every_output_format_gives_the_same_report(
    tmp_path: Path, data_format: str, ndjson_report: Report
) -> None:
    _same_numbers(ndjson_report, _extract_and_report(tmp_path, data_format))


@pytest.mark.anyio
async def test_s3_sink_gives_the_same_report_read_with_read_only_keys(
    s3_server: S3ServerProcess, s3_bucket: str, ndjson_report: Report
) -> None:
    """The S3 sink (moto's server): written with the admin key, reported with read_only's."""
    from async_amp.config import S3Config
    from async_amp.output.stores.s3 import S3Sink

    config = S3Config(
        bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, addressing_style="path", retries=1
    )

    def sink(key: S3Key) -> S3Sink:
        return S3Sink.from_config(config, run_id="test-run", environ=key.environ())

    async with run_simulator(DATASET, api_key=KEY, secret_key=SECRET) as sim:
        base = make_config(sim.base_url, Path("unused"), window_hours=24)
        assert (await run(base, *TWO_DAYS, sink=sink(s3_server.admin))).exit_code == 0
    reader = sink(s3_server.read_only)
    try:
        report = await build_report(
            reader, "website", *TWO_DAYS, now=NOW, lag_hours=LAG, settings=SETTINGS
        )
    finally:
        await reader.aclose()
    _same_numbers(ndjson_report, report)
