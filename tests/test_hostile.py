"""Hostile archives, end to end over real sockets: unsafe member names are refused and nothing
is written outside the hour's folder; decompression bombs stop with a clear error before they
fill the disk; ZIP64 archives work.

(The archive reader's own refusals are unit-tested in test_archive.py; here the whole run is
watched: what reaches storage, what the run reports, and how much was ever written.)
"""

from __future__ import annotations

import gzip
import json
import os
import uuid
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from async_amp.errors import ArchiveError
from async_amp.hours import MemberName
from async_amp.output.manifest import FileEntry, hour_folder
from async_amp.output.stores import make_sink
from async_amp.output.stores.base import HourStaging, MemberSink, Sink
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import Fault, FaultPlan, run_simulator
from async_amp.simulator.zipbuild import ZipMember, build_zip, iter_zip
from async_amp.source.archive import process_archive

from .helpers import DAY1, KEY, SECRET, assert_output_matches, make_config, run, small_dataset
from .test_reliability import LocalStore, Store, record

pytestmark = pytest.mark.anyio

HOUR = DAY1 + timedelta(hours=10)
MIB = 1024 * 1024


@pytest.fixture(params=["local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """The storage under test; see test_reliability.store for adding an Azure variant."""
    assert request.param == "local"
    return LocalStore(tmp_path / "deep" / "out")


def tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- unsafe names

ABSOLUTE = f"/tmp/async-amp-hostile-{uuid.uuid4().hex[:8]}/187520_2026-11-01_10#7.json.gz"
UNSAFE_NAMES = {
    "dotdot": "../../evil.json.gz",
    "dotdot-inside": "187520/../../187520_2026-11-01_10#7.json.gz",
    "dotdot-after": "187520/187520_2026-11-01_10#7.json.gz/../../../evil.json.gz",
    "absolute": ABSOLUTE,
    "drive": "C:/evil/187520_2026-11-01_10#7.json.gz",
    "backslash": "187520\\..\\..\\187520_2026-11-01_10#7.json.gz",
    "backslash-only": "187520\\187520_2026-11-01_10#7.json.gz",
    "nul": "187520/187520_2026-11-01_10#7.json.gz\x00.sh",
    "other-folder": "999/187520_2026-11-01_10#7.json.gz",
    "nested": "187520/sub/187520_2026-11-01_10#7.json.gz",
    "no-folder": "187520_2026-11-01_10#7.json.gz",
    "dot-file": "187520/.187520_2026-11-01_10#7.json.gz",
}


@pytest.mark.parametrize("name", list(UNSAFE_NAMES.values()), ids=list(UNSAFE_NAMES))
async def test_unsafe_member_names_are_refused_and_nothing_lands_outside(
    store: Store, tmp_path: Path, name: str
) -> None:
    """The unsafe member comes after the hour's good members: those were staged and must be
    dropped too; the hour fails after its attempts, its neighbours complete, and no file
    appears anywhere but in the neighbours' own folders."""
    dataset = small_dataset()
    plan = FaultPlan.always({HOUR: Fault.UNSAFE_NAME})
    out = store_root(store)
    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=plan, unsafe_name=name
    ) as sim:
        config = make_config(sim.base_url, out, max_attempts=2)
        summary = await run(config, HOUR - timedelta(hours=1), HOUR + timedelta(hours=1))
        assert sim.request_count(hour=HOUR) == 2
    assert summary.exit_code == 1
    assert [r.hour for r in summary.failed] == [HOUR]
    assert "refusing archive member" in summary.failed[0].error
    assert not (out / hour_folder("website", HOUR)).exists()
    # Only the two neighbours' folders, nothing else anywhere under tmp_path.
    allowed = {
        f"deep/out/{hour_folder('website', h)}/{n}"
        for h in (HOUR - timedelta(hours=1), HOUR + timedelta(hours=1))
        for n in [
            "_manifest.json",
            *(dataset.member_name(h, p).split("/")[1][:-3] for p in dataset.pages(h)),
        ]
    }
    assert tree(tmp_path) == allowed
    assert not Path(ABSOLUTE).parent.exists()
    assert not Path("C:").exists()


async def test_member_of_another_project_is_refused_not_stored(
    store: Store, tmp_path: Path
) -> None:
    """A consistent name from another project ("999/999_..._10#7") passes the folder check,
    and is stored in this project's hour as an extra partition: another project's events
    under ours. All members of one export belong to one project: a second id is hostile."""
    dataset = small_dataset()
    plan = FaultPlan.always({HOUR: Fault.UNSAFE_NAME})
    out = store_root(store)
    async with run_simulator(
        dataset,
        api_key=KEY,
        secret_key=SECRET,
        faults=plan,
        unsafe_name="999/999_2026-11-01_10#7.json.gz",
    ) as sim:
        summary = await run(make_config(sim.base_url, out, max_attempts=2), HOUR, HOUR)
    stored = tree(out)
    assert not [p for p in stored if "999_" in p], f"another project's data stored: {stored}"
    assert summary.exit_code == 1


def test_member_names_with_non_ascii_digits_are_refused() -> None:
    """``\\d`` in the member-name pattern matches any Unicode digit, so "#\\u0660"
    (Arabic-Indic zero) is read as page 0 and stored under a name no Amplitude archive has."""
    for name in (
        "187520/187520_2026-11-01_10#\u0660.json.gz",
        "\u0661/\u0661_2026-11-01_10#0.json.gz",
        "187520/187520_\u0662026-11-01_10#0.json.gz",
    ):
        archive = build_zip([(name, gzip.compress(b"{}\n"))])
        with pytest.raises(ArchiveError, match="refusing"):
            process_archive([archive], _discard_all, first_hour=HOUR, last_hour=HOUR)


class _Null:
    def write(self, data: bytes) -> None:
        del data

    def finish(self, entry: FileEntry) -> None:
        del entry

    def discard(self) -> None:
        pass


def _discard_all(member: MemberName, file_name: str) -> _Null:
    del member, file_name
    return _Null()


# --------------------------------------------------------------------------- crafted archives


@asynccontextmanager
async def serve(body_for: Callable[[datetime], bytes | None]) -> AsyncIterator[str]:
    """A minimal Export API that answers each one-hour request with ``body_for(hour)``."""

    async def handle(request: web.Request) -> web.StreamResponse:
        hour = datetime.strptime(request.query["start"], "%Y%m%dT%H").replace(tzinfo=UTC)
        body = body_for(hour)
        if body is None:
            return web.Response(status=404, text="Raw data files were not found.")
        response = web.StreamResponse(headers={"Content-Type": "application/zip"})
        response.content_length = len(body)
        await response.prepare(request)
        for i in range(0, len(body), 256 * 1024):
            await response.write(body[i : i + 256 * 1024])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/api/2/export", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@dataclass
class Metered:
    """A sink wrapper that remembers the most bytes ever written to one staged file."""

    inner: Sink
    largest: int = 0
    total: int = 0
    members: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def stage(self, project: str, hour: datetime) -> HourStaging:
        return _MeteredStaging(self, self.inner.stage(project, hour))


@dataclass
class _MeteredStaging:
    meter: Metered
    inner: HourStaging

    def open_member(self, member: MemberName, file_name: str) -> MemberSink:
        self.meter.members.append(file_name)
        return _MeteredMember(self.meter, self.inner.open_member(member, file_name))

    async def commit(self, manifest: object) -> None:
        await self.inner.commit(manifest)  # type: ignore[arg-type]

    async def discard(self) -> None:
        await self.inner.discard()


@dataclass
class _MeteredMember:
    meter: Metered
    inner: MemberSink
    written: int = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self.meter.total += len(data)
        self.meter.largest = max(self.meter.largest, self.written)
        self.inner.write(data)

    def finish(self, entry: FileEntry) -> None:
        self.inner.finish(entry)

    def discard(self) -> None:
        self.inner.discard()


def gzip_bomb(expanded: int, piece: int = MIB, fill: bytes = b"\n") -> bytes:
    """``expanded`` bytes of ``fill`` as concatenated gzip members (a gzip reader takes
    them all): about 1 KiB on the wire per MiB expanded, built without inflating anything."""
    one = gzip.compress(fill * piece, compresslevel=9, mtime=0)
    return one * (expanded // piece)


def bomb_archive(gz: bytes, method: str = "stored") -> bytes:
    name = f"187520/187520_{HOUR:%Y-%m-%d}_{HOUR.hour}#0.json.gz"
    return build_zip([ZipMember(name, gz, method, False)])  # type: ignore[arg-type]


async def run_bomb(
    store: Store, archive: bytes, **extract: object
) -> tuple[object, Metered, float]:
    out = store_root(store)
    meter = Metered(store.sink("bomb"))
    loop_started = _now()
    async with serve(lambda hour: archive if hour == HOUR else None) as base_url:
        config = make_config(base_url, out, max_attempts=2, **extract)
        summary = await run(config, HOUR, HOUR, sink=meter)  # type: ignore[arg-type]
    return summary, meter, _now() - loop_started


def _now() -> float:
    return os.times().elapsed


async def test_gzip_bomb_is_stopped_by_max_expansion_ratio(store: Store) -> None:
    """512 MiB from 0.5 MiB (1000x): stopped at the ratio, far from filling the disk."""
    archive = bomb_archive(gzip_bomb(512 * MIB))
    assert len(archive) < MIB
    summary, meter, seconds = await run_bomb(store, archive)
    assert summary.exit_code == 1  # type: ignore[attr-defined]
    error = summary.failed[0].error  # type: ignore[attr-defined]
    assert "max_expansion_ratio" in error and "decompression bomb" in error
    # The ratio is checked past a 16 MiB grace, chunk by chunk: never much beyond that.
    assert meter.largest <= 17 * MIB, meter.largest
    assert tree(store_root(store)) == set()
    assert seconds < 30
    record(
        "bomb_ratio",
        archive_bytes=len(archive),
        expands_to=512 * MIB,
        largest_staged_file=meter.largest,
        attempts=2,
        seconds=round(seconds, 2),
    )


async def test_gzip_bomb_is_stopped_by_max_member_bytes(store: Store) -> None:
    archive = bomb_archive(gzip_bomb(512 * MIB))
    summary, meter, seconds = await run_bomb(store, archive, max_member_bytes=4 * MIB)
    error = summary.failed[0].error  # type: ignore[attr-defined]
    assert "max_member_bytes" in error and "decompression bomb" in error
    assert meter.largest <= 4 * MIB + MIB
    assert tree(store_root(store)) == set()
    record(
        "bomb_size_cap",
        archive_bytes=len(archive),
        expands_to=512 * MIB,
        max_member_bytes=4 * MIB,
        largest_staged_file=meter.largest,
        seconds=round(seconds, 2),
    )


async def test_max_member_bytes_from_config_stops_an_honest_but_huge_member(
    store: Store,
) -> None:
    """An ordinary (8x) member bigger than the cap is refused too, with the same clear error."""
    dataset = Dataset(events_per_hour=3000, pages_per_hour=1)
    out = store_root(store)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, out, max_attempts=1, max_member_bytes=MIB)
        summary = await run(config, HOUR, HOUR, sink=store.sink("cap"))
    assert summary.exit_code == 1
    assert "max_member_bytes (1048576 bytes)" in summary.failed[0].error
    assert tree(out) == set()


async def test_zip_level_bomb_is_stopped_by_max_expansion_ratio(store: Store) -> None:
    """The bomb can sit in the ZIP layer: a deflated ZIP member holding an uncompressed
    (level 0) gzip of 64 MiB travels as ~70 KiB, a 900x expansion. The ratio is measured
    against the gzip bytes *after* the ZIP layer inflated them (~1x), so nothing stops it
    below max_member_bytes (8 GiB by default): 64 MiB here, 8 GiB per member in general."""
    level0 = zlib.compressobj(0, zlib.DEFLATED, 31)
    gz = level0.compress(b"\n" * (64 * MIB)) + level0.flush()
    archive = bomb_archive(gz, method="deflated")
    assert len(archive) < 1 * MIB
    summary, meter, _ = await run_bomb(store, archive)
    assert summary.exit_code == 1, f"{meter.largest} bytes written from {len(archive)}"  # type: ignore[attr-defined]
    assert "max_expansion_ratio" in summary.failed[0].error  # type: ignore[attr-defined]
    assert meter.largest <= 17 * MIB


async def test_many_small_members_each_under_the_limits_are_not_a_bomb(store: Store) -> None:
    """Ratio and size are per member; an ordinary hour of many pages must pass untouched."""
    dataset = small_dataset(pages_per_hour=40, events_per_hour=400)
    out = store_root(store)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        summary = await run(make_config(sim.base_url, out), HOUR, HOUR, sink=store.sink("m"))
    assert summary.exit_code == 0
    assert assert_output_matches(out, dataset, HOUR, HOUR) == 40


# --------------------------------------------------------------------------- ZIP64


async def test_zip64_archives_of_every_member_style_are_byte_identical(store: Store) -> None:
    """zip64=True writes ZIP64 extra fields and end records for every member; four hours
    cover stored/deflated x with/without data descriptors (the simulator's alternation)."""
    dataset = small_dataset()
    out = store_root(store)
    first, last = DAY1, DAY1 + timedelta(hours=3)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, zip64=True) as sim:
        body = sim.window_zip(first, first)
        assert b"PK\x06\x06" in body and b"PK\x06\x07" in body  # it really is ZIP64
        summary = await run(make_config(sim.base_url, out), first, last, sink=store.sink("z"))
    assert summary.exit_code == 0
    assert assert_output_matches(out, dataset, first, last) == 12


