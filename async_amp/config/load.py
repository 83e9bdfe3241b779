"""Reading a configuration: ``config.toml``, the environment and explicit overrides, checked
against the declaration in ``async_amp.config``; every problem is reported in one message.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from ..errors import ConfigError, CredentialsError
from ..output.registry import format_names
from . import Config, Credentials, OutputConfig, ProjectConfig, keys_of, sections

__all__ = [
    "CONFIG_VARIABLE",
    "ENV_PREFIX",
    "PROCESS_KNOBS",
    "config_file",
    "format_problems",
    "load_config",
    "load_credentials",
    "process_environment",
]

ENV_PREFIX = "ASYNC_AMP_"
# Names the config file when no path is given (the CLI's --config, the API's path argument).
CONFIG_VARIABLE = ENV_PREFIX + "CONFIG"
# Not configuration keys: ASYNC_AMP_NOW pins "now" (tests, replays), ASYNC_AMP_MALLOPT=0 keeps
# glibc's default allocator thresholds, ASYNC_AMP_CONFIG names the file.
PROCESS_KNOBS = frozenset({ENV_PREFIX + "NOW", ENV_PREFIX + "MALLOPT", CONFIG_VARIABLE})


def process_environment() -> dict[str, str]:
    """The process environment over ``./.env`` (the environment wins)."""
    merged = {k: v for k, v in dotenv_values(".env").items() if v is not None}
    merged.update(os.environ)
    return merged


def config_file(path: str | Path | None, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """Which config file to read, and whether it must exist: ``path`` when given (``--config``,
    the API's argument), else the file ``ASYNC_AMP_CONFIG`` names, else ``./config.toml`` when
    present. Every entry point (the CLI, the API, the examples) finds its file this way."""
    if path is not None:
        return Path(path), True
    named = environ.get(CONFIG_VARIABLE, "").strip()
    if not named:
        return Path("config.toml"), False
    file = Path(named).expanduser()
    if not file.is_file():
        msg = f"{CONFIG_VARIABLE}={named}: no such config file; point it at one or unset it"
        raise ConfigError(msg)
    return file, True


def _suggest(word: str, options: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _read_toml(path: Path | None, *, required: bool) -> dict[str, Any]:
    if path is None:
        return {}
    if path.is_file():
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            msg = f"{path}: not valid TOML: {exc}"
            raise ConfigError(msg) from None
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"{path}: cannot read it: {exc}"
            raise ConfigError(msg) from None
    if required or path.exists():
        msg = f"{path}: no such config file; pass --config PATH or create it (see config.toml)"
        raise ConfigError(msg)
    return {}


def load_config(
    path: str | Path | None = None,
    *,
    api_key: str | None = None,
    secret_key: str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
    required: bool = False,
) -> Config:
    """Read ``path`` (if it exists), apply environment and explicit overrides, check everything.

    ``path``: the TOML file (``None``: none). ``api_key`` and ``secret_key``: the Amplitude
    keys, instead of ``AMP_API_KEY`` / ``AMP_SECRET_KEY``. ``overrides`` are values as
    ``{"extract": {"concurrency": 8}}`` (CLI flags; ``None`` values are ignored). ``environ``:
    the environment to read (default: the process environment over ``./.env``). ``required``:
    a missing file is an error. Raises one ``ConfigError`` listing every problem.
    """
    env = process_environment() if environ is None else environ
    file = Path(path) if path is not None else None
    raw = _read_toml(file, required=required)
    schema = {name: keys_of(cls) for name, cls in sections().items()}
    problems: list[str] = []
    values: dict[str, dict[str, tuple[Any, str]]] = {s: {} for s in schema}
    projects = _parse_projects(raw.pop("projects", []), problems)
    for section, body in raw.items():
        if section not in schema:
            problems.append(f"unknown section [{section}]{_suggest(section, schema)}")
            continue
        if not isinstance(body, dict):
            problems.append(f"[{section}] must be a table")
            continue
        for name, value in body.items():
            if name not in schema[section]:
                problems.append(f"unknown key [{section}] {name}{_suggest(name, schema[section])}")
                continue
            values[section][name] = (value, f"[{section}] {name}")
    for variable, value in env.items():
        if not variable.startswith(ENV_PREFIX) or variable in PROCESS_KNOBS:
            continue
        rest = variable[len(ENV_PREFIX) :].lower()
        for section, keys in schema.items():
            if rest.startswith(section + "_") and rest[len(section) + 1 :] in keys:
                values[section][rest[len(section) + 1 :]] = (value, variable)
                break
        else:
            problems.append(f"unknown environment variable {variable}")
    for section, body in (overrides or {}).items():
        for name, value in body.items():
            if value is not None:
                flag = schema[section][name].flag or "--" + name.replace("_", "-")
                values[section][name] = (value, flag)

    parsed_sections: dict[str, Any] = {}
    for section, cls in sections().items():
        parsed: dict[str, Any] = {}
        for name, (value, origin) in values[section].items():
            try:
                parsed[name] = schema[section][name].check(value)
            except ValueError as exc:
                problems.append(f"{origin} {exc}")
        parsed_sections[section] = cls(**parsed)
    credentials = None
    if api_key is not None or secret_key is not None:
        credentials = Credentials(
            api_key=(api_key or "").strip(), secret_key=(secret_key or "").strip()
        )
        if not credentials.api_key or not credentials.secret_key:
            problems.append("api_key and secret_key must both be given, and not blank")
    config = Config(
        file=file,
        projects=projects,
        credentials=credentials,
        environ=dict(env),
        **parsed_sections,
    )
    for section in parsed_sections.values():
        check = getattr(section, "problems", None)
        if check is not None:
            problems += check(config, env)
    problems += format_problems(config.output)
    if problems:
        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        where = str(file) if file else "config"
        msg = f"{where}: {count}: " + "; ".join(problems)
        raise ConfigError(msg)
    return config


def format_problems(output: OutputConfig) -> list[str]:
    """What is wrong with ``[output] format`` and the keys that depend on it."""
    found = []
    if output.format is not None and output.format not in format_names():
        known = ", ".join(repr(name) for name in format_names())
        found.append(f"[output] format must be one of {known}, not {output.format!r}")
    if output.keep_gzip and output.format not in (None, "ndjson", "gzip"):
        found.append(
            f'[output] keep_gzip = true contradicts format = "{output.format}": drop '
            'keep_gzip (it is the older spelling of format = "gzip")'
        )
    if output.dedupe and output.data_format not in ("parquet", "delta"):
        found.append(
            '[output] dedupe = true needs format = "parquet" or "delta" (NDJSON and gzip '
            "output keep Amplitude's files byte for byte)"
        )
    return found


def _parse_projects(tables: Any, problems: list[str]) -> tuple[ProjectConfig, ...]:
    """``[[projects]]``: each needs a name and the names of the variables holding its keys."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        problems.append("projects must be written as [[projects]] tables")
        return ()
    schema = keys_of(ProjectConfig)
    required = [k.name for k in schema.values() if k.required or k.default is MISSING]
    found: list[ProjectConfig] = []
    for index, table in enumerate(tables, start=1):
        label = f"[[projects]] #{index}"
        parsed: dict[str, Any] = {}
        for name, value in table.items():
            if name not in schema:
                problems.append(f"unknown key {label} {name}{_suggest(name, schema)}")
                continue
            try:
                parsed[name] = schema[name].check(value)
            except ValueError as exc:
                problems.append(f"{label} {name} {exc}")
        missing = [k for k in required if k not in table]
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
    env = process_environment() if environ is None else environ
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
