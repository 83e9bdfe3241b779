"""Delta output into Azurite: the real pipeline, the simulated Export API, delta-rs over Azure."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import anyio
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from deltalake.fs import DeltaStorageHandler

from async_amp.config import AzureConfig, Config
from async_amp.output.delta import make_delta_sink
from async_amp.output.delta.base import TableLocation
from async_amp.output.delta.compact import compact_day
from async_amp.output.delta.files import table_schema
from async_amp.output.delta.location import azure_options
from async_amp.output.delta.table import replace_hour
from async_amp.output.delta.verify import verify_table
from async_amp.output.stores.azure import AzureSink
from async_amp.simulator.server import run_simulator

from .azurite import Azurite
from .delta_helpers import expected_rows_per_hour, expected_uuids, rows_per_hour
from .helpers import DAY1, KEY, SECRET, last_hour_of, make_config, run, small_dataset

pytestmark = [pytest.mark.anyio, pytest.mark.azure]


def azure_config(base: Config, container: str) -> Config:
    return replace(
        base,
        output=replace(base.output, sink="azure"),
        azure=AzureConfig(container=container, retries=2, retry_backoff_s=0.05),
    )


def delta_into(azurite: Azurite, config: Config, environ: dict[str, str]):  # type: ignore[no-untyped-def]
    inner = AzureSink.from_config(config.azure, run_id="test-run", environ=environ)
    return make_delta_sink(config, inner, run_id="test-run", environ=environ)


async def test_two_days_at_concurrency_8_into_azurite_read_back_and_force_one_hour(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    dataset = small_dataset(quiet_hours=frozenset({DAY1.replace(hour=7)}))
    last = last_hour_of(DAY1, days=2)
    environ = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = azure_config(make_config(sim.base_url, tmp_path, concurrency=8), azure_container)
        summary = await run(config, DAY1, last, sink=delta_into(azurite, config, environ))
        assert summary.exit_code == 0 and summary.count("complete") == 47
        options, _, _ = azure_options(config.azure, environ)
        uri = f"az://{azure_container}/amplitude/website"
        table = DeltaTable(uri, storage_options=options)
        rows = table.to_pyarrow_table()
        assert rows_per_hour(rows) == expected_rows_per_hour(dataset, DAY1, last)
        assert Counter(rows["uuid"].to_pylist()) == expected_uuids(dataset, DAY1, last)
        con = duckdb.connect()
        con.register("events", table.to_pyarrow_dataset())
        assert con.sql("SELECT count(DISTINCT uuid), count(*) FROM events").fetchall() == [
            (rows.num_rows, rows.num_rows)
        ]
        protocol = table.protocol()
        assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)
        # resume: every hour is claimed, no request
        sim.reset_log()
        again = await run(config, DAY1, last, sink=delta_into(azurite, config, environ))
        assert sim.request_count() == 0 and again.exit_code == 0
        # --force on one hour, with a SAS instead of the account key
        sas = {"AZURE_STORAGE_SAS_TOKEN": azurite.sas_token()}
        sas_config = replace(config, azure=replace(config.azure, account_url=azurite.account_url))
        hour = DAY1 + timedelta(hours=30)
        version = table.version()
        forced = await run(
            sas_config, hour, hour, sink=delta_into(azurite, sas_config, sas), force=True
        )
        assert forced.exit_code == 0 and forced.count("complete") == 1
    table = DeltaTable(uri, storage_options=options)
    assert table.version() == version + 1
    assert Counter(table.to_pyarrow_table()["uuid"].to_pylist()) == expected_uuids(
        dataset, DAY1, last
    )
    reader = delta_into(azurite, config, environ)
    try:
        report = await verify_table(reader, "website", DAY1, last)
    finally:
        await reader.aclose()
    assert report.ok and report.checked == 48, report.problems
    # the log's checkpoints (47 hourly commits: one) are plain there too
    log = pafs.PyFileSystem(DeltaStorageHandler(uri, options))
    names = [
        i.path
        for i in log.get_file_info(pafs.FileSelector("_delta_log"))
        if i.path.endswith(".checkpoint.parquet")
    ]
    assert names
    for name in names:
        with log.open_input_file(name) as file:
            meta = pq.ParquetFile(pa.BufferReader(file.read())).metadata
        assert all(
            set(meta.row_group(g).column(c).encodings) <= {"PLAIN", "RLE"}
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        ), name
    # compact the first day in Azure: read and written through delta-rs' object store
    location = TableLocation(uri, storage_options=options)
    before = Counter(table.to_pyarrow_table()["uuid"].to_pylist())
    result = await anyio.to_thread.run_sync(
        lambda: compact_day(location, DAY1.date(), retention_hours=168)
    )
    assert result.files_added == 1 and result.files_removed > 1
    table = DeltaTable(uri, storage_options=options)
    assert Counter(table.to_pyarrow_table()["uuid"].to_pylist()) == before
    hour = DAY1 + timedelta(hours=5)  # and an hour of it replaced: the day's file rewritten
    changed = await anyio.to_thread.run_sync(
        lambda: replace_hour(location, hour, [], schema=table_schema(), metadata={})
    )
    rows = DeltaTable(uri, storage_options=options, version=changed).to_pyarrow_table()
    assert 5 not in set(rows.filter(pc.field("date") == DAY1.date())["hour"].to_pylist())
    assert (
        rows.num_rows
        == sum(before.values()) - expected_rows_per_hour(dataset, hour, hour)[(hour.date(), 5)]
    )
