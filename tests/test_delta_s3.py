"""Delta output on S3: a real S3-compatible server (moto) on loopback, delta-rs' own client."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from async_amp.config import Config, S3Config
from async_amp.delta import make_delta_sink
from async_amp.delta.location import s3_locator
from async_amp.delta.table import replace_hour
from async_amp.delta.verify import verify_table
from async_amp.sinks.s3 import S3Sink
from async_amp.testing.server import run_simulator

from .delta_helpers import expected_rows_per_hour, expected_uuids, rows_per_hour
from .helpers import DAY1, KEY, SECRET, make_config, run, small_dataset
from .s3 import S3ServerProcess

pytestmark = [pytest.mark.anyio]


def s3_config(base: Config, server: S3ServerProcess, bucket: str) -> Config:
    s3 = S3Config(
        bucket=bucket, endpoint_url=server.endpoint_url, addressing_style="path", retries=1
    )
    return replace(base, output=replace(base.output, sink="s3", format="delta"), s3=s3)


def delta_on_s3(config: Config, environ: dict[str, str]):  # type: ignore[no-untyped-def]
    inner = S3Sink.from_config(config.s3, run_id="test-run", environ=environ)
    return make_delta_sink(config, inner, run_id="test-run", environ=environ)


async def test_hours_into_s3_read_back_force_and_verify(
    s3_server: S3ServerProcess, s3_bucket: str, tmp_path: Path
) -> None:
    dataset = small_dataset()
    first, last = DAY1, DAY1 + timedelta(hours=5)
    environ = s3_server.admin.environ()
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = s3_config(make_config(sim.base_url, tmp_path, concurrency=4), s3_server, s3_bucket)
        assert (await run(config, first, last, sink=delta_on_s3(config, environ))).exit_code == 0
        hour = DAY1 + timedelta(hours=2)
        forced = await run(config, hour, hour, sink=delta_on_s3(config, environ), force=True)
        assert forced.exit_code == 0 and forced.count("complete") == 1
    location = s3_locator(config.s3, environ)("website")
    assert location.uri == f"s3://{s3_bucket}/amplitude/website"
    table = DeltaTable(location.uri, storage_options=dict(location.storage_options))
    rows = table.to_pyarrow_table()
    assert rows_per_hour(rows) == expected_rows_per_hour(dataset, first, last)
    assert Counter(rows["uuid"].to_pylist()) == expected_uuids(dataset, first, last)
    protocol = table.protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
    reader = delta_on_s3(config, environ)
    try:
        report = await verify_table(reader, "website", first, last)
    finally:
        await reader.aclose()
    assert report.ok and report.checked == 6, report.problems


async def test_a_stale_writer_on_s3_conflicts_on_the_conditional_put_and_redoes_its_commit(
    s3_server: S3ServerProcess, s3_bucket: str
) -> None:
    await anyio.to_thread.run_sync(_stale_writer, s3_server, s3_bucket)


def _stale_writer(s3_server: S3ServerProcess, s3_bucket: str) -> None:
    """The log's commits are conditional writes: of two writers of the same hour, the one
    whose snapshot went stale cannot overwrite the other's log entry; it conflicts and is
    redone, and every version holds the hour once."""
    schema = pa.schema([("uuid", pa.utf8()), ("date", pa.date32()), ("hour", pa.int32())])
    at = datetime(2026, 11, 1, 5, tzinfo=UTC)

    def rows(tag: str, n: int) -> pa.RecordBatch:
        return pa.record_batch(
            [
                pa.array([f"{tag}-{i}" for i in range(n)]),
                pa.array([at.date()] * n, pa.date32()),
                pa.array([5] * n, pa.int32()),
            ],
            schema=schema,
        )

    config = S3Config(
        bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, addressing_style="path"
    )
    location = s3_locator(config, s3_server.admin.environ())("t")
    replace_hour(
        location,
        at,
        lambda: pa.RecordBatchReader.from_batches(schema, iter([rows("first", 4)])),
        metadata={},
    )
    other_done = threading.Event()
    calls = [0]
    conflicts: list[str] = []

    def stale() -> pa.RecordBatchReader:
        calls[0] += 1

        def gen():  # type: ignore[no-untyped-def]
            if calls[0] == 1:
                assert other_done.wait(60)
            yield rows("a", 3)

        return pa.RecordBatchReader.from_batches(schema, gen())

    thread = threading.Thread(
        target=replace_hour,
        args=(location, at, stale),
        kwargs={
            "metadata": {"who": "a"},
            "on_conflict": lambda n, why: conflicts.append(why),
            "sleep": lambda s: None,
        },
    )
    thread.start()
    replace_hour(
        location,
        at,
        lambda: pa.RecordBatchReader.from_batches(schema, iter([rows("b", 2)])),
        metadata={"who": "b"},
    )
    other_done.set()
    thread.join(120)
    assert calls[0] == 2 and len(conflicts) == 1
    options = dict(location.storage_options)
    for version, tag in ((0, "first"), (1, "b"), (2, "a")):
        uuids = (
            DeltaTable(location.uri, version=version, storage_options=options)
            .to_pyarrow_table()["uuid"]
            .to_pylist()
        )
        assert {u.split("-")[0] for u in uuids} == {tag} and len(set(uuids)) == len(uuids)
