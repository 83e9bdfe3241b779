"""Lay a simulated dataset out as Amplitude's recurring cloud export: one
``<projectID>_<yyyy-MM-dd>_<H>#<partition>.json.gz`` file per partition of each hour, the same
gzip members the simulated Export API zips, written by ``put`` (a folder, a bucket).

``late`` hours are left out (the export has not reached them); ``rewritten`` hours come from
``rewrite`` instead (a backfill Amplitude de-duplicated by rewriting the hour's files).

``merged_id_files`` writes the merged-IDs feed of the same dataset: one
``-<OrgID>_<yyyy-MM-dd>_<H>.json.gz`` per hour that had merges. Walking the hours in order,
of each hour's distinct ``amplitude_id`` (sorted, each merged away at most once) every
``every``-th is merged into the one before it: the survivor is always the smaller id, so
merges can chain across hours (c -> b, then b -> a) but never loop.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

from .dataset import Dataset

__all__ = ["ORG_ID", "export_files", "lay_out_local", "merged_id_files"]

ORG_ID = 36958
"""The simulated organization's id, in the merged-IDs feed's file names."""


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


def _hour_ids(dataset: Dataset, hour: datetime) -> list[int]:
    found = set()
    for page in dataset.pages(hour):
        for line in dataset.ndjson(hour, page).splitlines():
            try:
                value = json.loads(line).get("amplitude_id")
            except (ValueError, AttributeError):
                continue
            if isinstance(value, int) and not isinstance(value, bool):
                found.add(value)
    return sorted(found)


def merged_id_files(
    dataset: Dataset,
    hours: Iterable[datetime],
    *,
    prefix: str = "",
    org_id: int = ORG_ID,
    every: int = 5,
) -> list[tuple[str, bytes]]:
    """(object name, gzip bytes) of the merged-IDs feed of ``hours`` (see the module)."""
    files = []
    merged_away: set[int] = set()
    for hour in sorted(hours):
        ids = [i for i in _hour_ids(dataset, hour) if i not in merged_away]
        lines = []
        start_ms = int(hour.timestamp() * 1000)
        for n, i in enumerate(range(1, len(ids), every)):
            merged_away.add(ids[i])
            merge_ms = start_ms + n * 7_000 + 500
            record = {
                "scope": org_id,
                "merge_time": merge_ms,
                "merge_server_time": merge_ms + 1_234,
                "amplitude_id": ids[i],
                "merged_amplitude_id": ids[i - 1],
            }
            lines.append(json.dumps(record) + "\n")
        if not lines:
            continue
        base = f"-{org_id}_{hour:%Y-%m-%d}_{hour.hour}.json.gz"
        name = f"{prefix.strip('/')}/{base}" if prefix.strip("/") else base
        files.append((name, gzip.compress("".join(lines).encode(), mtime=0)))
    return files
