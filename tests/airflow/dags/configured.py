"""DAGs whose settings live in a config file the operator records (tests/airflow/test_configs.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task

from orchestrack.airflow import TrackRunOperator

CONFIG = Path(__file__).with_name("configured.yaml")

with DAG("configured", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}) as configured:
    track = TrackRunOperator(task_id="orchestrack", purpose="tuning", configs=["configured.yaml"])

    @task
    def train() -> None:
        import yaml

        import orchestrack

        model = yaml.safe_load(CONFIG.read_text())["model"]
        orchestrack.log_metrics({"auc": round(0.5 + model["lr"], 3)})  # the same for the same lr

    track >> train()

# One config that is there, one that is not, one that does not parse.
with DAG("config_missing", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={"owner": "ml-platform"}) as config_missing:
    track = TrackRunOperator(task_id="orchestrack", configs=["configured.yaml", "not_there.yaml", "broken.yaml"])

    @task
    def work() -> None:
        import orchestrack

        orchestrack.log_metrics({"rows": 100})

    track >> work()
