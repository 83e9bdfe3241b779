"""The seam between the pipeline and storage: a ``Sink`` stages an hour, then commits it whole.

Contract every sink keeps:
- Bytes of an attempt go to a staging area that readers never see (temporary files outside the
  partition folders; uncommitted blocks in Azure).
- ``HourStaging.commit(manifest)`` makes the hour visible: it removes any old manifest, puts the
  data files in place, removes stale files of an earlier extraction, and writes the manifest
  **last**. An hour with a manifest is whole; an hour without one is not done.
- ``HourStaging.discard()`` drops everything the attempt staged. Leftovers of a killed run are
  cleaned up by ``Sink.prepare()`` of the next run.
- ``open_member`` and the returned ``MemberSink`` are blocking and are called from a worker
  thread (the one decoding the archive); everything else is async.
- Reading back (``status``, ``verify``): ``list_files`` names the data files an hour's folder
  holds (never the manifest), ``iter_file`` streams one file's stored bytes as they are (a
  ``.json.gz`` is not decompressed). Both only read; a file that cannot be read raises
  ``StorageError`` (``CredentialsError`` when access is refused).

A ``Store`` (the local folder, Azure, S3) is a ``Sink`` that also reads, puts and deletes
single small objects and lists a prefix: what a format's sink and the output's marker
(``output/marker.py``) need beyond hours. Paths are relative to the store's root
(``[output] dir``, ``[azure] prefix``, ``[s3] prefix``), with ``/`` between parts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ...hours import MemberName
from ...source.member import MemberSink  # the core's protocol, which staging implements
from ..manifest import Manifest

__all__ = ["DATA_SUFFIXES", "HourStaging", "KeepsTable", "MemberSink", "Sink", "Store"]

DATA_SUFFIXES = (".json", ".json.gz", ".parquet")
"""Names of the data files a sink writes: a commit removes other extractions' files of these
kinds from the hour's folder (so switching formats or re-extracting leaves no stale file)."""


class HourStaging(Protocol):
    """One attempt's staged output for one hour."""

    def open_member(self, member: MemberName, file_name: str) -> MemberSink:
        """Start a data file (blocking: called from the decoding worker thread)."""
        ...

    async def commit(self, manifest: Manifest) -> Manifest | None:
        """Make the hour visible: data first, stale files removed, manifest last. Returns the
        manifest stored when the format rewrote it (its own files), else ``None``."""
        ...

    async def discard(self) -> None:
        """Drop everything staged by this attempt."""
        ...


class Sink(Protocol):
    """Local folder or Azure container holding ``<project>/date=YYYY-MM-DD/hour=HH/`` folders."""

    def describe(self) -> str:
        """Where the output goes, for logs and the summary (no secrets)."""
        ...

    async def prepare(self) -> None:
        """Check access (clear ``UserError`` when denied) and clean leftovers of killed runs."""
        ...

    async def completed_hours(self, project: str, hours: Iterable[datetime]) -> set[datetime]:
        """The hours among ``hours`` that already have a manifest."""
        ...

    async def read_manifest(self, project: str, hour: datetime) -> Manifest | None:
        """The hour's manifest, or ``None`` when it has none."""
        ...

    async def list_files(self, project: str, hour: datetime) -> list[str]:
        """Every file in the hour's folder but the manifest, sorted; ``[]`` when it has none."""
        ...

    def iter_file(self, project: str, hour: datetime, name: str) -> AsyncIterator[bytes]:
        """The stored bytes of one file of the hour, in chunks (bounded memory, no decoding)."""
        ...

    def stage(self, project: str, hour: datetime) -> HourStaging:
        """A fresh staging area for one attempt at ``hour`` (cheap, no I/O)."""
        ...

    async def aclose(self) -> None:
        """Release clients and connections."""
        ...


@runtime_checkable
class KeepsTable(Protocol):
    """A sink whose format keeps each project's rows in one table (Delta's) rather than in the
    hour folders' files: readers (the report, the models) read the rows from the table, and
    the hours' manifests still say which hours are done. A format's sink says so by having
    these two members; no reader asks which format it is."""

    read_errors: tuple[type[BaseException], ...]
    """What reading the table's rows may raise, beside DuckDB's errors."""

    async def table_dataset(self, project: str) -> Any:
        """The project's rows as a pyarrow dataset (``None``: no table yet); ``StorageError``
        when the table cannot be opened."""
        ...


class Store(Sink, Protocol):
    """A sink over real storage: a local folder, an Azure container, an S3 bucket."""

    @property
    def spool_dir(self) -> Path | None:
        """A local folder for a format's temporary files, cleaned with the run's staging
        (``None``: the system's temporary folder)."""
        ...

    @property
    def elsewhere(self) -> str:
        """How to point a run at another output root, for messages (``--output DIR``...)."""
        ...

    async def read_object(self, path: str) -> bytes | None:
        """A small object's bytes, or ``None`` when there is none."""
        ...

    async def put_object(self, path: str, data: bytes) -> None:
        """Store a small object whole and at once (readers see all of it or nothing)."""
        ...

    async def delete_object(self, path: str) -> None:
        """Delete an object; one that is not there is fine."""
        ...

    async def list_under(self, prefix: str, *, limit: int) -> list[str]:
        """Up to ``limit`` paths under the folder ``prefix``, relative to it, in name order."""
        ...
