"""The simulator's wire details: the latency model, member naming styles, what it records per
request, the options it takes, parsing a request's window and its Basic credentials, and
damaging bytes on purpose."""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final, TypedDict

from aiohttp import web

from async_amp.simulator.faults import (
    Fault,
    Injection,
    _hour_index,
)
from async_amp.simulator.zipbuild import Method

if TYPE_CHECKING:
    from .segmentation import Segmentation

_PARAM_RE: Final = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})$")
_MAX_SPAN: Final = timedelta(days=365)


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True, slots=True)
class Latency:
    """A simple server-side cost model for benchmarks.

    Before the headers: ``fixed_s + s_per_mb * zip_MB``. The body is throttled to
    ``mb_per_s_per_conn`` per request (None: as fast as possible). More than
    ``max_in_flight`` concurrent export requests get 429 with Retry-After.
    """

    fixed_s: float = 0.0
    s_per_mb: float = 0.0
    mb_per_s_per_conn: float | None = None
    max_in_flight: int | None = None


@dataclass(frozen=True, slots=True)
class MemberStyle:
    """How the ZIP stores one hour's members."""

    method: Method
    data_descriptor: bool


_STYLES: Final = (
    MemberStyle("stored", data_descriptor=False),
    MemberStyle("deflated", data_descriptor=True),
    MemberStyle("stored", data_descriptor=True),
    MemberStyle("deflated", data_descriptor=False),
)


def alternating_style(hour: datetime) -> MemberStyle:
    """The default: cycle through the four stored/deflated x descriptor variants by hour."""
    return _STYLES[_hour_index(hour) % len(_STYLES)]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the simulator saw it (``start``/``end`` None when unparseable)."""

    start: datetime | None
    end: datetime | None
    status: int | None  # None: the connection was reset before any status was sent
    fault: Fault | None
    fault_hour: datetime | None
    attempt: int  # 0 when the window was not valid (auth or parameter errors)
    bytes_sent: int = 0
    complete: bool = False  # the handler finished (the body was sent or abandoned)
    query: str = ""
    at: float = field(default=0.0, compare=False)  # time.monotonic() at arrival


@dataclass(frozen=True, slots=True)
class _Body:
    chunks: tuple[bytes, ...]
    size: int


class SimulatorOptions(TypedDict, total=False):
    """Optional :class:`ExportSimulator` settings, also accepted by :func:`run_simulator`."""

    retry_after_s: int
    stall_s: float
    member_style: Callable[[datetime], MemberStyle]
    zip64: bool
    max_export_events: int | None
    unsafe_name: str
    chunk_bytes: int
    zip_cache_bytes: int
    # A careless server that reflects what it was sent: a ``str.format`` template with the
    # fields {authorization} (the raw header), {token}, {api_key} and {secret_key}, prepended
    # to every non-200 body and to the HTML_200 page. None (the default): never.
    echo_credentials: str | None
    # Keys revoked mid-run: after this many export requests with valid keys, every request is
    # refused with 401 (as when an admin rotates the keys). None (the default): never.
    revoke_keys_after: int | None
    # The Dashboard REST API's event segmentation: the project's time zone, and how the
    # simulator's figures should disagree with its own events (see simulator/segmentation.py).
    segmentation: Segmentation


# --------------------------------------------------------------------------- helpers


_GZIP_EMPTY: Final = zlib.compress(b"", wbits=31)


def corrupt_gzip(data: bytes) -> bytes:
    """Break a gzip stream so decompression fails: scramble mid-stream bytes and the CRC.

    The result still has a gzip header, so it looks plausible until it is inflated.
    """
    if len(data) < 20:
        return data[:10] + b"\xff" * max(0, len(data) - 10)
    buf = bytearray(data)
    middle = len(buf) // 2
    for i in range(max(10, middle - 8), min(len(buf) - 8, middle + 8)):
        buf[i] ^= 0xA5
    crc = struct.unpack_from("<I", buf, len(buf) - 8)[0]
    struct.pack_into("<I", buf, len(buf) - 8, crc ^ 0xDEADBEEF)
    return bytes(buf)


def _target_hour(hours: Sequence[datetime], injection: Injection | None) -> datetime | None:
    """The hour a content fault acts on: the injection's if it has data, else the first."""
    if not hours:
        return None
    if injection is not None and injection.hour is not None and injection.hour in hours:
        return injection.hour
    return hours[0]


def _mid_member_offset(data: bytes, name: str) -> int:
    """An offset in the middle of member ``name``'s data (for ZIP_TRUNCATED)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        info = archive.getinfo(name)
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start: int = info.header_offset + 30 + name_len + extra_len
    return start + max(1, info.compress_size // 2)


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def _parse_hour(name: str, value: str | None) -> datetime | str:
    if value is None:
        return f"Missing required parameter '{name}' (format YYYYMMDDTHH)"
    match = _PARAM_RE.match(value)
    if match is None:
        return f"Invalid '{name}' {value!r}: expected YYYYMMDDTHH, e.g. 20261101T05"
    year, month, day, hour = (int(g) for g in match.groups())
    try:
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:
        return f"Invalid '{name}' {value!r}: not a real date and hour"


def _parse_window(query: Mapping[str, str]) -> tuple[datetime, datetime] | str:
    start = _parse_hour("start", query.get("start"))
    end = _parse_hour("end", query.get("end"))
    problems = [p for p in (start, end) if isinstance(p, str)]
    if problems:
        return "; ".join(problems)
    assert isinstance(start, datetime)
    assert isinstance(end, datetime)
    if end < start:
        return "'end' must not be before 'start'"
    if end - start >= _MAX_SPAN:
        return "The time range must not exceed 365 days"
    return start, end


def _basic_credentials(value: str) -> str | None:
    """``key:secret`` from the token of a Basic ``Authorization`` header (None: not base64)."""
    try:
        return base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def basic_auth_problem(header: str | None, api_key: str, secret_key: str) -> tuple[int, str] | None:
    """The status and body the API answers an ``Authorization`` header with when it does not
    carry these keys (None: it does)."""
    if not header:
        return 401, "Missing Authorization header: use HTTP Basic with api key and secret"
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return 401, "Unsupported authorization scheme: use HTTP Basic"
    decoded = _basic_credentials(value)
    if decoded is None:
        return 401, "Malformed Basic credentials"
    user, sep, password = decoded.partition(":")
    if not sep or not hmac.compare_digest(f"{user}:{password}", f"{api_key}:{secret_key}"):
        return 403, "Invalid API key or secret key"
    return None


def echo_credentials(template: str, header: str | None) -> str:
    """``echo_credentials`` (a careless server's template) filled in with what was sent."""
    _, _, value = (header or "").partition(" ")
    api_key, _, secret_key = (_basic_credentials(value) or "").partition(":")
    return template.format(
        authorization=header or "", token=value, api_key=api_key, secret_key=secret_key
    )
