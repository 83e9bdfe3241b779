"""Azure end to end: the real pipeline and CLI, the simulated Export API, a real Azurite.

What the Azure sink issue asks for, proved through the whole path (HTTP -> unzip -> gunzip ->
staged blocks -> commit), never by poking the sink directly:

- blobs byte-identical to the source partitions, one manifest per hour, right content settings
  and metadata (``assert_container_matches``; the two-day run, its resume from one listing,
  ``--force`` and the whole fault matrix run for every storage in tests/test_storage_e2e.py);
- an interrupted CLI run (SIGTERM, SIGKILL) leaves only whole hours visible, and the rerun
  completes exactly what is missing;
- a failed first attempt's staged blocks never reach the committed blob;
- user errors with ``--sink azure`` are one line, exit 2, fast and free of secrets;
- memory stays bounded for a ~340 MB hour.
- SIGTERM during an hour's commit lets that commit finish: no hour shows data without its
  manifest (the pipeline shields the commit from cancellation, with a timeout).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import pytest
from aiohttp import web
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobProperties
from azure.storage.blob.aio import BlobServiceClient

from async_amp.config import AzureConfig
from async_amp.hours import hour_range, iso_hour
from async_amp.output.manifest import MANIFEST_NAME, hour_folder
from async_amp.output.marker import MARKER_NAME
from async_amp.output.stores.azure import PROBE_PREFIX, AzureSink
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import Fault, FaultPlan, Latency, run_simulator

from .azurite import ACCOUNT_KEY, Azurite, azurite_proxy, free_port
from .e2e import cli, communicate, e2e_env, expect_user_error, wait_until
from .helpers import DAY1, KEY, SECRET, make_config, run, small_dataset

pytestmark = [pytest.mark.anyio, pytest.mark.azure]

PROJECT = "website"
PREFIX = "amplitude"  # [azure] prefix default
MIB = 1024 * 1024
RUN_ID = "test-run"  # tests.helpers.run extracts with this run id


# --- helpers -----------------------------------------------------------------------------------


def azure_sink(
    azurite: Azurite,
    container: str,
    *,
    record: list[tuple[str, str]] | None = None,
    **overrides: Any,
) -> AzureSink:
    """The production sink on Azurite's connection string (short retries for tests)."""
    options: dict[str, Any] = {}
    if record is not None:

        def hook(request: Any) -> None:
            record.append((request.http_request.method, request.http_request.url))

        options["raw_request_hook"] = hook
    config = AzureConfig(container=container, retries=2, retry_backoff_s=0.05, **overrides)
    environ = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    return AzureSink.from_config(config, run_id=RUN_ID, environ=environ, **options)


def folder_of(hour: datetime) -> str:
    return f"{PREFIX}/{hour_folder(PROJECT, hour)}"


def blob_name(dataset: Dataset, hour: datetime, page: int, *, keep_gzip: bool = False) -> str:
    base = dataset.member_name(hour, page).split("/", 1)[1]
    return f"{folder_of(hour)}/{base if keep_gzip else base.removesuffix('.gz')}"


async def listing(service: BlobServiceClient, container: str) -> dict[str, BlobProperties]:
    """Every committed blob, with content settings and metadata ({} before the container),
    but the output's marker (the CLI records the format at the project's root)."""
    client = service.get_container_client(container)
    try:
        return {
            b.name: b
            async for b in client.list_blobs(include=["metadata"])
            if not b.name.endswith(f"/{MARKER_NAME}")
        }
    except ResourceNotFoundError:
        return {}


async def read(service: BlobServiceClient, container: str, name: str) -> bytes:
    downloader = await service.get_blob_client(container, name).download_blob(decompress=False)
    return await downloader.readall()


async def staged_blocks(service: BlobServiceClient, container: str, name: str) -> int:
    """Uncommitted blocks of a blob name (they exist even when the blob itself does not)."""
    try:
        _, uncommitted = await service.get_blob_client(container, name).get_block_list(
            "uncommitted"
        )
    except ResourceNotFoundError:
        return 0
    return len(uncommitted)


