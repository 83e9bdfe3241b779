"""The Delta table layer on its own: hour replacement, conflicts between writers, locations."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from async_amp.config import AzureConfig
from async_amp.delta.location import azure_options
from async_amp.delta.table import (
    COMMIT_ATTEMPTS,
    CommitConflictError,
    TableLocation,
    hour_predicate,
    replace_hour,
)
from async_amp.errors import ConfigError

HOUR = datetime(2026, 11, 1, 5, tzinfo=UTC)
SCHEMA = pa.schema(
    [
        ("uuid", pa.utf8()),
        ("date", pa.date32()),
        ("hour", pa.int32()),
    ]
)


def batch(tag: str, n: int, hour: datetime = HOUR) -> pa.RecordBatch:
    return pa.record_batch(
        [
            pa.array([f"{tag}-{i}" for i in range(n)]),
            pa.array([hour.date()] * n, pa.date32()),
            pa.array([hour.hour] * n, pa.int32()),
        ],
        schema=SCHEMA,
    )


def reader(*batches: pa.RecordBatch) -> pa.RecordBatchReader:
    return pa.RecordBatchReader.from_batches(SCHEMA, iter(batches))


def test_hour_predicate_names_the_day_and_the_hour() -> None:
    assert hour_predicate(HOUR) == "date = '2026-11-01' AND hour = 5"


def test_a_writer_whose_snapshot_went_stale_redoes_its_commit_and_the_hour_is_there_once(
    tmp_path: Path,
) -> None:
    """Writer A reads the table, then stalls mid-write until writer B has replaced the same
    hour: A's commit conflicts, is redone on B's snapshot, and wins. Every version of the
    table holds the hour once: B's rows, then A's."""
    location = TableLocation(str(tmp_path / "t"))
    replace_hour(location, HOUR, lambda: reader(batch("first", 5)), metadata={"run_id": "0"})
    b_done = threading.Event()
    conflicts: list[tuple[int, str]] = []
    calls = [0]

    def a_rows() -> pa.RecordBatchReader:
        calls[0] += 1

        def rows():  # type: ignore[no-untyped-def]
            if calls[0] == 1:
                assert b_done.wait(60)
            yield batch("a", 7)

        return pa.RecordBatchReader.from_batches(SCHEMA, rows())

    versions: dict[str, int] = {}
    a = threading.Thread(
        target=lambda: versions.__setitem__(
            "a",
            replace_hour(
                location,
                HOUR,
                a_rows,
                metadata={"run_id": "a"},
                on_conflict=lambda n, why: conflicts.append((n, why)),
                sleep=lambda s: None,
            ),
        )
    )
    a.start()
    versions["b"] = replace_hour(location, HOUR, lambda: reader(batch("b", 3)), metadata={})
    b_done.set()
    a.join(60)
    assert calls[0] == 2 and len(conflicts) == 1 and "concurrent" in conflicts[0][1]
    assert versions == {"b": 1, "a": 2}
    for version, tag in ((0, "first"), (1, "b"), (2, "a")):
        uuids = Counter(
            DeltaTable(location.uri, version=version).to_pyarrow_table()["uuid"].to_pylist()
        )
        assert set(u.split("-")[0] for u in uuids) == {tag} and max(uuids.values()) == 1
    assert DeltaTable(location.uri).history(1)[0]["async_amp.run_id"] == "a"


def test_commit_conflicts_are_bounded(tmp_path: Path) -> None:
    """A writer that always loses gives up after COMMIT_ATTEMPTS with a clear error."""
    location = TableLocation(str(tmp_path / "t"))
    replace_hour(location, HOUR, lambda: reader(batch("x", 1)), metadata={})
    attempts = [0]

    def always_stale() -> pa.RecordBatchReader:
        attempts[0] += 1

        def rows():  # type: ignore[no-untyped-def]
            # another writer replaces the hour while this one is writing, every time (from
            # its own thread: this generator runs inside delta-rs)
            other = threading.Thread(
                target=replace_hour,
                args=(location, HOUR, lambda: reader(batch("other", 1))),
                kwargs={"metadata": {}},
            )
            other.start()
            other.join(60)
            yield batch("mine", 1)

        return pa.RecordBatchReader.from_batches(SCHEMA, rows())

    with pytest.raises(CommitConflictError, match=f"{COMMIT_ATTEMPTS} commits in a row"):
        replace_hour(location, HOUR, always_stale, metadata={}, sleep=lambda s: None)
    assert attempts[0] == COMMIT_ATTEMPTS
    assert DeltaTable(location.uri).to_pyarrow_table()["uuid"].to_pylist() == ["other-0"]


def test_rows_of_another_hour_are_refused_and_nothing_is_committed(tmp_path: Path) -> None:
    location = TableLocation(str(tmp_path / "t"))
    replace_hour(location, HOUR, lambda: reader(batch("x", 2)), metadata={})
    wrong = batch("y", 2, HOUR.replace(hour=6))
    with pytest.raises(Exception, match="failed validation"):
        replace_hour(location, HOUR, lambda: reader(wrong), metadata={})
    assert DeltaTable(location.uri).version() == 0


def test_azure_options_follow_the_azure_sinks_credentials() -> None:
    azurite = "http://127.0.0.1:41234/devstoreaccount1"
    key_cs = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=S2V5;BlobEndpoint={azurite};"
    options, secrets, refresh = azure_options(
        AzureConfig(), {"AZURE_STORAGE_CONNECTION_STRING": key_cs}
    )
    assert options == {
        "endpoint": azurite,
        "account_name": "devstoreaccount1",
        "allow_http": "true",
        "account_key": "S2V5",
    }
    assert "S2V5" in secrets and refresh is None
    cloud = "DefaultEndpointsProtocol=https;AccountName=acme;SharedAccessSignature=sv=1&sig=abc;EndpointSuffix=core.windows.net"
    options, _, _ = azure_options(AzureConfig(), {"AZURE_STORAGE_CONNECTION_STRING": cloud})
    assert options == {
        "endpoint": "https://acme.blob.core.windows.net",
        "account_name": "acme",
        "sas_token": "sv=1&sig=abc",
    }
    sas_config = AzureConfig(account_url="https://acme.blob.core.windows.net")
    options, secrets, _ = azure_options(sas_config, {"AZURE_STORAGE_SAS_TOKEN": "?sv=2&sig=def"})
    assert options["sas_token"] == "sv=2&sig=def" and "allow_http" not in options
    options, secrets, refresh = azure_options(sas_config, {})
    assert refresh is not None and "account_key" not in options and "sas_token" not in options
    with pytest.raises(ConfigError, match="account_url"):
        azure_options(AzureConfig(), {})


def test_two_writers_creating_the_table_at_once_both_commit_and_know_their_version(
    tmp_path: Path,
) -> None:
    """Both find no table and write its first commit; one of them loses version 0 and is
    redone as version 1. Each is told the version of its own commit."""
    for attempt in range(5):
        location = TableLocation(str(tmp_path / f"t{attempt}"))
        start = threading.Barrier(2)
        got: dict[int, int] = {}

        def write(
            hour: int,
            location: TableLocation = location,
            start: threading.Barrier = start,
            got: dict[int, int] = got,
        ) -> None:
            at = HOUR.replace(hour=hour)
            start.wait()
            got[hour] = replace_hour(
                location, at, lambda: reader(batch(f"h{hour}", 2, at)), metadata={"hour": hour}
            )

        threads = [threading.Thread(target=write, args=(h,)) for h in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(got.values()) == [0, 1]
        history = {h["version"]: h["async_amp.hour"] for h in DeltaTable(location.uri).history()}
        assert history == {v: h for h, v in got.items()}
