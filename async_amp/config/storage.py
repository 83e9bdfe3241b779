"""The storage sections of the configuration: ``[azure]``, ``[s3]`` and ``[gcs]`` (declared like
every section, see ``async_amp.config``; the local sink needs only ``[output] dir``). What the
chosen sink needs of them is checked by ``[output]`` (``OutputConfig.problems``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .keys import key
from .values import (
    Check,
    boolean,
    bucket,
    choice,
    container,
    integer,
    number,
    path,
    prefix,
    text,
    url,
)
from .values import prefix as folder_prefix  # ``prefix`` is also a field of SourceConfig

__all__ = ["AzureConfig", "GcsConfig", "S3Config", "SourceConfig", "storage_problems"]


@dataclass(frozen=True, slots=True)
class AzureConfig:
    """``[azure]``: the container, when ``[output] sink = "azure"``."""

    account_url: str | None = key(
        None,
        url,
        "`https://<account>.blob.core.windows.net`. Required unless "
        "`AZURE_STORAGE_CONNECTION_STRING` is set. Never put a SAS token in it: use "
        "`AZURE_STORAGE_SAS_TOKEN`.",
    )
    container: str = key(
        "amplitude",
        container,
        "Container name: 3-63 lowercase letters, digits and single dashes.",
    )
    prefix: str = key(
        "amplitude",
        prefix,
        'Folder inside the container under which the projects go; `""` for the container\'s root.',
    )
    create_container: bool = key(
        True,
        boolean,
        "Create the container when it does not exist (needs the permission to). `false`: it "
        "must exist.",
    )
    block_size_mib: int = key(
        7,
        integer(1, 256),
        "Size of the blocks a data file is uploaded in, as it is decoded (a file has one "
        "block in flight while the next fills). Blocks come out of 24 MiB of buffers shared "
        "by the whole run (at least two blocks), whatever the concurrency; a blob holds at "
        "most 50,000 blocks, so the largest file is 50,000 x this.",
    )
    blob_content_md5: bool = key(
        False,
        boolean,
        "Also record each data blob's MD5 as its `Content-MD5` property, at the cost of a "
        "second MD5 pass over every byte (about a fifth of the sink's CPU). Every block is "
        "checked by its own MD5 on upload either way; the manifest records each file's sha256.",
    )
    max_single_put_mib: int = key(
        8,
        integer(1, 5000),
        "Uploads up to this size (manifests, small files) go in one request; larger ones in "
        "blocks.",
    )
    retries: int = key(
        3,
        integer(0, 10),
        "Retries of a storage call that failed on the network or was throttled (503 "
        "ServerBusy, 500), with exponential backoff.",
    )
    retry_backoff_s: float = key(
        1.0,
        number(0),
        "First wait between those retries, doubling each time, capped at 30 s.",
    )
    connect_timeout_s: float = key(
        10.0,
        number(0, strict=True),
        "Connect timeout of storage calls, in seconds: a wrong `account_url` fails in seconds.",
    )
    read_timeout_s: float = key(
        15.0,
        number(0, strict=True),
        "Longest silence of a storage call, in seconds: no answer once the request is sent, or "
        "no byte of an upload taken (a slow upload that moves goes on). A call that times out "
        "is tried once more, not `retries` times: a stalled store stops the run in about a "
        "minute.",
    )


@dataclass(frozen=True, slots=True)
class S3Config:
    """``[s3]``: the bucket, when ``[output] sink = "s3"`` (credentials: the AWS chain)."""

    bucket: str | None = key(
        None,
        bucket,
        'The bucket (required with `sink = "s3"`); it must exist: async-amp never creates buckets.',
    )
    prefix: str = key(
        "amplitude",
        prefix,
        'Folder inside the bucket under which the projects go; `""` for the bucket\'s root.',
    )
    region: str | None = key(
        None,
        text,
        "The bucket's region, e.g. `eu-west-1`; default `AWS_REGION`, then "
        "`AWS_DEFAULT_REGION`, then `us-east-1`. R2 and GCS take `auto`.",
    )
    endpoint_url: str | None = key(
        None,
        url,
        "An S3-compatible store's endpoint: `http://minio:9000`, "
        "`https://<account>.r2.cloudflarestorage.com`, `https://s3.<region>.backblazeb2.com`, "
        "`https://storage.googleapis.com`; none for AWS. See [s3.md](s3.md).",
    )
    addressing_style: str = key(
        "auto",
        choice("auto", "path", "virtual"),
        "`path` (`host/bucket/key`) for MinIO and most self-hosted stores, `virtual` "
        "(`bucket.host/key`); `auto` lets botocore pick (virtual on AWS).",
    )
    part_size_mib: int = key(
        5,
        integer(5, 5 * 1024),
        "Size of the multipart-upload parts a data file is sent in, as it is decoded (a file "
        "has one part in flight while the next fills). Parts come out of 16 MiB of buffers "
        "shared by the whole run (at least two parts), whatever the concurrency. An object "
        "holds at most 10,000 parts, so the largest file is 10,000 x this.",
    )
    retries: int = key(
        3,
        integer(0, 10),
        "Retries of a storage call that failed on the network, was throttled (503 SlowDown) "
        "or failed on the server (500), with botocore's standard backoff.",
    )
    connect_timeout_s: float = key(
        5.0,
        number(0, strict=True),
        "Connect timeout of storage calls, in seconds: a wrong `endpoint_url` fails in seconds.",
    )
    read_timeout_s: float = key(
        15.0,
        number(0, strict=True),
        "Longest silence of a storage call, in seconds: no answer once the request is sent, or "
        "no byte of a part taken (a slow upload that moves goes on). botocore tries a call "
        "that timed out `retries` more times: a stalled store costs each call up to "
        "(retries + 1) x this.",
    )


def _gcs_bucket(value: object) -> str:
    name = text(value)
    allowed = all(c.islower() or c.isdigit() or c in "-_." for c in name)
    if not (3 <= len(name) <= 222 and allowed and name[0].isalnum() and name[-1].isalnum()):
        msg = (
            "must be a GCS bucket name (3-222 lowercase letters, digits, dashes, underscores "
            f"and dots), not {value!r}"
        )
        raise ValueError(msg)
    return str(name)


gcs_bucket = Check(_gcs_bucket, "string")


@dataclass(frozen=True, slots=True)
class GcsConfig:
    """``[gcs]``: the bucket, when ``[output] sink = "gcs"`` (credentials: a service-account
    key file or Application Default Credentials)."""

    bucket: str | None = key(
        None,
        gcs_bucket,
        'The bucket (required with `sink = "gcs"`); it must exist: async-amp never creates '
        "buckets.",
    )
    prefix: str = key(
        "amplitude",
        prefix,
        'Folder inside the bucket under which the projects go; `""` for the bucket\'s root.',
    )
    endpoint_url: str | None = key(
        None,
        url,
        "Another endpoint than `https://storage.googleapis.com`: an emulator "
        "(`http://127.0.0.1:4443`) or a private endpoint. The sink uses its JSON API, Delta "
        "tables (delta-rs) its XML API. See [gcs.md](gcs.md).",
    )
    anonymous: bool = key(
        False,
        boolean,
        "Send no credentials at all: only for an emulator that takes none.",
    )
    chunk_size_mib: int = key(
        8,
        integer(1, 1024),
        "Size of the resumable-upload chunks a data file is sent in, as it is decoded (a file "
        "has one chunk in flight while the next fills). Chunks come out of 16 MiB of buffers "
        "shared by the whole run (at least two), whatever the concurrency.",
    )
    retries: int = key(
        3,
        integer(0, 10),
        "Retries of a storage call that failed on the network, was throttled (429) or failed "
        "on the server (5xx), with exponential backoff; a chunk resumes where GCS says it "
        "stopped.",
    )
    connect_timeout_s: float = key(
        5.0,
        number(0, strict=True),
        "Connect timeout of storage calls, in seconds: a wrong `endpoint_url` fails in seconds.",
    )
    read_timeout_s: float = key(
        15.0,
        number(0, strict=True),
        "Longest silence of a storage call, in seconds: no answer once the request is sent, or "
        "no byte of a chunk taken (a slow upload that moves goes on). A call that times out "
        "is tried once more, not `retries` times: a stalled store stops the run in about a "
        "minute.",
    )


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """``[source]``: where the events come from: the Export API, or Amplitude's own recurring
    export already in a store (docs/cloud-export.md)."""

    kind: str = key(
        "export_api",
        choice("export_api", "cloud_export"),
        "`export_api` asks Amplitude's Export API; `cloud_export` reads the hourly files "
        "Amplitude's recurring export wrote to a folder or bucket (no 4 GB limit, no API keys).",
    )
    store: str = key(
        "local",
        choice("local", "s3", "gcs", "azure"),
        "Where the cloud export lies: a local folder (`dir`), an S3 bucket (`bucket`, with "
        "`[s3]`'s endpoint, region and credentials), a GCS bucket (`bucket`, with `[gcs]`'s) or "
        "an Azure container (`bucket`: the container's name, with `[azure]`'s account URL and "
        "credentials).",
    )
    dir: Path = key(
        Path("export"),
        path,
        "The folder of a local cloud export.",
    )
    bucket: str | None = key(
        None,
        text,
        'The bucket Amplitude exports to (`store = "s3"` or `"gcs"`), or the container '
        '(`store = "azure"`).',
    )
    prefix: str = key(
        "",
        prefix,
        "The folder inside the bucket (or `dir`) that holds the export's files.",
    )
    project_id: str | None = key(
        None,
        text,
        "Amplitude's numeric project ID the files are named after; none: the one ID the export "
        "holds. Files of other projects, and names that are not the export's, are reported and "
        "left alone.",
    )
    merged_ids_prefix: str | None = key(
        None,
        folder_prefix,
        "The folder holding Amplitude's merged-IDs feed (`-<OrgID>_<date>_<H>.json.gz`), read "
        "into the `merged_ids` table; none: the export's own `prefix` (where Amplitude puts "
        "both when they share a destination).",
    )
    settle_minutes: int = key(
        60,
        integer(0, 7 * 24 * 60),
        "An hour is read once a later hour's files exist, or this long after the hour ended.",
    )


def storage_problems(
    sink: str, azure: AzureConfig, s3: S3Config, gcs: GcsConfig, environ: Mapping[str, str]
) -> list[str]:
    """What the chosen sink needs of its section (``[output]``'s check across sections)."""
    found = []
    connection_string = environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if sink == "azure" and not azure.account_url and not connection_string:
        found.append("sink 'azure' needs [azure] account_url (or AZURE_STORAGE_CONNECTION_STRING)")
    if sink == "s3" and not s3.bucket:
        found.append("sink 's3' needs [s3] bucket")
    if sink == "gcs" and not gcs.bucket:
        found.append("sink 'gcs' needs [gcs] bucket")
    return found
