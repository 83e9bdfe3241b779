"""Google Cloud Storage sink, natively through the JSON API: resumable uploads finalized only at
commit, generation preconditions on what the commit deletes and writes.

Layout: ``gs://<bucket>/<prefix>/<project>/date=YYYY-MM-DD/hour=HH/<file>``, plus the same
``_manifest.json`` as the other sinks, written last. The client is gcloud-aio-auth for the
token (service-account keys, Application Default Credentials) and the project's own aiohttp
for the calls (``gcs_client.py``); why, with the measurements: docs/gcs.md.

How the ``Sink`` contract maps onto GCS:

- Staging: each member becomes a resumable upload session to its final name. Its bytes go out
  in chunks of ``chunk_size_mib`` as they are written (one chunk per member buffered, nothing
  kept whole, no temporary file); GCS answers how much it kept and the rest is sent again.
  The last bytes of a file (at most 256 KiB, the API's chunk granularity) are held back: an
  upload is an object only once its final chunk arrives, so until ``commit`` no listing, GET
  or metadata call shows it.
- ``commit(manifest)``: delete the old manifest (the hour stops looking done), finalize each
  member (its last chunk with the total size), delete stale data objects of an earlier
  extraction (each only at the generation the listing showed: a file another writer just
  replaced stays), write the manifest **last**, only if none exists (``ifGenerationMatch=0``):
  of two runs committing one hour at once, one fails and redoes the hour instead of both
  believing they wrote it last.
- ``discard()``: cancels the attempt's upload sessions (GCS drops their bytes).
- ``prepare()``: proves list, write and delete permission (one listing, one small probe object
  written and deleted). Sessions of killed runs need no clean-up: GCS never shows an
  unfinalized upload and forgets it after a week, at no cost.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Self

from ...config import GcsConfig
from ...errors import ConfigError, CredentialsError, StorageError
from ...hours import MemberName, iso_hour
from ..manifest import MANIFEST_NAME
from .gcs_client import GcsClient, GcsError, Listed
from .object_hour import ObjectHourStaging, ObjectStoreReads
from .parts import PartBody, PartedUpload, PartPool
from .shared import (
    MANIFEST_CONTENT_TYPE,
    TIMEOUT_RETRIES,
    check_file_name,
    content_type,
    each_at_once,
    header_safe,
)

if TYPE_CHECKING:
    from .base import Store

__all__ = ["PROBE_FOLDER", "GcsSink"]

MIB = 1024 * 1024
QUANTUM = 256 * 1024  # every chunk but the last is a multiple of this
PROBE_FOLDER = ".async-amp-probe"
_CREATE = "storage.objects.create"
_DELETE = "storage.objects.delete"
_LIST = "storage.objects.list"
_GET = "storage.objects.get"
_Answer = tuple[int, Mapping[str, str], bytes]


class _GcsMember(PartedUpload):
    """One data object being staged: a resumable upload session fed chunk by chunk, its last
    bytes held back until ``commit`` finalizes it."""

    __slots__ = ("_metadata", "_name", "_session", "_sink", "_tail", "generation")

    def __init__(self, sink: GcsSink, name: str, metadata: dict[str, str]) -> None:
        super().__init__(sink.parts)
        self._sink = sink
        self._name = name
        self._metadata = metadata
        self._session: str | None = None  # the upload session's URL
        self._tail = b""  # the held-back end of the file (< 256 KiB, or exactly 256 KiB)
        self.generation: int | None = None

    def _where(self) -> str:
        return self._sink.client.where(self._name)

    def _prepare(self, part: memoryview, number: int) -> None:
        return None

    async def _send(self, part: PartBody, number: int, prepared: None) -> None:
        view = part._view
        offset = number * self._sink.parts.part_size
        if len(view) == self._sink.parts.part_size:
            send = len(view)  # a full chunk: whole (a multiple of 256 KiB)
        else:  # the file's last, short part: keep its unaligned end (at least a byte) back
            send = ((len(view) - 1) // QUANTUM) * QUANTUM
        if send:
            await self._put(view[:send], offset, total=None)
        if len(view) != self._sink.parts.part_size:
            self._tail = bytes(view[send:])

    async def _open(self) -> str:
        if self._session is None:
            client = self._sink.client
            body = json.dumps(
                {
                    "name": self._name,
                    "contentType": content_type(self._name),
                    "metadata": self._metadata,
                }
            ).encode()
            try:
                _, headers, _ = await client.request(
                    "POST",
                    client.object_url(self._name, upload=True),
                    params={"uploadType": "resumable", "name": self._name},
                    headers={
                        "Content-Type": "application/json; charset=UTF-8",
                        "X-Upload-Content-Type": content_type(self._name),
                    },
                    data=body,
                )
            except (GcsError, CredentialsError, OSError, TimeoutError) as exc:
                raise client.error(
                    exc, "start the upload of", self._name, _CREATE, run=True
                ) from exc
            location = headers.get("Location")
            if not location:
                msg = f"{self._where()}: GCS started no upload session (no Location)"
                raise StorageError(msg)
            self._session = location
        return self._session

    async def _put(self, view: memoryview, offset: int, *, total: int | None) -> dict[str, object]:
        """Send ``view`` as bytes ``offset``... of the object (the final chunk when ``total``
        is given), again from where GCS says it stopped until it kept all of it. A chunk that
        failed on the way is not sent blindly again: GCS is asked what it kept first."""
        client = self._sink.client
        session = await self._open()
        end = offset + len(view)
        size = str(total) if total is not None else "*"
        kind = content_type(self._name)
        sent, failures, timeouts = 0, 0, 0
        while True:
            span = "*" if sent == len(view) else f"{offset + sent}-{end - 1}"
            chunk = view[sent:]
            try:
                status, headers, content = await client.request(
                    "PUT",
                    session,
                    # the upload's content type again: GCS keeps the session's, emulators this
                    headers={"Content-Range": f"bytes {span}/{size}", "Content-Type": kind},
                    # a chunk no byte of leaves for read_timeout_s fails (the read timeout
                    # starts only once the body is sent: a stalled store would hold it forever)
                    rewind=lambda chunk=chunk: PartBody(chunk, stall_s=client.read_timeout_s),
                    ok=(200, 201, 308),
                    retries=0,
                )
            except (GcsError, CredentialsError, OSError, TimeoutError) as exc:
                failures += 1
                timeouts += isinstance(exc, TimeoutError)
                if (
                    not client.retried(exc)
                    or failures > client.retries
                    or timeouts > TIMEOUT_RETRIES
                ):
                    raise client.error(
                        exc, "upload a chunk of", self._name, _CREATE, run=True
                    ) from exc
                await client.pause(failures)
                status, headers, content = await self._ask(session, size, timeouts=timeouts)
            if status in (200, 201):
                if total is None:
                    msg = f"{self._where()}: GCS finalized the object before its last chunk"
                    raise StorageError(msg)
                return dict(json.loads(content))
            kept = _kept(headers.get("Range"))
            if kept < offset:
                msg = f"{self._where()}: GCS lost bytes it had kept (at {kept}, not {offset})"
                raise StorageError(msg)
            if kept >= end:
                if total is None:
                    return {}
                if sent == len(view):
                    msg = f"{self._where()}: GCS kept every byte but did not finalize"
                    raise StorageError(msg)
            sent = min(kept, end) - offset

    async def _ask(self, session: str, size: str, *, timeouts: int = 0) -> _Answer:
        """What the upload session holds: 308 with the range kept, or 200 when finalized.
        ``timeouts``: the chunk's tries that timed out, which count against TIMEOUT_RETRIES."""
        client = self._sink.client
        try:
            return await client.request(
                "PUT",
                session,
                headers={"Content-Range": f"bytes */{size}"},
                ok=(200, 201, 308),
                timeout_retries=max(0, TIMEOUT_RETRIES - timeouts),
            )
        except (GcsError, CredentialsError, OSError, TimeoutError) as exc:
            raise client.error(exc, "resume the upload of", self._name, _CREATE, run=True) from exc

    async def commit(self) -> None:
        """Finalize the object: its held-back end with the total size."""
        if self.generation is not None:  # finalized by an earlier try of this commit
            return
        if self._session is None and self.total == 0:
            self.generation = await self._sink.put_small(
                self._name, b"", content_type(self._name), self._metadata, if_absent=False
            )
            return
        offset = self.total - len(self._tail)
        answer = await self._put(memoryview(self._tail), offset, total=self.total)
        self.generation = int(str(answer.get("generation", 0)))
        stored = int(str(answer.get("size", -1)))
        if stored != self.total:
            msg = f"{self._where()}: GCS stored {stored} bytes, {self.total} were sent"
            raise StorageError(msg)

    async def cancel(self) -> None:
        session, self._session = self._session, None
        if session is not None and not self._sink.client.answers.silent:  # else GCS forgets it
            with contextlib.suppress(GcsError, OSError, TimeoutError):
                await self._sink.client.request("DELETE", session, ok=(204, 499, 404, 410))