async def test_zip64_with_faults_is_recovered(store: Store) -> None:
    dataset = small_dataset()
    out = store_root(store)
    first, last = DAY1, DAY1 + timedelta(hours=3)
    plan = FaultPlan.on_first_attempt(
        {
            first: Fault.ZIP_TRUNCATED,
            first + timedelta(hours=1): Fault.CUT_BODY,
            first + timedelta(hours=2): Fault.CORRUPT_GZIP,
            first + timedelta(hours=3): Fault.DUPLICATE_MEMBER,
        }
    )
    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, zip64=True, faults=plan
    ) as sim:
        summary = await run(make_config(sim.base_url, out), first, last, sink=store.sink("z"))
        assert sim.request_count() == 8
    assert summary.exit_code == 0 and summary.retries == 4
    assert_output_matches(out, dataset, first, last)


def test_truncated_zip64_end_records_are_detected() -> None:
    data = b"".join(
        iter_zip(
            [(f"187520/187520_2026-11-01_10#{p}.json.gz", gzip.compress(b"{}\n")) for p in (0, 1)],
            zip64=True,
        )
    )
    for cut in range(len(data) - 98, len(data)):  # inside the ZIP64 record, locator, EOCD
        with pytest.raises(ArchiveError):
            process_archive([data[:cut]], _discard_all, first_hour=HOUR, last_hour=HOUR)


