"""The library's log events, sent through the standard ``logging`` module (logger ``async_amp``).

Every module logs with ``from .logs import log`` and ``log.info("hour.done", hour=..., ...)``.
Those events never depend on structlog's global configuration (an unconfigured structlog
prints to stdout): ``log`` is bound once, here, to ``logging.getLogger("async_amp")``, and each
event becomes one ``logging.LogRecord`` whose message is the event name and whose attributes
are its fields (``record.hour``, ``record.run_id``, ...). Whoever embeds async-amp decides
where records go with ordinary ``logging`` handlers, or lets them go nowhere (the package only
adds a ``NullHandler``). The CLI renders them as JSON or console lines (``async_amp.cli.output``).

Fields bound with :func:`bound` (the run id, the project) are merged into every event logged
inside that block, in the same task or in tasks it starts; known secrets are masked in every
field before the record is made.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
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


log: structlog.stdlib.BoundLogger = structlog.wrap_logger(
    logging.getLogger(LOGGER_NAME),
    processors=[
        structlog.stdlib.filter_by_level,
        structlog.contextvars.merge_contextvars,
        _redact,
        structlog.stdlib.render_to_log_kwargs,
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
