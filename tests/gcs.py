"""Google Cloud Storage for tests: fake-gcs-server on loopback, behind a small front of our own.

fake-gcs-server (``tools/gcsserver.py``) serves the JSON API but checks no
credentials, ignores ``ifGenerationMatch`` on deletes and finalizes a resumable upload when
asked for its status. ``GcsFront`` (an aiohttp server on loopback, in a thread) stands where
``storage.googleapis.com`` and ``oauth2.googleapis.com`` would, and adds what is missing:

- ``POST /token``: Google's OAuth token endpoint for service accounts: the JWT assertion the
  client signs with its key file must verify against that account's public key, and carry
  this endpoint as its audience; it answers a bearer token (or 400 ``invalid_grant``);
- every storage call needs a token it issued (else 401); the ``reader`` account's token may
  only read (else 403, as with ``roles/storage.objectViewer``);
- ``DELETE ...?ifGenerationMatch=G``: 412 unless the object is at generation ``G``;
- ``PUT <session>`` with ``Content-Range: bytes */N`` and no body: answers what the session
  kept (308 with ``Range``) instead of finalizing it, unless ``N`` is the size it holds;
- ``fail_next_chunks(n)``: the next ``n`` chunk uploads fail with 503 after the front kept
  (forwarded) their first half, as GCS may;
- ``calls`` records every storage call (method, URL).

Everything else is forwarded to the emulator as it is (``Location`` headers rewritten to the
front). The key files (``key_file("writer")``) are made per session, for this front only.
"""

from __future__ import annotations

import json
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from aiohttp import ClientSession, web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from async_amp.config import GcsConfig
from async_amp.output.stores.gcs import GcsSink
from async_amp.simulator.background import Background
from tools.gcsserver import GcsEmulatorError, GcsEmulatorProcess

from .gcs_xml import XmlFrontProcess

__all__ = ["GcsFront", "gcs_bucket", "gcs_config", "gcs_front", "gcs_sink", "gcs_xml_url"]

ACCOUNTS = ("writer", "reader")
RUN_ID = "test-run"


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"code": status, "message": message, "errors": [{"message": message}]}}
    return web.json_response(body, status=status)


