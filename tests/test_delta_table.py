"""The Delta table layer on its own: data files and their statistics, hour replacement,
conflicts between writers, orphan files, locations."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import SchemaMismatchError

from async_amp.config import AzureConfig
from async_amp.errors import ConfigError
from async_amp.output.delta.compact import compact_day
from async_amp.output.delta.files import DataFile, put_file
from async_amp.output.delta.location import azure_options
from async_amp.output.delta.table import (
    COMMIT_ATTEMPTS,
    CommitConflictError,
    TableLocation,
    Writers,
    hour_predicate,
    replace_hour,
    uuid_digest,
)

HOUR = datetime(2026, 11, 1, 5, tzinfo=UTC)
TS = pa.timestamp("us", tz="UTC")
EVENTS = pa.schema(
    [("uuid", pa.utf8()), ("event_time", TS), ("session_id", pa.int64()), ("_export_hour", TS)]
)
DATA = EVENTS.append(pa.field("hour", pa.int32(), nullable=False))
"""A data file of the day layout: the table's columns but ``date`` (its partition)."""
SCHEMA = EVENTS.append(pa.field("date", pa.date32(), nullable=False)).append(
    pa.field("hour", pa.int32(), nullable=False)
)
_NAMES = count()


def data_file(
    location: TableLocation, tag: str, n: int, hour: datetime = HOUR, minute: int = 0
) -> DataFile:
    """``n`` rows ``tag-0``.. (one a minute from ``minute``, the first without a session),
    written locally and put into the table (not committed)."""
    spool = Path(location.uri.removeprefix("file://")).parent / f"spool-{next(_NAMES)}.parquet"
    rows = pa.table(
        {
            "uuid": [f"{tag}-{i}" for i in range(n)],
            "event_time": pa.array([hour + timedelta(minutes=minute + i) for i in range(n)], TS),
            "session_id": [None, *range(1, n)],
            "_export_hour": pa.array([hour] * n, TS),
            "hour": pa.array([hour.hour] * n, pa.int32()),
        },
        schema=DATA,
    )
    pq.write_table(rows, spool, compression="zstd")
    return put_file(location, spool, hour)


def commit(location: TableLocation, *files: DataFile, **kw) -> int:  # type: ignore[no-untyped-def]
    return replace_hour(location, HOUR, files, schema=SCHEMA, metadata=kw.pop("metadata", {}), **kw)


def tags(uri: str, version: int | None = None) -> Counter[str]:
    uuids = DeltaTable(uri, version=version).to_pyarrow_table()["uuid"].to_pylist()
    assert len(set(uuids)) == len(uuids)  # never a row twice
    return Counter(u.split("-")[0] for u in uuids)


def other_process(location: TableLocation) -> TableLocation:
    """The same table under another URI: another writer, as another process would be (each
    process, and each URI, has its own commit lock)."""
    return TableLocation("file://" + location.uri)


def test_hour_predicate_names_the_day_and_the_hour() -> None:
    assert hour_predicate(HOUR) == "date = '2026-11-01' AND hour = 5"


def test_stats_from_the_footer_let_readers_skip_files(tmp_path: Path) -> None:
    location = TableLocation(str(tmp_path / "t"))
    early, late = data_file(location, "a", 10), data_file(location, "b", 10, minute=30)
    assert early.path.startswith("date=2026-11-01/part-") and early.rows == 10
    assert early.partition == {"date": "2026-11-01"}
    hour = "2026-11-01T05:00:00.000000Z"
    assert json.loads(early.stats) == {
        "numRecords": 10,
        "minValues": {
            "uuid": "a-0",
            "event_time": hour,
            "session_id": 1,
            "_export_hour": hour,
            "hour": 5,
        },
        "maxValues": {
            "uuid": "a-9",
            "event_time": "2026-11-01T05:09:00.000000Z",
            "session_id": 9,
            "_export_hour": hour,
            "hour": 5,
        },
        "nullCount": {"uuid": 0, "event_time": 0, "session_id": 1, "_export_hour": 0, "hour": 0},
    }
    assert commit(location, early, late) == 1  # version 0 created the table
    table = DeltaTable(location.uri)
    actions = pa.table(table.get_add_actions(flatten=True))
    assert actions["num_records"].to_pylist() == [10, 10]
    assert actions.schema.field("min.event_time").type == TS
    assert sorted(actions["min.event_time"].to_pylist()) == [HOUR, HOUR + timedelta(minutes=30)]
    # a reader's filter on event_time skips the early file without opening it
    after = pc.field("event_time") >= pa.scalar(HOUR + timedelta(minutes=20), TS)
    fragments = list(table.to_pyarrow_dataset().get_fragments(filter=after))
    assert [f.path.split("/")[-1] for f in fragments] == [late.path.split("/")[-1]]
    assert table.to_pyarrow_dataset().count_rows(filter=after) == 10
    protocol = table.protocol()
    assert (protocol.min_reader_version, protocol.min_writer_version) == (1, 2)


