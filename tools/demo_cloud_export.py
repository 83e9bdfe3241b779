"""``make demo-cloud-export``: Amplitude's recurring cloud export as the source, end to end.

No account and no bucket needed: the simulator lays the demo's first two days out in
``data/cloud-export/`` exactly as Amplitude's export writes a bucket
(``<projectID>_<yyyy-MM-dd>_<H>#<partition>.json.gz``), the last hour not yet delivered, plus
a file of another project; the real CLI then reads it with ``[source] kind = "cloud_export"``
into typed Parquet under ``data/from-export/``, runs again (it reads nothing), and shows
``status``. The same layout in a bucket is read with ``store = "s3"`` or ``"gcs"``
(docs/cloud-export.md)::

    .venv/bin/python -m tools.demo_cloud_export
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from async_amp.cli.commands.demo import DEMO_DAYS, demo_dataset
from async_amp.hours import hour_range
from async_amp.simulator.cloud_export import export_files, lay_out_local

__all__ = ["main"]

EXPORT = Path("data/cloud-export")
OUTPUT = Path("data/from-export")


def _cli(*args: str, env: dict[str, str]) -> int:
    command = [sys.executable, "-m", "async_amp", *args]
    print("$ async-amp " + " ".join(args), flush=True)
    return subprocess.run(command, env=env, check=False).returncode  # noqa: S603


def main() -> int:
    first, last = DEMO_DAYS[0], DEMO_DAYS[-1] + timedelta(hours=23)
    hours = list(hour_range(first, last))
    dataset = demo_dataset()
    shutil.rmtree(EXPORT, ignore_errors=True)
    shutil.rmtree(OUTPUT, ignore_errors=True)
    files = export_files(dataset, hours, late=frozenset({last}))
    lay_out_local(EXPORT, [*files, ("999999_2026-11-01_0#0.json.gz", b"not ours")])
    print(f"laid out {len(files)} export files of {len(hours) - 1} hours in {EXPORT}/")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNC_AMP_")}
    project_id = files[0][0].split("_", 1)[0]
    env.update(
        ASYNC_AMP_SOURCE_KIND="cloud_export",
        ASYNC_AMP_SOURCE_DIR=str(EXPORT),
        ASYNC_AMP_SOURCE_PROJECT_ID=project_id,
        ASYNC_AMP_OUTPUT_DIR=str(OUTPUT),
        ASYNC_AMP_OUTPUT_FORMAT="parquet",
        # the export has not delivered the last hour yet: it stays "not yet available"
        ASYNC_AMP_NOW=(last + timedelta(hours=1, minutes=30)).isoformat(),
    )
    span = ["--start", f"{first:%Y-%m-%d}", "--end", f"{last:%Y-%m-%d}"]
    code = _cli("extract", *span, env=env)
    _cli("extract", *span, "--quiet", env=env)  # again: everything is already there
    _cli("status", *span, env=env)
    print(f"\nthe Parquet files: {OUTPUT}/website/date=*/hour=*/*.parquet")
    return code


if __name__ == "__main__":
    sys.exit(main())
