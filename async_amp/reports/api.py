"""``async_amp.report`` / ``async_amp.report_sync``: build the HTML report from the Python API.

Like the rest of the API it prints nothing, installs no signal handler and never exits: the
page is written (atomically: a temporary file renamed into place) and a ``ReportResult``
returned; ``on_progress`` is called as hours are scanned, for callers that want to show it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import anyio

from ..api import Bound, hour_span, reading_output, sync_twin
from ..config import Config, ReportConfig, select_projects
from ..errors import ConfigError
from ..output.open import Output
from .build import ScanProgress, report_from_events
from .model import ModelDay, Report, ReportScope
from .page import render_html

__all__ = ["Basis", "ReportResult", "report", "report_sync"]

Basis = Literal["auto", "events", "models"]


@dataclass(frozen=True, slots=True)
class ReportResult:
    """What ``report`` wrote: the file, its size, and every number on the page."""

    path: Path
    bytes: int
    report: Report


async def report(
    config: Config,
    *,
    start: Bound,
    end: Bound,
    project: str | None = None,
    output: str | os.PathLike[str] = "report.html",
    on_progress: Callable[[ScanProgress], None] | None = None,
    now: datetime | None = None,
    basis: Basis = "auto",
) -> ReportResult:
    """Read every hour of ``project`` from ``start`` to ``end`` (inclusive, UTC) from the
    configured sink and write the report to ``output`` (one self-contained HTML file).

    ``project``: the project to report on; may be left out when the config has only one.
    ``now``: the current time (freshness, and which hours are not yet available).
    ``basis``: ``"models"`` reads the model tables (and the hours' manifests), no event: a
    year in seconds; ``"events"`` reads every event; ``"auto"``: the model tables when every
    local day the range touches is built, else the events.
    """
    moment = now or datetime.now(UTC)
    first, last = hour_span(start, end, moment)
    projects = select_projects(config, (project,) if project else ())
    if len(projects) > 1:
        names = ", ".join(p.name for p in projects)
        msg = f"the config has several projects ({names}): pick one with --project NAME"
        raise ConfigError(msg)
    name = projects[0].name
    target = Path(output)
    if await anyio.Path(target).is_dir():
        msg = f"{target} is a folder: name the HTML file (e.g. --html {target / 'report.html'})"
        raise ConfigError(msg)
    folder = config.output.dir
    if config.output.sink == "local" and not await anyio.Path(folder).is_dir():
        msg = f"no folder {folder}: nothing was extracted there; "
        msg += "pass --output DIR or set [output] dir"
        raise ConfigError(msg)
    lag_hours = config.extract.availability_lag_hours
    scope = ReportScope(name, first, last, moment, lag_hours, _settings(config))
    async with reading_output(config, [name]) as opened:
        built = None
        if basis != "events":
            built = await _from_models(opened, config, scope)
            if built is None and basis == "models":
                zone = ZoneInfo(config.models.time_zone)
                lo, hi = first.astimezone(zone).date(), last.astimezone(zone).date()
                msg = (
                    f"the model tables of {name} miss days from {lo} to {hi}: build them "
                    f"(async-amp model --start {lo} --end {hi}) or read the events (--from "
                    "events)"
                )
                raise ConfigError(msg)
        if built is None:
            built = await report_from_events(opened.sink, scope, progress=on_progress)
            built = await _with_model_days(opened, config, name, built)
    data = render_html(built).encode()
    await anyio.to_thread.run_sync(_write, target, data)
    return ReportResult(target, len(data), built)


def _settings(config: Config) -> ReportConfig:
    """``[report]``, its heatmap in ``[models] time_zone`` when ``[report] time_zone`` is
    left at UTC (one time zone for the models and the report's "when")."""
    if config.report.time_zone == "UTC" and config.models.time_zone != "UTC":
        return replace(config.report, time_zone=config.models.time_zone)
    return config.report


async def _from_models(output: Output, config: Config, scope: ReportScope) -> Report | None:
    from ..models.api import model_store  # noqa: PLC0415 - pyarrow: only when reading models
    from .from_models import report_from_models  # noqa: PLC0415

    store = model_store(output, scope.project)
    return await report_from_models(output.sink, store, scope, zone=config.models.time_zone)


async def _with_model_days(output: Output, config: Config, project: str, built: Report) -> Report:
    """``built`` with the model tables' days that overlap its range (none when not built)."""
    from ..models.api import model_store  # noqa: PLC0415 - pyarrow: only when reading models
    from ..models.schema import table  # noqa: PLC0415

    store = model_store(output, project)
    zone = ZoneInfo(config.models.time_zone)
    first, last = built.first.astimezone(zone).date(), built.last.astimezone(zone).date()
    rows = (await store.read_days(table("daily"), first, last)).to_pylist()
    if not rows:
        return built
    days = tuple(ModelDay(**r) for r in sorted(rows, key=lambda r: r["day"]))
    return replace(built, model_days=days, model_zone=config.models.time_zone)


def _write(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        msg = f"cannot write the report to {target}: {exc.strerror or exc}"
        raise ConfigError(msg) from None


report_sync = sync_twin(report)
