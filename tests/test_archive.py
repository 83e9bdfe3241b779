"""The pure streaming core, fed in chunks of 1, 7 and 65536 bytes: no network, no event loop."""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import warnings
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from async_amp.errors import ArchiveError
from async_amp.hours import MemberName
from async_amp.output.manifest import FileEntry
from async_amp.source.archive import (
    ArchiveLimits,
    GzipDecoder,
    LineCounter,
    count_lines,
    iter_members,
    output_name,
    process_archive,
)

HOUR = datetime(2026, 11, 1, 5, tzinfo=UTC)
CHUNK_SIZES = [1, 7, 65536]


def ndjson(n: int, seed: int = 0) -> bytes:
    return b"".join(
        b'{"uuid":"%d-%d","event_type":"Page Viewed","n":%d}\n' % (seed, i, i) for i in range(n)
    )


class _Unseekable(io.RawIOBase):
    """Makes zipfile write data descriptors, as streaming archivers do."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.buffer += data
        return len(data)


def make_zip(
    members: list[tuple[str, bytes]], *, method: int = zipfile.ZIP_STORED, stream: bool = False
) -> bytes:
    if stream:
        out = _Unseekable()
        with zipfile.ZipFile(out, "w", compression=method) as zf:
            for name, data in members:
                with zf.open(name, "w") as fh:
                    fh.write(data)
        return bytes(out.buffer)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names: we want them
        with zipfile.ZipFile(buf, "w", compression=method) as zf:
            for name, data in members:
                zf.writestr(name.replace("\x00", "#"), data)
    raw = buf.getvalue()
    for name, _ in members:  # zipfile cuts names at NUL; put the NUL back in the raw bytes
        if "\x00" in name:
            raw = raw.replace(name.replace("\x00", "#").encode(), name.encode())
    return raw


def member(hour: datetime, page: int, project: str = "187520") -> str:
    return f"{project}/{project}_{hour:%Y-%m-%d}_{hour.hour}#{page}.json.gz"


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


class Collect:
    """A MemberSink that keeps what it was given, and whether it finished or was discarded."""

    def __init__(self) -> None:
        self.files: dict[str, bytearray] = {}
        self.finished: dict[str, FileEntry] = {}
        self.discarded: list[str] = []

    def open(self, m: MemberName, file_name: str) -> Collect._One:
        del m
        self.files[file_name] = bytearray()
        return Collect._One(self, file_name)

    class _One:
        def __init__(self, owner: Collect, name: str) -> None:
            self.owner, self.name = owner, name

        def write(self, data: bytes) -> None:
            self.owner.files[self.name] += data

        def finish(self, entry: FileEntry) -> None:
            self.owner.finished[self.name] = entry

        def discard(self) -> None:
            self.owner.discarded.append(self.name)


def run(data: bytes, size: int, **kw: object) -> Collect:
    sink = Collect()
    process_archive(
        chunked(data, size),
        sink.open,
        first_hour=HOUR,
        last_hour=kw.pop("last", HOUR),
        **kw,  # type: ignore[arg-type]
    )
    return sink


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("method", "stream"),
    [(zipfile.ZIP_STORED, False), (zipfile.ZIP_DEFLATED, False), (zipfile.ZIP_DEFLATED, True)],
    ids=["stored", "deflated", "deflated+data-descriptor"],
)
def test_round_trip_is_byte_identical_whatever_the_chunking(
    size: int, method: int, stream: bool
) -> None:
    pages = {p: ndjson(300 + 50 * p, seed=p) for p in range(3)}
    archive = make_zip(
        [(member(HOUR, p), gzip.compress(body)) for p, body in pages.items()],
        method=method,
        stream=stream,
    )
    sink = run(archive, size)
    for page, body in pages.items():
        name = f"187520_2026-11-01_5#{page}.json"
        assert bytes(sink.files[name]) == body
        entry = sink.finished[name]
        assert entry.events == body.count(b"\n")
        assert entry.bytes == len(body)
        assert entry.sha256 == hashlib.sha256(body).hexdigest()
        assert entry.source == member(HOUR, page)


def test_keep_gzip_writes_the_original_member_bytes() -> None:
    body = ndjson(100)
    gz = gzip.compress(body, mtime=0)
    sink = run(make_zip([(member(HOUR, 0), gz)]), 7, keep_gzip=True)
    assert bytes(sink.files["187520_2026-11-01_5#0.json.gz"]) == gz
    entry = sink.finished["187520_2026-11-01_5#0.json.gz"]
    assert entry.events == 100
    assert entry.bytes == len(gz)
    assert entry.sha256 == hashlib.sha256(gz).hexdigest()


def test_last_line_without_newline_still_counts() -> None:
    sink = run(make_zip([(member(HOUR, 0), gzip.compress(b'{"a":1}\n{"a":2}'))]), 65536)
    assert sink.finished["187520_2026-11-01_5#0.json"].events == 2


def test_output_streams_while_input_arrives() -> None:
    """Output is produced before the whole archive has been read: it really streams."""
    body = ndjson(20000)
    archive = make_zip([(member(HOUR, 0), gzip.compress(body))])
    fed = 0
    seen_at: list[int] = []

    def feed() -> Iterator[bytes]:
        nonlocal fed
        for chunk in chunked(archive, 4096):
            fed += len(chunk)
            yield chunk

    class Probe(Collect._One):
        def write(self, data: bytes) -> None:
            seen_at.append(fed)
            super().write(data)

    owner = Collect()

    def open_member(m: MemberName, name: str) -> Probe:
        owner.files[name] = bytearray()
        return Probe(owner, name)

    process_archive(feed(), open_member, first_hour=HOUR, last_hour=HOUR)
    assert seen_at and seen_at[0] < len(archive) // 4
    assert bytes(owner.files["187520_2026-11-01_5#0.json"]) == body


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_every_truncation_is_detected(size: int) -> None:
    archive = make_zip([(member(HOUR, p), gzip.compress(ndjson(200, p))) for p in range(2)])
    cuts = [*range(0, len(archive), max(1, len(archive) // 97)), len(archive) - 1]
    for cut in cuts:
        with pytest.raises(ArchiveError):
            run(archive[:cut], size)


def test_corrupt_gzip_inside_a_valid_zip_is_detected_and_discarded() -> None:
    gz = bytearray(gzip.compress(ndjson(500)))
    gz[len(gz) // 2] ^= 0xFF
    archive = make_zip([(member(HOUR, 0), gzip.compress(ndjson(10))), (member(HOUR, 1), bytes(gz))])
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:  # the ZIP layer itself is fine
        assert zf.testzip() is None
    sink = Collect()
    with pytest.raises(ArchiveError, match="gzip"):
        process_archive(chunked(archive, 999), sink.open, first_hour=HOUR, last_hour=HOUR)
    assert sink.discarded == ["187520_2026-11-01_5#1.json"]


def test_gzip_cut_short_is_detected() -> None:
    gz = gzip.compress(ndjson(500))
    archive = make_zip([(member(HOUR, 0), gz[:-8])])  # trailer missing, zip CRC still right
    with pytest.raises(ArchiveError, match="cut short"):
        run(archive, 65536)


@pytest.mark.parametrize(
    "name",
    [
        "../../evil.json.gz",
        "/etc/187520_2026-11-01_5#0.json.gz",
        "187520\\187520_2026-11-01_5#0.json.gz",
        "187520/187520_2026-11-01_5#0.json.gz\x00.txt",
        "999/187520_2026-11-01_5#0.json.gz",
        "187520/../187520_2026-11-01_5#0.json.gz",
        "187520/readme.txt",
    ],
)
def test_unsafe_or_unknown_member_names_are_refused(name: str) -> None:
    archive = make_zip([(name, gzip.compress(ndjson(3)))])
    sink = Collect()
    with pytest.raises(ArchiveError, match="refusing"):
        process_archive(chunked(archive, 7), sink.open, first_hour=HOUR, last_hour=HOUR)
    assert sink.files == {}


def test_member_for_another_hour_is_refused() -> None:
    other = HOUR.replace(hour=6)
    archive = make_zip([(member(HOUR, 0), gzip.compress(b"{}\n")), (member(other, 0), b"x")])
    with pytest.raises(ArchiveError, match="not 2026-11-01T05"):
        run(archive, 65536)


def test_window_accepts_every_hour_inside_it() -> None:
    later = HOUR.replace(hour=7)
    archive = make_zip([(member(h, 0), gzip.compress(ndjson(5))) for h in (HOUR, later)])
    sink = run(archive, 7, last=later)
    assert set(sink.finished) == {"187520_2026-11-01_5#0.json", "187520_2026-11-01_7#0.json"}


def test_duplicate_member_is_refused() -> None:
    data = gzip.compress(ndjson(5))
    with pytest.raises(ArchiveError, match="twice"):
        run(make_zip([(member(HOUR, 0), data), (member(HOUR, 0), data)]), 65536)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"<!DOCTYPE html><html><body>Service error</body></html>", "not a ZIP"),
        (b"", "empty"),
        (b'{"error": "internal"}', "not a ZIP"),
    ],
)
def test_non_zip_bodies_are_bad_archives_not_no_data(body: bytes, match: str) -> None:
    with pytest.raises(ArchiveError, match=match):
        run(body, 7)


def test_empty_zip_yields_no_members() -> None:
    assert run(make_zip([]), 7).files == {}


def test_decompression_bomb_is_stopped_by_the_size_cap() -> None:
    bomb = gzip.compress(b"\n" * (4 * 1024 * 1024), compresslevel=9)
    archive = make_zip([(member(HOUR, 0), bomb)])
    sink = Collect()
    limits = ArchiveLimits(max_member_bytes=1024 * 1024)
    with pytest.raises(ArchiveError, match="max_member_bytes"):
        process_archive(
            chunked(archive, 65536), sink.open, first_hour=HOUR, last_hour=HOUR, limits=limits
        )
    assert sink.discarded == ["187520_2026-11-01_5#0.json"]


def test_decompression_bomb_is_stopped_by_the_ratio() -> None:
    bomb = gzip.compress(b"\n" * (8 * 1024 * 1024), compresslevel=9)
    limits = ArchiveLimits(max_expansion_ratio=50, ratio_grace_bytes=1024 * 1024)
    with pytest.raises(ArchiveError, match="max_expansion_ratio"):
        run(make_zip([(member(HOUR, 0), bomb)]), 65536, limits=limits)


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_gzip_decoder_handles_concatenated_members(size: int) -> None:
    data = gzip.compress(b"a\n" * 1000) + gzip.compress(b"b\n" * 1000)
    decoder = GzipDecoder()
    out = b"".join(decoder.decode(c) for c in chunked(data, size)) + decoder.flush()
    assert out == b"a\n" * 1000 + b"b\n" * 1000


def test_iter_members_yields_names_in_archive_order() -> None:
    archive = make_zip([(member(HOUR, p), gzip.compress(b"{}\n")) for p in (2, 0, 1)])
    names = []
    for name, chunks in iter_members(chunked(archive, 7)):
        names.append(name)
        for _ in chunks:
            pass
    assert names == [member(HOUR, p) for p in (2, 0, 1)]


def test_output_name_drops_gz_unless_kept() -> None:
    m = MemberName("1", HOUR, 0, "1_2026-11-01_5#0.json.gz")
    assert output_name(m, keep_gzip=False) == "1_2026-11-01_5#0.json"
    assert output_name(m, keep_gzip=True) == "1_2026-11-01_5#0.json.gz"


@pytest.mark.parametrize("seed", range(4))
def test_line_counter_counts_non_empty_lines_however_the_text_is_cut(seed: int) -> None:
    """Events are the non-empty lines, whatever pieces (small ones by bytes, large ones by
    numpy) the text arrives in, runs of empty lines across a cut included."""
    rng = random.Random(seed)
    for size in (0, 1, 7, 300, 20_000, 90_000):
        data = bytes(rng.choice(b"ab{}\n\n\n") for _ in range(size))
        counter, at = LineCounter(), 0
        while at < len(data):
            step = rng.choice((1, 2, 5, 100, 17_000, 40_000))
            counter.add(data[at : at + step])
            at += step
        *whole, tail = data.split(b"\n")
        assert counter.lines() == sum(1 for line in whole if line) + (1 if tail else 0)


@pytest.mark.parametrize("size", [0, 1, 100, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 1 << 20])
def test_count_lines_agrees_with_bytes_count(size: int) -> None:
    data = (b'{"e":1}\n' * (size // 8 + 1))[:size]
    data = data[:-1] + b"x" if data.endswith(b"\n") and size % 3 == 0 else data
    assert count_lines(data) == data.count(b"\n")
