"""A train/evaluate flow as a team would write it, tracked by orchestrack.

Before: ``@flow(log_prints=True)``. After: ``@tracked_flow(purpose="baseline", configs=["churn_flow.yaml"],
log_prints=True)``. Every flow run is then one tracked run: tasks and their retries, failures with
reason and sentence, metrics, parameters and the Prefect context, and the settings file the flow
reads (``churn_flow.yaml``, next to this file: hashed, its keys recorded, a copy stored). The tasks
add what only they know: the data snapshot (which rows, labels as of when, whether a leakage screen
passed) and how the features were made.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import yaml
from prefect import task

import orchestrack
from orchestrack.prefect import tracked_flow

SETTINGS = yaml.safe_load(Path(__file__).with_name("churn_flow.yaml").read_text())
DATA, FEATURES, TRAIN = SETTINGS["data"], SETTINGS["features"], SETTINGS["train"]
COLUMNS = ["tenure", "support_tickets"]

Row = tuple[float, float, int]


def screen_for_leakage(data: list[Row]) -> dict[str, str]:
    """A feature that alone predicts the label almost perfectly has usually seen the label."""
    for index, column in enumerate(COLUMNS):
        cut = sorted(row[index] for row in data)[len(data) // 2]
        agreement = sum((row[index] > cut) == bool(row[2]) for row in data) / len(data)
        agreement = max(agreement, 1 - agreement)
        if agreement > 0.95:
            return {"status": "failed", "note": f"{column} alone predicts churned in {agreement:.0%} of rows"}
    return {"status": "passed", "note": "no single feature predicts churned in over 95% of rows"}


@task(retries=1, retry_delay_seconds=0)
def extract(rows: int, seed: int) -> list[Row]:
    rng = random.Random(seed)
    data = []
    for _ in range(rows):
        tenure, tickets = rng.randint(DATA["min_tenure_months"], 60), rng.randint(0, 8)
        data.append((tenure / 60, tickets / 8, int(1.5 - 0.06 * tenure + 0.45 * tickets + rng.gauss(0, 0.7) > 0)))
    orchestrack.log_dataset("events", f"{DATA['source']}/seed={seed}", version=str(seed), rows=rows,
                            filters={"country": DATA["countries"], "tenure_months": f">= {DATA['min_tenure_months']}"},
                            labels_as_of=DATA["labels_as_of"], leakage_check=screen_for_leakage(data))
    orchestrack.log_features(COLUMNS, target="churned",
                             joins=["customers LEFT JOIN support_tickets ON customer_id"],
                             transformations=["tenure_months / 60", "tickets_90d / 8"],
                             feature_store=FEATURES["store"], feature_store_version=FEATURES["store_version"])
    return data


@task
def train(data: list[Row], lr: float, epochs: int) -> list[float]:
    weights = [0.0, 0.0, 0.0]
    for epoch in range(epochs):
        loss = 0.0
        for tenure, tickets, y in data:
            x = (1.0, tenure, tickets)
            p = 1 / (1 + math.exp(-sum(w * v for w, v in zip(weights, x, strict=True))))
            loss -= y * math.log(p + 1e-9) + (1 - y) * math.log(1 - p + 1e-9)
            weights = [w - lr * (p - y) * v for w, v in zip(weights, x, strict=True)]
        orchestrack.log_metrics({"train_loss": loss / len(data)}, step=epoch)
    return weights


@task
def evaluate(data: list[Row], weights: list[float], threshold: float) -> float:
    scores = [sum(w * v for w, v in zip(weights, (1.0, t, k), strict=True)) for t, k, _ in data]
    accuracy = sum((s > 0) == bool(row[2]) for s, row in zip(scores, data, strict=True)) / len(data)
    orchestrack.log_metrics({"accuracy": accuracy})
    if accuracy < threshold:
        raise ValueError(f"accuracy {accuracy:.3f} is below the release threshold {threshold}")
    return accuracy


@tracked_flow(purpose="baseline", configs=["churn_flow.yaml"], log_prints=True)
def churn_train(rows: int = TRAIN["rows"], lr: float = TRAIN["lr"], epochs: int = TRAIN["epochs"],
                threshold: float = SETTINGS["release"]["threshold"], seed: int = TRAIN["seed"]) -> float:
    data = extract(rows, seed)
    weights = train(data, lr, epochs)
    accuracy = evaluate(data, weights, threshold)
    print(f"accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    churn_train()
