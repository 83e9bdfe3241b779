"""Configuration: parsed and validated once, every problem reported in one message.

Precedence, highest first: CLI flag > environment (``ASYNC_AMP_<SECTION>_<KEY>``) >
``config.toml`` > default. Credentials come only from the environment or ``.env``.
"""

from __future__ import annotations

import base64
import difflib
import math
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from .errors import ConfigError, CredentialsError

__all__ = [
    "REGION_URLS",
    "AmplitudeConfig",
    "AzureConfig",
    "Config",
    "Credentials",
    "ExtractConfig",
    "OutputConfig",
    "ProjectConfig",
    "load_config",
    "load_credentials",
]

REGION_URLS = {
    "us": "https://amplitude.com",
    "eu": "https://analytics.eu.amplitude.com",
}
ENV_PREFIX = "ASYNC_AMP_"
# Not configuration keys: ASYNC_AMP_NOW pins "now" (tests, replays), ASYNC_AMP_MALLOPT=0 keeps
# glibc's default allocator thresholds.
PROCESS_KNOBS = frozenset({ENV_PREFIX + "NOW", ENV_PREFIX + "MALLOPT"})
_FLAG_NAMES = {"dir": "--output", "expected_pages_per_hour": "--expected-pages"}


@dataclass(frozen=True, slots=True)
class AmplitudeConfig:
    project: str = "website"
    region: str = "us"
    base_url: str | None = None

    @property
    def url(self) -> str:
        """The API host to call: ``base_url`` when set, else the region's host."""
        return (self.base_url or REGION_URLS[self.region]).rstrip("/")


@dataclass(frozen=True, slots=True)
class ExtractConfig:
    concurrency: int = 4
    max_attempts: int = 5
    expected_pages_per_hour: int = 0
    availability_lag_hours: int = 2
    read_timeout_s: float = 120.0
    connect_timeout_s: float = 30.0
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    window_hours: int | Literal["auto"] = 1
    total_concurrency: int = 0
    start: str | None = None
    max_member_bytes: int = 8 * 1024**3
    max_expansion_ratio: int = 200


@dataclass(frozen=True, slots=True)
class OutputConfig:
    sink: Literal["local", "azure"] = "local"
    dir: Path = Path("data")
    keep_gzip: bool = False
    fsync: bool = True
    log_dir: Path = Path("logs")


@dataclass(frozen=True, slots=True)
class AzureConfig:
    account_url: str | None = None
    container: str = "amplitude"
    prefix: str = "amplitude"
    create_container: bool = True
    block_size_mib: int = 8
    max_single_put_mib: int = 8
    retries: int = 3
    retry_backoff_s: float = 1.0
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ProjectConfig:
    """One Amplitude project: its output label, its host, and where its keys come from."""

    name: str
    region: str = "us"
    base_url: str | None = None
    api_key_env: str = "AMP_API_KEY"
    secret_key_env: str = "AMP_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
    concurrency: int | None = None

    @property
    def url(self) -> str:
        return (self.base_url or REGION_URLS[self.region]).rstrip("/")


