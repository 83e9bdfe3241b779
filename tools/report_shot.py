"""``make docs``: the README's screenshot of the demo's report.

Runs ``async-amp demo`` into a temporary folder with the clock pinned (``ASYNC_AMP_NOW``: the
morning after the demo's last day, so its last hour is "not yet available"), opens the page in
headless Chromium and saves the top of it as a PNG::

    python -m tools.report_shot docs/report-demo.png
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tools.chromium import Chromium

__all__ = ["DEMO_NOW", "main", "run_demo"]

DEMO_NOW = "2026-11-16T01:30:00Z"
WIDTH, HEIGHT = 1000, 1500


async def _shoot(url: str) -> bytes:
    async with Chromium.open(url, width=WIDTH) as page:
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            width=WIDTH,
            height=HEIGHT,
            deviceScaleFactor=1,
            mobile=False,
        )
        return await page.screenshot(width=WIDTH, full_page=False)


def run_demo(folder: Path) -> None:
    """``async-amp demo`` into ``folder/data``, its clock pinned to ``DEMO_NOW``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNC_AMP_", "AZURE_"))}
    env["ASYNC_AMP_NOW"] = DEMO_NOW
    subprocess.run(  # noqa: S603 - our own CLI, no shell
        [sys.executable, "-m", "async_amp", "demo", "--output", f"{folder}/data", "--quiet"],
        check=True,
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0] if args else "docs/report-demo.png")
    with tempfile.TemporaryDirectory(prefix="async-amp-shot-") as folder:
        run_demo(Path(folder))
        page = (Path(folder) / "data" / "report.html").resolve().as_uri()
        out.write_bytes(asyncio.run(_shoot(page)))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
