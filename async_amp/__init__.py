"""async-amp: fast, lossless, resumable Amplitude Export API extraction.

Local NDJSON folders or Azure Blob Storage, hour by hour, each hour committed only when whole.
The Python API (``docs/python-api.md``)::

    import async_amp

    config = async_amp.load_config("config.toml")
    result = async_amp.extract_sync(config, start="2026-11-01", end="2026-11-02")
    result.raise_for_failures()
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from .api import (
    extract,
    extract_sync,
    load_config,
    status,
    status_sync,
    verify,
    verify_sync,
)
from .config import Config, Credentials, ProjectConfig
from .errors import AsyncAmpError, ConfigError, CredentialsError, StorageError, UserError
from .plan import Plan
from .readback import StatusReport, VerifyReport
from .results import (
    ExtractResult,
    FailedHour,
    HourResult,
    IncompleteExtraction,
    ProjectResult,
    StatusResult,
    VerifyResult,
)

if TYPE_CHECKING:
    from .reports.api import ReportResult, report, report_sync

_REPORTS = ("ReportResult", "report", "report_sync")


def __getattr__(name: str) -> Any:
    """``report``/``report_sync``/``ReportResult`` load DuckDB: only when first used."""
    if name in _REPORTS:
        from .reports import api  # noqa: PLC0415

        return getattr(api, name)
    msg = f"module 'async_amp' has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "AsyncAmpError",
    "Config",
    "ConfigError",
    "Credentials",
    "CredentialsError",
    "ExtractResult",
    "FailedHour",
    "HourResult",
    "IncompleteExtraction",
    "Plan",
    "ProjectConfig",
    "ProjectResult",
    "ReportResult",
    "StatusReport",
    "StatusResult",
    "StorageError",
    "UserError",
    "VerifyReport",
    "VerifyResult",
    "__version__",
    "extract",
    "extract_sync",
    "load_config",
    "report",
    "report_sync",
    "status",
    "status_sync",
    "verify",
    "verify_sync",
]
