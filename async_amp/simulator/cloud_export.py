"""Lay a simulated dataset out as Amplitude's recurring cloud export: one
``<projectID>_<yyyy-MM-dd>_<H>#<partition>.json.gz`` file per partition of each hour, the same
gzip members the simulated Export API zips, written by ``put`` (a folder, a bucket).

``late`` hours are left out (the export has not reached them); ``rewritten`` hours come from
``rewrite`` instead (a backfill Amplitude de-duplicated by rewriting the hour's files).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from .dataset import Dataset

__all__ = ["export_files", "lay_out_local"]


def export_files(
    dataset: Dataset,
    hours: Iterable[datetime],
    *,
    prefix: str = "",
    late: frozenset[datetime] = frozenset(),
) -> list[tuple[str, bytes]]:
    """(object name, gzip bytes) of every partition of ``hours``, late ones left out."""
    files = []
    for hour in hours:
        if hour in late:
            continue
        for page in dataset.pages(hour):
            base = dataset.member_name(hour, page).split("/", 1)[1]
            name = f"{prefix.strip('/')}/{base}" if prefix.strip("/") else base
            files.append((name, dataset.gz(hour, page)))
    return files


def lay_out_local(root: Path, files: Iterable[tuple[str, bytes]]) -> None:
    """Write the files under ``root`` (a local cloud export)."""
    for name, data in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def put_each(put: Callable[[str, bytes], None], files: Iterable[tuple[str, bytes]]) -> None:
    for name, data in files:
        put(name, data)
