"""The documentation cannot drift from the code: the CLI reference is generated and compared,
every config key and every log event must be documented with its real name, default and fields.
"""

from __future__ import annotations

import argparse
import ast
import re
from dataclasses import MISSING, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from async_amp.cli import build_parser
from async_amp.config import FORMATS, SINKS, ProjectConfig, keys_of, sections
from async_amp.config.load import load_config
from tools.docgen import commands, render_cli, render_configuration

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PACKAGE = ROOT / "async_amp"
LOG_METHODS = {"debug", "info", "warning", "error", "critical", "exception"}


def _table(text: str, heading: str) -> list[list[str]]:
    """Rows of the first Markdown table after ``heading`` (cells stripped, header skipped)."""
    start = text.index(heading + "\n")
    rows: list[list[str]] = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("## ") and rows:
            break
        if line.startswith("|") and not line.startswith("| ---"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
        elif rows and not line.startswith("|"):
            break
    return rows[1:]


def _code(cell: str) -> str:
    match = re.match(r"`([^`]*)`", cell)
    assert match, f"expected a `code` cell, got {cell!r}"
    return match.group(1)


# --- docs/cli.md ----------------------------------------------------------------------------


def test_cli_reference_is_up_to_date() -> None:
    current = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert current == render_cli(), "docs/cli.md is out of date: run 'make docs'"


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.option_strings
        and not isinstance(a, argparse._HelpAction | argparse._VersionAction)
        and a.help != argparse.SUPPRESS  # an older spelling, kept working but not shown
    ]


@pytest.mark.parametrize("name", list(commands(build_parser())))
def test_every_option_has_help_with_an_example(name: str) -> None:
    parser = commands(build_parser())[name]
    assert parser.description and "e.g." not in parser.prog
    for action in _options(parser):
        assert action.help, f"{name} {action.option_strings[0]} has no help"
        assert "e.g." in action.help, f"{name} {action.option_strings[0]}: help has no example"


def test_every_command_has_help_with_an_example() -> None:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help and "e.g." in choice.help, choice.dest


# --- docs/configuration.md ------------------------------------------------------------------

SCHEMA = {name: keys_of(cls) for name, cls in sections().items()}


def test_configuration_key_tables_are_up_to_date() -> None:
    current = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert current == render_configuration(current), (
        "docs/configuration.md is out of date: run 'make docs'"
    )


