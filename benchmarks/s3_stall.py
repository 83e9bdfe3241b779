"""How long a stalled S3 store takes to stop a run, with the ``[s3]`` defaults.

``benchmarks.azure_stall``'s set-up for S3 (24 hours at concurrency 2, the S3 server
SIGSTOPped when the 6th export request arrives: connections are taken by the kernel, nothing
answers), with the production backoff (1 s / 60 s) and, unless given, the production storage
retries and timeouts::

    .venv/bin/python -m benchmarks.s3_stall                     # the defaults
    .venv/bin/python -m benchmarks.s3_stall read_timeout_s=10   # any [s3] key=value
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

from async_amp.config import S3Config
from async_amp.sinks.s3 import S3Sink
from tests import test_systemic
from tests.helpers import make_config
from tests.s3 import admin_client
from tools.s3server import S3ServerProcess

from .azure_stall import _value


async def main(overrides: dict[str, Any]) -> None:
    def production_backoff(url: str, out: Path, **kw: Any) -> Any:
        return make_config(url, out, **{**kw, "backoff_base_s": 1.0, "backoff_max_s": 60.0})

    test_systemic.make_config = production_backoff  # type: ignore[assignment]
    with S3ServerProcess() as server, tempfile.TemporaryDirectory() as tmp:
        assert server.pid is not None
        pid = server.pid
        async with admin_client(server) as admin:
            await admin.create_bucket(Bucket="stall")
        config = S3Config(
            bucket="stall", endpoint_url=server.endpoint_url, addressing_style="path", **overrides
        )
        sink = S3Sink.from_config(config, run_id="stall", environ=server.admin.environ())
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
        f"[s3] {overrides or 'defaults'}: {ended - began:.1f} s in all, "
        f"{ended - stalled[0]:.1f} s from the stall to the stop; {summary.requests} export "
        f"requests, exit {summary.exit_code}"
    )
    print(f"STOPPED {summary.stopped}")


if __name__ == "__main__":
    asyncio.run(main({k: _value(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}))
