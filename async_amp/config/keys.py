"""How a config key is declared: ``key(default, check, doc)`` on a section's field, and
``keys_of(section)`` to read the declarations back (``async_amp.config`` is the declaration,
``async_amp.config.load`` reads and checks against it, ``tools/docgen.py`` renders its docs)."""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any

from .values import Check

__all__ = ["Key", "key", "keys_of"]

_KEY = "async_amp.key"


@dataclass(frozen=True, slots=True)
class Key:
    """What the declaration says about one key (see the module docstring)."""

    name: str
    default: Any
    check: Check
    doc: str
    kind: str
    flag: str | None = None
    shown: str | None = None
    required: bool = False


def key(
    default: Any,
    check: Check,
    doc: str,
    *,
    kind: str | None = None,
    flag: str | None = None,
    shown: str | None = None,
    required: bool = False,
) -> Any:
    """Declare a config key: its default, its check, its docs row (``kind`` and ``shown``
    override the type and default columns)."""
    meta = {_KEY: (check, doc, kind or check.kind, flag, shown, required)}
    if default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


def keys_of(section: type[Any]) -> dict[str, Key]:
    """The keys a section dataclass declares, in order."""
    found: dict[str, Key] = {}
    for f in fields(section):
        if _KEY in f.metadata:
            check, doc, kind, flag, shown, required = f.metadata[_KEY]
            found[f.name] = Key(f.name, _default(f), check, doc, kind, flag, shown, required)
    return found


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    return MISSING