def _toml_literal(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | Path):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    if isinstance(value, timedelta):  # durations are written "48h"; none is 0
        hours = int(value.total_seconds() // 3600)
        return f'"{hours}h"' if hours else "0"
    return repr(value)


def _defaults(section: str) -> dict[str, Any]:
    cls = sections()[section]
    return {
        f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        for f in fields(cls)
    }


@pytest.mark.parametrize("section", list(SCHEMA))
def test_every_config_key_is_documented_with_env_var_and_default(section: str) -> None:
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = _table(text, f"## [{section}]")
    documented = {_code(row[0]): row for row in rows}
    assert set(documented) == set(SCHEMA[section]), (
        f"[{section}] undocumented: {set(SCHEMA[section]) - set(documented)}; "
        f"documented but unknown: {set(documented) - set(SCHEMA[section])}"
    )
    defaults = _defaults(section)
    for key, (_, kind, default, env, meaning) in documented.items():
        assert _code(env) == f"ASYNC_AMP_{section}_{key}".upper(), key
        want = _toml_literal(defaults[key])
        shown = default if want == "(none)" else _code(default)
        assert shown.startswith(want), f"[{section}] {key}: default {default!r}, code has {want}"
        assert kind and len(meaning) > 20, key


def test_every_projects_key_is_documented() -> None:
    schema = keys_of(ProjectConfig)
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    documented = {_code(row[0]) for row in _table(text, "## [[projects]]")}
    assert documented == set(schema)


# --- config.toml: the example a newcomer copies ------------------------------------------


_EXAMPLE_LINE = re.compile(r"^# (\w+) = (.*?)(?:\s+#.*)?$")


def _example_keys() -> dict[str, dict[str, str]]:
    """``section -> {key: the TOML text of its value}`` from config.toml's lines, commented
    or not (``projects`` for the ``[[projects]]`` block)."""
    found: dict[str, dict[str, str]] = {}
    section = ""
    for line in (ROOT / "config.toml").read_text(encoding="utf-8").splitlines():
        header = re.fullmatch(r"(?:# )?\[\[?(\w+)\]\]?", line.strip())
        if header:
            section = header.group(1)
            found.setdefault(section, {})
            continue
        match = _EXAMPLE_LINE.match(line) or re.match(r"^(\w+) = (.*?)(?:\s+#.*)?$", line)
        if match and section:
            found[section][match.group(1)] = match.group(2)
    return found


def test_config_toml_shows_every_section_and_key() -> None:
    example = _example_keys()
    declared = {name: list(keys_of(cls)) for name, cls in sections().items()}
    declared["projects"] = list(keys_of(ProjectConfig))
    assert {s: list(keys) for s, keys in example.items()} == declared


def test_config_toml_loads_and_shows_each_default(tmp_path: Path) -> None:
    """Every line uncommented at once is a valid config, and each key with a default shows it
    (a key without one, like ``[azure] account_url``, shows an example value)."""
    example = _example_keys()
    path = tmp_path / "config.toml"
    path.write_text(
        "\n".join(
            ("[[projects]]" if s == "projects" else f"[{s}]")
            + "".join(f"\n{k} = {v}" for k, v in keys.items())
            for s, keys in example.items()
        ),
        encoding="utf-8",
    )
    config = load_config(path, api_key="k", secret_key="s", environ={})
    shown = {
        (s, name): getattr(config.projects[0] if s == "projects" else getattr(config, s), name)
        for s, keys in example.items()
        for name in keys
    }
    declared = {name: keys_of(cls) for name, cls in sections().items()}
    declared["projects"] = keys_of(ProjectConfig)
    differ = {
        (s, name): (value, declared[s][name].default)
        for (s, name), value in shown.items()
        if declared[s][name].default not in (None, MISSING) and value != declared[s][name].default
    }
    assert not differ, f"config.toml shows another value than the default: {differ}"


# --- what the product says it does: every store and every format ----------------------------


def _first_paragraph(text: str) -> str:
    return text.split("\n\n")[1]


@pytest.mark.parametrize(
    ("where", "read"),
    [
        ("async-amp --help", lambda: build_parser().description or ""),
        ("the Docker image's label", lambda: (ROOT / "Dockerfile").read_text(encoding="utf-8")),
        ("pyproject.toml", lambda: (ROOT / "pyproject.toml").read_text(encoding="utf-8")),
        ("README.md", lambda: _first_paragraph((ROOT / "README.md").read_text(encoding="utf-8"))),
    ],
)
def test_the_description_names_every_store_and_format(where: str, read: Any) -> None:
    text = read()
    if where == "the Docker image's label":
        text = re.search(r'image\.description="([^"]*)"', text).group(1)  # type: ignore[union-attr]
    elif where == "pyproject.toml":
        text = re.search(r'^description = "([^"]*)"', text, re.M).group(1)  # type: ignore[union-attr]
    missing = [
        name for name in (*SINKS, *FORMATS) if not re.search(rf"\b{name}\b", text, re.IGNORECASE)
    ]
    assert not missing, f"{where} does not name {missing}: {text!r}"


# --- docs/operations.md: the log events ------------------------------------------------------


def _logged_events() -> dict[str, tuple[str, set[str], bool]]:
    """``event -> (level, keyword fields, has **expansion)`` from every structlog call."""
    found: dict[str, tuple[str, set[str], bool]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "simulator" in path.relative_to(PACKAGE).parts:
            continue  # the simulator's own logging is not the extractor's
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in LOG_METHODS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "log"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                continue
            names = {k.arg for k in node.keywords if k.arg}
            dynamic = any(k.arg is None for k in node.keywords)
            level, known, was_dynamic = found.get(
                node.args[0].value, (node.func.attr, set(), False)
            )
            found[node.args[0].value] = (level, known | names, was_dynamic or dynamic)
    return found


def test_every_log_event_is_documented_with_its_fields() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    rows = _table(text, "## Log events")
    documented = {_code(row[0]): (row[1], set(re.findall(r"`(\w+)`", row[2]))) for row in rows}
    logged = _logged_events()
    assert set(documented) == set(logged), (
        f"logged but not documented: {set(logged) - set(documented)}; "
        f"documented but never logged: {set(documented) - set(logged)}"
    )
    for event, (level, names, dynamic) in logged.items():
        doc_level, doc_fields = documented[event]
        assert doc_level == level, event
        missing = names - doc_fields
        assert not missing, f"{event}: fields {missing} are logged but not documented"
        if not dynamic:
            extra = doc_fields - names
            assert not extra, f"{event}: documented fields {extra} are not logged"


def test_kql_examples_only_use_documented_events() -> None:
    text = (DOCS / "operations.md").read_text(encoding="utf-8")
    used = set(re.findall(r'event (?:==|in) \(?"([\w.]+)"', text))
    used |= set(re.findall(r'"((?:run|hour|window)\.\w+)"', text))
    assert used <= set(_logged_events()), used - set(_logged_events())


# --- links between the documents -------------------------------------------------------------


@pytest.mark.parametrize("doc", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_resolve(doc: str) -> None:
    text = (DOCS / doc).read_text(encoding="utf-8")
    for target, anchor in re.findall(r"\]\(([\w./-]*\.md)?(?:#([\w-]+))?\)", text):
        page = (DOCS / target) if target else DOCS / doc
        assert page.is_file(), f"{doc} links to missing {target}"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)
            slugs = {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}
            assert anchor in slugs, f"{doc} links to #{anchor}, not a heading of {page.name}"
