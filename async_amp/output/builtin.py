"""The built-in formats: ndjson and gzip (Amplitude's members as they are), parquet (one typed
file per member) and delta (one Delta Lake table per project). Each loads its modules only
when used (pyarrow, deltalake)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .manifest import MANIFEST_NAME

if TYPE_CHECKING:
    from ..config import Config
    from ..readback import VerifyReport
    from .delta.compact import CompactResult
    from .delta.maintain import CompactRequest
    from .format import Format, FormatContext
    from .stores.base import Sink, Store

__all__ = ["BUILTIN_FORMATS", "data_files_with_manifest"]


def data_files_with_manifest(names: Sequence[str], suffix: str) -> bool:
    """True when one of ``names`` (paths under a project's root) is a data file ending in
    ``suffix`` in a ``date=.../hour=...`` folder that also holds a manifest."""
    folders: dict[str, set[str]] = {}
    for name in names:
        folder, _, file = name.rpartition("/")
        if folder.startswith("date=") and "/hour=" in folder:
            folders.setdefault(folder, set()).add(file)
    return any(
        MANIFEST_NAME in files
        and any(f.endswith(suffix) and not f.startswith(("_", ".")) for f in files)
        for files in folders.values()
    )


class _Stored:
    """A format whose hours are files in the hour folders, checked against the manifest's
    sizes, hashes and counts (``readback.checks``)."""

    __slots__ = ()

    async def verify(
        self, sink: Sink, project: str, first: datetime, last: datetime, *, concurrency: int
    ) -> VerifyReport:
        from ..readback.checks import verify  # noqa: PLC0415 - loads the streaming core

        return await verify(sink, project, first, last, concurrency=concurrency)


@dataclass(frozen=True, slots=True)
class _Files(_Stored):
    """Amplitude's members stored as they are: decompressed (ndjson) or as sent (gzip)."""

    name: str
    keeps_gzip: bool

    def recognise(self, names: Sequence[str]) -> bool:
        suffix = ".json.gz" if self.keeps_gzip else ".json"
        return data_files_with_manifest(names, suffix)

    def wrap(self, store: Store, context: FormatContext) -> Sink:
        return store


@dataclass(frozen=True, slots=True)
class _Parquet(_Stored):
    """One typed Parquet file per member (``output/columnar/``)."""

    name: str = "parquet"
    keeps_gzip: bool = False

    def recognise(self, names: Sequence[str]) -> bool:
        return data_files_with_manifest(names, ".parquet")

    def wrap(self, store: Store, context: FormatContext) -> Sink:
        from .columnar.staging import ParquetSink  # noqa: PLC0415 - pyarrow only when used

        dedupe = context.config.output.dedupe
        return ParquetSink(store, dedupe=dedupe, spool_dir=context.spool_dir)


@dataclass(frozen=True, slots=True)
class _Delta:
    """One Delta Lake table per project, an hour per commit (``output/delta/``); ``compact`` is its
    table maintenance (``format.Maintained``)."""

    name: str = "delta"
    keeps_gzip: bool = False

    def recognise(self, names: Sequence[str]) -> bool:
        return any(n.startswith("_delta_log/") for n in names)

    def wrap(self, store: Store, context: FormatContext) -> Sink:
        from .delta import make_delta_sink  # noqa: PLC0415 - deltalake only when used

        return make_delta_sink(
            context.config, store, run_id=context.run_id, environ=context.environ
        )

    async def verify(
        self, sink: Sink, project: str, first: datetime, last: datetime, *, concurrency: int
    ) -> VerifyReport:
        from .delta.sink import DeltaSink  # noqa: PLC0415 - deltalake only when used
        from .delta.verify import verify_table  # noqa: PLC0415

        assert isinstance(sink, DeltaSink)  # what wrap made
        return await verify_table(sink, project, first, last)

    def compact(self, config: Config, request: CompactRequest) -> list[tuple[str, CompactResult]]:
        from .delta.maintain import compact  # noqa: PLC0415 - deltalake only when used

        return compact(config, request)


# in the order people read them; recognition is unambiguous between them: a Delta table's data
# files sit in folders without manifests, its records' folders under ``_async_amp/``
BUILTIN_FORMATS: tuple[Format, ...] = (
    _Files("ndjson", keeps_gzip=False),
    _Files("gzip", keeps_gzip=True),
    _Parquet(),
    _Delta(),
)
