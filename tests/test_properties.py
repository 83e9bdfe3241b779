"""Property tests of the streaming archive reader (``iter_members`` / ``process_archive``).

Any member set, stored or deflated, with or without data descriptors, ZIP64 or not, fed in any
chunking, comes out byte-identical; any truncation of the stream raises ``ArchiveError``.
Archives are written by ``async_amp.simulator.zipbuild`` (the simulator's own writer), so every
variant the simulated Export API can send is covered. Runs are derandomized: the examples are
the same on every run (no flaky failures), and the counts stay small enough for 2 cores.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from async_amp.errors import ArchiveError
from async_amp.hours import MemberName, parse_member_name
from async_amp.output.manifest import FileEntry
from async_amp.simulator.zipbuild import Method, ZipMember, build_zip
from async_amp.source.archive import iter_members, process_archive

FIRST = datetime(2026, 11, 1, 22, tzinfo=UTC)  # a window that crosses midnight
LAST = FIRST + timedelta(hours=2)
PROJECT = "187520"

PROPERTY = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --------------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class Page:
    """One Amplitude partition: its hour, page number, NDJSON payload and how it is zipped."""

    hour: datetime
    page: int
    payload: bytes
    method: Method
    data_descriptor: bool
    gzip_parts: int  # the payload gzipped as 1 member or as several concatenated members

    @property
    def name(self) -> str:
        return f"{PROJECT}/{PROJECT}_{self.hour:%Y-%m-%d}_{self.hour.hour}#{self.page}.json.gz"

    @property
    def out_name(self) -> str:
        return self.name.split("/", 1)[1].removesuffix(".gz")

    @property
    def gz(self) -> bytes:
        if self.gzip_parts <= 1 or len(self.payload) < 2:
            return gzip.compress(self.payload, compresslevel=1, mtime=0)
        step = -(-len(self.payload) // self.gzip_parts)
        return b"".join(
            gzip.compress(self.payload[i : i + step], mtime=0)
            for i in range(0, len(self.payload), step)
        )


ndjson_line = st.builds(
    lambda n, text: b'{"uuid":"%d","event_type":%s}' % (n, text.encode()),
    st.integers(0, 10**12),
    st.text(max_size=30).map(lambda t: '"' + t.replace("\\", "/").replace('"', "'") + '"'),
)
# Mostly NDJSON (what Amplitude sends), sometimes any bytes: the reader must not care.
payloads = st.one_of(
    st.lists(ndjson_line, max_size=40).map(lambda lines: b"".join(x + b"\n" for x in lines)),
    st.lists(ndjson_line, min_size=1, max_size=5).map(b"\n".join),  # no trailing newline
    st.binary(max_size=3000),
)
methods: st.SearchStrategy[Method] = st.sampled_from(["stored", "deflated"])


@st.composite
def page_sets(draw: st.DrawFn, *, min_size: int = 0) -> list[Page]:
    keys = draw(
        st.lists(
            st.tuples(st.integers(0, 2), st.integers(0, 40)),
            min_size=min_size,
            max_size=6,
            unique=True,
        )
    )
    return [
        Page(
            hour=FIRST + timedelta(hours=h),
            page=p,
            payload=draw(payloads),
            method=draw(methods),
            data_descriptor=draw(st.booleans()),
            gzip_parts=draw(st.integers(1, 3)),
        )
        for h, p in keys
    ]


def archive_of(pages: list[Page], *, zip64: bool) -> bytes:
    return build_zip(
        [ZipMember(p.name, p.gz, p.method, p.data_descriptor) for p in pages], zip64=zip64
    )


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at arbitrary points (1-byte pieces, empty pieces and big ones included)."""
    if not data:
        return draw(st.sampled_from([[], [b""]]))
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=40))
    if draw(st.booleans()):
        cuts += list(range(0, min(len(data), 64)))  # a run of 1-byte chunks at the start
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(points)]


# --------------------------------------------------------------------------- collecting sink


