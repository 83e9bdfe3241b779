"""The package's layout rules, read from the source with ``ast`` (nothing is imported):

- no module imports a private name (``_x``, or anything from a ``_x`` module) of a module in
  another package: a private name is shared only among one folder's own files;
- the CLI (``async_amp/cli/``) sits on top: no module outside it imports it;
- the package ships the product: nothing in it imports the checkout's ``tests/``, ``tools/``
  or ``benchmarks/``, or a library only the ``dev`` extra installs (test harnesses live there);
- no import circle between the package's modules: every import counts, at the top of a file,
  under ``TYPE_CHECKING`` or inside a function (a lazy import hides a circle, it does not
  break it);
- the streaming core (``source/archive.py``) reaches nothing of the output layer
  (``output/stores/``, ``output/columnar/``, ``output/delta/``), directly or through other modules;
- logging goes through one door: only ``logs.py`` (and the CLI's output set-up) imports
  structlog, whose unconfigured loggers print to stdout;
- no file under ``async_amp/`` is longer than ~500 lines.

Each failure names the file and line to fix.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator, Mapping
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "async_amp"
ROOT = PACKAGE.parent
MAX_LINES = 500
# Files allowed over MAX_LINES for now, each with the reason and who is on it (none today:
# output/stores/azure.py, the last one, was split). Remove an entry once its file is split.
OVER_THE_LIMIT: dict[str, str] = {}


def _modules() -> Iterator[tuple[Path, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, ".".join(parts)


def _package_of(path: Path, module: str) -> str:
    """The package a module belongs to: itself for an ``__init__.py``, else its parent."""
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imports(path: Path, module: str) -> Iterator[tuple[int, str, str | None]]:
    """``(line, absolute module, name or None)`` for every import in the file."""
    package = _package_of(path, module)
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                yield node.lineno, target, alias.name


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _in_cli(module: str) -> bool:
    return module == "async_amp.cli" or module.startswith("async_amp.cli.")


def _where(path: Path, line: int) -> str:
    return f"{path.relative_to(ROOT)}:{line}"


def test_no_private_name_is_imported_across_packages() -> None:
    found = []
    for path, module in _modules():
        package = _package_of(path, module)
        for line, target, name in _imports(path, module):
            if not target.startswith("async_amp"):
                continue
            parts = target.split(".")
            # the package the private thing belongs to: a private module's own package, or
            # the package of the module whose private name is taken
            for i, part in enumerate(parts):
                if _private(part):
                    owner = ".".join(parts[:i])
                    break
            else:
                if name is None or not _private(name):
                    continue
                target_path = ROOT.joinpath(*parts)
                owner = target if target_path.is_dir() else ".".join(parts[:-1])
            if owner != package:
                shown = f"{target}.{name}" if name else target
                found.append(f"{_where(path, line)} imports {shown}, private to {owner}")
    assert not found, "\n".join(found)


def test_nothing_imports_the_cli() -> None:
    found = [
        f"{_where(path, line)} imports {target}"
        for path, module in _modules()
        # ``python -m async_amp`` is the command itself
        if not _in_cli(module) and module != "async_amp.__main__"
        for line, target, name in _imports(path, module)
        if _in_cli(target) or (target == "async_amp" and name == "cli")
    ]
    assert not found, "the CLI sits on top of the library:\n" + "\n".join(found)


# the modules that may import structlog: the library's one logger, and the CLI's rendering
STRUCTLOG_DOORS = {"async_amp.logs", "async_amp.cli.output"}


def test_only_the_logging_module_imports_structlog() -> None:
    found = [
        f"{_where(path, line)} imports {target}: log with `from .logs import log`"
        for path, module in _modules()
        if module not in STRUCTLOG_DOORS
        for line, target, _ in _imports(path, module)
        if target == "structlog" or target.startswith("structlog.")
    ]
    assert not found, "\n".join(found)


def _graph() -> dict[str, dict[str, int]]:
    """``module -> {module it imports: first line}`` between the package's modules. ``from x
    import y`` imports the module ``x.y`` when there is one, else ``x``."""
    modules = dict((module, path) for path, module in _modules())
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        for line, target, name in _imports(path, module):
            found = f"{target}.{name}" if f"{target}.{name}" in modules else target
            if found in modules and found != module:
                edges.setdefault(found, line)
    return graph


def _circles(graph: Mapping[str, Mapping[str, int]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph.get(module, {}):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def _file(module: str) -> Path:
    base = ROOT.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def test_no_import_circle_between_the_package_modules() -> None:
    graph = _graph()
    lines = [
        f"{_where(_file(a), graph[a][b])} imports {b}"
        for group in _circles(graph)
        for a in group
        for b in group
        if b in graph[a]
    ]
    assert not lines, (
        "import circles (move what both need into a module of its own, or have the lower one "
        "declare a Protocol of what it needs):\n" + "\n".join(lines)
    )


CORE = "async_amp.source.archive"
OUTPUT_LAYER = ("async_amp.output.stores", "async_amp.output.columnar", "async_amp.output.delta")


def test_the_streaming_core_reaches_nothing_of_the_output_layer() -> None:
    graph = _graph()
    path = {CORE: [CORE]}  # how each module reached is reached from the core
    todo = [CORE]
    while todo:
        module = todo.pop()
        for other in graph[module]:
            if other not in path:
                path[other] = [*path[module], other]
                todo.append(other)
    found = [
        " -> ".join(chain) + f" ({_where(_file(chain[-2]), graph[chain[-2]][chain[-1]])})"
        for module, chain in sorted(path.items())
        if module in OUTPUT_LAYER or module.startswith(tuple(f"{p}." for p in OUTPUT_LAYER))
    ]
    assert not found, "the core imports the output layer:\n" + "\n".join(found)


# top-level imports the installed package must never need: the checkout's own folders and the
# libraries of the ``dev`` extra (pyproject.toml)
NOT_SHIPPED = {"tests", "tools", "benchmarks", "pytest", "hypothesis", "polars", "moto", "flask"}


def test_the_package_imports_no_test_harness_or_dev_tool() -> None:
    found = [
        f"{_where(path, line)} imports {target}"
        for path, module in _modules()
        for line, target, _ in _imports(path, module)
        if target.split(".")[0] in NOT_SHIPPED or target.split(".")[0].startswith("flask_")
    ]
    assert not found, "the installed package cannot import these:\n" + "\n".join(found)


def test_no_file_in_the_package_is_over_500_lines() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path, _ in _modules()
    }
    over = {name: n for name, n in sizes.items() if n > MAX_LINES and name not in OVER_THE_LIMIT}
    assert not over, f"split these along a real seam (at most {MAX_LINES} lines each): {over}"


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3, "d": 4}, "d": {}, "e": {"e": 5}}
    assert _circles(graph) == [["a", "b", "c"]]
    assert _circles({"a": {"b": 1}, "b": {}}) == []


def test_the_rules_catch_what_they_are_for(tmp_path: Path) -> None:
    """The import reader resolves relative imports and private modules as the rules need."""
    sample = tmp_path / "x.py"
    sample.write_text(
        "from ..stores.azure import _parts, public\n"
        "from ..._private import thing\n"
        "from . import cli\n"
        "import async_amp.cli.options\n"
    )
    found = list(_imports(sample, "async_amp.output.delta.x"))
    assert found == [
        (1, "async_amp.output.stores.azure", "_parts"),
        (1, "async_amp.output.stores.azure", "public"),
        (2, "async_amp._private", "thing"),
        (3, "async_amp.output.delta", "cli"),
        (4, "async_amp.cli.options", None),
    ]
