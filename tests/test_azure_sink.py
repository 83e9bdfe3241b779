"""AzureSink against a real Azurite: driven the way the pipeline drives it, no mocks.

Members are written from a worker thread (``anyio.to_thread.run_sync``), in uneven chunks, as
``process_archive`` does; the hour is then committed from the event loop.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import json
import os
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import pytest
from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError

from async_amp.config import AzureConfig
from async_amp.errors import AsyncAmpError, ConfigError, CredentialsError, StorageError
from async_amp.hours import MemberName, parse_member_name
from async_amp.output.manifest import FileEntry, Manifest
from async_amp.output.stores.azure import AzureSink
from tests.azurite import ACCOUNT_KEY, Azurite, azurite_proxy, free_port
from tests.proxy import FaultProxy, Hitch, run_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.azure]

PROJECT = "187520"
HOUR = datetime(2024, 3, 5, 7, tzinfo=UTC)
MIB = 1024 * 1024
CHUNKS = (1, 7, 4093, 65_536, 1_048_583, 3, 300_007)  # uneven, some straddle 1 MiB blocks


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the azure SDK's aio clients run on asyncio only, never trio


# --- helpers -----------------------------------------------------------------------------------


def ndjson(size: int, seed: int = 0) -> bytes:
    lines: list[bytes] = []
    total = 0
    i = 0
    while total < size:
        event = {
            "event_id": i,
            "seed": seed,
            "user_id": f"u{i * 7919 % 10007}",
            "pad": "x" * (i % 97),
        }
        line = json.dumps(event).encode() + b"\n"
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)


def uneven(data: bytes) -> Iterator[bytes]:
    pos = 0
    i = 0
    while pos < len(data):
        size = CHUNKS[i % len(CHUNKS)]
        yield data[pos : pos + size]
        pos += size
        i += 1


def member_name(page: int, hour: datetime = HOUR) -> MemberName:
    return parse_member_name(f"{PROJECT}/{PROJECT}_{hour:%Y-%m-%d}_{hour.hour}#{page}.json.gz")


def entry_for(member: MemberName, name: str, data: bytes) -> FileEntry:
    return FileEntry(
        name=name,
        bytes=len(data),
        events=data.count(b"\n"),
        sha256=hashlib.sha256(data).hexdigest(),
        source=f"{PROJECT}/{member.base_name}",
    )


def file_name(member: MemberName, *, gz: bool = False) -> str:
    return member.base_name if gz else member.base_name.removesuffix(".gz")


async def stage_files(
    staging: Any, files: dict[int, bytes], *, hour: datetime = HOUR, gz: bool = False
) -> list[FileEntry]:
    """Stage ``{page: bytes}`` from a worker thread, like ``process_archive``."""

    def work() -> list[FileEntry]:
        entries = []
        for page, data in files.items():
            member = member_name(page, hour)
            name = file_name(member, gz=gz)
            sink = staging.open_member(member, name)
            for chunk in uneven(data):
                sink.write(chunk)
            entry = entry_for(member, name, data)
            sink.finish(entry)
            entries.append(entry)
        return entries

    return await anyio.to_thread.run_sync(work)


def manifest_for(
    entries: list[FileEntry], hour: datetime = HOUR, run_id: str = "run-1"
) -> Manifest:
    return Manifest(
        hour=hour,
        status="complete" if entries else "empty",
        files=tuple(entries),
        attempts=1,
        extracted_at=datetime(2024, 3, 6, 1, 2, 3, tzinfo=UTC),
        run_id=run_id,
    )


def config(container: str, **overrides: Any) -> AzureConfig:
    base = AzureConfig(container=container, block_size_mib=1, retries=2, retry_backoff_s=0.05)
    return replace(base, **overrides)


def make_sink(
    azurite: Azurite,
    container: str,
    *,
    environ: dict[str, str] | None = None,
    run_id: str = "run-1",
    **overrides: Any,
) -> tuple[AzureSink, list[tuple[str, str]]]:
    """A sink on a connection string, and the (method, url) of every request it sends."""
    sent: list[tuple[str, str]] = []

    def record(request: Any) -> None:
        sent.append((request.http_request.method, request.http_request.url))

    env = (
        environ
        if environ is not None
        else {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    )
    sink = AzureSink.from_config(
        config(container, **overrides), run_id=run_id, environ=env, raw_request_hook=record
    )
    return sink, sent


@contextlib.asynccontextmanager
async def prepared(
    azurite: Azurite, container: str, **kwargs: Any
) -> AsyncIterator[tuple[AzureSink, list[tuple[str, str]]]]:
    sink, sent = make_sink(azurite, container, **kwargs)
    async with sink:
        await sink.prepare()
        yield sink, sent


async def blob_names(azurite: Azurite, container: str) -> list[str]:
    async with azurite.service_client() as service:
        return [b.name async for b in service.get_container_client(container).list_blobs()]


async def read_blob(azurite: Azurite, container: str, name: str) -> bytes:
    async with azurite.service_client() as service:
        blob = service.get_blob_client(container, name)
        return await (await blob.download_blob(decompress=False)).readall()


def hour_path(name: str, hour: datetime = HOUR) -> str:
    return f"amplitude/{PROJECT}/date={hour:%Y-%m-%d}/hour={hour:%H}/{name}"


def chain_text(exc: BaseException) -> str:
    """The text of an exception and everything it was raised from."""
    texts = []
    seen: BaseException | None = exc
    while seen is not None:
        texts.append(f"{seen!s} {seen!r}")
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


# --- round trip --------------------------------------------------------------------------------


async def test_round_trip_bytes_settings_metadata(azurite: Azurite, azure_container: str) -> None:
    big = ndjson(5 * MIB + 12345, seed=1)  # six 1 MiB blocks, the last one partial
    small = ndjson(1000, seed=2)
    async with prepared(azurite, azure_container) as (sink, _):
        assert sink.describe() == f"azure://devstoreaccount1/{azure_container}/amplitude"
        staging = sink.stage(PROJECT, HOUR)
        entries = await stage_files(staging, {0: big, 1: small, 2: b""})
        manifest = manifest_for(entries)
        await staging.commit(manifest)

        names = [e.name for e in entries]
        assert await sink.list_files(PROJECT, HOUR) == sorted(names)  # never the manifest
        assert await sink.list_files(PROJECT, HOUR + timedelta(hours=1)) == []
        assert await sink.read_manifest(PROJECT, HOUR) == manifest
        assert b"".join([c async for c in sink.iter_file(PROJECT, HOUR, names[0])]) == big
        for bad in ("../x.json", "", ".."):
            with pytest.raises(StorageError, match="not a plain file name"):
                [c async for c in sink.iter_file(PROJECT, HOUR, bad)]
        with pytest.raises(StorageError, match="404 BlobNotFound"):
            [c async for c in sink.iter_file(PROJECT, HOUR, "missing.json")]

    assert (
        await read_blob(azurite, azure_container, hour_path("_manifest.json")) == manifest.dumps()
    )
    async with azurite.service_client() as service:
        for entry, data in zip(entries, (big, small, b""), strict=True):
            blob = service.get_blob_client(azure_container, hour_path(entry.name))
            assert await (await blob.download_blob(decompress=False)).readall() == data
            props = await blob.get_blob_properties()
            assert props.size == len(data)
            assert props.content_settings.content_type == "application/x-ndjson"
            assert props.content_settings.content_encoding is None
            assert not props.content_settings.content_md5  # only with blob_content_md5
            assert props.metadata == {
                "hour": "2024-03-05T07:00:00Z",
                "source": entry.source,
                "events": str(entry.events),
                "sha256": entry.sha256,
                "run_id": "run-1",
            }
        committed, _ = await service.get_blob_client(
            azure_container, hour_path(entries[0].name)
        ).get_block_list("committed")
        assert [b.size for b in committed] == [MIB] * 5 + [len(big) - 5 * MIB]
        ids = [b.id for b in committed]
        assert len(set(ids)) == 6
        assert len({len(i) for i in ids}) == 1  # one length within a blob


async def test_keep_gzip_blob_is_opaque_gzip(azurite: Azurite, azure_container: str) -> None:
    data = gzip.compress(ndjson(200_000))
    async with prepared(azurite, azure_container) as (sink, _):
        staging = sink.stage(PROJECT, HOUR)
        entries = await stage_files(staging, {0: data}, gz=True)
        await staging.commit(manifest_for(entries))
    assert entries[0].name.endswith(".json.gz")
    async with azurite.service_client() as service:
        blob = service.get_blob_client(azure_container, hour_path(entries[0].name))
        props = await blob.get_blob_properties()
        assert props.content_settings.content_type == "application/gzip"
        assert props.content_settings.content_encoding is None
        # no Content-Encoding: even the SDK's decompressing default returns the stored bytes
        assert await (await blob.download_blob()).readall() == data


# --- visibility and commit order ---------------------------------------------------------------


async def test_nothing_visible_before_commit(azurite: Azurite, azure_container: str) -> None:
    data = ndjson(2 * MIB + 7)
    async with prepared(azurite, azure_container) as (sink, _):
        staging = sink.stage(PROJECT, HOUR)
        entries = await stage_files(staging, {0: data})
        name = hour_path(entries[0].name)

        assert await blob_names(azurite, azure_container) == []
        async with azurite.service_client() as service:
            blob = service.get_blob_client(azure_container, name)
            with pytest.raises(ResourceNotFoundError):
                await blob.get_blob_properties()
            committed, uncommitted = await blob.get_block_list("all")
            assert committed == []
            assert sum(b.size for b in uncommitted) == len(data)  # staged, but invisible
        assert await sink.completed_hours(PROJECT, [HOUR]) == set()
        assert await sink.read_manifest(PROJECT, HOUR) is None

        await staging.commit(manifest_for(entries))
    assert sorted(await blob_names(azurite, azure_container)) == sorted(
        [hour_path("_manifest.json"), name]
    )


async def test_recommit_removes_stale_and_writes_manifest_last(
    azurite: Azurite, azure_container: str
) -> None:
    async with prepared(azurite, azure_container) as (sink, sent):
        first = sink.stage(PROJECT, HOUR)
        await first.commit(
            manifest_for(await stage_files(first, {0: b"a\n", 1: b"b\n", 2: b"c\n"}))
        )
        async with azurite.service_client() as service:  # not ours: must survive
            await service.get_blob_client(azure_container, hour_path("notes.txt")).upload_blob(b"x")

        new = ndjson(1_500_000, seed=9)
        second = sink.stage(PROJECT, HOUR)  # a --force re-extraction: fewer pages now
        entries = await stage_files(second, {0: new})
        sent.clear()
        await second.commit(manifest_for(entries, run_id="run-2"))

        assert await sink.list_files(PROJECT, HOUR) == sorted([entries[0].name, "notes.txt"])
        assert await read_blob(azurite, azure_container, hour_path(entries[0].name)) == new
        manifest = await sink.read_manifest(PROJECT, HOUR)
        assert manifest is not None
        assert manifest.run_id == "run-2"

    writes = [
        (
            method,
            unquote(urlsplit(url).path).split("/hour=07/", 1)[1],
            parse_qs(urlsplit(url).query).get("comp", [""])[0],
        )
        for method, url in sent
        if method in ("PUT", "DELETE")
    ]
    assert writes[0] == ("DELETE", "_manifest.json", "")  # the hour stops looking done first
    assert writes[-1] == ("PUT", "_manifest.json", "")  # and looks done again last
    assert writes[1] == ("PUT", entries[0].name, "blocklist")
    stale = {file_name(member_name(page)) for page in (1, 2)}
    assert {(method, path) for method, path, _ in writes[2:-1]} == {("DELETE", n) for n in stale}


async def test_discard_leaves_nothing_and_a_retry_commits_cleanly(
    azurite: Azurite, azure_container: str
) -> None:
    async with prepared(azurite, azure_container) as (sink, _):
        failed = sink.stage(PROJECT, HOUR)
        await stage_files(failed, {0: ndjson(1_500_000, seed=1)})

        def half_written() -> None:  # a member that breaks mid-way, as on a truncated archive
            member = member_name(1)
            m = failed.open_member(member, file_name(member))
            m.write(ndjson(1_200_000, seed=2))
            m.discard()

        await anyio.to_thread.run_sync(half_written)
        await failed.discard()
        assert await blob_names(azurite, azure_container) == []

        retry = sink.stage(PROJECT, HOUR)  # same blob names, new block ids: no mixing
        good = ndjson(1_300_000, seed=3)
        entries = await stage_files(retry, {0: good})
        await retry.commit(manifest_for(entries))
        assert await read_blob(azurite, azure_container, hour_path(entries[0].name)) == good
        assert await sink.completed_hours(PROJECT, [HOUR]) == {HOUR}


async def test_two_attempts_on_one_blob_never_mix(azurite: Azurite, azure_container: str) -> None:
    a_data, b_data = ndjson(1_100_000, seed=1), ndjson(1_100_000, seed=2)
    async with prepared(azurite, azure_container) as (sink, _):
        a, b = sink.stage(PROJECT, HOUR), sink.stage(PROJECT, HOUR)
        a_entries = await stage_files(a, {0: a_data})
        b_entries = await stage_files(b, {0: b_data})
        name = hour_path(a_entries[0].name)
        async with azurite.service_client() as service:
            _, staged = await service.get_blob_client(azure_container, name).get_block_list("all")
        assert len(staged) == 4
        assert len({blk.id[:32] for blk in staged}) == 2  # one id prefix per attempt

        await a.commit(manifest_for(a_entries))
        with pytest.raises(StorageError, match="InvalidBlockList") as caught:
            await b.commit(manifest_for(b_entries))
        assert azure_container in str(caught.value)
        assert a_entries[0].name in str(caught.value)
    assert await read_blob(azurite, azure_container, name) == a_data


async def test_commit_refuses_a_file_it_did_not_stage(
    azurite: Azurite, azure_container: str
) -> None:
    async with prepared(azurite, azure_container) as (sink, _):
        staging = sink.stage(PROJECT, HOUR)
        entries = await stage_files(staging, {0: b"x\n"})
        ghost = replace(entries[0], name="ghost.json")
        with pytest.raises(StorageError, match=r"ghost\.json"):
            await staging.commit(manifest_for([*entries, ghost]))
    assert await blob_names(azurite, azure_container) == []


# --- resume ------------------------------------------------------------------------------------


async def test_completed_hours_from_one_listing(azurite: Azurite, azure_container: str) -> None:
    hours = [HOUR + timedelta(hours=h) for h in range(0, 30)]  # across two days
    done = {hours[0], hours[5], hours[29]}
    async with prepared(azurite, azure_container) as (sink, sent):
        for hour in done:
            staging = sink.stage(PROJECT, hour)
            await staging.commit(manifest_for([], hour))
        pending = sink.stage(PROJECT, hours[7])  # staged only: not done
        await stage_files(pending, {0: b"x\n"}, hour=hours[7])
        other = sink.stage("999", hours[1])  # another project: not ours
        await other.commit(manifest_for([], hours[1]))

        sent.clear()
        assert await sink.completed_hours(PROJECT, hours) == done
        assert len(sent) == 1
        method, url = sent[0]
        query = parse_qs(urlsplit(url).query)
        assert method == "GET"
        assert query["comp"] == ["list"]
        assert query["prefix"] == [f"amplitude/{PROJECT}/date=2024-03-0"]

        sent.clear()
        assert await sink.completed_hours(PROJECT, [hours[5]]) == {hours[5]}
        assert await sink.completed_hours(PROJECT, []) == set()
        assert len(sent) == 1


# --- access and credentials --------------------------------------------------------------------


async def test_prepare_creates_container_and_leaves_no_probe(
    azurite: Azurite, azure_container: str
) -> None:
    async with prepared(azurite, azure_container) as (sink, _):
        await sink.prepare()  # again: the container exists now
    assert await blob_names(azurite, azure_container) == []


async def test_missing_container_without_create(azurite: Azurite, azure_container: str) -> None:
    sink, _ = make_sink(azurite, azure_container, create_container=False)
    async with sink:
        with pytest.raises(ConfigError) as caught:
            await sink.prepare()
    message = str(caught.value)
    assert message == (
        f"container {azure_container} does not exist at {azurite.account_url}; "
        "create it or set create_container = true"
    )


async def test_wrong_account_key_fails_fast(azurite: Azurite, azure_container: str) -> None:
    wrong = base64.b64encode(os.urandom(64)).decode()
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string.replace(ACCOUNT_KEY, wrong)}
    sink = AzureSink.from_config(AzureConfig(container=azure_container), run_id="r", environ=env)
    started = time.monotonic()
    async with sink:
        with pytest.raises(CredentialsError) as caught:
            await sink.prepare()
    # the production retry policy, no 90 s hang (a bound far from the fault, not a timing:
    # the seconds themselves are measured by `make bench BENCH_ARGS="--case errors"`)
    assert time.monotonic() - started < 60
    message = str(caught.value)
    assert "account key in AZURE_STORAGE_CONNECTION_STRING was rejected" in message
    assert azure_container in message
    assert "\n" not in message
    for secret in (wrong, ACCOUNT_KEY):
        assert secret not in chain_text(caught.value)


@pytest.mark.parametrize("scope", ["account", "container"])
async def test_sas_without_write_permission(
    azurite: Azurite, azure_container: str, scope: str
) -> None:
    async with azurite.service_client() as service:
        await service.create_container(azure_container)
    sas = azurite.sas_token("rl", container=azure_container if scope == "container" else None)
    env = {"AZURE_STORAGE_SAS_TOKEN": sas}
    sink, _ = make_sink(azurite, azure_container, environ=env, account_url=azurite.account_url)
    async with sink:
        with pytest.raises(CredentialsError) as caught:
            await sink.prepare()
    message = str(caught.value)
    assert "SAS token in AZURE_STORAGE_SAS_TOKEN lacks write permission" in message
    assert azure_container in message
    signature = parse_qs(sas)["sig"][0]
    text = chain_text(caught.value)
    assert signature not in text
    assert sas not in text


async def test_container_sas_round_trip(azurite: Azurite, azure_container: str) -> None:
    async with azurite.service_client() as service:
        await service.create_container(azure_container)
    sas = azurite.sas_token("racwdl", container=azure_container)
    env = {"AZURE_STORAGE_SAS_TOKEN": "?" + sas}
    # create_container stays true: a container SAS may not create one, prepare() copes
    async with prepared(azurite, azure_container, environ=env, account_url=azurite.account_url) as (
        sink,
        _,
    ):
        assert "sig" not in sink.describe()
        staging = sink.stage(PROJECT, HOUR)
        data = ndjson(1_100_000)
        await staging.commit(manifest_for(await stage_files(staging, {0: data})))
        assert await sink.completed_hours(PROJECT, [HOUR]) == {HOUR}


async def test_unreachable_endpoint_fails_fast_with_defaults(azure_container: str) -> None:
    url = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    env = {
        "AZURE_STORAGE_CONNECTION_STRING": (
            f"AccountName=devstoreaccount1;AccountKey={ACCOUNT_KEY};BlobEndpoint={url};"
        )
    }
    sink = AzureSink.from_config(AzureConfig(container=azure_container), run_id="r", environ=env)
    started = time.monotonic()
    async with sink:
        with pytest.raises(ConfigError, match="cannot reach Azure Storage") as caught:
            await sink.prepare()
    assert time.monotonic() - started < 60  # no 90 s hang; the seconds: bench case errors
    assert url in str(caught.value)
    assert ACCOUNT_KEY not in chain_text(caught.value)


async def test_from_config_credentials_order_and_errors(azurite: Azurite) -> None:
    cfg = AzureConfig(account_url="https://acct.blob.core.windows.net", container="data")
    sas = azurite.sas_token("rl")
    both = {
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "AZURE_STORAGE_SAS_TOKEN": sas,
    }
    async with AzureSink.from_config(cfg, run_id="r", environ=both) as sink:
        assert (
            sink.describe() == "azure://devstoreaccount1/data/amplitude"
        )  # connection string wins
    async with AzureSink.from_config(
        cfg, run_id="r", environ={"AZURE_STORAGE_SAS_TOKEN": sas}
    ) as sink:
        assert sink.describe() == "azure://acct/data/amplitude"
        assert sink.account_url == "https://acct.blob.core.windows.net"
    # DefaultAzureCredential: built offline, never asked for a token here
    async with AzureSink.from_config(replace(cfg, prefix=""), run_id="r", environ={}) as sink:
        assert sink.describe() == "azure://acct/data"

    with pytest.raises(ConfigError, match="account_url"):
        AzureSink.from_config(AzureConfig(), run_id="r", environ={})
    with pytest.raises(ConfigError, match="must not carry a SAS token") as caught:
        AzureSink.from_config(
            replace(cfg, account_url=f"https://acct.blob.core.windows.net?{sas}"),
            run_id="r",
            environ={},
        )
    assert parse_qs(sas)["sig"][0] not in str(caught.value)
    bad = "AccountKey=SECRETSECRET;garbage"
    with pytest.raises(ConfigError, match="not a valid storage connection string") as caught:
        AzureSink.from_config(cfg, run_id="r", environ={"AZURE_STORAGE_CONNECTION_STRING": bad})
    assert "SECRETSECRET" not in str(caught.value)


# --- throttling --------------------------------------------------------------------------------

SERVER_BUSY = (
    '<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
    "<Message>The server is busy.</Message></Error>"
)


@contextlib.asynccontextmanager
async def flaky_proxy(
    azurite: Azurite, fail: Callable[[str, str], bool]
) -> AsyncIterator[tuple[str, list[str]]]:
    """A loopback proxy to Azurite that answers 503 ServerBusy when ``fail(method, path)``."""
    failed: list[str] = []

    async def busy(request: web.Request) -> web.StreamResponse | None:
        if not fail(request.method, request.raw_path):
            return None
        failed.append(request.raw_path)
        return web.Response(
            status=503,
            headers={"x-ms-error-code": "ServerBusy"},
            text=SERVER_BUSY,
            content_type="application/xml",
        )

    async with azurite_proxy(azurite, busy, max_body=16 * MIB) as endpoint:
        yield endpoint, failed


async def test_server_busy_is_retried(azurite: Azurite, azure_container: str) -> None:
    budget = {"block": 2}

    def fail(method: str, path: str) -> bool:
        if method == "PUT" and "comp=block&" in path and budget["block"] > 0:
            budget["block"] -= 1
            return True
        return False

    async with flaky_proxy(azurite, fail) as (url, failed):
        env = {"AZURE_STORAGE_SAS_TOKEN": azurite.sas_token()}
        async with prepared(azurite, azure_container, environ=env, account_url=url) as (sink, _):
            staging = sink.stage(PROJECT, HOUR)
            data = ndjson(1_500_000)
            entries = await stage_files(staging, {0: data})
            await staging.commit(manifest_for(entries))
    assert len(failed) == 2
    assert await read_blob(azurite, azure_container, hour_path(entries[0].name)) == data


@pytest.mark.parametrize("retries", [2, 5])
async def test_persistent_server_busy_gives_up_with_a_clean_error(
    azurite: Azurite, azure_container: str, retries: int
) -> None:
    def fail(method: str, path: str) -> bool:
        return method == "PUT" and "comp=blocklist" in path

    sas = azurite.sas_token()
    async with flaky_proxy(azurite, fail) as (url, failed):
        env = {"AZURE_STORAGE_SAS_TOKEN": sas}
        async with prepared(
            azurite, azure_container, environ=env, account_url=url, retries=retries
        ) as (sink, _):
            staging = sink.stage(PROJECT, HOUR)
            entries = await stage_files(staging, {0: b"x\n"})
            with pytest.raises(StorageError) as caught:
                await staging.commit(manifest_for(entries))
    assert len(failed) == retries + 1  # bounded, and not capped by the SDK's inner budgets
    message = str(caught.value)
    assert "503 ServerBusy" in message
    assert f"{azure_container}/{hour_path(entries[0].name)}" in message
    assert parse_qs(sas)["sig"][0] not in chain_text(caught.value)


# --- a store that stops taking the body -------------------------------------------------------


@contextlib.asynccontextmanager
async def behind(
    azurite: Azurite, container: str, hitch: Hitch, **overrides: Any
) -> AsyncIterator[tuple[AzureSink, FaultProxy, list[tuple[str, str]]]]:
    """A sink (not prepared: its container made here) whose every connection to Azurite goes
    through a TCP proxy hitched as told, blocks of ``block_size_mib``."""
    async with azurite.service_client() as service:
        await service.create_container(container)
    upstream = f"http://127.0.0.1:{azurite.port}"
    async with run_proxy(upstream, faults=lambda _: hitch) as proxy:
        env = {"AZURE_STORAGE_SAS_TOKEN": azurite.sas_token()}
        url = f"{proxy.base_url}/{azurite.account_name}"
        sink, sent = make_sink(azurite, container, environ=env, account_url=url, **overrides)
        async with sink:
            yield sink, proxy, sent


async def test_a_block_the_store_stops_taking_times_out_and_is_tried_once_more(
    azurite: Azurite, azure_container: str
) -> None:
    """The store takes 1 MiB of an 8 MiB block, then no more and never answers (a stalled
    store: aiohttp's read timeout starts only once the body is sent, so nothing else would
    ever end the upload). The block times out after ``read_timeout_s`` without a byte moving,
    and is tried once more, not ``retries`` times."""
    data = ndjson(8 * MIB + 1000)
    hitch = Hitch.deaf(MIB)
    with anyio.fail_after(120):  # a hang fails the test instead of holding the suite
        async with behind(
            azurite, azure_container, hitch, block_size_mib=8, read_timeout_s=1, retries=5
        ) as (sink, proxy, sent):
            with pytest.raises(StorageError) as caught:
                await stage_files(sink.stage(PROJECT, HOUR), {0: data})
    blocks = [url for method, url in sent if method == "PUT" and "comp=block&" in url]
    assert len(blocks) == proxy.connections == 2, (blocks, proxy.hitched)
    message = str(caught.value)
    assert f"stage a block of {azure_container}/{hour_path(file_name(member_name(0)))}" in message


async def test_a_slow_block_upload_that_moves_is_never_cut(
    azurite: Azurite, azure_container: str
) -> None:
    """A 3 MiB block taken at 1.5 MiB/s takes seconds, twice the read timeout: it goes on
    while its bytes move, and is sent once."""
    data = ndjson(3 * MIB - 100)
    with anyio.fail_after(120):
        async with behind(
            azurite,
            azure_container,
            Hitch.slow_upload(3 * MIB // 2),
            block_size_mib=3,
            read_timeout_s=1,
        ) as (sink, _, sent):
            staging = sink.stage(PROJECT, HOUR)
            entries = await stage_files(staging, {0: data})
            await staging.commit(manifest_for(entries))
    assert len([url for method, url in sent if method == "PUT" and "comp=block&" in url]) == 1
    assert await read_blob(azurite, azure_container, hour_path(entries[0].name)) == data


# --- bounded memory ----------------------------------------------------------------------------


async def test_staging_memory_is_bounded_by_the_block_size(
    azurite: Azurite, azure_container: str
) -> None:
    block_mib = 7  # the default
    total = 200 * 1000 * 1000
    pattern = ndjson(2 * MIB, seed=5)
    sizes = (65_536, 1_000_003, 7, 262_144, 1_500_001)
    async with prepared(
        azurite, azure_container, block_size_mib=block_mib, blob_content_md5=True
    ) as (sink, _):
        staging = sink.stage(PROJECT, HOUR)

        def work() -> tuple[FileEntry, bytes]:
            member = member_name(0)
            name = file_name(member)
            out = staging.open_member(member, name)
            md5 = hashlib.md5()
            written = i = 0
            while written < total:
                size = min(sizes[i % len(sizes)], total - written)
                start = (i * 7919) % (len(pattern) - size)
                chunk = pattern[start : start + size]
                md5.update(chunk)
                out.write(chunk)
                written += size
                i += 1
            entry = FileEntry(name=name, bytes=total, events=0, sha256="0" * 64, source="s")
            out.finish(entry)
            return entry, md5.digest()

        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            started = time.monotonic()
            entry, digest = await anyio.to_thread.run_sync(work)
            elapsed = time.monotonic() - started
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
        print(
            f"staged {total / MIB:.0f} MiB in {elapsed:.1f} s "
            f"({total / MIB / elapsed:.0f} MiB/s, tracemalloc on); peak {peak / MIB:.1f} MiB"
        )
        assert peak < 3 * block_mib * MIB

        await staging.commit(manifest_for([entry]))
        async with azurite.service_client() as service:
            props = await service.get_blob_client(
                azure_container, hour_path(entry.name)
            ).get_blob_properties()
        assert props.size == total
        assert bytes(props.content_settings.content_md5) == digest


async def test_errors_are_async_amp_errors(azurite: Azurite, azure_container: str) -> None:
    """Reading from a container that vanished gives a StorageError naming it, not an SDK error."""
    async with prepared(azurite, azure_container) as (sink, _):
        async with azurite.service_client() as service:
            await service.delete_container(azure_container)
        with pytest.raises(AsyncAmpError, match=azure_container):
            await sink.read_manifest(PROJECT, HOUR)