def test_a_writer_whose_snapshot_went_stale_redoes_its_commit_and_the_hour_is_there_once(
    tmp_path: Path,
) -> None:
    """Writer A reads the table, then, before it commits, writer B replaces the same hour:
    A's commit conflicts (B removed files A's snapshot held), is redone on B's snapshot
    without writing its files again, and wins. Every version holds the hour once."""
    location = TableLocation(str(tmp_path / "t"))
    commit(location, data_file(location, "first", 5))
    mine = data_file(location, "a", 7)
    conflicts: list[tuple[int, str]] = []

    def b_commits_first(snapshot: DeltaTable) -> None:
        if not conflicts and snapshot.version() == 1:
            other = other_process(location)
            assert (
                replace_hour(other, HOUR, [data_file(other, "b", 3)], schema=SCHEMA, metadata={})
                == 2
            )

    version = commit(
        location,
        mine,
        metadata={"run_id": "a"},
        on_conflict=lambda n, why: conflicts.append((n, why)),
        on_snapshot=b_commits_first,
        sleep=lambda s: None,
    )
    assert version == 3 and len(conflicts) == 1 and "concurrent" in conflicts[0][1]
    for v, tag, n in ((1, "first", 5), (2, "b", 3), (3, "a", 7)):
        assert tags(location.uri, v) == {tag: n}
    assert DeltaTable(location.uri).history(1)[0]["async_amp.run_id"] == "a"


def test_two_writers_of_an_hour_the_table_never_had_cannot_both_add_it(tmp_path: Path) -> None:
    """Nothing to remove, so only the hour's transaction id makes the two commits conflict:
    without it both copies would land."""
    location = TableLocation(str(tmp_path / "t"))
    commit(location, data_file(location, "other", 1, HOUR.replace(hour=1)))  # another hour
    conflicts: list[str] = []

    def b_adds_the_hour(snapshot: DeltaTable) -> None:
        if not conflicts:
            other = other_process(location)
            replace_hour(other, HOUR, [data_file(other, "b", 2)], schema=SCHEMA, metadata={})

    commit(
        location,
        data_file(location, "a", 4),
        on_conflict=lambda n, why: conflicts.append(why),
        on_snapshot=b_adds_the_hour,
        sleep=lambda s: None,
    )
    assert len(conflicts) == 1
    assert tags(location.uri, 2) == {"other": 1, "b": 2}
    assert tags(location.uri) == {"other": 1, "a": 4}
    log = (tmp_path / "t" / "_delta_log" / f"{3:020d}.json").read_text().splitlines()
    # the hour's id, and the day's: the commit that won the retry removed b's file
    assert [json.loads(a)["txn"]["appId"] for a in log if '"txn"' in a] == [
        "async-amp:2026-11-01T05",
        "async-amp:day:2026-11-01",
    ]


