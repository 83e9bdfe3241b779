"""``open_output``: the store ``[output] sink`` names x the format its projects' roots record.

For each selected project the format comes from, first found wins: the marker at its root
(``marker.py``); the files of an output made before markers existed (``_delta_log/``,
``*.parquet``, ``*.json.gz``, ``*.json`` beside manifests); nothing (a new output). Then:

- a format given (``--format``, ``[output] format``) that differs from what a root holds is
  refused with one line (``ConfigError``: exit 2) naming what is there and how to write
  elsewhere: an output never mixes formats;
- no format given: the recorded one, else ``ndjson``.

The ``Output`` carries the config with that format filled in, the store, and the format's
sink over it. ``record()`` (a run that writes, after ``prepare()``, before its first commit)
writes the marker of every project root that has none: a new output's, or the recognised
format of an older one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from ..config import Config
from ..errors import ConfigError
from ..hours import new_run_id
from .marker import LAYOUT_VERSION, MARKER_NAME, OutputMarker, marker_path
from .registry import Format, FormatContext, format_for, format_names, recognise_format
from .stores import make_store
from .stores.base import Sink, Store

__all__ = ["RECOGNISE_SAMPLE", "Output", "open_output", "opened_config", "resolve_output"]

RECOGNISE_SAMPLE = 1000  # paths listed under a project's root to recognise an older output


@dataclass(frozen=True, slots=True)
class Held:
    """What one project's root holds, and how that is known."""

    format: str | None
    marker: OutputMarker | None = None

    @property
    def how(self) -> str:
        return f"recorded in {MARKER_NAME}" if self.marker else "recognised from its files"


@dataclass(slots=True)
class Output:
    """One output: a store, the format of its projects, and the sink writing that format."""

    config: Config  # [output] format is the output's format
    store: Store
    format: Format
    sink: Sink
    held: dict[str, Held] = field(default_factory=dict)

    def describe(self) -> str:
        return self.sink.describe()

    async def record(self) -> None:
        """Write the marker of each project root that has none (once; never rewritten)."""
        for project, held in self.held.items():
            if held.marker is not None:
                continue
            marker = OutputMarker.new(self.format.name, project, recognised=held.format is not None)
            path = marker_path(project)
            if await self.store.read_object(path) is None:  # another run may have just
                await self.store.put_object(path, marker.dumps())
            self.held[project] = await _held(self.store, project)
            _check(self.store, project, self.held[project], self.format.name, given=True)

    async def aclose(self) -> None:
        await self.sink.aclose()


async def _held(store: Store, project: str) -> Held:
    data = await store.read_object(marker_path(project))
    if data is not None:
        try:
            marker = OutputMarker.loads(data)
        except ValueError as exc:
            where = f"{store.describe()}/{marker_path(project)}"
            msg = f"{where} is unreadable ({exc}): delete it to have it recognised again"
            raise ConfigError(msg) from None
        return Held(marker.format, marker)
    names = await store.list_under(project, limit=RECOGNISE_SAMPLE)
    return Held(recognise_format(names))


def _check(store: Store, project: str, held: Held, wanted: str, *, given: bool) -> None:
    """One line when ``project``'s root cannot be written or read as ``wanted``."""
    where = f"{store.describe()}/{project}"
    if held.marker is not None and held.marker.layout > LAYOUT_VERSION:
        msg = (
            f"{where} was written by {held.marker.created_by or 'a newer async-amp'} in "
            f"layout {held.marker.layout}; this async-amp reads up to layout {LAYOUT_VERSION}: "
            "upgrade async-amp"
        )
        raise ConfigError(msg)
    if held.format is not None and held.format not in format_names():
        msg = (
            f"{where} holds {held.format!r} output ({held.how}), a format this async-amp does "
            f"not know (it knows {', '.join(format_names())}): upgrade async-amp or register it"
        )
        raise ConfigError(msg)
    if given and held.format is not None and held.format != wanted:
        msg = (
            f"{where} holds {held.format} output ({held.how}) and format {wanted!r} would mix "
            f"formats there: write {wanted} to {store.elsewhere}, or leave the format out to "
            f"use {held.format}"
        )
        raise ConfigError(msg)


async def resolve_output(
    config: Config,
    store: Store,
    projects: Sequence[str],
    *,
    run_id: str,
    environ: Mapping[str, str],
) -> Output:
    """The output of ``projects`` in ``store`` (reads each root's marker or files; see the
    module docstring). The store is not closed when this raises: the caller owns it."""
    held = {project: await _held(store, project) for project in projects}
    named = config.output.format is not None or config.output.keep_gzip  # by flag, env or file
    given = config.output.data_format if named else None
    if given is not None:
        format_for(given)  # one line when no format has that name
    for project, found in held.items():
        _check(store, project, found, given or "", given=given is not None)
    kinds = sorted({h.format for h in held.values() if h.format is not None})
    if given is None and len(kinds) > 1:
        shown = ", ".join(f"{p} holds {h.format}" for p, h in held.items() if h.format)
        msg = f"the projects' outputs differ ({shown}): pick one with --project NAME"
        raise ConfigError(msg)
    name = given or (kinds[0] if kinds else config.output.data_format)
    resolved = replace(config, output=replace(config.output, format=name, keep_gzip=False))
    fmt = format_for(name)
    sink = fmt.wrap(store, FormatContext(resolved, run_id, environ, store.spool_dir))
    return Output(resolved, store, fmt, sink, held)


async def open_output(
    config: Config, projects: Sequence[str], *, run_id: str, environ: Mapping[str, str]
) -> Output:
    """``resolve_output`` over the store ``[output] sink`` names (closed when this raises)."""
    store = make_store(config, run_id=run_id, environ=environ)
    try:
        return await resolve_output(config, store, projects, run_id=run_id, environ=environ)
    except BaseException:
        await store.aclose()
        raise


async def opened_config(
    config: Config, projects: Sequence[str], *, environ: Mapping[str, str], record: bool = False
) -> Config:
    """``config`` with the format its projects' roots hold (checked as ``open_output`` does);
    ``record``: write the marker of roots that have none (an older output's files)."""
    output = await open_output(config, projects, run_id=new_run_id("open"), environ=environ)
    try:
        if record and any(h.format is not None for h in output.held.values()):
            await output.record()
    finally:
        await output.aclose()
    return output.config