@dataclass(frozen=True, slots=True)
class Checked:
    files: int
    bytes: int


async def assert_container_matches(
    azurite: Azurite,
    container: str,
    dataset: Dataset,
    hours: list[datetime],
    *,
    keep_gzip: bool = False,
    blob_md5: bool = False,
) -> Checked:
    """Exactly the hours' blobs and nothing else: every partition byte-identical to the source,
    one manifest per hour describing exactly its blobs, content settings and metadata right
    (a data blob's Content-MD5 only with ``blob_md5``: ``[azure] blob_content_md5``)."""
    files = size = 0
    async with azurite.service_client() as service:
        blobs = await listing(service, container)
        expected: set[str] = set()
        for hour in hours:
            marker = f"{folder_of(hour)}/{MANIFEST_NAME}"
            assert marker in blobs, f"{iso_hour(hour)} has no manifest"
            manifest_bytes = await read(service, container, marker)
            manifest = json.loads(manifest_bytes)
            pages = dataset.pages(hour)
            status = "complete" if pages else "empty"
            run_id = manifest["run_id"]
            props = blobs[marker]
            assert props.content_settings.content_type == "application/json"
            assert bytes(props.content_settings.content_md5) == hashlib.md5(manifest_bytes).digest()
            assert props.metadata == {
                "hour": iso_hour(hour),
                "status": status,
                "events": str(manifest["events"]),
                "run_id": run_id,
            }
            assert manifest["hour"] == iso_hour(hour)
            assert manifest["status"] == status
            assert manifest["events"] == sum(dataset.event_count(hour, p) for p in pages)
            expected.add(marker)
            entries = {f["name"]: f for f in manifest["files"]}
            assert len(entries) == len(pages), f"{iso_hour(hour)}: {sorted(entries)}"
            for page in pages:
                name = blob_name(dataset, hour, page, keep_gzip=keep_gzip)
                expected.add(name)
                assert name in blobs, f"{name} missing"
                data = await read(service, container, name)
                want = dataset.gz(hour, page) if keep_gzip else dataset.ndjson(hour, page)
                assert data == want, f"{name} differs from the source partition"
                entry = entries[name.rsplit("/", 1)[1]]
                sha256 = hashlib.sha256(data).hexdigest()
                assert (entry["bytes"], entry["sha256"]) == (len(data), sha256)
                assert entry["events"] == dataset.event_count(hour, page)
                props = blobs[name]
                settings = props.content_settings
                content_type = "application/gzip" if keep_gzip else "application/x-ndjson"
                assert settings.content_type == content_type
                assert settings.content_encoding is None  # never decompressed on download
                if blob_md5:
                    assert bytes(settings.content_md5) == hashlib.md5(data).digest()
                else:
                    assert not settings.content_md5, f"{name} has a Content-MD5"
                assert props.metadata == {
                    "hour": iso_hour(hour),
                    "source": dataset.member_name(hour, page),
                    "events": str(entry["events"]),
                    "sha256": sha256,
                    "run_id": run_id,  # the run that wrote the manifest wrote the data
                }
                files += 1
                size += len(data)
    stray = set(blobs) - expected
    missing = expected - set(blobs)
    assert not stray and not missing, f"stray {sorted(stray)}, missing {sorted(missing)}"
    return Checked(files, size)


def cli_env(base_url: str, container: str, **extra: str) -> dict[str, str]:
    """The CLI's environment for ``--sink azure`` into ``container`` (see tests.e2e)."""
    return e2e_env(
        base_url, ASYNC_AMP_OUTPUT_SINK="azure", ASYNC_AMP_AZURE_CONTAINER=container, **extra
    )


# --- gzip kept (two days, --force and the fault matrix: tests/test_storage_e2e.py) ----------------


async def test_keep_gzip_blobs_are_the_original_members(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    dataset = small_dataset(quiet_hours=frozenset({DAY1.replace(hour=2)}))
    last = DAY1 + timedelta(hours=3)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, keep_gzip=True)
        summary = await run(config, DAY1, last, sink=azure_sink(azurite, azure_container))
    assert summary.exit_code == 0
    hours = list(hour_range(DAY1, last))
    checked = await assert_container_matches(
        azurite, azure_container, dataset, hours, keep_gzip=True
    )
    assert checked.files == 3 * 3


