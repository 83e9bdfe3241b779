"""A checkpoint appears in the log once, whole and plain, before ``_last_checkpoint`` names it.

A reader lists the log, then reads the checkpoint it found by the size the listing gave: a
checkpoint rewritten in place after it appeared (delta-rs' own, then re-encoded plainly) made
delta-rs panic. These tests watch the writes themselves, not the timing of a reader: on a
local file system through inotify (every name created in ``_delta_log``, in order), on S3 (a
real S3-compatible server) through the bucket's object versions."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from azure.storage.blob import BlobServiceClient
from deltalake import DeltaTable

from async_amp.config import AzureConfig, S3Config
from async_amp.output.delta.checkpoint import LAST, checkpoint_name, is_plain
from async_amp.output.delta.files import table_schema
from async_amp.output.delta.location import azure_locator, s3_locator
from async_amp.output.delta.store import TableFiles
from async_amp.output.delta.table import TableLocation, Writers, ensure_table, replace_hour

from .azurite import Azurite
from .s3 import S3ServerProcess, admin_client
from .test_delta_year import EVENTS, put_hour

INTERVAL = 3
HOURS = 7  # commits 2..8 after the table (0) and its interval (1): checkpoints at 3 and 6
START = datetime(2026, 11, 1, tzinfo=UTC)
IN_CREATE, IN_MOVED_TO = 0x100, 0x80
NAMED = re.compile(r"\d{20}\.checkpoint\.parquet|_last_checkpoint")


@contextmanager
def created_names(folder: Path) -> Iterator[list[str]]:
    """The names created in ``folder`` (a new file, a link or a rename onto the name), in the
    order the kernel saw them: filled in when the block ends."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    assert libc.inotify_add_watch(fd, str(folder).encode(), IN_CREATE | IN_MOVED_TO) >= 0
    names: list[str] = []
    try:
        yield names
        data = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            data += chunk
        at = 0
        while at < len(data):
            _, _, _, size = struct.unpack_from("iIII", data, at)
            names.append(data[at + 16 : at + 16 + size].rstrip(b"\0").decode())
            at += 16 + size
    finally:
        os.close(fd)


def hours(location: TableLocation, spool: Path) -> None:
    """The table with ``INTERVAL``, then ``HOURS`` hourly commits of one run's writer."""
    ensure_table(location, table_schema(), "t")
    DeltaTable(location.uri, storage_options=location.options()).alter.set_table_properties(
        {"delta.checkpointInterval": str(INTERVAL)}
    )
    writers = Writers()
    for h in range(HOURS):
        at = START + timedelta(hours=h)
        files = [put_hour(location, spool, at)]
        replace_hour(location, at, files, schema=table_schema(), metadata={}, writers=writers)
    writers.close()


def test_a_local_checkpoint_is_created_once_then_named(tmp_path: Path) -> None:
    location = TableLocation(str(tmp_path / "t"))
    ensure_table(location, table_schema(), "t")
    log = tmp_path / "t" / "_delta_log"
    with created_names(log) as names:
        hours(location, tmp_path)
    # each checkpoint's name is made once (a complete file), and only then the pointer to it
    assert [n for n in names if NAMED.fullmatch(n)] == [
        f"{3:020d}.checkpoint.parquet",
        "_last_checkpoint",
        f"{6:020d}.checkpoint.parquet",
        "_last_checkpoint",
    ]
    for version in (3, 6):
        assert is_plain(pq.read_metadata(log / f"{version:020d}.checkpoint.parquet"))
    # readable by whoever may read the rest of the log (the same mode as delta-rs' commits)
    mode = (log / f"{0:020d}.json").stat().st_mode & 0o777
    assert {p.stat().st_mode & 0o777 for p in log.iterdir()} == {mode}
    assert DeltaTable(location.uri).to_pyarrow_table().num_rows == HOURS * EVENTS


@pytest.mark.anyio
async def test_an_s3_checkpoint_is_put_once_whole_and_plain(
    s3_server: S3ServerProcess, s3_bucket: str, tmp_path: Path
) -> None:
    async with admin_client(s3_server) as client:
        await client.put_bucket_versioning(
            Bucket=s3_bucket, VersioningConfiguration={"Status": "Enabled"}
        )
    s3 = S3Config(bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, addressing_style="path")
    location = s3_locator(s3, s3_server.admin.environ())("t")
    hours(location, tmp_path)
    prefix = "amplitude/t/_delta_log/"
    async with admin_client(s3_server) as client:
        listed = await client.list_object_versions(Bucket=s3_bucket, Prefix=prefix)
        versions: dict[str, list[str]] = {}
        for v in listed["Versions"]:
            versions.setdefault(v["Key"].removeprefix(prefix), []).append(v["VersionId"])
        checkpoints = sorted(n for n in versions if n.endswith(".checkpoint.parquet"))
        assert checkpoints == [f"{3:020d}.checkpoint.parquet", f"{6:020d}.checkpoint.parquet"]
        for name in checkpoints:
            assert len(versions[name]) == 1, name  # put once: never replaced under a reader
            got = await client.get_object(Bucket=s3_bucket, Key=prefix + name)
            body = await got["Body"].read()
            assert is_plain(pq.read_metadata(pa.BufferReader(body)))
        assert len(versions["_last_checkpoint"]) == 2
    table = DeltaTable(location.uri, storage_options=location.options())
    assert table.to_pyarrow_table().num_rows == HOURS * EVENTS


def _hint(version: int) -> bytes:
    return json.dumps({"version": version, "size": 1}).encode()


def _named(body: bytes | None) -> int:
    return int(json.loads(body)["version"]) if body else 0


def two_writers_at_once(location: TableLocation) -> None:
    """A checkpoint's name is taken once; ``_last_checkpoint`` never moves backwards when
    another writer replaces it between one writer's read and its put: that writer's put is
    refused, and compared again with the newer pointer. The other writer's write happens
    inside the first's comparison, right after its read: no timing involved."""
    files = TableFiles(location)
    name = checkpoint_name(6)
    assert files.put(name, b"first", exclusive=True)
    assert not files.put(name, b"second", exclusive=True)
    assert files.read(name) == b"first"
    for mine, theirs in ((3, 6), (9, 12)):  # the pointer absent, then there (If-Match)
        seen: list[int] = []

        def newer(
            body: bytes | None, mine: int = mine, theirs: int = theirs, seen: list[int] = seen
        ) -> bool:
            seen.append(_named(body))
            if len(seen) == 1:  # the other writer, between this one's read and its put
                assert files.advance(LAST, _hint(theirs), lambda b: _named(b) < theirs)
            return _named(body) < mine

        assert not files.advance(LAST, _hint(mine), newer)
        assert seen == [mine - 3, theirs]
        assert _named(files.read(LAST)) == theirs
    assert files.advance(LAST, _hint(15), lambda b: _named(b) < 15)
    assert _named(files.read(LAST)) == 15


@pytest.mark.anyio
async def test_checkpoint_writes_on_s3_are_conditional(
    s3_server: S3ServerProcess, s3_bucket: str
) -> None:
    s3 = S3Config(bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, addressing_style="path")
    two_writers_at_once(s3_locator(s3, s3_server.admin.environ())("t"))


def test_checkpoint_writes_on_azure_are_conditional(azurite: Azurite, azure_container: str) -> None:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        service.create_container(azure_container)
    environ = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    two_writers_at_once(azure_locator(AzureConfig(container=azure_container), environ)("t"))
