"""An Airflow DAG that extracts Amplitude events day by day, one mapped task per UTC day.

``days`` lists the days of the run's data interval (or of the ``start``/``end`` params, for a
backfill triggered by hand); ``extract_day`` is mapped over them (dynamic task mapping), each
instance calling the async-amp Python API for one day. Hours are committed one by one
(files first, the manifest last), so mapped instances can run at once on any workers into
one output root, and a retried instance only asks for the hours that are not complete yet.

    pip install async-amp apache-airflow
    cp examples/airflow/amplitude_dag.py $AIRFLOW_HOME/dags/
    # AMP_API_KEY / AMP_SECRET_KEY (or a .env) and ASYNC_AMP_CONFIG on the workers
    airflow dags trigger amplitude_daily -c '{"start": "2026-11-01", "end": "2026-11-30"}'

Not run by the test suite (Airflow's install is large and brings its own constraints); the
Dagster example (``examples/dagster``) is, against the simulated Export API.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from typing import Any

try:  # Airflow 3
    from airflow.sdk import dag, get_current_context, task
except ImportError:  # Airflow 2.x
    from airflow.decorators import dag, task
    from airflow.operators.python import get_current_context


def days_between(first: date, last: date) -> list[str]:
    """``YYYY-MM-DD`` of every day from ``first`` to ``last``, both inclusive."""
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


@dag(
    dag_id="amplitude_daily",
    schedule="@daily",
    start_date=datetime(2026, 11, 1, tzinfo=UTC),
    catchup=False,
    max_active_tasks=4,  # ~5 concurrent requests per project are allowed; each task uses 1-4
    params={"start": None, "end": None},
    tags=["amplitude", "async-amp"],
)
def amplitude_daily() -> None:
    @task
    def days() -> list[str]:
        context = get_current_context()
        params = context["params"]
        if params.get("start") and params.get("end"):
            first, last = date.fromisoformat(params["start"]), date.fromisoformat(params["end"])
        else:  # the scheduled run: the day its data interval covers
            interval_start = context["data_interval_start"]
            first = last = interval_start.astimezone(UTC).date()
        return days_between(first, last)

    @task(retries=3, retry_delay=timedelta(minutes=10))
    def extract_day(day: str) -> dict[str, Any]:
        import async_amp  # noqa: PLC0415 - on the worker, not when the scheduler parses the DAG

        config = async_amp.load_config(os.environ.get("ASYNC_AMP_CONFIG"))
        result = async_amp.extract_sync(config, start=day, end=day)
        result.raise_for_failures()  # the task fails (and is retried) while hours are missing
        totals: dict[str, Any] = result.to_json()["totals"]
        return totals

    extract_day.expand(day=days())


amplitude_daily()
