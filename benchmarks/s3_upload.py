"""A plain client's upload of a folder to S3: the reference for the S3 case, and the client pick.

    AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... python -m benchmarks.s3_upload SRC BUCKET \\
        --endpoint-url URL [--client aiobotocore|obstore] [--files-in-flight 4] [--part-mib 8]

- ``aiobotocore``: ``create_multipart_upload``, one ``upload_part`` per ``--part-mib`` read
  from the file, ``complete_multipart_upload`` (files smaller than a part: one ``put_object``);
  the calls the S3 sink makes, with nothing of async-amp around them.
- ``obstore``: ``obstore.put_async`` of the open file (its own multipart upload in
  ``--part-mib`` chunks, ``--files-in-flight`` files at once).

Prints one JSON line: files, bytes, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from .uploading import MIB, upload_folder


async def _aiobotocore(args: argparse.Namespace) -> dict[str, object]:
    from aiobotocore.config import AioConfig  # noqa: PLC0415 - one client per run
    from aiobotocore.session import get_session  # noqa: PLC0415

    part = args.part_mib * MIB
    config = AioConfig(
        s3={"addressing_style": "path"},
        max_pool_connections=args.files_in_flight * 2,
        request_checksum_calculation="when_required",
    )
    session = get_session()
    async with session.create_client(
        "s3", endpoint_url=args.endpoint_url, region_name="us-east-1", config=config
    ) as client:

        async def upload(path: Path, key: str) -> None:
            with path.open("rb") as stream:
                first = stream.read(part)
                if len(first) < part:
                    await client.put_object(Bucket=args.bucket, Key=key, Body=first)
                    return
                created = await client.create_multipart_upload(Bucket=args.bucket, Key=key)
                upload_id = created["UploadId"]
                parts: list[dict[str, Any]] = []
                chunk = first
                while chunk:
                    answer = await client.upload_part(
                        Bucket=args.bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=len(parts) + 1,
                        Body=chunk,
                    )
                    parts.append({"PartNumber": len(parts) + 1, "ETag": answer["ETag"]})
                    chunk = stream.read(part)
                await client.complete_multipart_upload(
                    Bucket=args.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )

        return await upload_folder(args.src, args.files_in_flight, upload)


async def _obstore(args: argparse.Namespace) -> dict[str, object]:
    try:
        import obstore  # noqa: PLC0415 - not a dependency: `pip install obstore` to compare
        from obstore.store import S3Store  # noqa: PLC0415
    except ImportError:
        sys.exit("benchmarks.s3_upload --client obstore needs `pip install obstore`")

    store = S3Store(
        args.bucket,
        endpoint=args.endpoint_url,
        region="us-east-1",
        client_options={"allow_http": True},
        virtual_hosted_style_request=False,
    )

    async def upload(path: Path, key: str) -> None:
        await obstore.put_async(store, key, path, chunk_size=args.part_mib * MIB)

    return await upload_folder(args.src, args.files_in_flight, upload)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("bucket")
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--client", choices=("aiobotocore", "obstore"), default="aiobotocore")
    parser.add_argument("--files-in-flight", type=int, default=4)
    parser.add_argument("--part-mib", type=int, default=8)
    args = parser.parse_args()
    print(json.dumps(asyncio.run((_obstore if args.client == "obstore" else _aiobotocore)(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
