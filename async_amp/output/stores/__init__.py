"""Output stores: a local folder, an Azure Blob Storage container, an S3 bucket or a GCS bucket,
behind one protocol (``base.Store``); a format (``async_amp.output``) puts its sink in front."""

from __future__ import annotations

from collections.abc import Mapping

from ...config import Config
from .base import HourStaging, MemberSink, Sink, Store
from .local import LocalSink

__all__ = ["HourStaging", "LocalSink", "MemberSink", "Sink", "Store", "make_sink", "make_store"]


def make_store(config: Config, *, run_id: str, environ: Mapping[str, str]) -> Store:
    """The store that ``[output] sink`` names, constructed without any I/O."""
    if config.output.sink == "azure":
        from .azure import AzureSink  # noqa: PLC0415 - the Azure SDK loads only when used

        return AzureSink.from_config(config.azure, run_id=run_id, environ=environ)
    if config.output.sink == "s3":
        from .s3 import S3Sink  # noqa: PLC0415 - botocore loads only when used

        return S3Sink.from_config(config.s3, run_id=run_id, environ=environ)
    if config.output.sink == "gcs":
        from .gcs import GcsSink  # noqa: PLC0415 - gcloud-aio-auth loads only when used

        return GcsSink.from_config(config.gcs, run_id=run_id, environ=environ)
    return LocalSink(config.output.dir, run_id=run_id, fsync=config.output.fsync)


def make_sink(config: Config, *, run_id: str, environ: Mapping[str, str]) -> Sink:
    """The store ``[output] sink`` names with ``[output] format``'s sink in front, without any
    I/O and without reading what the output records (``output.open_output`` does)."""
    from ..registry import FormatContext, format_for  # noqa: PLC0415

    store = make_store(config, run_id=run_id, environ=environ)
    context = FormatContext(config, run_id, environ, store.spool_dir)
    return format_for(config.output.data_format).wrap(store, context)
