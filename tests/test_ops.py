"""``status`` and ``verify`` end to end: a real extraction from the simulator, then the commands
run in-process through ``main()``; every fault verify must catch is made on the stored bytes.

Tests reach storage only through a ``Store`` (the ``store`` fixture): the CLI arguments that
select it, a ``Sink`` for the library calls, and raw read/write/delete for tampering. An Azure
store (Azurite) can join the ``store`` fixture's parameters without touching the tests.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio
import pytest
from azure.storage.blob import BlobServiceClient as SyncBlobServiceClient

from async_amp.cli import main
from async_amp.config import AzureConfig
from async_amp.output.manifest import MANIFEST_NAME, Manifest, hour_folder
from async_amp.output.stores.azure import AzureSink
from async_amp.output.stores.base import Sink
from async_amp.output.stores.local import READ_CHUNK, LocalSink
from async_amp.readback import FileCheck, StatusReport, VerifyReport, read_status, verify
from async_amp.simulator.server import run_simulator

from .azurite import Azurite
from .helpers import DAY1, KEY, SECRET, make_config, run, small_dataset

# The day under test, seen at NOW: hours 00..09 are exportable (lag 2 h), 10..23 not yet.
# Extracted: 00..06, with 02 quiet (empty). So 07..09 are missing.
NOW = DAY1.replace(hour=12, minute=30)
QUIET = DAY1.replace(hour=2)
EXTRACTED = [DAY1 + timedelta(hours=h) for h in range(7)]
STRIP = "##.####---" + " " * 14
ROW = re.compile(r"^  \d{4}-\d\d-\d\d +\d")  # a day's row in the status table


def h(hour: int) -> datetime:
    return DAY1 + timedelta(hours=hour)


class Store(Protocol):
    """Where the test data lives, and how a test reaches it behind the tool's back."""

    def args(self) -> list[str]: ...

    def sink(self) -> Sink: ...

    def names(self, hour: datetime) -> list[str]: ...

    def read(self, hour: datetime, name: str) -> bytes: ...

    def write(self, hour: datetime, name: str, data: bytes) -> None: ...

    def delete(self, hour: datetime, name: str) -> None: ...


