"""Names a package exports but imports only when first used (PEP 562), so that importing the
package costs nothing until a name is touched::

    if TYPE_CHECKING:  # for type checkers and readers: where each name comes from
        from .checks import VerifyReport

    __getattr__, __dir__ = lazy_exports(__name__, {"checks": ("VerifyReport",)}, globals())

The ``TYPE_CHECKING`` imports and the table name the same things; a test checks that every
name of a package's ``__all__`` resolves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, homes: Mapping[str, tuple[str, ...]], namespace: MutableMapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package``: ``homes`` maps a submodule
    (relative to the package) to the names it provides; a name is imported on first use and
    then kept in ``namespace`` (the package's ``globals()``)."""
    home = {name: module for module, names in homes.items() for name in names}

    def __getattr__(name: str) -> Any:
        module = home.get(name)
        if module is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *home})

    return __getattr__, __dir__
