"""Where each project's Delta table lives, and the delta-rs storage options to reach it.

- local sink: ``<dir>/<project>/`` (an absolute path);
- S3: ``s3://<bucket>/<prefix>/<project>`` with the S3 sink's settings (``s3_locator``);
- Azure: ``az://<container>/<prefix>/<project>`` with the credentials the Azure sink accepts,
  found the same way (first found wins): ``AZURE_STORAGE_CONNECTION_STRING`` (account key or
  SAS inside it), ``AZURE_STORAGE_SAS_TOKEN`` with ``[azure] account_url``, else
  ``DefaultAzureCredential`` (managed identity, workload identity, ``az login``...), whose
  token is handed to delta-rs as a bearer token, fresh for every call.

- GCS: ``gs://<bucket>/<prefix>/<project>`` with the GCS sink's endpoint and credentials
  (``gcs_options``).

The endpoint is always the account's blob URL (``account_url``, or the connection string's
``BlobEndpoint``): delta-rs then talks to ``<endpoint>/<container>/<path>``, which is right for
Azure and for Azurite on any port (delta-rs' own ``use_emulator`` forces port 10000).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from ...config import AzureConfig, GcsConfig, S3Config
from ...errors import ConfigError
from ..stores.azure import connection_string_parts
from .table import TableLocation

__all__ = ["azure_locator", "gcs_locator", "gcs_options", "local_locator", "s3_locator"]

STORAGE_SCOPE = "https://storage.azure.com/.default"
_ENV_CONNECTION_STRING = "AZURE_STORAGE_CONNECTION_STRING"
_ENV_SAS_TOKEN = "AZURE_STORAGE_SAS_TOKEN"  # noqa: S105 - a variable name, not a secret


def local_locator(root: Path) -> Callable[[str], TableLocation]:
    base = root.expanduser().resolve()
    return lambda project: TableLocation(str(base / project))


def _account_of(url: str) -> str:
    """The account name in ``https://<account>.blob...`` or Azurite's ``http://host:port/<account>``."""
    split = urlsplit(url)
    host = split.hostname or ""
    path = split.path.strip("/")
    if path:  # emulator style: the account is the first path segment
        return path.split("/", 1)[0]
    return host.split(".", 1)[0]


def _endpoint_options(endpoint: str) -> dict[str, str]:
    endpoint = endpoint.rstrip("/")
    options = {"endpoint": endpoint, "account_name": _account_of(endpoint)}
    if endpoint.startswith("http://"):
        options["allow_http"] = "true"
    return options


def azure_options(
    azure: AzureConfig, environ: Mapping[str, str]
) -> tuple[dict[str, str], tuple[str, ...], Callable[[], Mapping[str, str]] | None]:
    """(storage options, secrets to scrub from messages, bearer-token refresher or None)."""
    connection_string = environ.get(_ENV_CONNECTION_STRING, "").strip()
    sas_token = environ.get(_ENV_SAS_TOKEN, "").strip().lstrip("?")
    if connection_string:
        parts = connection_string_parts(connection_string)
        name = parts.get("accountname", "")
        endpoint = parts.get("blobendpoint") or (
            f"{parts.get('defaultendpointsprotocol', 'https')}://{name}.blob."
            f"{parts.get('endpointsuffix', 'core.windows.net')}"
        )
        options = _endpoint_options(endpoint)
        if name:
            options["account_name"] = name
        key, sas = parts.get("accountkey", ""), parts.get("sharedaccesssignature", "")
        if key:
            options["account_key"] = key
        elif sas:
            options["sas_token"] = sas
        else:
            msg = f"{_ENV_CONNECTION_STRING} has neither AccountKey nor SharedAccessSignature"
            raise ConfigError(msg)
        return options, (key, sas), None
    if not azure.account_url:
        msg = (
            "sink 'azure' needs [azure] account_url (https://<account>.blob.core.windows.net) "
            f"or {_ENV_CONNECTION_STRING}"
        )
        raise ConfigError(msg)
    options = _endpoint_options(azure.account_url)
    if sas_token:
        options["sas_token"] = sas_token
        return options, (sas_token,), None
    from azure.identity import DefaultAzureCredential  # noqa: PLC0415 - only when used

    credential = DefaultAzureCredential()

    def token() -> Mapping[str, str]:
        return {"bearer_token": credential.get_token(STORAGE_SCOPE).token}

    return options, (), token


