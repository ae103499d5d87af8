"""A tracked DAG for an MLflow server with artifacts on S3 (tests/airflow/test_mlflow_s3.py): one task
logs params, metrics and a model file, one fails on a missing input."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG, task

from orchestrack.airflow import TrackRunOperator

#: The bytes the train task writes and logs as its model artifact.
MODEL_BYTES = b"orchestrack test model: weights=[0.25, -1.5, 3.0]\n"
#: The input the prepare task reads, which does not exist.
MISSING_INPUT = "s3cache/features/2026-01-01.parquet"

with DAG("mlflow_s3", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}, params={"epochs": 3}) as dag:
    track = TrackRunOperator(task_id="orchestrack", purpose="tuning")

    @task
    def train() -> None:
        import tempfile
        from pathlib import Path

        import orchestrack

        orchestrack.log_params({"lr": 0.05, "batch_size": 64})
        orchestrack.log_metrics({"auc": 0.91, "loss": 0.25})
        with tempfile.TemporaryDirectory() as folder:
            model = Path(folder) / "model.bin"
            model.write_bytes(MODEL_BYTES)
            orchestrack.log_artifact(model, kind="model")

    @task
    def prepare() -> None:
        with open(MISSING_INPUT, "rb") as source:  # raises FileNotFoundError: the partition never landed
            source.read()

    track >> [train(), prepare()]
