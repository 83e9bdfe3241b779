"""Run the simulated Export API on its own event loop in a background thread.

For synchronous callers: ``make demo``, CLI tests that call ``main()`` (which runs its own
event loop), and benchmarks. The simulator still serves real HTTP on loopback.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

import anyio

from .dataset import Dataset
from .server import ExportSimulator, run_simulator

__all__ = ["BackgroundSimulator"]


class BackgroundSimulator:
    """``with BackgroundSimulator(dataset, api_key=..., secret_key=...) as sim: sim.base_url``."""

    def __init__(self, dataset: Dataset, *, api_key: str, secret_key: str, **options: Any) -> None:
        self._dataset = dataset
        self._options = {"api_key": api_key, "secret_key": secret_key, **options}
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="export-simulator", daemon=True)
        self._error: BaseException | None = None
        self.sim: ExportSimulator | None = None

    def _main(self) -> None:
        try:
            anyio.run(self._serve)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller's thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with run_simulator(self._dataset, **self._options) as sim:
            self.sim = sim
            self._ready.set()
            await anyio.to_thread.run_sync(self._stop.wait)

    def __enter__(self) -> ExportSimulator:
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None or self.sim is None:
            msg = f"the simulated Export API did not start: {self._error!r}"
            raise RuntimeError(msg)
        return self.sim

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
