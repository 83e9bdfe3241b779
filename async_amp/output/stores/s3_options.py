"""``[s3]`` as the storage options of delta-rs (and of any other object_store-based reader).

delta-rs talks to S3 through the Rust ``object_store`` crate, not botocore: it needs the
endpoint, region, addressing style and credentials spelled its own way, and it reads neither
``~/.aws/config`` profiles nor SSO. ``object_store_options`` gives it exactly what the S3 sink
uses:

- the region and, for S3-compatible stores, the endpoint (``allow_http`` for a plain
  ``http://`` one, such as a local MinIO or the test server);
- path or virtual-hosted addressing as ``[s3] addressing_style`` says;
- ``conditional_put = etag``: commits to the Delta log are conditional writes
  (``If-None-Match``), which AWS S3 (since 2024), R2 and MinIO honour, so concurrent writers
  are safe without a DynamoDB locking provider (delta-rs 1.x dropped that);
- credentials from the same chain as the sink: the ``AWS_*`` keys of the environment given, or
  the profile's resolved (possibly temporary) keys; with neither, nothing, and object_store
  finds web identity / ECS / instance-role credentials itself.
"""

from __future__ import annotations

from collections.abc import Mapping

from ...config import S3Config
from .s3_errors import credentials_from

__all__ = ["object_store_options"]


def object_store_options(config: S3Config, environ: Mapping[str, str]) -> dict[str, str]:
    """``storage_options`` for ``deltalake`` / object_store matching ``[s3]`` and ``environ``."""
    region = (
        config.region
        or environ.get("AWS_REGION")
        or environ.get("AWS_DEFAULT_REGION")
        or "us-east-1"
    )
    options = {"aws_region": region, "aws_conditional_put": "etag"}
    if config.endpoint_url:
        options["aws_endpoint_url"] = config.endpoint_url.rstrip("/")
        if config.endpoint_url.startswith("http://"):
            options["aws_allow_http"] = "true"
    if config.addressing_style != "auto":
        virtual = "true" if config.addressing_style == "virtual" else "false"
        options["aws_virtual_hosted_style_request"] = virtual
    credentials, _, profile = credentials_from(environ)
    if profile:
        credentials = _profile_credentials(profile)
    options.update(credentials)
    return options


def _profile_credentials(profile: str) -> dict[str, str]:
    """The keys a botocore profile resolves to now (SSO, role, credential_process included)."""
    import botocore.session  # noqa: PLC0415 - only when a profile is used

    resolved = botocore.session.Session(profile=profile).get_credentials()
    if resolved is None:
        return {}
    frozen = resolved.get_frozen_credentials()
    found = {
        "aws_access_key_id": frozen.access_key or "",
        "aws_secret_access_key": frozen.secret_key or "",
    }
    if frozen.token:
        found["aws_session_token"] = frozen.token
    return found