def test_commit_conflicts_are_bounded_and_the_losers_files_stay_invisible(
    tmp_path: Path,
) -> None:
    """A writer that always loses gives up after COMMIT_ATTEMPTS with a clear error; its
    file, never committed, is in no snapshot, and vacuum deletes it once past retention."""
    location = TableLocation(str(tmp_path / "t"))
    commit(location, data_file(location, "x", 1))
    attempts = [0]

    def always_beaten(snapshot: DeltaTable) -> None:
        attempts[0] += 1
        other = other_process(location)
        replace_hour(other, HOUR, [data_file(other, "other", 1)], schema=SCHEMA, metadata={})

    mine = data_file(location, "mine", 1)
    with pytest.raises(CommitConflictError, match=f"{COMMIT_ATTEMPTS} commits in a row"):
        commit(location, mine, on_snapshot=always_beaten, sleep=lambda s: None)
    assert attempts[0] == COMMIT_ATTEMPTS
    assert tags(location.uri) == {"other": 1}
    orphan = tmp_path / "t" / mine.path
    assert orphan.exists()
    assert not any(mine.path in u for u in DeltaTable(location.uri).file_uris())
    # younger than the retention: kept (it could belong to a write still in flight)
    compact_day(location, HOUR.date(), retention_hours=1)
    assert orphan.exists()
    old = time.time() - 2 * 3600
    os.utime(orphan, (old, old))
    compact_day(location, HOUR.date(), retention_hours=1)
    assert not orphan.exists() and tags(location.uri) == {"other": 1}
    # the run commits the hour again later (hour.commit_again): its staged file is still there
    [staged] = [
        p
        for p in tmp_path.glob("spool-*.parquet")
        if pq.read_table(p)["uuid"][0].as_py().startswith("mine")
    ]
    commit(location, put_file(location, staged, HOUR))
    assert tags(location.uri) == {"mine": 1}


def test_a_table_with_other_columns_is_refused_and_nothing_is_committed(tmp_path: Path) -> None:
    location = TableLocation(str(tmp_path / "t"))
    write_deltalake(
        location.uri,
        pa.table({"id": [1], "date": pa.array([HOUR.date()]), "hour": pa.array([5], pa.int32())}),
        partition_by=["date", "hour"],
    )
    with pytest.raises(SchemaMismatchError, match="other columns"):
        commit(location, data_file(location, "x", 2))
    assert DeltaTable(location.uri).version() == 0


def test_the_uuid_digest_ignores_order_and_files_and_counts_nulls_as_empty() -> None:
    a = pa.array(["b", None, "a", "é"])
    parts = [pa.chunked_array([pa.array(["é", "a"])]), pa.array([None, "b"])]
    assert uuid_digest([a]) == uuid_digest(parts) != uuid_digest([pa.array(["a", "b", "é"])])
    import hashlib

    assert uuid_digest([a]) == hashlib.sha256("\na\nb\né\n".encode()).hexdigest()
    assert uuid_digest([]) == hashlib.sha256(b"").hexdigest()


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
    """Both find no table and create it (delta-rs may commit both creations, the second
    one rebased as version 1), then commit their hours. Each is told its own version."""
    for attempt in range(5):
        location = TableLocation(str(tmp_path / f"t{attempt}"))
        start = threading.Barrier(2)
        got: dict[int, int] = {}

        def write(
            hour: int,
            where: TableLocation,
            start: threading.Barrier = start,
            got: dict[int, int] = got,
        ) -> None:
            at = HOUR.replace(hour=hour)
            files = [data_file(where, f"h{hour}", 2, at)]
            start.wait()
            got[hour] = replace_hour(where, at, files, schema=SCHEMA, metadata={"hour": hour})

        threads = [
            threading.Thread(target=write, args=(1, location)),
            threading.Thread(target=write, args=(2, other_process(location))),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(set(got.values())) == 2 and min(got.values()) >= 1
        for hour, version in got.items():
            log = tmp_path / f"t{attempt}" / "_delta_log" / f"{version:020d}.json"
            commit = json.loads(log.read_text().splitlines()[0])["commitInfo"]
            assert commit["async_amp.hour"] == hour
        assert tags(location.uri) == {"h1": 2, "h2": 2}


def test_a_table_deleted_and_made_again_under_the_process_is_written_afresh(
    tmp_path: Path,
) -> None:
    """A run keeps its snapshot between commits (its ``Writers``); when the table under it
    was deleted (a Python API caller starting over), the commit is made on the table as it
    is now."""
    location = TableLocation(str(tmp_path / "t"))
    writers = Writers()
    for tag in ("a", "b", "c"):
        commit(location, data_file(location, tag, 2), writers=writers)
    assert len(writers) == 1
    shutil.rmtree(tmp_path / "t")
    assert commit(location, data_file(location, "new", 3), writers=writers) == 1
    assert tags(location.uri) == {"new": 3}
