"""How long a stalled Azure store takes to stop a run, with the ``[azure]`` defaults.

The set-up of ``tests/test_systemic.py::test_azurite_gone_mid_run_stops_within_a_bounded_number
_of_attempts[stalled]`` (24 hours at concurrency 2, Azurite SIGSTOPped when the 6th export
request arrives), with the production backoff (1 s / 60 s) and, unless given, the production
storage retries and timeouts. The test bounds requests and attempts; the seconds are here::

    .venv/bin/python -m benchmarks.azure_stall                      # the defaults
    .venv/bin/python -m benchmarks.azure_stall read_timeout_s=60    # any [azure] key=value
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

from async_amp.config import AzureConfig
from async_amp.sinks.azure import AzureSink
from tests import test_systemic
from tests.azurite import AZURITE_BIN
from tests.helpers import make_config
from tools.azurite import START_TIMEOUT_S, AzuriteProcess


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


async def main(overrides: dict[str, Any]) -> None:
    def production_backoff(url: str, out: Path, **kw: Any) -> Any:
        return make_config(url, out, **{**kw, "backoff_base_s": 1.0, "backoff_max_s": 60.0})

    test_systemic.make_config = production_backoff  # type: ignore[assignment]
    with (
        AzuriteProcess(AZURITE_BIN, start_timeout_s=START_TIMEOUT_S) as azurite,
        tempfile.TemporaryDirectory() as tmp,
    ):
        assert azurite.endpoint is not None and azurite.pid is not None
        pid = azurite.pid
        env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.endpoint.connection_string}
        azure = AzureConfig(container="stall", **overrides)
        sink = AzureSink.from_config(azure, run_id="stall", environ=env)
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
        f"[azure] {overrides or 'defaults'}: {ended - began:.1f} s in all, "
        f"{ended - stalled[0]:.1f} s from the stall to the stop; {summary.requests} export "
        f"requests, exit {summary.exit_code}"
    )
    print(f"STOPPED {summary.stopped}")


if __name__ == "__main__":
    asyncio.run(main({k: _value(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}))