@dataclass(frozen=True, slots=True)
class Config:
    amplitude: AmplitudeConfig = field(default_factory=AmplitudeConfig)
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    azure: AzureConfig = field(default_factory=AzureConfig)
    projects: tuple[ProjectConfig, ...] = ()
    source: Path | None = None

    def project_list(self) -> tuple[ProjectConfig, ...]:
        """``[[projects]]`` when given, else the single ``[amplitude]`` project."""
        if self.projects:
            return self.projects
        amp = self.amplitude
        return (ProjectConfig(name=amp.project, region=amp.region, base_url=amp.base_url),)


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str
    secret_key: str = field(repr=False)

    def __repr__(self) -> str:
        return "Credentials(api_key='***', secret_key='***')"

    @property
    def basic_token(self) -> str:
        """The HTTP Basic credential: base64 of ``key:secret`` (as secret as the keys)."""
        return base64.b64encode(f"{self.api_key}:{self.secret_key}".encode()).decode("ascii")

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in logs, errors or files: the keys and the token."""
        return tuple(s for s in (self.api_key, self.secret_key, self.basic_token) if s)


# --- the schema: every key, its parser and its check -------------------------------------------

Parser = Callable[[Any], Any]


def _int(minimum: int, maximum: int | None = None) -> Parser:
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

    return parse


def _float(minimum: float, *, strict: bool = False) -> Parser:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            msg = f"must be a number, not {value!r}"
            raise ValueError(msg)
        try:
            number = float(value)
        except ValueError:
            msg = f"must be a number, not {value!r}"
            raise ValueError(msg) from None
        if not math.isfinite(number) or number < minimum or (strict and number == minimum):
            msg = f"must be {'>' if strict else '>='} {minimum}, not {value!r}"
            raise ValueError(msg)
        return number

    return parse


def _window(value: Any) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        hours: int = _int(1, 24 * 365)(value)
    except ValueError:
        msg = f"must be a number of hours (1-8760) or 'auto', not {value!r}"
        raise ValueError(msg) from None
    return hours


def _env_name(value: Any) -> str:
    text = _text(value)
    if not all(c.isalnum() or c == "_" for c in text) or text[0].isdigit():
        msg = f"must be an environment variable name such as AMP_WEB_API_KEY, not {value!r}"
        raise ValueError(msg)
    return text


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
        return False
    msg = f"must be true or false, not {value!r}"
    raise ValueError(msg)


def _choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in choices:
            msg = f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}"
            raise ValueError(msg)
        return value.lower()

    return parse


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        msg = f"must be a non-empty string, not {value!r}"
        raise ValueError(msg)
    return value.strip()


def _project(value: Any) -> str:
    text = _text(value)
    if "/" in text or "\\" in text or text in (".", "..") or "\x00" in text:
        msg = f"must be a plain label usable as a folder name, not {value!r}"
        raise ValueError(msg)
    return text


def _url(value: Any, *, allow_path: bool = True) -> str:
    """An http(s) URL with a host, no credentials, query or fragment (never echoed if risky)."""
    text = _text(value)
    parts = urlsplit(text)
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
    return text.rstrip("/")


def _api_url(value: Any) -> str:
    return _url(value, allow_path=False)


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        value = str(value)
    return Path(_text(value)).expanduser()


def _container(value: Any) -> str:
    text = _text(value)
    ok = 3 <= len(text) <= 63 and all(c.islower() or c.isdigit() or c == "-" for c in text)
    if not ok or text.startswith("-") or text.endswith("-") or "--" in text:
        msg = f"must be 3-63 lowercase letters, digits and single dashes, not {value!r}"
        raise ValueError(msg)
    return text


def _prefix(value: Any) -> str:
    if not isinstance(value, str):
        msg = f"must be a string, not {value!r}"
        raise ValueError(msg)
    text = value.strip().strip("/")
    if ".." in text.split("/") or "\\" in text:
        msg = f"must be a plain blob path prefix, not {value!r}"
        raise ValueError(msg)
    return text


SCHEMA: dict[str, dict[str, Parser]] = {
    "amplitude": {"project": _project, "region": _choice(*REGION_URLS), "base_url": _api_url},
    "extract": {
        "concurrency": _int(1, 64),
        "max_attempts": _int(1, 100),
        "expected_pages_per_hour": _int(0, 10_000),
        "availability_lag_hours": _int(0, 24 * 30),
        "read_timeout_s": _float(0, strict=True),
        "connect_timeout_s": _float(0, strict=True),
        "backoff_base_s": _float(0),
        "backoff_max_s": _float(0),
        "window_hours": _window,
        "total_concurrency": _int(0, 256),
        "start": _text,
        "max_member_bytes": _int(1),
        "max_expansion_ratio": _int(2),
    },
    "output": {
        "sink": _choice("local", "azure"),
        "dir": _path,
        "keep_gzip": _bool,
        "fsync": _bool,
        "log_dir": _path,
    },
    "azure": {
        "account_url": _url,
        "container": _container,
        "prefix": _prefix,
        "create_container": _bool,
        "block_size_mib": _int(1, 256),
        "max_single_put_mib": _int(1, 5000),
        "retries": _int(0, 10),
        "retry_backoff_s": _float(0),
        "connect_timeout_s": _float(0, strict=True),
        "read_timeout_s": _float(0, strict=True),
    },
}
PROJECT_SCHEMA: dict[str, Parser] = {
    "name": _project,
    "region": _choice(*REGION_URLS),
    "base_url": _api_url,
    "api_key_env": _env_name,
    "secret_key_env": _env_name,
    "concurrency": _int(1, 64),
}


_SECTION_TYPES: dict[str, type[Any]] = {
    "amplitude": AmplitudeConfig,
    "extract": ExtractConfig,
    "output": OutputConfig,
    "azure": AzureConfig,
}


def _suggest(word: str, options: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def load_config(
    path: Path | None,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
    required: bool = False,
) -> Config:
    """Read ``path`` (if it exists), apply environment and CLI overrides, validate everything.

    ``overrides`` are CLI values as ``{"extract": {"concurrency": 8}}``; ``None`` values are
    ignored. Raises one ``ConfigError`` listing every problem.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    raw: dict[str, Any] = {}
    where = str(path) if path else "config"
    if path is not None:
        if path.is_file():
            try:
                raw = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                msg = f"{path}: not valid TOML: {exc}"
                raise ConfigError(msg) from None
            except (OSError, UnicodeDecodeError) as exc:
                msg = f"{path}: cannot read it: {exc}"
                raise ConfigError(msg) from None
        elif required or path.exists():
            msg = f"{path}: no such config file; pass --config PATH or create it (see config.toml)"
            raise ConfigError(msg)

    values: dict[str, dict[str, tuple[Any, str]]] = {s: {} for s in SCHEMA}
    projects = _parse_projects(raw.pop("projects", []), problems)
    for section, body in raw.items():
        if section not in SCHEMA:
            problems.append(f"unknown section [{section}]{_suggest(section, SCHEMA)}")
            continue
        if not isinstance(body, dict):
            problems.append(f"[{section}] must be a table")
            continue
        for key, value in body.items():
            if key not in SCHEMA[section]:
                problems.append(f"unknown key [{section}] {key}{_suggest(key, SCHEMA[section])}")
                continue
            values[section][key] = (value, f"[{section}] {key}")
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in PROCESS_KNOBS:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        for section, keys in SCHEMA.items():
            if rest.startswith(section + "_") and rest[len(section) + 1 :] in keys:
                values[section][rest[len(section) + 1 :]] = (value, name)
                break
        else:
            problems.append(f"unknown environment variable {name}")
    for section, body in (overrides or {}).items():
        for key, value in body.items():
            if value is not None:
                flag = _FLAG_NAMES.get(key, "--" + key.replace("_", "-"))
                values[section][key] = (value, flag)

    sections: dict[str, Any] = {}
    for section, keys in SCHEMA.items():
        parsed: dict[str, Any] = {}
        for key, (value, origin) in values[section].items():
            try:
                parsed[key] = keys[key](value)
            except ValueError as exc:
                problems.append(f"{origin} {exc}")
        sections[section] = _SECTION_TYPES[section](**parsed)

    extract: ExtractConfig = sections["extract"]
    if extract.backoff_max_s < extract.backoff_base_s:
        problems.append("[extract] backoff_max_s must be >= backoff_base_s")
    output: OutputConfig = sections["output"]
    azure: AzureConfig = sections["azure"]
    if (
        output.sink == "azure"
        and not azure.account_url
        and not env.get("AZURE_STORAGE_CONNECTION_STRING")
    ):
        problems.append(
            "sink 'azure' needs [azure] account_url (or AZURE_STORAGE_CONNECTION_STRING)"
        )
    if problems:
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        msg = f"{where}: {count}: " + "; ".join(problems)
        raise ConfigError(msg)
    return Config(source=path, projects=projects, **sections)


