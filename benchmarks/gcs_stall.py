"""How long a stalled GCS store takes to stop a run, with the ``[gcs]`` defaults.

``benchmarks.azure_stall``'s set-up for GCS (fake-gcs-server SIGSTOPped when the 6th export
request arrives)::

    .venv/bin/python -m benchmarks.gcs_stall                     # the defaults
    .venv/bin/python -m benchmarks.gcs_stall read_timeout_s=60   # any [gcs] key=value
"""

from __future__ import annotations

from typing import Any

from async_amp.config import GcsConfig
from async_amp.output.stores.gcs import GcsSink
from tools.gcsserver import GcsEmulatorProcess

from .stall import main, measure


async def run(settings: dict[str, Any]) -> None:
    with GcsEmulatorProcess() as server:
        assert server.pid is not None
        server.create_bucket("stall")
        config = GcsConfig(
            bucket="stall", endpoint_url=server.endpoint_url, anonymous=True, **settings
        )
        sink = GcsSink.from_config(config, run_id="stall", environ={})
        await measure("gcs", server.pid, sink, settings)


if __name__ == "__main__":
    main(run)
