"""``async_amp.model`` / ``async_amp.model_sync``: build the model tables from the Python API.

Like the rest of the API it prints nothing and never exits; ``on_day`` is called as each day
is checked (built or left as it was), for callers that want to show it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..api import reading_output, sync_twin
from ..config import Config, select_projects
from ..config.load import load_credentials, process_environment
from ..errors import ConfigError
from ..hours import available_until, hour_range
from ..output.open import Output
from ..output.stores.base import Sink
from .build import DayBuilt, ModelRun, build_models, day_span
from .store import ModelStore

if TYPE_CHECKING:
    from .reconcile import Reconciliation

__all__ = [
    "DayBound",
    "model",
    "model_after_extract",
    "model_after_extract_sync",
    "model_store",
    "model_sync",
    "parse_day",
    "reconcile",
    "reconcile_sync",
]

DayBound = str | date
_RELATIVE = re.compile(r"^-(\d{1,5})d$")


def parse_day(value: DayBound, *, today: date) -> date:
    """A local day: a ``date``, ``YYYY-MM-DD``, or ``-Nd`` (N days before ``today``)."""
    if isinstance(value, datetime):
        msg = f"{value!r} is a datetime: pass a date (the models' days are local days)"
        raise ConfigError(msg)
    if isinstance(value, date):
        return value
    relative = _RELATIVE.match(value.strip())
    if relative:
        return today - timedelta(days=int(relative.group(1)))
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        msg = f"{value!r} is not a day: use YYYY-MM-DD (e.g. 2026-11-01) or -7d"
        raise ConfigError(msg) from None


def model_store(output: Output, project: str) -> ModelStore:
    """Where ``project``'s model tables go: ``_models/<project>`` under the output's root, in
    its store (Delta tables when its events are Delta)."""
    config = output.config
    locate = None
    if config.output.data_format == "delta":
        from ..output.delta.maintain import locator  # noqa: PLC0415 - deltalake: only for Delta

        environ = config.environ if config.environ is not None else process_environment()
        locate = locator(config, environ)
    return ModelStore(output.store, project, locate)


async def model(
    config: Config,
    *,
    start: DayBound,
    end: DayBound,
    project: str | None = None,
    on_day: Callable[[DayBuilt], None] | None = None,
    now: datetime | None = None,
) -> list[ModelRun]:
    """Bring the model tables of the local days ``start`` to ``end`` (both inclusive, in
    ``[models] time_zone``) up to date, for ``project`` (default: every project). Days whose
    events did not change since they were built are left as they are."""
    moment = now or datetime.now(UTC)
    today = moment.astimezone(ZoneInfo(config.models.time_zone)).date()
    first, last = parse_day(start, today=today), parse_day(end, today=today)
    if last < first:
        msg = f"end {end} is before start {start}: swap them"
        raise ConfigError(msg)
    projects = select_projects(config, (project,) if project else ())
    names = [p.name for p in projects]
    runs = []
    async with reading_output(config, names) as output:
        for name in names:
            built = await build_models(
                output.sink,
                name,
                first,
                last,
                store=model_store(output, name),
                report=config.report,
                models=config.models,
                now=moment,
                lag_hours=config.extract.availability_lag_hours,
                on_day=on_day,
                merges=await _merges(output, name),
            )
            runs.append(built)
    return runs


model_sync = sync_twin(model)


async def _merges(output: Output, project: str) -> dict[str, str]:
    """Each ``amplitude_id`` Amplitude merged into another -> the id it ends up as, from the
    project's ``merged_ids`` table (empty without one)."""
    from ..merged.read import load_merged_ids, resolve_ids  # noqa: PLC0415

    resolved = resolve_ids(await load_merged_ids(output, project))
    return {str(old): str(new) for old, new in resolved.items()}


