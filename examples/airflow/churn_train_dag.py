"""A train/evaluate DAG as a team would write it, plus the two orchestrack lines.

Remove the two marked lines and the DAG runs exactly as before; keep them and every DAG run is one
tracked run (tasks, retries, failures with reason and sentence, metrics, data, environment). The
tasks read their settings from churn_train.yaml, next to this file; the operator records that file
with the run, and the tasks record the data snapshot (its filters, label date and leakage check)
and the feature set they used.
"""

from __future__ import annotations

import csv
import json
import math
import random
import statistics
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, task

from orchestrack.airflow import TrackRunOperator  # orchestrack line 1 of 2

WORK = Path(tempfile.gettempdir()) / "churn-train-dag"
CONFIG = Path(__file__).with_name("churn_train.yaml")


def read_config() -> dict:
    import yaml  # imported when a task runs, not each time the DAG file is parsed

    return yaml.safe_load(CONFIG.read_text())


def read_rows(path: str) -> list[tuple[float, ...]]:
    with open(path, newline="") as handle:
        return [tuple(map(float, row)) for row in list(csv.reader(handle))[1:]]


def screen_for_leakage(rows: list[tuple[float, ...]]) -> dict[str, str]:
    """Screen for label leakage: a feature that on its own all but gives the label away."""
    labels = [row[-1] for row in rows]
    worst = max(abs(statistics.correlation([row[i] for row in rows], labels)) for i in range(len(rows[0]) - 1))
    return {"status": "failed" if worst > 0.9 else "passed", "note": f"max |corr(feature, label)| = {worst:.2f}"}


with DAG(
    "churn_train",
    start_date=datetime(2026, 1, 1),
    schedule=None,
    catchup=False,
    default_args={"owner": "ml-platform", "retries": 1, "retry_delay": timedelta(seconds=1)},
    params={"min_accuracy": 0.7},
    tags=["ml"],
) as dag:

    @task
    def extract() -> str:
        import orchestrack

        data = read_config()["data"]
        # Stands in for the warehouse query: the configured countries' customers, their labels as of
        # the configured snapshot.
        filters = {"country": data["countries"], "tenure_months": f">= {data['min_tenure_months']}"}
        rng = random.Random(28)
        rows = []
        for _ in range(300):
            tenure, tickets = rng.randint(data["min_tenure_months"], 60), rng.randint(0, 8)
            rows.append((tenure, tickets, int(1.5 - 0.06 * tenure + 0.45 * tickets + rng.gauss(0, 0.7) > 0)))
        WORK.mkdir(parents=True, exist_ok=True)
        path = WORK / "events.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["tenure", "tickets", "churned"])
            writer.writerows(rows)
        orchestrack.log_dataset("events", path, rows=len(rows), filters=filters,
                                labels_as_of=data["labels_as_of"], leakage_check=screen_for_leakage(rows))
        return str(path)

    @task
    def train(path: str) -> str:
        import orchestrack

        config = read_config()
        hyper, features = config["model"], config["features"]
        orchestrack.log_features(
            features["columns"], target=features["target"],
            joins=["events JOIN labels USING (customer_id)"], transformations=["tenure / 60", "tickets / 8"],
            feature_store=features["store"], feature_store_version=str(features["store_version"]))
        rows = read_rows(path)
        weights = [0.0, 0.0, 0.0]
        for epoch in range(int(hyper["epochs"])):
            loss = 0.0
            for tenure, tickets, y in rows:
                x = (1.0, tenure / 60, tickets / 8)
                p = 1 / (1 + math.exp(-sum(w * v for w, v in zip(weights, x, strict=True))))
                loss -= y * math.log(p + 1e-9) + (1 - y) * math.log(1 - p + 1e-9)
                weights = [w - hyper["lr"] * (p - y) * v for w, v in zip(weights, x, strict=True)]
            orchestrack.log_metrics({"train_loss": loss / len(rows)}, step=epoch)
        model = WORK / "model.json"
        model.write_text(json.dumps(weights))
        orchestrack.log_artifact(model, kind="model")
        return str(model)

    @task
    def evaluate(path: str, model: str, params: dict | None = None) -> float:
        import orchestrack

        weights = json.loads(Path(model).read_text())
        rows = read_rows(path)
        scores = [sum(w * v for w, v in zip(weights, (1.0, t / 60, k / 8), strict=True)) for t, k, _ in rows]
        right = sum((score > 0) == bool(row[2]) for score, row in zip(scores, rows, strict=True))
        accuracy = right / len(rows)
        orchestrack.log_metrics({"accuracy": accuracy})
        threshold = params["min_accuracy"]
        assert accuracy >= threshold, f"accuracy {accuracy:.3f} is below the release threshold {threshold}"
        return accuracy

    data = extract()
    # orchestrack line 2 of 2 (configs=: the file is recorded with each run, found next to this one)
    track = TrackRunOperator(task_id="orchestrack", purpose="baseline", configs=["churn_train.yaml"])
    track >> data
    evaluate(data, train(data))

if __name__ == "__main__":
    dag.test()
