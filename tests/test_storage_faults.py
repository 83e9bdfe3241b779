"""Storage that fails under a run: a real file system that fills up, a folder made read-only
or removed mid-run, an Azure container deleted and a SAS revoked mid-run.

The promise (docs/reliability.md, "When the run cannot go on"): the hours finished stay
complete and verifiable, the hour in flight leaves nothing visible, the run stops starting new
hours, one line names the cause, the place and what to do, exit 1, no traceback; the rerun
after the fix asks only for the missing hours and ends identical to an undisturbed run.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from azure.storage.blob import AccessPolicy, ContainerSasPermissions, generate_container_sas
from azure.storage.blob import BlobServiceClient as SyncBlobServiceClient

from async_amp.config import AzureConfig, S3Config
from async_amp.errors import CredentialsError, StorageBlockedError, StorageError, os_storage_error
from async_amp.hours import hour_range
from async_amp.output.manifest import MANIFEST_NAME as MANIFEST
from async_amp.output.stores.azure import AzureSink
from async_amp.output.stores.local import LocalSink
from async_amp.output.stores.s3 import S3Sink
from async_amp.simulator.background import BackgroundSimulator
from async_amp.simulator.server import RequestInfo, run_simulator

from .azurite import Azurite
from .filesystems import mounted_tmpfs
from .helpers import (
    DAY1,
    KEY,
    SECRET,
    assert_output_matches,
    cli_extract,
    last_hour_of,
    make_config,
    run,
    small_dataset,
)
from .s3 import REGION, S3ServerProcess, admin_client
from .test_s3_sink import client_error, translator

pytestmark = pytest.mark.anyio

LAST12 = DAY1 + timedelta(hours=11)


def on_request(number: int, action: Callable[[], None]) -> Callable[[RequestInfo], None]:
    """A simulator fault plan that injects no fault: it runs ``action`` when request ``number``
    arrives (before answering it), to break the storage at a known point of the run."""
    seen = [0]

    def plan(info: RequestInfo) -> None:
        seen[0] += 1
        if seen[0] == number:
            action()

    return plan


def manifests(root: Path) -> list[Path]:
    """The committed hours' manifests. Not ``rglob``: a run renames staging folders away
    while this walks (from the simulator's thread), and a vanished folder fails the walk."""
    return sorted(root.glob("website/date=*/hour=*/_manifest.json"))


def assert_visible_hours_whole(root: Path) -> None:
    """Every hour folder a reader sees has a manifest listing exactly its files."""
    for folder in root.glob("website/date=*/hour=*"):
        names = {p.name for p in folder.iterdir()}
        assert "_manifest.json" in names, f"{folder}: files without a manifest"
        listed = {f["name"] for f in json.loads((folder / "_manifest.json").read_text())["files"]}
        assert names - {"_manifest.json"} == listed, folder


# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("code", "cause", "remedy"),
    [
        (errno.ENOSPC, "No space left on device", "free space and run again"),
        (errno.EDQUOT, "Disk quota exceeded", "free space or raise the quota and run again"),
        (errno.EROFS, "Read-only file system", "make the file system writable"),
        (errno.EACCES, "Permission denied", "restore write permission"),
        (errno.EPERM, "Operation not permitted", "restore write permission"),
    ],
)
def test_each_blocking_errno_gets_its_cause_and_remedy(code: int, cause: str, remedy: str) -> None:
    error = os_storage_error(OSError(code, os.strerror(code)), "writing /data/website/x")
    assert isinstance(error, StorageBlockedError)
    line = error.line(3, 24)
    assert line.startswith(f"{cause} writing /data/website/x: 3 of 24 hours complete; {remedy}")
    assert line.endswith(", completed hours are kept")


def test_transient_errors_stay_retried_and_a_removed_root_is_not_kept() -> None:
    for code in (errno.EIO, errno.ENOENT, errno.EBUSY):
        error = os_storage_error(OSError(code, os.strerror(code)), "writing /d")
        assert type(error) is StorageError, code
    gone = os_storage_error(
        OSError(errno.ENOENT, "No such file or directory"), "writing /d", root_exists=False
    )
    assert isinstance(gone, StorageBlockedError) and not gone.kept
    assert gone.line(2, 5) == (
        "No such file or directory writing /d: the output folder was removed, with every hour "
        "in it; recreate (or remount) it and run again"
    )


