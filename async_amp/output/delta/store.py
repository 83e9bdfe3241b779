"""Small whole files of a table's folder on its store: the log's checkpoints, async-amp's own
records (``_async_amp/``). Listed, read, put and deleted through the local file system or
delta-rs' object store (the table's own storage options), never half-written under a name.

Two writes must be conditional when several writers share a table (``checkpoint.py``): a
checkpoint is created only if its name is free (a reader may be reading the one there), and
``_last_checkpoint`` is replaced only by a newer one. Locally a hard link (which fails if the
name exists) and a lock on the folder around read, compare and replace. On Azure and S3,
``If-None-Match: *`` and ``If-Match: <etag>`` puts; on GCS ``x-goog-if-generation-match`` at
``0`` or at the generation read; through ``obstore`` (the Rust ``object_store`` that delta-rs
uses, with the same options): delta-rs' Python file system offers neither."""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Callable
from typing import Any, Final

import pyarrow.parquet as pq
from deltalake.exceptions import DeltaError

from .base import TableLocation, local_path

__all__ = ["TableFiles"]

_CONDITIONAL: Final = ("az", "abfs", "abfss", "azure", "s3", "s3a", "gs")
"""The URI schemes whose puts are made conditional (Azure Blob Storage, S3, GCS)."""
_CLIENT_KEYS: Final = {"allow_http", "aws_allow_http", "azure_allow_http"}
_AZURE_KEYS: Final = {
    "endpoint": "azure_storage_endpoint",
    "account_name": "azure_storage_account_name",
    "account_key": "azure_storage_account_key",
    "sas_token": "azure_storage_sas_key",
    "bearer_token": "azure_storage_token",
}
"""delta-rs' short names of the Azure options, as obstore spells them."""
_SWAP_ATTEMPTS: Final = 8


def _conditional_store(location: TableLocation) -> Any:
    """An ``obstore`` store at the table's root on Azure or S3, else None."""
    if location.uri.split("://", 1)[0].lower() not in _CONDITIONAL:
        return None
    from obstore.store import from_url  # noqa: PLC0415 - only for remote tables

    config: dict[str, Any] = {}
    client: Any = {}
    for key, value in (location.options() or {}).items():
        if key.lower() in _CLIENT_KEYS:
            client["allow_http"] = value.lower() == "true"
        else:
            config[_AZURE_KEYS.get(key.lower(), key.lower())] = value
    return from_url(location.uri, config=config, client_options=client)  # type: ignore[call-overload]


class TableFiles:
    """The files of one table's folder, named by their path from the table's root."""

    def __init__(self, location: TableLocation) -> None:
        self.folder = local_path(location.uri)
        self.store: Any = None
        self._location = location
        self._conditional: Any = None
        if self.folder is None:
            from deltalake._internal import DeltaFileSystemHandler  # noqa: PLC0415

            self.store = DeltaFileSystemHandler(location.uri, location.options())

    @property
    def conditional(self) -> Any:
        """The ``obstore`` store for conditional puts (Azure, S3; else None), made when first
        needed: most commits write no checkpoint."""
        if self._conditional is None and self.folder is None:
            self._conditional = _conditional_store(self._location) or False
        return self._conditional or None

    def names(self, folder: str) -> set[str]:
        """The names of the files directly in ``folder`` (none when it does not exist)."""
        if self.folder is not None:
            with contextlib.suppress(FileNotFoundError):
                return {f"{folder}/{p.name}" for p in (self.folder / folder).iterdir()}
            return set()
        found = self.store.get_file_info_selector(folder, allow_not_found=True)
        return {i.path for i in found}

    def read(self, name: str) -> bytes:
        if self.folder is not None:
            return (self.folder / name).read_bytes()
        entry = self.store.open_input_file(name)
        return bytes(entry.read(entry.size()))

    def footer(self, name: str) -> pq.FileMetaData:
        if self.folder is not None:
            return pq.read_metadata(self.folder / name)
        return pq.read_metadata(self.store.open_input_file(name))

    def put(self, name: str, body: bytes, *, exclusive: bool) -> bool:
        """Write ``name`` whole; with ``exclusive``, False (nothing written) if it exists."""
        if self.folder is None and exclusive and self.conditional is not None:
            import obstore  # noqa: PLC0415
            from obstore.exceptions import AlreadyExistsError  # noqa: PLC0415

            try:  # one PUT with If-None-Match: *
                obstore.put(self.conditional, name, body, mode="create", use_multipart=False)
            except AlreadyExistsError:
                return False
            return True
        if self.folder is None:
            out = self.store.open_output_stream(name)
            out.write(body)
            out.close()  # one PUT when closed: only now does the object exist
            return True
        target = self.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # a name no reader of the log takes for an entry; created with the umask's mode, as
        # delta-rs' own files are (a NamedTemporaryFile's would be readable by its owner only)
        temp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        with temp.open("xb") as file:
            file.write(body)
        try:
            if not exclusive:
                temp.replace(target)
                return True
            try:
                target.hardlink_to(temp)  # a complete file under its name, or none
            except FileExistsError:
                return False
            return True
        finally:
            temp.unlink(missing_ok=True)

    def advance(self, name: str, body: bytes, newer: Callable[[bytes | None], bool]) -> bool:
        """Replace ``name`` (None: not there) by ``body`` if ``newer`` says ``body`` is newer
        than it; False when it is not (then nothing is written). No other writer's file is
        replaced unseen: locally under a lock of the folder, on Azure and S3 by a put that
        holds only if the file is still the one read (``If-Match`` its etag)."""
        if self.folder is not None:
            target = self.folder / name
            fd = os.open(target.parent, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released when closed
                current = target.read_bytes() if target.exists() else None
                return newer(current) and self.put(name, body, exclusive=False)
            finally:
                os.close(fd)
        if self.conditional is None:  # a store without conditional puts here: as before
            with contextlib.suppress(FileNotFoundError, DeltaError):
                if not newer(self.read(name)):
                    return False
            return self.put(name, body, exclusive=False)
        import obstore  # noqa: PLC0415
        from obstore.exceptions import (  # noqa: PLC0415
            AlreadyExistsError,
            NotFoundError,
            PreconditionError,
        )

        for _ in range(_SWAP_ATTEMPTS):
            seen: bytes | None = None
            mode: Any = "create"
            with contextlib.suppress(NotFoundError, FileNotFoundError):
                got = obstore.get(self.conditional, name)
                seen, mode = bytes(got.bytes()), {"e_tag": got.meta["e_tag"]}
                if got.meta["version"] is not None:  # GCS matches the generation, not the ETag
                    mode["version"] = got.meta["version"]
            if not newer(seen):
                return False
            try:
                obstore.put(self.conditional, name, body, mode=mode, use_multipart=False)
            except (PreconditionError, AlreadyExistsError):
                continue  # another writer's came first: compared again with it
            return True
        return False  # others kept replacing it: theirs are as new

    def delete(self, name: str) -> None:
        """Delete ``name``; nothing when it is not there."""
        if self.folder is not None:
            (self.folder / name).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError, DeltaError):
            self.store.delete_file(name)
