"""structlog set-up: JSON lines for machines, a readable console renderer for people.

Every line carries a timestamp, the level, the event name and the run id (bound with
contextvars); per-hour lines add the hour, attempt, status, bytes, events and duration. Every
run also writes its JSON lines to a file. Known secrets are masked in every line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any, Literal

import structlog

from .errors import ConfigError

__all__ = ["configure_logging", "reattach_stderr", "shutdown_logging"]

LOGGER_NAME = "async_amp"
_handlers: list[logging.Handler] = []


def _redactor(secrets: Iterable[str]) -> structlog.types.Processor:
    # very short values would mangle ordinary words ("gzip data i*** corrupt"); real keys are long
    hidden = tuple(s for s in secrets if len(s) >= 4)

    def redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if hidden:
            for key, value in event.items():
                if isinstance(value, str):
                    clean = value
                    for secret in hidden:
                        clean = clean.replace(secret, "***")
                    event[key] = clean
        return event

    return redact


def configure_logging(
    *,
    fmt: Literal["json", "console"] | None,
    log_file: Path | None,
    run_id: str,
    secrets: Iterable[str] = (),
    level: int = logging.INFO,
    quiet: bool = False,
) -> None:
    """Send structlog events to stderr (console on a TTY, else JSON) and to ``log_file``."""
    shutdown_logging()
    if fmt is None:
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redactor(secrets),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=False,
    )
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
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(level)
    logger.propagate = False
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
    for handler in _handlers:
        logger.addHandler(handler)
    # The Azure SDK logs every HTTP request at INFO (with URLs): keep only its warnings.
    logging.getLogger("azure").setLevel(logging.WARNING)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(run_id=run_id)


def shutdown_logging() -> None:
    """Detach and close the handlers of a previous ``configure_logging``."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in _handlers:
        logger.removeHandler(handler)
        handler.close()
    _handlers.clear()


def reattach_stderr() -> None:
    """Point the stderr handler at the current ``sys.stderr`` (a live progress display swaps it
    for a proxy that keeps log lines from tearing the progress bar)."""
    for handler in _handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setStream(sys.stderr)
