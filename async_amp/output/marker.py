"""What a project's output root says it holds: ``<root>/<project>/_async_amp.json``.

::

    {"format": "delta", "layout": 1, "project": "website",
     "created_by": "async-amp 0.1.0", "created_at": "2026-12-07T20:00:00Z",
     "recognised": false}

Written once, whole (one put), before the run that creates the output commits its first hour;
never rewritten. ``recognised`` is true when the output was made before outputs recorded their
format, and its format was read from its files (``registry.recognise_format``). ``layout``
counts incompatible changes of the folder layout: an output of a newer layout is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..version import __version__

__all__ = ["LAYOUT_VERSION", "MARKER_NAME", "OutputMarker", "marker_path"]

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

    @classmethod
    def new(cls, fmt: str, project: str, *, recognised: bool = False) -> OutputMarker:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(fmt, project, LAYOUT_VERSION, _tool(), now, recognised)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "layout": self.layout,
            "project": self.project,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "recognised": self.recognised,
        }

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
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            msg = f"not an async-amp output marker: {exc}"
            raise ValueError(msg) from None
