"""Incremental runs, sharding and several projects in one run, through the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from async_amp.cli import main
from async_amp.extraction.plan import shard_hours
from async_amp.output.marker import MARKER_NAME
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import ExportSimulator

from .helpers import DAY1, KEY, SECRET, assert_output_matches, isolate_cli, small_dataset


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_cli(tmp_path, monkeypatch, ASYNC_AMP_OUTPUT_FSYNC="false")


@pytest.fixture
def sim(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExportSimulator]:
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as s:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", s.base_url)
        yield s


def test_since_last_picks_up_after_the_newest_hour_and_then_asks_nothing(
    sim: ExportSimulator, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNC_AMP_EXTRACT_START", "2026-11-01")
    monkeypatch.setenv("ASYNC_AMP_NOW", "2026-11-01T12:10:00Z")  # hours up to 09 are available
    assert main(["extract", "--since-last", "--quiet"]) == 0
    assert sim.request_count() == 10
    assert_output_matches(workdir / "data", small_dataset(), DAY1, DAY1 + timedelta(hours=9))
    sim.reset_log()
    assert main(["extract", "--since-last", "--quiet"]) == 0
    assert sim.request_count() == 0  # nothing new yet
    monkeypatch.setenv("ASYNC_AMP_NOW", "2026-11-01T15:00:00Z")
    assert main(["extract", "--since-last", "--quiet"]) == 0
    asked = sorted(r.start.hour for r in sim.requests if r.start is not None)
    assert asked == [10, 11, 12]


def test_since_last_without_history_or_start_is_a_clear_error(
    sim: ExportSimulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["extract", "--since-last"]) == 2
    assert "nothing extracted yet" in capsys.readouterr().err
    assert sim.request_count() == 0


def test_relative_range(
    sim: ExportSimulator, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNC_AMP_NOW", "2026-11-03T12:00:00Z")
    assert main(["extract", "--start", "-2d", "--end", "-2d", "--quiet"]) == 0
    assert {r.start.date() for r in sim.requests if r.start} == {DAY1.date()}
    assert sim.request_count() == 24


def test_two_shards_make_exactly_the_unsharded_output(sim: ExportSimulator, workdir: Path) -> None:
    base = ["extract", "--start", "2026-11-01", "--end", "2026-11-01", "--quiet"]
    assert main([*base, "--output", "whole"]) == 0
    whole = sim.request_count()
    sim.reset_log()
    assert main([*base, "--output", "sharded", "--shard", "1/2", "--summary-json", "s1.json"]) == 0
    first = {r.start for r in sim.requests}
    assert main([*base, "--output", "sharded", "--shard", "2/2", "--summary-json", "s2.json"]) == 0
    second = {r.start for r in sim.requests} - first
    assert len(first) == len(second) == 12 and whole == 24
    assert max(first) < min(second)  # contiguous slices: windows still work inside each
    files = lambda root: {  # noqa: E731
        p.relative_to(root): p.read_bytes()
        for p in root.rglob("*.json")
        if p.name not in ("_manifest.json", MARKER_NAME)
    }
    assert files(workdir / "whole") == files(workdir / "sharded")
    marker = lambda root: {  # noqa: E731 - the same but for when it was created
        k: v
        for k, v in json.loads((root / "website" / MARKER_NAME).read_bytes()).items()
        if k != "created_at"
    }
    assert marker(workdir / "whole") == marker(workdir / "sharded")
    manifests = sorted(
        p.parent.relative_to(workdir / "sharded")
        for p in (workdir / "sharded").rglob("_manifest.json")
    )
    assert len(manifests) == 24
    s1 = json.loads((workdir / "s1.json").read_text())["projects"]["website"]
    assert s1["complete"] + s1["empty"] == 12


def test_shard_slices_cover_every_hour_once() -> None:
    hours = [DAY1 + timedelta(hours=h) for h in range(50)]
    slices = [shard_hours(hours, (k, 7)) for k in range(1, 8)]
    assert sum(len(s) for s in slices) == 50
    assert set().union(*slices) == set(hours)
    assert {len(s) for s in slices} <= {7, 8}


def test_several_projects_in_one_run(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    web = small_dataset(seed=1)
    app = small_dataset(seed=2, project_id=999)
    monkeypatch.setenv("WEB_KEY", "web-k")
    monkeypatch.setenv("WEB_SECRET", "web-s")
    monkeypatch.setenv("APP_KEY", "app-k")
    monkeypatch.setenv("APP_SECRET", "app-s")
    with (
        BackgroundSimulator(web, api_key="web-k", secret_key="web-s") as s1,
        BackgroundSimulator(app, api_key="app-k", secret_key="app-s") as s2,
    ):
        (workdir / "config.toml").write_text(
            "[extract]\nconcurrency = 2\ntotal_concurrency = 3\n"
            f'[[projects]]\nname = "web"\nbase_url = "{s1.base_url}"\n'
            'api_key_env = "WEB_KEY"\nsecret_key_env = "WEB_SECRET"\n'
            f'[[projects]]\nname = "app"\nbase_url = "{s2.base_url}"\n'
            'api_key_env = "APP_KEY"\nsecret_key_env = "APP_SECRET"\nconcurrency = 1\n'
        )
        args = ["extract", "--start", "2026-11-01T00", "--end", "2026-11-01T05", "--quiet"]
        assert main([*args, "--summary-json", "s.json"]) == 0
        assert s1.request_count() == 6 and s2.request_count() == 6
        assert s1.max_in_flight_seen <= 2 and s2.max_in_flight_seen <= 1
        assert main([*args, "--project", "app", "--force"]) == 0
        assert s1.request_count() == 6 and s2.request_count() == 12
    report = json.loads((workdir / "s.json").read_text())
    assert set(report["projects"]) == {"web", "app"}
    assert report["totals"]["complete"] == 12
    out = capsys.readouterr().out
    assert "web " in out and "app " in out
    for name, ds in (("web", web), ("app", app)):
        hour = DAY1 + timedelta(hours=2)
        got = (workdir / "data" / name / "date=2026-11-01/hour=02").iterdir()
        assert {p.name for p in got} - {"_manifest.json"} == {
            ds.member_name(hour, p).split("/")[1].removesuffix(".gz") for p in ds.pages(hour)
        }


def test_a_project_missing_its_keys_names_the_variables(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "config.toml").write_text(
        '[[projects]]\nname = "web"\napi_key_env = "WEB_KEY"\nsecret_key_env = "WEB_SECRET"\n'
    )
    assert main(["extract", "--start", "2026-11-01", "--end", "2026-11-01"]) == 2
    err = capsys.readouterr().err
    assert "WEB_KEY and WEB_SECRET not set for project 'web'" in err


def test_since_last_asks_again_for_hours_an_earlier_run_left_behind(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from async_amp.simulator.server import Fault, FaultPlan

    monkeypatch.setenv("ASYNC_AMP_EXTRACT_START", "2026-11-01")
    monkeypatch.setenv("ASYNC_AMP_EXTRACT_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("ASYNC_AMP_EXTRACT_BACKOFF_BASE_S", "0.01")
    monkeypatch.setenv("ASYNC_AMP_EXTRACT_BACKOFF_MAX_S", "0.02")
    monkeypatch.setenv("ASYNC_AMP_NOW", "2026-11-01T08:00:00Z")  # hours 00..05 available
    broken = FaultPlan.always({DAY1 + timedelta(hours=2): Fault.HTTP_500})
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET, faults=broken) as s:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", s.base_url)
        assert main(["extract", "--since-last", "--quiet"]) == 1  # hour 02 failed
    monkeypatch.setenv("ASYNC_AMP_NOW", "2026-11-01T09:00:00Z")  # hour 06 now available too
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as s:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", s.base_url)
        assert main(["extract", "--since-last", "--quiet"]) == 0
        asked = sorted(r.start.hour for r in s.requests if r.start is not None)
    assert asked == [2, 6]
    assert_output_matches(workdir / "data", small_dataset(), DAY1, DAY1 + timedelta(hours=6))
