"""async-amp: fast, lossless, resumable Amplitude Export API extraction.

Into a local folder, Azure Blob Storage, S3 or GCS, as NDJSON, gzip, Parquet or Delta Lake, hour by
hour, each hour committed only when whole.
The Python API (``docs/python-api.md``)::

    import async_amp

    config = async_amp.load_config("config.toml")
    result = async_amp.extract_sync(config, start="2026-11-01", end="2026-11-02")
    result.raise_for_failures()
"""

from typing import TYPE_CHECKING

from .lazy import lazy_exports
from .version import __version__

if TYPE_CHECKING:
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
    from .extraction.plan import Plan
    from .extraction.results import (
        ExtractResult,
        FailedHour,
        HourResult,
        IncompleteExtraction,
        ProjectResult,
        StatusResult,
        VerifyResult,
    )
    from .models.api import model, model_sync, reconcile, reconcile_sync
    from .models.build import DayBuilt, ModelRun
    from .models.reconcile import Reconciliation
    from .readback import StatusReport, VerifyReport
    from .reports.api import ReportResult, report, report_sync

# Where each public name lives. ``import async_amp`` loads none of them (aiohttp, numpy and
# structlog cost ~0.4 s): a name's module is imported when the name is first used (PEP 562).
_HOMES = {
    "api": (
        "extract",
        "extract_sync",
        "load_config",
        "status",
        "status_sync",
        "verify",
        "verify_sync",
    ),
    "config": ("Config", "Credentials", "ProjectConfig"),
    "errors": ("AsyncAmpError", "ConfigError", "CredentialsError", "StorageError", "UserError"),
    "models.api": ("model", "model_sync", "reconcile", "reconcile_sync"),  # DuckDB: when used
    "models.reconcile": ("Reconciliation",),
    "models.build": ("DayBuilt", "ModelRun"),
    "extraction.plan": ("Plan",),
    "readback": ("StatusReport", "VerifyReport"),
    "reports.api": ("ReportResult", "report", "report_sync"),  # DuckDB: only when used
    "extraction.results": (
        "ExtractResult",
        "FailedHour",
        "HourResult",
        "IncompleteExtraction",
        "ProjectResult",
        "StatusResult",
        "VerifyResult",
    ),
}
__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())

__all__ = [
    "AsyncAmpError",
    "Config",
    "ConfigError",
    "Credentials",
    "CredentialsError",
    "DayBuilt",
    "ExtractResult",
    "FailedHour",
    "HourResult",
    "IncompleteExtraction",
    "ModelRun",
    "Plan",
    "ProjectConfig",
    "ProjectResult",
    "Reconciliation",
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
    "model",
    "model_sync",
    "reconcile",
    "reconcile_sync",
    "report",
    "report_sync",
    "status",
    "status_sync",
    "verify",
    "verify_sync",
]
