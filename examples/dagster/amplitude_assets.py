"""A Dagster asset of Amplitude events: one partition = one UTC day of one project.

Each partition calls the async-amp Python API for its day and project; every hour of the day
is committed on its own (files first, the manifest last), so partitions of different days or
projects can run at the same time, in any number of processes, into one output root.

The schedule runs each day's partitions once the day's last hour is exportable: at
``LAG_HOURS`` past midnight UTC (Amplitude exports an hour about two hours after it ends; keep
``LAG_HOURS`` >= ``[extract] availability_lag_hours``), for the day that just ended, so each run
takes the 24 hours that became available since the previous one. A partition fails while an
hour is missing, or not yet exportable (retried by its ``RetryPolicy``); a bad config or
rejected keys fail it at once (``dagster.Failure(allow_retries=False)``).

Amplitude allows about 5 concurrent Export requests per project: each run keeps at most
``AMPLITUDE_LIMIT // PARALLEL`` requests in flight, and the run queue starts at most
``PARALLEL`` runs per project at once (``dagster.yaml`` below).

Install from a clone (async-amp is not on an index)::

    cd /path/to/async-amp   # the clone; or a wheel: pip wheel --no-deps -w dist .
    pip install -e . -r examples/requirements.txt -c constraints.txt
    export ASYNC_AMP_CONFIG=/path/to/config.toml AMP_API_KEY=... AMP_SECRET_KEY=...
    dagster dev -f examples/dagster/amplitude_assets.py

``ASYNC_AMP_CONFIG`` names the config file (as the CLI's ``--config``; default
``./config.toml`` when present), ``ASYNC_AMP_<SECTION>_<KEY>`` variables override it. Add
projects to ``PROJECTS`` (``[[projects]]`` names, or the ``[amplitude] project``). In
``$DAGSTER_HOME/dagster.yaml``, the per-project limit on runs::

    run_queue:
      tag_concurrency_limits:
        - key: dagster/partition/project
          value: {applyLimitPerUniqueValue: true}
          limit: 2   # PARALLEL
    python_logs:   # the library's events (hour.done hour=... status=...) in the runs' logs
      python_log_level: INFO
      managed_python_loggers: [async_amp]
"""

import dataclasses

import dagster as dg

import async_amp

PROJECTS = ["website"]
FIRST_DAY = "2026-11-01"
LAG_HOURS = 2  # >= [extract] availability_lag_hours
AMPLITUDE_LIMIT = 5  # concurrent Export API requests Amplitude allows per project
PARALLEL = 2  # runs of one project at once (the run queue's limit in dagster.yaml)

partitions = dg.MultiPartitionsDefinition(
    {
        "day": dg.DailyPartitionsDefinition(start_date=FIRST_DAY),
        "project": dg.StaticPartitionsDefinition(PROJECTS),
    }
)


class AmplitudeExport(dg.ConfigurableResource):  # type: ignore[misc]
    """The config the CLI would read: ``ASYNC_AMP_CONFIG``, else ``./config.toml``."""

    def load(self) -> async_amp.Config:
        config = async_amp.load_config()
        cap = AMPLITUDE_LIMIT // PARALLEL
        if config.extract.concurrency <= cap:
            return config
        extract = dataclasses.replace(config.extract, concurrency=cap)
        return dataclasses.replace(config, extract=extract)


@dg.asset(
    partitions_def=partitions,
    kinds={"python"},
    retry_policy=dg.RetryPolicy(max_retries=3, delay=300, backoff=dg.Backoff.EXPONENTIAL),
)
def amplitude_events(
    context: dg.AssetExecutionContext, amplitude: AmplitudeExport
) -> dg.MaterializeResult:
    """Raw Amplitude events of one UTC day of one project, one folder per hour."""
    keys = partitions.get_partition_key_from_str(context.partition_key).keys_by_dimension
    day, project = keys["day"], keys["project"]
    try:
        result = async_amp.extract_sync(amplitude.load(), start=day, end=day, project=project)
    except async_amp.UserError as exc:  # ConfigError, CredentialsError: retrying cannot help
        raise dg.Failure(f"{type(exc).__name__}: {exc}", allow_retries=False) from None
    done = result.project(project)
    context.log.info(
        f"{day} {project}: {done.complete} complete, {done.empty} empty, "
        f"{done.skipped} already done, {done.failed} failed, "
        f"{done.not_available} not yet available hours"
    )
    result.raise_for_failures()  # IncompleteExtraction names the hours: retried, then fails
    if done.not_available:  # ran before the day's last hour was exportable: retried later
        msg = f"{day} {project}: {done.not_available} hours not yet available"
        raise dg.Failure(msg)
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
    partitions_def=partitions,
    executor_def=dg.multiprocess_executor,
)

# each project's partition of the day that ended, at LAG_HOURS:15 UTC
daily_schedule = dg.build_schedule_from_partitioned_job(
    extract_job, hour_of_day=LAG_HOURS, minute_of_hour=15
)

defs = dg.Definitions(
    assets=[amplitude_events],
    jobs=[extract_job],
    schedules=[daily_schedule],
    resources={"amplitude": AmplitudeExport()},
)


def daily_job() -> dg.JobDefinition:
    """The job, for ``dagster.reconstructable`` (runs launched from Python, as in the test)."""
    return defs.resolve_job_def("amplitude_daily")
