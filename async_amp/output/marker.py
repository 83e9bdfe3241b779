"""What a project's output root says it holds: ``<root>/<project>/_async_amp.json``.

::

    {"format": "delta", "layout": 1, "project": "website",
     "created_by": "async-amp 0.1.0", "created_at": "2026-12-07T20:00:00Z",
     "recognised": false, "project_id": "187520"}

Written whole (one put), before the run that creates the output commits its first hour, and
once more when the first archive names Amplitude's id of the project (``project_id``, absent
until then, and in outputs made before markers held it): ``ProjectIdRecord``. Never changed
after that. ``recognised`` is true when the output was made before outputs recorded their
format, and its format was read from its files (``registry.recognise_format``). ``layout``
counts incompatible changes of the folder layout: an output of a newer layout is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import StorageError
from ..version import __version__

if TYPE_CHECKING:
    from .stores.base import Store

__all__ = ["LAYOUT_VERSION", "MARKER_NAME", "OutputMarker", "ProjectIdRecord", "marker_path"]

MARKER_NAME = "_async_amp.json"
LAYOUT_VERSION = 1


def marker_path(project: str) -> str:
    """Where a project's marker lives, relative to the store's root."""
    return f"{project}/{MARKER_NAME}"


def _tool() -> str:
    return f"async-amp {__version__}"


@dataclass(frozen=True, slots=True)
class OutputMarker:
    format: str
    project: str
    layout: int = LAYOUT_VERSION
    created_by: str = ""
    created_at: str = ""
    recognised: bool = False
    project_id: str = ""  # Amplitude's id of the project the output holds ("": not known yet)

    @classmethod
    def new(cls, fmt: str, project: str, *, recognised: bool = False) -> OutputMarker:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(fmt, project, LAYOUT_VERSION, _tool(), now, recognised)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "layout": self.layout,
            "project": self.project,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "recognised": self.recognised,
        }
        if self.project_id:
            out["project_id"] = self.project_id
        return out

    def dumps(self) -> bytes:
        return (json.dumps(self.to_json(), indent=2) + "\n").encode()

    @classmethod
    def loads(cls, data: bytes) -> OutputMarker:
        """Parse a marker; ``ValueError`` when it is not one."""
        try:
            raw = json.loads(data)
            fmt, layout = raw["format"], raw["layout"]
            if not isinstance(fmt, str) or not fmt or not isinstance(layout, int):
                raise TypeError("format must be a name and layout a number")
            return cls(
                format=fmt,
                project=str(raw.get("project", "")),
                layout=layout,
                created_by=str(raw.get("created_by", "")),
                created_at=str(raw.get("created_at", "")),
                recognised=bool(raw.get("recognised", False)),
                project_id=str(raw.get("project_id", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"not an async-amp output marker: {exc}"
            raise ValueError(msg) from None


class ProjectIdRecord:
    """Amplitude's id of the project an output holds, in its marker (an id, never a key).

    ``read()``: the recorded id, ``""`` when the marker has none (or there is no marker, or it
    cannot be read: the caller then asks the stored manifests). ``record(id)``: add it to a
    marker that has none (a store that fails is let be: the manifests record it too)."""

    def __init__(self, store: Store, project: str) -> None:
        self._store = store
        self._path = marker_path(project)

    async def _marker(self) -> OutputMarker | None:
        try:
            data = await self._store.read_object(self._path)
            return OutputMarker.loads(data) if data is not None else None
        except (StorageError, ValueError):
            return None

    async def read(self) -> str:
        marker = await self._marker()
        return marker.project_id if marker is not None else ""

    async def record(self, project_id: str) -> None:
        marker = await self._marker()
        if marker is None or marker.project_id:
            return
        try:
            await self._store.put_object(self._path, replace(marker, project_id=project_id).dumps())
        except StorageError:
            return
