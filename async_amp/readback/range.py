"""What a status report and a verify report share: which project, where it is stored, which
hours, the totals over those hours, and the JSON fields that say so first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..hours import iso_hour

__all__ = ["Counted", "RangeReport"]


class Counted(Protocol):
    """One hour of a report, with what its manifest or its files count."""

    @property
    def files(self) -> int: ...

    @property
    def bytes(self) -> int: ...

    @property
    def events(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RangeReport:
    """A report on the hours ``first`` to ``last`` of ``project`` stored at ``where``."""

    project: str
    where: str
    first: datetime
    last: datetime

    def counted(self) -> Sequence[Counted]:
        """The hours the totals add up (a report says which)."""
        raise NotImplementedError

    @property
    def files(self) -> int:
        return sum(h.files for h in self.counted())

    @property
    def bytes(self) -> int:
        return sum(h.bytes for h in self.counted())

    @property
    def events(self) -> int:
        return sum(h.events for h in self.counted())

    def head_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "where": self.where,
            "start": iso_hour(self.first),
            "end": iso_hour(self.last),
        }
