"""Azurite's own upload throughput: upload a folder of files with the SDK, nothing else.

    AZURE_STORAGE_CONNECTION_STRING=... python -m benchmarks.azure_upload SRC_DIR CONTAINER \\
        [--method upload_blob|blocks] [--files-in-flight 4] [--max-concurrency 1] [--block-mib 8]

The reference for the Azure case: the same NDJSON bytes that ``async-amp extract --sink azure``
writes, uploaded by ``azure-storage-blob``'s async client, ``--files-in-flight`` blobs at once,
with the sink's default block size. Two ways:

- ``upload_blob`` (the SDK's one call; ``max_concurrency`` blocks of one blob in flight);
- ``blocks``: read ``--block-mib`` at a time, ``stage_block`` each with its MD5
  (``validate_content=True``), then ``commit_block_list``: the calls the sink makes. Azurite
  spends well under half the CPU per byte on a block that comes with its Content-MD5 than on
  ``upload_blob``'s requests, so this is the higher ceiling on this machine.

Prints one JSON line: files, bytes, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobBlock
from azure.storage.blob.aio import BlobServiceClient

from .uploading import MIB, upload_folder


async def run(args: argparse.Namespace) -> dict[str, object]:
    block_size = args.block_mib * MIB
    service = BlobServiceClient.from_connection_string(
        os.environ["AZURE_STORAGE_CONNECTION_STRING"],
        max_block_size=block_size,
        max_single_put_size=block_size,
        retry_total=2,
    )
    async with service:
        container = service.get_container_client(args.container)

        async def create() -> None:
            with contextlib.suppress(ResourceExistsError):
                await container.create_container()

        async def upload(path: Path, name: str) -> None:
            with path.open("rb") as stream:
                if args.method == "upload_blob":
                    await container.upload_blob(
                        name, stream, overwrite=True, max_concurrency=args.max_concurrency
                    )
                    return
                blob = container.get_blob_client(name)
                blocks: list[BlobBlock] = []
                while chunk := stream.read(block_size):
                    block_id = base64.b64encode(f"{len(blocks):08d}".encode()).decode()
                    await blob.stage_block(block_id, chunk, validate_content=True)
                    blocks.append(BlobBlock(block_id))
                await blob.commit_block_list(blocks)

        return await upload_folder(args.src, args.files_in_flight, upload, before=create)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("container")
    parser.add_argument("--method", choices=("upload_blob", "blocks"), default="upload_blob")
    parser.add_argument("--files-in-flight", type=int, default=4)
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--block-mib", type=int, default=8)
    print(json.dumps(asyncio.run(run(parser.parse_args()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
