"""The simulated Export API: dataset, ZIP writer and server, over real loopback sockets."""

from __future__ import annotations

import asyncio
import gzip
import io
import itertools
import json
import time
import zipfile
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
import stream_unzip

from async_amp.simulator import (
    Dataset,
    ExportSimulator,
    Fault,
    FaultPlan,
    Injection,
    Latency,
    RequestInfo,
    ZipMember,
    build_zip,
    empty_zip,
    export_param,
    hours_between,
    iter_zip,
    run_simulator,
    serve_forever,
)

KEY = "test-api-key"
SECRET = "test-secret"
H5 = datetime(2026, 11, 1, 5, tzinfo=UTC)
H17 = datetime(2026, 11, 1, 17, tzinfo=UTC)
QUIET = datetime(2026, 11, 1, 8, tzinfo=UTC)
DS = Dataset(events_per_hour=150, pages_per_hour=3, quiet_hours=frozenset({QUIET}))

AUTH = {"Authorization": aiohttp.encode_basic_auth(KEY, SECRET)}

pytestmark = pytest.mark.anyio


@pytest.fixture
async def sim() -> AsyncIterator[ExportSimulator]:
    async with run_simulator(DS, api_key=KEY, secret_key=SECRET) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def fetch(
    session: aiohttp.ClientSession,
    sim: ExportSimulator,
    start: datetime | str,
    end: datetime | str,
    *,
    auth: tuple[str, str] | None = (KEY, SECRET),
) -> tuple[int, dict[str, str], bytes]:
    params = {
        "start": start if isinstance(start, str) else export_param(start),
        "end": end if isinstance(end, str) else export_param(end),
    }
    headers = {"Authorization": aiohttp.encode_basic_auth(*auth)} if auth else {}
    async with session.get(sim.export_url, params=params, headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def unzip_all(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


def stream_unzip_all(body: bytes, chunk: int = 65536) -> list[tuple[str, bytes]]:
    chunks = (body[i : i + chunk] for i in range(0, len(body), chunk))
    return [(name.decode(), b"".join(data)) for name, _, data in stream_unzip.stream_unzip(chunks)]


def expected_members(ds: Dataset, start: datetime, end: datetime) -> dict[str, bytes]:
    return {
        ds.member_name(h, p): ds.ndjson(h, p)
        for h in hours_between(start, end)
        for p in ds.pages(h)
    }


# --------------------------------------------------------------------------- dataset


def test_member_names_are_not_zero_padded() -> None:
    assert DS.member_name(H5, 0) == "187520/187520_2026-11-01_5#0.json.gz"
    assert DS.member_name(H17, 2) == "187520/187520_2026-11-01_17#2.json.gz"
    assert Dataset(project_id=42).member_name(H17, 1) == "42/42_2026-11-01_17#1.json.gz"
    midnight = datetime(2026, 11, 2, tzinfo=UTC)
    assert DS.member_name(midnight, 0) == "187520/187520_2026-11-02_0#0.json.gz"
    assert DS.pages(H5) == [0, 1, 2]
    assert Dataset(first_page=1, pages_per_hour=2).pages(H5) == [1, 2]


def test_events_are_realistic_unique_and_inside_their_hour() -> None:
    rows = [json.loads(line) for p in DS.pages(H17) for line in DS.ndjson(H17, p).splitlines()]
    assert len(rows) == DS.hour_event_count(H17) == sum(DS.event_count(H17, p) for p in [0, 1, 2])
    uuids = {r["uuid"] for r in rows} | {
        json.loads(line)["uuid"] for line in DS.ndjson(H5, 0).splitlines()
    }
    assert len(uuids) == len(rows) + DS.event_count(H5, 0)
    assert len({r["$insert_id"] for r in rows}) == len(rows)
    for row in rows:
        assert row["server_upload_time"].startswith("2026-11-01 17:")
        datetime.strptime(row["server_upload_time"], "%Y-%m-%d %H:%M:%S.%f")
        assert row["event_time"] <= row["server_upload_time"]
        assert row["platform"] == "Web"
        assert row["library"].startswith("amplitude-ts/2.")
        assert row["app"] == DS.project_id
    types = {r["event_type"] for r in rows}
    assert {"Page Viewed", "Blog Post Viewed", "Session Start"} <= types
    assert any(r["session_id"] == -1 for r in rows) or len(rows) < 300
    assert any(r["event_properties"].get("page_path", "").startswith("/blog/") for r in rows)
    assert any(r["user_properties"].get("company_domain") for r in rows)
    assert any(r["event_properties"].get("referrer") is None for r in rows)
    sessions: dict[int, int] = {}
    for row in rows:
        sessions[row["session_id"]] = sessions.get(row["session_id"], 0) + 1
    assert max(sessions.values()) >= 3  # sessions span several events
    size = sum(len(line) for p in [0, 1, 2] for line in DS.ndjson(H17, p).splitlines())
    assert 1000 < size / len(rows) < 2100


def test_generation_is_deterministic_and_chunk_independent() -> None:
    again = Dataset(events_per_hour=150, pages_per_hour=3, quiet_hours=frozenset({QUIET}))
    whole = DS.ndjson(H5, 1)
    assert again.ndjson(H5, 1) == whole
    assert whole.endswith(b"\n")
    for chunk_bytes in (1, 5000, 1 << 20):
        chunks = list(DS.iter_ndjson(H5, 1, chunk_bytes))
        assert b"".join(chunks) == whole
        assert all(c.endswith(b"\n") for c in chunks)
    assert gzip.decompress(DS.gz(H5, 1)) == whole
    assert Dataset(events_per_hour=150, seed=1).ndjson(H5, 1) != whole


def test_volume_varies_within_bounds_and_quiet_hours_are_empty() -> None:
    ds = Dataset(events_per_hour=1000, quiet_fraction=0.1, quiet_hours=frozenset({QUIET}))
    hours = hours_between(H5, H5 + timedelta(days=7))
    counts = [ds.hour_event_count(h) for h in hours]
    busy = [c for c in counts if c]
    assert all(700 <= c <= 1300 for c in busy)
    assert len(set(busy)) > 50
    assert 0 < counts.count(0) < len(hours) // 4
    assert ds.pages(QUIET) == [] and ds.is_quiet(QUIET)
    for hour in hours[:30]:
        assert sum(ds.event_count(hour, p) for p in ds.pages(hour)) == ds.hour_event_count(hour)
    sized = Dataset(hour_sizes={H5: 7, H17: 0})
    assert sized.hour_event_count(H5) == 7 and sized.pages(H17) == []
    with pytest.raises(ValueError, match="minute 0"):
        DS.pages(H5 + timedelta(minutes=1))
    with pytest.raises(ValueError, match="pages_per_hour"):
        Dataset(pages_per_hour=0)


def test_disk_cache_is_reused(tmp_path: Path) -> None:
    ds = Dataset(events_per_hour=50, cache_dir=tmp_path)
    data = ds.gz(H5, 0)
    files = list(tmp_path.rglob("*.json.gz"))
    assert len(files) == 1
    files[0].write_bytes(b"marker")  # a second dataset with equal parameters reads the file
    assert Dataset(events_per_hour=50, cache_dir=tmp_path).gz(H5, 0) == b"marker"
    assert Dataset(events_per_hour=51, cache_dir=tmp_path).gz(H5, 0) != b"marker"
    assert gzip.decompress(data) == ds.ndjson(H5, 0)
    assert ds.warm([H5]) > 0


# --------------------------------------------------------------------------- zip writer


ZIP_DATA = {
    "p/a.json.gz": zlib.compress(b"x" * 30000, wbits=31),
    "p/b#1.json.gz": bytes(range(256)) * 40,
    "p/ü.txt": b"",
}


@pytest.mark.parametrize(
    ("method", "descriptor", "zip64"),
    list(itertools.product(["stored", "deflated"], [False, True], [False, True])),
)
def test_zip_variants_read_by_zipfile_and_stream_unzip(
    method: str, descriptor: bool, zip64: bool
) -> None:
    def pieces(data: bytes) -> Iterator[bytes]:
        yield from (data[i : i + 777] for i in range(0, len(data), 777))

    body = b"".join(
        iter_zip(
            ((name, pieces(data)) for name, data in ZIP_DATA.items()),
            method=method,  # type: ignore[arg-type]
            data_descriptor=descriptor,
            zip64=zip64,
        )
    )
    assert unzip_all(body) == ZIP_DATA
    for chunk in (7, 65536):
        assert dict(stream_unzip_all(body, chunk)) == ZIP_DATA
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        infos = archive.infolist()
    assert {i.compress_type for i in infos} == {0 if method == "stored" else 8}
    assert bool(infos[0].flag_bits & 0x08) == descriptor


def test_zip_mixed_members_and_empty_archive() -> None:
    body = build_zip(
        [
            ZipMember("s", b"stored", method="stored", data_descriptor=True),
            ZipMember("d", [b"def", b"lated"], method="deflated", data_descriptor=True),
            ("plain", b"default"),
        ]
    )
    assert unzip_all(body) == {"s": b"stored", "d": b"deflated", "plain": b"default"}
    assert stream_unzip_all(body) == [("s", b"stored"), ("d", b"deflated"), ("plain", b"default")]
    assert unzip_all(empty_zip()) == {}
    assert stream_unzip_all(empty_zip()) == []


# --------------------------------------------------------------------------- server


async def test_one_hour_zip_matches_the_dataset(
    sim: ExportSimulator, session: aiohttp.ClientSession
) -> None:
    status, headers, body = await fetch(session, sim, H17, H17)
    assert status == 200
    assert headers["Content-Type"] == "application/zip"
    assert int(headers["Content-Length"]) == len(body)
    members = unzip_all(body)
    assert list(members) == [DS.member_name(H17, p) for p in DS.pages(H17)]
    assert {n: gzip.decompress(d) for n, d in members.items()} == expected_members(DS, H17, H17)
    assert [n for n, _ in stream_unzip_all(body, 4096)] == list(members)
    assert body == sim.window_zip(H17, H17)


async def test_multi_hour_window_has_every_hour_and_every_zip_style(
    sim: ExportSimulator, session: aiohttp.ClientSession
) -> None:
    start, end = datetime(2026, 11, 1, 6, tzinfo=UTC), datetime(2026, 11, 1, 12, tzinfo=UTC)
    status, _, body = await fetch(session, sim, start, end)
    assert status == 200
    members = unzip_all(body)
    assert {n: gzip.decompress(d) for n, d in members.items()} == expected_members(DS, start, end)
    assert not any("_8#" in name for name in members)  # the quiet hour has no members
    assert {n: gzip.decompress(d) for n, d in stream_unzip_all(body, 1000)} == expected_members(
        DS, start, end
    )
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        styles = {(i.compress_type, bool(i.flag_bits & 0x08)) for i in archive.infolist()}
    assert styles == {(0, False), (0, True), (8, False), (8, True)}


async def test_quiet_hour_is_404_but_a_range_with_data_is_not(
    sim: ExportSimulator, session: aiohttp.ClientSession
) -> None:
    status, _, body = await fetch(session, sim, QUIET, QUIET)
    assert status == 404 and body
    status, _, _ = await fetch(session, sim, QUIET, QUIET + timedelta(hours=1))
    assert status == 200


async def test_auth_errors(sim: ExportSimulator, session: aiohttp.ClientSession) -> None:
    assert (await fetch(session, sim, H5, H5, auth=None))[0] == 401
    assert (await fetch(session, sim, H5, H5, auth=(KEY, "nope")))[0] == 403
    assert (await fetch(session, sim, H5, H5, auth=("x", SECRET)))[0] == 403
    url = f"{sim.export_url}?start=20261101T05&end=20261101T05"
    async with session.get(url, headers={"Authorization": "Bearer abc"}) as resp:
        assert resp.status == 401
    assert [r.status for r in sim.requests] == [401, 403, 403, 401]
    assert all(r.attempt == 0 for r in sim.requests)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("", "20261101T05"),
        ("2026110105", "20261101T05"),
        ("20261101T05", "20261101T5"),
        ("20261301T00", "20261302T00"),
        ("20261101T05", "20261101T04"),
        ("20250101T00", "20260101T00"),
    ],
)
async def test_bad_parameters_are_400(
    sim: ExportSimulator, session: aiohttp.ClientSession, start: str, end: str
) -> None:
    status, _, body = await fetch(session, sim, start, end)
    assert status == 400
    assert body  # a readable reason
    async with session.get(sim.export_url, headers=AUTH) as resp:
        assert resp.status == 400
        assert "start" in await resp.text()