# --- interrupted runs ------------------------------------------------------------------------------

INTERRUPT_LAST = DAY1 + timedelta(hours=11)
STALLED = (DAY1 + timedelta(hours=4), DAY1 + timedelta(hours=5))


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), (signal.SIGKILL, -signal.SIGKILL)],
    ids=["term", "kill"],
)
async def test_interrupted_cli_run_leaves_only_whole_hours_and_rerun_completes(
    azurite: Azurite, azure_container: str, tmp_path: Path, signum: int, code: int
) -> None:
    """Hours 00-03 finish; 04 and 05 stall half way through their body with blocks already
    staged (both requests in flight at concurrency 2, no commit in progress); 06-11 are not
    started. The signal lands in that state, deterministically.

    The stalled hours are big (~25 MB of NDJSON, a ~2.5 MB ZIP): the client hands the decoder
    1 MiB chunks, so half a body must exceed 1 MiB for any block to be staged before the stall.
    """
    quiet = frozenset({DAY1.replace(hour=1), DAY1.replace(hour=8)})
    dataset = small_dataset(
        events_per_hour=1000, quiet_hours=quiet, hour_sizes=dict.fromkeys(STALLED, 15_000)
    )
    hours = list(hour_range(DAY1, INTERRUPT_LAST))
    finished = [h for h in hours if h < STALLED[0]]
    stall = FaultPlan.on_first_attempt(dict.fromkeys(STALLED, Fault.STALL))
    with BackgroundSimulator(
        dataset,
        api_key=KEY,
        secret_key=SECRET,
        faults=stall,
        stall_s=60,
        latency=Latency(fixed_s=0.2),
    ) as sim:
        env = cli_env(
            sim.base_url, azure_container, AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string
        )
        env["ASYNC_AMP_AZURE_BLOCK_SIZE_MIB"] = "1"
        args = ("2026-11-01T00", "2026-11-01T11", "--concurrency", "2")
        staged_names = [blob_name(dataset, h, 0) for h in STALLED]
        async with azurite.service_client() as service:

            async def mid_run() -> bool:
                blobs = await listing(service, azure_container)
                done = all(f"{folder_of(h)}/{MANIFEST_NAME}" in blobs for h in finished)
                return done and all(
                    [await staged_blocks(service, azure_container, n) > 0 for n in staged_names]
                )

            with cli(tmp_path, env, *args) as proc:
                await wait_until(mid_run, proc, "hours 00-03 done and 04-05 staging")
                proc.send_signal(signum)
                out, err = await communicate(proc, 30)
            assert proc.returncode == code, err[-3000:]
            if signum == signal.SIGTERM:
                assert "interrupted by SIGTERM" in out

            # Whatever is visible is whole: the manifests present describe exactly their blobs,
            # and an hour without a manifest shows no data blob at all.
            blobs = await listing(service, azure_container)
            with_manifest = {n.rsplit("/", 1)[0] for n in blobs if n.endswith(MANIFEST_NAME)}
            assert with_manifest == {folder_of(h) for h in finished}
            assert {n.rsplit("/", 1)[0] for n in blobs} == with_manifest, sorted(blobs)
            await assert_container_matches(azurite, azure_container, dataset, finished)
            # The stalled hours' staged blocks are still there, uncommitted and invisible.
            for name in staged_names:
                assert await staged_blocks(service, azure_container, name) > 0
                with pytest.raises(ResourceNotFoundError):
                    await service.get_blob_client(azure_container, name).get_blob_properties()

            sim.reset_log()
            with cli(tmp_path, env, *args) as rerun:
                _, err = await communicate(rerun, 60)
            assert rerun.returncode == 0, err[-3000:]
            asked = sorted(r.start for r in sim.requests if r.start is not None)
            assert asked == [h for h in hours if h not in finished]  # once each, nothing redone

            await assert_container_matches(azurite, azure_container, dataset, hours)
            for name in staged_names:  # the commit dropped the killed run's blocks
                assert await staged_blocks(service, azure_container, name) == 0


