"""Google Cloud Storage's JSON API on aiohttp: the few calls the GCS sink makes, their retries,
credentials and errors.

Credentials (never from ``config.toml``), first found wins: ``GOOGLE_APPLICATION_CREDENTIALS``
(a service-account key file, or any credentials file ``gcloud`` writes), else Application
Default Credentials (``gcloud auth application-default login``'s file, else the metadata
server of GCE, GKE, Cloud Run). gcloud-aio-auth turns them into an OAuth token (signing the
service account's JWT, refreshing a user's token, asking the metadata server); this module
keeps the token until shortly before it expires. ``[gcs] anonymous`` sends none (emulators).

Errors are translated here: refused credentials (401, a token endpoint saying no) become
``CredentialsError``, a missing bucket ``ConfigError`` (``StorageBlockedError`` once a run is
under way), everything else ``StorageError``; messages name the bucket and object, never a
token or a key. 408, 429 and 5xx answers and network failures are retried with backoff.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from ...backoff import backoff_delay
from ...config import GcsConfig
from ...errors import (
    AsyncAmpError,
    ConfigError,
    CredentialsError,
    StorageBlockedError,
    StorageError,
)
from .shared import TIMEOUT_RETRIES, Answers

__all__ = ["DEFAULT_ENDPOINT", "GcsClient", "GcsError", "Listed", "credentials_file"]

DEFAULT_ENDPOINT = "https://storage.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
_ENV_CREDENTIALS = "GOOGLE_APPLICATION_CREDENTIALS"
_RETRIED = frozenset({408, 429, 500, 502, 503, 504})
_TOKEN_MARGIN_S = 300.0  # a token is renewed this long before it expires
_MAX_BACKOFF_S = 30.0


@dataclass(frozen=True, slots=True)
class Listed:
    """One object of a listing."""

    name: str
    size: int
    generation: int
    etag: str


class GcsError(Exception):
    """A GCS answer the caller may want to tell apart (its ``status``), before translation."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def credentials_file(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The path and ``"type"`` of the credentials file ``GOOGLE_APPLICATION_CREDENTIALS``
    names, ``None`` when it names none (ADC then finds its own); ``ConfigError`` when the
    file cannot be used."""
    path = environ.get(_ENV_CREDENTIALS, "").strip()
    if not path:
        return None
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        msg = f"{_ENV_CREDENTIALS} names {path!r}, which cannot be read ({exc.strerror})"
        raise ConfigError(msg) from None
    except ValueError:
        msg = f"{_ENV_CREDENTIALS} names {path!r}, which is not a JSON credentials file"
        raise ConfigError(msg) from None
    kind = data.get("type") if isinstance(data, dict) else None
    known = (
        "service_account",
        "authorized_user",
        "external_account",
        "impersonated_service_account",
    )
    if kind not in known:
        msg = (
            f"{_ENV_CREDENTIALS} names {path!r}, which is no Google credentials file (its "
            f'"type" is {kind!r}); download a service-account key as JSON'
        )
        raise ConfigError(msg)
    if kind == "service_account" and not all(data.get(k) for k in ("client_email", "private_key")):
        msg = f"{_ENV_CREDENTIALS} names {path!r}: a service-account key without its private key"
        raise ConfigError(msg)
    return str(Path(path).expanduser()), kind


class GcsClient:
    """One bucket's JSON API: an aiohttp session, a token, retries and error translation."""

    def __init__(self, config: GcsConfig, environ: Mapping[str, str]) -> None:
        assert config.bucket
        self.bucket = config.bucket
        self.endpoint = (config.endpoint_url or DEFAULT_ENDPOINT).rstrip("/")
        self.anonymous = config.anonymous
        self.retries = config.retries
        self.read_timeout_s = config.read_timeout_s
        self._timeout = aiohttp.ClientTimeout(
            connect=config.connect_timeout_s, sock_read=config.read_timeout_s
        )
        if self.anonymous:
            self._file, self.auth_source = None, "no credentials ([gcs] anonymous)"
        else:
            found = credentials_file(environ)
            self._file = found[0] if found else None
            self.auth_source = (
                f"{_ENV_CREDENTIALS} ({found[1]})" if found else "Application Default Credentials"
            )
        self._session: aiohttp.ClientSession | None = None
        self._token: Any = None  # gcloud.aio.auth.Token, made on first use
        self._access: tuple[str, float] | None = None  # (token, monotonic time to renew at)
        self._token_lock = asyncio.Lock()
        self._rng = random.Random()
        self.answers = Answers()

    # --- plumbing ----------------------------------------------------------------------------

    def where(self, name: str | None) -> str:
        target = f"gs://{self.bucket}/{name}" if name else f"bucket gs://{self.bucket}"
        return target if self.endpoint == DEFAULT_ENDPOINT else f"{target} at {self.endpoint}"

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
                headers={"User-Agent": "async-amp"},
            )
        return self._session

    async def _authorization(self) -> dict[str, str]:
        if self.anonymous:
            return {}
        now = time.monotonic()
        if self._access is None or now >= self._access[1]:
            async with self._token_lock:
                if self._access is None or time.monotonic() >= self._access[1]:
                    self._access = await self._fetch_token()
        return {"Authorization": f"Bearer {self._access[0]}"}

    async def _fetch_token(self) -> tuple[str, float]:
        from gcloud.aio.auth import Token  # noqa: PLC0415 - loads only when GCS is used

        if self._token is None:
            self._token = Token(
                service_file=self._file,
                session=self.session(),  # type: ignore[arg-type]  # aiohttp's, as it expects
                scopes=[SCOPE],
            )
        try:
            # ``refresh`` itself, not ``get``: gcloud-aio-auth's ``get`` retries a refused key
            # five times over minutes; a refusal here is final, network trouble is retried
            # with the call that needed the token
            answer = await self._token.refresh(timeout=int(self._timeout.sock_read or 60))
        except aiohttp.ClientResponseError as exc:
            if exc.status in _RETRIED:
                raise _Transient(exc.status) from None
            msg = (
                f"the credentials from {self.auth_source} were refused by the token endpoint "
                f"({exc.status} {exc.message}): check the key file or run "
                "`gcloud auth application-default login`"
            )
            raise CredentialsError(msg) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            if self._file is None:
                msg = (
                    f"no Google credentials: set {_ENV_CREDENTIALS} to a service-account key "
                    "file, run `gcloud auth application-default login`, or run on Google Cloud "
                    f"with a service account ({type(exc).__name__} from the metadata server)"
                )
                raise CredentialsError(msg) from None
            raise _Transient(0) from exc
        except (KeyError, ValueError, TypeError) as exc:
            kind = type(exc).__name__
            msg = f"the credentials from {self.auth_source} cannot make a token ({kind})"
            raise CredentialsError(msg) from None
        ttl = max(60.0, float(answer.expires_in) - _TOKEN_MARGIN_S)
        return str(answer.value), time.monotonic() + ttl

    def object_url(self, name: str, *, upload: bool = False) -> str:
        root = f"{self.endpoint}/upload/storage/v1" if upload else f"{self.endpoint}/storage/v1"
        if upload:
            return f"{root}/b/{quote(self.bucket, safe='')}/o"
        return f"{root}/b/{quote(self.bucket, safe='')}/o/{quote(name, safe='')}"

    async def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        ok: tuple[int, ...] = (200,),
        rewind: Any = None,
        retries: int | None = None,
        timeout_retries: int = TIMEOUT_RETRIES,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One call with retries; an answer outside ``ok`` (and not retried) is ``GcsError``.
        ``rewind()`` (when given) makes a fresh body for each try; a try that timed out is
        tried again ``timeout_retries`` times at most."""
        limit = self.retries if retries is None else retries
        attempt = timeouts = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                sent = dict(headers or {})
                sent.update(await self._authorization())
                body = rewind() if rewind is not None else data
                async with self.session().request(
                    method, url, params=params, headers=sent, data=body
                ) as answer:
                    self.answers.heard()
                    content = await answer.read()
                    if answer.status in ok:
                        return answer.status, answer.headers, content
                    if answer.status not in _RETRIED or attempt > limit:
                        raise GcsError(answer.status, _reason(content))
                    retry_after = _retry_after(answer.headers.get("Retry-After"))
            except _Transient as exc:
                if attempt > limit:
                    raise GcsError(exc.status, "the token endpoint did not answer") from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.answers.missed()
                timeouts += isinstance(exc, TimeoutError)
                if attempt > limit or timeouts > timeout_retries:
                    raise
                del exc
            await self.pause(attempt, retry_after)

    async def pause(self, attempt: int, retry_after: float | None = None) -> None:
        """The backoff before try ``attempt + 1``."""
        delay = backoff_delay(
            attempt,
            base_s=0.5,
            max_s=_MAX_BACKOFF_S,
            rng=self._rng,
            retry_after=retry_after,
            jitter="equal",
        )
        await asyncio.sleep(delay)

    @staticmethod
    def retried(exc: BaseException) -> bool:
        """Whether a failed call is worth another try (throttled, the server's fault, the
        network)."""
        if isinstance(exc, GcsError):
            return exc.status in _RETRIED
        return isinstance(exc, aiohttp.ClientError | TimeoutError)

    async def stream(self, name: str) -> AsyncIterator[bytes]:
        """An object's bytes as stored (no decompressive transcoding), in chunks."""
        url = self.object_url(name)
        headers = {**await self._authorization(), "Accept-Encoding": "gzip"}
        async with self.session().get(url, params={"alt": "media"}, headers=headers) as answer:
            if answer.status != 200:
                raise GcsError(answer.status, _reason(await answer.read()))
            async for chunk in answer.content.iter_chunked(1024 * 1024):
                yield chunk

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- errors -------------------------------------------------------------------------------

    def error(
        self,
        exc: BaseException,
        action: str,
        name: str | None,
        permission: str,
        *,
        run: bool,
        listing: bool = False,
    ) -> AsyncAmpError:
        """``exc`` (``GcsError``, aiohttp's, a timeout) as the one line the user sees."""
        where = self.where(name)
        if isinstance(exc, CredentialsError):  # from the token endpoint: say what it was for
            if run:
                remedy = f"renew the credentials ({self.auth_source}) and run again"
                return StorageBlockedError(
                    f"{exc}".capitalize(), f"trying to {action} {where}", remedy
                )
            return CredentialsError(f"cannot {action} {where}: {exc}")
        if isinstance(exc, AsyncAmpError):
            return exc
        if isinstance(exc, GcsError):
            status, reason = exc.status, exc.reason
            if status == 401:
                cause = f"the credentials from {self.auth_source} were rejected (401 {reason})"
                if run:
                    remedy = f"renew the credentials ({self.auth_source}) and run again"
                    return StorageBlockedError(
                        cause[:1].upper() + cause[1:], f"trying to {action} {where}", remedy
                    )
                return CredentialsError(f"cannot {action} {where}: {cause}")
            if status == 403:
                msg = (
                    f"cannot {action} {where}: access denied for the credentials from "
                    f"{self.auth_source}; they need {permission} (docs/gcs.md has the roles) "
                    f"(403 {reason})"
                )
                if run:
                    remedy = "grant the role and run again"
                    return StorageBlockedError(
                        "Access denied", f"trying to {action} {where}", remedy
                    )
                return CredentialsError(msg)
            if status == 404 and (listing or "bucket" in reason.lower()):  # a listing: no bucket
                if run:
                    cause = f"The bucket {self.bucket} is gone (404)"
                    return StorageBlockedError(
                        cause, f"trying to {action} {where}", "create it and run again", kept=False
                    )
                msg = (
                    f"cannot {action} {where}: the bucket {self.bucket} does not exist; create "
                    "it (async-amp never creates buckets) or fix [gcs] bucket"
                )
                return ConfigError(msg)
            return StorageError(f"GCS could not {action} {where}: {status} {reason}")
        if isinstance(exc, TimeoutError):
            return StorageError(f"GCS did not answer in time to {action} {where}")
        if isinstance(exc, aiohttp.ClientConnectionError):
            return StorageError(
                f"cannot reach {self.endpoint} to {action} {where} ({type(exc).__name__})"
            )
        return StorageError(f"GCS could not {action} {where}: {type(exc).__name__}")


class _Transient(Exception):
    """The token endpoint failed in a way worth another try."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _reason(content: bytes) -> str:
    """GCS's ``{"error": {"message": ...}}``, one line (never a header, never a token)."""
    try:
        found = json.loads(content)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        found = content[:200].decode("utf-8", "replace")
    return " ".join(str(found).split())[:300] or "(no message)"


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None
