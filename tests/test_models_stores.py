"""The model tables on remote stores: events extracted to Azurite as Delta, to moto's S3 as
Parquet and to fake-gcs-server as gzip, the models built through the same store, read back
and compared with the plain-Python reference (``tests/models_reference.py``) over what the
simulator served; the store holds the tables and the build's state and nothing half-written;
a day whose state is lost is built again from the slim rows the store kept (no hour is read
again) with the same rows."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest

from async_amp.api import reading_output
from async_amp.config import AzureConfig, Config, ModelsConfig, S3Config
from async_amp.hours import hour_range
from async_amp.models import TABLES, day_span
from async_amp.models.api import model
from async_amp.output.stores import make_sink
from async_amp.simulator.server import run_simulator
from async_amp.simulator.site_changes import ChangingDataset

from .azurite import Azurite
from .gcs import GcsFront, gcs_config, gcs_environ
from .helpers import KEY, SECRET, make_config, run
from .models_reference import read_events, reference
from .s3 import S3ServerProcess

pytestmark = pytest.mark.anyio

ZONE = ZoneInfo("Europe/Berlin")
DAY = date(2026, 11, 3)
LATENESS = 3
FIRST = day_span(DAY, ZONE)[0] - timedelta(hours=1)
LAST = FIRST + timedelta(hours=7)  # the day's first hours: enough for a store, and quick
NOW = day_span(DAY, ZONE)[1] + timedelta(hours=LATENESS + 6)
DATASET = ChangingDataset(events_per_hour=12, pages_per_hour=1, duplicate_every=15, odd_every=29)


@dataclass(frozen=True, slots=True)
class Remote:
    name: str
    config: Callable[[Config], Config]
    environ: dict[str, str]


@pytest.fixture(
    params=[
        pytest.param("azure", marks=pytest.mark.azure),
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("gcs", marks=pytest.mark.gcs),
    ]
)
def remote(request: pytest.FixtureRequest) -> Remote:
    if request.param == "azure":
        azurite: Azurite = request.getfixturevalue("azurite")
        container: str = request.getfixturevalue("azure_container")
        azure = AzureConfig(container=container, retries=2, retry_backoff_s=0.05)
        return Remote(
            "azure",
            lambda c: replace(
                c, output=replace(c.output, sink="azure", format="delta"), azure=azure
            ),
            {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string},
        )
    if request.param == "s3":
        server: S3ServerProcess = request.getfixturevalue("s3_server")
        s3 = S3Config(
            bucket=request.getfixturevalue("s3_bucket"),
            endpoint_url=server.endpoint_url,
            addressing_style="path",
            retries=1,
        )
        return Remote(
            "s3",
            lambda c: replace(c, output=replace(c.output, sink="s3", format="parquet"), s3=s3),
            server.admin.environ(),
        )
    front: GcsFront = request.getfixturevalue("gcs_front")
    gcs = gcs_config(front, request.getfixturevalue("gcs_bucket"))
    return Remote(
        "gcs",
        lambda c: replace(c, output=replace(c.output, sink="gcs", format="gzip"), gcs=gcs),
        gcs_environ(front),
    )


def _config(remote: Remote, base_url: str, tmp: Path) -> Config:
    config = remote.config(make_config(base_url, tmp / "unused", window_hours=6))
    models = ModelsConfig(time_zone=ZONE.key, lateness_hours=LATENESS)
    return replace(config, models=models, environ=remote.environ)


async def _tables(config: Config) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Every model table's rows as stored (read by pyarrow / deltalake, not the product), and
    the names of every object under ``_models/``."""
    async with reading_output(config, ["website"]) as output:
        store = output.store
        names = await store.list_under("_models/website", limit=10_000)
        found: dict[str, list[dict[str, Any]]] = {}
        for model_table in TABLES:
            if config.output.data_format == "delta":
                from deltalake import DeltaTable

                from async_amp.output.delta.location import azure_options

                options, _, _ = azure_options(config.azure, config.environ or {})
                uri = f"az://{config.azure.container}/amplitude/_models/website/{model_table.name}"
                rows = DeltaTable(uri, storage_options=options).to_pyarrow_table()
                found[model_table.name] = rows.to_pylist()
                continue
            files = sorted(n for n in names if n.startswith(f"{model_table.name}/"))
            found[model_table.name] = []
            for name in files:
                data = await store.read_object(f"_models/website/{name}")
                assert data is not None
                found[model_table.name] += pq.read_table(io.BytesIO(data)).to_pylist()
    return found, names


def _rounded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(
        ({k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()} for r in rows),
        key=repr,
    )


async def test_models_are_built_through_a_remote_store(remote: Remote, tmp_path: Path) -> None:
    async with run_simulator(DATASET, api_key=KEY, secret_key=SECRET) as sim:
        config = _config(remote, sim.base_url, tmp_path)
        sink = make_sink(config, run_id="test-run", environ=remote.environ)
        summary = await run(config, FIRST, LAST, sink=sink, now=NOW)
    assert summary.exit_code == 0
    (built,) = await model(config, start=DAY, end=DAY, now=NOW)
    assert built.built == (DAY,) and built.days[0].status == "provisional"
    assert built.where.endswith("_models/website")

    lines = [
        line
        for hour in hour_range(FIRST, LAST)
        for page in DATASET.pages(hour)
        for line in DATASET.ndjson(hour, page).splitlines()
    ]
    expected = reference(read_events(lines, config.report, ZONE), [DAY], {DAY: "provisional"})
    found, names = await _tables(config)
    assert expected["daily"][0]["events"] > 50  # the day has data
    for name, rows in expected.items():
        assert _rounded(found[name]) == _rounded(rows), name
    # the store holds the tables and the build's state, nothing half-written
    assert "_build/state.json" in names
    assert not [n for n in names if n.rsplit("/", 1)[-1].startswith(".") or "tmp" in n]
    if config.output.data_format != "delta":
        day_files = {f"{t.name}/day={DAY}/part-0.parquet" for t in TABLES if t.by_day}
        assert day_files | {"users/users.parquet"} <= set(names)

    # built again: nothing changed, nothing is built; the day's state lost: built again from
    # the slim rows kept in the store, with the same rows
    assert (await model(config, start=DAY, end=DAY, now=NOW))[0].built == ()
    async with reading_output(config, ["website"]) as out:
        state = json.loads(await out.store.read_object("_models/website/_build/state.json") or b"")
        del state["days"][DAY.isoformat()]
        await out.store.put_object("_models/website/_build/state.json", json.dumps(state).encode())
    (again,) = await model(config, start=DAY, end=DAY, now=NOW)
    assert again.built == (DAY,) and again.hours_read == ()
    refound, _ = await _tables(config)
    for name, rows in expected.items():
        assert _rounded(refound[name]) == _rounded(rows), name