# --------------------------------------------------------------------------- a disk that fills up


def test_disk_full_stops_with_one_line_and_the_rerun_is_identical(tmp_path: Path) -> None:
    dataset = small_dataset()  # about 100 KB per hour
    with (
        mounted_tmpfs(tmp_path / "disk", 512 * 1024) as disk,
        BackgroundSimulator(dataset, api_key=KEY, secret_key=SECRET) as sim,
    ):
        out = disk.path / "data"
        args = ("--start", "2026-11-01", "--end", "2026-11-01T23", "--concurrency", "2")
        done = cli_extract(sim.base_url, out, *args, logs=tmp_path / "logs")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        stopped = [line for line in done.stdout.splitlines() if "STOPPED" in line]
        assert len(stopped) == 1, done.stdout
        complete = len(manifests(out))
        assert 1 <= complete < 24
        pattern = (
            rf"  STOPPED website: No space left on device (?:writing|committing) {re.escape(str(out))}/website/"
            rf"date=2026-11-01/hour=\d\d: {complete} of 24 hours complete; free space and run "
            r"again, completed hours are kept"
        )
        assert re.fullmatch(pattern, stopped[0]), stopped[0]
        assert "FAILED" not in done.stdout
        requests = sim.request_count()
        # no hour started once the disk was full: at most the two streaming and the two
        # committing (a commit gives its request slot back) when it filled up
        assert requests <= complete + 2 * 2
        assert_visible_hours_whole(out)

        disk.resize(16 * 1024 * 1024)  # the operator frees space
        sim.reset_log()
        again = cli_extract(sim.base_url, out, *args, logs=tmp_path / "logs")
        assert again.returncode == 0, again.stdout + again.stderr
        assert sim.request_count() == 24 - complete  # finished hours are not asked again
        assert_output_matches(out, dataset, DAY1, last_hour_of(DAY1))
        assert not (out / ".async-amp-staging").exists()


# --------------------------------------------------------------------------- permission lost

# root without the capabilities that override permission bits obeys them like any user
NO_OVERRIDE = "-dac_override,-dac_read_search,-fowner"
SETPRIV = ("setpriv", f"--bounding-set={NO_OVERRIDE}", f"--inh-caps={NO_OVERRIDE}")


def test_write_permission_lost_mid_run_stops_and_the_rerun_completes(tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to run the CLI without CAP_DAC_OVERRIDE")
    dataset = small_dataset()
    out = tmp_path / "data"
    revoked: list[str] = []  # what revoke() met: it runs in the simulator's thread

    def revoke() -> None:  # what an operator's chmod -R a-w (or a changed ACL) does
        # Request 5 (hour 04) may arrive while hours 00-03 are still committing (a commit gives
        # its request slot back; on a loaded machine several can be pending). chmod -R racing
        # those renames fails on a folder renamed away mid-walk, and how many hours end complete
        # would depend on timing. Once their four manifests are there, the run only waits for
        # this answer: chmod walks a tree nobody changes, and the outcome is one and the same.
        deadline = time.monotonic() + 60  # a guard against a hang, not a timing: it takes ms
        while len(manifests(out)) < 4:
            if time.monotonic() > deadline:
                revoked.append(f"hours 00-03 not committed: {manifests(out)}")
                return
            time.sleep(0.01)
        chmod = subprocess.run(
            ["chmod", "-R", "a-w", str(out)], check=False, capture_output=True, text=True
        )
        revoked.append(chmod.stderr if chmod.returncode else "revoked")

    args = ("--start", "2026-11-01T00", "--end", "2026-11-01T11", "--concurrency", "1")
    with BackgroundSimulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=on_request(5, revoke)
    ) as sim:
        done = cli_extract(sim.base_url, out, *args, logs=tmp_path / "logs", wrapper=SETPRIV)
        assert revoked == ["revoked"]
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        stopped = [line for line in done.stdout.splitlines() if "STOPPED" in line]
        assert len(manifests(out)) == 4
        assert stopped == [
            f"  STOPPED website: Permission denied writing {out}/website/date=2026-11-01/hour=04:"
            " 4 of 12 hours complete; restore write permission (or pick another --output) and run"
            " again, completed hours are kept"
        ], done.stdout
        assert sim.request_count() == 5

        subprocess.run(["chmod", "-R", "u+w", str(out)], check=True)  # the operator fixes it
        sim.reset_log()
        again = cli_extract(sim.base_url, out, *args, logs=tmp_path / "logs", wrapper=SETPRIV)
        assert again.returncode == 0, again.stdout + again.stderr
        assert sim.request_count() == 12 - 4
    assert_output_matches(out, dataset, DAY1, LAST12)
    assert not (out / ".async-amp-staging").exists()


