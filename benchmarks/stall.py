"""What the three store-stall benchmarks share (``azure_stall``, ``s3_stall``, ``gcs_stall``).

The set-up of ``tests/test_systemic.py``'s store tests (24 hours at concurrency 2, the store's
process SIGSTOPped when the 6th export request arrives: connections are taken, nothing
answers) with the production backoff (1 s / 60 s); the seconds from the stall to the stop.
``STALL_SIGNAL=KILL`` in the environment kills the store instead (connections refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from async_amp.output.stores.base import Sink
from tests import test_systemic
from tests.helpers import make_config


def overrides() -> dict[str, Any]:
    """The command line's ``key=value`` store settings, numbers as numbers."""

    def value(text: str) -> Any:
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text

    return {k: value(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}


async def measure(store: str, pid: int, sink: Sink, settings: dict[str, Any]) -> None:
    """Extract into ``sink`` until the 6th request stops process ``pid``; print the times."""

    def production_backoff(url: str, out: Path, **kw: Any) -> Any:
        return make_config(url, out, **{**kw, "backoff_base_s": 1.0, "backoff_max_s": 60.0})

    test_systemic.make_config = production_backoff  # type: ignore[assignment,attr-defined]
    stalled: list[float] = []
    how = signal.SIGKILL if os.environ.get("STALL_SIGNAL") == "KILL" else signal.SIGSTOP

    def stall() -> None:
        stalled.append(time.monotonic())
        os.kill(pid, how)

    began = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            summary, _ = await test_systemic.extract_while_the_store_goes(Path(tmp), sink, stall)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    ended = time.monotonic()
    print(
        f"[{store}] {how.name} {settings or 'defaults'}: {ended - began:.1f} s in all, "
        f"{ended - stalled[0]:.1f} s from the stall to the stop; {summary.requests} export "
        f"requests, exit {summary.exit_code}"
    )
    print(f"STOPPED {summary.stopped}")


def main(run: Callable[[dict[str, Any]], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(run(overrides()))
