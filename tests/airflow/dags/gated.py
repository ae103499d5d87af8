"""A tracked DAG with a quality gate after training (tests/airflow/test_dag_test.py)."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, get_current_context, task

from orchestrack.airflow import QualityGateOperator, TrackRunOperator

with DAG("gated", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}, params={"auc": 0.82}) as dag:
    track = TrackRunOperator(task_id="orchestrack", purpose="tuning")

    @task
    def train() -> None:
        import orchestrack

        auc = float(get_current_context()["params"]["auc"])
        orchestrack.log_metrics({"auc": auc})
        orchestrack.log_metrics({"auc": auc - 0.02}, slice={"country": "DE"})
        model = Path(tempfile.mkdtemp()) / "model.json"
        model.write_text(f'{{"auc": {auc}}}')
        orchestrack.log_artifact(model, kind="model")

    gate = QualityGateOperator(task_id="gate", spec="gate.yaml")
    track >> train() >> gate