@contextlib.asynccontextmanager
async def manifest_holding_proxy(
    azurite: Azurite,
) -> AsyncIterator[tuple[str, anyio.Event]]:
    """A loopback proxy to Azurite that holds the first manifest upload until its client goes
    away (then drops it) or 3 s pass (then forwards it); the event fires when it is held."""
    held = anyio.Event()

    async def hold(request: web.Request) -> web.StreamResponse | None:
        path = unquote(request.path)
        if request.method == "PUT" and path.endswith("/" + MANIFEST_NAME) and not held.is_set():
            held.set()
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return web.Response(status=499)  # the client is gone: never forwarded
                await anyio.sleep(0.02)
        return None

    async with azurite_proxy(azurite, hold) as endpoint:
        yield endpoint, held


async def test_sigterm_during_an_hours_commit_leaves_no_data_without_its_manifest(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    """SIGTERM lands while hour 00's manifest upload is in flight (the proxy holds it): its data
    blobs are already committed. A graceful stop should finish that commit (a few requests) so
    that no hour shows data without a manifest."""
    dataset = small_dataset()
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        async with manifest_holding_proxy(azurite) as (url, held):
            env = cli_env(
                sim.base_url,
                azure_container,
                AZURE_STORAGE_SAS_TOKEN=azurite.sas_token(),
                ASYNC_AMP_AZURE_ACCOUNT_URL=url,
            )
            args = ("2026-11-01T00", "2026-11-01T03", "--concurrency", "1")
            with cli(tmp_path, env, *args) as proc:
                with anyio.fail_after(30):
                    await held.wait()
                proc.send_signal(signal.SIGTERM)
                _, err = await communicate(proc, 30)
            assert proc.returncode == 143, err[-3000:]
    async with azurite.service_client() as service:
        blobs = await listing(service, azure_container)
    folders = {n.rsplit("/", 1)[0] for n in blobs if PROBE_PREFIX not in n}
    with_manifest = {n.rsplit("/", 1)[0] for n in blobs if n.endswith(MANIFEST_NAME)}
    assert folders == with_manifest, f"data without a manifest: {sorted(blobs)}"


# --- a failed attempt's staged data ------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault.CUT_BODY, Fault.CORRUPT_GZIP, Fault.HTTP_503, Fault.STALL],
    ids=lambda f: f.value,
)
async def test_fault_on_first_attempt_recovered_into_azure(
    azurite: Azurite, azure_container: str, tmp_path: Path, fault: Fault
) -> None:
    """The faulty hour is big enough (~27 MB of NDJSON, a ~2.8 MB ZIP, 1 MiB blocks) that the
    failed attempt had staged blocks before it broke (the client hands the decoder 1 MiB
    chunks); the retry commits only its own blocks, and the failed attempt's vanish."""
    hour = DAY1 + timedelta(hours=10)
    dataset = small_dataset(hour_sizes={hour: 15_000}, cache_dir=tmp_path / "cache")
    dataset.warm([hour])  # the ZIP is ready at once: only the fault makes the attempt fail
    first, last = hour - timedelta(hours=1), hour + timedelta(hours=1)
    plan = FaultPlan.on_first_attempt({hour: fault})
    sent: list[tuple[str, str]] = []
    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=plan, retry_after_s=1, stall_s=10
    ) as sim:
        # a short read timeout only where it is the point: a slow answer must not fail others
        timeouts = {"read_timeout_s": 3.0} if fault is Fault.STALL else {}
        config = make_config(sim.base_url, tmp_path, **timeouts)
        sink = azure_sink(azurite, azure_container, block_size_mib=1, record=sent)
        summary = await run(config, first, last, sink=sink)
        assert sim.request_count(hour=hour) == 2
    assert summary.exit_code == 0, summary.failed
    assert summary.retries == 1
    await assert_container_matches(azurite, azure_container, dataset, [first, hour, last])

    page0 = blob_name(dataset, hour, 0)
    staged = {  # the attempt prefix of every block staged for page 0
        base64.b64decode(parse_qs(urlsplit(url).query)["blockid"][0]).decode().rsplit("-", 1)[0]
        for method, url in sent
        if method == "PUT"
        and parse_qs(urlsplit(url).query).get("comp") == ["block"]
        and unquote(urlsplit(url).path).endswith(page0)
    }
    assert len(staged) == (1 if fault is Fault.HTTP_503 else 2), staged
    async with azurite.service_client() as service:
        marker = f"{folder_of(hour)}/{MANIFEST_NAME}"
        assert json.loads(await read(service, azure_container, marker))["attempts"] == 2
        for page in dataset.pages(hour):
            blob = service.get_blob_client(azure_container, blob_name(dataset, hour, page))
            committed, uncommitted = await blob.get_block_list("all")
            assert len({b.id.rsplit("-", 1)[0] for b in committed}) == 1  # one attempt's blocks
            assert uncommitted == []


