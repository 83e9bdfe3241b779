"""The formats an output can hold, by name: the built-in ones and any ``register_format`` adds.

A format turns each archive member into stored files and commits an hour (``wrap``: the sink
it puts in front of the store), verifies what it stored (``verify``), and says whether it keeps
Amplitude's gzip bytes (``keeps_gzip``) and how to recognise an output it wrote before outputs
recorded their format (``recognise``). A format that keeps each project's rows in one table
(Delta) also has ``compact`` (``format.Maintained``: ``async-amp compact``), and its sink reads
the rows back for the report and the models (``stores.base.KeepsTable``); no other module asks
which format an output holds. Adding a format is one module with a class like the
ones in ``builtin.py`` and one ``register_format`` call; the run, ``status``, ``verify`` and
``report`` then write and read it by its name (``[output] format`` or ``--format``).

Leave room for derived outputs: a format's ``wrap`` gets the whole ``FormatContext`` (the
config among it), so a format built from another output can open that one through
``open_output`` itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError
from .builtin import BUILTIN_FORMATS
from .format import Format, FormatContext

__all__ = [
    "Format",
    "FormatContext",
    "format_for",
    "format_names",
    "recognise_format",
    "register_format",
    "unregister_format",
]

_FORMATS: dict[str, Format] = {}


def register_format(fmt: Format, *, replace: bool = False) -> None:
    """Make ``fmt`` available by its name (``replace``: over one of the same name)."""
    if fmt.name in _FORMATS and not replace:
        msg = f"a format called {fmt.name!r} is registered already"
        raise ValueError(msg)
    _FORMATS[fmt.name] = fmt


def unregister_format(name: str) -> None:
    """Forget a registered format (a test's own, once it is done)."""
    _FORMATS.pop(name, None)


def format_names() -> tuple[str, ...]:
    """Every registered format's name, built-in ones first."""
    return tuple(_FORMATS)


def format_for(name: str) -> Format:
    """The format called ``name`` (``ConfigError`` when none is)."""
    try:
        return _FORMATS[name]
    except KeyError:
        msg = f"[output] format {name!r} is not one of {', '.join(_FORMATS)}"
        raise ConfigError(msg) from None


def recognise_format(names: Sequence[str]) -> str | None:
    """The first format (in registration order) that recognises ``names``, or ``None``."""
    for fmt in _FORMATS.values():
        if fmt.recognise(names):
            return fmt.name
    return None


for _builtin in BUILTIN_FORMATS:
    register_format(_builtin)
