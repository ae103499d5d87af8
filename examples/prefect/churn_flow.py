"""A train/evaluate flow as a team would write it: only its decorator changed to track it.

Before: ``@flow(log_prints=True)``. After: ``@tracked_flow(purpose="baseline", log_prints=True)``.
Every flow run is then one tracked run: tasks and their retries, failures with reason and sentence,
metrics, data, parameters and the Prefect context.
"""

from __future__ import annotations

import math
import random

from prefect import task

import orchestrack
from orchestrack.prefect import tracked_flow


@task(retries=1, retry_delay_seconds=0)
def extract(rows: int, seed: int) -> list[tuple[float, float, int]]:
    rng = random.Random(seed)
    data = []
    for _ in range(rows):
        tenure, tickets = rng.randint(1, 60), rng.randint(0, 8)
        data.append((tenure / 60, tickets / 8, int(1.5 - 0.06 * tenure + 0.45 * tickets + rng.gauss(0, 0.7) > 0)))
    orchestrack.log_dataset("events", f"synthetic://churn/seed={seed}", version=str(seed), rows=rows)
    return data


@task
def train(data: list[tuple[float, float, int]], lr: float, epochs: int) -> list[float]:
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
def evaluate(data: list[tuple[float, float, int]], weights: list[float], threshold: float) -> float:
    scores = [sum(w * v for w, v in zip(weights, (1.0, t, k), strict=True)) for t, k, _ in data]
    accuracy = sum((s > 0) == bool(row[2]) for s, row in zip(scores, data, strict=True)) / len(data)
    orchestrack.log_metrics({"accuracy": accuracy})
    if accuracy < threshold:
        raise ValueError(f"accuracy {accuracy:.3f} is below the release threshold {threshold}")
    return accuracy


@tracked_flow(purpose="baseline", log_prints=True)
def churn_train(rows: int = 300, lr: float = 0.5, epochs: int = 5, threshold: float = 0.7, seed: int = 28) -> float:
    data = extract(rows, seed)
    weights = train(data, lr, epochs)
    accuracy = evaluate(data, weights, threshold)
    print(f"accuracy {accuracy:.3f}")
    return accuracy


if __name__ == "__main__":
    churn_train()
