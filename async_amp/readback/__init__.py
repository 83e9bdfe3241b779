"""Reading back what extractions stored: which hours are done, and whether the bytes still match.

``read_status`` reads the manifests of a range of hours and says, per hour, whether it is
complete, empty (Amplitude had no data), missing (no manifest yet: extract it), not yet
available (newer than ``availability_lag_hours``) or has an unreadable manifest.
``verify`` re-reads every stored file, recomputes its size, sha256 and event count (lines) and
compares them with the manifest; files listed but absent and files present but not listed are
reported too.

Both only read, through the ``Sink`` protocol (``read_manifest``, ``completed_hours``,
``list_files``, ``iter_file``), so they work the same on a local folder and on Azure; neither
calls ``Sink.prepare()``, so read-only credentials are enough. They return frozen values;
printing and exit codes belong to the CLI (``async_amp.cli.commands.ops``).

Memory stays flat: files stream through in chunks, hashing and gunzip run in worker threads,
and a fixed number of workers takes hours one at a time (never one task per hour).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .checks import (
        FileCheck,
        FileFacts,
        HourCheck,
        Problem,
        ProblemKind,
        VerifyReport,
        read_all,
        verify,
    )
    from .status import (
        LEGEND,
        OUTSIDE_RANGE,
        STATES,
        STRIP_CHARS,
        DayStatus,
        HourState,
        HourStatus,
        StatusReport,
        read_status,
    )

# status reads manifests only; checks (verify) loads the streaming core (numpy, stream-unzip):
# each loads when one of its names is first used
_HOMES = {
    "checks": (
        "FileCheck",
        "FileFacts",
        "HourCheck",
        "Problem",
        "ProblemKind",
        "VerifyReport",
        "read_all",
        "verify",
    ),
    "status": (
        "LEGEND",
        "OUTSIDE_RANGE",
        "STATES",
        "STRIP_CHARS",
        "DayStatus",
        "HourState",
        "HourStatus",
        "StatusReport",
        "read_status",
    ),
}
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())

__all__ = [
    "LEGEND",
    "OUTSIDE_RANGE",
    "STATES",
    "STRIP_CHARS",
    "DayStatus",
    "FileCheck",
    "FileFacts",
    "HourCheck",
    "HourState",
    "HourStatus",
    "Problem",
    "ProblemKind",
    "StatusReport",
    "VerifyReport",
    "read_all",
    "read_status",
    "verify",
]
