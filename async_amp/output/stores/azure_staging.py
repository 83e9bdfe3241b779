"""Staging an hour in Azure: each data file is uploaded as uncommitted blocks while it is
decoded, and committed (files first, the manifest last) when the hour is whole.

The ``MemberSink`` methods run in the archive's worker thread (started with
``anyio.to_thread.run_sync``); each full block is sent from the event loop while the thread
fills the next (``parts.PartedUpload``).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobBlock, BlockState, ContentSettings
from azure.storage.blob.aio import BlobClient, ContainerClient

from ...errors import AsyncAmpError, StorageError
from ...hours import MemberName, iso_hour
from .object_hour import ObjectHourStaging
from .parts import PartBody, PartedUpload, PartPool
from .shared import MANIFEST_CONTENT_TYPE, content_type, header_safe

__all__ = ["AzureStaging", "BlobMember", "BlobStore"]

MAX_BLOCKS = 50_000  # Azure's limit of committed blocks per blob


class BlobStore(Protocol):
    """What staging needs of its container (``azure.AzureSink``)."""

    container: ContainerClient
    run_id: str
    blob_content_md5: bool
    parts: PartPool
    stall_s: float | None

    def hour_prefix(self, project: str, hour: datetime) -> str: ...

    def where(self, blob: str | None) -> str: ...

    def error(
        self, exc: AzureError, action: str, blob: str | None, permission: str, *, run: bool = False
    ) -> AsyncAmpError: ...

    async def list_names(self, folder: str, *, run: bool = False) -> list[str]: ...

    async def delete_blob(self, name: str, *, run: bool = False) -> None: ...


class BlobMember(PartedUpload):
    """One data blob being staged: bytes -> blocks of ``block_size``, each with its MD5; the
    MD5 of the whole blob too when the sink records it (``blob_content_md5``)."""

    __slots__ = ("_attempt", "_md5", "_sink", "blob", "block_ids", "md5")

    def __init__(self, sink: BlobStore, blob: BlobClient) -> None:
        super().__init__(sink.parts)
        self._sink = sink
        self._attempt = uuid.uuid4().hex
        # The whole blob's MD5 is a second pass over every byte, as costly as the blocks' (MD5
        # runs at ~0.7 GB/s a core); each block's MD5 guards the transfer whether or not.
        self._md5 = hashlib.md5(usedforsecurity=False) if sink.blob_content_md5 else None
        self.blob = blob
        self.block_ids: list[str] = []
        self.md5: bytes | None = None

    def _seen(self, data: bytes | bytearray | memoryview) -> None:
        if self._md5 is not None:
            self._md5.update(data)

    def _finished(self) -> None:
        if self._md5 is not None:
            self.md5 = self._md5.digest()

    def _where(self) -> str:
        return self._sink.where(self.blob.blob_name)

    def _stall_s(self) -> float | None:
        return self._sink.stall_s

    def _prepare(self, part: memoryview, number: int) -> bytes:
        if number >= MAX_BLOCKS:
            msg = (
                f"{self._sink.where(self.blob.blob_name)}: more than {MAX_BLOCKS} blocks; "
                "raise [azure] block_size_mib"
            )
            raise StorageError(msg)
        self.block_ids.append(f"{self._attempt}-{number:06d}")
        # The block's MD5 is computed here, in the worker thread, rather than by the SDK's
        # validate_content=True on the event loop; Azure checks it either way (400 Md5Mismatch).
        return hashlib.md5(part, usedforsecurity=False).digest()

    async def _send(self, part: PartBody, number: int, prepared: bytes) -> None:
        try:
            await self.blob.stage_block(
                self.block_ids[number],
                part,  # type: ignore[arg-type]  # a file to the SDK, written from the buffer
                length=len(part),
                transactional_content_md5=bytearray(prepared),
            )
        except AzureError as exc:
            raise self._sink.error(
                exc, "stage a block of", self.blob.blob_name, "write", run=True
            ) from exc

    async def commit(self, hour: datetime, run_id: str) -> None:
        assert self.entry is not None
        entry = self.entry
        settings = ContentSettings(
            content_type=content_type(entry.name),
            content_md5=None if self.md5 is None else bytearray(self.md5),
        )
        metadata = {
            "hour": iso_hour(hour),
            "source": header_safe(entry.source),
            "events": str(entry.events),
            "sha256": entry.sha256,
            "run_id": header_safe(run_id),
        }
        blocks = [BlobBlock(block_id, BlockState.UNCOMMITTED) for block_id in self.block_ids]
        try:
            await self.blob.commit_block_list(blocks, content_settings=settings, metadata=metadata)
        except AzureError as exc:
            raise self._sink.error(exc, "commit", self.blob.blob_name, "write", run=True) from exc


class AzureStaging(ObjectHourStaging[BlobMember]):
    """One attempt at one hour: members staged as uncommitted blocks until ``commit``.

    Uncommitted blocks cannot be deleted on their own: a discarded attempt's stay invisible
    and expire after 7 days (or vanish at the next commit of the same blob name)."""

    def __init__(self, sink: BlobStore, project: str, hour: datetime) -> None:
        super().__init__(sink.hour_prefix(project, hour), hour, sink.run_id)
        self._sink = sink

    def open_member(self, member: MemberName, file_name: str) -> BlobMember:
        del member  # its name reaches the metadata through the FileEntry given to finish()
        blob = self._sink.container.get_blob_client(f"{self._folder}/{file_name}")
        return self._add(file_name, BlobMember(self._sink, blob))

    def _where(self, name: str) -> str:
        return self._sink.where(name)

    async def _list_names(self, folder: str) -> list[str]:
        return await self._sink.list_names(folder, run=True)

    async def _delete(self, names: Sequence[str]) -> None:
        for name in names:
            await self._sink.delete_blob(name, run=True)

    async def _commit_members(self, staged: Sequence[BlobMember]) -> None:
        for member in staged:
            await member.commit(self._hour, self._sink.run_id)

    async def _put_manifest(self, name: str, data: bytes, metadata: dict[str, str]) -> None:
        settings = ContentSettings(
            content_type=MANIFEST_CONTENT_TYPE,
            content_md5=bytearray(hashlib.md5(data, usedforsecurity=False).digest()),
        )
        blob = self._sink.container.get_blob_client(name)
        try:
            await blob.upload_blob(
                data,
                overwrite=True,
                content_settings=settings,
                metadata=metadata,
                validate_content=True,
            )
        except AzureError as exc:
            raise self._sink.error(exc, "write", name, "write", run=True) from exc