def store_root(store: Store) -> Path:
    return getattr(store, "root", Path("unused"))


# --------------------------------------------------------------------------- odd but valid


@pytest.mark.parametrize("fmt", ["ndjson", "parquet"])
async def test_a_folder_entry_and_gzip_nul_padding_are_accepted(store: Store, fmt: str) -> None:
    """A ZIP holding a folder entry ("187520/") and a member whose gzip stream is followed by
    NUL padding (which gzip tools skip) are a whole hour, not a corrupt one."""
    dataset = small_dataset()
    pages = dataset.pages(HOUR)
    padded = {pages[0]: b"\x00" * 1000}

    def body(hour: datetime) -> bytes:
        members: list[tuple[str, bytes]] = [("187520/", b"")]
        for page in dataset.pages(hour):
            members.append(
                (dataset.member_name(hour, page), dataset.gz(hour, page) + padded.get(page, b""))
            )
        return build_zip(members)

    out = store_root(store)
    async with serve(body) as url:
        config = make_config(url, out, max_attempts=1)
        config = replace(config, output=replace(config.output, format=fmt))
        summary = await run(
            config, HOUR, HOUR, sink=make_sink(config, run_id="test-run", environ={})
        )
    assert summary.exit_code == 0, summary.to_json()
    if fmt == "ndjson":
        assert_output_matches(out, dataset, HOUR, HOUR)
    else:
        manifest = json.loads((out / hour_folder("website", HOUR) / "_manifest.json").read_bytes())
        assert manifest["events"] == dataset.hour_event_count(HOUR)
        assert [s["name"] for s in manifest["sources"]] == [
            dataset.member_name(HOUR, p) for p in pages
        ]


async def test_data_after_the_nul_padding_is_still_corrupt(store: Store) -> None:
    dataset = small_dataset()

    def body(hour: datetime) -> bytes:
        page = dataset.pages(hour)[0]
        return build_zip([(dataset.member_name(hour, page), dataset.gz(hour, page) + b"\x00\x00x")])

    async with serve(body) as url:
        summary = await run(make_config(url, store_root(store), max_attempts=1), HOUR, HOUR)
    assert summary.exit_code == 1
    assert "after the NUL padding" in summary.failed[0].error