def azure_locator(azure: AzureConfig, environ: Mapping[str, str]) -> Callable[[str], TableLocation]:
    options, secrets, refresh = azure_options(azure, environ)
    prefix = azure.prefix.strip("/")
    base = f"az://{azure.container}/{prefix}" if prefix else f"az://{azure.container}"
    return lambda project: TableLocation(
        f"{base}/{project}", storage_options=options, secrets=secrets, refresh=refresh
    )


def s3_locator(s3: S3Config, environ: Mapping[str, str]) -> Callable[[str], TableLocation]:
    """``s3://<bucket>/<prefix>/<project>`` with the S3 sink's endpoint, region and keys.

    Commits to the log are conditional writes (``If-None-Match``, ``aws_conditional_put =
    etag``): safe for concurrent writers on AWS S3, R2 and MinIO without a lock table."""
    from ..stores.s3_options import object_store_options  # noqa: PLC0415 - only for S3

    options = object_store_options(s3, environ)
    secrets = tuple(
        v for k, v in options.items() if k in ("aws_secret_access_key", "aws_session_token")
    )
    prefix = s3.prefix.strip("/")
    base = f"s3://{s3.bucket}/{prefix}" if prefix else f"s3://{s3.bucket}"
    return lambda project: TableLocation(
        f"{base}/{project}", storage_options=options, secrets=secrets
    )


def gcs_options(gcs: GcsConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """delta-rs' storage options for ``[gcs]``: its endpoint, and the credentials the GCS sink
    uses, for object_store's own GCS client (which speaks the XML API, signs its own JWT with
    a service-account key, refreshes a user's token, or asks the metadata server).

    ``GOOGLE_APPLICATION_CREDENTIALS`` naming a service-account key is passed as
    ``google_service_account``, a gcloud user's file as ``google_application_credentials``;
    without it, object_store finds Application Default Credentials itself (gcloud's file, else
    the metadata server). Only paths: no secret is in the options."""
    from ..stores.gcs_client import credentials_file  # noqa: PLC0415

    options: dict[str, str] = {}
    if gcs.endpoint_url:
        options["google_base_url"] = gcs.endpoint_url.rstrip("/")
        if gcs.endpoint_url.startswith("http://"):
            options["allow_http"] = "true"
    if gcs.anonymous:
        options["google_skip_signature"] = "true"
        return options
    found = credentials_file(environ)
    if found is None:
        return options
    path, kind = found
    if kind == "service_account":
        options["google_service_account"] = path
    elif kind == "authorized_user":
        options["google_application_credentials"] = path
    else:
        msg = (
            f"format 'delta' on GCS cannot use the {kind} credentials that "
            "GOOGLE_APPLICATION_CREDENTIALS names: delta-rs (object_store) signs in only with "
            "a service-account key, a gcloud user's credentials or the metadata server; use "
            "one of those, or format 'parquet'"
        )
        raise ConfigError(msg)
    return options


def gcs_locator(gcs: GcsConfig, environ: Mapping[str, str]) -> Callable[[str], TableLocation]:
    """``gs://<bucket>/<prefix>/<project>`` with ``gcs_options``."""
    options = gcs_options(gcs, environ)
    prefix = gcs.prefix.strip("/")
    base = f"gs://{gcs.bucket}/{prefix}" if prefix else f"gs://{gcs.bucket}"
    return lambda project: TableLocation(f"{base}/{project}", storage_options=options)