class GcsFront:
    """The front server's state; ``url`` once started."""

    def __init__(self, emulator_url: str, folder: Path) -> None:
        self.emulator_url = emulator_url
        self.url = ""
        self.folder = folder
        self._keys: dict[str, Any] = {}  # client_email -> public key
        self._tokens: dict[str, str] = {}  # token -> account
        self._sessions: dict[str, int] = {}  # upload session -> bytes kept
        self._lock = threading.Lock()
        self._failing = 0
        self.calls: list[tuple[str, str]] = []
        self.tokens_issued = 0

    def key_file(self, account: str) -> Path:
        return self.folder / f"{account}.json"

    def fail_next_chunks(self, count: int) -> None:
        with self._lock:
            self._failing = count

    @property
    def failures_left(self) -> int:
        with self._lock:
            return self._failing

    def _write_keys(self) -> None:
        for account in (*ACCOUNTS, "stranger"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            email = f"{account}@async-amp-tests.iam.gserviceaccount.com"
            if account != "stranger":  # a key the token endpoint does not know
                self._keys[email] = key.public_key()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            info = {
                "type": "service_account",
                "project_id": "async-amp-tests",
                "private_key_id": uuid.uuid4().hex,
                "private_key": pem,
                "client_email": email,
                "client_id": "1",
                "token_uri": f"{self.url}/token",
            }
            self.key_file(account).write_text(json.dumps(info))

    # --- the server ----------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            claims = jwt.decode(str(form["assertion"]), options={"verify_signature": False})
            public = self._keys[claims["iss"]]
            jwt.decode(
                str(form["assertion"]), public, algorithms=["RS256"], audience=f"{self.url}/token"
            )
        except (KeyError, jwt.PyJWTError):
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Invalid JWT Signature."},
                status=400,
            )
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = claims["iss"].split("@", 1)[0]
            self.tokens_issued += 1
        return web.json_response(
            {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        )

    async def _storage(self, request: web.Request) -> web.StreamResponse:
        with self._lock:
            self.calls.append((request.method, str(request.url)))
        header = request.headers.get("Authorization", "")
        account = self._tokens.get(header.removeprefix("Bearer "))
        if account is None:
            return _error(401, "Invalid Credentials")
        if account == "reader" and request.method != "GET":
            return _error(403, f"{account}@... does not have storage.objects.create access")
        body = await request.read()
        query = parse_qs(request.query_string)
        upload_id = query.get("upload_id", [""])[0]
        content_range = request.headers.get("Content-Range", "")
        async with ClientSession() as session:
            if request.method == "DELETE" and "ifGenerationMatch" in query:
                async with session.get(f"{self.emulator_url}{request.path}") as found:
                    if found.status == 200:
                        generation = str((await found.json())["generation"])
                        if generation != query["ifGenerationMatch"][0]:
                            return _error(412, "Precondition Failed")
            if upload_id and request.method == "PUT" and content_range.startswith("bytes */"):
                kept = self._sessions.get(upload_id, 0)
                if content_range != f"bytes */{kept}":  # a status query, not the final call
                    headers = {"Range": f"bytes=0-{kept - 1}"} if kept else {}
                    return web.Response(status=308, headers=headers)
            failing = False
            if upload_id and request.method == "PUT" and body and content_range:
                with self._lock:
                    failing, self._failing = self._failing > 0, max(0, self._failing - 1)
                if failing:  # GCS kept the first half (whole 256 KiB units) and then failed
                    half = (len(body) // 2) // (256 * 1024) * (256 * 1024)
                    start = int(content_range.split()[1].split("-")[0])
                    if not half:
                        return _error(503, "Backend Error")
                    body = body[:half]
                    content_range = f"bytes {start}-{start + half - 1}/*"
            headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type",)}
            if content_range:
                headers["Content-Range"] = content_range
            async with session.request(
                request.method,
                f"{self.emulator_url}{request.path_qs}",
                data=body,
                headers=headers,
            ) as answer:
                content = await answer.read()
                out = {
                    k: v
                    for k, v in answer.headers.items()
                    if k.lower() in ("content-type", "range")
                }
                location = answer.headers.get("Location")
                if location:
                    out["Location"] = location.replace(self.emulator_url, self.url)
                if upload_id and answer.status == 308:
                    kept_range = answer.headers.get("Range", "")
                    with self._lock:
                        self._sessions[upload_id] = (
                            int(kept_range.rsplit("-", 1)[1]) + 1 if "-" in kept_range else 0
                        )
                if failing:
                    return _error(503, "Backend Error")
                return web.Response(status=answer.status, body=content, headers=out)

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[GcsFront]:
        app = web.Application(client_max_size=1024**3)
        app.router.add_post("/token", self._token)
        app.router.add_route("*", "/{tail:.*}", self._storage)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._write_keys()
        try:
            yield self
        finally:
            await runner.cleanup()


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulatorProcess]:
    """One fake-gcs-server for the whole session (fails, never skips, when it cannot start)."""
    failure = ""
    try:
        with GcsEmulatorProcess() as emulator:
            yield emulator
    except GcsEmulatorError as exc:
        failure = str(exc)
    if failure:
        pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="session")
def gcs_front(
    gcs_emulator: GcsEmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GcsFront]:
    front = GcsFront(gcs_emulator.endpoint_url, tmp_path_factory.mktemp("gcs-keys"))
    with Background(front.serve, "GCS front") as started:
        yield started


@pytest.fixture(scope="session")
def gcs_xml_url(gcs_emulator: GcsEmulatorProcess, gcs_front: GcsFront) -> Iterator[str]:
    """The endpoint where delta-rs finds the XML API (tests/gcs_xml.py, a process of its
    own) and the product's JSON calls pass on to ``gcs_front``."""
    accounts = list(ACCOUNTS)
    with XmlFrontProcess(
        gcs_emulator.endpoint_url, gcs_front.url, gcs_front.folder, accounts
    ) as xml:
        yield xml.endpoint_url


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulatorProcess) -> str:
    """A new empty bucket of this test's own."""
    name = f"t-{uuid.uuid4().hex[:24]}"
    gcs_emulator.create_bucket(name)
    return name


