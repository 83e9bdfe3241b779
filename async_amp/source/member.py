"""Where the streaming core (``archive.py``) puts one archive member's output: a
``MemberSink``. Each output's staging implements it (``output/stores/``, ``output/columnar/``,
``output/delta/``); the core depends on this protocol only, never on the output layer."""

from __future__ import annotations

from typing import Protocol

from ..output.manifest import FileEntry

__all__ = ["MemberSink"]


class MemberSink(Protocol):
    """Where one member's output bytes go. Blocking; called from a worker thread."""

    def write(self, data: bytes) -> None: ...

    def finish(self, entry: FileEntry) -> None: ...

    def discard(self) -> None: ...
