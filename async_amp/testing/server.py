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
import base64
import binascii
import contextlib
import hmac
import itertools
import logging
import re
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Final, Unpack

from aiohttp import web

from async_amp.testing.dataset import Dataset, hours_between, utc_hour
from async_amp.testing.faults import (
    _CONTENT_FAULTS,
    _FAULT_BODY,
    _HTML_ERROR,
    Fault,
    FaultFn,
    FaultPlan,
    Injection,
    RequestInfo,
)
from async_amp.testing.wire import (
    _GZIP_EMPTY,
    Latency,
    MemberStyle,
    RequestRecord,
    SimulatorOptions,
    _abort,
    _Body,
    _mid_member_offset,
    _parse_window,
    _target_hour,
    alternating_style,
    corrupt_gzip,
)
from async_amp.testing.zipbuild import ZipMember, empty_zip, iter_zip

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
_PARAM_RE: Final = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})$")
_MAX_SPAN: Final = timedelta(days=365)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


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
    ) -> None:
        self.dataset = dataset
        self.revoke_keys_after = revoke_keys_after
        self._authorised = 0
        self._api_key = api_key
        self._secret_key = secret_key
        self._faults = faults
        self.latency = latency or Latency()
        self.retry_after_s = retry_after_s
        self.stall_s = stall_s
        self._member_style = member_style
        self._zip64 = zip64
        self._max_export_events = max_export_events
        self._unsafe_name = unsafe_name
        self._chunk_bytes = chunk_bytes
        self._cache_limit = zip_cache_bytes
        self._echo_credentials = echo_credentials
        self._cache: OrderedDict[tuple[datetime, datetime], _Body] = OrderedDict()
        self._cache_size = 0
        self._build_locks: dict[tuple[datetime, datetime], asyncio.Lock] = {}
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

    def change_hour(self, hour: datetime, events: int | None = None) -> None:
        """Late data: from now on ``hour`` holds ``events`` events (default: one more than it
        had), so its content differs from what earlier requests were sent."""
        hour = utc_hour(hour)
        count = self.dataset.hour_event_count(hour) + 1 if events is None else events
        self.dataset = replace(self.dataset, hour_sizes={**self.dataset.hour_sizes, hour: count})
        for key in [k for k in self._cache if k[0] <= hour <= k[1]]:
            self._cache_size -= self._cache.pop(key).size

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
        ds = self.dataset
        hours = [h for h in hours_between(start, end) if ds.pages(h)]
        target = _target_hour(hours, injection)
        fault = injection.fault if injection is not None else None
        members: list[ZipMember] = []
        for hour in hours:
            style = self._member_style(hour)
            pages = ds.pages(hour)
            if hour == target and fault is Fault.MISSING_PARTITION:
                pages = [p for p in pages if p != pages[len(pages) // 2]]
            hour_members = [
                ZipMember(
                    ds.member_name(hour, p), ds.gz(hour, p), style.method, style.data_descriptor
                )
                for p in pages
            ]
            if hour == target and hour_members:
                first = hour_members[0]
                if fault is Fault.CORRUPT_GZIP:
                    assert isinstance(first.data, bytes)
                    hour_members[0] = replace(first, data=corrupt_gzip(first.data))
                elif fault is Fault.DUPLICATE_MEMBER:
                    hour_members.append(first)
                elif fault is Fault.UNSAFE_NAME:
                    hour_members.append(replace(first, name=self._unsafe_name))
                elif fault is Fault.FOREIGN_MEMBER:
                    name, data = self._foreign(end)
                    hour_members.append(replace(first, name=name, data=data))
            members.extend(hour_members)
        return members

    def _foreign(self, end: datetime) -> tuple[str, bytes]:
        """A member for the hour after the window (its real data when it has any)."""
        ds = self.dataset
        other = end + timedelta(hours=1)
        pages = ds.pages(other)
        if pages:
            return ds.member_name(other, pages[0]), ds.gz(other, pages[0])
        return ds.member_name(other, ds.first_page), _GZIP_EMPTY

    def _build_body(
        self, start: datetime, end: datetime, injection: Injection | None = None
    ) -> _Body:
        """The response body for a window (blocking: call it from a worker thread)."""
        fault = injection.fault if injection is not None else None
        if fault is Fault.EMPTY_ZIP:
            data = empty_zip()
            return _Body((data,), len(data))
        content = injection if fault in _CONTENT_FAULTS else None
        members = self.window_members(start, end, content)
        chunks = tuple(c for c in iter_zip(members, zip64=self._zip64) if c)
        size = sum(len(c) for c in chunks)
        if fault is Fault.ZIP_TRUNCATED and members:
            # Cut in the middle of the target hour's last member, then end cleanly.
            ds = self.dataset
            hours = [h for h in hours_between(start, end) if ds.pages(h)]
            target = _target_hour(hours, injection)
            assert target is not None
            last = ds.member_name(target, ds.pages(target)[-1])
            data = b"".join(chunks)
            cut = _mid_member_offset(data, last)
            return _Body((data[:cut],), cut)
        return _Body(chunks, size)

    def window_zip(self, start: datetime, end: datetime) -> bytes:
        """The exact ZIP a clean request for the window gets (blocking)."""
        return b"".join(self._build_body(utc_hour(start), utc_hour(end)).chunks)

    async def _body(self, start: datetime, end: datetime, injection: Injection | None) -> _Body:
        if injection is not None and injection.fault in (*_CONTENT_FAULTS, Fault.EMPTY_ZIP):
            return await asyncio.to_thread(self._build_body, start, end, injection)
        key = (start, end)
        lock = self._build_locks.setdefault(key, asyncio.Lock())
        async with lock:
            body = self._cache.get(key)
            if body is not None:
                self._cache.move_to_end(key)
                return body
            body = await asyncio.to_thread(self._build_body, start, end, None)
            if body.size <= self._cache_limit:
                self._cache[key] = body
                self._cache_size += body.size
                while self._cache_size > self._cache_limit:
                    _, old = self._cache.popitem(last=False)
                    self._cache_size -= old.size
        return body

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
                text = self._echo(request.headers.get("Authorization")) + " " + text
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

    def _echo(self, header: str | None) -> str:
        """``echo_credentials`` filled in with what the request sent (a careless server)."""
        assert self._echo_credentials is not None
        _, _, value = (header or "").partition(" ")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        api_key, _, secret_key = decoded.partition(":")
        return self._echo_credentials.format(
            authorization=header or "", token=value, api_key=api_key, secret_key=secret_key
        )

    def _check_auth(self, header: str | None) -> tuple[int, str] | None:
        if not header:
            return 401, "Missing Authorization header: use HTTP Basic with api key and secret"
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return 401, "Unsupported authorization scheme: use HTTP Basic"
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return 401, "Malformed Basic credentials"
        user, sep, password = decoded.partition(":")
        expected = f"{self._api_key}:{self._secret_key}"
        if not sep or not hmac.compare_digest(f"{user}:{password}", expected):
            return 403, "Invalid API key or secret key"
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