async def test_request_log_counts_attempts_per_window(
    sim: ExportSimulator, session: aiohttp.ClientSession
) -> None:
    for _ in range(2):
        await fetch(session, sim, H5, H5)
    await fetch(session, sim, H5, H17)
    await fetch(session, sim, QUIET, QUIET)
    assert [(r.status, r.attempt) for r in sim.requests] == [(200, 1), (200, 2), (200, 1), (404, 1)]
    assert sim.requests[0].bytes_sent > 0 and sim.requests[0].complete
    assert sim.request_count() == 4
    assert sim.request_count(status=200) == 3
    assert sim.request_count(hour=H17) == 1
    sim.reset_log()
    assert sim.request_count() == 0
    await fetch(session, sim, H5, H5)
    assert sim.requests[0].attempt == 3
    sim.reset_log(attempts=True)
    await fetch(session, sim, H5, H5)
    assert sim.requests[0].attempt == 1


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault.HTTP_500, 500),
        (Fault.HTTP_502, 502),
        (Fault.HTTP_503, 503),
        (Fault.HTTP_504, 504),
        (Fault.HTTP_429, 429),
        (Fault.HTTP_400, 400),
    ],
)
async def test_status_faults_clear_on_retry(
    session: aiohttp.ClientSession, fault: Fault, status: int
) -> None:
    plan = FaultPlan.on_first_attempt({H5: fault})
    async with run_simulator(
        DS, api_key=KEY, secret_key=SECRET, faults=plan, retry_after_s=3
    ) as sim:
        got, headers, _ = await fetch(session, sim, H5, H5)
        assert got == status
        if fault in (Fault.HTTP_429, Fault.HTTP_503):
            assert headers["Retry-After"] == "3"
        assert (await fetch(session, sim, H5, H5))[0] == 200
        assert (await fetch(session, sim, H17, H17))[0] == 200
        assert [(r.fault, r.attempt) for r in sim.requests] == [(fault, 1), (None, 2), (None, 1)]


