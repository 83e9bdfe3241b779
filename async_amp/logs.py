"""The library's log events, sent through the standard ``logging`` module (logger ``async_amp``).

Every module logs with ``from .logs import log`` and ``log.info("hour.done", hour=..., ...)``.
Those events never depend on structlog's global configuration (an unconfigured structlog
prints to stdout): ``log`` is bound once, here, to ``logging.getLogger("async_amp")``, and each
event becomes one ``logging.LogRecord``. Its message is the event name followed by its fields
(``hour.done hour=2026-11-01T05:00:00Z status=complete ...``), so a plain ``logging`` formatter
(an Airflow or Dagster task log) shows them; ``record.event`` is the bare name and the other
attributes are the fields (``record.hour``, ``record.run_id``, ...). Whoever embeds async-amp
decides where records go with ordinary ``logging`` handlers, or lets them go nowhere (the
package only adds a ``NullHandler``). The CLI renders them as JSON or console lines
(``async_amp.cli.output``), with the bare name as the event.

Fields bound with :func:`bound` (the run id, the project) are merged into every event logged
inside that block, in the same task or in tasks it starts; known secrets are masked in every
field before the record is made.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import structlog

from .scrub import scrub

__all__ = ["LOGGER_NAME", "bound", "log"]

LOGGER_NAME = "async_amp"
_secrets: ContextVar[tuple[str, ...]] = ContextVar("async_amp_secrets", default=())

logging.getLogger(LOGGER_NAME).addHandler(logging.NullHandler())


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    secrets = _secrets.get()
    if secrets:
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = scrub(value, secrets)
    return event


_STRUCTLOG = str(Path(structlog.__file__).parent) + os.sep


def _caller(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Make the record name the module that logged (its ``pathname``, ``lineno``,
    ``funcName``), not structlog: ``stacklevel`` counts from the structlog frame that calls
    the ``logging`` method (the caller of the function running this chain) past structlog's
    own frames."""
    frame = sys._getframe(2)  # structlog's frame that calls the logging method: level 1
    level = 1
    while frame.f_code.co_filename.startswith(_STRUCTLOG) and frame.f_back is not None:
        frame = frame.f_back
        level += 1
    event["stacklevel"] = level
    return event


_LOGGING_KWARGS = ("exc_info", "stack_info", "stacklevel")


def _field(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() or c in "='\"" for c in text) else text


def _to_record(_: Any, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """The ``logging`` call's arguments: the message is the event and its fields rendered as
    ``key=value``; ``extra`` keeps each field (and the bare name as ``event``) as attributes."""
    name = str(event.pop("event"))
    kwargs = {k: event.pop(k) for k in _LOGGING_KWARGS if k in event}
    fields = " ".join(f"{key}={_field(value)}" for key, value in event.items())
    message = f"{name} {fields}" if fields else name
    return {"msg": message, "extra": {**event, "event": name}, **kwargs}


log: structlog.stdlib.BoundLogger = structlog.wrap_logger(
    logging.getLogger(LOGGER_NAME),
    processors=[
        structlog.stdlib.filter_by_level,
        structlog.contextvars.merge_contextvars,
        _redact,
        _caller,
        _to_record,
    ],
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)


@contextmanager
def bound(*, secrets: Iterable[str] = (), **fields: Any) -> Iterator[None]:
    """Within the block, every event carries ``fields`` and has ``secrets`` masked."""
    token = _secrets.set(tuple(dict.fromkeys([*_secrets.get(), *secrets])))
    try:
        with structlog.contextvars.bound_contextvars(**fields):
            yield
    finally:
        _secrets.reset(token)
