"""The stores a cloud export is read from, each through its output sink's own client, settings
and credentials: S3 (``[s3]``'s endpoint, region, AWS chain), GCS (``[gcs]``'s endpoint,
service account or ADC) and Azure (``[azure]``'s account URL, connection string, SAS token or
``DefaultAzureCredential``); a local folder needs none."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import anyio

from ..config import Config, ProjectConfig
from ..errors import ConfigError
from ..output.manifest import ExportedObject
from .cloud_export import CloudExportSource, ExportStore, LocalExportStore

if TYPE_CHECKING:  # quoted in the stores' base classes: the SDKs load only when used
    from ..output.stores.azure import AzureSink
    from ..output.stores.gcs import GcsSink  # noqa: F401
    from ..output.stores.s3 import S3Sink  # noqa: F401

__all__ = [
    "AzureExportStore",
    "GcsExportStore",
    "S3ExportStore",
    "SinkExportStore",
    "make_cloud_source",
]


def _source_key(error: Exception, output_key: str) -> Exception:
    """A missing bucket named by the output sink's key (``[s3] bucket``) is, for the export,
    ``[source] bucket``'s: the same error, naming the key to fix."""
    if isinstance(error, ConfigError):
        return ConfigError(str(error).replace(output_key, "[source] bucket"))
    return error


class _ObjectSink(Protocol):
    def stream_object(self, key: str) -> AsyncIterator[bytes]: ...

    async def put_object(self, path: str, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


_Sink = TypeVar("_Sink", bound=_ObjectSink)


class SinkExportStore(Generic[_Sink]):
    """An export read through an output sink's own client: a file's bytes as stored, the
    simulator's files put whole; a subclass says how to list (and name) the store."""

    def __init__(self, sink: _Sink) -> None:
        self.sink = sink

    def read(self, name: str) -> AsyncIterator[bytes]:
        return self.sink.stream_object(name)

    async def put(self, name: str, data: bytes) -> None:
        await self.sink.put_object(name, data)

    async def aclose(self) -> None:
        await self.sink.aclose()


class S3ExportStore(SinkExportStore["S3Sink"]):
    """An S3 bucket (or S3-compatible store) holding the export."""

    def describe(self) -> str:
        return f"s3://{self.sink.bucket}"

    async def list(self, prefix: str) -> list[ExportedObject]:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        client = await self.sink.client()
        found: list[ExportedObject] = []
        try:
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.sink.bucket, Prefix=prefix
            )
            async for page in pages:
                found.extend(
                    ExportedObject(o["Key"], int(o["Size"]), str(o.get("ETag", "")).strip('"'))
                    for o in page.get("Contents", ())
                )
        except (ClientError, BotoCoreError) as exc:
            error = self.sink.error(exc, "list", prefix + "*", "s3:ListBucket")
            raise _source_key(error, "[s3] bucket") from exc
        return found


class GcsExportStore(SinkExportStore["GcsSink"]):
    """A GCS bucket holding the export."""

    def describe(self) -> str:
        return f"gs://{self.sink.bucket}"

    async def list(self, prefix: str) -> list[ExportedObject]:
        try:
            listed = await self.sink.list_objects(prefix)
        except ConfigError as exc:
            raise _source_key(exc, "[gcs] bucket") from exc
        return [ExportedObject(o.name, o.size, str(o.generation)) for o in listed]


class AzureExportStore(SinkExportStore["AzureSink"]):
    """An Azure Blob Storage container holding the export (``[source] bucket``: its name)."""

    def __init__(self, sink: AzureSink) -> None:
        super().__init__(sink)
        self.made = False
        self._making = anyio.Lock()

    def describe(self) -> str:
        return self.sink.describe()

    async def list(self, prefix: str) -> list[ExportedObject]:
        from azure.core.exceptions import AzureError, ResourceNotFoundError  # noqa: PLC0415

        from ..output.stores.azure_errors import error_code  # noqa: PLC0415 - only when used

        found: list[ExportedObject] = []
        try:
            async for blob in self.sink.container.list_blobs(name_starts_with=prefix):
                etag = str(blob.etag or "").strip('"')
                found.append(ExportedObject(blob.name, int(blob.size or 0), etag))
        except ResourceNotFoundError as exc:
            if error_code(exc) == "ContainerNotFound":
                msg = (
                    f"[source] bucket: there is no container {self.sink.container_name!r} at "
                    f"{self.sink.account_url}: name the container Amplitude exports to"
                )
                raise ConfigError(msg) from None
            raise self.sink.error(exc, "list", prefix + "*", "list") from exc
        except AzureError as exc:
            raise self.sink.error(exc, "list", prefix + "*", "list") from exc
        return found

    async def put(self, name: str, data: bytes) -> None:
        from azure.core.exceptions import AzureError  # noqa: PLC0415

        # The simulator's export: its container, made once when missing, before any put goes
        # (puts run at once: the first makes it while the others wait for it).
        async with self._making:
            if not self.made:
                with contextlib.suppress(AzureError):  # there, or not ours to make: put says
                    await self.sink.container.create_container()
                self.made = True
        await super().put(name, data)


def make_cloud_source(
    config: Config, project: ProjectConfig, *, run_id: str, environ: Mapping[str, str]
) -> CloudExportSource:
    """The ``[source]`` cloud export (no I/O until used)."""
    src = config.source
    store: ExportStore
    if src.store == "local":
        store = LocalExportStore(src.dir)
    elif not src.bucket:
        msg = f'[source] store = "{src.store}" needs [source] bucket'
        raise ConfigError(msg)
    elif src.store == "s3":
        from ..output.stores.s3 import S3Sink  # noqa: PLC0415 - botocore loads only when used

        s3 = dataclasses.replace(config.s3, bucket=src.bucket, prefix="")
        store = S3ExportStore(S3Sink.from_config(s3, run_id=run_id, environ=environ))
    elif src.store == "azure":
        from ..output.stores.azure import AzureSink  # noqa: PLC0415 - the SDK loads only when used

        azure = dataclasses.replace(
            config.azure, container=src.bucket, prefix="", create_container=False
        )
        store = AzureExportStore(AzureSink.from_config(azure, run_id=run_id, environ=environ))
    else:
        from ..output.stores.gcs import GcsSink  # noqa: PLC0415 - loads only when used

        gcs = dataclasses.replace(config.gcs, bucket=src.bucket, prefix="")
        store = GcsExportStore(GcsSink.from_config(gcs, run_id=run_id, environ=environ))
    del project  # one export per config for now: its files name the Amplitude project
    return CloudExportSource(
        store,
        prefix=src.prefix,
        project_id=src.project_id,
        settle=timedelta(minutes=src.settle_minutes),
        merged_prefix=src.merged_ids_prefix,
    )