def _parse_projects(tables: Any, problems: list[str]) -> tuple[ProjectConfig, ...]:
    """``[[projects]]``: each needs a name and the names of the variables holding its keys."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append("projects must be written as [[projects]] tables")
        return ()
    found: list[ProjectConfig] = []
    for index, table in enumerate(tables, start=1):
        label = f"[[projects]] #{index}"
        parsed: dict[str, Any] = {}
        for key, value in table.items():
            if key not in PROJECT_SCHEMA:
                problems.append(f"unknown key {label} {key}{_suggest(key, PROJECT_SCHEMA)}")
                continue
            try:
                parsed[key] = PROJECT_SCHEMA[key](value)
            except ValueError as exc:
                problems.append(f"{label} {key} {exc}")
        missing = [k for k in ("name", "api_key_env", "secret_key_env") if k not in table]
        if missing:
            problems.append(f"{label} needs {', '.join(missing)}")
            continue
        if "name" in parsed:
            found.append(ProjectConfig(**parsed))
    names = [p.name for p in found]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"[[projects]] name {name!r} is used twice")
    return tuple(found)


def load_credentials(
    environ: Mapping[str, str] | None = None, project: ProjectConfig | None = None
) -> Credentials:
    """A project's keys, from the environment variables it names (default ``AMP_API_KEY`` and
    ``AMP_SECRET_KEY``), read from the environment or ``.env``."""
    env = os.environ if environ is None else environ
    key_env = project.api_key_env if project else "AMP_API_KEY"
    secret_env = project.secret_key_env if project else "AMP_SECRET_KEY"
    api_key = env.get(key_env, "").strip()
    secret_key = env.get(secret_env, "").strip()
    missing = [n for n, v in ((key_env, api_key), (secret_env, secret_key)) if not v]
    if missing:
        whose = f" for project {project.name!r}" if project else ""
        msg = (
            f"{' and '.join(missing)} not set{whose}: export them or put them in a .env file "
            "(Amplitude > Settings > Projects > the project > General)"
        )
        raise CredentialsError(msg)
    return Credentials(api_key=api_key, secret_key=secret_key)