# --- CLI user errors ------------------------------------------------------------------------------


def _wrong_key(azurite: Azurite, container: str) -> tuple[dict[str, str], list[str]]:
    wrong = base64.b64encode(os.urandom(64)).decode()
    conn = azurite.connection_string.replace(ACCOUNT_KEY, wrong)
    return {"AZURE_STORAGE_CONNECTION_STRING": conn}, [wrong, ACCOUNT_KEY]


def _missing_container(azurite: Azurite, container: str) -> tuple[dict[str, str], list[str]]:
    env = {
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "ASYNC_AMP_AZURE_CREATE_CONTAINER": "false",
    }
    return env, [ACCOUNT_KEY]


def _read_only_sas(azurite: Azurite, container: str) -> tuple[dict[str, str], list[str]]:
    sas = azurite.sas_token("rl", container=container)
    env = {"AZURE_STORAGE_SAS_TOKEN": sas, "ASYNC_AMP_AZURE_ACCOUNT_URL": azurite.account_url}
    return env, [sas, parse_qs(sas)["sig"][0]]


def _unreachable(azurite: Azurite, container: str) -> tuple[dict[str, str], list[str]]:
    sas = azurite.sas_token("racwdl")
    url = f"http://127.0.0.1:{free_port()}/devstoreaccount1"  # nothing listens there
    env = {"AZURE_STORAGE_SAS_TOKEN": sas, "ASYNC_AMP_AZURE_ACCOUNT_URL": url}
    return env, [sas, parse_qs(sas)["sig"][0]]


USER_ERRORS = {
    "wrong-account-key": (
        _wrong_key,
        "account key in AZURE_STORAGE_CONNECTION_STRING was rejected",
    ),
    "missing-container": (_missing_container, "does not exist"),
    "sas-without-write": (_read_only_sas, "lacks write permission"),
    "unreachable-account-url": (_unreachable, "cannot reach Azure Storage"),
}


@pytest.mark.parametrize("case", list(USER_ERRORS))
async def test_cli_user_error_is_one_line_exit_2_fast_and_secret_free(
    azurite: Azurite, azure_container: str, tmp_path: Path, case: str
) -> None:
    make_env, expected = USER_ERRORS[case]
    async with azurite.service_client() as service:
        if case == "sas-without-write":  # the container exists; the SAS may only read it
            await service.create_container(azure_container)
    extra, secrets = make_env(azurite, azure_container)
    env = cli_env("http://127.0.0.1:9", azure_container, **extra)  # Amplitude is never reached
    line, _ = await expect_user_error(tmp_path, env, expected, secrets)  # its seconds: bench errors
    assert azure_container in line
    async with azurite.service_client() as service:  # and nothing was written
        if case == "sas-without-write":
            assert await listing(service, azure_container) == {}


# --- memory -----------------------------------------------------------------------------------

BIG_EVENTS = 200_000  # ~340 MB of NDJSON in one hour, 2 partitions of ~170 MB

