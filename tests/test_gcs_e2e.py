"""GCS end to end: the real pipeline and CLI, the simulated Export API, fake-gcs-server behind
the front of tests/gcs.py (service-account tokens, read-only role, generation preconditions,
chunk failures).

The scenarios every storage passes (two days byte-identical and resumed from one listing,
``--force`` leaving no stale file, every fault class recovered) run in
tests/test_storage_e2e.py; here is what only GCS has:

- user errors with ``--sink gcs`` (a key the token endpoint refuses, a read-only account, a
  missing bucket, an unreachable endpoint, a key file that is not one) are one line, exit 2,
  secret-free, and write nothing;
- a chunk that fails half-kept is resumed from what GCS says it kept, byte-identical;
- the manifest is written only where none exists, and stale files are deleted only at the
  generation listed;
- ``status`` and ``verify`` read the bucket back.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from async_amp.config import GcsConfig
from async_amp.errors import StorageError
from async_amp.output.stores.gcs_client import GcsClient
from async_amp.output.stores.shared import TIMEOUT_RETRIES
from async_amp.simulator.server import run_simulator

from .azurite import free_port
from .e2e import e2e_env, expect_user_error
from .gcs import (
    GcsFront,
    assert_gcs_bucket_matches,
    gcs_environ,
    gcs_objects,
    gcs_sink,
)
from .helpers import DAY1, KEY, NOW, SECRET, make_config, run, small_dataset

pytestmark = [pytest.mark.anyio, pytest.mark.gcs]

PROJECT = "website"


def _env(front: GcsFront, bucket: str, account: str = "writer", **extra: str) -> dict[str, str]:
    settings = {
        "ASYNC_AMP_OUTPUT_SINK": "gcs",
        "ASYNC_AMP_GCS_BUCKET": bucket,
        "ASYNC_AMP_GCS_ENDPOINT_URL": front.url,
        "ASYNC_AMP_GCS_RETRIES": "1",
        **gcs_environ(front, account),
    }
    return e2e_env("http://127.0.0.1:9", **{**settings, **extra})


def _private_key(front: GcsFront, account: str) -> str:
    return str(json.loads(front.key_file(account).read_text())["private_key"])


USER_ERRORS = {
    "refused-key": ("stranger", {}, "were refused by the token endpoint (400"),
    "read-only-account": ("reader", {}, "access denied for the credentials from"),
    "missing-bucket": ("writer", {"bucket": "-missing"}, "does not exist"),
    "unreachable-endpoint": ("writer", {"endpoint": ""}, "cannot reach http://127.0.0.1:"),
    "not-a-key-file": ("writer", {"key_file": "{}"}, "is no Google credentials file"),
}


@pytest.mark.parametrize("case", list(USER_ERRORS))
async def test_cli_user_error_is_one_line_exit_2_and_secret_free(
    gcs_front: GcsFront, gcs_bucket: str, tmp_path: Path, case: str
) -> None:
    account, change, expected = USER_ERRORS[case]
    env = _env(gcs_front, gcs_bucket + change.get("bucket", ""), account)
    if "endpoint" in change:
        env["ASYNC_AMP_GCS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    if "key_file" in change:
        bad = tmp_path / "key.json"
        bad.write_text(change["key_file"])
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(bad)
    secrets = [_private_key(gcs_front, a).splitlines()[1] for a in ("writer", "reader", "stranger")]
    line, elapsed = await expect_user_error(tmp_path, env, expected, secrets)
    assert gcs_bucket in line or case == "not-a-key-file", line
    print(f"\n{case}: exit 2 after {elapsed:.1f} s: {line}")
    assert await gcs_objects(gcs_front.emulator_url, gcs_bucket) == {}  # nothing written


async def test_a_chunk_that_fails_half_kept_resumes_where_gcs_stopped(
    gcs_front: GcsFront, gcs_bucket: str, tmp_path: Path
) -> None:
    """1 MiB chunks of 2-3 MiB files; the first three chunk uploads fail after the front kept
    half of each: the sink asks the session what it holds and sends the rest, no hour is
    re-asked of Amplitude, and every file is byte-identical."""
    dataset = small_dataset(events_per_hour=6000, pages_per_hour=2)
    hours = [DAY1, DAY1 + timedelta(hours=1)]
    assert all(len(dataset.ndjson(h, p)) > 2 * 1024 * 1024 for h in hours for p in (0, 1))
    gcs_front.fail_next_chunks(3)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path)
        sink = gcs_sink(gcs_front, gcs_bucket, chunk_size_mib=1)
        summary = await run(config, hours[0], hours[-1], sink=sink)
        assert sim.request_count() == 2  # resumed in the store, not re-asked
    assert gcs_front.failures_left == 0  # all three failures happened
    assert summary.exit_code == 0 and summary.retries == 0, summary.failed
    await assert_gcs_bucket_matches(gcs_front.emulator_url, gcs_bucket, dataset, hours)


async def test_the_manifest_is_written_only_where_none_exists(
    gcs_front: GcsFront, gcs_bucket: str
) -> None:
    """Two commits of one hour racing: the second finds the first's manifest and fails
    (412) instead of writing over it; a delete at a stale generation leaves the object."""
    sink = gcs_sink(gcs_front, gcs_bucket)
    name = sink.name("website/date=2026-11-01/hour=00/_manifest.json")
    first = await sink.put_small(name, b"{}", "application/json", {}, if_absent=True)
    with pytest.raises(StorageError, match="another run wrote it"):
        await sink.put_small(name, b"[]", "application/json", {}, if_absent=True)
    await sink.delete([(name, first + 1)])
    assert await sink.get_bytes(name) == b"{}"
    await sink.delete([(name, first)])
    assert await sink.get_bytes(name) is None
    await sink.aclose()


async def test_status_and_verify_read_the_bucket_back(
    gcs_front: GcsFront, gcs_bucket: str, tmp_path: Path
) -> None:
    first, last = DAY1, DAY1 + timedelta(hours=2)
    dataset = small_dataset()
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = make_config(sim.base_url, tmp_path)
        await run(config, first, last, sink=gcs_sink(gcs_front, gcs_bucket))
    env = _env(gcs_front, gcs_bucket, "reader")  # the read-only account is enough
    span = ["--start", "2026-11-01T00", "--end", "2026-11-01T03", "--json"]

    def command(name: str) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "async_amp", name, *span]
        return subprocess.run(
            args, check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    found = command("status")
    assert found.returncode == 0, found.stderr
    totals = json.loads(found.stdout)["totals"]
    assert (totals["complete"], totals["missing"]) == (3, 1), totals  # hour 03 was never asked
    verified = command("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True

    base = dataset.member_name(DAY1 + timedelta(hours=1), 1).split("/", 1)[1].removesuffix(".gz")
    name = f"amplitude/{PROJECT}/date=2026-11-01/hour=01/{base}"
    writer = gcs_sink(gcs_front, gcs_bucket)  # one partition changes behind our back
    await writer.put_small(
        name, b'{"tampered": true}\n', "application/x-ndjson", {}, if_absent=False
    )
    await writer.aclose()
    tampered = command("verify")
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert base in tampered.stdout


async def test_parquet_on_gcs_reads_back_like_the_local_output(
    gcs_front: GcsFront, gcs_bucket: str, tmp_path: Path
) -> None:
    """``format = "parquet"`` wraps the GCS sink like any other: every hour's Parquet files,
    downloaded as a reader sees them, match the simulator row for row."""
    from dataclasses import replace

    from async_amp.hours import hour_range
    from async_amp.output.stores import make_sink

    from .gcs import gcs_config, gcs_read
    from .test_parquet_e2e import assert_parquet_matches, parquet_config

    dataset = small_dataset()
    last = DAY1 + timedelta(hours=3)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        base = parquet_config(sim.base_url, tmp_path / "unused")
        config = replace(
            base, output=replace(base.output, sink="gcs"), gcs=gcs_config(gcs_front, gcs_bucket)
        )
        sink = make_sink(config, run_id="test-run", environ=gcs_environ(gcs_front))
        summary = await run(config, DAY1, last, sink=sink)
    assert summary.exit_code == 0, summary.failed
    root = tmp_path / "copy"
    objects = await gcs_objects(gcs_front.emulator_url, gcs_bucket)
    for name, item in objects.items():
        target = root / name.removeprefix("amplitude/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(await gcs_read(gcs_front.emulator_url, gcs_bucket, name))
        if name.endswith(".parquet"):
            assert item["contentType"] == "application/vnd.apache.parquet"
    events = sum(dataset.hour_event_count(h) for h in hour_range(DAY1, last))
    assert assert_parquet_matches(root, dataset, DAY1, last) == events  # row for row


async def test_a_silent_store_is_asked_twice_not_retries_plus_one_times() -> None:
    """A server that takes connections and never answers (a stalled store): each call times
    out after read_timeout_s and is tried once more, not ``retries`` (4) more times, so a
    stalled GCS stops the run in about a minute, as Azure and S3 do (tests/test_systemic.py)."""
    taken: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        taken.append(writer)  # kept open, never answered

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    config = GcsConfig(
        bucket="b",
        endpoint_url=f"http://127.0.0.1:{port}",
        anonymous=True,
        retries=4,
        read_timeout_s=0.3,
    )
    client = GcsClient(config, {})
    try:
        with pytest.raises(TimeoutError):
            await client.request("GET", client.object_url("x.json"))
    finally:
        await client.aclose()
        for writer in taken:
            writer.close()
        server.close()
        await server.wait_closed()
    assert len(taken) == 1 + TIMEOUT_RETRIES


async def test_delta_on_gcs_reads_back_and_passes_status_and_verify(
    gcs_front: GcsFront, gcs_xml_url: str, gcs_bucket: str, tmp_path: Path
) -> None:
    """``format = "delta"`` on ``gs://``: delta-rs writes the table through object_store's XML
    API (the front serves what fake-gcs-server lacks, tests/gcs_xml.py) with the service
    account's own key; deltalake reads it back with the read-only account, row for row and
    uuid for uuid against what the simulator served; ``status`` and ``verify`` pass;
    ``compact`` turns the day's nine hourly files into one, the same rows."""
    from collections import Counter
    from dataclasses import replace
    from typing import Any

    import anyio
    from deltalake import DeltaTable

    from async_amp import api
    from async_amp.output.maintain import compact
    from async_amp.output.stores import make_sink

    from .delta_helpers import expected_rows_per_hour, expected_uuids, rows_per_hour
    from .gcs import gcs_config

    dataset = small_dataset()
    first, last = DAY1, DAY1 + timedelta(hours=2)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        base = make_config(sim.base_url, tmp_path, concurrency=3)
        config = replace(
            base,
            output=replace(base.output, sink="gcs", format="delta"),
            gcs=gcs_config(gcs_front, gcs_bucket, endpoint_url=gcs_xml_url),
        )
        sink = make_sink(config, run_id="test-run", environ=gcs_environ(gcs_front))
        summary = await run(config, first, last, sink=sink)
    assert summary.exit_code == 0, summary.failed

    reader = {
        "google_service_account": str(gcs_front.key_file("reader")),
        "google_base_url": gcs_xml_url,
        "allow_http": "true",
    }
    table = DeltaTable(f"gs://{gcs_bucket}/amplitude/{PROJECT}", storage_options=reader)
    rows = table.to_pyarrow_table()
    assert rows_per_hour(rows) == expected_rows_per_hour(dataset, first, last)
    assert Counter(rows["uuid"].to_pylist()) == expected_uuids(dataset, first, last)

    reading = replace(config, environ=gcs_environ(gcs_front, "reader"))
    found = await api.status(reading, start=first, end=last + timedelta(hours=1), now=NOW)
    totals = found.to_json()["totals"]
    assert (totals["complete"], totals["missing"]) == (3, 1), totals  # hour 03 never asked
    env = _env(gcs_front, gcs_bucket, "reader", ASYNC_AMP_OUTPUT_FORMAT="delta")
    env["ASYNC_AMP_GCS_ENDPOINT_URL"] = gcs_xml_url
    span = ["--start", "2026-11-01T00", "--end", "2026-11-01T02", "--json"]
    verified = subprocess.run(
        [sys.executable, "-m", "async_amp", "verify", *span],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["ok"] is True

    def nightly() -> list[tuple[str, Any]]:  # compact: the day's hourly files become one
        writer = gcs_environ(gcs_front)
        return compact(config, first=first, last=last, projects=[PROJECT], environ=writer)

    [(_, day)] = await anyio.to_thread.run_sync(nightly)
    assert (day.files_removed, day.files_added, day.rows) == (9, 1, len(rows))
    table = DeltaTable(f"gs://{gcs_bucket}/amplitude/{PROJECT}", storage_options=reader)
    assert Counter(table.to_pyarrow_table()["uuid"].to_pylist()) == expected_uuids(
        dataset, first, last
    )


async def test_a_stale_writer_on_gcs_conflicts_on_the_generation_precondition(
    gcs_front: GcsFront, gcs_xml_url: str, gcs_bucket: str, tmp_path: Path
) -> None:
    """Each log entry is created with ``x-goog-if-generation-match: 0``: of two writers of
    one hour, the stale one's commit is refused (412) and redone, as on S3."""
    import anyio

    from async_amp.output.delta.location import gcs_locator

    from .gcs import gcs_config
    from .test_delta_s3 import stale_writer

    config = gcs_config(gcs_front, gcs_bucket, endpoint_url=gcs_xml_url)
    location = gcs_locator(config, gcs_environ(gcs_front))("t")
    await anyio.to_thread.run_sync(stale_writer, location, tmp_path)


async def test_checkpoint_writes_on_gcs_are_conditional(
    gcs_front: GcsFront, gcs_xml_url: str, gcs_bucket: str
) -> None:
    """A checkpoint is created only if its name is free (``x-goog-if-generation-match: 0``),
    ``_last_checkpoint`` replaced only at the generation read, as on Azure and S3."""
    import anyio

    from async_amp.output.delta.location import gcs_locator

    from .gcs import gcs_config
    from .test_delta_checkpoint import two_writers_at_once

    config = gcs_config(gcs_front, gcs_bucket, endpoint_url=gcs_xml_url)
    location = gcs_locator(config, gcs_environ(gcs_front))("t")
    await anyio.to_thread.run_sync(two_writers_at_once, location)


def test_delta_reaches_gcs_with_the_sinks_endpoint_and_credentials(tmp_path: Path) -> None:
    """delta-rs' storage options: the endpoint, a service-account key by path (object_store
    signs its own JWT with it), a gcloud user's file as application credentials, nothing for
    ADC (object_store finds gcloud's file or the metadata server itself), no secret ever;
    credentials object_store cannot use are refused in one line."""
    from async_amp.errors import ConfigError
    from async_amp.output.delta.location import gcs_locator

    def key(kind: str, **fields: str) -> dict[str, str]:
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps({"type": kind, **fields}))
        return {"GOOGLE_APPLICATION_CREDENTIALS": str(path)}

    config = GcsConfig(bucket="b-1", prefix="lake/", endpoint_url="http://127.0.0.1:4443/")
    account = key("service_account", client_email="a@p.iam.gserviceaccount.com", private_key="k")
    location = gcs_locator(config, account)("website")
    assert location.uri == "gs://b-1/lake/website"
    assert location.options() == {
        "google_base_url": "http://127.0.0.1:4443",
        "allow_http": "true",
        "google_service_account": account["GOOGLE_APPLICATION_CREDENTIALS"],
    }
    user = key("authorized_user", refresh_token="r")
    options = gcs_locator(GcsConfig(bucket="b-1"), user)("w").options()
    assert options == {"google_application_credentials": user["GOOGLE_APPLICATION_CREDENTIALS"]}
    assert gcs_locator(GcsConfig(bucket="b-1"), {})("w").options() is None  # ADC
    anonymous = GcsConfig(bucket="b-1", endpoint_url="http://127.0.0.1:1", anonymous=True)
    assert gcs_locator(anonymous, account)("w").options() == {
        "google_base_url": "http://127.0.0.1:1",
        "allow_http": "true",
        "google_skip_signature": "true",
    }
    with pytest.raises(ConfigError, match="cannot use the external_account credentials"):
        gcs_locator(config, key("external_account", audience="x"))
