"""Smaller promises of a run, through the CLI: a file where the project's folder must be stops
before any request; a range with nothing exportable yet says so; ``--since-last`` says when it
fills gaps; a concurrency above Amplitude's limit warns once."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from async_amp.cli import main
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import Fault, FaultPlan

from .helpers import DAY1, KEY, SECRET, isolate_cli, small_dataset


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_cli(tmp_path, monkeypatch, ASYNC_AMP_OUTPUT_FSYNC="false")
    monkeypatch.setenv("ASYNC_AMP_EXTRACT_BACKOFF_BASE_S", "0.01")
    monkeypatch.setenv("ASYNC_AMP_EXTRACT_BACKOFF_MAX_S", "0.02")
    monkeypatch.setenv("ASYNC_AMP_NOW", "2026-11-01T08:00:00Z")  # hours 00..05 exportable
    return tmp_path


def log_events(workdir: Path, name: str) -> list[dict[str, object]]:
    lines = [x for f in (workdir / "logs").glob("*.jsonl") for x in f.read_text().splitlines()]
    return [e for e in map(json.loads, lines) if e["event"] == name]


@pytest.mark.parametrize("fmt", ["ndjson", "delta"])
def test_a_file_where_the_project_folder_must_be_stops_before_any_request(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
) -> None:
    (workdir / "data").mkdir()
    (workdir / "data" / "website").write_text("not a folder")
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", sim.base_url)
        code = main(["extract", "--start", "2026-11-01", "--end", "2026-11-01T05", "--format", fmt])
        assert sim.request_count() == 0
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"async-amp: error: {workdir / 'data' / 'website'} is a file, where the project's "
        "folder must be: move it away (or pick another --output) and run again"
    )


def test_a_range_with_nothing_exportable_yet_says_so_and_exits_0(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", sim.base_url)
        code = main(["extract", "--start", "2026-11-01T07", "--end", "2026-11-02"])
        assert sim.request_count() == 0
    assert code == 0
    out = capsys.readouterr().out
    assert (
        "  website: nothing to extract yet: the newest exportable hour is 2026-11-01T05:00:00Z "
        "(an hour becomes exportable availability_lag_hours after it ends)"
    ) in out.splitlines()


def test_since_last_says_in_the_summary_when_it_fills_gaps(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ASYNC_AMP_EXTRACT_MAX_ATTEMPTS", "2")
    broken = FaultPlan.always({DAY1 + timedelta(hours=2): Fault.HTTP_500})
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET, faults=broken) as s:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", s.base_url)
        assert main(["extract", "--start", "2026-11-01", "--end", "2026-11-01T05"]) == 1
    capsys.readouterr()
    monkeypatch.setenv("ASYNC_AMP_NOW", "2026-11-01T09:00:00Z")  # hour 06 exportable too
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as s:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", s.base_url)
        assert main(["extract", "--since-last"]) == 0
        asked = sorted(r.start.hour for r in s.requests if r.start is not None)
    assert asked == [2, 6]
    out = capsys.readouterr().out.splitlines()
    assert (
        "  website: --since-last filled 1 hours earlier runs left behind, from 2026-11-01T02:00:00Z"
    ) in out


def test_a_concurrency_above_amplitudes_limit_warns_once(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with BackgroundSimulator(small_dataset(), api_key=KEY, secret_key=SECRET) as sim:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", sim.base_url)
        args = ["extract", "--start", "2026-11-01", "--end", "2026-11-01T05", "--quiet"]
        assert main([*args, "--concurrency", "5"]) == 0
        assert log_events(workdir, "run.concurrency_high") == []
        assert main([*args, "--concurrency", "8", "--force"]) == 0
    (warning,) = log_events(workdir, "run.concurrency_high")
    assert warning["concurrency"] == 8 and warning["level"] == "warning"


@pytest.mark.parametrize("fmt", ["ndjson", "delta"])
def test_an_archive_of_another_project_id_is_refused(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
) -> None:
    """The output records Amplitude's project id in its root marker (and each manifest); keys
    of another project are refused, for hours the output holds and for hours it does not. An
    output whose marker has no id (made before markers held it) is checked against its
    manifests, and its marker then records the id."""
    ours, theirs = small_dataset(), small_dataset(project_id=424242)
    with BackgroundSimulator(ours, api_key=KEY, secret_key=SECRET) as sim:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", sim.base_url)
        span = ["--start", "2026-11-01", "--end", "2026-11-01T02", "--format", fmt, "--quiet"]
        assert main(["extract", *span]) == 0
    stored = sorted((workdir / "data").rglob("_manifest.json"))
    assert len(stored) >= 3
    assert {json.loads(p.read_text()).get("project_id") for p in stored} == {"187520"}
    marker_file = workdir / "data" / "website" / "_async_amp.json"
    marker = json.loads(marker_file.read_text())
    assert marker["project_id"] == "187520"
    assert KEY not in marker_file.read_text() and SECRET not in marker_file.read_text()
    refused = (
        "async-amp: error: the Export API answered with data of Amplitude project 424242, but "
        "the output holds project 187520 under 'website': these keys (AMP_API_KEY, "
        "AMP_SECRET_KEY) are another project's; use this project's keys, or another project "
        "name for that one"
    )
    capsys.readouterr()
    # first hours the output does not hold (only the marker knows whose output this is), then
    # hours it holds, under a marker without the id (the manifests know)
    older = {k: v for k, v in marker.items() if k != "project_id"}
    for start, end, before in [
        ("2026-11-01T03", "2026-11-01T05", marker),
        ("2026-11-01", "2026-11-01T05", older),
    ]:
        marker_file.write_text(json.dumps(before))
        with BackgroundSimulator(theirs, api_key=KEY, secret_key=SECRET) as sim:
            monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", sim.base_url)
            code = main(["extract", "--start", start, "--end", end, "--format", fmt])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1] == refused
        assert sorted((workdir / "data").rglob("_manifest.json")) == stored  # nothing of theirs
        assert json.loads(marker_file.read_text()) == marker  # the id found in the manifests
