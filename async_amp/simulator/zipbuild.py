"""A small streaming ZIP writer, enough to imitate the archives the Export API returns.

It writes the variants a client must cope with: stored or deflated members, with or without
data descriptors (sizes after the data, signature included), and ZIP64 extra fields plus the
ZIP64 end records. Output is readable by :mod:`zipfile` and by ``stream_unzip``.

Stored members need their bytes up front: the sizes go in the local header even when a data
descriptor follows, as some archivers do, since stream-unzip cannot find the end of a stored
member otherwise (for the same reason an empty stored member never gets a descriptor).
Deflated members with a data descriptor are compressed incrementally from any iterable of
chunks; without one, the member is compressed first to learn its sizes.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from isal import isal_zlib

__all__ = ["Method", "ZipMember", "build_zip", "empty_zip", "iter_zip"]

Method = Literal["stored", "deflated"]

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_DD32 = struct.Struct("<4sIII")
_DD64 = struct.Struct("<4sIQQ")
_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_LOCATOR64 = struct.Struct("<4sIQI")
_EXTRA_HEAD = struct.Struct("<HH")

_SIG_LOCAL: Final = b"PK\x03\x04"
_SIG_CENTRAL: Final = b"PK\x01\x02"
_SIG_DD: Final = b"PK\x07\x08"
_SIG_EOCD: Final = b"PK\x05\x06"
_SIG_EOCD64: Final = b"PK\x06\x06"
_SIG_LOCATOR64: Final = b"PK\x06\x07"

_U32: Final = 0xFFFFFFFF
_U16: Final = 0xFFFF
_FLAG_DD: Final = 0x0008
_FLAG_UTF8: Final = 0x0800
_VERSION_MADE_BY: Final = (3 << 8) | 45  # unix, spec 4.5
_EXTERNAL_ATTR: Final = 0o100644 << 16  # regular file, rw-r--r--
_METHOD_CODE: Final[dict[str, int]] = {"stored": 0, "deflated": 8}


@dataclass(frozen=True, slots=True, eq=False)
class ZipMember:
    """One archive member; ``None`` options fall back to the ``iter_zip`` defaults."""

    name: str
    data: bytes | Iterable[bytes]
    method: Method | None = None
    data_descriptor: bool | None = None


@dataclass(slots=True)
class _Entry:
    """What the central directory needs to know about a written member."""

    name: bytes
    flags: int
    method: int
    crc: int
    compressed: int
    uncompressed: int
    offset: int
    zip64: bool


def _dos_time(date_time: tuple[int, int, int, int, int, int]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return (hour << 11) | (minute << 5) | (second // 2), ((year - 1980) << 9) | (month << 5) | day


def _raw_deflater(level: int) -> Any:
    """Raw deflate (no zlib/gzip wrapper): ISA-L for levels 0-3, zlib above."""
    if level <= 3:
        return isal_zlib.compressobj(level, isal_zlib.DEFLATED, -15)
    return zlib.compressobj(level, zlib.DEFLATED, -15)


def _chunks(data: bytes | Iterable[bytes]) -> Iterator[bytes]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield bytes(data)
    else:
        yield from data


class _Deflate:
    """Raw-deflate a member incrementally, keeping its CRC and sizes."""

    __slots__ = ("_data", "_level", "compressed", "crc", "size")

    def __init__(self, data: bytes | Iterable[bytes], level: int) -> None:
        self._data = data
        self._level = level
        self.crc = 0
        self.size = 0
        self.compressed = 0

    def __iter__(self) -> Iterator[bytes]:
        deflater = _raw_deflater(self._level)
        for chunk in _chunks(self._data):
            self.crc = zlib.crc32(chunk, self.crc)
            self.size += len(chunk)
            out = deflater.compress(chunk)
            if out:
                self.compressed += len(out)
                yield out
        out = deflater.flush()
        self.compressed += len(out)
        yield out


def iter_zip(
    members: Iterable[ZipMember | tuple[str, bytes | Iterable[bytes]]],
    *,
    method: Method = "stored",
    data_descriptor: bool = False,
    zip64: bool = False,
    compresslevel: int = 1,
    date_time: tuple[int, int, int, int, int, int] = (2026, 1, 1, 0, 0, 0),
) -> Iterator[bytes]:
    """Yield a complete ZIP archive as chunks (headers, member data, central directory).

    ``method`` and ``data_descriptor`` apply to members that do not set their own.
    ``zip64=True`` writes ZIP64 extra fields for every member and the ZIP64 end records even
    when nothing needs them; without it they are used only where a size or offset needs them.
    """
    dos_time, dos_date = _dos_time(date_time)
    entries: list[_Entry] = []
    offset = 0
    for item in members:
        member = item if isinstance(item, ZipMember) else ZipMember(item[0], item[1])
        kind = member.method or method
        if kind not in _METHOD_CODE:
            msg = f"unknown ZIP method {kind!r}"
            raise ValueError(msg)
        with_dd = data_descriptor if member.data_descriptor is None else member.data_descriptor
        name = member.name.encode()
        flags = (_FLAG_DD if with_dd else 0) | (0 if member.name.isascii() else _FLAG_UTF8)
        code = _METHOD_CODE[kind]
        header_offset = offset

        if kind == "stored" or not with_dd:
            # Sizes and CRC are known before the local header is written.
            if kind == "stored":
                body = [b"".join(_chunks(member.data))]
                crc = zlib.crc32(body[0])
                usize = csize = len(body[0])
                if not body[0]:
                    # A zero size in the local header plus a data descriptor is unreadable
                    # by streaming unzippers, so empty stored members never get one.
                    with_dd = False
                    flags &= ~_FLAG_DD
            else:
                deflate = _Deflate(member.data, compresslevel)
                body = list(deflate)
                crc, usize, csize = deflate.crc, deflate.size, deflate.compressed
            big = zip64 or usize >= _U32 or csize >= _U32
            extra = _EXTRA_HEAD.pack(1, 16) + struct.pack("<QQ", usize, csize) if big else b""
            header = _LOCAL.pack(
                _SIG_LOCAL,
                45 if big else 20,
                flags,
                code,
                dos_time,
                dos_date,
                crc,
                _U32 if big else csize,
                _U32 if big else usize,
                len(name),
                len(extra),
            )
            yield header + name + extra
            offset += len(header) + len(name) + len(extra)
            for part in body:
                if part:
                    yield part
                    offset += len(part)
        else:
            # Deflated with a data descriptor: stream, sizes come after the data.
            big = zip64
            extra = _EXTRA_HEAD.pack(1, 16) + struct.pack("<QQ", 0, 0) if big else b""
            header = _LOCAL.pack(
                _SIG_LOCAL,
                45 if big else 20,
                flags,
                code,
                dos_time,
                dos_date,
                0,
                _U32 if big else 0,
                _U32 if big else 0,
                len(name),
                len(extra),
            )
            yield header + name + extra
            offset += len(header) + len(name) + len(extra)
            deflate = _Deflate(member.data, compresslevel)
            for out in deflate:
                if out:
                    yield out
                    offset += len(out)
            crc, usize, csize = deflate.crc, deflate.size, deflate.compressed
            big = big or usize >= _U32 or csize >= _U32
        if with_dd:
            dd = (
                _DD64.pack(_SIG_DD, crc, csize, usize)
                if big
                else _DD32.pack(_SIG_DD, crc, csize, usize)
            )
            yield dd
            offset += len(dd)
        entries.append(
            _Entry(
                name, flags, code, crc, csize, usize, header_offset, big or header_offset >= _U32
            )
        )

    cd_offset = offset
    cd_size = 0
    for entry in entries:
        record = _central_record(entry, dos_time, dos_date, force_zip64=zip64)
        yield record
        cd_size += len(record)
    offset += cd_size
    yield _end_records(len(entries), cd_size, cd_offset, offset, force_zip64=zip64)


def _central_record(entry: _Entry, dos_time: int, dos_date: int, *, force_zip64: bool) -> bytes:
    fields: list[int] = []
    usize, csize, offset = entry.uncompressed, entry.compressed, entry.offset
    if force_zip64 or entry.zip64 or usize >= _U32:
        fields.append(usize)
        usize = _U32
    if force_zip64 or entry.zip64 or csize >= _U32:
        fields.append(csize)
        csize = _U32
    if force_zip64 or offset >= _U32:
        fields.append(offset)
        offset = _U32
    extra = b""
    if fields:
        extra = _EXTRA_HEAD.pack(1, 8 * len(fields)) + struct.pack(f"<{len(fields)}Q", *fields)
    header = _CENTRAL.pack(
        _SIG_CENTRAL,
        _VERSION_MADE_BY,
        45 if fields else 20,
        entry.flags,
        entry.method,
        dos_time,
        dos_date,
        entry.crc,
        csize,
        usize,
        len(entry.name),
        len(extra),
        0,
        0,
        0,
        _EXTERNAL_ATTR,
        offset,
    )
    return header + entry.name + extra


def _end_records(count: int, cd_size: int, cd_offset: int, end: int, *, force_zip64: bool) -> bytes:
    need64 = force_zip64 or count >= _U16 or cd_size >= _U32 or cd_offset >= _U32
    out = b""
    if need64:
        out += _EOCD64.pack(
            _SIG_EOCD64, 44, _VERSION_MADE_BY, 45, 0, 0, count, count, cd_size, cd_offset
        )
        out += _LOCATOR64.pack(_SIG_LOCATOR64, 0, end, 1)
    out += _EOCD.pack(
        _SIG_EOCD,
        0,
        0,
        _U16 if need64 else count,
        _U16 if need64 else count,
        _U32 if need64 else cd_size,
        _U32 if need64 else cd_offset,
        0,
    )
    return out


def build_zip(
    members: Iterable[ZipMember | tuple[str, bytes | Iterable[bytes]]],
    *,
    method: Method = "stored",
    data_descriptor: bool = False,
    zip64: bool = False,
    compresslevel: int = 1,
) -> bytes:
    """The whole archive as one ``bytes`` (see :func:`iter_zip`)."""
    return b"".join(
        iter_zip(
            members,
            method=method,
            data_descriptor=data_descriptor,
            zip64=zip64,
            compresslevel=compresslevel,
        )
    )


def empty_zip() -> bytes:
    """A valid archive with no members (just the end of central directory record)."""
    return build_zip([])