@dataclasses.dataclass
class LocalStore:
    root: Path

    def args(self) -> list[str]:
        return ["--output", str(self.root)]

    def sink(self) -> LocalSink:
        return LocalSink(self.root, run_id="test-ops", fsync=False)

    def _path(self, hour: datetime, name: str) -> Path:
        return self.root / hour_folder("website", hour) / name

    def names(self, hour: datetime) -> list[str]:
        folder = self.root / hour_folder("website", hour)
        return sorted(p.name for p in folder.iterdir() if p.name != MANIFEST_NAME)

    def read(self, hour: datetime, name: str) -> bytes:
        return self._path(hour, name).read_bytes()

    def write(self, hour: datetime, name: str, data: bytes) -> None:
        path = self._path(hour, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def delete(self, hour: datetime, name: str) -> None:
        self._path(hour, name).unlink()


@dataclasses.dataclass
class AzureStore:
    """The same hours in an Azurite container; tampering goes through a plain SDK client."""

    azurite: Azurite
    container: str
    client: SyncBlobServiceClient
    prefix: str = "amplitude"

    def args(self) -> list[str]:
        return ["--sink", "azure"]  # the container and connection string are in the environment

    def sink(self) -> AzureSink:
        config = AzureConfig(container=self.container, prefix=self.prefix)
        environ = {"AZURE_STORAGE_CONNECTION_STRING": self.azurite.connection_string}
        return AzureSink.from_config(config, run_id="test-ops", environ=environ)

    def _blob(self, hour: datetime, name: str) -> Any:
        blob = f"{self.prefix}/{hour_folder('website', hour)}/{name}"
        return self.client.get_blob_client(self.container, blob)

    def names(self, hour: datetime) -> list[str]:
        folder = f"{self.prefix}/{hour_folder('website', hour)}/"
        container = self.client.get_container_client(self.container)
        names = [b.name[len(folder) :] for b in container.list_blobs(name_starts_with=folder)]
        return sorted(n for n in names if n != MANIFEST_NAME)

    def read(self, hour: datetime, name: str) -> bytes:
        data: bytes = self._blob(hour, name).download_blob().readall()
        return data

    def write(self, hour: datetime, name: str, data: bytes) -> None:
        self._blob(hour, name).upload_blob(data, overwrite=True)

    def delete(self, hour: datetime, name: str) -> None:
        self._blob(hour, name).delete_blob()


def _extract(
    store: Store, out: Path, hours: list[datetime], project: str = "website", **config_kw: Any
) -> int:
    """Extract ``hours`` from the simulator into ``store``; returns the events written."""
    dataset = small_dataset(quiet_hours=frozenset({QUIET}))

    async def go() -> int:
        async with run_simulator(dataset, api_key=KEY, secret_key=SECRET) as sim:
            config = make_config(sim.base_url, out, **config_kw)
            amplitude = dataclasses.replace(config.amplitude, project=project)
            config = dataclasses.replace(config, amplitude=amplitude)
            summary = await run(config, hours[0], hours[-1], sink=store.sink(), now=NOW)
        assert summary.exit_code == 0
        return summary.events

    return anyio.run(go)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(__import__("os").environ):
        if name.startswith(("ASYNC_AMP_", "AMP_", "AZURE_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ASYNC_AMP_NOW", NOW.isoformat())
    return tmp_path


@pytest.fixture(params=["local", pytest.param("azure", marks=pytest.mark.azure)])
def store(
    request: pytest.FixtureRequest, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    if request.param == "local":
        yield LocalStore(workdir / "out")
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    container: str = request.getfixturevalue("azure_container")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("ASYNC_AMP_AZURE_CONTAINER", container)
    client = SyncBlobServiceClient.from_connection_string(azurite.connection_string, retry_total=0)
    with client:
        yield AzureStore(azurite, container, client)


@pytest.fixture
def events(store: Store, workdir: Path) -> int:
    """The day's first seven hours extracted; the number of events they hold."""
    return _extract(store, workdir / "out", EXTRACTED)


def cli(
    capsys: pytest.CaptureFixture[str], store: Store, *args: str, day: str = "2026-11-01"
) -> tuple[int, str, str]:
    command, *rest = args
    capsys.readouterr()  # drop what the extraction logged
    code = main([command, "--start", day, "--end", day, *store.args(), *rest])
    out, err = capsys.readouterr()
    return code, out, err


# --- status ---------------------------------------------------------------------------------


def test_status_shows_complete_empty_missing_and_not_yet_hours(
    store: Store, events: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, store, "status")
    assert code == 0, err
    row = next(line for line in out.splitlines() if ROW.match(line))
    assert row.split()[1:5] == ["6", "1", "3", "14"]  # complete, empty, missing, not yet
    assert f"{events:,}" in row.split()
    assert row.endswith(f"|{STRIP}|")
    ruler = next(line for line in out.splitlines() if "|00    06    12    18    |" in line)
    assert ruler.index("|") == row.index("|")  # the hour ruler lines up with the strips
    assert "'#' complete" in out and "' ' not yet available" in out
    assert "async-amp extract --start 2026-11-01T07 --end 2026-11-01T09" in out
    assert "available up to 2026-11-01T09" in out


def test_status_json_parses_and_agrees_with_the_manifests(
    store: Store, events: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, store, "status", "--json")
    assert code == 0
    whole = json.loads(out)
    doc = whole["projects"]["website"]
    assert whole["totals"] == doc["totals"]  # one project: its totals are the totals
    totals = doc["totals"]
    assert (totals["complete"], totals["empty"], totals["missing"]) == (6, 1, 3)
    assert (totals["not_available"], totals["invalid"], totals["hours"]) == (14, 0, 24)
    assert totals["events"] == events
    assert totals["files"] == 6 * 3
    (day,) = doc["days"]
    assert day["strip"] == STRIP and day["date"] == "2026-11-01"
    states = [hour["state"] for hour in day["hours"]]
    assert states[:3] == ["complete", "complete", "empty"]
    assert states[7:10] == ["missing"] * 3 and set(states[10:]) == {"not_available"}
    assert doc["missing_hours"] == [f"2026-11-01T0{n}:00:00Z" for n in (7, 8, 9)]
    assert doc["available_until"] == "2026-11-01T09:00:00Z"
    manifest = Manifest.loads(store.read(h(0), MANIFEST_NAME))
    assert day["hours"][0]["bytes"] == manifest.size
    assert day["hours"][0]["events"] == manifest.events


def test_status_over_several_days_cuts_partial_days(
    store: Store, events: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["status", "--start", "2026-10-31T22", "--end", "2026-11-02T01", *store.args()])
    out, _ = capsys.readouterr()
    assert code == 0
    strips = [line[line.index("|") :] for line in out.splitlines() if ROW.match(line)]
    assert strips == ["|" + "_" * 22 + "--|", f"|{STRIP}|", "|" + " " * 2 + "_" * 22 + "|"]


def test_an_hour_with_a_manifest_is_shown_done_even_if_newer_than_the_lag(
    store: Store, workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _extract(store, workdir / "out", [h(0), h(1)])
    monkeypatch.setenv("ASYNC_AMP_NOW", "2026-11-01T01:10:00Z")  # the clock says: not yet
    _, out, _ = cli(capsys, store, "status", "--json")
    assert json.loads(out)["projects"]["website"]["days"][0]["strip"] == "##" + " " * 22


def test_status_marks_an_unreadable_manifest(
    store: Store, events: int, capsys: pytest.CaptureFixture[str]
) -> None:
    store.write(h(4), MANIFEST_NAME, b"{ not json")
    code, out, _ = cli(capsys, store, "status")
    assert code == 0
    assert "|##.#!##---" in out and "1 unreadable" in out
    assert "async-amp extract --start 2026-11-01T04 --end 2026-11-01T04 --force" in out


def test_status_and_verify_cover_every_configured_project(
    store: Store, events: int, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shop = _extract(store, workdir / "out", [h(0), h(1)], project="shop")
    (workdir / "config.toml").write_text(
        "".join(
            f'[[projects]]\nname = "{name}"\napi_key_env = "K_{name}"\n'
            f'secret_key_env = "S_{name}"\n'
            for name in ("website", "shop")
        )
    )
    code, out, _ = cli(capsys, store, "status", "--json")
    doc = json.loads(out)
    assert code == 0 and list(doc["projects"]) == ["website", "shop"]
    assert doc["projects"]["shop"]["totals"]["complete"] == 2
    assert doc["totals"]["events"] == events + shop
    code, out, _ = cli(capsys, store, "status", "--project", "shop")
    assert code == 0 and "project 'shop'" in out and "project 'website'" not in out
    code, out, _ = cli(capsys, store, "verify")
    assert code == 0 and out.count("OK: every stored file matches its manifest") == 2
    code, _, err = cli(capsys, store, "verify", "--project", "blog")
    assert code == 2 and "unknown project 'blog'" in err


def test_status_library_returns_frozen_values(store: Store, events: int) -> None:
    async def go() -> StatusReport:
        sink = store.sink()
        try:
            return await read_status(
                sink, "website", h(0), h(23), now=NOW, lag_hours=2, concurrency=2
            )
        finally:
            await sink.aclose()

    report = anyio.run(go)
    assert report.count("complete") == 6 and report.events == events
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.days[0].hours[0].state = "missing"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2026-11-02", "--end", "2026-11-01"], "before --start"),
        (["--start", "2026-11-01", "--end", "2026-11-01", "--output", "nowhere"], "nowhere"),
        (["--start", "2026-11-01"], "required"),
        (["--start", "2026-11-01", "--end", "2026-11-01", "--config", "no.toml"], "no such"),
    ],
)
@pytest.mark.parametrize("command", ["status", "verify"])
def test_user_errors_are_one_line_and_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], command: str, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main([command, *args]))
    _, err = capsys.readouterr()
    assert info.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


# --- verify ---------------------------------------------------------------------------------


def test_verify_passes_on_untouched_output(
    store: Store, events: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, store, "verify")
    assert code == 0, out + err
    assert "OK: every stored file matches its manifest" in out
    assert "17 hours without a manifest" in out  # missing and not yet available alike
    code, out, _ = cli(capsys, store, "verify", "--json")
    whole = json.loads(out)
    assert whole["ok"] is True and whole["problem_count"] == 0
    doc = whole["projects"]["website"]
    assert code == 0 and doc["ok"] is True and doc["problems"] == []
    assert doc["hours_checked"] == 7 and doc["files_checked"] == 18
    assert doc["events_counted"] == events


def _first(store: Store, hour: datetime) -> str:
    return store.names(hour)[0]


def flip_a_byte(store: Store) -> tuple[datetime, str]:
    name = _first(store, h(1))
    data = bytearray(store.read(h(1), name))
    data[len(data) // 2] ^= 0x01
    store.write(h(1), name, bytes(data))
    return h(1), name


def truncate(store: Store) -> tuple[datetime, str]:
    name = _first(store, h(3))
    data = store.read(h(3), name)
    cut = data.rindex(b"\n", 0, len(data) - 1) + 1  # drop the last event, whole
    store.write(h(3), name, data[:cut])
    return h(3), name


def delete(store: Store) -> tuple[datetime, str]:
    name = _first(store, h(4))
    store.delete(h(4), name)
    return h(4), name


def add_extra(store: Store) -> tuple[datetime, str]:
    store.write(h(5), "187520_2026-11-01_5#9.json", b'{"event_type":"stray"}\n')
    return h(5), "187520_2026-11-01_5#9.json"


def tamper_file_count(store: Store) -> tuple[datetime, str]:
    raw = json.loads(store.read(h(6), MANIFEST_NAME))
    raw["files"][1]["events"] += 3
    raw["events"] += 3  # consistent with itself: only the stored file tells
    store.write(h(6), MANIFEST_NAME, json.dumps(raw).encode())
    return h(6), raw["files"][1]["name"]


def tamper_total_count(store: Store) -> tuple[datetime, str]:
    raw = json.loads(store.read(h(0), MANIFEST_NAME))
    raw["events"] -= 1
    store.write(h(0), MANIFEST_NAME, json.dumps(raw).encode())
    return h(0), MANIFEST_NAME


def orphan_in_missing_hour(store: Store) -> tuple[datetime, str]:
    store.write(h(8), "187520_2026-11-01_8#0.json", b'{"a":1}\n')
    return h(8), "187520_2026-11-01_8#0.json"


FAULTS = {
    flip_a_byte: {"sha256"},
    truncate: {"size", "sha256", "events"},
    delete: {"missing"},
    add_extra: {"extra"},
    tamper_file_count: {"events"},
    tamper_total_count: {"manifest"},
    orphan_in_missing_hour: {"extra"},
}


@pytest.mark.parametrize("fault", list(FAULTS), ids=lambda f: f.__name__)
def test_verify_catches(
    fault: Any, store: Store, events: int, capsys: pytest.CaptureFixture[str]
) -> None:
    hour, name = fault(store)
    code, out, _ = cli(capsys, store, "verify", "--json")
    assert code == 1
    whole = json.loads(out)
    doc = whole["projects"]["website"]
    assert whole["ok"] is False and whole["problem_count"] == len(doc["problems"])
    assert doc["ok"] is False and doc["bad_hours"] == [f"{hour:%Y-%m-%dT%H}:00:00Z"]
    assert {p["kind"] for p in doc["problems"]} == FAULTS[fault]
    assert {p["file"] for p in doc["problems"]} == {name}


def test_verify_reports_every_problem_at_once(
    store: Store, events: int, capsys: pytest.CaptureFixture[str]
) -> None:
    for fault in FAULTS:
        fault(store)
    store.write(h(2), MANIFEST_NAME, b"[]")
    code, out, _ = cli(capsys, store, "verify", "--json")
    assert code == 1
    doc = json.loads(out)["projects"]["website"]
    kinds = [(p["hour"][11:13], p["kind"]) for p in doc["problems"]]
    assert sorted(set(kinds)) == [
        ("00", "manifest"),
        ("01", "sha256"),
        ("02", "manifest"),
        ("03", "events"),
        ("03", "sha256"),
        ("03", "size"),
        ("04", "missing"),
        ("05", "extra"),
        ("06", "events"),
        ("08", "extra"),
    ]
    size = next(p for p in doc["problems"] if p["kind"] == "size")
    assert size["expected"] > size["actual"]
    code, text, _ = cli(capsys, store, "verify")  # the text form names each problem on a line
    assert code == 1 and f"{len(doc['problems'])} problems in 8 hours" in text
    for problem in doc["problems"]:
        assert f"{problem['hour']}  {problem['kind']:<10} {problem['file']}" in text
    assert "async-amp extract --start 2026-11-01T00 --end 2026-11-01T06 --force" in text
    assert "async-amp extract --start 2026-11-01T08 --end 2026-11-01T08 --force" in text


def test_verify_gunzips_kept_gzip_files_to_count_events(
    store: Store, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _extract(store, workdir / "out", [h(0), h(1)], keep_gzip=True)
    code, out, _ = cli(capsys, store, "verify", "--json")
    assert code == 0, out
    doc = json.loads(out)["projects"]["website"]
    assert doc["files_checked"] == 6 and doc["events_counted"] > 0
    name = _first(store, h(1))
    assert name.endswith(".json.gz")
    data = store.read(h(1), name)
    store.write(h(1), name, data[: len(data) // 2])  # cut inside the deflate stream
    code, out, _ = cli(capsys, store, "verify", "--json")
    kinds = {p["kind"] for p in json.loads(out)["projects"]["website"]["problems"]}
    assert code == 1 and kinds == {"size", "sha256", "corrupt"}


# --- the pieces -----------------------------------------------------------------------------


def _facts(data: bytes, size: int, *, gz: bool) -> tuple[int, str, int, str]:
    check = FileCheck(gzip=gz)
    for start in range(0, len(data), size):
        check.update(data[start : start + size])
    f = check.finish()
    return f.bytes, f.sha256, f.events, f.error


@pytest.mark.parametrize("size", [1, 7, 65536])
@pytest.mark.parametrize(
    "text", [b"", b"{}\n", b'{"a":1}\n{"b":2}\n', b'{"a":1}\n{"b":2}', b"\n\n\n"]
)
def test_file_check_counts_as_the_extractor_does_whatever_the_chunking(
    text: bytes, size: int
) -> None:
    want_events = text.count(b"\n") + (1 if text and not text.endswith(b"\n") else 0)
    assert _facts(text, size, gz=False) == (
        len(text),
        hashlib.sha256(text).hexdigest(),
        want_events,
        "",
    )
    packed = gzip.compress(text)
    assert _facts(packed, size, gz=True) == (
        len(packed),
        hashlib.sha256(packed).hexdigest(),
        want_events,
        "",
    )


def test_file_check_reports_bad_gzip() -> None:
    packed = gzip.compress(b'{"a":1}\n' * 100)
    assert "cut short" in _facts(packed[:-8], 7, gz=True)[3]
    assert "corrupt" in _facts(b"not gzip at all", 4, gz=True)[3]


def test_local_sink_reads_back_in_bounded_chunks(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path, run_id="r", fsync=False)
    folder = tmp_path / hour_folder("website", DAY1)
    folder.mkdir(parents=True)
    big = b"x" * (2 * READ_CHUNK + 5)
    (folder / "b.json").write_bytes(big)
    (folder / "a.json").write_bytes(b"{}\n")
    (folder / MANIFEST_NAME).write_bytes(b"{}")
    (folder / "sub").mkdir()

    async def go() -> tuple[list[str], list[int], list[str]]:
        names = await sink.list_files("website", DAY1)
        sizes = [len(c) async for c in sink.iter_file("website", DAY1, "b.json")]
        nothing = await sink.list_files("website", DAY1 + timedelta(hours=1))
        return names, sizes, nothing

    names, sizes, nothing = anyio.run(go)
    assert names == ["a.json", "b.json"] and nothing == []
    assert sum(sizes) == len(big) and max(sizes) <= READ_CHUNK and len(sizes) == 3


@pytest.mark.parametrize("gz", [False, True], ids=["json", "json.gz"])
def test_verify_streams_with_flat_memory(tmp_path: Path, gz: bool) -> None:
    import tracemalloc

    from async_amp.output.manifest import FileEntry

    line = b'{"event_type":"Page Viewed","event_properties":{"page_path":"/pricing"},"n":%d}\n'
    text = b"".join(line % i for i in range(400_000))  # ~30 MB of NDJSON
    data = gzip.compress(text, compresslevel=1) if gz else text
    name = "187520_2026-11-01_0#0.json" + (".gz" if gz else "")
    folder = tmp_path / hour_folder("website", DAY1)
    folder.mkdir(parents=True)
    (folder / name).write_bytes(data)
    entry = FileEntry(name, len(data), 400_000, hashlib.sha256(data).hexdigest())
    manifest = Manifest(DAY1, "complete", (entry,), attempts=1, extracted_at=NOW)
    (folder / MANIFEST_NAME).write_bytes(manifest.dumps())
    del text, data
    sink = LocalSink(tmp_path, run_id="r", fsync=False)
    tracemalloc.start()
    try:
        report = anyio.run(lambda: verify(sink, "website", DAY1, DAY1))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok and report.events == 400_000
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while checking a ~30 MB file"


@pytest.mark.parametrize("name", ["../x.json", "a/b.json", "..", ""])
def test_local_sink_refuses_to_read_outside_the_hour(tmp_path: Path, name: str) -> None:
    from async_amp.errors import StorageError

    sink = LocalSink(tmp_path, run_id="r", fsync=False)

    async def go() -> None:
        async for _ in sink.iter_file("website", DAY1, name):
            pass

    with pytest.raises(StorageError, match="not a plain file name"):
        anyio.run(go)


class CountingSink:
    """A sink that delegates to another and records how many files are read at once."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.active = 0
        self.peak = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def iter_file(self, project: str, hour: datetime, name: str) -> AsyncIterator[bytes]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            async for chunk in self.inner.iter_file(project, hour, name):
                await anyio.sleep(0.002)
                yield chunk
        finally:
            self.active -= 1


def test_verify_checks_hours_concurrently_within_its_bound(store: Store, events: int) -> None:
    counting = CountingSink(store.sink())

    async def go() -> VerifyReport:
        try:
            return await verify(counting, "website", h(0), h(23), concurrency=3)  # type: ignore[arg-type]
        finally:
            await counting.aclose()

    report = anyio.run(go)
    assert report.ok and report.checked == 7
    assert 1 < counting.peak <= 3  # an hour reads its files one at a time
