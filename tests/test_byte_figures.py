"""Honest numbers (issue 19 item 3): the summary, ``--summary-json``, ``status`` and the API say,
per hour and in total, the bytes received from Amplitude, the NDJSON they decompress to, and the
bytes stored, each measured here independently: what the simulator served and built, and the
sizes of the files on disk.

A Parquet day's "MB" used to be its NDJSON (44.9 MB) where its files held 4.3 MB."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from async_amp.cli import main
from async_amp.hours import hour_range
from async_amp.output.manifest import MANIFEST_NAME, hour_folder
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.dataset import Dataset

from .helpers import DAY1, KEY, NOW, SECRET, isolate_cli, small_dataset

HOURS = 4
LAST = DAY1 + timedelta(hours=HOURS - 1)
SPAN = ("--start", "2026-11-01T00", "--end", f"2026-11-01T{HOURS - 1:02d}")


def _stored(root: Path, hour: datetime) -> int:
    folder = root / hour_folder("website", hour)
    return sum(p.stat().st_size for p in folder.iterdir() if p.name != MANIFEST_NAME)


def _ndjson(dataset: Dataset, hour: datetime) -> int:
    return sum(len(dataset.ndjson(hour, page)) for page in dataset.pages(hour))


def _received(dataset: Dataset, hour: datetime) -> int:
    return sum(len(dataset.gz(hour, page)) for page in dataset.pages(hour))


@pytest.mark.parametrize("fmt", ["parquet", "gzip", "ndjson"])
def test_received_ndjson_and_stored_bytes_match_what_was_served_and_what_is_on_disk(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
) -> None:
    isolate_cli(tmp_path, monkeypatch, ASYNC_AMP_NOW=NOW.isoformat())
    dataset = small_dataset()
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        monkeypatch.setenv("ASYNC_AMP_AMPLITUDE_BASE_URL", sim.base_url)
        argv = ["extract", *SPAN, "--format", fmt, "--output", "out", "--quiet"]
        code = main([*argv, "--summary-json", "summary.json"])
        served = sum(r.bytes_sent for r in sim.requests)
    summary_text = capsys.readouterr().out
    assert code == 0
    root = tmp_path / "out"
    hours = list(hour_range(DAY1, LAST))
    stored = sum(_stored(root, h) for h in hours)
    ndjson = sum(_ndjson(dataset, h) for h in hours)
    received = sum(_received(dataset, h) for h in hours)
    if fmt == "parquet":
        assert stored != ndjson  # the point of the issue: Parquet files are not their NDJSON

    totals = json.loads((tmp_path / "summary.json").read_text())["totals"]
    assert totals["bytes_stored"] == totals["bytes_written"] == stored
    assert totals["bytes_ndjson"] == ndjson
    assert totals["bytes_received"] == received
    assert totals["bytes_downloaded"] == served  # every byte of every response
    assert f"stored {stored / 1e6:,.1f} MB" in summary_text
    assert f"{ndjson / 1e6:,.1f} MB of NDJSON" in summary_text

    # status: per hour and in total, from the manifests
    code = main(["status", *SPAN, "--output", "out", "--json"])
    report = json.loads(capsys.readouterr().out)["projects"]["website"]
    assert code == 0
    assert report["totals"]["bytes"] == stored
    assert report["totals"]["ndjson_bytes"] == ndjson
    assert report["totals"]["received_bytes"] == received
    per_hour = {h["hour"]: h for day in report["days"] for h in day["hours"]}
    for hour in hours:
        row = per_hour[f"{hour:%Y-%m-%dT%H}:00:00Z"]
        assert row["bytes"] == _stored(root, hour)
        assert row["ndjson_bytes"] == _ndjson(dataset, hour)
        assert row["received_bytes"] == _received(dataset, hour)

    # verify counts what the files hold
    code = main(["verify", *SPAN, "--output", "out", "--json"])
    checked = json.loads(capsys.readouterr().out)["projects"]["website"]
    assert code == 0 and checked["bytes_read"] == stored
