"""The S3 sink's boundary: credentials from the standard AWS chain, and botocore errors made
into one clear line.

Credentials are never read from ``config.toml``. First found wins: ``AWS_ACCESS_KEY_ID`` +
``AWS_SECRET_ACCESS_KEY`` (+ ``AWS_SESSION_TOKEN``) in the environment given to the sink;
``AWS_PROFILE`` (``~/.aws/config`` and ``credentials``: keys, SSO, ``credential_process``, a
role to assume); else botocore's own chain (web identity token, ECS / EKS pod identity, EC2
instance role). Messages name the bucket, the key and where the credentials came from, never
a key id, a secret or a session token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from ...errors import (
    AsyncAmpError,
    ConfigError,
    CredentialsError,
    StorageBlockedError,
    StorageError,
)

__all__ = ["UNREACHABLE", "ErrorTranslator", "credentials_from"]

UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError)

# Codes S3 (and S3-compatible stores) answer when the credentials themselves are wrong.
_REJECTED = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "InvalidSecurity",
    }
)
_DENIED = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"})
_WRONG_REGION = frozenset(
    {
        "PermanentRedirect",
        "301",
        "AuthorizationHeaderMalformed",
        "IllegalLocationConstraintException",
    }
)
_CHAIN = "the AWS credential chain (environment, AWS_PROFILE, web identity, instance role)"


def credentials_from(environ: Mapping[str, str]) -> tuple[dict[str, str], str, str | None]:
    """Keyword arguments for ``create_client``, where they come from, and the profile to use."""
    key = environ.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
    token = environ.get("AWS_SESSION_TOKEN", "").strip()
    if key and secret:
        found = {"aws_access_key_id": key, "aws_secret_access_key": secret}
        if token:
            found["aws_session_token"] = token
        return found, "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY", None
    if key or secret:
        missing = "AWS_SECRET_ACCESS_KEY" if key else "AWS_ACCESS_KEY_ID"
        msg = f"{missing} is not set but its pair is: set both, or neither to use AWS_PROFILE"
        raise ConfigError(msg)
    profile = environ.get("AWS_PROFILE", "").strip() or None
    if profile:
        return {}, f"AWS_PROFILE={profile}", profile
    return {}, _CHAIN, None


class ErrorTranslator:
    """botocore exceptions -> ``CredentialsError`` / ``ConfigError`` / ``StorageError``."""

    def __init__(
        self,
        *,
        bucket: str,
        region: str,
        endpoint_url: str | None,
        auth_source: str,
        secrets: Iterable[str],
    ) -> None:
        self.bucket = bucket
        self.region = region
        self.endpoint_url = endpoint_url
        self.auth_source = auth_source
        self._secrets = tuple(sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True))

    def where(self, key: str | None) -> str:
        target = f"s3://{self.bucket}/{key}" if key else f"bucket {self.bucket}"
        return f"{target} at {self.endpoint_url}" if self.endpoint_url else target

    def translate(
        self, exc: Exception, action: str, key: str | None, permission: str
    ) -> AsyncAmpError:
        where = self.where(key)
        if isinstance(exc, ClientError):
            return self._client_error(exc, action, where, permission)
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            msg = (
                f"no AWS credentials to {action} {where}: {self._line(exc)}; set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with a role"
            )
            return CredentialsError(msg)
        if isinstance(exc, ProfileNotFound):
            msg = f"{self._line(exc)}: check AWS_PROFILE and ~/.aws/config"
            return ConfigError(msg)
        if isinstance(exc, UNREACHABLE):
            endpoint = self.endpoint_url or f"S3 in region {self.region}"
            target = f"s3://{self.bucket}/{key}" if key else f"bucket {self.bucket}"
            kind = "timed out" if isinstance(exc, ConnectTimeoutError) else "connection failed"
            return StorageError(f"cannot reach {endpoint} to {action} {target} ({kind})")
        if isinstance(exc, ReadTimeoutError):
            return StorageError(f"S3 did not answer in time to {action} {where}")
        msg = f"S3 could not {action} {where}: {type(exc).__name__}: {self._line(exc)}"
        return StorageError(msg)

    def during_run(
        self, error: AsyncAmpError, exc: Exception, action: str, key: str | None
    ) -> AsyncAmpError:
        """``error`` as met in staging or a commit, once the run is under way: a bucket gone
        or credentials refused are ``StorageBlockedError`` (the run stops starting hours and
        keeps what it finished, exit 1) instead of a start-up user error."""
        where = self.where(key)
        place = f"trying to {action} {where}"
        code = (
            str(exc.response.get("Error", {}).get("Code", ""))
            if isinstance(exc, ClientError)
            else ""
        )
        if code == "NoSuchBucket":
            cause = f"The bucket {self.bucket} was deleted (NoSuchBucket)"
            remedy = "it went with every hour in it; create it and run again"
            return StorageBlockedError(cause, place, remedy, kept=False)
        if isinstance(error, CredentialsError):
            reason = str(error).split(f"{where}: ", 1)[-1]
            remedy = f"renew the credentials ({self.auth_source}) and run again"
            return StorageBlockedError(reason[:1].upper() + reason[1:], place, remedy)
        return error

    def _client_error(
        self, exc: ClientError, action: str, where: str, permission: str
    ) -> AsyncAmpError:
        error = exc.response.get("Error", {})
        meta = exc.response.get("ResponseMetadata", {})
        code = str(error.get("Code", ""))
        status = meta.get("HTTPStatusCode")
        message = str(error.get("Message", "")).strip()
        text = self._scrub(message.splitlines()[0]) if message else ""
        source = self.auth_source
        if code in _REJECTED:
            msg = f"cannot {action} {where}: the credentials from {source} were rejected ({code})"
            return CredentialsError(msg)
        if code in _DENIED or status == 403:
            msg = (
                f"cannot {action} {where}: access denied for the credentials from {source}; "
                f"they need {permission} (docs/s3.md has the IAM policy) ({code or status})"
            )
            return CredentialsError(msg)
        if code in ("NoSuchBucket",):
            endpoint = self.endpoint_url or f"AWS region {self.region}"
            msg = f"bucket {self.bucket} does not exist at {endpoint}: create it or fix [s3] bucket"
            return ConfigError(msg)
        if code in _WRONG_REGION:
            headers = meta.get("HTTPHeaders", {})
            right = str(error.get("Region") or headers.get("x-amz-bucket-region") or "")
            if right and right != self.region:
                msg = (
                    f"bucket {self.bucket} is in region {right}, not {self.region}: "
                    f'set [s3] region = "{right}"'
                )
                return ConfigError(msg)
            if code != "AuthorizationHeaderMalformed":
                msg = (
                    f"bucket {self.bucket} is not in region {self.region} or not at this "
                    "endpoint: check [s3] region, endpoint_url and addressing_style"
                )
                return ConfigError(msg)
        detail = f"{status} {code}".strip()
        msg = f"S3 could not {action} {where}: {detail}" + (f": {text}" if text else "")
        return StorageError(msg)

    def _line(self, exc: BaseException) -> str:
        lines = str(exc).strip().splitlines()
        return self._scrub(lines[0] if lines else type(exc).__name__)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text