class Collect:
    def __init__(self) -> None:
        self.files: dict[str, bytearray] = {}
        self.finished: dict[str, FileEntry] = {}
        self.discarded: list[str] = []

    def open(self, member: MemberName, file_name: str) -> _One:
        del member
        assert file_name not in self.files, f"{file_name} opened twice"
        self.files[file_name] = bytearray()
        return _One(self, file_name)


class _One:
    def __init__(self, owner: Collect, name: str) -> None:
        self.owner, self.name = owner, name

    def write(self, data: bytes) -> None:
        assert self.name not in self.owner.finished
        self.owner.files[self.name] += data

    def finish(self, entry: FileEntry) -> None:
        self.owner.finished[self.name] = entry

    def discard(self) -> None:
        self.owner.discarded.append(self.name)


def feed(chunks: list[bytes]) -> Iterator[bytes]:
    yield from chunks


def events_in(payload: bytes) -> int:
    return payload.count(b"\n") + (1 if payload and not payload.endswith(b"\n") else 0)


# --------------------------------------------------------------------------- properties


@PROPERTY
@given(pages=page_sets(), zip64=st.booleans(), keep_gzip=st.booleans(), data=st.data())
def test_any_member_set_in_any_chunking_comes_out_byte_identical(
    pages: list[Page], zip64: bool, keep_gzip: bool, data: st.DataObject
) -> None:
    assume(pages or not zip64)  # an empty ZIP64 archive is not something any server sends
    archive = archive_of(pages, zip64=zip64)
    chunks = data.draw(chunkings(archive), label="chunks")
    sink = Collect()
    done = process_archive(
        feed(chunks), sink.open, first_hour=FIRST, last_hour=LAST, keep_gzip=keep_gzip
    )
    assert [d.entry.source for d in done] == [p.name for p in pages]  # archive order kept
    assert sink.discarded == []
    assert set(sink.finished) == set(sink.files)
    assert len(sink.files) == len(pages)
    for page in pages:
        name = page.out_name + (".gz" if keep_gzip else "")
        want = page.gz if keep_gzip else page.payload
        got = bytes(sink.files[name])
        assert got == want, name
        entry = sink.finished[name]
        assert entry.bytes == len(want)
        assert entry.sha256 == hashlib.sha256(want).hexdigest()
        assert entry.events == events_in(page.payload)
        assert entry.source == page.name


@PROPERTY
@given(pages=page_sets(), zip64=st.booleans(), data=st.data())
def test_any_truncation_of_the_stream_raises_archive_error(
    pages: list[Page], zip64: bool, data: st.DataObject
) -> None:
    archive = archive_of(pages, zip64=zip64)
    cut = data.draw(st.integers(0, len(archive) - 1), label="cut")
    chunks = data.draw(chunkings(archive[:cut]), label="chunks")
    sink = Collect()
    try:
        process_archive(feed(chunks), sink.open, first_hour=FIRST, last_hour=LAST)
    except ArchiveError:
        pass
    else:
        raise AssertionError(f"a cut at {cut} of {len(archive)} bytes went unnoticed")
    # Whatever member was open when the cut was found was discarded, never finished.
    assert set(sink.files) - set(sink.finished) <= set(sink.discarded)


@PROPERTY
@given(pages=page_sets(min_size=1), zip64=st.booleans(), data=st.data())
def test_truncation_at_every_member_boundary_raises(
    pages: list[Page], zip64: bool, data: st.DataObject
) -> None:
    """The most tempting cuts: exactly after a member's data, and inside the directory."""
    archive = archive_of(pages, zip64=zip64)
    offsets = _member_ends(archive)
    directory = offsets[-1]
    cuts = {*offsets, directory + 1, len(archive) - 22, len(archive) - 1}
    if zip64:
        cuts |= {len(archive) - 22 - 20, len(archive) - 22 - 20 - 56}
    for cut in sorted(c for c in cuts if 0 <= c < len(archive)):
        chunks = data.draw(chunkings(archive[:cut]), label=f"chunks@{cut}")
        try:
            process_archive(feed(chunks), Collect().open, first_hour=FIRST, last_hour=LAST)
        except ArchiveError:
            continue
        raise AssertionError(f"a cut at {cut} of {len(archive)} bytes went unnoticed")


