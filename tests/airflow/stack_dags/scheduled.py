"""DAGs run by a real scheduler in tests/airflow/test_scheduler.py."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, task

from orchestrack.airflow import TrackRunOperator

with DAG("scheduled_ok", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}) as ok_dag:

    @task
    def train() -> None:
        import orchestrack

        orchestrack.log_metrics({"auc": 0.93})

    TrackRunOperator(task_id="orchestrack", purpose="baseline") >> train()


with DAG("scheduled_kill", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}) as kill_dag:

    @task
    def long_train() -> None:
        # The test kills this process with SIGKILL, as the kernel's OOM killer would.
        Path(os.environ["ORCHESTRACK_TEST_PID_FILE"]).write_text(str(os.getpid()))
        time.sleep(120)

    TrackRunOperator(task_id="orchestrack", purpose="tuning") >> long_train()


with DAG("scheduled_dagrun_timeout", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         dagrun_timeout=timedelta(seconds=8), default_args={"owner": "ml-platform"}) as timeout_dag:

    @task
    def never_ends() -> None:
        time.sleep(120)

    TrackRunOperator(task_id="orchestrack", purpose="tuning") >> never_ends()


with DAG("scheduled_marked_failed", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}) as manual_dag:

    @task
    def waits_for_a_person() -> None:
        Path(os.environ["ORCHESTRACK_TEST_PID_FILE"] + ".manual").write_text(str(os.getpid()))
        time.sleep(120)

    @task
    def afterwards() -> None:
        return None

    # Ten task instances in all: marking the run failed must leave each as Airflow says, not 3 of 10.
    TrackRunOperator(task_id="orchestrack", purpose="tuning") >> waits_for_a_person() >> [
        afterwards.override(task_id=f"afterwards_{i}")() for i in range(8)]


with DAG("scheduled_supervisor_kill", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}) as supervisor_dag:

    @task
    def loses_its_supervisor() -> None:
        Path(os.environ["ORCHESTRACK_TEST_PID_FILE"] + ".supervised").write_text(str(os.getpid()))
        time.sleep(120)

    TrackRunOperator(task_id="orchestrack", purpose="tuning") >> loses_its_supervisor()


with DAG("scheduled_nothing_runs", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}) as nothing_runs_dag:
    from airflow.providers.standard.operators.empty import EmptyOperator

    # The scheduler runs neither task (the operator has nothing to record, an EmptyOperator nothing to
    # do): the DAG run's end opens and closes the run.
    TrackRunOperator(task_id="orchestrack", purpose="baseline", run_owner="forecasting",
                     run_tags={"team": "forecasting"}) >> EmptyOperator(task_id="placeholder")
