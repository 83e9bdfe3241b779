"""How Amplitude names the merged-IDs feed's files: ``-<OrgID>_<yyyy-MM-dd>_<H>.json.gz``, one
per hour, and where the ``merged_ids`` table lives in the output: ``_merged_ids/<project>/``,
beside ``_models/`` and outside the project's own folder (or Delta table), so no reader of
the events ever sees a merged-IDs file."""

from __future__ import annotations

from datetime import datetime

from ..hours import parse_hour_file

__all__ = ["MERGED_ROOT", "merged_hour_of", "merged_name", "merged_root"]

MERGED_ROOT = "_merged_ids"


def merged_name(org_id: str | int, hour: datetime) -> str:
    """``-36958_2026-11-01_5.json.gz``: the feed's file of ``hour``."""
    return f"-{org_id}_{hour:%Y-%m-%d}_{hour.hour}.json.gz"


def merged_hour_of(base: str) -> tuple[str, datetime] | None:
    """(organization ID, hour) of a feed file's base name; ``None`` when it is not one."""
    try:
        parsed = parse_hour_file(base)
    except ValueError:
        return None
    return (parsed.owner, parsed.hour) if parsed.is_merged_ids else None


def merged_root(project: str) -> str:
    """The ``merged_ids`` table's root in the output, relative to the store's root."""
    return f"{MERGED_ROOT}/{project}"
