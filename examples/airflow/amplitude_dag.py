"""An Airflow DAG that extracts Amplitude events with async-amp, on Airflow 3 (and 2.x).

A scheduled run takes exactly the hours that became available since the previous scheduled
run: the run due at ``T`` (its data interval's end, the same moment on Airflow 2 and 3) takes
the hours from ``T - 1 day - lag`` up to ``T - lag``, where ``lag`` is ``[extract]
availability_lag_hours`` (Amplitude exports an hour about two hours after it ends). Runs tile
with no gap and no overlap whatever the data interval's start is (on Airflow 3, ``@daily`` makes
it equal to its end). ``catchup=True``: a run missed while the DAG was paused or the scheduler
down is made up later, so no hour is left out. A run triggered by hand takes the whole UTC days
of its ``start`` and ``end`` params (``YYYY-MM-DD``, both needed); without params it takes what
the scheduled run due at its logical date would (``airflow dags test amplitude_daily
2026-11-03``), and with no logical date either (Airflow 3's manual trigger) it fails, asking
for ``start`` and ``end``.

``slices`` cuts the hours at UTC midnights; ``extract`` is mapped over the slices (dynamic task
mapping). Hours are committed one by one (files first, the manifest last), so slices can run on
any workers into one output root, and a retried slice only asks for the hours not complete yet.
A slice fails while an hour is missing (retried: 429s, 5xx, a flaky network); a bad config or
rejected keys fail it at once (``AirflowFailException``: retrying cannot help).

Amplitude allows about 5 concurrent Export requests per project: at most ``PARALLEL`` slices
run at once (one DAG run at a time, ``max_active_tasks=PARALLEL``), each with at most
``5 // PARALLEL`` requests in flight. Other DAGs (or the CLI) using the same project share
those 5: give their tasks one Airflow pool, or lower ``PARALLEL``. See examples/README.md.

Install from a clone (async-amp is not on an index; ``pip wheel --no-deps /path/to/async-amp``
makes a wheel to install instead)::

    cd /path/to/async-amp   # the clone
    pip install "apache-airflow==3.3.2" -e . -c constraints.txt -c examples/requirements-airflow.txt
    cp examples/airflow/amplitude_dag.py $AIRFLOW_HOME/dags/

On every worker: ``ASYNC_AMP_CONFIG=/path/to/config.toml`` (the file the CLI's ``--config``
would take), ``AMP_API_KEY`` and ``AMP_SECRET_KEY``. Airflow 3 runs DAGs with its scheduler,
API server and DAG processor (``airflow standalone`` starts all three to try it); a new DAG is
paused::

    airflow dags unpause amplitude_daily
    airflow dags trigger amplitude_daily -c '{"start": "2026-11-01", "end": "2026-11-30"}'
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

try:  # Airflow 3
    from airflow.sdk import dag, get_current_context, task
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task
    from airflow.exceptions import AirflowFailException
    from airflow.operators.python import get_current_context

if TYPE_CHECKING:
    import async_amp

AMPLITUDE_LIMIT = 5  # concurrent Export API requests Amplitude allows per project
PARALLEL = 2  # slices extracting at once
EVERY = timedelta(days=1)  # the schedule's period: keep it equal to `schedule`
HOUR = timedelta(hours=1)
MANUAL_HELP = """a run triggered by hand needs "start" and "end" (YYYY-MM-DD, UTC days, both \
included): airflow dags trigger amplitude_daily -c '{"start": "2026-11-01", "end": "2026-11-30"}'"""


def scheduled_hours(due: datetime, lag_hours: int) -> tuple[datetime, datetime]:
    """First and last hour (inclusive) that became available in the period ending at ``due``."""
    moment = due.astimezone(UTC)
    end = moment.replace(minute=0, second=0, microsecond=0) - timedelta(hours=lag_hours)
    return end - EVERY, end - HOUR


def requested_hours(params: dict[str, Any]) -> tuple[datetime, datetime]:
    """First and last hour of the whole UTC days ``start`` to ``end`` (a manual run's params)."""
    start, end = params.get("start"), params.get("end")
    if not start or not end:
        given = f"; got only {'start' if start else 'end'}" if start or end else ""
        raise ValueError(MANUAL_HELP + given)
    try:
        first, last = date.fromisoformat(str(start)), date.fromisoformat(str(end))
    except ValueError:
        msg = f"start {start!r} and end {end!r} must be dates such as 2026-11-01"
        raise ValueError(msg) from None
    if last < first:
        msg = f"end {end} is before start {start}: swap them"
        raise ValueError(msg)
    midnight = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return midnight, midnight + timedelta(days=(last - first).days + 1) - HOUR


def cut_at_midnights(first: datetime, last: datetime) -> list[dict[str, str]]:
    """``first`` to ``last`` as slices of at most one UTC day, ``{"start", "end"}`` hours."""
    slices = []
    while first <= last:
        next_day = first.replace(hour=0) + timedelta(days=1)
        end = min(last, next_day - HOUR)
        slices.append({"start": first.strftime("%Y-%m-%dT%H"), "end": end.strftime("%Y-%m-%dT%H")})
        first = next_day
    return slices


def per_slice(config: async_amp.Config) -> async_amp.Config:
    """``config`` with at most ``AMPLITUDE_LIMIT // PARALLEL`` requests in flight per project."""
    cap = AMPLITUDE_LIMIT // PARALLEL
    if config.extract.concurrency <= cap:
        return config
    return dataclasses.replace(config, extract=dataclasses.replace(config.extract, concurrency=cap))


@dag(
    dag_id="amplitude_daily",
    schedule="@daily",
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=True,
    max_active_runs=1,
    max_active_tasks=PARALLEL,
    params={"start": None, "end": None},
    tags=["amplitude", "async-amp"],
)
def amplitude_daily() -> None:
    @task
    def slices() -> list[dict[str, str]]:
        import async_amp  # noqa: PLC0415 - on the worker, not when the DAG is parsed

        context = get_current_context()
        params, due = context["params"], context.get("data_interval_end")
        try:
            if params.get("start") or params.get("end") or due is None:
                first, last = requested_hours(params)
            else:  # as scheduled: the period ending at this run's moment
                lag = async_amp.load_config().extract.availability_lag_hours
                first, last = scheduled_hours(due, lag)
        except (ValueError, async_amp.UserError) as exc:
            raise AirflowFailException(str(exc)) from None
        return cut_at_midnights(first, last)

    @task(retries=3, retry_delay=timedelta(minutes=5), retry_exponential_backoff=True)
    def extract(hours: dict[str, str]) -> dict[str, Any]:
        import async_amp  # noqa: PLC0415

        try:
            config = per_slice(async_amp.load_config())
            result = async_amp.extract_sync(config, start=hours["start"], end=hours["end"])
        except async_amp.UserError as exc:  # ConfigError, CredentialsError: fail, no retry
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from None
        result.raise_for_failures()  # IncompleteExtraction names the hours: retried
        summary = result.to_json()["totals"]
        if summary["not_available"]:  # ran before the hours were exportable: retried later
            msg = f"{summary['not_available']} hours not yet available in {hours}"
            raise RuntimeError(msg)
        return dict(summary)

    extract.expand(hours=slices())


amplitude_daily()