def _kept(header: str | None) -> int:
    """The bytes GCS kept, from its ``Range: bytes=0-N`` (none: 0)."""
    if not header or "-" not in header:
        return 0
    return int(header.rsplit("-", 1)[1]) + 1


class _GcsStaging(ObjectHourStaging[_GcsMember]):
    """One attempt at one hour: members staged as resumable sessions until ``commit``."""

    def __init__(self, sink: GcsSink, project: str, hour: datetime) -> None:
        super().__init__(sink.hour_prefix(project, hour), hour, sink.run_id)
        self._sink = sink
        self._generations: dict[str, int] = {}

    def open_member(self, member: MemberName, file_name: str) -> _GcsMember:
        metadata = {
            "hour": iso_hour(self._hour),
            "source": header_safe(f"{member.project_id}/{member.base_name}"),
            "run_id": header_safe(self._sink.run_id),
        }
        name = f"{self._folder}/{file_name}"
        return self._add(file_name, _GcsMember(self._sink, name, metadata))

    def _where(self, name: str) -> str:
        return self._sink.client.where(name)

    async def _list_names(self, folder: str) -> list[str]:
        listed = await self._sink.list_folder(folder, run=True)
        self._generations = {f"{folder}/{item.name}": item.generation for item in listed}
        return [item.name for item in listed]

    async def _delete(self, names: Sequence[str]) -> None:
        await self._sink.delete([(name, self._generations.get(name)) for name in names], run=True)

    async def _commit_members(self, staged: Sequence[_GcsMember]) -> None:
        await each_at_once(_GcsMember.commit, staged)

    async def _put_manifest(self, name: str, data: bytes, metadata: dict[str, str]) -> None:
        await self._sink.put_small(name, data, MANIFEST_CONTENT_TYPE, metadata, if_absent=True)

    async def _dropped(self, member: _GcsMember) -> None:
        await member.cancel()


