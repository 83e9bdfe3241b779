"""The Python API: what the CLI does, as functions that return typed values.

::

    import async_amp

    config = async_amp.load_config("config.toml")
    result = async_amp.extract_sync(config, start="2026-11-01", end="2026-11-02")
    result.raise_for_failures()

Each function has an ``async`` form (``extract``, ``status``, ``verify``) for callers with an
event loop, and a ``_sync`` twin that runs one on a fresh loop (in any thread). None of them
configures logging, installs a signal handler, prints, or exits: user errors raise
``async_amp.UserError`` subclasses, log events go to the standard ``logging`` logger
``async_amp`` (see ``async_amp.logs``). See ``docs/python-api.md``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import anyio

from .config import Config, select_projects
from .config import load as config_load
from .errors import ConfigError, first_user_error
from .extraction.results import ExtractResult, HourResult, StatusResult, VerifyResult
from .hours import Bound, hour_bound, hour_bounds, new_run_id
from .output.open import Output, open_output
from .output.stores import Sink
from .readback.status import read_status

if TYPE_CHECKING:
    from .extraction.run import ExtractionRun
    from .readback import StatusReport, VerifyReport

__all__ = [
    "Bound",
    "extract",
    "extract_sync",
    "hour_bound",
    "hour_span",
    "load_config",
    "reading_output",
    "reading_sink",
    "status",
    "status_sync",
    "sync_twin",
    "verify",
    "verify_sync",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")


def sync_twin(function: Callable[_P, Awaitable[_T]]) -> Callable[_P, _T]:
    """The ``_sync`` twin of an ``async`` API function: the same arguments, run to the end on
    a fresh event loop (``anyio.run``), for callers without one, in any thread."""

    @functools.wraps(function)
    def twin(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return anyio.run(functools.partial(function, *args, **kwargs))

    twin.__name__ = twin.__qualname__ = f"{function.__name__}_sync"
    twin.__doc__ = f":func:`{function.__name__}` on a fresh event loop, for callers without one."
    return twin


def load_config(
    path: str | Path | None = None,
    *,
    api_key: str | None = None,
    secret_key: str | None = None,
    environ: dict[str, str] | None = None,
) -> Config:
    """Read the config the CLI would read: ``path``, else the file the ``ASYNC_AMP_CONFIG``
    variable names, else ``./config.toml`` when present; with ``ASYNC_AMP_<SECTION>_<KEY>``
    environment overrides applied.

    The Amplitude keys come from ``AMP_API_KEY`` / ``AMP_SECRET_KEY`` (or the variables each
    ``[[projects]]`` table names), in the environment or ``./.env``, unless ``api_key`` and
    ``secret_key`` are given. ``environ`` replaces the process environment (and ``.env``).
    Raises ``ConfigError`` naming every problem at once.
    """
    env = config_load.process_environment() if environ is None else environ
    file, required = config_load.config_file(path, env)
    return config_load.load_config(
        file, api_key=api_key, secret_key=secret_key, environ=env, required=required
    )


def hour_span(start: Bound, end: Bound, now: datetime) -> tuple[datetime, datetime]:
    """``start`` and ``end`` (both required) as the first and last hour, checked for order."""
    first, last = hour_bounds(start, end, now)
    assert first is not None and last is not None
    return first, last


def _names(project: str | Sequence[str] | None) -> tuple[str, ...]:
    if project is None:
        return ()
    return (project,) if isinstance(project, str) else tuple(project)


async def extract(
    config: Config,
    *,
    start: Bound | None = None,
    end: Bound | None = None,
    project: str | Sequence[str] | None = None,
    force: bool = False,
    since_last: bool = False,
    shard: tuple[int, int] | None = None,
    on_hour: Callable[[HourResult], None] | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    run_id: str | None = None,
    stop: anyio.Event | None = None,
    on_start: Callable[[ExtractionRun], None] | None = None,
) -> ExtractResult:
    """Extract every hour from ``start`` to ``end`` (both inclusive, UTC), as ``async-amp
    extract`` does; returns what happened, hour by hour (``result.exit_code`` is the CLI's).

    ``project``: one name or several (default: every project of the config). ``since_last``:
    from the hour after the newest complete one (``start`` or ``[extract] start`` when none)
    up to the newest available hour. ``shard``: ``(k, n)``, the k-th of n slices of the range.
    ``on_hour`` is called as each hour ends (committed or failed). ``dry_run``: plan only
    (``result.projects[i].plan``), no request. ``now``: the current time (tests, replays).
    ``run_id``: the run's id (default: a new one). ``stop``: once set, hours in flight are
    abandoned without a manifest and the result says ``interrupted``. ``on_start`` is called
    with the run (its ``run_id``, ``secrets``, and, once planned, ``plans`` and ``result()``)
    before it opens the output: the CLI sets up its log output and progress line there.
    """
    # the run's modules (aiohttp, numpy, structlog) load with the first extraction
    from .extraction.run import ExtractionRun, RunRequest  # noqa: PLC0415
    from .logs import bound  # noqa: PLC0415

    moment = now or datetime.now(UTC)
    first, last = hour_bounds(
        start, end, moment, optional=since_last, hint=" (or since_last for incremental runs)"
    )
    request = RunRequest(
        first=first,
        last=last,
        now=moment,
        force=force,
        since_last=since_last,
        shard=shard,
        projects=_names(project),
        dry_run=dry_run,
    )
    run = ExtractionRun(config, request, on_hour=on_hour, run_id=run_id)
    if on_start is not None:
        on_start(run)
    interrupted = False
    with bound(run_id=run.run_id, secrets=run.secrets):  # closing the output logs too
        async with run:
            await run.plan()
            if not dry_run:
                interrupted = await _execute(run, stop)
    return run.result(interrupted=interrupted)


async def _execute(run: ExtractionRun, stop: anyio.Event | None) -> bool:
    """Fetch every planned hour, or until ``stop`` is set; whether it was."""
    if stop is None:
        await run.execute()
        return False
    stopped = stop.is_set()
    if stopped:
        return True
    try:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                nonlocal stopped
                await stop.wait()
                stopped = True
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await run.execute()
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise first_user_error(group) from None
    return stopped


@asynccontextmanager
async def reading_output(
    config: Config, projects: Sequence[str] | None = None
) -> AsyncIterator[Output]:
    """The configured output of ``projects`` (default: every project of the config), for
    reading only (no ``prepare()``, no marker written): its format is the one its roots
    record (a format given that differs is refused, ``ConfigError``); closed on the way out,
    whatever happens. A local ``[output] dir`` must exist."""
    if config.output.sink == "local" and not config.output.dir.is_dir():
        msg = (
            f"no output folder {config.output.dir}: nothing was extracted there; "
            "pass --output DIR or set [output] dir"
        )
        raise ConfigError(msg)
    environ = config.environ if config.environ is not None else config_load.process_environment()
    names = projects if projects is not None else [p.name for p in config.project_list()]
    output = await open_output(config, names, run_id=new_run_id("read"), environ=environ)
    try:
        yield output
    finally:
        with anyio.CancelScope(shield=True):
            await output.aclose()


@asynccontextmanager
async def reading_sink(
    config: Config, projects: Sequence[str] | None = None
) -> AsyncIterator[Sink]:
    """``reading_output``'s sink."""
    async with reading_output(config, projects) as output:
        yield output.sink


async def _per_project(
    config: Config,
    start: Bound,
    end: Bound,
    project: str | Sequence[str] | None,
    now: datetime | None,
    read: Callable[[Output, str, datetime, datetime, datetime], Awaitable[_T]],
) -> tuple[_T, ...]:
    """``read(output, project, first, last, now)`` for each selected project, in order."""
    moment = now or datetime.now(UTC)
    first, last = hour_span(start, end, moment)
    names = [p.name for p in select_projects(config, _names(project))]
    async with reading_output(config, names) as output:
        return tuple([await read(output, name, first, last, moment) for name in names])


async def status(
    config: Config,
    *,
    start: Bound,
    end: Bound,
    project: str | Sequence[str] | None = None,
    now: datetime | None = None,
) -> StatusResult:
    """Which hours from ``start`` to ``end`` are complete, empty, missing or not yet available,
    per project, from the manifests (as ``async-amp status``). Only reads."""
    lag = config.extract.availability_lag_hours

    async def read(
        output: Output, name: str, first: datetime, last: datetime, moment: datetime
    ) -> StatusReport:
        return await read_status(output.sink, name, first, last, now=moment, lag_hours=lag)

    return StatusResult(await _per_project(config, start, end, project, now, read))


async def verify(
    config: Config,
    *,
    start: Bound,
    end: Bound,
    project: str | Sequence[str] | None = None,
    concurrency: int = 4,
    now: datetime | None = None,
) -> VerifyResult:
    """Re-read every stored file from ``start`` to ``end`` and compare it with its manifest
    (as ``async-amp verify``); ``result.ok`` when everything matches. Only reads."""

    async def read(
        output: Output, name: str, first: datetime, last: datetime, _: datetime
    ) -> tuple[VerifyReport, ...]:
        from .merged.verify import verify_merged_ids  # noqa: PLC0415 - pyarrow only when used

        events = await output.format.verify(output.sink, name, first, last, concurrency=concurrency)
        merged = await verify_merged_ids(output, name, first, last, concurrency=concurrency)
        return (events,) if merged is None else (events, merged)

    reports = await _per_project(config, start, end, project, now, read)
    return VerifyResult(tuple(r for pair in reports for r in pair))


extract_sync = sync_twin(extract)
status_sync = sync_twin(status)
verify_sync = sync_twin(verify)
