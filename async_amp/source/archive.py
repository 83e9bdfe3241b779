"""The pure, synchronous streaming core: ZIP bytes in -> vetted members -> gunzipped NDJSON out.

Nothing here does I/O or knows about asyncio: every piece takes chunks of bytes and gives chunks
of bytes, so it can be tested by feeding it 1, 7 or 65536 bytes at a time, and run in a worker
thread where the CPU work (inflate, gunzip, hashing) does not block the event loop.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import cast

import numpy as np
import stream_unzip
from isal import isal_zlib

from ..errors import ArchiveError
from ..hours import MemberName, iso_hour, parse_member_name
from ..output.manifest import FileEntry
from .member import MemberSink  # the protocol staging implements, for the decoder

__all__ = [
    "ArchiveLimits",
    "GzipDecoder",
    "MemberSink",
    "ProcessedMember",
    "iter_members",
    "output_name",
    "process_archive",
    "process_members",
]

GZIP_INPUT_CHUNK = 64 * 1024  # isal is fastest when fed at most 64 KiB per call
_PREVIEW = 48
_NEWLINE = 10
_NUMPY_MIN = 16 * 1024
_TAIL = 128 * 1024  # holds the end record, a ZIP64 locator and a comment of up to 64 KiB
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")
_EOCD_FIELDS = struct.Struct("<HII")  # total entries, directory size, directory offset
_ZIP64_FIELDS = struct.Struct("<QQQ")
_GZIP_ERRORS = (cast("type[Exception]", isal_zlib.error), ValueError)  # stub types it wrong


def count_lines(data: bytes) -> int:
    """Newlines in ``data``. numpy compares with SIMD and releases the GIL, so the decoder
    threads of several requests count in parallel; ``bytes.count`` holds the GIL (it was the
    largest share of the profile) and stays only for small pieces, where numpy's set-up
    costs more than it saves."""
    if len(data) < _NUMPY_MIN:
        return data.count(b"\n")
    return int(np.count_nonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE))


class LineCounter:
    """Counts the lines of NDJSON given in pieces, empty lines left out: an empty line is no
    event (DuckDB skips it too). A last line without a newline counts."""

    def __init__(self) -> None:
        self._newlines = 0
        self._empty = 0
        self._last = b"\n"  # a member that starts with a newline starts with an empty line

    def add(self, data: bytes) -> None:
        if not data:
            return
        if self._last == b"\n" and data[:1] == b"\n":
            self._empty += 1
        if len(data) >= _NUMPY_MIN:  # the newlines' offsets, with SIMD and without the GIL:
            # two adjacent ones are an empty line (a scan for b"\n\n" cost 0.45 s per 369 MB)
            at = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NEWLINE)
            self._newlines += len(at)
            if len(at) > 1:
                self._empty += int(np.count_nonzero(np.diff(at) == 1))
        else:
            self._newlines += data.count(b"\n")
            if b"\n\n" in data:  # bytes.count would miss overlapping pairs
                self._empty += sum(1 for a, b in pairwise(data) if a == b == _NEWLINE)
        self._last = data[-1:]

    def lines(self) -> int:
        return self._newlines - self._empty + (0 if self._last == b"\n" else 1)


def _describe(head: bytes) -> str:
    """What a body that is not a ZIP looks like, without echoing it (it may echo the keys)."""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "it is an HTML page, likely an error page served with status 200"
    if text.startswith((b"{", b"[")):
        return "it is JSON, likely an error message served with status 200"
    if text.startswith(b"\x1f\x8b"):
        return "it is gzip data, not a ZIP"
    if head and all(32 <= b < 127 or b in b"\r\n\t" for b in head):
        return "it is plain text, likely an error message served with status 200"
    return f"it starts with bytes {head[:4].hex(' ')}"


class GzipDecoder:
    """Incremental gunzip of one member, strict about corruption and truncation.

    ``decode()`` as bytes arrive, ``flush()`` at the end; concatenated gzip members (which
    ``gzip`` itself accepts) are decoded one after the other, and NUL padding after the last
    is skipped, as gzip tools do. CRC32 and length trailers are
    checked by the decompressor; a stream that stops before a trailer raises ``ArchiveError``.
    """

    __slots__ = ("_d", "_padded", "_started")

    def __init__(self) -> None:
        self._d = isal_zlib.decompressobj(wbits=31)
        self._started = False
        self._padded = False  # NUL bytes followed the last member (as gzip tools accept)

    def decode(self, data: bytes) -> bytes:
        """Everything ``data`` inflates to (see ``pieces`` to handle it in bounded pieces)."""
        out = list(self.pieces(data))
        return b"".join(out) if len(out) != 1 else out[0]

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """Inflate ``data`` in pieces of at most ``GZIP_INPUT_CHUNK`` input each.

        Handing each piece on before inflating the next keeps the working set to a few
        hundred KB whatever the chunk size, so freed buffers are reused instead of growing
        the heap.
        """
        view = memoryview(data)
        for start in range(0, len(view), GZIP_INPUT_CHUNK):
            piece: bytes | memoryview = view[start : start + GZIP_INPUT_CHUNK]
            while piece:
                if self._d.eof and (self._padded or not bytes(piece[:1]).strip(b"\x00")):
                    piece = self._padding(piece)
                    break
                if self._d.eof:  # a further gzip member follows the previous one
                    self._d = isal_zlib.decompressobj(wbits=31)
                self._started = True
                try:
                    text = self._d.decompress(piece)
                except _GZIP_ERRORS as exc:
                    msg = f"gzip data is corrupt ({exc})"
                    raise ArchiveError(msg) from exc
                if text:
                    yield text
                piece = self._d.unused_data if self._d.eof else b""

    def _padding(self, piece: bytes | memoryview) -> bytes:
        """NUL bytes after the last member (tape-block padding, which gzip tools skip);
        anything else after them is corrupt."""
        if bytes(piece).strip(b"\x00"):
            msg = "gzip data is corrupt (data after the NUL padding that ends it)"
            raise ArchiveError(msg)
        self._padded = True
        return b""

    def flush(self) -> bytes:
        if not self._started:
            msg = "gzip member is empty"
            raise ArchiveError(msg)
        if not self._d.eof:
            msg = "gzip member is cut short (no CRC/length trailer)"
            raise ArchiveError(msg)
        return b""


class _Watch:
    """Watches the raw stream: its first bytes (for a clear message when it is not a ZIP) and
    its last bytes (to check the end-of-central-directory record once the members are read)."""

    __slots__ = ("head", "tail", "total")

    def __init__(self) -> None:
        self.head = b""
        self.tail = bytearray()
        self.total = 0

    def watch(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            if len(self.head) < _PREVIEW:
                self.head += chunk[: _PREVIEW - len(self.head)]
            self.total += len(chunk)
            self.tail += chunk[-_TAIL:]
            if len(self.tail) > 2 * _TAIL:
                del self.tail[:-_TAIL]
            yield chunk

    def check_end(self, members: int) -> None:
        """The archive ends with a whole central directory that lists exactly ``members``.

        stream-unzip stops reading once the central directory starts, so a body cut inside the
        directory, or an archive whose directory lists members that never came, is caught here.
        """
        tail = bytes(self.tail[-_TAIL:])
        start = self.total - len(tail)
        pos = tail.rfind(_EOCD)
        while pos >= 0 and (
            pos + 22 > len(tail) or pos + 22 + _U16.unpack_from(tail, pos + 20)[0] != len(tail)
        ):
            pos = tail.rfind(_EOCD, 0, pos)
        if pos < 0:
            msg = f"ZIP archive is truncated: no end-of-central-directory after {self.total} bytes"
            raise ArchiveError(msg)
        entries, cd_size, cd_offset = _EOCD_FIELDS.unpack_from(tail, pos + 10)
        record_at = start + pos
        if 0xFFFF in (entries,) or 0xFFFFFFFF in (cd_size, cd_offset):
            loc = pos - 20
            if loc < 0 or tail[loc : loc + 4] != _ZIP64_LOCATOR:
                msg = "ZIP64 archive is truncated: its end-of-central-directory locator is missing"
                raise ArchiveError(msg)
            (record_at,) = _U64.unpack_from(tail, loc + 8)
            rec = record_at - start
            if rec < 0 or tail[rec : rec + 4] != _ZIP64_EOCD:
                msg = "ZIP64 archive is corrupt: bad end-of-central-directory record"
                raise ArchiveError(msg)
            entries, cd_size, cd_offset = _ZIP64_FIELDS.unpack_from(tail, rec + 32)
        if cd_offset + cd_size != record_at:
            msg = "ZIP archive is corrupt: its central directory does not end where it should"
            raise ArchiveError(msg)
        if entries != members:
            msg = f"ZIP archive lists {entries} members but {members} arrived"
            raise ArchiveError(msg)


def iter_members(
    chunks: Iterable[bytes], watch: _Watch | None = None
) -> Iterator[tuple[str, Iterator[bytes]]]:
    """Stream a ZIP: yield ``(member name, its bytes as chunks)`` as the archive arrives.

    Every member must be consumed before the next is produced. Truncation, bad CRCs, sizes
    that do not match and non-ZIP bodies raise ``ArchiveError``.
    """
    preview = watch or _Watch()
    count = 0
    try:
        for raw_name, _size, member_chunks in stream_unzip.stream_unzip(preview.watch(chunks)):
            try:
                name = raw_name.decode("utf-8")
            except UnicodeDecodeError:
                name = raw_name.decode("cp437")
            count += 1
            if name.endswith("/"):  # a folder entry ("187520/"): no data of its own
                if any(member_chunks):
                    msg = f"ZIP folder entry {name!r} holds data"
                    raise ArchiveError(msg)
                continue
            yield name, _translate(member_chunks, name)
    except stream_unzip.UnexpectedSignatureError as exc:
        if not preview.head.startswith(b"PK"):
            msg = f"the response is not a ZIP archive ({_describe(preview.head)})"
            raise ArchiveError(msg) from exc
        msg = f"ZIP archive is corrupt: unexpected bytes after {preview.total} bytes"
        raise ArchiveError(msg) from exc
    except stream_unzip.TruncatedDataError as exc:
        if preview.total == 0:
            msg = "the response body is empty, not a ZIP archive"
            raise ArchiveError(msg) from exc
        msg = f"ZIP archive is truncated after {preview.total} bytes"
        raise ArchiveError(msg) from exc
    except stream_unzip.UnzipError as exc:
        msg = f"ZIP archive is corrupt ({type(exc).__name__})"
        raise ArchiveError(msg) from exc
    preview.check_end(count)


def _translate(member_chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
    try:
        yield from member_chunks
    except stream_unzip.TruncatedDataError as exc:
        msg = f"ZIP archive is truncated inside member {name!r}"
        raise ArchiveError(msg) from exc
    except stream_unzip.UnzipError as exc:
        msg = f"ZIP member {name!r} is corrupt ({type(exc).__name__})"
        raise ArchiveError(msg) from exc


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Refuse decompression bombs: a member's size cap, and its largest expansion ratio."""

    max_member_bytes: int = 8 * 1024**3
    max_expansion_ratio: int = 200
    ratio_grace_bytes: int = 16 * 1024**2


