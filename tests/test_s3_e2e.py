"""S3 end to end: the real pipeline and CLI, the simulated Export API, a real S3 server (moto's
standalone server on loopback, IAM enforced).

What the S3 sink issue asks for, proved through the whole path (HTTP -> unzip -> gunzip ->
multipart parts -> commit), never by poking the sink directly:

- objects byte-identical to the source partitions, one manifest per hour, right content types
  and metadata, no incomplete upload left (``assert_bucket_matches``; the two-day run, its
  resume from one listing, ``--force`` and the whole fault matrix run for every storage in
  tests/test_storage_e2e.py);
- a SIGKILLed CLI run leaves only whole hours visible; the rerun aborts the killed run's
  incomplete uploads and completes exactly what is missing;
- a failed first attempt's parts are aborted;
- user errors with ``--sink s3`` (read-only or wrong credentials, missing bucket, unreachable
  endpoint) are one line, exit 2, and free of secrets;
- ``status`` and ``verify`` read the bucket back.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from async_amp.config import S3Config
from async_amp.hours import hour_range, iso_hour
from async_amp.output.manifest import MANIFEST_NAME, hour_folder
from async_amp.output.marker import MARKER_NAME
from async_amp.output.stores.leases import LEASE_FOLDER
from async_amp.output.stores.s3 import S3Sink
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.dataset import Dataset
from async_amp.simulator.server import Fault, FaultPlan, Latency, run_simulator

from .azurite import free_port
from .e2e import cli, communicate, e2e_env, expect_user_error, wait_until
from .helpers import DAY1, KEY, SECRET, make_config, run, small_dataset
from .s3 import S3Key, S3ServerProcess, admin_client

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

pytestmark = [pytest.mark.anyio, pytest.mark.s3]

PROJECT = "website"
PREFIX = "amplitude"  # [s3] prefix default
RUN_ID = "test-run"  # tests.helpers.run extracts with this run id
MIB = 1024 * 1024
Sent = list[tuple[str, str]]


# --- helpers -----------------------------------------------------------------------------------


def s3_config(server: S3ServerProcess, bucket: str, **overrides: Any) -> S3Config:
    overrides.setdefault("retries", 1)
    return S3Config(
        bucket=bucket, endpoint_url=server.endpoint_url, addressing_style="path", **overrides
    )


async def s3_sink(
    server: S3ServerProcess,
    bucket: str,
    *,
    key: S3Key | None = None,
    record: Sent | None = None,
    **overrides: Any,
) -> S3Sink:
    """The production sink on the test server (admin credentials, short retries)."""
    environ = (key or server.admin).environ()
    sink = S3Sink.from_config(
        s3_config(server, bucket, **overrides), run_id=RUN_ID, environ=environ
    )
    if record is not None:

        def hook(request: Any, **_: Any) -> None:
            record.append((request.method, request.url))

        (await sink.client()).meta.events.register("before-send.s3", hook)
    return sink


def folder_of(hour: datetime) -> str:
    return f"{PREFIX}/{hour_folder(PROJECT, hour)}"


def object_key(dataset: Dataset, hour: datetime, page: int, *, keep_gzip: bool = False) -> str:
    base = dataset.member_name(hour, page).split("/", 1)[1]
    return f"{folder_of(hour)}/{base if keep_gzip else base.removesuffix('.gz')}"


async def listing(client: S3Client, bucket: str) -> list[str]:
    keys: list[str] = []
    async for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys.extend(o["Key"] for o in page.get("Contents", ()))
    return keys


async def uploads(client: S3Client, bucket: str) -> list[str]:
    """Keys with an incomplete multipart upload (invisible to listings and reads)."""
    answer = await client.list_multipart_uploads(Bucket=bucket)
    return sorted(u["Key"] for u in answer.get("Uploads", ()))


async def read(client: S3Client, bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
    answer = await client.get_object(Bucket=bucket, Key=key)
    async with answer["Body"] as body:
        data = await body.read()
    return data, {"type": answer["ContentType"], "metadata": answer["Metadata"]}


async def assert_bucket_matches(
    server: S3ServerProcess,
    bucket: str,
    dataset: Dataset,
    hours: list[datetime],
    *,
    keep_gzip: bool = False,
) -> tuple[int, int]:
    """Exactly the hours' objects and nothing else: every partition byte-identical to the
    source, one manifest per hour describing exactly its objects, no incomplete upload, no
    lease. Returns (files, bytes)."""
    files = size = 0
    async with admin_client(server) as client:
        keys = set(await listing(client, bucket))
        keys.discard(f"{PREFIX}/{PROJECT}/{MARKER_NAME}")  # the CLI records the output's format
        assert await uploads(client, bucket) == []
        expected: set[str] = set()
        for hour in hours:
            marker = f"{folder_of(hour)}/{MANIFEST_NAME}"
            assert marker in keys, f"{iso_hour(hour)} has no manifest"
            raw, props = await read(client, bucket, marker)
            manifest = json.loads(raw)
            pages = dataset.pages(hour)
            status = "complete" if pages else "empty"
            assert props["type"] == "application/json"
            assert props["metadata"] == {
                "hour": iso_hour(hour),
                "status": status,
                "events": str(manifest["events"]),
                "run_id": manifest["run_id"],
            }
            assert (manifest["hour"], manifest["status"]) == (iso_hour(hour), status)
            assert manifest["events"] == sum(dataset.event_count(hour, p) for p in pages)
            expected.add(marker)
            entries = {f["name"]: f for f in manifest["files"]}
            assert len(entries) == len(pages), f"{iso_hour(hour)}: {sorted(entries)}"
            for page in pages:
                key = object_key(dataset, hour, page, keep_gzip=keep_gzip)
                expected.add(key)
                data, props = await read(client, bucket, key)
                want = dataset.gz(hour, page) if keep_gzip else dataset.ndjson(hour, page)
                assert data == want, f"{key} differs from the source partition"
                entry = entries[key.rsplit("/", 1)[1]]
                assert (entry["bytes"], entry["events"]) == (
                    len(data),
                    dataset.event_count(hour, page),
                )
                assert props["type"] == (
                    "application/gzip" if keep_gzip else "application/x-ndjson"
                )
                assert props["metadata"] == {
                    "hour": iso_hour(hour),
                    "source": dataset.member_name(hour, page),
                    "run_id": manifest["run_id"],  # the run that wrote the manifest wrote the data
                }
                files += 1
                size += len(data)
    stray, missing = keys - expected, expected - keys
    assert not stray and not missing, f"stray {sorted(stray)}, missing {sorted(missing)}"
    return files, size


def s3_env(
    server: S3ServerProcess, bucket: str, base_url: str, key: S3Key | None = None, **extra: str
) -> dict[str, str]:
    """The CLI's environment for ``--sink s3`` into ``bucket`` on the test server."""
    settings = {
        "ASYNC_AMP_OUTPUT_SINK": "s3",
        "ASYNC_AMP_S3_BUCKET": bucket,
        "ASYNC_AMP_S3_ENDPOINT_URL": server.endpoint_url,
        "ASYNC_AMP_S3_ADDRESSING_STYLE": "path",
        "ASYNC_AMP_S3_RETRIES": "1",
        **(key or server.admin).environ(),
    }
    return e2e_env(base_url, **{**settings, **extra})


