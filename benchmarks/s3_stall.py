"""How long a stalled S3 store takes to stop a run, with the ``[s3]`` defaults.

``benchmarks.azure_stall``'s set-up for S3 (the S3 server SIGSTOPped when the 6th export
request arrives: connections are taken by the kernel, nothing answers)::

    .venv/bin/python -m benchmarks.s3_stall                     # the defaults
    .venv/bin/python -m benchmarks.s3_stall read_timeout_s=10   # any [s3] key=value
"""

from __future__ import annotations

from typing import Any

from async_amp.config import S3Config
from async_amp.output.stores.s3 import S3Sink
from tests.s3 import admin_client
from tools.s3server import S3ServerProcess

from .stall import main, measure


async def run(settings: dict[str, Any]) -> None:
    with S3ServerProcess() as server:
        assert server.pid is not None
        async with admin_client(server) as admin:
            await admin.create_bucket(Bucket="stall")
        config = S3Config(
            bucket="stall", endpoint_url=server.endpoint_url, addressing_style="path", **settings
        )
        sink = S3Sink.from_config(config, run_id="stall", environ=server.admin.environ())
        await measure("s3", server.pid, sink, settings)


if __name__ == "__main__":
    main(run)