# --------------------------------------------------------------------------- folders that go away


async def test_output_made_read_only_mid_run_stops_and_the_rerun_completes(
    tmp_path: Path,
) -> None:
    dataset = small_dataset()
    with mounted_tmpfs(tmp_path / "disk", 64 * 1024 * 1024) as disk:
        out = disk.path / "data"
        out.mkdir()
        plan = on_request(5, lambda: disk.read_only(out))
        async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
            config = make_config(sim.base_url, out, concurrency=1)
            summary = await run(config, DAY1, LAST12)
            assert summary.exit_code == 1 and not summary.failed
            complete = len(manifests(out))  # hours 2, 3 may still be committing at request 5
            assert complete in (2, 3, 4)
            assert re.fullmatch(
                rf"Read-only file system (writing|committing) {re.escape(str(out))}/website/"
                rf"date=2026-11-01/hour=0[234]: {complete} of 12 hours complete; make the file "
                r"system writable \(or pick another --output\) and run again, completed hours "
                r"are kept",
                summary.stopped,
            ), summary.stopped
            assert sim.request_count() == 5  # not one hour started after
            assert_visible_hours_whole(out)

            disk.read_only(out, on=False)
            sim.reset_log()
            rerun = LocalSink(out, run_id="rerun", fsync=False)  # a new run, as from the CLI
            again = await run(config, DAY1, LAST12, sink=rerun)
            assert again.exit_code == 0 and sim.request_count() == 12 - complete
        assert_output_matches(out, dataset, DAY1, LAST12)
        # the rerun left nothing; the stopped run could not remove its staging from a read-only
        # folder, and as its owner (this process) is alive, only a later run will
        assert [p.name for p in (out / ".async-amp-staging").iterdir()] == ["test-run"]


async def test_output_folder_removed_mid_run_stops_and_is_not_recreated(tmp_path: Path) -> None:
    dataset = small_dataset()
    out = tmp_path / "data"

    def remove() -> None:
        while out.exists():  # the run may be writing into it right now
            shutil.rmtree(out, ignore_errors=True)

    plan = on_request(5, remove)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        config = make_config(sim.base_url, out, concurrency=1)
        summary = await run(config, DAY1, LAST12)
        assert summary.exit_code == 1 and not summary.failed
        assert re.fullmatch(
            rf"No such file or directory (writing|committing) {re.escape(str(out))}/website/"
            r"date=2026-11-01/hour=0[234]: the output folder was removed, with every hour in "
            r"it; recreate \(or remount\) it and run again",
            summary.stopped,
        ), summary.stopped
        assert sim.request_count() == 5
        assert not out.exists()  # not silently recreated with the first hours missing

        again = await run(config, DAY1, LAST12)
        assert again.exit_code == 0
    assert_output_matches(out, dataset, DAY1, LAST12)


# --------------------------------------------------------------------------- Azure


def azure_sink(azurite: Azurite, container: str, environ: dict[str, str]) -> AzureSink:
    account_url = f"{azurite.blob_endpoint}"
    azure = AzureConfig(
        account_url=account_url, container=container, retries=0, retry_backoff_s=0.01
    )
    return AzureSink.from_config(azure, run_id="storage-faults", environ=environ)


