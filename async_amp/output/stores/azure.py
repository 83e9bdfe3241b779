"""Azure Blob Storage sink: uncommitted blocks while staging, ``commit_block_list`` at commit.

Layout: ``<container>/<prefix>/<project>/date=YYYY-MM-DD/hour=HH/<file>``, plus the same
``_manifest.json`` as the local sink, uploaded last.

How the ``Sink`` contract maps onto blobs:

- Staging: the bytes of a member go into blocks (``stage_block``, ``block_size_mib`` each) as
  they are written: at most one block per member is buffered, nothing is kept whole, no
  temporary file. Each block carries its MD5 (computed in the worker thread, checked by Azure:
  400 Md5Mismatch); with ``blob_content_md5`` the commit also records the MD5 of the whole
  blob (a second pass over every byte, off by default). Staged blocks are
  *uncommitted*: readers never see them; ``get_blob_properties``/``list_blobs`` ignore them.
- Block IDs are ``<attempt uuid>-<index>``, unique per attempt and of one length within a blob,
  so two attempts (a retry, or a second run) staging to the same blob name never mix blocks.
  Committing a blob makes Azure drop the other uncommitted blocks of that blob, so when two runs
  race on the same hour the later commit fails with ``InvalidBlockList`` (a ``StorageError``)
  instead of producing a mixed blob.
- ``commit(manifest)``: delete the old manifest (the hour stops looking done), commit each data
  blob's block list (content settings, metadata), delete stale data blobs of an
  earlier extraction, upload the manifest **last**.
- ``discard()``: drops the buffered bytes. Azure has no call that deletes uncommitted blocks
  without touching a committed blob of the same name; they expire by themselves after 7 days
  (or vanish at the next commit of that blob name), and they are never visible.
- ``prepare()``: creates or checks the container, proves write and delete permission with a
  tiny probe blob, and removes probe blobs left by killed runs.

Every SDK call goes through a bounded retry policy (``retries`` with exponential backoff from
``retry_backoff_s``, capped) and short connect/read timeouts, so a wrong endpoint fails within
seconds, not the SDK's default minute and a half. Azure errors are translated at the boundary
(``azure_errors.py``): rejected or insufficient credentials become ``CredentialsError``,
everything else ``StorageError``, with messages that name the container and blob but never a
key, a SAS token or a URL's query string.

Staging (blocks uploaded as a file is decoded, committed when the hour is whole) is in
``azure_staging.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import ContentSettings
from azure.storage.blob.aio import BlobServiceClient, ContainerClient

from ...config import AzureConfig
from ...errors import AsyncAmpError, ConfigError, StorageError
from ..manifest import MANIFEST_NAME, Manifest, hour_folder
from .azure_errors import (
    ENV_CONNECTION_STRING,
    ENV_SAS_TOKEN,
    AuthKind,
    AzureErrors,
    error_code,
    sas_signatures,
)
from .azure_retry import BoundedRetry
from .azure_staging import AzureStaging
from .parts import MIB, PartPool
from .shared import check_file_name, common_prefix, content_type, join

if TYPE_CHECKING:
    from azure.identity.aio import DefaultAzureCredential

    from .base import Store

__all__ = ["AzureSink", "connection_string_parts"]

# Block buffers of one sink, filling and in flight together: three blocks (two leave four hours
# at c=4 waiting for each other; four 8 MiB ones push the CLI past 150 MB). At the default
# 7 MiB, 21 MiB of it: 8 MiB blocks went as fast and peaked 2-3 MiB higher, at 150-151 MB.
BLOCK_BUDGET = 24 * MIB
PROBE_PREFIX = ".async-amp-probe-"
PROBE_STALE_AFTER = timedelta(hours=1)
DOWNLOAD_CHUNK = 4 * MIB
STORAGE_SCOPE = "https://storage.azure.com/.default"


def connection_string_parts(text: str) -> dict[str, str]:
    """``AccountName=...;AccountKey=...`` as ``{"accountname": ..., "accountkey": ...}``."""
    parts: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            parts[key.strip().lower()] = value.strip()
    return parts


class AzureSink:
    """Writes ``<container>/<prefix>/<project>/date=YYYY-MM-DD/hour=HH/`` blobs.

    Build it with ``from_config``; ``prepare()`` before use, ``aclose()`` (or ``async with``)
    at the end.
    """

    def __init__(
        self,
        service: BlobServiceClient,
        *,
        container: str,
        prefix: str,
        run_id: str,
        create_container: bool = True,
        block_size: int = 7 * MIB,
        blob_content_md5: bool = False,
        auth: AuthKind = "key",
        auth_source: str = ENV_CONNECTION_STRING,
        credential: DefaultAzureCredential | None = None,
        secrets: Iterable[str] = (),
        stall_s: float | None = None,
    ) -> None:
        self.service = service
        self.container: ContainerClient = service.get_container_client(container)
        self.container_name = container
        self.prefix = prefix.strip("/")
        self.run_id = run_id
        self.block_size = block_size
        self.blob_content_md5 = blob_content_md5
        self.parts = PartPool(block_size, BLOCK_BUDGET)
        self.stall_s = stall_s  # a block no byte of leaves for this long times out
        self.read_timeout_s = stall_s  # the same bound on an answer (the run guard's unit)
        self._create_container = create_container
        self._auth_source = auth_source
        self._credential = credential
        self._errors = AzureErrors(
            container=container,
            account_url=service.url,
            auth=auth,
            auth_source=auth_source,
            secrets=secrets,
        )
        self.account_url = self._errors.account_url

    @classmethod
    def from_config(
        cls,
        azure: AzureConfig,
        *,
        run_id: str,
        environ: Mapping[str, str],
        **client_options: Any,
    ) -> Self:
        """Build the client from ``[azure]`` and the credentials in ``environ`` (no network).

        Credentials, first found wins: ``AZURE_STORAGE_CONNECTION_STRING``; a SAS token in
        ``AZURE_STORAGE_SAS_TOKEN`` with ``account_url``; ``account_url`` with
        ``DefaultAzureCredential``. ``client_options`` go to the SDK client as they are
        (tests pass ``raw_request_hook`` or ``transport``).
        """
        options: dict[str, Any] = {
            "retry_policy": BoundedRetry(retries=azure.retries, first_s=azure.retry_backoff_s),
            "connection_timeout": azure.connect_timeout_s,
            "read_timeout": azure.read_timeout_s,
            "max_block_size": azure.block_size_mib * MIB,
            "max_single_put_size": azure.max_single_put_mib * MIB,
            "max_single_get_size": DOWNLOAD_CHUNK,
            "max_chunk_get_size": DOWNLOAD_CHUNK,
            **client_options,
        }
        common: dict[str, Any] = {
            "container": azure.container,
            "prefix": azure.prefix,
            "run_id": run_id,
            "create_container": azure.create_container,
            "block_size": azure.block_size_mib * MIB,
            "blob_content_md5": azure.blob_content_md5,
            "stall_s": azure.read_timeout_s,
        }
        account_url: str | None = azure.account_url
        if account_url and ("?" in account_url or "sig=" in account_url.lower()):
            msg = (
                "[azure] account_url must not carry a SAS token: put the token in "
                f"{ENV_SAS_TOKEN} and keep only https://<account>.blob.core.windows.net"
            )
            raise ConfigError(msg)
        connection_string = environ.get(ENV_CONNECTION_STRING, "").strip()
        sas_token = environ.get(ENV_SAS_TOKEN, "").strip().lstrip("?")
        if connection_string:
            parts = connection_string_parts(connection_string)
            key = parts.get("accountkey", "")
            sas = parts.get("sharedaccesssignature", "")
            try:
                service = BlobServiceClient.from_connection_string(connection_string, **options)
            except (ValueError, TypeError):
                msg = (
                    f"{ENV_CONNECTION_STRING} is not a valid storage connection string: expected "
                    "'DefaultEndpointsProtocol=https;AccountName=...;AccountKey=...;"
                    "EndpointSuffix=core.windows.net' (Azure portal > storage account > "
                    "Access keys)"
                )
                raise ConfigError(msg) from None
            return cls(
                service,
                auth="key" if key else "sas",
                auth_source=ENV_CONNECTION_STRING,
                secrets=(key, sas, *sas_signatures(sas)),
                **common,
            )
        if not account_url:
            msg = (
                f"sink 'azure' needs [azure] account_url (https://<account>.blob.core.windows.net) "
                f"or {ENV_CONNECTION_STRING}"
            )
            raise ConfigError(msg)
        if sas_token:
            service = BlobServiceClient(account_url, credential=sas_token, **options)
            return cls(
                service,
                auth="sas",
                auth_source=ENV_SAS_TOKEN,
                secrets=(sas_token, *sas_signatures(sas_token)),
                **common,
            )
        from azure.identity.aio import DefaultAzureCredential  # noqa: PLC0415 - only when used

        credential = DefaultAzureCredential()
        service = BlobServiceClient(account_url, credential=credential, **options)
        return cls(
            service,
            auth="aad",
            auth_source="DefaultAzureCredential",
            credential=credential,
            **common,
        )

    # --- the Sink protocol -------------------------------------------------------------------

    def describe(self) -> str:
        return "azure://" + join(self.service.account_name or "", self.container_name, self.prefix)

    async def prepare(self) -> None:
        try:
            await self._prepare()
        except StorageError as exc:
            if isinstance(exc.__cause__, ServiceRequestError | ServiceResponseError):
                msg = f"{exc}: check [azure] account_url and the network"
                raise ConfigError(msg) from exc.__cause__
            raise

    async def _prepare(self) -> None:
        if self._credential is not None:  # one clear line now, not a retried failure later
            try:
                await self._credential.get_token(STORAGE_SCOPE)
            except ClientAuthenticationError as exc:
                raise self.error(exc, "authenticate to", None, "read") from None
        create_denied = False
        if self._create_container:
            try:
                await self.container.create_container()
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if exc.status_code != 403:
                    raise self.error(exc, "create", None, "create") from exc
                # Not allowed to create containers (a container SAS, a data role on one
                # container): it may exist anyway. The listing below, with the same
                # credential, tells a missing container from a rejected credential.
                create_denied = True
            except AzureError as exc:
                raise self.error(exc, "create", None, "create") from exc

        probe_prefix = self.name(PROBE_PREFIX)
        try:
            probes = [
                (blob.name, blob.last_modified)
                async for blob in self.container.list_blobs(name_starts_with=probe_prefix)
            ]
        except ResourceNotFoundError:
            where = f"container {self.container_name} does not exist at {self.account_url}"
            if create_denied:
                msg = (
                    f"{where} and the credentials in {self._auth_source} may not create it; "
                    "create it, or use credentials allowed to (a SAS needs c permission)"
                )
            else:
                msg = f"{where}; create it or set create_container = true"
            raise ConfigError(msg) from None
        except AzureError as exc:
            raise self.error(exc, "list", None, "list") from exc

        probe_name = self.name(f"{PROBE_PREFIX}{uuid.uuid4().hex[:8]}-{self.run_id}")
        probe = self.container.get_blob_client(probe_name)
        try:
            await probe.upload_blob(b"async-amp write check\n", overwrite=True)
        except AzureError as exc:
            raise self.error(exc, "write", probe_name, "write") from exc
        try:
            await probe.delete_blob()
        except AzureError as exc:
            raise self.error(exc, "delete", probe_name, "delete") from exc

        cutoff = datetime.now(UTC) - PROBE_STALE_AFTER
        for name, modified in probes:  # left by killed runs
            if modified is not None and modified < cutoff:
                await self.delete_blob(name)

    async def completed_hours(self, project: str, hours: Iterable[datetime]) -> set[datetime]:
        """One listing: the longest prefix shared by every wanted manifest name."""
        wanted = {f"{self.hour_prefix(project, h)}/{MANIFEST_NAME}": h for h in hours}
        if not wanted:
            return set()
        start = common_prefix(wanted)
        done: set[datetime] = set()
        try:
            async for blob in self.container.list_blobs(name_starts_with=start):
                hour = wanted.get(blob.name)
                if hour is not None:
                    done.add(hour)
        except AzureError as exc:
            raise self.error(exc, "list", start + "*", "list") from exc
        return done

    async def read_manifest(self, project: str, hour: datetime) -> Manifest | None:
        name = f"{self.hour_prefix(project, hour)}/{MANIFEST_NAME}"
        try:
            downloader = await self.container.get_blob_client(name).download_blob(decompress=False)
            data = await downloader.readall()
        except ResourceNotFoundError as exc:
            if error_code(exc) == "BlobNotFound":
                return None
            raise self.error(exc, "read", name, "read") from exc
        except AzureError as exc:
            raise self.error(exc, "read", name, "read") from exc
        return Manifest.loads(data)

    def stage(self, project: str, hour: datetime) -> AzureStaging:
        return AzureStaging(self, project, hour)

    async def aclose(self) -> None:
        await self.service.close()
        if self._credential is not None:
            await self._credential.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- reading back, for verify / status -----------------------------------------------------

    async def list_files(self, project: str, hour: datetime) -> list[str]:
        """The data files directly in the hour's folder (not the manifest), sorted."""
        names = await self.list_names(self.hour_prefix(project, hour))
        return sorted(n for n in names if n != MANIFEST_NAME)

    async def iter_file(self, project: str, hour: datetime, name: str) -> AsyncIterator[bytes]:
        """The stored bytes of one file of an hour, as they are (never decompressed)."""
        check_file_name(name)
        async for chunk in self.stream_object(f"{self.hour_prefix(project, hour)}/{name}"):
            yield chunk

    async def stream_object(self, blob_name: str) -> AsyncIterator[bytes]:
        """Any blob's stored bytes, in chunks (never decompressed)."""
        try:
            blob = self.container.get_blob_client(blob_name)
            downloader = await blob.download_blob(decompress=False)
            async for chunk in downloader.chunks():
                yield chunk
        except AzureError as exc:
            raise self.error(exc, "read", blob_name, "read") from exc

    # --- helpers shared with the staging classes -------------------------------------------------

    def name(self, path: str) -> str:
        return join(self.prefix, path)

    def hour_prefix(self, project: str, hour: datetime) -> str:
        return self.name(hour_folder(project, hour))

    def where(self, blob: str | None) -> str:
        """``container/blob at https://account...``: for messages (no query string, no secret)."""
        return self._errors.where(blob)

    async def list_names(self, folder: str, *, run: bool = False) -> list[str]:
        start = folder + "/"
        try:
            names = [
                blob.name[len(start) :]
                async for blob in self.container.list_blobs(name_starts_with=start)
            ]
        except AzureError as exc:
            raise self.error(exc, "list", start + "*", "list", run=run) from exc
        return [n for n in names if "/" not in n]

    async def delete_blob(self, name: str, *, run: bool = False) -> None:
        """Delete a blob (and its snapshots); one that is already gone is fine."""
        try:
            await self.container.get_blob_client(name).delete_blob(delete_snapshots="include")
        except ResourceNotFoundError as exc:
            if error_code(exc) != "BlobNotFound":
                raise self.error(exc, "delete", name, "delete", run=run) from exc
        except AzureError as exc:
            raise self.error(exc, "delete", name, "delete", run=run) from exc

    # --- single objects (the Store protocol) ---------------------------------------------------

    spool_dir = None

    @property
    def elsewhere(self) -> str:
        return "another [azure] prefix or container"

    async def read_object(self, path: str) -> bytes | None:
        name = self.name(path)
        try:
            downloader = await self.container.get_blob_client(name).download_blob(decompress=False)
            return await downloader.readall()
        except ResourceNotFoundError as exc:
            if error_code(exc) in ("BlobNotFound", "ContainerNotFound"):  # before prepare()
                return None
            raise self.error(exc, "read", name, "read") from exc
        except AzureError as exc:
            raise self.error(exc, "read", name, "read") from exc

    async def put_object(self, path: str, data: bytes) -> None:
        name = self.name(path)
        settings = ContentSettings(content_type=content_type(name))
        try:  # one Put Blob: readers see the whole blob or none
            await self.container.get_blob_client(name).upload_blob(
                data, overwrite=True, content_settings=settings
            )
        except AzureError as exc:
            raise self.error(exc, "write", name, "write") from exc

    async def delete_object(self, path: str) -> None:
        await self.delete_blob(self.name(path))

    async def list_under(self, prefix: str, *, limit: int) -> list[str]:
        start = self.name(prefix) + "/"
        found: list[str] = []
        try:
            async for blob in self.container.list_blobs(name_starts_with=start):
                found.append(blob.name[len(start) :])
                if len(found) >= limit:
                    break
        except ResourceNotFoundError:  # no container yet: nothing under any prefix
            return []
        except AzureError as exc:
            raise self.error(exc, "list", start + "*", "list") from exc
        return found

    def error(
        self, exc: AzureError, action: str, blob: str | None, permission: str, *, run: bool = False
    ) -> AsyncAmpError:
        """Translate an SDK error (``azure_errors.AzureErrors.translate``): ``run=True`` in
        staging and commits, once the run is under way."""
        return self._errors.translate(exc, action, blob, permission, run=run)


if TYPE_CHECKING:
    _conforms: type[Store] = AzureSink  # mypy proves AzureSink implements the Store protocol
