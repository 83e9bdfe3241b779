"""Small whole files of a table's folder on its store: the log's checkpoints, async-amp's own
records (``_async_amp/``). Listed, read, put and deleted through the local file system or
delta-rs' object store (the table's own storage options), never half-written under a name."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pyarrow.parquet as pq
from deltalake.exceptions import DeltaError

from .base import TableLocation, local_path

__all__ = ["TableFiles"]


class TableFiles:
    """The files of one table's folder, named by their path from the table's root."""

    def __init__(self, location: TableLocation) -> None:
        self.folder = local_path(location.uri)
        self.store: Any = None
        if self.folder is None:
            from deltalake._internal import DeltaFileSystemHandler  # noqa: PLC0415

            self.store = DeltaFileSystemHandler(location.uri, location.options())

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

    def delete(self, name: str) -> None:
        """Delete ``name``; nothing when it is not there."""
        if self.folder is not None:
            (self.folder / name).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError, DeltaError):
            self.store.delete_file(name)
