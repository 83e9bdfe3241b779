"""SIGINT / SIGTERM stop a run cleanly: in-flight hours abandoned without a manifest, a summary
printed, a non-zero exit, no visible leftovers; the rerun finishes only what is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from async_amp.hours import hour_range
from async_amp.output.manifest import hour_folder
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import Latency

from .helpers import DAY1, KEY, SECRET, assert_output_matches, small_dataset

LAST = DAY1 + timedelta(hours=11)


def _extract(base_url: str, out: Path) -> subprocess.Popen[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_AMP_", "AZURE_"))},
        "AMP_API_KEY": KEY,
        "AMP_SECRET_KEY": SECRET,
        "ASYNC_AMP_AMPLITUDE_BASE_URL": base_url,
        "ASYNC_AMP_OUTPUT_FSYNC": "false",
    }
    args = [sys.executable, "-m", "async_amp", "extract", "--start", "2026-11-01T00"]
    args += ["--end", "2026-11-01T11", "--output", str(out), "--concurrency", "2"]
    args += ["--log-format", "json"]
    return subprocess.Popen(
        args, env=env, cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _manifests(out: Path) -> set[str]:
    return {p.parent.name for p in out.rglob("_manifest.json")}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_and_rerun_resumes(tmp_path: Path, signum: int, code: int) -> None:
    out = tmp_path / "out"
    dataset = small_dataset()
    latency = Latency(fixed_s=0.4)
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET, latency=latency) as sim:
        proc = _extract(sim.base_url, out)
        deadline = time.monotonic() + 20
        while len(list(out.rglob("_manifest.json"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=30)
        assert proc.returncode == code, stderr
        assert f"interrupted by {signal.Signals(signum).name}" in stdout
        done_before = _manifests(out)
        assert 3 <= len(done_before) < 12
        for manifest in out.rglob("_manifest.json"):  # whatever is there is whole
            body = json.loads(manifest.read_text())
            names = {p.name for p in manifest.parent.iterdir()} - {"_manifest.json"}
            assert names == {f["name"] for f in body["files"]}
        assert not (out / ".async-amp-staging").exists()
        summary = [json.loads(x) for x in stderr.splitlines() if '"run.summary"' in x]
        assert summary and summary[0]["interrupted"] is True

        sim.reset_log()
        rerun = _extract(sim.base_url, out)
        _, err = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, err
        asked = {f"hour={r.start:%H}" for r in sim.requests if r.start is not None}
        assert not asked & done_before  # finished hours are not requested again
        assert len(asked) == 12 - len(done_before)
    assert_output_matches(out, dataset, DAY1, LAST)
    assert {
        hour_folder("website", h).rsplit("/", 1)[1] for h in hour_range(DAY1, LAST)
    } == _manifests(out)