async def test_reset_before_headers(session: aiohttp.ClientSession) -> None:
    plan = FaultPlan.on_first_attempts({H5: Fault.RESET_BEFORE_HEADERS}, 2)
    async with run_simulator(DS, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        # aiohttp itself silently retries an idempotent request once after a disconnect,
        # so one client call makes two attempts here.
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await fetch(session, sim, H5, H5)
        assert [(r.status, r.attempt) for r in sim.requests] == [(None, 1), (None, 2)]
        assert (await fetch(session, sim, H5, H5))[0] == 200


async def test_cut_body_is_a_client_error(session: aiohttp.ClientSession) -> None:
    plan = FaultPlan.on_first_attempt({H5: Fault.CUT_BODY})
    async with run_simulator(DS, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        with pytest.raises(aiohttp.ClientPayloadError):
            await fetch(session, sim, H5, H5)
        status, _, body = await fetch(session, sim, H5, H5)
        assert status == 200 and unzip_all(body)
        await asyncio.sleep(0.05)
        assert 0 < sim.requests[0].bytes_sent < len(body)


async def test_stall_trips_a_read_timeout_and_shutdown_does_not_wait(
    session: aiohttp.ClientSession,
) -> None:
    plan = FaultPlan.always({H5: Fault.STALL})
    began = time.monotonic()
    stall_s = 3600  # a shutdown that waited would take an hour: the bound below is far from it
    async with run_simulator(
        DS, api_key=KEY, secret_key=SECRET, faults=plan, stall_s=stall_s
    ) as sim:
        timeout = aiohttp.ClientTimeout(sock_read=0.3)
        url = f"{sim.export_url}?start={export_param(H5)}&end={export_param(H5)}"
        async with session.get(url, headers=AUTH, timeout=timeout) as resp:
            assert resp.status == 200
            with pytest.raises(asyncio.TimeoutError):
                await resp.read()
        # a second stalled request is still sleeping when the simulator stops
        async with session.get(url, headers=AUTH) as resp:
            await resp.content.readexactly(10)
    assert time.monotonic() - began < stall_s / 10


async def test_short_stall_then_completes(session: aiohttp.ClientSession) -> None:
    plan = FaultPlan.on_first_attempt({H5: Fault.STALL})
    async with run_simulator(DS, api_key=KEY, secret_key=SECRET, faults=plan, stall_s=0.3) as sim:
        began = time.monotonic()
        status, _, body = await fetch(session, sim, H5, H5)
        assert status == 200 and time.monotonic() - began >= 0.3
        assert body == sim.window_zip(H5, H5)


async def zip_fault(
    session: aiohttp.ClientSession, fault: Fault, start: datetime, end: datetime
) -> bytes:
    plan = FaultPlan.on_first_attempt({end: fault})
    async with run_simulator(DS, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        status, headers, body = await fetch(session, sim, start, end)
        assert status == 200 and headers["Content-Type"] == "application/zip"
        assert sim.requests[0].fault is fault and sim.requests[0].fault_hour == end
        assert body != sim.window_zip(start, end)
        status, _, clean = await fetch(session, sim, start, end)
        assert status == 200 and clean == sim.window_zip(start, end)
        return body


async def test_zip_truncated_mid_member(session: aiohttp.ClientSession) -> None:
    body = await zip_fault(session, Fault.ZIP_TRUNCATED, H5, H5)
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(body))
    with pytest.raises(stream_unzip.TruncatedDataError):
        stream_unzip_all(body)


async def test_corrupt_gzip_has_a_valid_zip_layer(session: aiohttp.ClientSession) -> None:
    body = await zip_fault(session, Fault.CORRUPT_GZIP, H5, H17)
    members = unzip_all(body)  # CRCs match: the ZIP layer is fine
    assert set(members) == set(expected_members(DS, H5, H17))
    broken = [n for n, d in members.items() if not _gunzips(d)]
    assert broken == [DS.member_name(H17, 0)]


def _gunzips(data: bytes) -> bool:
    try:
        gzip.decompress(data)
    except (OSError, EOFError, zlib.error):
        return False
    return True


async def test_missing_partition(session: aiohttp.ClientSession) -> None:
    members = unzip_all(await zip_fault(session, Fault.MISSING_PARTITION, H17, H17))
    assert list(members) == [DS.member_name(H17, 0), DS.member_name(H17, 2)]


async def test_unsafe_name(session: aiohttp.ClientSession) -> None:
    members = unzip_all(await zip_fault(session, Fault.UNSAFE_NAME, H5, H5))
    assert "../../evil.json.gz" in members


async def test_foreign_member(session: aiohttp.ClientSession) -> None:
    members = unzip_all(await zip_fault(session, Fault.FOREIGN_MEMBER, H5, H5))
    foreign = DS.member_name(H5 + timedelta(hours=1), 0)
    assert gzip.decompress(members[foreign]) == DS.ndjson(H5 + timedelta(hours=1), 0)


async def test_duplicate_member(session: aiohttp.ClientSession) -> None:
    names = [
        n for n, _ in stream_unzip_all(await zip_fault(session, Fault.DUPLICATE_MEMBER, H5, H5))
    ]
    assert names.count(DS.member_name(H5, 0)) == 2


async def test_html_200_and_empty_zip(session: aiohttp.ClientSession) -> None:
    plan = FaultPlan.on_first_attempt(
        {H5: Fault.HTML_200, H17: Fault.EMPTY_ZIP, QUIET: Fault.EMPTY_ZIP}
    )
    async with run_simulator(DS, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        status, headers, body = await fetch(session, sim, H5, H5)
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert body.startswith(b"<!DOCTYPE html>")
        for hour in (H17, QUIET):  # an empty ZIP even where there is no data
            status, headers, body = await fetch(session, sim, hour, hour)
            assert status == 200 and headers["Content-Type"] == "application/zip"
            assert unzip_all(body) == {}


async def test_too_large_export_and_pages_numbered_from_one(
    session: aiohttp.ClientSession,
) -> None:
    ds = Dataset(events_per_hour=100, pages_per_hour=2, first_page=1)
    async with run_simulator(ds, api_key=KEY, secret_key=SECRET, max_export_events=400) as sim:
        status, _, body = await fetch(session, sim, H5, H5 + timedelta(hours=9))
        assert status == 400 and b"4GB" in body
        status, _, body = await fetch(session, sim, H5, H5)
        assert status == 200
        assert list(unzip_all(body)) == [ds.member_name(H5, 1), ds.member_name(H5, 2)]


# --------------------------------------------------------------------------- plans, latency


def test_fault_plans() -> None:
    def info(start: datetime, end: datetime, attempt: int = 1) -> RequestInfo:
        return RequestInfo(start, end, attempt)

    plan = FaultPlan.always({H17: Fault.HTTP_500})
    assert plan(info(H5, H17, 9)) == Injection(Fault.HTTP_500, H17)
    assert plan(info(H5, H5)) is None
    nth = FaultPlan.every_nth_hour_first_attempt(4, Fault.HTTP_504)
    hits = [h for h in hours_between(H5, H17) if nth(info(h, h)) is not None]
    assert len(hits) == 3 and nth(info(hits[0], hits[0], 2)) is None
    rnd = FaultPlan.random(0.5, seed=3, kinds=[Fault.CUT_BODY, Fault.HTTP_503])
    picks = [rnd(info(h, h)) for h in hours_between(H5, H5 + timedelta(days=4))]
    assert picks == [rnd(info(h, h)) for h in hours_between(H5, H5 + timedelta(days=4))]
    assert 20 < sum(p is not None for p in picks) < 76
    assert {p.fault for p in picks if isinstance(p, Injection)} == {Fault.CUT_BODY, Fault.HTTP_503}
    chained = FaultPlan.chain(FaultPlan.on_first_attempt({H5: Fault.HTTP_502}), plan)
    assert chained(info(H5, H17)) == Injection(Fault.HTTP_502, H5)
    assert chained(info(H5, H17, 2)) == Injection(Fault.HTTP_500, H17)
    twice = FaultPlan.on_first_attempts({H5: Fault.HTTP_503}, 2)
    assert [twice(info(H5, H5, a)) is not None for a in (1, 2, 3)] == [True, True, False]


async def test_plain_callable_faults_and_zip64(session: aiohttp.ClientSession) -> None:
    def plan(info: RequestInfo) -> Fault | None:
        return Fault.HTTP_502 if info.attempt == 1 else None

    async with run_simulator(DS, api_key=KEY, secret_key=SECRET, faults=plan, zip64=True) as sim:
        assert (await fetch(session, sim, H17, H17))[0] == 502
        status, _, body = await fetch(session, sim, H17, H17)
        assert status == 200
        assert {n: gzip.decompress(d) for n, d in stream_unzip_all(body)} == expected_members(
            DS, H17, H17
        )
        assert {n: gzip.decompress(d) for n, d in unzip_all(body).items()} == expected_members(
            DS, H17, H17
        )


async def test_max_in_flight_answers_429(session: aiohttp.ClientSession) -> None:
    latency = Latency(fixed_s=0.3, max_in_flight=1)
    async with run_simulator(DS, api_key=KEY, secret_key=SECRET, latency=latency) as sim:
        results = await asyncio.gather(fetch(session, sim, H5, H5), fetch(session, sim, H17, H17))
        assert sorted(status for status, _, _ in results) == [200, 429]
        assert all(h["Retry-After"] == "1" for s, h, _ in results if s == 429)


async def test_bandwidth_throttle(session: aiohttp.ClientSession) -> None:
    size = len(ExportSimulator(DS, api_key=KEY, secret_key=SECRET).window_zip(H5, H5))
    rate = size / 0.4 / 1e6  # the body should take about 0.4 s
    latency = Latency(mb_per_s_per_conn=rate)
    async with run_simulator(
        DS, api_key=KEY, secret_key=SECRET, latency=latency, chunk_bytes=8192
    ) as sim:
        began = time.monotonic()
        status, _, body = await fetch(session, sim, H5, H5)
        assert status == 200 and len(body) == size
        assert time.monotonic() - began > 0.3  # throttled (a lower bound: never flaky)


async def test_serve_forever_reports_its_url(session: aiohttp.ClientSession) -> None:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(
        serve_forever(DS, api_key=KEY, secret_key=SECRET, port=0, on_ready=ready.set_result)
    )
    try:
        url = await asyncio.wait_for(ready, 5)
        assert url.startswith("http://127.0.0.1:")
        query = f"start={export_param(H5)}&end={export_param(H5)}"
        async with session.get(f"{url}/api/2/export?{query}", headers=AUTH) as resp:
            assert resp.status == 200
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
