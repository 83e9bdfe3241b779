"""Run a test server on its own event loop in a background thread.

For synchronous callers: ``make demo``, CLI tests that call ``main()`` (which runs its own
event loop) or run the CLI as a subprocess, and benchmarks. The servers still serve real
sockets on loopback.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from .dataset import Dataset
from .server import ExportSimulator, run_simulator

__all__ = ["Background", "BackgroundSimulator"]

T = TypeVar("T")


class Background(Generic[T]):
    """``with Background(lambda: run_x(...), "x") as x:`` runs ``run_x`` in a thread."""

    def __init__(self, opener: Callable[[], AbstractAsyncContextManager[T]], what: str) -> None:
        self._opener = opener
        self._what = what
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name=what, daemon=True)
        self._error: BaseException | None = None
        self._value: T | None = None

    def _main(self) -> None:
        try:
            anyio.run(self._serve)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller's thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with self._opener() as value:
            self._value = value
            self._ready.set()
            await anyio.to_thread.run_sync(self._stop.wait)

    def __enter__(self) -> T:
        self._thread.start()
        self._ready.wait(timeout=30)
        if self._error is not None or self._value is None:
            msg = f"the {self._what} did not start: {self._error!r}"
            raise RuntimeError(msg)
        return self._value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class BackgroundSimulator(Background[ExportSimulator]):
    """``with BackgroundSimulator(dataset, api_key=..., secret_key=...) as sim: sim.base_url``."""

    def __init__(self, dataset: Dataset, *, api_key: str, secret_key: str, **options: Any) -> None:
        super().__init__(
            lambda: run_simulator(dataset, api_key=api_key, secret_key=secret_key, **options),
            "simulated Export API",
        )
