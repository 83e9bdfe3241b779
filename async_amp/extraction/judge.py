"""Judging one hour of a clean attempt: whole (commit it), or short (ask for it again, alone).

Pure functions, no I/O. An hour is short when ``expected_pages_per_hour`` is set and fewer
partitions came back; the same short answer twice in a row is accepted, with a warning in the
manifest, since Amplitude then really has no more. A 404 (no data for the window) makes every
hour of it empty, never short.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from ..source.archive import ProcessedMember

__all__ = ["Verdict", "by_hour", "judge_hour", "missing_pages"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with one hour after a clean attempt."""

    action: Literal["commit", "retry"]
    problem: str = ""  # why the hour is short ("2 of 3 pages, partition #2 absent")
    warnings: tuple[str, ...] = ()  # for the manifest, when a short hour is accepted


def by_hour(
    hours: Sequence[datetime], members: Iterable[ProcessedMember] | None
) -> dict[datetime, list[ProcessedMember]]:
    """The members of a window, per hour, in page order (an hour without data: ``[]``)."""
    grouped: dict[datetime, list[ProcessedMember]] = {h: [] for h in hours}
    for item in members or ():
        grouped[item.member.hour].append(item)
    for items in grouped.values():
        items.sort(key=lambda p: p.member.page)
    return grouped


def judge_hour(
    pages: frozenset[int],
    *,
    expected: int,
    no_data: bool,
    previous_short: frozenset[int] | None,
) -> Verdict:
    """``pages``: the partitions that came back; ``expected``: how many there should be (0:
    unknown); ``no_data``: the answer was a 404; ``previous_short``: the pages of this hour's
    last clean but short attempt, if any."""
    if not expected or len(pages) >= expected or no_data:
        return Verdict("commit")
    problem = missing_pages(pages, expected)
    if previous_short == pages:
        return Verdict(
            "commit",
            problem=problem,
            warnings=(f"accepted after two identical short attempts: {problem}",),
        )
    return Verdict("retry", problem=problem)


def missing_pages(pages: frozenset[int], expected: int) -> str:
    """``2 of 3 pages, partition #2 absent`` (numbering may start at 0 or 1)."""
    base = 1 if pages and min(pages) >= 1 else 0
    absent = sorted(set(range(base, base + expected)) - pages)
    shown = ", ".join(f"#{p}" for p in absent[:10]) or "unknown"
    noun = "partition" if len(absent) == 1 else "partitions"
    return f"{len(pages)} of {expected} pages, {noun} {shown} absent"