def blob_hours(azurite: Azurite, container: str) -> set[datetime]:
    with SyncBlobServiceClient.from_connection_string(azurite.connection_string) as service:
        names = [b.name for b in service.get_container_client(container).list_blobs()]
    found = set()
    for name in names:
        match = re.search(r"date=(\d{4}-\d\d-\d\d)/hour=(\d\d)/_manifest\.json$", name)
        if match:
            found.add(datetime.fromisoformat(f"{match[1]}T{match[2]}:00+00:00"))
    return found


async def test_azure_container_deleted_mid_run_stops_and_the_rerun_completes(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    dataset = small_dataset()
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}

    def delete() -> None:
        with SyncBlobServiceClient.from_connection_string(azurite.connection_string) as service:
            service.delete_container(azure_container)

    plan = on_request(5, delete)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=1)
        sink = azure_sink(azurite, azure_container, env)
        summary = await run(config, DAY1, LAST12, sink=sink)
        assert summary.exit_code == 1 and not summary.failed
        assert summary.stopped.startswith(
            f"The container {azure_container} was deleted (404 ContainerNotFound) trying to "
        )
        assert summary.stopped.endswith(
            ": it went with every hour in it; create it (or keep create_container = true) and "
            "run again"
        ), summary.stopped
        assert sim.request_count() == 5

        sim.reset_log()
        again = await run(config, DAY1, LAST12, sink=azure_sink(azurite, azure_container, env))
        assert again.exit_code == 0 and sim.request_count() == 12  # it went with the container
    assert blob_hours(azurite, azure_container) == set(hour_range(DAY1, LAST12))


async def test_azure_sas_revoked_mid_run_stops_and_the_rerun_completes(
    azurite: Azurite, azure_container: str, tmp_path: Path
) -> None:
    dataset = small_dataset()
    policy = "async-amp-test"
    with SyncBlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(azure_container)
        container.create_container()
        expiry = datetime.now(UTC) + timedelta(hours=1)
        perms = ContainerSasPermissions.from_string("racwdl")
        container.set_container_access_policy(
            {policy: AccessPolicy(permission=perms, expiry=expiry)}
        )
    sas = generate_container_sas(
        azurite.account_name, azure_container, account_key=azurite.account_key, policy_id=policy
    )
    env = {"AZURE_STORAGE_SAS_TOKEN": sas}

    def revoke() -> None:
        with SyncBlobServiceClient.from_connection_string(azurite.connection_string) as service:
            service.get_container_client(azure_container).set_container_access_policy({})

    def restore() -> None:
        with SyncBlobServiceClient.from_connection_string(azurite.connection_string) as service:
            service.get_container_client(azure_container).set_container_access_policy(
                {policy: AccessPolicy(permission=perms, expiry=expiry)}
            )

    plan = on_request(5, revoke)
    async with run_simulator(dataset, api_key=KEY, secret_key=SECRET, faults=plan) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=1)
        summary = await run(config, DAY1, LAST12, sink=azure_sink(azurite, azure_container, env))
        assert summary.exit_code == 1 and not summary.failed
        assert summary.stopped.startswith(  # Azurite: AuthorizationFailure for a dropped policy
            "The SAS token in AZURE_STORAGE_SAS_TOKEN was rejected (expired, revoked or wrong)"
        ), summary.stopped
        assert "(403 Authori" in summary.stopped
        kept = blob_hours(azurite, azure_container)
        assert kept in ({*hour_range(DAY1, DAY1 + timedelta(hours=h))} for h in (1, 2, 3))
        assert summary.stopped.endswith(
            f": {len(kept)} of 12 hours complete; renew the credentials "
            "(AZURE_STORAGE_SAS_TOKEN) and run again, completed hours are kept"
        ), summary.stopped
        assert sas.split("sig=")[1].split("&")[0] not in summary.stopped
        assert sim.request_count() == 5

        restore()
        sim.reset_log()
        again = await run(config, DAY1, LAST12, sink=azure_sink(azurite, azure_container, env))
        assert again.exit_code == 0 and sim.request_count() == 12 - len(kept)
    assert blob_hours(azurite, azure_container) == set(hour_range(DAY1, LAST12))