# Linux keeps the high-water RSS of the image a process had before exec in its ru_maxrss, and
# subprocess starts children with vfork: wait4 from pytest would report at least pytest's own
# peak RSS (often over 150 MB in a long session), not the CLI's. A tiny launcher spawns the CLI
# instead and reports what its wait4 saw: max(launcher, ~10 MiB; the CLI's own peak).
PEAK_RSS_LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


async def test_memory_bounded_for_a_large_hour_into_azure(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    big = DAY1 + timedelta(hours=12)
    dataset = Dataset(events_per_hour=0, pages_per_hour=2, hour_sizes={big: BIG_EVENTS})
    hour = f"{big:%Y-%m-%dT%H}"
    report = tmp_path / "peak-rss.txt"
    launcher = [sys.executable, "-c", PEAK_RSS_LAUNCHER, str(report)]
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        env = cli_env(
            sim.base_url,
            azure_container,
            AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
            ASYNC_AMP_AZURE_BLOB_CONTENT_MD5="true",  # the whole blob's MD5, checked below
        )
        with (tmp_path / "out.txt").open("w") as out, (tmp_path / "err.txt").open("w") as err:
            started = time.monotonic()
            with cli(
                tmp_path, env, hour, hour, "--quiet", stdout=out, stderr=err, launcher=launcher
            ) as proc:
                await anyio.to_thread.run_sync(proc.wait)
            elapsed = time.monotonic() - started
    maxrss_kib, code = (int(x) for x in report.read_text().split())
    assert proc.returncode == 0 and code == 0, (tmp_path / "err.txt").read_text()[-3000:]
    rss = maxrss_kib * 1024

    total = 0
    async with azurite.service_client() as service:
        blobs = await listing(service, azure_container)
        for page in dataset.pages(big):
            md5, sha = hashlib.md5(), hashlib.sha256()
            size = 0
            for chunk in dataset.iter_ndjson(big, page):
                md5.update(chunk)
                sha.update(chunk)
                size += len(chunk)
            props = blobs[blob_name(dataset, big, page)]
            assert props.size == size
            assert bytes(props.content_settings.content_md5) == md5.digest()
            assert props.metadata["sha256"] == sha.hexdigest()
            total += size
    assert total > 300 * MIB
    print(
        f"\n{total / MIB:.0f} MiB hour into Azurite in {elapsed:.1f} s "
        f"({total / MIB / elapsed:.0f} MiB/s); CLI peak RSS {rss / MIB:.0f} MiB"
    )
    # Measured on 2 cores (aiohttp 3.14, azure-storage-blob 12.x): 113 MiB. The CLI with the
    # Azure SDK loaded peaks at ~72 MiB on a tiny hour; a big hour adds ~5x the block size (the
    # block being filled, its bytes() copy, the copy aiohttp makes of the BytesIO it is sent
    # from, allocator slack) plus the decoder's ~10 MiB chunks, and nothing that grows with the
    # hour: 1 MiB blocks peak at 88 MiB, 4 MiB at 102, 32 MiB at 226. 160 MiB leaves ~45 MiB of
    # margin for other allocators and library versions, and is far below the ~500 MiB that
    # holding this hour (or even one of its ~170 MB partitions) would take.
    assert rss < 160 * MIB, f"peak RSS {rss / MIB:.0f} MiB for a {total / MIB:.0f} MiB hour"


# --- two runs at once, into Azure --------------------------------------------------------------


async def test_two_runs_at_once_into_one_container_both_end_complete(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    """Two extractions of the same range into the same container at the same time: whichever
    commits an hour second either finds it done or re-commits the same bytes (a block list
    raced by the other run is retried); both end green and the container holds each hour once."""
    dataset = small_dataset(events_per_hour=200)
    last = DAY1 + timedelta(hours=11)
    hours = list(hour_range(DAY1, last))
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=4)
        results: list[int] = []

        async def one() -> None:
            summary = await run(config, DAY1, last, sink=azure_sink(azurite, azure_container))
            results.append(summary.exit_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)
    assert results == [0, 0]
    checked = await assert_container_matches(azurite, azure_container, dataset, hours)
    assert checked.files == sum(len(dataset.pages(h)) for h in hours)
