"""The issue's soak at full length: seven days of odd records through faults, whole and once.

``tests/test_soak_values.py`` runs two days in each of Parquet and Delta (every fault kind and
odd record already meets each format there); seven days take minutes, so they run here::

    .venv/bin/python -m benchmarks.soak_values                 # 7 days, parquet and delta
    .venv/bin/python -m benchmarks.soak_values 7 delta         # days, then formats

Each line says how long the run took and what it went through; a lost or duplicated line, or
a value not found where the oracle puts it, ends it with the test's ``AssertionError``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import anyio

from tests.test_soak_values import soak


async def main(days: int, formats: list[str]) -> None:
    for fmt in formats:
        with tempfile.TemporaryDirectory(prefix="async-amp-soak-") as tmp:
            began = time.monotonic()
            did = await soak(Path(tmp), fmt, days=days)
            seconds = time.monotonic() - began
        print(
            f"{days} days into {fmt}: {did.hours} hours, {did.requests} requests "
            f"({did.faulted} faulted), {did.rows:,} rows and {did.quarantined} quarantined "
            f"lines, whole and once, in {seconds:.1f} s"
        )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    anyio.run(main, int(arguments[0]) if arguments else 7, arguments[1:] or ["parquet", "delta"])
