"""Value checks for configuration keys: each turns a raw value (TOML, environment text or a
CLI flag) into a typed one, or raises ``ValueError`` saying what is wrong; each also says, in
``kind``, what it accepts (the "type" column of ``docs/configuration.md``).

The safe-name checks (a project label that is a plain folder name, a blob prefix without
``..``) are the ones the sinks use too, so a name passes or fails the same way everywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "Check",
    "api_url",
    "boolean",
    "bucket",
    "choice",
    "container",
    "duration",
    "env_name",
    "format_name",
    "integer",
    "is_plain_name",
    "names",
    "number",
    "path",
    "prefix",
    "project_label",
    "text",
    "time_zone",
    "url",
    "window",
]


@dataclass(frozen=True, slots=True)
class Check:
    """A value check and how the docs describe what it accepts."""

    parse: Callable[[Any], Any]
    kind: str

    def __call__(self, value: Any) -> Any:
        return self.parse(value)


def integer(minimum: int, maximum: int | None = None) -> Check:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            msg = f"must be a whole number, not {value!r}"
            raise ValueError(msg)
        try:
            number = int(value)
        except ValueError:
            msg = f"must be a whole number, not {value!r}"
            raise ValueError(msg) from None
        if number < minimum or (maximum is not None and number > maximum):
            bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
            msg = f"must be {bound}, not {number}"
            raise ValueError(msg)
        return number

    kind = f"integer {minimum}-{maximum}" if maximum is not None else f"integer >= {minimum}"
    return Check(parse, kind)


def number(minimum: float, *, strict: bool = False) -> Check:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            msg = f"must be a number, not {value!r}"
            raise ValueError(msg)
        try:
            result = float(value)
        except ValueError:
            msg = f"must be a number, not {value!r}"
            raise ValueError(msg) from None
        if not math.isfinite(result) or result < minimum or (strict and result == minimum):
            msg = f"must be {'>' if strict else '>='} {minimum}, not {value!r}"
            raise ValueError(msg)
        return result

    return Check(parse, f"number {'>' if strict else '>='} {minimum:g}")


def _window(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        hours: int = integer(1, 24 * 365)(value)
    except ValueError:
        msg = f"must be a number of hours (1-8760) or 'auto', not {value!r}"
        raise ValueError(msg) from None
    return hours


window = Check(_window, 'integer 1-8760 or `"auto"`')

_DURATION = re.compile(r"^\s*(\d{1,5})\s*([hdw])\s*$", re.IGNORECASE)
_DURATION_HOURS = {"h": 1, "d": 24, "w": 24 * 7}


def _duration(value: Any) -> timedelta:
    """``"48h"``, ``"2d"``, ``"1w"``: whole hours, days or weeks; ``0`` or ``"off"``: none."""
    if isinstance(value, timedelta):
        return value
    if value in (0, "0", "off", ""):
        return timedelta(0)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        msg = f'must be a duration such as "48h", "7d" or "1w" (or 0 for none), not {value!r}'
        raise ValueError(msg)
    hours = int(match[1]) * _DURATION_HOURS[match[2].lower()]
    if hours > 24 * 400:
        msg = f"must be at most 400 days, not {value!r}"
        raise ValueError(msg)
    return timedelta(hours=hours)


duration = Check(_duration, 'duration (`"48h"`, `"7d"`, `"1w"`) or `0`')


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    msg = f"must be true or false, not {value!r}"
    raise ValueError(msg)


boolean = Check(_boolean, "boolean")


def choice(*choices: str) -> Check:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            msg = f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}"
            raise ValueError(msg)
        return value.lower()

    return Check(parse, " or ".join(f'`"{c}"`' for c in choices))


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        msg = f"must be a non-empty string, not {value!r}"
        raise ValueError(msg)
    return value.strip()


text = Check(_text, "string")


def _names(value: Any) -> tuple[str, ...]:
    """A list of names: a TOML array of strings, or comma-separated text (environment)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        msg = f'must be a list of names such as ["Page Viewed"], not {value!r}'
        raise ValueError(msg)
    names = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    if not names:
        msg = "must name at least one"
        raise ValueError(msg)
    return names


names = Check(_names, "list of strings (comma-separated in the environment)")


