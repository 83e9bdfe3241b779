"""The Export API seam: one narrow protocol, and its aiohttp implementation.

``ExportSource.export(first, last)`` opens one request for the hours ``first..last`` (both
inclusive, as Amplitude's ``start``/``end``) and yields the body as an async iterator of byte
chunks, or ``None`` when the API says there is no data (404). HTTP statuses and network
failures are translated here, at the boundary, into the project's error classes.
"""

from __future__ import annotations

import base64
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

import aiohttp

from ..errors import (
    ConnectFailedError,
    CredentialsError,
    ExportTooLargeError,
    NoAnswerError,
    RetryableHTTPError,
)
from ..hours import amplitude_param
from ..scrub import scrub_params
from ..version import __version__

__all__ = ["AiohttpExportSource", "ExportSource", "RateFloor", "parse_retry_after", "sanitize"]

EXPORT_PATH = "/api/2/export"
READ_SIZE = 1024 * 1024  # coalesced: fewer, larger hand-offs to the decoder thread
_ERROR_BODY_LIMIT = 4096
_SHOWN_BODY = 160


class ExportSource(Protocol):
    def export(
        self, first: datetime, last: datetime
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes] | None]:
        """Open one export request; yield the body's chunks, or ``None`` for 404 (no data)."""
        ...


def sanitize(text: str, secrets: Sequence[str] = (), limit: int = _SHOWN_BODY) -> str:
    """Shorten and clean a server's text for logs: one line, no secrets, no markup noise."""
    text = scrub_params(re.sub(r"<[^>]*>", " ", text), secrets)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); ``None`` when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    """What stopped the connection, in a few words: ``connection refused (host:port)``."""
    where = f"{exc.host}:{exc.port}"
    cause = exc.os_error
    if cause.errno and cause.errno > 0 and not isinstance(cause, ssl.SSLError):
        reason = os.strerror(cause.errno)  # "Connection refused", not "Connect call failed"
    else:
        reason = cause.strerror or str(cause) or type(cause).__name__
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup of {exc.host} failed ({reason})"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake with {where} failed ({reason})"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return f"the proxy refused the connection to {where} ({reason})"
    return f"{reason[:1].lower()}{reason[1:]} ({where})"


class RateFloor:
    """Abandons a response that keeps trickling: bytes arrive (so no read times out), but at
    under ``min_bytes_per_s`` over a whole ``window_s``, the export would take days.

    ``observe(n, now)`` after each read; it raises ``RetryableHTTPError`` when the window that
    just closed was too slow. A window starts when the body does, then at each check.
    """

    __slots__ = ("_count", "_min", "_start", "_window", "received")

    def __init__(self, min_bytes_per_s: float, window_s: float, now: float) -> None:
        self._min = min_bytes_per_s
        self._window = window_s
        self._start = now
        self._count = 0
        self.received = 0

    def observe(self, size: int, now: float) -> None:
        self._count += size
        self.received += size
        elapsed = now - self._start
        if self._min <= 0 or elapsed < self._window:
            return
        rate = self._count / elapsed
        if rate < self._min:
            msg = (
                f"the response trickled at {rate / 1024:.1f} KiB/s for {elapsed:.0f} s after "
                f"{self.received} bytes (below min_rate_kib_s = {self._min / 1024:g})"
            )
            raise RetryableHTTPError(msg)
        self._start = now
        self._count = 0

    def pause(self, seconds: float) -> None:
        """Time spent handing bytes on (waiting for the decoder) does not count."""
        self._start += seconds