def gcs_config(front: GcsFront, bucket: str, **overrides: Any) -> GcsConfig:
    settings: dict[str, Any] = {"bucket": bucket, "endpoint_url": front.url, "retries": 2}
    return GcsConfig(**{**settings, **overrides})


def gcs_environ(front: GcsFront, account: str = "writer") -> dict[str, str]:
    return {"GOOGLE_APPLICATION_CREDENTIALS": str(front.key_file(account))}


def gcs_sink(front: GcsFront, bucket: str, *, account: str = "writer", **overrides: Any) -> GcsSink:
    """The production sink on the emulator, through the front (a service account's key)."""
    return GcsSink.from_config(
        gcs_config(front, bucket, **overrides), run_id=RUN_ID, environ=gcs_environ(front, account)
    )


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query, keep_blank_values=True)


async def gcs_objects(emulator_url: str, bucket: str) -> dict[str, dict[str, Any]]:
    """Every object of the bucket with its metadata, read from the emulator directly."""
    found: dict[str, dict[str, Any]] = {}
    params: dict[str, str] = {}
    async with ClientSession() as session:
        while True:
            async with session.get(f"{emulator_url}/storage/v1/b/{bucket}/o", params=params) as r:
                page = await r.json()
            found.update({item["name"]: item for item in page.get("items", ())})
            if not page.get("nextPageToken"):
                return found
            params["pageToken"] = page["nextPageToken"]


async def gcs_read(emulator_url: str, bucket: str, name: str) -> bytes:
    from urllib.parse import quote

    url = f"{emulator_url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"
    async with ClientSession() as session, session.get(url, params={"alt": "media"}) as answer:
        assert answer.status == 200, (name, answer.status)
        return await answer.read()


async def assert_gcs_bucket_matches(
    emulator_url: str,
    bucket: str,
    dataset: Any,
    hours: list[Any],
    *,
    keep_gzip: bool = False,
    project: str = "website",
    prefix: str = "amplitude",
) -> tuple[int, int]:
    """Exactly the hours' objects and nothing else (no probe left): every partition
    byte-identical to the source with its content type and metadata, one manifest per hour
    describing exactly its objects. Returns (files, bytes)."""
    from async_amp.hours import iso_hour
    from async_amp.output.manifest import MANIFEST_NAME, hour_folder

    objects = await gcs_objects(emulator_url, bucket)
    expected: set[str] = set()
    files = size = 0
    for hour in hours:
        folder = f"{prefix}/{hour_folder(project, hour)}"
        marker = f"{folder}/{MANIFEST_NAME}"
        assert marker in objects, f"{iso_hour(hour)} has no manifest"
        manifest = json.loads(await gcs_read(emulator_url, bucket, marker))
        pages = dataset.pages(hour)
        status = "complete" if pages else "empty"
        assert objects[marker]["contentType"] == "application/json"
        assert objects[marker]["metadata"] == {
            "hour": iso_hour(hour),
            "status": status,
            "events": str(manifest["events"]),
            "run_id": manifest["run_id"],
        }
        assert manifest["events"] == sum(dataset.event_count(hour, p) for p in pages)
        expected.add(marker)
        entries = {f["name"]: f for f in manifest["files"]}
        assert len(entries) == len(pages), f"{iso_hour(hour)}: {sorted(entries)}"
        for page in pages:
            base = dataset.member_name(hour, page).split("/", 1)[1]
            name = f"{folder}/{base if keep_gzip else base.removesuffix('.gz')}"
            expected.add(name)
            data = await gcs_read(emulator_url, bucket, name)
            want = dataset.gz(hour, page) if keep_gzip else dataset.ndjson(hour, page)
            assert data == want, f"{name} differs from the source partition"
            entry = entries[name.rsplit("/", 1)[1]]
            assert (entry["bytes"], entry["events"]) == (len(data), dataset.event_count(hour, page))
            assert objects[name]["contentType"] == (
                "application/gzip" if keep_gzip else "application/x-ndjson"
            )
            assert objects[name]["metadata"] == {
                "hour": iso_hour(hour),
                "source": dataset.member_name(hour, page),
                "run_id": manifest["run_id"],
            }
            files += 1
            size += len(data)
    stray, missing = set(objects) - expected, expected - set(objects)
    assert not stray and not missing, f"stray {sorted(stray)}, missing {sorted(missing)}"
    return files, size
