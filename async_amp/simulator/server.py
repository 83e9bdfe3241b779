"""A simulated Amplitude Export API over real HTTP, with fault injection and a latency model.

``GET /api/2/export?start=YYYYMMDDTHH&end=YYYYMMDDTHH`` (both inclusive, UTC) with HTTP
Basic auth answers like the real API: a ZIP of ``<project_id>/<project_id>_<date>_<H>#<n>.json.gz``
members (200), 404 when the whole range is quiet, 400 for bad parameters, 401 without
credentials and 403 with wrong ones. Members alternate between stored and deflated, with and
without data descriptors, hour by hour, so a client meets every variant.

Faults are chosen per request by a callable (see :class:`FaultPlan`) that sees the window and
its attempt number, so a test can fail the first try of one hour and check the retry.

    async with run_simulator(dataset, api_key="k", secret_key="s") as sim:
        ...  # point the client at sim.base_url
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Final, Unpack

from aiohttp import web

from async_amp.simulator.content import WindowContent
from async_amp.simulator.dataset import Dataset, hours_between, utc_hour
from async_amp.simulator.faults import (
    _CONTENT_FAULTS,
    _FAULT_BODY,
    _HTML_ERROR,
    Fault,
    FaultFn,
    FaultPlan,
    Injection,
    RequestInfo,
)
from async_amp.simulator.segmentation import SEGMENTATION_PATH, Segmentation, SegmentationEndpoint
from async_amp.simulator.wire import (
    Latency,
    MemberStyle,
    RequestRecord,
    SimulatorOptions,
    _abort,
    _Body,
    _parse_window,
    _target_hour,
    alternating_style,
    basic_auth_problem,
    corrupt_gzip,
    echo_credentials,
)
from async_amp.simulator.zipbuild import ZipMember

__all__ = [
    "EXPORT_PATH",
    "ExportSimulator",
    "Fault",
    "FaultFn",
    "FaultPlan",
    "Injection",
    "Latency",
    "MemberStyle",
    "RequestInfo",
    "RequestRecord",
    "SimulatorOptions",
    "alternating_style",
    "corrupt_gzip",
    "run_simulator",
    "serve_forever",
]

_log = logging.getLogger(__name__)

EXPORT_PATH: Final = "/api/2/export"


# --------------------------------------------------------------------------- the server


class ExportSimulator:
    """An aiohttp application imitating the Export API for one dataset.

    Use :func:`run_simulator` to run it; the attributes below are for tests to inspect.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        api_key: str,
        secret_key: str,
        faults: FaultFn | None = None,
        latency: Latency | None = None,
        retry_after_s: int = 1,
        stall_s: float = 30.0,
        member_style: Callable[[datetime], MemberStyle] = alternating_style,
        zip64: bool = False,
        max_export_events: int | None = None,
        unsafe_name: str = "../../evil.json.gz",
        chunk_bytes: int = 64 * 1024,
        zip_cache_bytes: int = 256 * 1024 * 1024,
        echo_credentials: str | None = None,
        revoke_keys_after: int | None = None,
        segmentation: Segmentation | None = None,
    ) -> None:
        self.content = WindowContent(
            dataset,
            member_style=member_style,
            zip64=zip64,
            unsafe_name=unsafe_name,
            cache_bytes=zip_cache_bytes,
        )
        self.revoke_keys_after = revoke_keys_after
        self._authorised = 0
        self._api_key = api_key
        self._secret_key = secret_key
        self._faults = faults
        self.latency = latency or Latency()
        self.retry_after_s = retry_after_s
        self.stall_s = stall_s
        self._max_export_events = max_export_events
        self._chunk_bytes = chunk_bytes
        self._echo_credentials = echo_credentials
        self._log: dict[int, RequestRecord] = {}
        self._ids = itertools.count()
        self._attempts: dict[tuple[datetime, datetime], int] = {}
        self._in_flight = 0
        self.max_in_flight_seen = 0
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        self.app = web.Application()
        self.app.router.add_get(EXPORT_PATH, self._handle)
        self.segmentation = SegmentationEndpoint(
            dataset, segmentation or Segmentation(), self._check_auth
        )
        self.app.router.add_get(SEGMENTATION_PATH, self.segmentation.handle)

    # ------------------------------------------------------------------ inspection

    @property
    def export_url(self) -> str:
        return self.base_url + EXPORT_PATH

    @property
    def requests(self) -> tuple[RequestRecord, ...]:
        """Every request since the last :meth:`reset_log`, in arrival order."""
        return tuple(self._log.values())

    def request_count(
        self,
        *,
        status: int | None = None,
        hour: datetime | None = None,
        fault: Fault | None = None,
    ) -> int:
        """Requests so far, optionally only those with a status, window hour or fault."""
        h = utc_hour(hour) if hour is not None else None
        return sum(
            1
            for r in self._log.values()
            if (status is None or r.status == status)
            and (fault is None or r.fault is fault)
            and (h is None or (r.start is not None and r.end is not None and r.start <= h <= r.end))
        )

    def reset_log(self, *, attempts: bool = False) -> None:
        """Forget the request log (and, with ``attempts=True``, the attempt counters)."""
        self._log.clear()
        if attempts:
            self._attempts.clear()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def dataset(self) -> Dataset:
        """The dataset served now (``change_hour`` replaces it)."""
        return self.content.dataset

    def change_hour(self, hour: datetime, events: int | None = None) -> None:
        """Late data: from now on ``hour`` holds ``events`` events (default: one more than it
        had), so its content differs from what earlier requests were sent."""
        self.content.change_hour(hour, events)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: a free port); returns and sets ``base_url``."""
        runner = web.AppRunner(
            self.app,
            shutdown_timeout=0.5,
            handler_cancellation=True,
            access_log=None,
        )
        await runner.setup()
        # Bind the socket ourselves so port=0 reveals the port the OS picked.
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            site = web.SockSite(runner, sock)
            await site.start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.base_url = f"http://{shown}:{bound_port}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening; wakes stalled handlers so shutdown never waits for them."""
        self._closing.set()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # ------------------------------------------------------------------ content

    def window_members(
        self, start: datetime, end: datetime, injection: Injection | None = None
    ) -> list[ZipMember]:
        """The ZIP members of a window, with a content fault applied when given."""
        return self.content.members(start, end, injection)

    def window_zip(self, start: datetime, end: datetime) -> bytes:
        """The exact ZIP a clean request for the window gets (blocking)."""
        return b"".join(self.content.build(utc_hour(start), utc_hour(end)).chunks)

    async def _body(self, start: datetime, end: datetime, injection: Injection | None) -> _Body:
        return await self.content.body(start, end, injection)

    # ------------------------------------------------------------------ handling

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self._in_flight += 1
        self.max_in_flight_seen = max(self.max_in_flight_seen, self._in_flight)
        rid = next(self._ids)
        self._log[rid] = RequestRecord(
            None, None, None, None, None, 0, query=request.query_string, at=time.monotonic()
        )
        try:
            return await self._export(request, rid)
        finally:
            self._in_flight -= 1
            self._update(rid, complete=True)

    def _update(self, rid: int, **changes: object) -> None:
        """Amend a request's record (gone if the log was reset meanwhile)."""
        record = self._log.get(rid)
        if record is not None:
            self._log[rid] = replace(record, **changes)  # type: ignore[arg-type]

    async def _export(self, request: web.Request, rid: int) -> web.StreamResponse:
        def answer(
            status: int,
            text: str,
            *,
            headers: Mapping[str, str] | None = None,
            content_type: str = "text/plain",
        ) -> web.Response:
            if self._echo_credentials is not None and (status != 200 or "html" in content_type):
                sent = request.headers.get("Authorization")
                text = echo_credentials(self._echo_credentials, sent) + " " + text
            body = text.encode()
            self._update(rid, status=status, bytes_sent=len(body))
            return web.Response(
                status=status, body=body, headers=headers, content_type=content_type
            )

        auth_problem = self._check_auth(request.headers.get("Authorization"))
        if auth_problem is not None:
            status, text = auth_problem
            extra = {"WWW-Authenticate": 'Basic realm="Amplitude"'} if status == 401 else None
            return answer(status, text, headers=extra)

        parsed = _parse_window(request.query)
        if isinstance(parsed, str):
            return answer(400, parsed)
        start, end = parsed
        attempt = self._attempts.get(parsed, 0) + 1
        self._attempts[parsed] = attempt
        self._update(rid, start=start, end=end, attempt=attempt)
        retry_after = {"Retry-After": str(self.retry_after_s)}

        limit = self.latency.max_in_flight
        if limit is not None and self._in_flight > limit:
            return answer(429, "Too many concurrent requests for this project", headers=retry_after)
        if self.latency.fixed_s > 0:
            await asyncio.sleep(self.latency.fixed_s)

        hours = hours_between(start, end)
        if self._max_export_events is not None:
            total = sum(self.dataset.hour_event_count(h) for h in hours)
            if total > self._max_export_events:
                return answer(400, _FAULT_BODY[Fault.HTTP_400])

        injection = self._choose_fault(RequestInfo(start, end, attempt))
        fault = injection.fault if injection is not None else None
        data_hours = [h for h in hours if self.dataset.pages(h)]
        if injection is not None and fault in _CONTENT_FAULTS:
            if not data_hours:
                injection = fault = None  # nothing to damage: a plain 404 follows
            else:
                injection = Injection(injection.fault, _target_hour(data_hours, injection))
        if injection is not None:
            self._update(rid, fault=injection.fault, fault_hour=injection.hour)

        if fault is not None and fault.status is not None:
            retry = fault in (Fault.HTTP_429, Fault.HTTP_503)
            return answer(fault.status, _FAULT_BODY[fault], headers=retry_after if retry else None)
        if fault is Fault.RESET_BEFORE_HEADERS:
            _abort(request)
            return web.Response(status=500)  # never reaches the client
        if fault is Fault.HTML_200:
            return answer(200, _HTML_ERROR, content_type="text/html")
        if not data_hours and fault is not Fault.EMPTY_ZIP:
            return answer(404, "Raw data files were not found.")

        body = await self._body(start, end, injection)
        wait = self.latency.s_per_mb * body.size / 1e6
        if wait > 0:
            await asyncio.sleep(wait)

        self._update(rid, status=200)
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "application/zip",
                "Content-Disposition": f'attachment; filename="{self.dataset.project_id}.zip"',
            },
        )
        # CUT_BODY and STALL promise the whole length too; ZIP_TRUNCATED's body is shorter.
        response.content_length = body.size
        try:
            await response.prepare(request)
            await self._send(request, response, body, fault, rid)
        except ConnectionError:
            _log.debug("client went away during %s", request.query_string)
        return response

    async def _send(
        self,
        request: web.Request,
        response: web.StreamResponse,
        body: _Body,
        fault: Fault | None,
        rid: int,
    ) -> None:
        cut = body.size // 2 if fault in (Fault.CUT_BODY, Fault.STALL) else None
        rate = self.latency.mb_per_s_per_conn
        began = time.monotonic()
        sent = 0
        try:
            for chunk in body.chunks:
                view = memoryview(chunk)
                for pos in range(0, len(view), self._chunk_bytes):
                    piece = view[pos : pos + self._chunk_bytes]
                    if cut is not None and sent + len(piece) >= cut:
                        head = piece[: cut - sent]
                        if head:
                            await response.write(head)
                            sent += len(head)
                        if fault is Fault.CUT_BODY or await self._stall():
                            _abort(request)
                            return
                        cut = None
                        piece = piece[len(head) :]
                        if not piece:
                            continue
                    await response.write(piece)
                    sent += len(piece)
                    if rate:
                        ahead = sent / (rate * 1e6) - (time.monotonic() - began)
                        if ahead > 0:
                            await asyncio.sleep(ahead)
            await response.write_eof()
        finally:
            self._update(rid, bytes_sent=sent)

    async def _stall(self) -> bool:
        """Sleep ``stall_s``; True when the simulator is shutting down meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), self.stall_s)
        return self._closing.is_set()

    def _check_auth(self, header: str | None) -> tuple[int, str] | None:
        problem = basic_auth_problem(header, self._api_key, self._secret_key)
        if problem is not None:
            return problem
        revoke = self.revoke_keys_after
        if revoke is not None and self._authorised >= revoke:
            return 401, "Invalid API key: the key was revoked"
        self._authorised += 1
        return None

    def _choose_fault(self, info: RequestInfo) -> Injection | None:
        if self._faults is None:
            return None
        chosen = self._faults(info)
        if chosen is None:
            return None
        if isinstance(chosen, Fault):
            return Injection(chosen, None)
        return chosen


# --------------------------------------------------------------------------- running


@contextlib.asynccontextmanager
async def run_simulator(
    dataset: Dataset,
    *,
    api_key: str,
    secret_key: str,
    faults: FaultFn | None = None,
    latency: Latency | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **options: Unpack[SimulatorOptions],
) -> AsyncIterator[ExportSimulator]:
    """Run an :class:`ExportSimulator` on loopback for the duration of the block.

    ``options`` are passed to :class:`ExportSimulator` (``retry_after_s``, ``stall_s``,
    ``member_style``, ``zip64``, ``max_export_events``, ...).
    """
    sim = ExportSimulator(
        dataset,
        api_key=api_key,
        secret_key=secret_key,
        faults=faults,
        latency=latency,
        **options,
    )
    await sim.start(host, port)
    try:
        yield sim
    finally:
        await sim.stop()


async def serve_forever(
    dataset: Dataset,
    *,
    api_key: str,
    secret_key: str,
    faults: FaultFn | None = None,
    latency: Latency | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    on_ready: Callable[[str], None] | None = None,
    **options: Unpack[SimulatorOptions],
) -> None:
    """Serve until cancelled (for ``async-amp simulate``); ``on_ready`` gets the base URL."""
    async with run_simulator(
        dataset,
        api_key=api_key,
        secret_key=secret_key,
        faults=faults,
        latency=latency,
        host=host,
        port=port,
        **options,
    ) as sim:
        _log.info("Export API simulator listening on %s", sim.base_url)
        if on_ready is not None:
            on_ready(sim.base_url)
        await asyncio.Event().wait()