# --- interrupted runs (two days, --force and the fault matrix: tests/test_storage_e2e.py) ---------

INTERRUPT_LAST = DAY1 + timedelta(hours=11)
STALLED = (DAY1 + timedelta(hours=4), DAY1 + timedelta(hours=5))


async def test_sigkill_mid_run_leaves_no_visible_partial_hour_and_rerun_aborts_its_uploads(
    s3_server: S3ServerProcess, s3_bucket: str, tmp_path: Path
) -> None:
    """Hours 00-03 finish; 04 and 05 stall half way through their body with parts already
    uploaded (both requests in flight at concurrency 2, no commit in progress); 06-11 are not
    started. SIGKILL lands in that state, deterministically.

    The stalled hours are big (~25 MB of NDJSON, 3 partitions of ~8 MB): half a body holds more
    than one 5 MiB part of partition 0."""
    quiet = frozenset({DAY1.replace(hour=1), DAY1.replace(hour=8)})
    dataset = small_dataset(
        events_per_hour=1000, quiet_hours=quiet, hour_sizes=dict.fromkeys(STALLED, 15_000)
    )
    hours = list(hour_range(DAY1, INTERRUPT_LAST))
    finished = [h for h in hours if h < STALLED[0]]
    stall = FaultPlan.on_first_attempt(dict.fromkeys(STALLED, Fault.STALL))
    staged = sorted(object_key(dataset, h, 0) for h in STALLED)
    with BackgroundSimulator(
        dataset,
        api_key=KEY,
        secret_key=SECRET,
        faults=stall,
        stall_s=60,
        latency=Latency(fixed_s=0.2),
    ) as sim:
        env = s3_env(s3_server, s3_bucket, sim.base_url, ASYNC_AMP_S3_PART_SIZE_MIB="5")
        args = ("2026-11-01T00", "2026-11-01T11", "--concurrency", "2")
        async with admin_client(s3_server) as client:

            async def mid_run() -> bool:
                keys = set(await listing(client, s3_bucket))
                done = all(f"{folder_of(h)}/{MANIFEST_NAME}" in keys for h in finished)
                return done and set(staged) <= set(await uploads(client, s3_bucket))

            with cli(tmp_path, env, *args) as proc:
                await wait_until(mid_run, proc, "hours 00-03 done and 04-05 uploading parts")
                proc.send_signal(signal.SIGKILL)
                _, err = await communicate(proc, 30)
            assert proc.returncode == -signal.SIGKILL, err[-3000:]

            # Whatever is visible is whole: the manifests present describe exactly their
            # objects, an hour without a manifest shows no data object at all.
            keys = [
                k
                for k in await listing(client, s3_bucket)
                if LEASE_FOLDER not in k and not k.endswith(MARKER_NAME)  # the output's marker
            ]
            with_manifest = {k.rsplit("/", 1)[0] for k in keys if k.endswith(MANIFEST_NAME)}
            assert with_manifest == {folder_of(h) for h in finished}
            assert {k.rsplit("/", 1)[0] for k in keys} == with_manifest, sorted(keys)
            for key in staged:  # invisible: no object, only an incomplete upload
                assert key not in keys
            assert set(staged) <= set(await uploads(client, s3_bucket))
            leases = [k for k in await listing(client, s3_bucket) if LEASE_FOLDER in k]
            assert len(leases) == 1  # the killed run's, left behind

            sim.reset_log()
            with cli(tmp_path, env, *args) as rerun:
                _, err = await communicate(rerun, 60)
            assert rerun.returncode == 0, err[-3000:]
            asked = sorted(r.start for r in sim.requests if r.start is not None)
            assert asked == [h for h in hours if h not in finished]  # once each, nothing redone

    # the killed run's uploads were aborted (no upload left), its lease removed
    await assert_bucket_matches(s3_server, s3_bucket, dataset, hours)