@dataclass(frozen=True, slots=True)
class ProcessedMember:
    member: MemberName
    entry: FileEntry
    received: int = 0  # the member's bytes as Amplitude sent them (its .json.gz)
    ndjson_bytes: int = 0  # decompressed


def output_name(member: MemberName, *, keep_gzip: bool) -> str:
    """The output file name: the member's base name, without ``.gz`` unless keeping gzip."""
    return member.base_name if keep_gzip else member.base_name.removesuffix(".gz")


def process_archive(
    chunks: Iterable[bytes],
    open_member: Callable[[MemberName, str], MemberSink],
    *,
    first_hour: datetime,
    last_hour: datetime,
    keep_gzip: bool = False,
    limits: ArchiveLimits = ArchiveLimits(),
) -> list[ProcessedMember]:
    """Unzip, vet, gunzip and write every member of one export response (``process_members``
    over the archive's members)."""
    watch = _Watch()
    return process_members(
        iter_members(chunks, watch),
        open_member,
        first_hour=first_hour,
        last_hour=last_hour,
        keep_gzip=keep_gzip,
        limits=limits,
        watch=watch,
    )


def process_members(
    members: Iterable[tuple[str, Iterator[bytes]]],
    open_member: Callable[[MemberName, str], MemberSink],
    *,
    first_hour: datetime,
    last_hour: datetime,
    keep_gzip: bool = False,
    limits: ArchiveLimits = ArchiveLimits(),
    watch: _Watch | None = None,
) -> list[ProcessedMember]:
    """Vet, gunzip and write members (``(name, gzip chunks)``: an archive's, or the objects of
    a cloud export, named ``<project_id>/<file>``).

    Each member is checked (a safe name, an hour inside ``[first_hour, last_hour]``, not seen
    before), decoded strictly, counted (events: lines, empty ones left out) and hashed (sha256
    of the bytes written) as it streams. On any error every member opened so far is discarded
    and ``ArchiveError`` propagates; nothing is kept from a bad archive.
    """
    done: list[ProcessedMember] = []
    seen: set[tuple[datetime, int]] = set()
    project_id = ""
    current: MemberSink | None = None
    own_watch = watch is None  # members not read from a ZIP: their own bytes are the raw ones
    watch = watch or _Watch()
    try:
        for name, chunks in members:
            member_chunks = watch.watch(chunks) if own_watch else chunks
            try:
                member = parse_member_name(name)
            except ValueError as exc:
                msg = f"refusing archive member {name!r}: it {exc}"
                raise ArchiveError(msg) from None
            if not first_hour <= member.hour <= last_hour:
                window = iso_hour(first_hour)
                if last_hour != first_hour:
                    window += f"..{iso_hour(last_hour)}"
                msg = f"archive member {name!r} is for hour {iso_hour(member.hour)}, not {window}"
                raise ArchiveError(msg)
            project_id = project_id or member.project_id
            if member.project_id != project_id:
                msg = (
                    f"refusing archive member {name!r}: it belongs to project "
                    f"{member.project_id}, the archive to project {project_id}"
                )
                raise ArchiveError(msg)
            key = (member.hour, member.page)
            if key in seen:
                msg = f"archive holds member {name!r} twice"
                raise ArchiveError(msg)
            seen.add(key)
            file_name = output_name(member, keep_gzip=keep_gzip)
            current = open_member(member, file_name)
            entry, received, decoded = _copy_member(
                member_chunks, current, file_name, name, keep_gzip, limits, watch
            )
            current.finish(entry)
            done.append(ProcessedMember(member, entry, received, decoded))
            current = None
    except BaseException:
        if current is not None:
            current.discard()
        raise
    return done


