"""A format added from outside the package (issue 19 item 1): a CSV of three columns, defined
here, registered with ``async_amp.output.registry.register_format`` and nothing else, goes
through ``extract``, ``status`` and ``verify`` of the Python API like a built-in one.

What it must store is computed here from what the simulator serves (plain ``json`` and
``csv``), and read back from the files with ``csv``, never through the product."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import async_amp
from async_amp.hours import MemberName
from async_amp.output.manifest import FileEntry, Manifest, hour_folder
from async_amp.output.registry import register_format, unregister_format
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.dataset import Dataset

from .helpers import DAY1, KEY, NOW, SECRET, small_dataset

COLUMNS = ("uuid", "event_type", "event_time")
HOURS = 3


def _row(line: bytes) -> bytes:
    event = json.loads(line)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([event.get(c, "") for c in COLUMNS])
    return out.getvalue().encode()


class _CsvMember:
    """NDJSON in, one CSV row per event out, to the store's own member (no header: a line is
    an event, so the generic ``verify`` counts them)."""

    def __init__(self, inner: Any, name: str, staging: _CsvStaging, ndjson_name: str) -> None:
        self._inner, self._name, self._staging, self._ndjson = inner, name, staging, ndjson_name
        self._rest = b""
        self._digest = hashlib.sha256()
        self._size = 0

    def _put(self, data: bytes) -> None:
        self._digest.update(data)
        self._size += len(data)
        self._inner.write(data)

    def write(self, data: bytes) -> None:
        *lines, self._rest = (self._rest + data).split(b"\n")
        for line in lines:
            if line.strip():
                self._put(_row(line))

    def finish(self, entry: FileEntry) -> None:
        if self._rest.strip():
            self._put(_row(self._rest))
        stored = FileEntry(self._name, self._size, entry.events, self._digest.hexdigest())
        self._inner.finish(stored)
        self._staging.files[self._ndjson] = stored

    def discard(self) -> None:
        self._inner.discard()


class _CsvStaging:
    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.files: dict[str, FileEntry] = {}

    def open_member(self, member: MemberName, file_name: str) -> _CsvMember:
        name = file_name.removesuffix(".json") + ".csv"
        return _CsvMember(self._inner.open_member(member, name), name, self, file_name)

    async def commit(self, manifest: Manifest) -> Manifest:
        stored = replace(manifest, files=tuple(self.files[f.name] for f in manifest.files))
        await self._inner.commit(stored)
        return stored

    async def discard(self) -> None:
        await self._inner.discard()


class _CsvSink:
    """The store, but each hour staged as CSV."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def describe(self) -> str:
        return f"csv3:{self._store.describe()}"

    def stage(self, project: str, hour: datetime) -> _CsvStaging:
        return _CsvStaging(self._store.stage(project, hour))


class Csv3:
    name = "csv3"
    keeps_gzip = False

    def recognise(self, names: Sequence[str]) -> bool:
        return any(n.endswith(".csv") for n in names)

    def wrap(self, store: Any, context: Any) -> Any:
        return _CsvSink(store)

    async def verify(
        self, sink: Any, project: str, first: datetime, last: datetime, *, concurrency: int
    ) -> Any:
        from async_amp.readback.checks import verify

        return await verify(sink, project, first, last, concurrency=concurrency)


@pytest.fixture
def csv3() -> Iterator[None]:
    register_format(Csv3())
    try:
        yield
    finally:
        unregister_format("csv3")


def _config(out: Path, base_url: str, **output: str) -> async_amp.Config:
    environ = {
        "ASYNC_AMP_AMPLITUDE_BASE_URL": base_url,
        "ASYNC_AMP_OUTPUT_DIR": str(out),
        "ASYNC_AMP_OUTPUT_FSYNC": "false",
        **{f"ASYNC_AMP_OUTPUT_{k.upper()}": v for k, v in output.items()},
    }
    return async_amp.load_config(None, api_key=KEY, secret_key=SECRET, environ=environ)


def _expected(dataset: Dataset, hour: datetime) -> list[list[str]]:
    rows = []
    for page in dataset.pages(hour):
        for line in dataset.ndjson(hour, page).splitlines():
            event = json.loads(line)
            rows.append([str(event.get(c, "")) for c in COLUMNS])
    return sorted(rows)


@pytest.mark.usefixtures("csv3")
def test_a_registered_csv_format_goes_through_extract_status_and_verify(tmp_path: Path) -> None:
    dataset = small_dataset()
    out = tmp_path / "data"
    last = DAY1 + timedelta(hours=HOURS - 1)
    with BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
        config = _config(out, sim.base_url, format="csv3")
        result = async_amp.extract_sync(config, start=DAY1, end=last, now=NOW)
        assert result.exit_code == 0, result.failed_hours
        # no format configured: the output's own, recorded at its root
        plain = _config(out, sim.base_url)
        status = async_amp.status_sync(plain, start=DAY1, end=last, now=NOW)
        checked = async_amp.verify_sync(plain, start=DAY1, end=last, now=NOW)

    assert json.loads((out / "website" / "_async_amp.json").read_text())["format"] == "csv3"
    stored_bytes = events = 0
    for n in range(HOURS):
        hour = DAY1 + timedelta(hours=n)
        folder = out / hour_folder("website", hour)
        files = sorted(p for p in folder.iterdir() if p.name != "_manifest.json")
        assert files and all(p.suffix == ".csv" for p in files), files
        rows = [r for p in files for r in csv.reader(p.read_text().splitlines())]
        assert sorted(rows) == _expected(dataset, hour)
        stored_bytes += sum(p.stat().st_size for p in files)
        events += len(rows)

    website = result.project("website")
    assert website.complete == HOURS and website.events == events
    assert website.bytes_written == stored_bytes  # what the CSV files hold, not the NDJSON

    report = status.projects[0]
    assert report.count("complete") == HOURS and report.events == events
    assert report.bytes == stored_bytes

    assert checked.ok, checked.to_json()
    assert checked.projects[0].events == events
    assert checked.projects[0].bytes == stored_bytes
