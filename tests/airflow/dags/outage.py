"""A chain of tracked tasks for tests/airflow/test_outage.py: each logs a param, a metric series and an
artifact; one waits at a gate (OUTAGE_GATE) while the test stops the MLflow server."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

from orchestrack.airflow import TrackRunOperator

TASKS, STEPS, GATED = 6, 40, 2


def make(index: int) -> object:
    @task(task_id=f"work_{index}")
    def work() -> None:
        import orchestrack

        if index == GATED:
            from tests.outage import wait_at_gate  # the worker has the checkout on its path

            wait_at_gate(os.environ["OUTAGE_GATE"])  # the server goes down here
        orchestrack.log_params({f"param_{index}": index})
        for step in range(STEPS):
            orchestrack.log_metrics({f"loss_{index}": 1.0 / (step + 1)}, step=step)
        artifact = Path(os.environ["OUTAGE_FOLDER"]) / f"artifact-{index}.txt"
        artifact.write_text(f"output of task {index}")
        orchestrack.log_artifact(artifact)

    return work()


with DAG("outage_dag", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}) as dag:
    previous: object = TrackRunOperator(task_id="orchestrack", purpose="baseline")
    for number in range(TASKS):
        current = make(number)
        previous >> current  # type: ignore[operator]
        previous = current
