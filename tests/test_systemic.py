"""Systemic failures stop the run early (docs/reliability.md, "When the run cannot go on"):
a full disk in every format, an Export API that is silent or resets every connection, a store
that goes away mid-run. Each stop is one STOPPED line, the summary, exit 1, no traceback; the
bounds are counted in requests and attempts, never in seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from async_amp.simulator.background import BackgroundSimulator

from .filesystems import mounted_tmpfs
from .helpers import KEY, SECRET, cli_extract, small_dataset

pytestmark = pytest.mark.anyio


def stopped_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "STOPPED" in line]


# --------------------------------------------------------------------------- a disk that fills up


@pytest.mark.parametrize("fmt", ["parquet", "delta"])
@pytest.mark.parametrize("size", [150_000, 700_000], ids=["spool-full", "output-full"])
def test_disk_full_in_parquet_and_delta_stops_with_one_line_and_a_summary(
    tmp_path: Path, fmt: str, size: int
) -> None:
    """A small disk fills while the first member spools (no hour can start) or after some
    hours are committed (the Parquet writer or the Delta commit meets ENOSPC)."""
    dataset = small_dataset()
    with (
        mounted_tmpfs(tmp_path / "disk", size) as disk,
        BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim,
    ):
        out = disk.path / "data"
        summary = tmp_path / "summary.json"
        args = ("--start", "2026-11-01", "--end", "2026-11-01T23", "--concurrency", "2")
        done = cli_extract(
            sim.base_url,
            out,
            *args,
            "--format",
            fmt,
            "--summary-json",
            str(summary),
            logs=tmp_path / "logs",
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        stopped = stopped_lines(done.stdout)
        assert len(stopped) == 1, done.stdout + done.stderr
        assert re.fullmatch(
            r"  STOPPED website: No space left on device .*: \d+ of 24 hours complete; free "
            r"space and run again, completed hours are kept",
            stopped[0],
        ), stopped[0]
        assert "FAILED" not in done.stdout
        report = json.loads(summary.read_text())
        project = report["projects"]["website"]
        assert project["stopped"] == stopped[0].removeprefix("  STOPPED website: ")
        assert report["exit_code"] == 1
        complete = report["totals"]["complete"]
        assert f": {complete} of 24 hours complete;" in stopped[0]
        # no hour started once the disk was full: at most the two in flight when it filled up
        # (and the two committing, which gave their request slots back)
        assert sim.request_count() <= complete + 2 * 2
