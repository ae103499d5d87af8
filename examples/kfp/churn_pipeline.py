"""A churn-model pipeline on Kubeflow Pipelines that records the whole run checklist with orchestrack.

Two components, ``extract`` and ``train``; the decorators are orchestrack's (``otk.component``,
``otk.pipeline``), with kfp's arguments. Each run of the pipeline is one tracked run holding:

- the training config ``churn.yaml`` (next to this file): its hash, its parsed keys and a copy, via
  ``configs=[...]``. The pipeline's defaults are read from it when the pipeline is defined;
- the data snapshot with the filters that selected the rows, the date the labels were taken, and
  the outcome of the leakage check (the features must predate the labels);
- the features: columns, target, joins, transformations and the feature store's view and version;
- params, the training loss per epoch, the accuracy, and the model as an artifact.

Run it locally (kfp.local, every task a subprocess of this environment)::

    python examples/kfp/churn_pipeline.py

or compile it for a cluster with ``kfp.compiler.Compiler().compile(churn_train, "churn.yaml")``
after setting the store (docs/kfp.md, "On a cluster: MLflow + S3").
"""

# No `from __future__ import annotations`: kfp reads the components' annotations at runtime.

from pathlib import Path

import yaml
from kfp import dsl

from orchestrack import kfp as otk

CONFIG = yaml.safe_load(Path(__file__).with_name("churn.yaml").read_text())
#: What each task installs when it starts. Nothing: the tasks' image has orchestrack installed (on a
#: cluster, an image built FROM python:3.11 with `pip install orchestrack`; or set ["orchestrack"]).
PACKAGES: list = []


@otk.component(base_image="python:3.11", packages_to_install=PACKAGES)
def extract(table: str, rows: int, seed: int, countries: list, min_tenure_months: int, features_as_of: str,
            labels_as_of: str, events: dsl.Output[dsl.Dataset]) -> None:
    """Select the customers to train on (a synthetic stand-in for the warehouse query) and record the
    snapshot: which rows, as of when, and whether the features could leak the label."""
    import csv
    import random

    import orchestrack

    rng = random.Random(seed)
    selected = []
    for customer in range(rows):
        country, tenure = rng.choice(["DE", "FR", "NL", "US"]), rng.randint(1, 60)
        tickets, spend = rng.randint(0, 8), round(rng.uniform(5, 120), 2)
        churned = int(1.5 - 0.06 * tenure + 0.45 * tickets - 0.01 * spend + rng.gauss(0, 0.7) > 0)
        if country in countries and tenure >= min_tenure_months:
            selected.append([customer, country, tenure, tickets, spend, churned])
    with open(events.path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "country", "tenure_months", "support_tickets", "monthly_spend", "churned"])
        writer.writerows(selected)
    # Features computed on or after the day the labels were taken can see the outcome.
    leakage = ({"status": "passed", "note": f"features as of {features_as_of}, before the labels"}
               if features_as_of < labels_as_of else
               {"status": "failed", "note": f"features as of {features_as_of}, not before the labels"})
    orchestrack.log_dataset("customer_events", table, version=features_as_of, rows=len(selected),
                            filters={"country": list(countries), "tenure_months": f">= {min_tenure_months}"},
                            labels_as_of=labels_as_of, leakage_check=leakage)


@otk.component(base_image="python:3.11", packages_to_install=PACKAGES)
def train(events: dsl.Input[dsl.Dataset], lr: float, epochs: int, feature_store: str, feature_store_version: str,
          model: dsl.Output[dsl.Model], metrics: dsl.Output[dsl.Metrics]) -> float:
    """Logistic regression by gradient descent (standard library only) on the scaled features."""
    import csv
    import json
    import math

    import orchestrack

    features = ["tenure_months", "support_tickets", "monthly_spend"]
    scale = {"tenure_months": 60.0, "support_tickets": 8.0, "monthly_spend": 120.0}
    orchestrack.log_features(features, target="churned",
                             joins=["customer_events LEFT JOIN support_tickets ON customer_id"],
                             transformations=[f"{f} / {scale[f]:g}" for f in features],
                             feature_store=feature_store, feature_store_version=feature_store_version)
    with open(events.path, newline="") as handle:
        rows = [([1.0] + [float(r[f]) / scale[f] for f in features], int(r["churned"]))
                for r in csv.DictReader(handle)]
    weights = [0.0] * (len(features) + 1)
    for epoch in range(epochs):
        loss = 0.0
        for x, y in rows:
            p = 1 / (1 + math.exp(-sum(w * v for w, v in zip(weights, x, strict=True))))
            loss -= y * math.log(p + 1e-9) + (1 - y) * math.log(1 - p + 1e-9)
            weights = [w - lr * (p - y) * v for w, v in zip(weights, x, strict=True)]
        orchestrack.log_metrics({"train_loss": loss / len(rows)}, step=epoch)
    accuracy = sum((sum(w * v for w, v in zip(weights, x, strict=True)) > 0) == bool(y) for x, y in rows) / len(rows)
    metrics.log_metric("accuracy", round(accuracy, 4))
    with open(model.path, "w") as handle:
        json.dump({"features": features, "weights": weights}, handle)
    return accuracy


@otk.pipeline(name="churn-train", purpose="baseline", run_owner="churn-team", packages_to_install=PACKAGES,
              configs=["churn.yaml"])  # next to this file; read and embedded when the pipeline is defined
def churn_train(rows: int = CONFIG["data"]["rows"], seed: int = CONFIG["data"]["seed"],
                countries: list = CONFIG["data"]["countries"],
                min_tenure_months: int = CONFIG["data"]["min_tenure_months"],
                lr: float = CONFIG["model"]["lr"], epochs: int = CONFIG["model"]["epochs"]) -> None:
    events = extract(table=CONFIG["data"]["table"], rows=rows, seed=seed, countries=countries,
                     min_tenure_months=min_tenure_months, features_as_of=CONFIG["data"]["features_as_of"],
                     labels_as_of=CONFIG["data"]["labels_as_of"])
    train(events=events.outputs["events"], lr=lr, epochs=epochs, feature_store=CONFIG["features"]["store"],
          feature_store_version=CONFIG["features"]["store_version"])


if __name__ == "__main__":
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False))
    churn_train()