# --- a failed attempt's staged data ------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.CUT_BODY, Fault.CORRUPT_GZIP], ids=lambda f: f.value)
async def test_a_failed_attempts_parts_are_aborted_and_the_retry_commits_its_own(
    s3_server: S3ServerProcess, s3_bucket: str, tmp_path: Path, fault: Fault
) -> None:
    """The faulty hour is big (~27 MB of NDJSON, 5 MiB parts): its failed attempt had uploaded
    parts before it broke. The retry uploads and completes its own; the failed attempt's upload
    is aborted at once (none is left), and partition 0 is made of one upload's parts."""
    hour = DAY1 + timedelta(hours=10)
    dataset = small_dataset(hour_sizes={hour: 15_000}, cache_dir=tmp_path / "cache")
    dataset.warm([hour])  # the ZIP is ready at once: only the fault makes the attempt fail
    first, last = hour - timedelta(hours=1), hour + timedelta(hours=1)
    sent: Sent = []
    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=FaultPlan.on_first_attempt({hour: fault})
    ) as sim:
        config = make_config(sim.base_url, tmp_path)
        sink = await s3_sink(s3_server, s3_bucket, part_size_mib=5, record=sent)
        summary = await run(config, first, last, sink=sink)
        assert sim.request_count(hour=hour) == 2
    assert summary.exit_code == 0, summary.failed
    await assert_bucket_matches(s3_server, s3_bucket, dataset, [first, hour, last])

    page0 = object_key(dataset, hour, 0)
    queries = [
        (m, parse_qs(urlsplit(u).query, keep_blank_values=True))
        for m, u in sent
        if unquote(urlsplit(u).path).endswith(page0)
    ]
    created = [q for m, q in queries if m == "POST" and "uploads" in q]
    parts = {q["uploadId"][0] for m, q in queries if m == "PUT" and "partNumber" in q}
    aborted = {q["uploadId"][0] for m, q in queries if m == "DELETE" and "uploadId" in q}
    completed = {q["uploadId"][0] for m, q in queries if m == "POST" and "uploadId" in q}
    assert len(created) == 2 and len(parts) == 2  # both attempts uploaded parts
    assert len(aborted) == 1 and len(completed) == 1 and aborted | completed == parts
    async with admin_client(s3_server) as client:
        marker = f"{folder_of(hour)}/{MANIFEST_NAME}"
        assert json.loads((await read(client, s3_bucket, marker))[0])["attempts"] == 2


