"""Delta output on S3: a real S3-compatible server (moto) on loopback, delta-rs' own client."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from async_amp.config import Config, S3Config
from async_amp.output.delta import make_delta_sink
from async_amp.output.delta.files import DataFile, put_file
from async_amp.output.delta.location import s3_locator
from async_amp.output.delta.table import TableLocation, replace_hour
from async_amp.output.delta.verify import verify_table
from async_amp.output.stores.s3 import S3Sink
from async_amp.simulator.server import run_simulator

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
    s3_server: S3ServerProcess, s3_bucket: str, tmp_path: Path
) -> None:
    config = S3Config(
        bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, addressing_style="path"
    )
    location = s3_locator(config, s3_server.admin.environ())("t")
    await anyio.to_thread.run_sync(stale_writer, location, tmp_path)


def stale_writer(location: TableLocation, spool: Path) -> None:
    """The log's commits are conditional writes: of two writers of the same hour, the one
    whose snapshot went stale cannot overwrite the other's log entry; it conflicts and its
    commit is redone (its files already uploaded, not sent again), and every version holds
    the hour once. The other writer spells the table's URI with a trailing slash: another
    commit lock, as another process has."""
    at = datetime(2026, 11, 1, 5, tzinfo=UTC)
    ts = pa.timestamp("us", tz="UTC")
    events = pa.schema([("uuid", pa.utf8()), ("_export_hour", ts)])
    data = events.append(pa.field("hour", pa.int32(), nullable=False))  # a day-layout file
    schema = events.append(pa.field("date", pa.date32(), nullable=False)).append(
        pa.field("hour", pa.int32(), nullable=False)
    )

    def upload(where: TableLocation, tag: str, n: int) -> DataFile:
        local = spool / f"{tag}.parquet"
        rows = {"uuid": [f"{tag}-{i}" for i in range(n)], "_export_hour": [at] * n, "hour": [5] * n}
        pq.write_table(pa.table(rows, schema=data), local)
        return put_file(where, local, at)

    other = replace(location, uri=location.uri + "/")
    replace_hour(location, at, [upload(location, "first", 4)], schema=schema, metadata={})
    conflicts: list[str] = []

    def b_first(snapshot: DeltaTable) -> None:
        if not conflicts:
            replace_hour(other, at, [upload(other, "b", 2)], schema=schema, metadata={"who": "b"})

    replace_hour(
        location,
        at,
        [upload(location, "a", 3)],
        schema=schema,
        metadata={"who": "a"},
        on_conflict=lambda n, why: conflicts.append(why),
        on_snapshot=b_first,
        sleep=lambda s: None,
    )
    assert len(conflicts) == 1
    options = dict(location.storage_options)
    for version, tag in ((1, "first"), (2, "b"), (3, "a")):
        uuids = (
            DeltaTable(location.uri, version=version, storage_options=options)
            .to_pyarrow_table()["uuid"]
            .to_pylist()
        )
        assert {u.split("-")[0] for u in uuids} == {tag} and len(set(uuids)) == len(uuids)
