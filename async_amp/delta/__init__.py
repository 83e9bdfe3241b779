"""``[output] format = "delta"``: one Delta Lake table per project, an hour per commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime

from ..config import Config
from ..manifest import MANIFEST_NAME, hour_folder
from ..sinks.base import Sink
from .sink import COMMIT_RECORD, META_FOLDER, DeltaSink, meta_project
from .table import TableLocation

__all__ = [
    "COMMIT_RECORD",
    "META_FOLDER",
    "DeltaSink",
    "TableLocation",
    "make_delta_sink",
    "meta_project",
]


def make_delta_sink(
    config: Config, inner: Sink, *, run_id: str, environ: Mapping[str, str]
) -> DeltaSink:
    """The Delta sink over ``inner`` (the sink ``[output] sink`` names), without any I/O."""
    from .maintain import locator  # noqa: PLC0415

    locate = locator(config, environ)
    from ..sinks.local import LocalSink  # noqa: PLC0415

    # Spool next to a local output (its run folder: cleaned after a crash like the rest of
    # the staging), in the system's temporary folder otherwise.
    spool = inner.run_dir if isinstance(inner, LocalSink) else None
    return DeltaSink(
        inner,
        locate,
        run_id=run_id,
        spool_dir=spool,
        forget=_forgetter(inner),
        dedupe=config.output.dedupe,
    )


def _forgetter(inner: Sink) -> Callable[[str, datetime], Awaitable[None]] | None:
    """Remove an hour's manifest through ``inner`` (each backend has its own delete)."""
    from ..sinks.local import LocalSink  # noqa: PLC0415

    if isinstance(inner, LocalSink):

        async def local(meta: str, hour: datetime) -> None:
            (inner.root / hour_folder(meta, hour) / MANIFEST_NAME).unlink(missing_ok=True)

        return local
    from ..sinks.azure import AzureSink  # noqa: PLC0415

    if isinstance(inner, AzureSink):

        async def azure(meta: str, hour: datetime) -> None:
            await inner.delete_blob(f"{inner.hour_prefix(meta, hour)}/{MANIFEST_NAME}")

        return azure
    from ..sinks.s3 import S3Sink  # noqa: PLC0415

    if isinstance(inner, S3Sink):

        async def s3(meta: str, hour: datetime) -> None:
            await inner.delete_keys([f"{inner.hour_prefix(meta, hour)}/{MANIFEST_NAME}"])

        return s3
    return None