async def test_no_request_waits_for_100_continue(
    s3_server: S3ServerProcess, s3_bucket: str
) -> None:
    """botocore asks for ``Expect: 100-continue`` on every PUT; aiohttp then writes the
    headers from a task of its own, and a store that dies at that moment left that task's
    ConnectionResetError unretrieved (an asyncio traceback on a run that stopped cleanly).
    The sink sends its bodies at once: none of its requests carries the header."""
    expects: list[str | None] = []
    sink = await s3_sink(s3_server, s3_bucket, part_size_mib=5)

    def hook(request: Any, **_: Any) -> None:
        expects.append(request.headers.get("Expect"))

    async with sink:
        (await sink.client()).meta.events.register("before-send.s3", hook)
        await sink.put_key("x/small.json", b"{}" * 512, "application/json")
        upload = await (await sink.client()).create_multipart_upload(Bucket=s3_bucket, Key="x/p")
        await (await sink.client()).upload_part(
            Bucket=s3_bucket, Key="x/p", UploadId=upload["UploadId"], PartNumber=1, Body=b"a" * 64
        )
    assert len(expects) == 3 and expects == [None, None, None], expects
    async with admin_client(s3_server) as client:
        assert (await read(client, s3_bucket, "x/small.json"))[0] == b"{}" * 512


# --- prepare(): which incomplete uploads are orphans ----------------------------------------------


