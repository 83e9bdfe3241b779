"""The formats an output can hold, by name: the built-in ones and any ``register_format`` adds.

A format turns each archive member into stored files and commits an hour (``wrap``: the sink
it puts in front of the store), verifies what it stored (``verify``), and says whether it keeps
Amplitude's gzip bytes (``keeps_gzip``) and how to recognise an output it wrote before outputs
recorded their format (``recognise``). Adding a format is one module with a class like the
ones in ``builtin.py`` and one ``register_format`` call; the run, ``status``, ``verify`` and
``report`` then write and read it by its name (``[output] format`` or ``--format``).

Leave room for derived outputs: a format's ``wrap`` gets the whole ``FormatContext`` (the
config among it), so a format built from another output can open that one through
``open_output`` itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..config import Config
    from ..readback import VerifyReport
    from ..sinks.base import Sink, Store

__all__ = [
    "Format",
    "FormatContext",
    "format_for",
    "format_names",
    "recognise_format",
    "register_format",
    "unregister_format",
]


@dataclass(frozen=True, slots=True)
class FormatContext:
    """What a format may need to build its sink: the config (resolved: its ``[output] format``
    is this format), the run's id, the environment (credentials of the store) and a local
    folder for temporary files that the run cleans (``None``: the system's temporary folder)."""

    config: Config
    run_id: str
    environ: Mapping[str, str]
    spool_dir: Path | None = None


class Format(Protocol):
    """One way of storing an hour's events (see the module docstring)."""

    @property
    def name(self) -> str:
        """The name ``[output] format`` uses, recorded in each project's marker."""
        ...

    @property
    def keeps_gzip(self) -> bool:
        """True when the archive should hand over each member's ``.json.gz`` bytes as they
        are (else they are gunzipped first)."""
        ...

    def recognise(self, names: Sequence[str]) -> bool:
        """True when ``names`` (paths under a project's root, a sample of them) look like an
        output of this format written before outputs recorded their format."""
        ...

    def wrap(self, store: Store, context: FormatContext) -> Sink:
        """The sink that stores hours in this format through ``store`` (no I/O)."""
        ...

    async def verify(
        self, sink: Sink, project: str, first: datetime, last: datetime, *, concurrency: int
    ) -> VerifyReport:
        """Check every hour from ``first`` to ``last`` as a reader of this format sees it."""
        ...


_FORMATS: dict[str, Format] = {}


def register_format(fmt: Format, *, replace: bool = False) -> None:
    """Make ``fmt`` available by its name (``replace``: over one of the same name)."""
    if fmt.name in _FORMATS and not replace:
        msg = f"a format called {fmt.name!r} is registered already"
        raise ValueError(msg)
    _FORMATS[fmt.name] = fmt


def unregister_format(name: str) -> None:
    """Forget a registered format (tests; a built-in one comes back on the next import)."""
    _FORMATS.pop(name, None)


def format_names() -> tuple[str, ...]:
    """Every registered format's name, built-in ones first."""
    return tuple(_FORMATS)


def format_for(name: str) -> Format:
    """The format called ``name`` (``KeyError`` when none is)."""
    return _FORMATS[name]


def recognise_format(names: Sequence[str]) -> str | None:
    """The first format (in registration order) that recognises ``names``, or ``None``."""
    for fmt in _FORMATS.values():
        if fmt.recognise(names):
            return fmt.name
    return None


def _register_builtins() -> None:
    from .builtin import BUILTIN_FORMATS  # noqa: PLC0415 - builtin imports this module

    for fmt in BUILTIN_FORMATS:
        _FORMATS.setdefault(fmt.name, fmt)


_register_builtins()
