"""Memory stays flat however large an hour is: the archive is never held whole.

A property, not a speed figure: a child process extracts one big hour (hundreds of MB of
NDJSON) and its peak RSS must stay a small fraction of that. Benchmarks report the numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from async_amp.testing.background import BackgroundSimulator
from async_amp.testing.dataset import Dataset

from .helpers import DAY1, KEY, SECRET

EVENTS = 200_000  # ~330 MB of NDJSON in one hour, 2 partitions


def _peak_rss_of_extract(base_url: str, out: Path, hour: str) -> tuple[int, int]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_AMP_", "AZURE_"))},
        "AMP_API_KEY": KEY,
        "AMP_SECRET_KEY": SECRET,
        "ASYNC_AMP_AMPLITUDE_BASE_URL": base_url,
        "ASYNC_AMP_OUTPUT_FSYNC": "false",
    }
    args = [sys.executable, "-m", "async_amp", "extract", "--start", hour, "--end", hour]
    args += ["--output", str(out), "--log-format", "json", "--quiet"]
    proc = subprocess.Popen(
        args, env=env, cwd=out.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, _, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = 0
    return usage.ru_maxrss * 1024, len(stderr)


def test_peak_memory_is_a_fraction_of_a_large_hour(tmp_path: Path) -> None:
    big = DAY1 + timedelta(hours=12)
    dataset = Dataset(events_per_hour=0, pages_per_hour=2, hour_sizes={big: EVENTS})
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        rss, _ = _peak_rss_of_extract(sim.base_url, tmp_path / "out", f"{big:%Y-%m-%dT%H}")
    written = sum(
        p.stat().st_size for p in (tmp_path / "out").rglob("*.json") if p.name != "_manifest.json"
    )
    expected = sum(len(dataset.ndjson(big, p)) for p in dataset.pages(big))
    assert written == expected > 300 * 1024**2
    # the interpreter, aiohttp, azure and isal alone take ~60-70 MB; the hour adds little
    assert rss < 160 * 1024**2, (
        f"peak RSS {rss / 2**20:.0f} MiB for a {written / 2**20:.0f} MiB hour"
    )
