"""Output sinks: a local folder, an Azure Blob Storage container, an S3 bucket or a GCS bucket,
behind one protocol."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ..config import Config
from .base import HourStaging, MemberSink, Sink
from .local import LocalSink

__all__ = ["HourStaging", "LocalSink", "MemberSink", "Sink", "make_sink"]


def make_sink(config: Config, *, run_id: str, environ: Mapping[str, str]) -> Sink:
    """The sink that ``[output] sink`` names, constructed without any I/O."""
    sink: Sink
    spool: Path | None = None
    if config.output.sink == "azure":
        from .azure import AzureSink  # noqa: PLC0415 - the Azure SDK loads only when used

        sink = AzureSink.from_config(config.azure, run_id=run_id, environ=environ)
    elif config.output.sink == "s3":
        from .s3 import S3Sink  # noqa: PLC0415 - botocore loads only when used

        sink = S3Sink.from_config(config.s3, run_id=run_id, environ=environ)
    elif config.output.sink == "gcs":
        from .gcs import GcsSink  # noqa: PLC0415 - gcloud-aio-auth loads only when used

        sink = GcsSink.from_config(config.gcs, run_id=run_id, environ=environ)
    else:
        local = LocalSink(config.output.dir, run_id=run_id, fsync=config.output.fsync)
        sink, spool = local, local.run_dir  # cleaned with the run's other leftovers
    if config.output.data_format == "parquet":
        from ..formats.staging import ParquetSink  # noqa: PLC0415 - pyarrow loads only when used

        return ParquetSink(sink, dedupe=config.output.dedupe, spool_dir=spool)
    if config.output.data_format == "delta":
        from ..delta import make_delta_sink  # noqa: PLC0415 - deltalake loads only when used

        return make_delta_sink(config, sink, run_id=run_id, environ=environ)
    return sink
