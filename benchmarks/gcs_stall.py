"""How long a stalled GCS store takes to stop a run, with the ``[gcs]`` defaults.

``benchmarks.azure_stall``'s set-up for GCS (24 hours at concurrency 2, fake-gcs-server
SIGSTOPped when the 6th export request arrives), with the production backoff (1 s / 60 s)
and, unless given, the production storage retries and timeouts::

    .venv/bin/python -m benchmarks.gcs_stall                     # the defaults
    .venv/bin/python -m benchmarks.gcs_stall read_timeout_s=60   # any [gcs] key=value
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from async_amp.config import GcsConfig
from async_amp.sinks.gcs import GcsSink
from tests import test_systemic
from tests.helpers import make_config
from tools.gcsserver import GcsEmulatorProcess

from .azure_stall import _value


async def main(overrides: dict[str, Any]) -> None:
    def production_backoff(url: str, out: Path, **kw: Any) -> Any:
        return make_config(url, out, **{**kw, "backoff_base_s": 1.0, "backoff_max_s": 60.0})

    test_systemic.make_config = production_backoff  # type: ignore[assignment]
    with GcsEmulatorProcess() as server, tempfile.TemporaryDirectory() as tmp:
        assert server.pid is not None
        pid = server.pid
        server.create_bucket("stall")
        config = GcsConfig(
            bucket="stall", endpoint_url=server.endpoint_url, anonymous=True, **overrides
        )
        sink = GcsSink.from_config(config, run_id="stall", environ={})
        stalled: list[float] = []

        def stall() -> None:
            stalled.append(time.monotonic())
            os.kill(pid, signal.SIGSTOP)

        began = time.monotonic()
        try:
            summary, _ = await test_systemic.extract_while_the_store_goes(Path(tmp), sink, stall)
        finally:
            os.kill(pid, signal.SIGCONT)
        ended = time.monotonic()
    print(
        f"[gcs] {overrides or 'defaults'}: {ended - began:.1f} s in all, "
        f"{ended - stalled[0]:.1f} s from the stall to the stop; {summary.requests} export "
        f"requests, exit {summary.exit_code}"
    )
    print(f"STOPPED {summary.stopped}")


if __name__ == "__main__":
    asyncio.run(main({k: _value(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}))
