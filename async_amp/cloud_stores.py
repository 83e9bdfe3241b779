"""The stores a cloud export is read from, each through its output sink's own client, settings
and credentials: S3 (``[s3]``'s endpoint, region, AWS chain) and GCS (``[gcs]``'s endpoint,
service account or ADC); a local folder needs none."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from .cloud_export import CloudExportSource, ExportStore, LocalExportStore
from .config import Config, ProjectConfig
from .errors import ConfigError
from .manifest import ExportedObject

if TYPE_CHECKING:
    from .sinks.gcs import GcsSink
    from .sinks.s3 import S3Sink

__all__ = ["GcsExportStore", "S3ExportStore", "make_cloud_source"]


class S3ExportStore:
    """An S3 bucket (or S3-compatible store) holding the export."""

    def __init__(self, sink: S3Sink) -> None:
        self.sink = sink

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
            raise self.sink.error(exc, "list", prefix + "*", "s3:ListBucket") from exc
        return found

    async def read(self, name: str) -> AsyncIterator[bytes]:
        async for chunk in self.sink.stream_object(name):
            yield chunk

    async def aclose(self) -> None:
        await self.sink.aclose()


class GcsExportStore:
    """A GCS bucket holding the export."""

    def __init__(self, sink: GcsSink) -> None:
        self.sink = sink

    def describe(self) -> str:
        return f"gs://{self.sink.bucket}"

    async def list(self, prefix: str) -> list[ExportedObject]:
        return [
            ExportedObject(o.name, o.size, str(o.generation))
            for o in await self.sink.list_objects(prefix)
        ]

    async def read(self, name: str) -> AsyncIterator[bytes]:
        async for chunk in self.sink.stream_object(name):
            yield chunk

    async def aclose(self) -> None:
        await self.sink.aclose()


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
        from .sinks.s3 import S3Sink  # noqa: PLC0415 - botocore loads only when used

        s3 = dataclasses.replace(config.s3, bucket=src.bucket, prefix="")
        store = S3ExportStore(S3Sink.from_config(s3, run_id=run_id, environ=environ))
    else:
        from .sinks.gcs import GcsSink  # noqa: PLC0415 - loads only when used

        gcs = dataclasses.replace(config.gcs, bucket=src.bucket, prefix="")
        store = GcsExportStore(GcsSink.from_config(gcs, run_id=run_id, environ=environ))
    del project  # one export per config for now: its files name the Amplitude project
    return CloudExportSource(
        store,
        prefix=src.prefix,
        project_id=src.project_id,
        settle=timedelta(minutes=src.settle_minutes),
    )
