"""Hours that answer 404 while Amplitude's processing runs late, and what ``--since-last``
asks for: young empty hours are tentative, and a resumed run never reaches before the first
hour the output ever held."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from async_amp.cli import main
from async_amp.output.manifest import hour_folder
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.dataset import Dataset

from .helpers import DAY1, KEY, SECRET, assert_output_matches, isolate_cli, small_dataset

LATE = DAY1 + timedelta(hours=3)  # answers 404 on the first run, has data later
QUIET = DAY1 + timedelta(hours=4)  # has no data, ever


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_cli(tmp_path, monkeypatch, ASYNC_AMP_OUTPUT_FSYNC="false")


def extract(
    dataset: Dataset, now: datetime, monkeypatch: pytest.MonkeyPatch, *args: str
) -> list[datetime]:
    """``extract --start DAY1 --end DAY1+5h ARGS`` at ``now``; the hours the simulator saw."""
    monkeypatch.setenv("ASYNC_AMP_NOW", now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", sim.base_url)
        assert main(["extract", *args, "--quiet"]) == 0
        return sorted(r.start for r in sim.requests if r.start is not None)


def manifest(workdir: Path, hour: datetime) -> dict[str, object]:
    path = workdir / "data" / hour_folder("website", hour) / "_manifest.json"
    loaded: dict[str, object] = json.loads(path.read_text())
    return loaded


def test_a_recent_404_is_asked_again_and_late_data_is_committed(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = small_dataset(quiet_hours=frozenset({QUIET}))
    first = small_dataset(quiet_hours=frozenset({LATE, QUIET}))
    span = ("--start", "2026-11-01", "--end", "2026-11-01T05")
    asked = extract(first, DAY1 + timedelta(hours=10), monkeypatch, *span)
    assert len(asked) == 6
    assert manifest(workdir, LATE)["status"] == "empty"
    quiet_before = manifest(workdir, QUIET)

    asked = extract(late, DAY1 + timedelta(hours=30), monkeypatch, *span)
    assert asked == [LATE, QUIET]  # only the young empty hours, each once
    logs = (workdir / "logs").glob("*.jsonl")
    lines = [json.loads(x) for f in logs for x in f.read_text().splitlines()]
    late_lines = [x for x in lines if x["event"] == "hour.late_data"]
    assert [(x["hour"], x["events"]) for x in late_lines] == [
        ("2026-11-01T03:00:00Z", sum(late.event_count(LATE, p) for p in late.pages(LATE)))
    ]
    assert_output_matches(workdir / "data", late, DAY1, DAY1 + timedelta(hours=5))
    assert manifest(workdir, QUIET) == quiet_before  # still empty: left exactly as it was

    # older than the window (72 h): an empty hour is final
    asked = extract(late, DAY1 + timedelta(hours=4 + 73), monkeypatch, *span)
    assert asked == []


def test_empty_recheck_zero_makes_an_empty_hour_final_at_once(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNC_AMP_EXTRACT_EMPTY_RECHECK", "0")
    first = small_dataset(quiet_hours=frozenset({LATE}))
    span = ("--start", "2026-11-01", "--end", "2026-11-01T05")
    extract(first, DAY1 + timedelta(hours=10), monkeypatch, *span)
    assert extract(small_dataset(), DAY1 + timedelta(hours=11), monkeypatch, *span) == []


def test_since_last_resumes_late_empty_hours_and_never_reaches_before_the_first_hour(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One run of 4 hours, then ``--since-last`` with no configured start: it asks the newer
    hours and the young empty one, not the week before the first hour it ever stored."""
    start = DAY1 + timedelta(days=3)
    first = small_dataset(quiet_hours=frozenset({start + timedelta(hours=1)}))
    span = ("--start", "2026-11-04", "--end", "2026-11-04T03")
    assert len(extract(first, start + timedelta(hours=8), monkeypatch, *span)) == 4
    asked = extract(small_dataset(), start + timedelta(hours=9), monkeypatch, "--since-last")
    # newest exportable at 09:00 with the 2 h lag: 06; the empty 01 is young: asked again
    assert asked == [start + timedelta(hours=h) for h in (1, 4, 5, 6)]
