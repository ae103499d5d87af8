"""Every way a task can end, in one tracked DAG (tests/airflow/test_dag_test.py)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, get_current_context, task

from orchestrack.airflow import TrackRunOperator

with DAG("tracked_cases", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}, params={"lr": 0.1, "api_token": "s3cr3t"}) as dag:
    track = TrackRunOperator(task_id="orchestrack", purpose="tuning", datasets=["s3://bucket/train/"])

    @task(outlets=[Asset(name="scores", uri="s3://bucket/scores/")])
    def ok() -> int:
        import orchestrack

        orchestrack.log_metrics({"auc": 0.91})
        return 1

    @task
    def missing_input() -> None:
        raise FileNotFoundError("[Errno 2] No such file or directory: 's3cache/train.parquet'")

    @task(execution_timeout=timedelta(seconds=1))
    def too_slow() -> None:
        time.sleep(10)

    @task(retries=2, retry_delay=timedelta(seconds=0))
    def flaky() -> str:
        if get_current_context()["ti"].try_number < 3:
            raise ConnectionResetError(104, "Connection reset by peer")
        return "third time lucky"

    @task
    def shard(n: int) -> int:
        return n * n

    @task
    def after_missing_input() -> None:
        return None

    @task.branch
    def choose() -> str:
        return "chosen"

    @task
    def chosen() -> None:
        return None

    @task
    def not_chosen() -> None:
        return None

    branch = choose()
    missing = missing_input()
    track >> [ok(), missing, too_slow(), flaky(), shard.expand(n=[1, 2, 3]), branch]
    missing >> after_missing_input()
    branch >> [chosen(), not_chosen()]
