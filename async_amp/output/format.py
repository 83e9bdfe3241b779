"""What a format is (``Format``) and what it gets to build its sink (``FormatContext``); the
registry of formats by name is ``registry.py``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..config import Config
    from ..readback import VerifyReport
    from .delta.compact import CompactResult
    from .delta.maintain import CompactRequest
    from .stores.base import Sink, Store

__all__ = ["Format", "FormatContext", "Maintained"]


@dataclass(frozen=True, slots=True)
class FormatContext:
    """What a format may need to build its sink: the config (resolved: its ``[output] format``
    is this format), the run's id, the environment (credentials of the store) and a local
    folder for temporary files that the run cleans (``None``: the system's temporary folder)."""

    config: Config
    run_id: str
    environ: Mapping[str, str]
    spool_dir: Path | None = None


class Format(Protocol):
    """One way of storing an hour's events (see the module docstring)."""

    @property
    def name(self) -> str:
        """The name ``[output] format`` uses, recorded in each project's marker."""
        ...

    @property
    def keeps_gzip(self) -> bool:
        """True when the archive should hand over each member's ``.json.gz`` bytes as they
        are (else they are gunzipped first)."""
        ...

    def recognise(self, names: Sequence[str]) -> bool:
        """True when ``names`` (paths under a project's root, a sample of them) look like an
        output of this format written before outputs recorded their format."""
        ...

    def wrap(self, store: Store, context: FormatContext) -> Sink:
        """The sink that stores hours in this format through ``store`` (no I/O)."""
        ...

    async def verify(
        self, sink: Sink, project: str, first: datetime, last: datetime, *, concurrency: int
    ) -> VerifyReport:
        """Check every hour from ``first`` to ``last`` as a reader of this format sees it."""
        ...


@runtime_checkable
class Maintained(Protocol):
    """A format with table maintenance (``async-amp compact``): a format that keeps each
    project's rows in one table (Delta) rewrites each day's small hourly files into few, then
    deletes files no snapshot uses. A format without it has no ``compact``; ``compact`` on its
    output is refused (``output/maintain.py``)."""

    def compact(self, config: Config, request: CompactRequest) -> list[tuple[str, CompactResult]]:
        """Compact what ``request`` names (blocking), one result per project and day."""
        ...