class AiohttpExportSource:
    """Calls ``GET <base_url>/api/2/export`` with basic auth, connect and read-stall timeouts.

    There is deliberately no total timeout: big hours legitimately take minutes. A server that
    goes silent for ``read_timeout_s`` mid-body is a stall and becomes a retryable error.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        secret_key: str,
        *,
        read_timeout_s: float,
        connect_timeout_s: float,
        region_hint: str = "",
        min_rate_kib_s: float = 0.0,
    ) -> None:
        self._url = base_url.rstrip("/") + EXPORT_PATH
        token = base64.b64encode(f"{api_key}:{secret_key}".encode()).decode("ascii")
        self._auth_header = f"Basic {token}"
        self._secrets = (api_key, secret_key, token)
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout_s,
            sock_connect=connect_timeout_s,
            sock_read=read_timeout_s,
        )
        self._region_hint = region_hint
        self._min_rate = min_rate_kib_s * 1024
        self._read_timeout_s = read_timeout_s
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return self._url

    async def __aenter__(self) -> AiohttpExportSource:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            headers={"User-Agent": f"async-amp/{__version__}", "Authorization": self._auth_header},
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            auto_decompress=False,
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def export(
        self, first: datetime, last: datetime
    ) -> AbstractAsyncContextManager[AsyncIterator[bytes] | None]:
        return self._export(first, last)

    @asynccontextmanager
    async def _export(
        self, first: datetime, last: datetime
    ) -> AsyncIterator[AsyncIterator[bytes] | None]:
        assert self._session is not None, "use 'async with AiohttpExportSource(...)'"
        params = {"start": amplitude_param(first), "end": amplitude_param(last)}
        try:
            response = await self._session.get(self._url, params=params)
        except aiohttp.ConnectionTimeoutError as exc:
            msg = "no connection within connect_timeout_s"
            raise ConnectFailedError(msg) from exc
        except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS, proxy
            raise ConnectFailedError(sanitize(connect_failure(exc), self._secrets)) from exc
        except TimeoutError as exc:
            msg = f"no answer within read_timeout_s ({self._read_timeout_s:g} s)"
            raise NoAnswerError(msg, silent=True) from exc
        except aiohttp.ClientError as exc:
            detail = sanitize(str(exc) or type(exc).__name__, self._secrets)
            msg = f"request failed before a response: {detail}"
            raise NoAnswerError(msg, silent=False) from exc
        try:
            if response.status == 200:
                yield self._body(response)
            elif response.status == 404:
                yield None
            else:
                await self._raise_for(response)
        finally:
            response.release()

    async def _body(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        floor = RateFloor(self._min_rate, self._read_timeout_s, time.monotonic())
        try:
            stream = response.content
            while True:
                chunk = await stream.read(READ_SIZE)
                if not chunk:
                    break
                floor.observe(len(chunk), time.monotonic())
                if len(chunk) < READ_SIZE and not stream.at_eof():
                    parts = [chunk]
                    size = len(chunk)
                    while size < READ_SIZE and (more := await stream.read(READ_SIZE - size)):
                        floor.observe(len(more), time.monotonic())
                        parts.append(more)
                        size += len(more)
                    chunk = b"".join(parts)
                handed = time.monotonic()
                yield chunk
                floor.pause(time.monotonic() - handed)  # a slow sink is not a slow network
        except TimeoutError as exc:
            msg = (
                f"the response stalled after {floor.received} bytes "
                "(read_timeout_s passed in silence)"
            )
            raise RetryableHTTPError(msg) from exc
        except aiohttp.ClientError as exc:
            detail = sanitize(str(exc) or type(exc).__name__, self._secrets)
            msg = f"the response broke off after {floor.received} bytes: {detail}"
            # the endpoint answered (status and bytes): one hour's fault, not a dead endpoint
            raise RetryableHTTPError(msg) from exc

    async def _raise_for(self, response: aiohttp.ClientResponse) -> None:
        status = response.status
        try:
            raw = await response.content.read(_ERROR_BODY_LIMIT)
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        body = sanitize(raw.decode("utf-8", "replace"), self._secrets)
        said = f": {body}" if body else ""
        if status in (401, 403):
            msg = (
                f"Amplitude refused the keys (HTTP {status}){said}. Check AMP_API_KEY and "
                f"AMP_SECRET_KEY, and that the project's region matches [amplitude] region"
                f'{self._region_hint} (an EU project needs region = "eu")'
            )
            raise CredentialsError(msg)
        if status == 400:
            msg = (
                f"Amplitude answered 400{said} (the export would exceed its 4 GB limit, "
                "or the request was malformed)"
            )
            raise ExportTooLargeError(msg)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        msg = f"HTTP {status}{said}"
        raise RetryableHTTPError(msg, status=status, retry_after=retry_after)
