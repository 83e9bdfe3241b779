"""A Dagster asset of Amplitude events: one partition = one UTC day of one project.

Each partition calls the async-amp Python API for its day and project; every hour of the day
is committed on its own (files first, the manifest last), so partitions of different days or
projects can run at the same time, in any number of processes, into one output root. A
partition fails (and Dagster retries or alerts) when an hour is still incomplete.

    pip install async-amp dagster
    export AMP_API_KEY=... AMP_SECRET_KEY=...     # or a .env file; see docs/configuration.md
    dagster dev -f examples/dagster/amplitude_assets.py

The config is the CLI's: ``ASYNC_AMP_CONFIG`` names the file (default ``./config.toml`` when
present), ``ASYNC_AMP_<SECTION>_<KEY>`` variables override it. Add projects to ``PROJECTS``
(they must be ``[[projects]]`` names, or the ``[amplitude] project``).
"""

import os

import dagster as dg

import async_amp

PROJECTS = ["website"]
FIRST_DAY = "2026-11-01"

partitions = dg.MultiPartitionsDefinition(
    {
        "day": dg.DailyPartitionsDefinition(start_date=FIRST_DAY),
        "project": dg.StaticPartitionsDefinition(PROJECTS),
    }
)


class AmplitudeExport(dg.ConfigurableResource):  # type: ignore[misc]
    """Where async-amp reads its config (``None``: ``./config.toml`` when present)."""

    config_path: str | None = None

    def load(self) -> async_amp.Config:
        return async_amp.load_config(self.config_path)


@dg.asset(partitions_def=partitions, kinds={"python"})
def amplitude_events(
    context: dg.AssetExecutionContext, amplitude: AmplitudeExport
) -> dg.MaterializeResult:
    """Raw Amplitude events of one UTC day of one project, one folder per hour."""
    keys = partitions.get_partition_key_from_str(context.partition_key).keys_by_dimension
    day, project = keys["day"], keys["project"]
    result = async_amp.extract_sync(amplitude.load(), start=day, end=day, project=project)
    done = result.project(project)
    context.log.info(
        f"{day} {project}: {done.complete} complete, {done.empty} empty, "
        f"{done.skipped} already done, {done.failed} failed hours"
    )
    result.raise_for_failures()  # IncompleteExtraction names the hours: the run fails
    return dg.MaterializeResult(
        metadata={
            "run_id": result.run_id,
            "sink": result.sink,
            "complete_hours": done.complete,
            "empty_hours": done.empty,
            "skipped_hours": done.skipped,
            "events": done.events,
            "bytes_written": done.bytes_written,
            "requests": done.requests,
            "retries": done.retries,
        }
    )


extract_job = dg.define_asset_job(
    "amplitude_daily",
    selection=[amplitude_events],
    executor_def=dg.multiprocess_executor,
)

defs = dg.Definitions(
    assets=[amplitude_events],
    jobs=[extract_job],
    resources={"amplitude": AmplitudeExport(config_path=os.environ.get("ASYNC_AMP_CONFIG"))},
)


def daily_job() -> dg.JobDefinition:
    """The job, for ``dagster.reconstructable`` (runs launched from Python, as in the test)."""
    return defs.resolve_job_def("amplitude_daily")
