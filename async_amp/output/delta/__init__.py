"""``[output] format = "delta"``: one Delta Lake table per project, an hour per commit."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ...config import Config
from ..manifest import MANIFEST_NAME, hour_folder
from ..stores.base import Store
from .sink import META_FOLDER, DeltaSink, meta_project
from .table import TableLocation

__all__ = [
    "META_FOLDER",
    "DeltaSink",
    "TableLocation",
    "make_delta_sink",
    "meta_project",
]


def make_delta_sink(
    config: Config, inner: Store, *, run_id: str, environ: Mapping[str, str]
) -> DeltaSink:
    """The Delta sink over ``inner`` (the store ``[output] sink`` names), without any I/O."""
    from .maintain import locator  # noqa: PLC0415

    async def forget(meta: str, hour: datetime) -> None:
        await inner.delete_object(f"{hour_folder(meta, hour)}/{MANIFEST_NAME}")

    # Spool next to a local output (its run folder: cleaned after a crash like the rest of
    # the staging), in the system's temporary folder otherwise.
    return DeltaSink(
        inner,
        locator(config, environ),
        run_id=run_id,
        spool_dir=inner.spool_dir,
        forget=forget,
        dedupe=config.output.dedupe,
    )
