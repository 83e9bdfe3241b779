"""The one exception tree of async-amp, classified by what happens next.

::

    AsyncAmpError
    ├── UserError                 exit 2, one line, no traceback; the run stops at once
    │   ├── ConfigError           bad config.toml / CLI value / environment value
    │   └── CredentialsError      missing or rejected keys (401/403), wrong region, storage auth
    ├── StorageError              the sink failed (disk full, Azure refused): the hour fails
    └── AttemptError              one attempt at a window fell short; the hour is re-queued
        ├── RetryableHTTPError    429 / 5xx / connection errors / stalls (may carry Retry-After)
        ├── ArchiveError          truncated ZIP, bad gzip, unsafe/foreign/duplicate members
        └── ExportTooLargeError   400: over 4 GB; not retried for a single hour

Foreign exceptions (aiohttp, stream-unzip, isal, azure-core) are translated at the boundary
with ``raise ... from exc`` so that callers only ever see these types.
"""

from __future__ import annotations

__all__ = [
    "ArchiveError",
    "AsyncAmpError",
    "AttemptError",
    "ConfigError",
    "CredentialsError",
    "ExportTooLargeError",
    "RetryableHTTPError",
    "StorageError",
    "UserError",
    "first_user_error",
]


class AsyncAmpError(Exception):
    """Base of every error async-amp raises on purpose."""


class UserError(AsyncAmpError):
    """Something the user must fix: reported as one line, exit code 2."""


class ConfigError(UserError):
    """Invalid configuration, CLI argument or environment value."""


class CredentialsError(UserError):
    """Missing or rejected credentials (Amplitude keys or storage credentials)."""


class StorageError(AsyncAmpError):
    """The output sink could not store or commit data."""

    retry_after: float | None = None


class AttemptError(AsyncAmpError):
    """One attempt at an export window fell short; the hours in it may be retried."""

    retry_after: float | None = None


class RetryableHTTPError(AttemptError):
    """A transient HTTP or network failure: 429, 5xx, reset, stall, timeout."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def throttled(self) -> bool:
        """True when the server asked us to slow down (429 or 503)."""
        return self.status in (429, 503)


class ArchiveError(AttemptError):
    """The archive or a member inside it is truncated, corrupt, unsafe or unexpected."""


class ExportTooLargeError(AttemptError):
    """Amplitude answered 400: the export would exceed its 4 GB limit."""


def first_user_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The user error (bad keys, unwritable output) that stopped the run, else the group."""
    users = group.subgroup(lambda e: isinstance(e, UserError))
    if users is None:
        return group
    leaf: BaseException = users
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf
