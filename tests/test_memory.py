"""Memory stays flat however large an hour is: the archive is never held whole.

A property, not a speed figure: a child process extracts one big hour (hundreds of MB of
NDJSON) and its peak RSS must stay a small fraction of that. Benchmarks report the numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.dataset import Dataset

from .helpers import DAY1, KEY, SECRET

EVENTS = 200_000  # ~330 MB of NDJSON in one hour, 2 partitions


def peak_rss(args: list[str], env: dict[str, str], cwd: Path) -> int:
    """Peak RSS of a child, from its own /proc VmHWM, polled until it exits.

    rusage's ru_maxrss is no good here: a forked child inherits its parent's high-water mark
    (this test process holds the simulated data), so it reports the parent's size.
    """
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    status = Path(f"/proc/{proc.pid}/status")
    peak = 0
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.02)
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    return peak


def _peak_rss_of_extract(base_url: str, out: Path, hour: str) -> int:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_AMP_", "AZURE_"))},
        "AMP_API_KEY": KEY,
        "AMP_SECRET_KEY": SECRET,
        "ASYNC_AMP_AMPLITUDE_BASE_URL": base_url,
        "ASYNC_AMP_OUTPUT_FSYNC": "false",
    }
    args = [sys.executable, "-m", "async_amp", "extract", "--start", hour, "--end", hour]
    args += ["--output", str(out), "--log-format", "json", "--quiet"]
    out.mkdir(parents=True, exist_ok=True)
    return peak_rss(args, env, out.parent)


def test_peak_memory_is_a_fraction_of_a_large_hour(tmp_path: Path) -> None:
    big = DAY1 + timedelta(hours=12)
    dataset = Dataset(events_per_hour=0, pages_per_hour=2, hour_sizes={big: EVENTS})
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        rss = _peak_rss_of_extract(sim.base_url, tmp_path / "out", f"{big:%Y-%m-%dT%H}")
    written = sum(
        p.stat().st_size
        for p in (tmp_path / "out").rglob("*.json")
        if not p.name.startswith("_")  # manifests and the output's marker (_async_amp.json)
    )
    expected = sum(len(dataset.ndjson(big, p)) for p in dataset.pages(big))
    assert written == expected > 300 * 1024**2
    # the interpreter with aiohttp, structlog and isal takes ~45 MB; the hour adds little
    assert 20 * 1024**2 < rss < 120 * 1024**2, (
        f"peak RSS {rss / 2**20:.0f} MiB for a {written / 2**20:.0f} MiB hour"
    )
