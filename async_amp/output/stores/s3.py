"""Amazon S3 (and S3-compatible stores) sink: multipart uploads completed only at commit.

Layout: ``s3://<bucket>/<prefix>/<project>/date=YYYY-MM-DD/hour=HH/<file>``, plus the same
``_manifest.json`` as the other sinks, written last. The client is aiobotocore (botocore's
credential chain, retries and signing on aiohttp); why, with the measurements: docs/s3.md.

How the ``Sink`` contract maps onto S3:

- Staging: each member becomes a multipart upload to its final key. Its bytes go out in parts
  of ``part_size_mib`` as they are written (at most one part per member is buffered, nothing
  is kept whole, no temporary file), each with its Content-MD5 (computed in the worker thread,
  checked by S3: 400 BadDigest). An upload that is not completed is invisible: no listing, GET
  or HEAD shows it.
- ``commit(manifest)``: delete the old manifest (the hour stops looking done), complete each
  member's upload, delete stale data objects of an earlier extraction, put the manifest
  **last**.
- ``discard()``: aborts the attempt's uploads (their parts are freed at once).
- ``prepare()``: proves list, write and delete permission (one listing, one small ``PUT`` of
  this run's lease object, one ``DELETE``), then aborts the incomplete uploads that killed runs
  left: those no live run can own (see ``leases.py``).

Errors are translated at the boundary (``s3_errors.py``): refused credentials become
``CredentialsError``, a missing bucket, a wrong region or an unreachable endpoint
``ConfigError`` (from ``prepare``), everything else ``StorageError``; messages name the bucket
and key, never a key id, secret or session token.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Self

import anyio
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError
from botocore.handlers import add_expect_header

from ...config import S3Config
from ...errors import AsyncAmpError, ConfigError, StorageError
from ...hours import MemberName, iso_hour
from ..manifest import MANIFEST_NAME
from .leases import LeaseBook
from .object_hour import ObjectHourStaging, ObjectStoreReads
from .parts import PartBody, PartedUpload, PartPool
from .s3_errors import UNREACHABLE, ErrorTranslator, credentials_from
from .s3_retry import bound_timeout_retries
from .shared import (
    MANIFEST_CONTENT_TYPE,
    Answers,
    check_file_name,
    content_type,
    each_at_once,
    header_safe,
    join,
)

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

    from .base import Store

__all__ = ["S3Sink"]

MIB = 1024 * 1024
MAX_PARTS = 10_000  # S3's limit of parts per upload
DOWNLOAD_CHUNK = 1 * MIB


def _md5_b64(data: bytes | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


_LOADER: list[Any] = []  # botocore's data loader, shared: it caches the parsed S3 model
_LOADER_LOCK = threading.Lock()


def _session() -> AioSession:
    """A new session (its own credentials and config) whose service models come from one
    loader per process: parsing the S3 model took 0.2 to 0.5 s for every sink made."""
    session = AioSession()
    with _LOADER_LOCK:
        if _LOADER:
            session.register_component("data_loader", _LOADER[0])
        else:
            _LOADER.append(session.get_component("data_loader"))
    return session


class _S3Member(PartedUpload):
    """One data object being staged: bytes -> parts of ``part_size`` of one multipart upload."""

    __slots__ = ("_key", "_metadata", "_parts", "_sink", "upload_id")

    def __init__(self, sink: S3Sink, key: str, metadata: dict[str, str]) -> None:
        super().__init__(sink.parts)
        self._sink = sink
        self._key = key
        self._metadata = metadata
        self._parts: list[CompletedPartTypeDef] = []
        self.upload_id: str | None = None

    def _where(self) -> str:
        return self._sink.where(self._key)

    def _stall_s(self) -> float | None:
        # aiohttp's read timeout starts once a body is sent: a part to a store that stopped
        # reading would wait forever (no answer, no error) without this bound
        return self._sink.read_timeout_s

    def _prepare(self, part: memoryview, number: int) -> str:
        if number >= MAX_PARTS:
            msg = f"{self._sink.where(self._key)}: more than {MAX_PARTS} parts; raise part_size_mib"
            raise StorageError(msg)
        return _md5_b64(part)  # here in the worker thread, not on the event loop

    async def _send(self, part: PartBody, number: int, prepared: str) -> None:
        sink = self._sink
        client = await sink.client()
        try:
            if self.upload_id is None:
                created = await client.create_multipart_upload(
                    Bucket=sink.bucket,
                    Key=self._key,
                    ContentType=content_type(self._key),
                    Metadata=self._metadata,
                )
                self.upload_id = created["UploadId"]
            answer = await client.upload_part(
                Bucket=sink.bucket,
                Key=self._key,
                UploadId=self.upload_id,
                PartNumber=number + 1,
                Body=part,  # type: ignore[arg-type]  # a file to botocore, written from the buffer
                ContentMD5=prepared,
                ContentLength=len(part),
            )
        except (ClientError, BotoCoreError) as exc:
            raise sink.error(exc, "upload a part of", self._key, "s3:PutObject", run=True) from exc
        self._parts.append({"PartNumber": number + 1, "ETag": answer["ETag"]})
        await sink.leases.keep(client)

    async def commit(self) -> None:
        sink = self._sink
        client = await sink.client()
        try:
            if self.upload_id is None:  # an empty file: nothing was ever uploaded
                await client.put_object(
                    Bucket=sink.bucket,
                    Key=self._key,
                    Body=b"",
                    ContentType=content_type(self._key),
                    Metadata=self._metadata,
                    ContentMD5=_md5_b64(b""),
                )
                return
            await client.complete_multipart_upload(
                Bucket=sink.bucket,
                Key=self._key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self._parts},
            )
        except (ClientError, BotoCoreError) as exc:
            raise sink.error(
                exc, "complete the upload of", self._key, "s3:PutObject", run=True
            ) from exc

    async def abort(self) -> None:
        upload_id, self.upload_id = self.upload_id, None
        if upload_id is not None:
            await self._sink.abort_upload(self._key, upload_id)


class _S3Staging(ObjectHourStaging[_S3Member]):
    """One attempt at one hour: members staged as multipart uploads until ``commit``; a
    discarded attempt's uploads are aborted (else the next run's ``prepare()`` aborts them)."""

    def __init__(self, sink: S3Sink, project: str, hour: datetime) -> None:
        super().__init__(sink.hour_prefix(project, hour), hour, sink.run_id)
        self._sink = sink

    def open_member(self, member: MemberName, file_name: str) -> _S3Member:
        metadata = {
            "hour": iso_hour(self._hour),
            "source": header_safe(f"{member.project_id}/{member.base_name}"),
            "run_id": header_safe(self._sink.run_id),
        }
        return self._add(file_name, _S3Member(self._sink, f"{self._folder}/{file_name}", metadata))

    def _where(self, name: str) -> str:
        return self._sink.where(name)

    async def _list_names(self, folder: str) -> list[str]:
        return await self._sink.list_names(folder, run=True)

    async def _delete(self, names: Sequence[str]) -> None:
        await self._sink.delete_keys(list(names), run=True)

    async def _commit_members(self, staged: Sequence[_S3Member]) -> None:
        await each_at_once(_S3Member.commit, staged)

    async def _put_manifest(self, name: str, data: bytes, metadata: dict[str, str]) -> None:
        await self._sink.put_key(name, data, MANIFEST_CONTENT_TYPE, metadata=metadata, run=True)

    async def _committed(self) -> None:
        await self._sink.leases.keep(await self._sink.client())

    async def _dropped(self, member: _S3Member) -> None:
        if self._sink.answers.silent:  # a stalled store: the next run's prepare() aborts it
            return
        with contextlib.suppress(AsyncAmpError):  # the next run's prepare() aborts it
            await member.abort()


class S3Sink(ObjectStoreReads):
    """Writes ``s3://<bucket>/<prefix>/<project>/date=YYYY-MM-DD/hour=HH/`` objects.

    Build it with ``from_config`` (no I/O); the client is created on first use. ``prepare()``
    before extracting (``status`` and ``verify`` only read and skip it), ``aclose()`` (or
    ``async with``) at the end.
    """

    def __init__(
        self,
        config: S3Config,
        *,
        run_id: str,
        environ: Mapping[str, str],
    ) -> None:
        if not config.bucket:
            msg = "sink 's3' needs [s3] bucket (or ASYNC_AMP_S3_BUCKET)"
            raise ConfigError(msg)
        self.bucket = config.bucket
        self.prefix = config.prefix.strip("/")
        self.run_id = run_id
        self.part_size = config.part_size_mib * MIB
        self.read_timeout_s = config.read_timeout_s
        self.parts = PartPool(self.part_size)
        self.answers = Answers()
        self.endpoint_url = (config.endpoint_url or "").rstrip("/") or None
        self.region = (
            config.region
            or environ.get("AWS_REGION")
            or environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        credentials, auth_source, profile = credentials_from(environ)
        self._session = _session()
        if profile:
            self._session.set_config_variable("profile", profile)
        self._errors = ErrorTranslator(
            bucket=self.bucket,
            region=self.region,
            endpoint_url=self.endpoint_url,
            auth_source=auth_source,
            secrets=credentials.values(),
        )
        self._max_attempts = config.retries + 1
        style = "auto" if config.addressing_style == "auto" else config.addressing_style
        self._config = AioConfig(
            region_name=self.region,
            s3={"addressing_style": style},
            retries={"total_max_attempts": self._max_attempts, "mode": "standard"},
            connect_timeout=config.connect_timeout_s,
            read_timeout=config.read_timeout_s,
            max_pool_connections=64,
            # Content-MD5 on every part and manifest is the check; no second checksum per part
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            user_agent_extra="async-amp",
        )
        self._credentials = credentials
        self._stack = contextlib.AsyncExitStack()
        self._client: S3Client | None = None
        self._client_lock = anyio.Lock()
        self.leases = LeaseBook(self, run_id=run_id)

    @classmethod
    def from_config(cls, config: S3Config, *, run_id: str, environ: Mapping[str, str]) -> Self:
        """The sink of ``[s3]`` with credentials from ``environ`` (no I/O: see ``client()``)."""
        return cls(config, run_id=run_id, environ=environ)

    async def client(self) -> S3Client:
        """The one client of this sink, created on first use."""
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    try:
                        creds = self._credentials
                        context = self._session.create_client(
                            "s3",
                            endpoint_url=self.endpoint_url,
                            config=self._config,
                            aws_access_key_id=creds.get("aws_access_key_id"),
                            aws_secret_access_key=creds.get("aws_secret_access_key"),
                            aws_session_token=creds.get("aws_session_token"),
                        )
                        client = await self._stack.enter_async_context(context)
                        # No ``Expect: 100-continue``: aiohttp would then send the headers
                        # from a task of its own, whose error on a dying store nobody
                        # retrieves (a traceback on a clean stop); a refused body costs one
                        # part's upload at most.
                        client.meta.events.unregister("before-call.s3", add_expect_header)
                        bound_timeout_retries(client, self._max_attempts, self.answers)
                        self._client = client
                    except BotoCoreError as exc:
                        raise self.error(exc, "connect to", None, "") from exc
                    except ValueError as exc:
                        msg = f"[s3] endpoint_url {self.endpoint_url!r} is not usable: {exc}"
                        raise ConfigError(msg) from None
        assert self._client is not None
        return self._client

    # --- the Sink protocol -------------------------------------------------------------------

    def describe(self) -> str:
        where = "s3://" + join(self.bucket, self.prefix)
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    async def prepare(self) -> None:
        try:
            await self.leases.claim(await self.client())
        except StorageError as exc:
            if isinstance(exc.__cause__, UNREACHABLE):
                msg = f"{exc}: check [s3] endpoint_url and the network"
                raise ConfigError(msg) from exc.__cause__
            raise

    async def list_files(self, project: str, hour: datetime) -> list[str]:
        """The data files directly in the hour's folder (not the manifest), sorted."""
        names = await self.list_names(self.hour_prefix(project, hour))
        return sorted(n for n in names if n != MANIFEST_NAME)

    async def iter_file(self, project: str, hour: datetime, name: str) -> AsyncIterator[bytes]:
        """The stored bytes of one file of an hour, as they are (never decompressed)."""
        check_file_name(name)
        async for chunk in self.stream_object(f"{self.hour_prefix(project, hour)}/{name}"):
            yield chunk

    async def stream_object(self, key: str) -> AsyncIterator[bytes]:
        """Any object's stored bytes, in chunks."""
        client = await self.client()
        try:
            answer = await client.get_object(Bucket=self.bucket, Key=key)
            async with answer["Body"] as body:
                while chunk := await body.read(DOWNLOAD_CHUNK):
                    yield chunk
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, "read", key, "s3:GetObject") from exc

    def stage(self, project: str, hour: datetime) -> _S3Staging:
        return _S3Staging(self, project, hour)

    async def aclose(self) -> None:
        if self._client is not None and not self.answers.silent:
            # a lease left behind only ages out (the bucket may be gone, the keys revoked, the
            # store stalled)
            with contextlib.suppress(AsyncAmpError):
                await self.leases.release(self._client)
        self._client = None
        await self._stack.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- helpers shared with the staging classes, the leases and the formats -------------------

    def where(self, key: str | None) -> str:
        """``s3://bucket/key``: for messages (no secret)."""
        return self._errors.where(key)

    def error(
        self, exc: Exception, action: str, key: str | None, permission: str, *, run: bool = False
    ) -> Exception:
        """``run=True``: met in staging or a commit (see ``ErrorTranslator.during_run``)."""
        error = self._errors.translate(exc, action, key, permission)
        return self._errors.during_run(error, exc, action, key) if run else error

    async def list_keys(self, start: str, *, delimiter: str = "", run: bool = False) -> list[str]:
        """Every key under ``start`` (one listing, paged by S3 in 1000s)."""
        client = await self.client()
        keys: list[str] = []
        try:
            paginator = client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=start, Delimiter=delimiter)
            async for page in pages:
                keys.extend(obj["Key"] for obj in page.get("Contents", ()))
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, "list", start + "*", "s3:ListBucket", run=run) from exc
        return keys

    async def list_names(self, folder: str, *, run: bool = False) -> list[str]:
        start = folder + "/"
        return [k[len(start) :] for k in await self.list_keys(start, delimiter="/", run=run)]

    async def get_bytes(self, key: str) -> bytes | None:
        """A small object's bytes, or ``None`` when there is none."""
        client = await self.client()
        try:
            answer = await client.get_object(Bucket=self.bucket, Key=key)
            async with answer["Body"] as body:
                return await body.read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise self.error(exc, "read", key, "s3:GetObject") from exc
        except BotoCoreError as exc:
            raise self.error(exc, "read", key, "s3:GetObject") from exc

    async def delete_keys(self, keys: list[str], *, run: bool = False) -> None:
        """Delete objects (ones already gone are fine), a few at once. One by one, not with the
        batch ``DeleteObjects``: GCS's XML API has no such call, and there are seldom many."""
        client = await self.client()

        async def delete(key: str) -> None:
            try:
                await client.delete_object(Bucket=self.bucket, Key=key)
            except (ClientError, BotoCoreError) as exc:
                raise self.error(exc, "delete", key, "s3:DeleteObject", run=run) from exc

        await each_at_once(delete, keys)

    # --- single objects (the Store protocol) ---------------------------------------------------

    @property
    def elsewhere(self) -> str:
        return "another [s3] prefix or bucket"

    async def put_object(self, path: str, data: bytes) -> None:
        key = self.name(path)
        await self.put_key(key, data, content_type(key))

    async def put_key(
        self,
        key: str,
        data: bytes,
        kind: str,
        *,
        metadata: dict[str, str] | None = None,
        run: bool = False,
    ) -> None:
        """One small object, whole, in one ``PutObject`` checked by its Content-MD5."""
        client = await self.client()
        try:
            await client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=kind,
                ContentMD5=_md5_b64(data),
                Metadata=metadata or {},
            )
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, "write", key, "s3:PutObject", run=run) from exc

    async def delete_object(self, path: str) -> None:
        await self.delete_keys([self.name(path)])

    async def list_under(self, prefix: str, *, limit: int) -> list[str]:
        start = self.name(prefix) + "/"
        client = await self.client()
        try:
            page = await client.list_objects_v2(Bucket=self.bucket, Prefix=start, MaxKeys=limit)
        except (ClientError, BotoCoreError) as exc:
            raise self.error(exc, "list", start + "*", "s3:ListBucket") from exc
        return [obj["Key"][len(start) :] for obj in page.get("Contents", ())]

    async def abort_upload(self, key: str, upload_id: str) -> None:
        client = await self.client()
        try:
            await client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise self.error(
                    exc, "abort the upload of", key, "s3:AbortMultipartUpload"
                ) from exc
        except BotoCoreError as exc:
            raise self.error(exc, "abort the upload of", key, "s3:AbortMultipartUpload") from exc


if TYPE_CHECKING:
    _conforms: type[Store] = S3Sink  # mypy proves S3Sink implements the Store protocol
