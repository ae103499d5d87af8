"""A tracked DAG whose task is SIGKILLed mid-task with its whole process (tests/airflow/test_killed.py)."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

from orchestrack.airflow import TrackRunOperator

with DAG("killed_mid_task", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}) as dag:

    @task
    def long_train() -> None:
        Path(os.environ["ORCHESTRACK_TEST_PID_FILE"]).write_text(str(os.getpid()))
        time.sleep(120)

    TrackRunOperator(task_id="orchestrack", purpose="tuning") >> long_train()