async def test_prepare_aborts_orphaned_uploads_unless_another_run_is_live(
    s3_server: S3ServerProcess, s3_bucket: str
) -> None:
    """Incomplete uploads under the prefix, one with no lease at all, one of a run whose process
    is gone (its lease names a dead pid). First a live run (this process) holds a lease too:
    prepare() must not abort anything (the uploads could be that run's). Once it is gone, the
    next prepare() aborts both and deletes the dead lease; an upload outside the prefix is never
    touched."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    leases = f"{PREFIX}/{LEASE_FOLDER}"
    data = f"{PREFIX}/{PROJECT}/date=2026-11-01"
    orphans = [f"{data}/hour=00/orphan#0.json", f"{data}/hour=01/dead#0.json"]
    async with admin_client(s3_server) as client:

        async def lease(run: str, pid: int) -> None:
            body = {"run_id": run, "host": socket.gethostname(), "pid": pid, "started": now}
            await client.put_object(
                Bucket=s3_bucket, Key=f"{leases}/{run}.json", Body=json.dumps(body).encode()
            )

        await lease("dead-run", dead.pid)
        await lease("live-run", os.getpid())
        for key in [*orphans, "elsewhere/not-ours.json"]:
            await client.create_multipart_upload(Bucket=s3_bucket, Key=key)

        async with await s3_sink(s3_server, s3_bucket) as sink:
            await sink.prepare()
            assert sink.leases.aborted == []
        assert await uploads(client, s3_bucket) == sorted([*orphans, "elsewhere/not-ours.json"])
        assert sorted(await listing(client, s3_bucket)) == [f"{leases}/live-run.json"]

        await client.delete_object(Bucket=s3_bucket, Key=f"{leases}/live-run.json")  # it ended
        async with await s3_sink(s3_server, s3_bucket) as sink:
            await sink.prepare()
            assert sorted(sink.leases.aborted) == orphans
        assert await uploads(client, s3_bucket) == ["elsewhere/not-ours.json"]
        assert await listing(client, s3_bucket) == []  # this run's lease went with it


# --- reading back ---------------------------------------------------------------------------------


async def test_status_and_verify_read_the_bucket_back(
    s3_server: S3ServerProcess, s3_bucket: str, tmp_path: Path
) -> None:
    first, last = DAY1, DAY1 + timedelta(hours=2)
    dataset = small_dataset()
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        await run(
            make_config(sim.base_url, tmp_path),
            first,
            last,
            sink=await s3_sink(s3_server, s3_bucket),
        )
    env = s3_env(s3_server, s3_bucket, "http://127.0.0.1:9", key=s3_server.read_only)
    span = ["--start", "2026-11-01T00", "--end", "2026-11-01T03", "--json"]

    def command(name: str) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "async_amp", name, *span]
        return subprocess.run(
            args, check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    status = command("status")  # read-only credentials are enough
    assert status.returncode == 0, status.stderr
    totals = json.loads(status.stdout)["totals"]
    assert (totals["complete"], totals["missing"]) == (3, 1), totals  # hour 03 was never asked
    verified = command("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True

    key = object_key(dataset, DAY1 + timedelta(hours=1), 1)
    async with admin_client(s3_server) as client:  # one partition changes behind our back
        await client.put_object(Bucket=s3_bucket, Key=key, Body=b'{"tampered": true}\n')
    tampered = command("verify")
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert key.rsplit("/", 1)[1] in tampered.stdout


# --- CLI user errors ------------------------------------------------------------------------------

UserErrorCase = Callable[[S3ServerProcess, str], tuple[dict[str, str], list[str]]]


def _read_only(server: S3ServerProcess, bucket: str) -> tuple[dict[str, str], list[str]]:
    key = server.read_only
    return s3_env(server, bucket, "http://127.0.0.1:9", key=key), [key.secret_access_key]


def _wrong_secret(server: S3ServerProcess, bucket: str) -> tuple[dict[str, str], list[str]]:
    wrong = S3Key(server.admin.access_key_id, "x" * 40)
    return s3_env(server, bucket, "http://127.0.0.1:9", key=wrong), [
        wrong.secret_access_key,
        server.admin.secret_access_key,
    ]


def _missing_bucket(server: S3ServerProcess, bucket: str) -> tuple[dict[str, str], list[str]]:
    env = s3_env(server, bucket + "-missing", "http://127.0.0.1:9")
    return env, [server.admin.secret_access_key]


def _unreachable(server: S3ServerProcess, bucket: str) -> tuple[dict[str, str], list[str]]:
    env = s3_env(
        server,
        bucket,
        "http://127.0.0.1:9",
        ASYNC_AMP_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
    )
    return env, [server.admin.secret_access_key]


USER_ERRORS: dict[str, tuple[UserErrorCase, str]] = {
    "read-only-credentials": (
        _read_only,
        "access denied for the credentials from AWS_ACCESS_KEY_ID",
    ),
    "wrong-secret": (_wrong_secret, "were rejected (SignatureDoesNotMatch)"),
    "missing-bucket": (_missing_bucket, "does not exist"),
    "unreachable-endpoint": (_unreachable, "cannot reach http://127.0.0.1:"),
}


@pytest.mark.parametrize("case", list(USER_ERRORS))
async def test_cli_user_error_is_one_line_exit_2_and_secret_free(
    s3_server: S3ServerProcess, s3_bucket: str, tmp_path: Path, case: str
) -> None:
    make_env, expected = USER_ERRORS[case]
    env, secrets = make_env(s3_server, s3_bucket)
    line, elapsed = await expect_user_error(tmp_path, env, expected, secrets)
    assert s3_bucket in line
    print(f"\n{case}: exit 2 after {elapsed:.1f} s: {line}")  # timed by make bench, not here
    async with admin_client(s3_server) as client:  # and nothing was written
        assert await listing(client, s3_bucket) == []


# --- formats ---------------------------------------------------------------------------------------


async def test_parquet_on_s3_reads_back_like_the_local_output(
    s3_server: S3ServerProcess, s3_bucket: str, tmp_path: Path
) -> None:
    """``format = "parquet"`` wraps the S3 sink like any other (no S3-specific code in the
    format layer): every hour's Parquet files, downloaded as a reader sees them, match the
    simulator row for row, and DuckDB reads the tree."""
    from dataclasses import replace

    import duckdb

    from async_amp.output.stores import make_sink

    from .test_parquet_e2e import assert_parquet_matches, parquet_config

    dataset = small_dataset()
    last = DAY1 + timedelta(hours=5)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        base = parquet_config(sim.base_url, tmp_path / "unused")
        config = replace(
            base,
            output=replace(base.output, sink="s3"),
            s3=s3_config(s3_server, s3_bucket),
        )
        sink = make_sink(config, run_id=RUN_ID, environ=s3_server.admin.environ())
        summary = await run(config, DAY1, last, sink=sink)
    assert summary.exit_code == 0, summary.failed
    root = tmp_path / "copy"
    async with admin_client(s3_server) as client:
        assert await uploads(client, s3_bucket) == []
        for key in await listing(client, s3_bucket):
            target = root / key.removeprefix(f"{PREFIX}/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((await read(client, s3_bucket, key))[0])
            if key.endswith(".parquet"):
                assert (await read(client, s3_bucket, key))[1]["type"] == (
                    "application/vnd.apache.parquet"
                )
    events = sum(dataset.hour_event_count(h) for h in hour_range(DAY1, last))
    assert assert_parquet_matches(root, dataset, DAY1, last) == events  # row for row
    glob = str(root / PROJECT / "*" / "*" / "*.parquet")
    ((rows,),) = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = true)"
    ).fetchall()
    assert rows == events
