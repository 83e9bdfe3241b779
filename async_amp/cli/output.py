"""The CLI's log output: JSON lines for machines, a readable console renderer for people.

The library hands its events to the standard ``logging`` logger ``async_amp`` (see
``async_amp.logs``); the CLI, and only the CLI, attaches handlers to it: stderr (console on a
TTY, else JSON) and a JSON file per run. Every line carries a timestamp, the level, the event
name and the run id; per-hour lines add the hour, attempt, status, bytes, events and duration.
Known secrets are masked in every line.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import ConfigError
from ..scrub import scrub

if TYPE_CHECKING:
    import structlog

__all__ = [
    "EXIT_SIGNAL",
    "configure_logging",
    "progress_bar",
    "reattach_stderr",
    "shutdown_logging",
]

EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}
_handlers: list[logging.Handler] = []


def _redactor(secrets: Iterable[str]) -> structlog.types.Processor:
    hidden = tuple(secrets)

    def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str):
                event[key] = scrub(value, hidden)
        return event

    return redact


def configure_logging(
    *,
    fmt: Literal["json", "console"] | None,
    log_file: Path | None,
    secrets: Iterable[str] = (),
    level: int = logging.INFO,
    quiet: bool = False,
) -> None:
    """Render the ``async_amp`` logger's records on stderr (console on a TTY, else JSON) and
    as JSON lines in ``log_file``."""
    import structlog  # noqa: PLC0415 - only a command that logs loads it (and rich with it)

    from ..logs import LOGGER_NAME  # noqa: PLC0415

    shutdown_logging()
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.types.Processor] = [
        structlog.stdlib.ExtraAdder(),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redactor(secrets),
    ]
    json_formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        foreign_pre_chain=shared,
    )
    console_formatter = structlog.stdlib.ProcessorFormatter(
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
        foreign_pre_chain=shared,
    )
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(json_formatter if fmt == "json" else console_formatter)
    stream.setLevel(logging.WARNING if quiet else level)
    _handlers.append(stream)
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            stream.close()
            _handlers.clear()
            msg = (
                f"cannot write the log file {log_file} ({exc.strerror or exc}): "
                "pass --log-file PATH or set [output] log_dir"
            )
            raise ConfigError(msg) from None
        file_handler.setFormatter(json_formatter)
        _handlers.append(file_handler)
    logger = logging.getLogger(LOGGER_NAME)  # touched only once nothing can fail
    logger.setLevel(level)
    logger.propagate = False
    for handler in _handlers:
        logger.addHandler(handler)
    # The Azure SDK logs every HTTP request at INFO (with URLs): keep only its warnings.
    logging.getLogger("azure").setLevel(logging.WARNING)


def shutdown_logging() -> None:
    """Detach and close the handlers of a previous ``configure_logging``."""
    if not _handlers:  # nothing configured: the logger is as it was
        return
    from ..logs import LOGGER_NAME  # noqa: PLC0415

    logger = logging.getLogger(LOGGER_NAME)
    for handler in _handlers:
        logger.removeHandler(handler)
        handler.close()
    _handlers.clear()
    logger.setLevel(logging.NOTSET)
    logger.propagate = True


def reattach_stderr() -> None:
    """Point the stderr handler at the current ``sys.stderr`` (a live progress display swaps it
    for a proxy that keeps log lines from tearing the progress bar)."""
    for handler in _handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setStream(sys.stderr)


def progress_bar(label: str) -> Any:
    """A transient rich progress bar on stderr: ``label``, bar, n/total, a ``detail`` field,
    elapsed time and ETA (rich loads only when a terminal wants one)."""
    from rich.console import Console  # noqa: PLC0415 - only on a terminal
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
