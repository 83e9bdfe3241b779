"""GCS's XML API, as delta-rs' object_store client uses it, in front of fake-gcs-server.

object_store (the Rust crate under deltalake) speaks only the XML API to GCS
(``<base>/<bucket>/<url-encoded name>``). fake-gcs-server 1.54 answers part of it: listings
(``GET /<bucket>?list-type=2``, but ignoring ``start-after``, ``max-keys`` and
``continuation-token``), downloads (``GET``/``HEAD`` with ``Range``, ``ETag``,
``Last-Modified``, ``x-goog-generation``) and deletes; every upload ends in its JSON-API
handler, which answers ``400 invalid uploadType`` to an XML ``PUT`` (plain, conditional with
``x-goog-if-generation-match``, or a copy with ``x-goog-copy-source``) and to a multipart
``POST ?uploads`` (its issue 331; pull request 1164 adding them was never merged). So the
XML front serves the XML API itself, on the emulator's JSON API:

- ``GET /<bucket>?list-type=2``: a JSON listing (``prefix``, ``delimiter``, ``startOffset``,
  ``maxResults``, ``pageToken``) answered as ``ListBucketResult``, ``start-after`` exclusive;
- ``GET``/``HEAD /<bucket>/<name>``: the emulator's media download, headers kept;
- ``PUT /<bucket>/<name>``: a multipart upload of the JSON API, with ``ifGenerationMatch`` from
  ``x-goog-if-generation-match`` (``0``: only if absent, which the emulator enforces: 412);
  with ``x-goog-copy-source``: the source read, then uploaded the same way;
- multipart uploads (``POST ?uploads``, ``PUT ?partNumber=&uploadId=``, ``POST ?uploadId=``,
  ``DELETE ?uploadId=``): parts kept here, the object uploaded whole on completion;
- ``DELETE /<bucket>/<name>``: 204, or 404.

Anything else answers 501, so a request this layer does not know fails the test loudly.

Calls are authorized as object_store authorizes them with a service-account key file: a
self-signed JWT (no token endpoint; the account's own RS256 signature, ``iss`` = ``sub`` = its
email, a storage scope), verified against the public key of the accounts' key files; the
``reader`` account may only read (403).

It runs as a process of its own (``XmlFrontProcess``), not a thread of the tests: opening one
of delta-rs' file streams (``DeltaFileSystemHandler.open_output_stream``, in
``output/delta/files.py``'s ``put_file``) holds Python's GIL until the store answers the upload's
first request, so a server in the tests' own process could never answer it. Every JSON API call it
receives is passed on, as it is, to the ``GcsFront`` of tests/gcs.py, so the product's JSON sink
and delta-rs share one ``endpoint_url``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote
from xml.sax.saxutils import escape

import jwt
from aiohttp import ClientSession, MultipartWriter, web
from cryptography.hazmat.primitives import serialization

from tools.gcsserver import GcsEmulatorProcess

__all__ = ["XmlApi", "XmlFrontProcess", "is_xml_request"]

_STORAGE_SCOPE = "https://www.googleapis.com/auth/"  # devstorage.* or cloud-platform

_JSON_PATHS = ("/storage/", "/upload/", "/download/", "/batch/", "/token", "/_internal/")
_KEPT_HEADERS = ("content-type", "content-length", "content-range", "etag", "last-modified")
_XML = "application/xml"


def is_xml_request(request: web.Request) -> bool:
    return not request.path.startswith(_JSON_PATHS)


def _error(status: int, code: str, message: str) -> web.Response:
    body = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
    body += f"<Message>{escape(message)}</Message></Error>"
    return web.Response(status=status, text=body, content_type=_XML)


def _tag(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


class XmlApi:
    """The XML API over the emulator at ``emulator_url``; multipart parts kept in memory."""

    def __init__(self, emulator_url: str) -> None:
        self.emulator_url = emulator_url
        self._uploads: dict[str, tuple[str, str, str, dict[int, bytes]]] = {}

    async def handle(self, request: web.Request, *, may_write: bool) -> web.StreamResponse:
        raw = request.rel_url.raw_path.lstrip("/")
        bucket, _, encoded = raw.partition("/")
        name, query = unquote(encoded), request.query
        if request.method not in ("GET", "HEAD") and not may_write:
            return _error(403, "AccessDenied", "the account may not write")
        async with ClientSession() as session:
            if not name:
                if request.method == "GET" and query.get("list-type") == "2":
                    return await self._list(session, bucket, query)
            elif "uploads" in query and request.method == "POST":
                upload_id = uuid.uuid4().hex
                content_type = request.headers.get("Content-Type", "application/octet-stream")
                self._uploads[upload_id] = (bucket, name, content_type, {})
                body = _tag("Bucket", bucket) + _tag("Key", name) + _tag("UploadId", upload_id)
                return self._xml(f"<InitiateMultipartUploadResult>{body}")
            elif "uploadId" in query:
                return await self._multipart(session, request, query["uploadId"])
            elif request.method in ("GET", "HEAD"):
                return await self._download(session, request, bucket, encoded)
            elif request.method == "PUT":
                source = request.headers.get("x-goog-copy-source")
                if source is None:
                    data = await request.read()
                else:
                    source_bucket, _, source_name = source.lstrip("/").partition("/")
                    url = self._object(source_bucket, unquote(source_name))
                    async with session.get(url, params={"alt": "media"}) as found:
                        if found.status != 200:
                            return _error(found.status, "NoSuchKey", source)
                        data = await found.read()
                content_type = request.headers.get("Content-Type", "application/octet-stream")
                match = request.headers.get("x-goog-if-generation-match")
                return await self._upload(session, bucket, name, data, content_type, match)
            elif request.method == "DELETE":
                async with session.delete(self._object(bucket, name)) as answer:
                    if answer.status == 404:
                        return _error(404, "NoSuchKey", name)
                    return web.Response(status=204 if answer.ok else answer.status)
        return _error(501, "NotImplemented", f"{request.method} {request.rel_url}")

    def _object(self, bucket: str, name: str) -> str:
        return f"{self.emulator_url}/storage/v1/b/{bucket}/o/{quote(name, safe='')}"

    @staticmethod
    def _xml(opened: str, headers: dict[str, str] | None = None) -> web.Response:
        root = opened[1 : opened.index(">")]
        body = f'<?xml version="1.0" encoding="UTF-8"?>{opened}</{root}>'
        return web.Response(text=body, content_type=_XML, headers=headers)

    async def _list(self, session: ClientSession, bucket: str, query: Any) -> web.Response:
        after = query.get("start-after", "")
        params = {"prefix": query.get("prefix", ""), "delimiter": query.get("delimiter", "")}
        params["maxResults"] = query.get("max-keys", "1000")
        if after:
            params["startOffset"] = after
        if query.get("continuation-token"):
            params["pageToken"] = query["continuation-token"]
        params = {k: v for k, v in params.items() if v}
        async with session.get(f"{self.emulator_url}/storage/v1/b/{bucket}/o", params=params) as r:
            if r.status == 404:
                return _error(404, "NoSuchBucket", bucket)
            page = await r.json()
        items = [item for item in page.get("items", ()) if item["name"] != after]
        body = _tag("Name", bucket) + _tag("Prefix", params.get("prefix", ""))
        body += _tag("KeyCount", len(items)) + _tag(
            "IsTruncated", str(bool(page.get("nextPageToken"))).lower()
        )
        for item in items:
            body += "<Contents>" + _tag("Key", item["name"]) + _tag("Size", item["size"])
            body += _tag("LastModified", item["updated"]) + _tag("ETag", f'"{item["etag"]}"')
            body += "</Contents>"
        for prefix in page.get("prefixes", ()):
            body += f"<CommonPrefixes>{_tag('Prefix', prefix)}</CommonPrefixes>"
        if page.get("nextPageToken"):
            body += _tag("NextContinuationToken", page["nextPageToken"])
        return self._xml(f"<ListBucketResult>{body}")

    async def _download(
        self, session: ClientSession, request: web.Request, bucket: str, encoded: str
    ) -> web.StreamResponse:
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() == "range" or k.lower().startswith("if-")
        }
        url = f"{self.emulator_url}/{bucket}/{encoded}"
        async with session.request(request.method, url, headers=headers, params=request.query) as r:
            content = await r.read()
            kept = {k: v for k, v in r.headers.items() if k.lower() in _KEPT_HEADERS}
            kept.update({k: v for k, v in r.headers.items() if k.lower().startswith("x-goog-")})
        if r.status == 404:
            return _error(404, "NoSuchKey", unquote(encoded))
        response = web.StreamResponse(status=r.status, headers=kept)
        await response.prepare(request)
        if request.method == "GET":
            await response.write(content)
        await response.write_eof()
        return response

    async def _upload(
        self,
        session: ClientSession,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str,
        if_generation_match: str | None,
    ) -> web.Response:
        # a multipart (JSON API) upload: the emulator checks ifGenerationMatch only there
        params = {"uploadType": "multipart"}
        if if_generation_match is not None:
            params["ifGenerationMatch"] = if_generation_match
        with MultipartWriter("related") as body:
            body.append_json({"name": name, "contentType": content_type})
            body.append(data, {"Content-Type": content_type})
        url = f"{self.emulator_url}/upload/storage/v1/b/{bucket}/o"
        async with session.post(url, params=params, data=body) as answer:
            if answer.status == 412:
                return _error(
                    412,
                    "PreconditionFailed",
                    "At least one of the pre-conditions you specified did not hold.",
                )
            if answer.status != 200:
                return _error(answer.status, "InternalError", await answer.text())
            item = await answer.json()
        etag = f'"{item["etag"]}"'
        return web.Response(headers={"ETag": etag, "x-goog-generation": str(item["generation"])})

    async def _multipart(
        self, session: ClientSession, request: web.Request, upload_id: str
    ) -> web.Response:
        if upload_id not in self._uploads:
            return _error(404, "NoSuchUpload", upload_id)
        bucket, name, content_type, parts = self._uploads[upload_id]
        if request.method == "PUT" and "partNumber" in request.query:
            data = await request.read()
            parts[int(request.query["partNumber"])] = data
            return web.Response(headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})
        if request.method == "DELETE":
            del self._uploads[upload_id]
            return web.Response(status=204)
        if request.method == "POST":
            listed = await request.text()
            numbers = [int(n) for n in re.findall(r"<PartNumber>(\d+)</PartNumber>", listed)]
            if not numbers or any(n not in parts for n in numbers):
                return _error(400, "InvalidPart", f"parts {numbers} of {sorted(parts)}")
            data = b"".join(parts[n] for n in numbers)
            del self._uploads[upload_id]
            done = await self._upload(session, bucket, name, data, content_type, None)
            if done.status != 200:
                return done
            body = _tag("Bucket", bucket) + _tag("Key", name) + _tag("ETag", done.headers["ETag"])
            headers = {"x-goog-generation": done.headers["x-goog-generation"]}
            return self._xml(f"<CompleteMultipartUploadResult>{body}", headers)
        return _error(501, "NotImplemented", f"{request.method} {request.rel_url}")


def _public_keys(folder: Path, accounts: list[str]) -> dict[str, Any]:
    keys = {}
    for account in accounts:
        info = json.loads((folder / f"{account}.json").read_text())
        private = serialization.load_pem_private_key(info["private_key"].encode(), None)
        keys[info["client_email"]] = private.public_key()
    return keys


def _account(header: str, keys: dict[str, Any]) -> str | None:
    """The account whose self-signed JWT ``header`` carries, None unless it verifies."""
    token = header.removeprefix("Bearer ")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
        jwt.decode(token, keys[claims["iss"]], algorithms=["RS256"])
    except (KeyError, jwt.PyJWTError):
        return None
    if claims.get("sub") != claims["iss"] or _STORAGE_SCOPE not in claims.get("scope", ""):
        return None
    return str(claims["iss"]).split("@", 1)[0]


def _app(emulator_url: str, front_url: str, keys: dict[str, Any], own_url: str) -> web.Application:
    api = XmlApi(emulator_url)

    async def serve(request: web.Request) -> web.StreamResponse:
        if not is_xml_request(request):  # the JSON API: to the front, as it is
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            async with (
                ClientSession(auto_decompress=False) as session,
                session.request(
                    request.method,
                    f"{front_url}{request.rel_url}",
                    data=await request.read(),
                    headers=headers,
                ) as answer,
            ):
                body = await answer.read()
                out = {
                    k: v
                    for k, v in answer.headers.items()
                    if k.lower()
                    not in ("content-length", "transfer-encoding", "date", "server", "connection")
                }
                if "Location" in out:
                    out["Location"] = out["Location"].replace(front_url, own_url)
                return web.Response(status=answer.status, body=body, headers=out)
        account = _account(request.headers.get("Authorization", ""), keys)
        if account is None:
            return _error(401, "AuthenticationRequired", "Invalid Credentials")
        return await api.handle(request, may_write=account != "reader")

    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", serve)
    return app


class XmlFrontProcess(GcsEmulatorProcess):
    """The XML front as a child process on loopback, before ``GcsFront`` and the emulator."""

    what = "the GCS XML front"
    prefix = "gcs-xml-front-"

    def __init__(self, emulator_url: str, front_url: str, keys: Path, accounts: list[str]) -> None:
        super().__init__()
        self.args = [emulator_url, front_url, str(keys), ",".join(accounts)]

    def command(self) -> list[str]:
        module = ["-m", "tests.gcs_xml", *self.args, str(self.port)]
        return ["/bin/sh", "-c", 'exec "$0" "$@" 2>&1', sys.executable, *module]

    def environ(self) -> dict[str, str]:
        return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).parent.parent)}


def main(argv: list[str]) -> None:
    emulator_url, front_url, folder, accounts, port = argv
    keys = _public_keys(Path(folder), accounts.split(","))
    own_url = f"http://127.0.0.1:{port}"

    def ready(_: object) -> None:
        print("server started", flush=True)

    web.run_app(
        _app(emulator_url, front_url, keys, own_url),
        host="127.0.0.1",
        port=int(port),
        print=ready,
        access_log=None,
        handle_signals=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