async def model_after_extract(
    config: Config, hours: dict[str, list[datetime]], *, now: datetime
) -> list[ModelRun]:
    """The models of the local days the extracted ``hours`` (per project) can touch: from
    ``lateness_hours`` before the first to the last (unchanged days are left as they are)."""
    zone = ZoneInfo(config.models.time_zone)
    runs = []
    for name, extracted in hours.items():
        if not extracted:
            continue
        late = timedelta(hours=config.models.lateness_hours)
        first = (min(extracted) - late).astimezone(zone).date()
        last = (max(extracted) + timedelta(hours=1)).astimezone(zone).date()
        runs += await model(config, start=first, end=last, project=name, now=now)
    return runs


model_after_extract_sync = sync_twin(model_after_extract)


async def reconcile(
    config: Config,
    *,
    start: DayBound,
    end: DayBound,
    project: str | None = None,
    event_types: Sequence[str] = (),
    now: datetime | None = None,
) -> Reconciliation:
    """The model tables' daily figures beside Amplitude's event segmentation (totals and
    uniques per local day, of all events and of each of ``event_types``), with the reason of
    each known difference; ``result.exit_code`` is 1 when a final day differs by more than
    ``[models] reconcile_tolerance``. Reads the tables ``model`` wrote; asks Amplitude with
    the project's keys, two requests at a time."""
    # aiohttp loads only for reconcile, not for every build of the tables
    from .reconcile import ask_amplitude, compare, lake_figures  # noqa: PLC0415

    moment = now or datetime.now(UTC)
    zone = ZoneInfo(config.models.time_zone)
    today = moment.astimezone(zone).date()
    first, last = parse_day(start, today=today), parse_day(end, today=today)
    if last < first:
        msg = f"end {end} is before start {start}: swap them"
        raise ConfigError(msg)
    projects = select_projects(config, (project,) if project else ())
    if len(projects) > 1:
        names = ", ".join(p.name for p in projects)
        msg = f"the config has several projects ({names}): pick one with --project NAME"
        raise ConfigError(msg)
    chosen = projects[0]
    environ = config.environ if config.environ is not None else process_environment()
    credentials = chosen.credentials or config.credentials or load_credentials(environ, chosen)
    answers = await ask_amplitude(
        chosen.url,
        credentials,
        first,
        last,
        event_types,
        connect_timeout_s=config.extract.connect_timeout_s,
        read_timeout_s=config.extract.read_timeout_s,
    )
    async with reading_output(config, [chosen.name]) as output:
        figures, status = await lake_figures(model_store(output, chosen.name), first, last)
        gaps = await _gaps(output.sink, chosen.name, first, last, config, moment, zone)
    return compare(
        chosen.name,
        first,
        last,
        answers,
        figures,
        status,
        tolerance=config.models.reconcile_tolerance,
        extracted=gaps,
    )


async def _gaps(
    sink: Sink,
    project: str,
    first: date,
    last: date,
    config: Config,
    moment: datetime,
    zone: ZoneInfo,
) -> dict[date, str]:
    """Why a day's events may be short in the lake: hours of it (or of the late ones that
    can still add to it) not extracted."""
    newest = available_until(moment, config.extract.availability_lag_hours)
    late = timedelta(hours=config.models.lateness_hours)
    found: dict[date, str] = {}
    day = first
    while day <= last:
        start, end = day_span(day, zone)
        own = [h for h in hour_range(start, end - timedelta(hours=1)) if h <= newest]
        after = [h for h in hour_range(end, end - timedelta(hours=1) + late) if h <= newest]
        done = await sink.completed_hours(project, [*own, *after])
        if own and not done.intersection(own):
            found[day] = "outside the extracted range"
        elif missing := [h for h in own if h not in done]:
            found[day] = f"{len(missing)} of its hours missing from the lake"
        elif missing := [h for h in after if h not in done]:
            found[day] = f"{len(missing)} later upload hours missing (late events)"
        day += timedelta(days=1)
    return found


reconcile_sync = sync_twin(reconcile)
