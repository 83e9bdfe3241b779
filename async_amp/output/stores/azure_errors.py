"""The Azure sink's boundary: SDK errors made into one clear line that names the container and
blob, never a key, a SAS token or a URL's query string.

Rejected or insufficient credentials become ``CredentialsError`` (``StorageBlockedError`` once
the run is under way), everything else ``StorageError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal
from urllib.parse import quote, unquote

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from ...errors import (
    AsyncAmpError,
    CredentialsError,
    StorageBlockedError,
    StorageConflictError,
    StorageError,
)
from ...scrub import scrub, scrub_params

__all__ = [
    "ENV_CONNECTION_STRING",
    "ENV_SAS_TOKEN",
    "AuthKind",
    "AzureErrors",
    "error_code",
    "sas_signatures",
]

# Codes Azure answers when the credential itself is wrong (bad key, bad or expired SAS).
_REJECTED = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "InvalidAuthenticationInfo",
        "NoAuthenticationInformation",
    }
)

AuthKind = Literal["key", "sas", "aad"]
ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
ENV_SAS_TOKEN = "AZURE_STORAGE_SAS_TOKEN"  # noqa: S105 - a variable name, not a secret

_URL_QUERY = re.compile(r"(https?://[^\s?#'\"<>]+)\?[^\s'\"<>]*")


def error_code(exc: HttpResponseError) -> str:
    """The ``x-ms-error-code`` of an answer (``BlobNotFound``, ...), or ``""``."""
    code: Any = getattr(exc, "error_code", None)
    if not code and exc.response is not None:
        headers: Mapping[str, str] = getattr(exc.response, "headers", {})
        code = headers.get("x-ms-error-code")
    return str(getattr(code, "value", code) or "")


def sas_signatures(token: str) -> list[str]:
    """The ``sig=`` values of a SAS token (secrets of their own)."""
    return [v for k, _, v in (p.partition("=") for p in token.split("&")) if k == "sig" and v]


class AzureErrors:
    """SDK exceptions -> ``CredentialsError`` / ``StorageBlockedError`` / ``StorageError``."""

    def __init__(
        self,
        *,
        container: str,
        account_url: str,
        auth: AuthKind,
        auth_source: str,
        secrets: Iterable[str],
    ) -> None:
        self.container_name = container
        self.auth = auth
        self.auth_source = auth_source
        variants = {v for s in secrets if s for v in (s, quote(s, safe=""), unquote(s))}
        self._secrets = tuple(variants)
        self.account_url = self.scrub(account_url.split("?", 1)[0].rstrip("/"))

    def where(self, blob: str | None) -> str:
        """``container/blob at https://account...``: for messages (no query string, no secret)."""
        target = f"{self.container_name}/{blob}" if blob else f"container {self.container_name}"
        return self.scrub(f"{target} at {self.account_url}")

    def translate(
        self, exc: AzureError, action: str, blob: str | None, permission: str, *, run: bool = False
    ) -> AsyncAmpError:
        """Translate an SDK error: ``CredentialsError`` when access is refused, else
        ``StorageError``; the message names the container and blob, never a secret.

        ``run=True`` (staging and commits, once the run is under way): refused access and a
        deleted container are ``StorageBlockedError`` instead: the run keeps what it finished,
        stops starting hours, and says so in one line (exit 1).
        """
        where = self.where(blob)
        if isinstance(exc, HttpResponseError) and exc.response is not None:
            code = error_code(exc)
            status = exc.status_code
            if status in (401, 403) or code in _REJECTED:
                reason = self._denied(code, status, permission)
                if run:
                    remedy = f"renew the credentials ({self.auth_source}) and run again"
                    cause = reason[:1].upper() + reason[1:]
                    return StorageBlockedError(cause, f"trying to {action} {where}", remedy)
                return CredentialsError(f"cannot {action} {where}: {reason}")
            if code == "ContainerNotFound":
                cause = f"The container {self.container_name} was deleted ({status} {code})"
                remedy = (
                    "it went with every hour in it; create it (or keep create_container = true) "
                    "and run again"
                )
                return StorageBlockedError(cause, f"trying to {action} {where}", remedy, kept=False)
            detail = self.first_line(exc)
            hint = ""
            if code == "InvalidBlockList":
                hint = (
                    " (its staged blocks are gone: another run committed this blob meanwhile, "
                    "or they expired)"
                )
            msg = f"Azure Storage could not {action} {where}: {status} {code or detail}{hint}"
            return StorageConflictError(msg) if hint else StorageError(msg)
        if isinstance(exc, ClientAuthenticationError):  # no response: no token could be had
            msg = (
                f"no Azure credential for {where}: DefaultAzureCredential found none "
                f"({self.first_line(exc)}); set {ENV_CONNECTION_STRING} or {ENV_SAS_TOKEN}, "
                "or sign in (az login, managed identity, AZURE_CLIENT_ID/AZURE_TENANT_ID/...)"
            )
            return CredentialsError(msg)
        if isinstance(exc, ServiceRequestError | ServiceResponseError):
            msg = f"cannot reach Azure Storage to {action} {where}: {self.first_line(exc)}"
            return StorageError(msg)
        msg = f"Azure Storage could not {action} {where}: {type(exc).__name__}: "
        return StorageError(msg + self.first_line(exc))

    def _denied(self, code: str, status: int | None, perm: str) -> str:
        source = self.auth_source
        what = f"{status} {code}".strip()
        if code in _REJECTED:
            reason = {
                "key": f"the account key in {source} was rejected",
                "sas": f"the SAS token in {source} was rejected (expired, revoked or wrong)",
                "aad": "the Azure AD token from DefaultAzureCredential was rejected",
            }[self.auth]
            if code == "AuthorizationFailure":
                reason += ", or a firewall / network rule blocks this client"
            return f"{reason} ({what})"
        if code == "AuthorizationPermissionMismatch":
            reason = {
                "key": f"the credentials in {source} lack {perm} permission",
                "sas": (
                    f"the SAS token in {source} lacks {perm} permission (async-amp needs read, "
                    "write, delete and list: sp=rwdl, plus c to create the container)"
                ),
                "aad": (
                    f"the identity lacks {perm} permission: grant it the 'Storage Blob Data "
                    "Contributor' role on the container or account"
                ),
            }[self.auth]
        elif code == "AuthorizationResourceTypeMismatch":
            reason = f"the SAS token in {source} does not cover containers and blobs (srt=co)"
        elif code == "AuthorizationServiceMismatch":
            reason = f"the SAS token in {source} is not valid for the blob service (ss=b)"
        elif code == "AuthorizationSourceIPMismatch":
            reason = f"the SAS token in {source} does not allow this client's IP address"
        elif code == "AuthorizationProtocolMismatch":
            reason = f"the SAS token in {source} does not allow this protocol (http/https)"
        else:
            reason = f"access denied using {source}"
        return f"{reason} ({what})"

    def first_line(self, exc: BaseException) -> str:
        text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        lines = str(text).strip().splitlines()
        return self.scrub(lines[0] if lines else type(exc).__name__)

    def scrub(self, text: str) -> str:
        return scrub_params(_URL_QUERY.sub(r"\1", scrub(text, self._secrets)))
