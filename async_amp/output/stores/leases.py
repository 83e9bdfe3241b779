"""Run leases in an object store: which incomplete multipart uploads a killed run left behind.

An incomplete multipart upload carries no owner: S3 lists its key, its id and when it was
initiated, nothing else (and S3-compatible stores do not all report that time truthfully: moto
answers one fixed date). So every run of the S3 sink writes a small lease object
``<prefix>/.async-amp-runs/<run_id>.json`` (host, pid, start time, last refresh) before it
uploads anything, refreshes it at most once a minute while it uploads, and deletes it at the
end. The next run's ``prepare()``:

1. lists the incomplete uploads under the prefix;
2. lists the leases: a lease is *live* when its run is still going: on this host, when its
   process is alive; elsewhere, when it was refreshed within ``STALE_AFTER_S``;
3. when no other run is live, aborts those uploads: nobody can own them. Every lease is written
   before its run's first upload, so listing the uploads *before* the leases never takes a
   live run's upload for an orphan. While another run is live, nothing is aborted (its uploads
   cannot be told from orphans without trusting two clocks); a later run does it.

Dead runs' leases are deleted on the way. Runs that always overlap (many shards started at
once) or a prefix no run visits again rely on the bucket lifecycle rule in docs/s3.md
(``AbortIncompleteMultipartUpload`` after a day), which is the backstop in every case.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from .shared import pid_alive

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["LEASE_FOLDER", "LeaseBook", "LeaseStore"]

LEASE_FOLDER = ".async-amp-runs"
REFRESH_S = 60.0
STALE_AFTER_S = 3600.0


def _live(lease: dict[str, Any], host: str, now: float) -> bool:
    try:
        if lease["host"] == host:
            return pid_alive(int(lease["pid"]))
        return now - float(lease["refreshed"]) < STALE_AFTER_S
    except (KeyError, TypeError, ValueError):
        return False


class LeaseStore(Protocol):
    """What the leases need of their bucket (``s3.S3Sink``)."""

    bucket: str
    prefix: str

    def name(self, path: str) -> str: ...

    def error(
        self, exc: Exception, action: str, key: str | None, permission: str, *, run: bool = False
    ) -> Exception: ...

    async def list_keys(
        self, start: str, *, delimiter: str = "", run: bool = False
    ) -> list[str]: ...

    async def get_bytes(self, key: str) -> bytes | None: ...

    async def delete_keys(self, keys: list[str], *, run: bool = False) -> None: ...

    async def abort_upload(self, key: str, upload_id: str) -> None: ...


class LeaseBook:
    """This run's lease, and the clean-up of the uploads of runs that are gone."""

    def __init__(self, sink: LeaseStore, *, run_id: str) -> None:
        self._sink = sink
        self._folder = sink.name(LEASE_FOLDER) + "/"
        self.key = f"{self._folder}{run_id}.json"
        self._run_id = run_id
        self._host = socket.gethostname()
        self._started = time.time()
        self._refreshed_at = 0.0  # monotonic; 0 while no lease is held
        self.aborted: list[str] = []  # keys whose orphaned uploads the last prepare() aborted

    async def claim(self, client: S3Client) -> None:
        """Prove list, write and delete permission, hold a lease, abort orphaned uploads."""
        sink = self._sink
        uploads = await self._uploads(client)  # before the leases: see the module docstring
        others_live = False
        dead: list[str] = []
        now = time.time()
        for key in await sink.list_keys(self._folder):
            if key == self.key:
                continue
            lease = await self._read(key)
            if lease is None:
                continue
            if _live(lease, self._host, now):
                others_live = True
            else:
                dead.append(key)
        await self._write(client)
        # deleting dead leases proves delete permission; with none, a key that never exists
        await sink.delete_keys(dead or [f"{self._folder}{self._run_id}.probe"])
        self.aborted = []
        for key, upload_id in [] if others_live else uploads:
            await sink.abort_upload(key, upload_id)
            self.aborted.append(key)

    async def keep(self, client: S3Client) -> None:
        """Refresh the lease when the last refresh is over a minute old (cheap otherwise)."""
        if self._refreshed_at and time.monotonic() - self._refreshed_at > REFRESH_S:
            await self._write(client)

    async def release(self, client: S3Client) -> None:
        if self._refreshed_at:
            self._refreshed_at = 0.0
            await self._sink.delete_keys([self.key])

    async def _write(self, client: S3Client) -> None:
        body = {
            "run_id": self._run_id,
            "host": self._host,
            "pid": os.getpid(),
            "started": self._started,
            "refreshed": time.time(),
        }
        try:
            await client.put_object(
                Bucket=self._sink.bucket,
                Key=self.key,
                Body=json.dumps(body).encode(),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._sink.error(exc, "write", self.key, "s3:PutObject") from exc
        self._refreshed_at = time.monotonic()

    async def _read(self, key: str) -> dict[str, Any] | None:
        data = await self._sink.get_bytes(key)
        if data is None:
            return None  # its run just ended
        try:
            lease = json.loads(data)
        except ValueError:
            return {}
        return lease if isinstance(lease, dict) else {}

    async def _uploads(self, client: S3Client) -> list[tuple[str, str]]:
        """Incomplete multipart uploads of data objects under the sink's prefix."""
        sink = self._sink
        prefix = sink.name("") + "/" if sink.prefix else ""
        found: list[tuple[str, str]] = []
        try:
            paginator = client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=sink.bucket, Prefix=prefix):
                for upload in page.get("Uploads", ()):
                    key, upload_id = upload.get("Key", ""), upload.get("UploadId", "")
                    if "/date=" in key and "/hour=" in key and upload_id:
                        found.append((key, upload_id))
        except (ClientError, BotoCoreError) as exc:
            raise sink.error(exc, "list", prefix + "*", "s3:ListBucketMultipartUploads") from exc
        return found