def _time_zone(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415 - only when set

    name = _text(value)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f'{name!r} is not an IANA time zone (e.g. "Europe/Berlin", "America/New_York")'
        raise ValueError(msg) from None
    return name


time_zone = Check(_time_zone, 'IANA time zone, e.g. `"Europe/Berlin"`')


def _env_name(value: Any) -> str:
    name = _text(value)
    if not all(c.isalnum() or c == "_" for c in name) or name[0].isdigit():
        msg = f"must be an environment variable name such as AMP_WEB_API_KEY, not {value!r}"
        raise ValueError(msg)
    return name


env_name = Check(_env_name, "variable name")


def is_plain_name(name: str) -> bool:
    """A single path segment: no ``/`` or ``\\``, not ``.`` or ``..``, no NUL, not empty."""
    return bool(name) and not ({"/", "\\", "\x00"} & set(name)) and name not in (".", "..")


def _project_label(value: Any) -> str:
    label = _text(value)
    if not is_plain_name(label):
        msg = f"must be a plain label usable as a folder name, not {value!r}"
        raise ValueError(msg)
    return label


project_label = Check(_project_label, "string")


def _url(value: Any, *, allow_path: bool = True) -> str:
    """An http(s) URL with a host, no credentials, query or fragment (never echoed if risky)."""
    given = _text(value)
    parts = urlsplit(given)
    if "@" in parts.netloc or parts.query or parts.fragment:
        msg = (
            "must be scheme://host[:port] with no credentials, query string or fragment "
            "(keys go in AMP_API_KEY / AMP_SECRET_KEY or AZURE_STORAGE_* variables)"
        )
        raise ValueError(msg)
    if parts.scheme not in ("http", "https"):
        msg = f"must start with http:// or https://, not {value!r}"
        raise ValueError(msg)
    try:
        host = parts.hostname
        _ = parts.port
    except ValueError:
        host = None
    if not host:
        msg = f"must name a host, such as https://amplitude.com, not {value!r}"
        raise ValueError(msg)
    if not allow_path and parts.path.strip("/"):
        msg = (
            f"must be scheme://host[:port] without a path, not {value!r} "
            "(async-amp adds /api/2/export itself)"
        )
        raise ValueError(msg)
    return given.rstrip("/")


url = Check(_url, "URL")
api_url = Check(lambda value: _url(value, allow_path=False), "URL")


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        value = str(value)
    return Path(_text(value)).expanduser()


path = Check(_path, "path")


def _container(value: Any) -> str:
    name = _text(value)
    ok = 3 <= len(name) <= 63 and all(c.islower() or c.isdigit() or c == "-" for c in name)
    if not ok or name.startswith("-") or name.endswith("-") or "--" in name:
        msg = f"must be 3-63 lowercase letters, digits and single dashes, not {value!r}"
        raise ValueError(msg)
    return name


container = Check(_container, "string")


def _bucket(value: Any) -> str:
    name = _text(value)
    ok = 3 <= len(name) <= 63 and all(c.islower() or c.isdigit() or c in "-." for c in name)
    if not ok or not name[0].isalnum() or not name[-1].isalnum() or ".." in name:
        msg = (
            "must be an S3 bucket name (3-63 lowercase letters, digits, dots and dashes), "
            f"not {value!r}"
        )
        raise ValueError(msg)
    return name


bucket = Check(_bucket, "string")


def _prefix(value: Any) -> str:
    if not isinstance(value, str):
        msg = f"must be a string, not {value!r}"
        raise ValueError(msg)
    cleaned = value.strip().strip("/")
    if ".." in cleaned.split("/") or "\\" in cleaned:
        msg = f"must be a plain blob path prefix, not {value!r}"
        raise ValueError(msg)
    return cleaned


prefix = Check(_prefix, "string")


def format_name(known: Sequence[str]) -> Check:
    """An output format's name: ``known`` ones, or one a program registered (checked against
    ``async_amp.output.registry`` when the output is opened, which knows them all)."""

    def parse(value: Any) -> str:
        if not isinstance(value, str) or not value.strip().replace("_", "").isalnum():
            msg = f"must be a format's name such as {', '.join(map(repr, known))}, not {value!r}"
            raise ValueError(msg)
        return value.strip().lower()

    return Check(parse, " or ".join(f'`"{name}"`' for name in known))