def _copy_member(
    member_chunks: Iterable[bytes],
    sink: MemberSink,
    file_name: str,
    source: str,
    keep_gzip: bool,
    limits: ArchiveLimits,
    watch: _Watch,
) -> tuple[FileEntry, int, int]:
    """The member copied: its entry, its bytes as received and decompressed."""
    decoder = GzipDecoder()
    raw_start = watch.total  # network bytes before this member (read-ahead makes it generous)
    digest = hashlib.sha256()
    compressed = decoded = 0
    lines = LineCounter()
    for chunk in member_chunks:
        compressed += len(chunk)
        if keep_gzip:
            digest.update(chunk)
            sink.write(chunk)
        for text in decoder.pieces(chunk):
            decoded += len(text)
            lines.add(text)
            if decoded > limits.max_member_bytes:
                msg = (
                    f"member {source!r} expands beyond max_member_bytes "
                    f"({limits.max_member_bytes} bytes): refusing a possible decompression bomb"
                )
                raise ArchiveError(msg)
            # against the bytes that came over the wire, so that a bomb at the ZIP layer (a
            # deflated member holding an uncompressed gzip) is caught as well as one in gzip
            raw = max(1, min(compressed, watch.total - raw_start))
            if decoded > limits.ratio_grace_bytes and decoded > raw * limits.max_expansion_ratio:
                msg = (
                    f"member {source!r} expands more than {limits.max_expansion_ratio}x "
                    "(max_expansion_ratio): refusing a possible decompression bomb"
                )
                raise ArchiveError(msg)
            if not keep_gzip:
                digest.update(text)
                sink.write(text)
    decoder.flush()
    written = compressed if keep_gzip else decoded
    entry = FileEntry(
        name=file_name,
        bytes=written,
        events=lines.lines(),
        sha256=digest.hexdigest(),
        source=source,
    )
    return entry, compressed, decoded
