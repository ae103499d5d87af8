"""A tracked DAG whose task fails the same way every run, with other numbers and paths each time
(tests/airflow/test_failure_fingerprints.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

from airflow.sdk import DAG, task

from orchestrack.airflow import TrackRunOperator

with DAG("bad_batch", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}) as dag:
    track = TrackRunOperator(task_id="orchestrack", purpose="baseline")

    @task
    def check_batch() -> None:
        raise ValueError(f"bad batch {uuid.uuid4().int % 100_000} at /tmp/{uuid.uuid4()}/part-0.parquet")

    track >> check_batch()
