"""How long a stalled Azure store takes to stop a run, with the ``[azure]`` defaults.

The set-up of ``tests/test_systemic.py::test_azurite_gone_mid_run_stops_within_a_bounded_number
_of_attempts[stalled]`` (24 hours at concurrency 2, Azurite SIGSTOPped when the 6th export
request arrives), with the production backoff (1 s / 60 s) and, unless given, the production
storage retries and timeouts. The test bounds requests and attempts; the seconds are here::

    .venv/bin/python -m benchmarks.azure_stall                      # the defaults
    .venv/bin/python -m benchmarks.azure_stall read_timeout_s=60    # any [azure] key=value
"""

from __future__ import annotations

from typing import Any

from async_amp.config import AzureConfig
from async_amp.output.stores.azure import AzureSink
from tests.azurite import AZURITE_BIN
from tools.azurite import START_TIMEOUT_S, AzuriteProcess

from .stall import main, measure


async def run(settings: dict[str, Any]) -> None:
    with AzuriteProcess(AZURITE_BIN, start_timeout_s=START_TIMEOUT_S) as azurite:
        assert azurite.endpoint is not None and azurite.pid is not None
        env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.endpoint.connection_string}
        azure = AzureConfig(container="stall", **settings)
        sink = AzureSink.from_config(azure, run_id="stall", environ=env)
        await measure("azure", azurite.pid, sink, settings)


if __name__ == "__main__":
    main(run)
