"""A small churn-model pipeline in plain Python (no orchestrator), tracked by orchestrack.

Three steps, each a tracked task: prepare (reads one day's partition of raw events), train
(logistic regression by gradient descent, standard library only) and evaluate (AUC overall and per
country), and with ``--gate SPEC`` a fourth: the quality gate. Run it for a day whose partition
exists and it succeeds; for a day whose partition is missing and the run ends failed, labelled
``data-error`` with one sentence saying what happened.

    python examples/python_pipeline/churn_pipeline.py --day 2026-11-28 --data-dir /tmp/churn

Beside metrics and the model, the run records what a reviewer asks about: the filters that chose
the rows, when the labels were last refreshed, whether leakage screening ran, the config file
(churn.yaml) the settings came from, and how the feature columns were made.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml

import orchestrack

CONFIG = Path(__file__).with_name("churn.yaml")
FEATURES = ["tenure_months", "support_tickets", "monthly_spend"]
COUNTRIES = ["DE", "FR", "NL"]


def make_partition(path: Path, rows: int, seed: int) -> None:
    """Write one day of synthetic customer events (the stand-in for a real warehouse export)."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "country", *FEATURES, "churned"])
        for customer in range(rows):
            tenure, tickets, spend = rng.randint(1, 60), rng.randint(0, 8), rng.uniform(5, 120)
            logit = 1.5 - 0.06 * tenure + 0.45 * tickets - 0.01 * spend + rng.gauss(0, 0.7)
            writer.writerow([customer, rng.choice(COUNTRIES), tenure, tickets, round(spend, 2),
                             int(logit > 0)])


def leakage_screening(rows: list[dict[str, str]]) -> dict[str, str]:
    """A cheap screening: no feature may equal the label on every row, and ids are not features."""
    leaking = [f for f in FEATURES if all(r[f] == r["churned"] for r in rows)]
    if leaking or "customer_id" in FEATURES:
        return {"status": "failed", "note": f"features that give the label away: {leaking or ['customer_id']}"}
    return {"status": "passed", "note": "no feature equals the label; customer_id is not a feature"}


def prepare(path: Path, day: str, settings: dict) -> list[dict[str, float | str]]:
    with open(path, newline="") as handle:  # a missing partition raises FileNotFoundError here
        rows = [r for r in csv.DictReader(handle) if r["country"] in settings["countries"]
                and int(r["tenure_months"]) >= settings["min_tenure_months"]]
    # Labels (churned within 30 days) are final for customers seen 30 days before the partition.
    labels_as_of = date.fromisoformat(day) - timedelta(days=30)
    orchestrack.log_dataset("customer_events", path, rows=len(rows),
                            filters={"country": settings["countries"],
                                     "tenure_months": f">= {settings['min_tenure_months']}", "day": day},
                            labels_as_of=labels_as_of, leakage_check=leakage_screening(rows))
    orchestrack.log_features(FEATURES, target="churned",
                             joins=["events LEFT JOIN customers USING (customer_id)"],
                             transformations=[f"{f} / max({f}) over the partition" for f in FEATURES])
    return [{"country": r["country"], **{f: float(r[f]) for f in FEATURES}, "churned": float(r["churned"])}
            for r in rows]


def train(rows: list[dict[str, float | str]], *, lr: float, epochs: int, seed: int) -> list[float]:
    orchestrack.log_params({"model": "logistic_regression", "lr": lr, "epochs": epochs, "seed": seed,
                            "features": FEATURES})
    scale = {f: max(float(r[f]) for r in rows) for f in FEATURES}
    weights = [0.0] * (len(FEATURES) + 1)
    for epoch in range(epochs):
        loss = 0.0
        for row in rows:
            x = [1.0] + [float(row[f]) / scale[f] for f in FEATURES]
            p = 1 / (1 + math.exp(-sum(w * v for w, v in zip(weights, x, strict=True))))
            y = float(row["churned"])
            loss -= y * math.log(p + 1e-9) + (1 - y) * math.log(1 - p + 1e-9)
            weights = [w - lr * (p - y) * v for w, v in zip(weights, x, strict=True)]
        orchestrack.log_metrics({"train_loss": loss / len(rows)}, step=epoch)
    model = Path("model.json")
    model.write_text(json.dumps({"features": FEATURES, "scale": scale, "weights": weights}))
    orchestrack.log_artifact(model, kind="model")
    return weights


def auc(scores: list[float], labels: list[float]) -> float:
    positives = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    negatives = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    if not positives or not negatives:
        return 0.5
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def evaluate(rows: list[dict[str, float | str]], weights: list[float]) -> None:
    scale = json.loads(Path("model.json").read_text())["scale"]

    def score(row: dict[str, float | str]) -> float:
        return sum(w * v for w, v in zip(weights, [1.0] + [float(row[f]) / scale[f] for f in FEATURES], strict=True))

    orchestrack.log_metrics({"auc": auc([score(r) for r in rows], [float(r["churned"]) for r in rows])})
    for country in COUNTRIES:
        subset = [r for r in rows if r["country"] == country]
        orchestrack.log_metrics({"auc": auc([score(r) for r in subset], [float(r["churned"]) for r in subset])},
                                slice=f"country={country}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--day", required=True, help="partition day, e.g. 2026-11-28")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--purpose", default="baseline")
    parser.add_argument("--config", type=Path, default=CONFIG, help="training settings (default: churn.yaml)")
    parser.add_argument("--gate", type=Path, help="a quality gate spec to check the run against (gate.yaml)")
    parser.add_argument("--execution", default=None,
                        help="this execution's id (an orchestrator's run id); default: the current UTC time")
    parser.add_argument("--write-sample-data", type=int, metavar="ROWS",
                        help="only write a synthetic partition for --day with ROWS rows, then exit")
    args = parser.parse_args()
    partition = args.data_dir / f"events-{args.day}.csv"
    if args.write_sample_data:
        make_partition(partition, rows=args.write_sample_data, seed=int(args.day.replace("-", "")))
        return

    execution = args.execution or datetime.now(UTC).strftime("manual__%Y-%m-%dT%H:%M:%S.%f")
    run = orchestrack.start_run(key=f"churn-train/{args.day}/{execution}", owner="ml-platform",
                                purpose=args.purpose, pipeline="churn-train", pipeline_version="1")
    print(run.key, flush=True)
    settings = yaml.safe_load(args.config.read_text())
    run.log_config(args.config)
    try:
        with run.task("prepare"):
            rows = prepare(partition, args.day, settings["data"])
        with run.task("train"):
            model = settings["model"]
            weights = train(rows, lr=model["lr"], epochs=model["epochs"], seed=model["seed"])
        with run.task("evaluate"):
            evaluate(rows, weights)
        if args.gate:
            with run.task("gate"):  # a failed gate fails this task and the run: metric-regression
                orchestrack.gate_step(args.gate)
    finally:
        run.finish()


if __name__ == "__main__":
    main()
