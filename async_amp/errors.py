"""The one exception tree of async-amp, classified by what happens next.

::

    AsyncAmpError
    ├── UserError                 exit 2, one line, no traceback; the run stops at once
    │   ├── ConfigError           bad config.toml / CLI value / environment value
    │   └── CredentialsError      missing or rejected keys (401/403), wrong region, storage auth
    ├── StorageError              the sink failed (a transient refusal): the hour is retried
    │   └── StorageBlockedError   storage refuses until someone acts (disk full, quota, read-only,
    │                             permission or container gone): the run stops starting hours
    └── AttemptError              one attempt at a window fell short; the hour is re-queued
        ├── RetryableHTTPError    429 / 5xx / connection errors / stalls (may carry Retry-After)
        │   ├── ConnectFailedError  no connection at all (refused, DNS, TLS, proxy, connect timeout)
        │   └── NoAnswerError       connected, then silence before any answer, or a reset
        ├── ArchiveError          truncated ZIP, bad gzip, unsafe/foreign/duplicate members
        └── ExportTooLargeError   400: over 4 GB; not retried for a single hour

Foreign exceptions (aiohttp, stream-unzip, isal, azure-core) are translated at the boundary
with ``raise ... from exc`` so that callers only ever see these types.
"""

from __future__ import annotations

import errno

__all__ = [
    "ArchiveError",
    "AsyncAmpError",
    "AttemptError",
    "ConfigError",
    "ConnectFailedError",
    "CredentialsError",
    "ExportTooLargeError",
    "NoAnswerError",
    "RetryableHTTPError",
    "StorageBlockedError",
    "StorageConflictError",
    "StorageError",
    "UserError",
    "first_user_error",
    "os_storage_error",
    "storage_failure",
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


class StorageConflictError(StorageError):
    """The store answered, and refused because another writer got there first (Azure's
    ``InvalidBlockList`` when two runs commit the same blob): the hour is retried, but it says
    nothing about the store being gone, so the run's guard does not count it."""


class StorageBlockedError(StorageError):
    """Storage that will refuse every write until someone acts: not worth retrying.

    ``cause`` is what went wrong ("No space left on device"), ``place`` where ("writing
    /data/website/..."), ``remedy`` what to do ("free space and run again"); ``line(done,
    total)`` joins them with the run's progress into the one line the user sees.
    """

    def __init__(self, cause: str, place: str, remedy: str, *, kept: bool = True) -> None:
        super().__init__(f"{cause} {place}; {remedy}")
        self.cause = cause
        self.place = place
        self.remedy = remedy
        self.kept = kept  # False when what was stored went with the failure (folder removed)

    def line(self, done: int, total: int) -> str:
        if not self.kept:  # the hours it held are gone too: no count to reassure with
            return f"{self.cause} {self.place}: {self.remedy}"
        return (
            f"{self.cause} {self.place}: {done} of {total} hours complete; {self.remedy}, "
            "completed hours are kept"
        )


_BLOCKING_ERRNOS = {
    errno.ENOSPC: "free space and run again",
    errno.EDQUOT: "free space or raise the quota and run again",
    errno.EROFS: "make the file system writable (or pick another --output) and run again",
    errno.EACCES: "restore write permission (or pick another --output) and run again",
    errno.EPERM: "restore write permission (or pick another --output) and run again",
    errno.ENOTDIR: "a file stands where a folder must be: move it away and run again",
}


def os_storage_error(exc: OSError, doing: str, *, root_exists: bool = True) -> StorageError:
    """Translate a file-system error at a sink boundary. ``doing`` says where ("writing
    /data/x"). Errors no retry can fix (disk full, quota, read-only, permission, the output
    folder gone: ``root_exists=False``) become ``StorageBlockedError``; others stay retried."""
    cause = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOENT and not root_exists:
        remedy = (
            "the output folder was removed, with every hour in it; recreate (or remount) it "
            "and run again"
        )
        return StorageBlockedError(cause, doing, remedy, kept=False)
    blocking = _BLOCKING_ERRNOS.get(exc.errno or 0)
    if blocking is None:
        return StorageError(f"{doing}: {cause}")
    return StorageBlockedError(cause, doing, blocking)


def storage_failure(exc: BaseException, where: str) -> StorageError | None:
    """A file-system error raised deep in a writer (pyarrow, DuckDB, a spool) as the sink
    error it means, or ``None`` when ``exc`` holds no ``OSError``. The chain (``__cause__``,
    ``__context__``) is searched: pyarrow re-raises the ``OSError`` of the file it wrote to."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None or isinstance(seen, AsyncAmpError):
            return None
        if isinstance(seen, OSError) and seen.errno:
            return os_storage_error(seen, f"writing {seen.filename or where}")
        seen = seen.__cause__ or seen.__context__
    return None


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


class ConnectFailedError(RetryableHTTPError):
    """No connection could be made at all: refused, DNS, TLS, proxy, connect timeout."""


class NoAnswerError(RetryableHTTPError):
    """The connection was made, then the server went silent before its first byte
    (``silent``) or the connection was reset (before or during the response)."""

    def __init__(self, message: str, *, silent: bool) -> None:
        super().__init__(message)
        self.silent = silent


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