def test_local_sink_names_the_hour_folder_not_the_staging_path(tmp_path: Path) -> None:
    sink = LocalSink(tmp_path, run_id="r", fsync=False)
    staging = sink.stage("website", DAY1)
    error = staging.error(OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(error, StorageBlockedError)
    assert error.place == f"writing {tmp_path}/website/date=2026-11-01/hour=00"


# --------------------------------------------------------------------------- S3


@pytest.mark.s3
async def test_s3_bucket_deleted_mid_run_stops_and_the_rerun_completes(
    s3_server: S3ServerProcess, s3_bucket: str, tmp_path: Path
) -> None:
    dataset = small_dataset()
    key = s3_server.admin

    def delete() -> None:  # botocore itself is synchronous: fine inside the simulator's hook
        client: Any = botocore.session.get_session().create_client(
            "s3",
            endpoint_url=s3_server.endpoint_url,
            region_name=REGION,
            aws_access_key_id=key.access_key_id,
            aws_secret_access_key=key.secret_access_key,
        )
        listed = client.list_objects_v2(Bucket=s3_bucket).get("Contents", ())
        for item in listed:
            client.delete_object(Bucket=s3_bucket, Key=item["Key"])
        for upload in client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", ()):
            client.abort_multipart_upload(
                Bucket=s3_bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        client.delete_bucket(Bucket=s3_bucket)

    def sink(run_id: str) -> S3Sink:
        config = S3Config(
            bucket=s3_bucket, endpoint_url=s3_server.endpoint_url, addressing_style="path"
        )
        return S3Sink.from_config(config, run_id=run_id, environ=key.environ())

    async with run_simulator(
        dataset, api_key=KEY, secret_key=SECRET, faults=on_request(5, delete)
    ) as sim:
        config = make_config(sim.base_url, tmp_path, concurrency=1)
        summary = await run(config, DAY1, LAST12, sink=sink("one"))
        assert summary.exit_code == 1 and not summary.failed
        assert summary.stopped.startswith(
            f"The bucket {s3_bucket} was deleted (NoSuchBucket) trying to "
        ), summary.stopped
        assert summary.stopped.endswith(
            ": it went with every hour in it; create it and run again"
        ), summary.stopped
        assert sim.request_count() == 5

        async with admin_client(s3_server) as admin:
            await admin.create_bucket(Bucket=s3_bucket)  # the operator recreates it
        sim.reset_log()
        again = await run(config, DAY1, LAST12, sink=sink("two"))
        assert again.exit_code == 0 and sim.request_count() == 12
        async with admin_client(s3_server) as admin:
            answer = await admin.list_objects_v2(Bucket=s3_bucket)
    manifests_in_bucket = [o["Key"] for o in answer["Contents"] if o["Key"].endswith(MANIFEST)]
    assert len(manifests_in_bucket) == 12


@pytest.mark.parametrize(
    ("code", "status", "cause"),
    [
        (
            "ExpiredToken",
            400,
            "The credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
            "were rejected (ExpiredToken)",
        ),
        (
            "AccessDenied",
            403,
            "Access denied for the credentials from AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY; they need s3:PutObject",
        ),
    ],
)
def test_s3_credentials_refused_mid_run_are_blocked_storage_not_a_start_up_error(
    code: str, status: int, cause: str
) -> None:
    errors = translator()
    exc = client_error(code, status)
    at_start = errors.translate(exc, "write", "k", "s3:PutObject")
    assert isinstance(at_start, CredentialsError)  # prepare(): exit 2, as before
    during = errors.during_run(at_start, exc, "write", "k")
    assert isinstance(during, StorageBlockedError)
    line = during.line(3, 24)
    assert line.startswith(cause)
    assert " trying to write s3://lake/k at http://127.0.0.1:9000: 3 of 24 hours complete; " in line
    assert line.endswith(
        "renew the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and run again, "
        "completed hours are kept"
    )