class GcsSink(ObjectStoreReads):
    """Writes ``gs://<bucket>/<prefix>/<project>/date=YYYY-MM-DD/hour=HH/`` objects.

    Build it with ``from_config`` (no I/O); ``prepare()`` before extracting (``status`` and
    ``verify`` only read and skip it), ``aclose()`` (or ``async with``) at the end.
    """

    def __init__(self, config: GcsConfig, *, run_id: str, environ: Mapping[str, str]) -> None:
        if not config.bucket:
            msg = "sink 'gcs' needs [gcs] bucket (or ASYNC_AMP_GCS_BUCKET)"
            raise ConfigError(msg)
        self.bucket = config.bucket
        self.prefix = config.prefix.strip("/")
        self.run_id = run_id
        self.parts = PartPool(config.chunk_size_mib * MIB)
        self.client = GcsClient(config, environ)
        self.read_timeout_s = config.read_timeout_s  # the run guard's unit

    @classmethod
    def from_config(cls, config: GcsConfig, *, run_id: str, environ: Mapping[str, str]) -> Self:
        """The sink of ``[gcs]`` with credentials from ``environ`` (no I/O)."""
        return cls(config, run_id=run_id, environ=environ)

    # --- the Sink protocol -------------------------------------------------------------------

    def describe(self) -> str:
        return self.client.where(self.prefix or None).replace("bucket gs://", "gs://")

    async def prepare(self) -> None:
        probe = self.name(f"{PROBE_FOLDER}/{self.run_id}-{uuid.uuid4().hex[:8]}")
        try:
            await self.list_keys(self.name(PROBE_FOLDER) + "/")
            generation = await self.put_small(
                probe,
                b"{}",
                MANIFEST_CONTENT_TYPE,
                {"run_id": header_safe(self.run_id)},
                if_absent=True,
                run=False,
            )
            await self.delete([(probe, generation)])
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError | TimeoutError) and not isinstance(cause, GcsError):
                msg = f"{exc}: check [gcs] endpoint_url and the network"
                raise ConfigError(msg) from None
            raise

    async def list_files(self, project: str, hour: datetime) -> list[str]:
        listed = await self.list_folder(self.hour_prefix(project, hour))
        return sorted(item.name for item in listed if item.name != MANIFEST_NAME)

    async def iter_file(self, project: str, hour: datetime, name: str) -> AsyncIterator[bytes]:
        """The stored bytes of one file of an hour, as they are (never decompressed)."""
        check_file_name(name)
        async for chunk in self.stream_object(f"{self.hour_prefix(project, hour)}/{name}"):
            yield chunk

    async def stream_object(self, key: str) -> AsyncIterator[bytes]:
        """Any object's stored bytes, as they are, in chunks."""
        try:
            async for chunk in self.client.stream(key):
                yield chunk
        except (GcsError, CredentialsError, OSError, TimeoutError) as exc:
            raise self.client.error(exc, "read", key, _GET, run=False) from exc

    def stage(self, project: str, hour: datetime) -> _GcsStaging:
        return _GcsStaging(self, project, hour)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- helpers shared with the staging classes and the cloud-export source --------------------

    async def list_objects(
        self, start: str, *, delimiter: str = "", run: bool = False
    ) -> list[Listed]:
        """Every object under ``start`` (one listing, paged by GCS in 1000s)."""
        client = self.client
        url = f"{client.endpoint}/storage/v1/b/{self.bucket}/o"
        found: list[Listed] = []
        params = {"prefix": start, "fields": "items(name,size,generation,etag),nextPageToken"}
        if delimiter:
            params["delimiter"] = delimiter
        try:
            while True:
                _, _, content = await client.request("GET", url, params=params)
                page = json.loads(content)
                found.extend(
                    Listed(
                        str(item["name"]),
                        int(item.get("size", 0)),
                        int(item.get("generation", 0)),
                        str(item.get("etag", "")),
                    )
                    for item in page.get("items", ())
                )
                token = page.get("nextPageToken")
                if not token:
                    return found
                params["pageToken"] = str(token)
        except (GcsError, CredentialsError, OSError, TimeoutError, ValueError) as exc:
            raise client.error(exc, "list", start + "*", _LIST, run=run, listing=True) from exc

    async def list_keys(self, start: str) -> list[str]:
        return [item.name for item in await self.list_objects(start)]

    # --- single objects (the Store protocol) ---------------------------------------------------

    @property
    def elsewhere(self) -> str:
        return "another [gcs] prefix or bucket"

    async def put_object(self, path: str, data: bytes) -> None:
        name = self.name(path)
        await self.put_small(name, data, content_type(name), {}, if_absent=False, run=False)

    async def delete_object(self, path: str) -> None:
        await self.delete([(self.name(path), None)])

    async def list_under(self, prefix: str, *, limit: int) -> list[str]:
        start = self.name(prefix) + "/"
        client = self.client
        url = f"{client.endpoint}/storage/v1/b/{self.bucket}/o"
        params = {"prefix": start, "maxResults": str(limit), "fields": "items(name)"}
        try:
            _, _, content = await client.request("GET", url, params=params)
            items = json.loads(content).get("items", ())
        except (GcsError, CredentialsError, OSError, TimeoutError, ValueError) as exc:
            raise client.error(exc, "list", start + "*", _LIST, run=False, listing=True) from exc
        return [str(item["name"])[len(start) :] for item in items]

    async def list_folder(self, folder: str, *, run: bool = False) -> list[Listed]:
        """The objects directly in ``folder``, named relative to it."""
        start = folder + "/"
        listed = await self.list_objects(start, delimiter="/", run=run)
        return [
            Listed(item.name[len(start) :], item.size, item.generation, item.etag)
            for item in listed
        ]

    async def get_bytes(self, name: str) -> bytes | None:
        """A small object's bytes, or ``None`` when there is none."""
        client = self.client
        try:
            _, _, content = await client.request(
                "GET", client.object_url(name), params={"alt": "media"}
            )
        except GcsError as exc:
            if exc.status == 404 and "bucket" not in exc.reason.lower():
                return None
            raise client.error(exc, "read", name, _GET, run=False) from exc
        except (CredentialsError, OSError, TimeoutError) as exc:
            raise client.error(exc, "read", name, _GET, run=False) from exc
        return content

    async def put_small(
        self,
        name: str,
        data: bytes,
        kind: str,
        metadata: Mapping[str, str],
        *,
        if_absent: bool,
        run: bool = True,
    ) -> int:
        """Write a small object in one request (a multipart upload: bytes and metadata);
        ``if_absent``: only when no object of that name exists. Its generation."""
        client = self.client
        boundary = f"async-amp-{uuid.uuid4().hex}"
        head = json.dumps({"name": name, "contentType": kind, "metadata": dict(metadata)})
        body = (
            (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{head}\r\n"
                f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n"
            ).encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        params = {"uploadType": "multipart", "name": name}
        if if_absent:
            params["ifGenerationMatch"] = "0"
        try:
            _, _, content = await client.request(
                "POST",
                client.object_url(name, upload=True),
                params=params,
                headers={"Content-Type": f"multipart/related; boundary={boundary}"},
                data=body,
            )
        except GcsError as exc:
            if exc.status == 412:
                msg = (
                    f"{client.where(name)} appeared while this run committed its hour (another "
                    "run wrote it): the hour is done again"
                )
                raise StorageError(msg) from exc
            raise client.error(exc, "write", name, _CREATE, run=run) from exc
        except (CredentialsError, OSError, TimeoutError) as exc:
            raise client.error(exc, "write", name, _CREATE, run=run) from exc
        return int(json.loads(content).get("generation", 0))

    async def delete(self, names: Sequence[tuple[str, int | None]], *, run: bool = False) -> None:
        """Delete objects (ones already gone are fine), each only at ``generation`` when given
        (a newer one is left alone), a few at once."""
        client = self.client

        async def one(item: tuple[str, int | None]) -> None:
            name, generation = item
            params = {"ifGenerationMatch": str(generation)} if generation else None
            try:
                await client.request(
                    "DELETE", client.object_url(name), params=params, ok=(200, 204, 404, 412)
                )
            except (GcsError, CredentialsError, OSError, TimeoutError) as exc:
                raise client.error(exc, "delete", name, _DELETE, run=run) from exc

        await each_at_once(one, names)


if TYPE_CHECKING:
    _conforms: type[Store] = GcsSink  # mypy proves GcsSink implements the Store protocol