def _member_ends(archive: bytes) -> list[int]:
    """Offsets where each member ends (the last one is where the central directory starts)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        starts = [info.header_offset for info in zf.infolist()]
        return [*starts[1:], zf.start_dir]


raw_members = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=40),
        st.binary(max_size=2000),
        methods,
        st.booleans(),
    ),
    max_size=6,
)


@PROPERTY
@given(members=raw_members, zip64=st.booleans(), data=st.data())
def test_iter_members_round_trips_any_names_and_bytes(
    members: list[tuple[str, bytes, Method, bool]], zip64: bool, data: st.DataObject
) -> None:
    assume(members or not zip64)
    archive = build_zip([ZipMember(n, b, m, d) for n, b, m, d in members], zip64=zip64)
    chunks = data.draw(chunkings(archive), label="chunks")
    got = [(name, b"".join(body)) for name, body in iter_members(feed(chunks))]
    assert got == [(n, b) for n, b, _, _ in members]


@PROPERTY
@given(members=raw_members, zip64=st.booleans(), data=st.data())
def test_iter_members_detects_any_truncation(
    members: list[tuple[str, bytes, Method, bool]], zip64: bool, data: st.DataObject
) -> None:
    archive = build_zip([ZipMember(n, b, m, d) for n, b, m, d in members], zip64=zip64)
    cut = data.draw(st.integers(0, len(archive) - 1), label="cut")
    chunks = data.draw(chunkings(archive[:cut]), label="chunks")
    try:
        for _name, body in iter_members(feed(chunks)):
            for _ in body:
                pass
    except ArchiveError:
        return
    raise AssertionError(f"a cut at {cut} of {len(archive)} bytes went unnoticed")


@PROPERTY
@given(pages=page_sets(min_size=1), data=st.data())
def test_a_flipped_byte_is_caught_or_harmless(pages: list[Page], data: st.DataObject) -> None:
    """Corruption anywhere either raises ``ArchiveError`` or changes nothing that is written.

    (A flipped byte in, say, a timestamp field of a header is harmless; one in member data is
    caught by the ZIP CRC or the gzip CRC. What must never happen is silently different output.)
    """
    archive = bytearray(archive_of(pages, zip64=False))
    at = data.draw(st.integers(0, len(archive) - 1), label="at")
    archive[at] ^= data.draw(st.integers(1, 255), label="xor")
    sink = Collect()
    try:
        process_archive(feed([bytes(archive)]), sink.open, first_hour=FIRST, last_hour=LAST)
    except ArchiveError:
        return
    for page in pages:
        assert bytes(sink.files[page.out_name]) == page.payload


names = st.lists(
    st.sampled_from(
        [*"0123456789_-#./\\:\x00 abjsonz", "\u0661", "..", "187520", ".json.gz", "2026-11-01"]
    ),
    max_size=20,
).map("".join)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(name=st.one_of(names, st.text(max_size=60)))
def test_an_accepted_member_name_is_always_one_safe_file_name(name: str) -> None:
    try:
        member = parse_member_name(name)
    except ValueError:
        return
    base = member.base_name
    assert "/" not in base and "\\" not in base and "\x00" not in base
    assert base not in (".", "..") and not base.startswith(".")
    assert name == f"{member.project_id}/{base}"


def test_zlib_and_gzip_agree_on_what_the_strategies_build() -> None:
    """Guard for the strategies themselves: multi-part gzip decodes to the payload."""
    page = Page(FIRST, 0, b"a\nb\nc\n" * 50, "deflated", True, 3)
    d = zlib.decompressobj(wbits=31)
    out, rest = b"", page.gz
    while rest:
        out += d.decompress(rest)
        rest = d.unused_data
        d = zlib.decompressobj(wbits=31) if rest else d
    assert out == page.payload
