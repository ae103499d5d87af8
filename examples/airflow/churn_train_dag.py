"""A train/evaluate DAG as a team would write it, plus the two orchestrack lines.

Remove the two marked lines and the DAG runs exactly as before; keep them and every DAG run is one
tracked run (tasks, retries, failures with reason and sentence, metrics, data, environment).
"""

from __future__ import annotations

import csv
import json
import math
import random
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, task

from orchestrack.airflow import TrackRunOperator  # orchestrack line 1 of 2

WORK = Path(tempfile.gettempdir()) / "churn-train-dag"


def read_rows(path: str) -> list[tuple[float, ...]]:
    with open(path, newline="") as handle:
        return [tuple(map(float, row)) for row in list(csv.reader(handle))[1:]]


with DAG(
    "churn_train",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=1)},
    params={"lr": 0.5, "epochs": 5},
    tags=["ml"],
) as dag:

    @task
    def extract() -> str:
        rng = random.Random(28)
        WORK.mkdir(parents=True, exist_ok=True)
        path = WORK / "events.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["tenure", "tickets", "churned"])
            for _ in range(300):
                tenure, tickets = rng.randint(1, 60), rng.randint(0, 8)
                writer.writerow([tenure, tickets, int(1.5 - 0.06 * tenure + 0.45 * tickets + rng.gauss(0, 0.7) > 0)])
        import orchestrack

        orchestrack.log_dataset("events", path, rows=300)
        return str(path)

    @task
    def train(path: str, params: dict | None = None) -> str:
        import orchestrack

        rows = read_rows(path)
        weights = [0.0, 0.0, 0.0]
        for epoch in range(int(params["epochs"])):
            loss = 0.0
            for tenure, tickets, y in rows:
                x = (1.0, tenure / 60, tickets / 8)
                p = 1 / (1 + math.exp(-sum(w * v for w, v in zip(weights, x, strict=True))))
                loss -= y * math.log(p + 1e-9) + (1 - y) * math.log(1 - p + 1e-9)
                weights = [w - params["lr"] * (p - y) * v for w, v in zip(weights, x, strict=True)]
            orchestrack.log_metrics({"train_loss": loss / len(rows)}, step=epoch)
        model = WORK / "model.json"
        model.write_text(json.dumps(weights))
        orchestrack.log_artifact(model, kind="model")
        return str(model)

    @task
    def evaluate(path: str, model: str) -> float:
        import orchestrack

        weights = json.loads(Path(model).read_text())
        rows = read_rows(path)
        scores = [sum(w * v for w, v in zip(weights, (1.0, t / 60, k / 8), strict=True)) for t, k, _ in rows]
        right = sum((score > 0) == bool(row[2]) for score, row in zip(scores, rows, strict=True))
        accuracy = right / len(rows)
        orchestrack.log_metrics({"accuracy": accuracy})
        assert accuracy >= 0.7, f"accuracy {accuracy:.3f} is below the release threshold 0.7"
        return accuracy

    data = extract()
    track = TrackRunOperator(task_id="orchestrack", purpose="baseline")  # orchestrack line 2 of 2
    track >> data
    evaluate(data, train(data))

if __name__ == "__main__":
    dag.test()
