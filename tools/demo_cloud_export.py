"""``make demo-cloud-export``: Amplitude's recurring cloud export as the source, end to end.

No account and no bucket needed: ``async-amp simulate-export`` lays two simulated days out in
``data/cloud-export/`` exactly as Amplitude's export writes a bucket
(``<projectID>_<yyyy-MM-dd>_<H>#<partition>.json.gz``, and the merged-IDs feed
``-<OrgID>_<yyyy-MM-dd>_<H>.json.gz``), the last hour not yet delivered, plus a file of another
project; the real CLI then reads it with ``[source] kind = "cloud_export"`` into typed Parquet
under ``data/from-export/`` (the events and the ``merged_ids`` table), runs again (it reads
nothing), lets Amplitude backfill one hour (its files rewritten), rechecks (only that hour is
read again and replaced) and shows ``status``. ``simulate-export`` writes to a bucket or a
container just as well (``[source] store``, docs/cloud-export.md)::

    .venv/bin/python -m tools.demo_cloud_export
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from async_amp.cli.commands.demo import DEMO_DAYS

__all__ = ["main"]

EXPORT = Path("data/cloud-export")
OUTPUT = Path("data/from-export")
PROJECT_ID = "187520"  # the simulated project's id (simulator.dataset.Dataset)
BACKFILLED = "2026-11-01T05"


def _cli(*args: str, env: dict[str, str]) -> int:
    command = [sys.executable, "-m", "async_amp", *args]
    print("$ async-amp " + " ".join(args), flush=True)
    return subprocess.run(command, env=env, check=False).returncode  # noqa: S603


def main() -> int:
    first, last = DEMO_DAYS[0], DEMO_DAYS[-1] + timedelta(hours=23)
    shutil.rmtree(EXPORT, ignore_errors=True)
    shutil.rmtree(OUTPUT, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNC_AMP_")}
    env.update(
        ASYNC_AMP_SOURCE_KIND="cloud_export",
        ASYNC_AMP_SOURCE_DIR=str(EXPORT),
        ASYNC_AMP_SOURCE_PROJECT_ID=PROJECT_ID,
        ASYNC_AMP_OUTPUT_DIR=str(OUTPUT),
        ASYNC_AMP_OUTPUT_FORMAT="parquet",
        # the export has not delivered the last hour yet: it stays "not yet available"
        ASYNC_AMP_NOW=(last + timedelta(hours=1, minutes=30)).isoformat(),
    )
    span = ["--start", f"{first:%Y-%m-%d}", "--end", f"{last:%Y-%m-%d}"]
    code = _cli("simulate-export", *span, "--late", "1", env=env)
    if code:
        return code
    (EXPORT / "999999_2026-11-01_0#0.json.gz").write_bytes(b"not ours")  # reported, left alone
    code = _cli("extract", *span, env=env)
    _cli("extract", *span, "--quiet", env=env)  # again: everything is already there
    print(f"\nAmplitude backfills {BACKFILLED}: its files are rewritten", flush=True)
    hour = ["--start", BACKFILLED, "--end", BACKFILLED]
    _cli("simulate-export", *hour, "--seed", "9", env=env)
    _cli("extract", *span, "--recheck", "3d", env=env)  # lists first: reads that hour alone
    _cli("status", *span, env=env)
    print(f"\nthe events:     {OUTPUT}/website/date=*/hour=*/*.parquet")
    print(f"the merged IDs: {OUTPUT}/_merged_ids/website/date=*/hour=*/*.parquet")
    return code


if __name__ == "__main__":
    sys.exit(main())
