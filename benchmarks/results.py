"""What a benchmark case produces: rows (one per variant, the median of its repeats) and the
case's result, as JSON; and the small judgements every case makes over its rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MB",
    "MIB",
    "CaseResult",
    "Row",
    "find_row",
    "join_notes",
    "speedups",
    "target",
]

MB = 1e6
MIB = 1024 * 1024


@dataclass(slots=True)
class Row:
    """One line of a case's table (the median repeat when there are several)."""

    variant: str
    tool: str  # async-amp | baseline | reference
    available: bool = True
    note: str = ""
    wall_s: float | None = None
    cpu_s: float | None = None
    user_s: float | None = None
    sys_s: float | None = None
    peak_rss: int | None = None
    bytes_written: int | None = None
    events: int | None = None
    requests: int | None = None
    retries: int | None = None
    throttled: int | None = None
    server_cpu_s: float | None = None
    other_cpu_s: float | None = None  # Azurite's, in the azure case
    foreign_cpu_s: float | None = None  # used by processes outside the benchmark meanwhile
    exit_code: int | None = None
    valid: bool | None = None
    problem: str = ""
    ideal_s: float | None = None
    speedup: float | None = None  # baseline wall / this wall
    repeats: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mb_per_s(self) -> float | None:
        if self.bytes_written is None or not self.wall_s:
            return None
        return self.bytes_written / MB / self.wall_s

    @property
    def events_per_s(self) -> float | None:
        if self.events is None or not self.wall_s:
            return None
        return self.events / self.wall_s

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in self.__slots__}  # type: ignore[attr-defined]
        data["mb_per_s"] = self.mb_per_s
        data["events_per_s"] = self.events_per_s
        return _rounded(data)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


@dataclass(slots=True)
class CaseResult:
    name: str
    title: str
    params: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    generation_s: float = 0.0
    warm_s: float = 0.0
    seconds: float = 0.0
    headline: list[str] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    server_cpu_total_s: float | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return _rounded(
            {
                "name": self.name,
                "title": self.title,
                "params": self.params,
                "generation_s": self.generation_s,
                "warm_s": self.warm_s,
                "seconds": self.seconds,
                "server_cpu_total_s": self.server_cpu_total_s,
                "headline": self.headline,
                "targets": self.targets,
                "error": self.error,
                "rows": [r.to_json() for r in self.rows],
            }
        )


def speedups(rows: list[Row]) -> None:
    base = next((r for r in rows if r.tool == "baseline" and r.wall_s), None)
    for row in rows:
        if base is not None and base.wall_s and row.wall_s and row.available:
            row.speedup = base.wall_s / row.wall_s


def target(name: str, goal: str, measured: str, met: bool | None) -> dict[str, Any]:
    verdict = {True: "MET", False: "MISSED", None: "NOT AVAILABLE"}[met]
    return {"target": name, "goal": goal, "measured": measured, "met": met, "verdict": verdict}


def find_row(rows: list[Row], variant: str) -> Row | None:
    return next((r for r in rows if r.variant == variant), None)


def times(value: float, reference: float) -> str:
    """``value`` as a multiple of ``reference`` ("1.23x"), or "n/a" when there is none."""
    return f"{value / reference:.2f}x" if reference else "n/a"


def join_notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


STORE_RSS_LIMIT = 150 * MB  # issue 12: peak RSS of an object-store sink run, "at most 150 MB"


def add_targets(
    result: CaseResult, name: str, ours: Row | None, refs: list[Row], what: str
) -> None:
    """The object-store sinks' two targets (issue 12): >= 80% of the fastest reference's
    throughput measured in the same run, and <= 150 MB peak RSS; plus the headline."""
    goal = f">= 80% of the fastest reference's throughput ({what})"
    rss_goal = "<= 150 MB (1.5e8 bytes) peak RSS"
    best = max(refs, key=lambda r: r.mb_per_s or 0) if refs else None
    if ours is None or not ours.available or not ours.mb_per_s or best is None or not best.mb_per_s:
        result.targets.append(target(name, goal, "not available", None))
        result.targets.append(target(f"{name}-memory", rss_goal, "not available", None))
        return
    for ref in refs:
        share = ours.mb_per_s / (ref.mb_per_s or 1)
        ours.note = join_notes(ours.note, f"{100 * share:.0f}% of {ref.variant}")
    share = ours.mb_per_s / best.mb_per_s
    rss = ours.peak_rss or 0
    result.headline.append(
        f"--sink {name}: {ours.mb_per_s:.0f} MB/s = {100 * share:.0f}% of {what} "
        f"({best.mb_per_s:.0f} MB/s, {best.variant.removeprefix('reference: ')}); "
        f"peak RSS {rss / MIB:.0f} MiB"
    )
    result.targets.append(target(name, goal, f"{100 * share:.0f}%", share >= 0.8))
    result.targets.append(
        target(
            f"{name}-memory",
            rss_goal,
            f"{rss / MB:.1f} MB ({rss / MIB:.1f} MiB)",
            0 < rss <= STORE_RSS_LIMIT,
        )
    )
