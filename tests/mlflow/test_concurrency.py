"""32 processes attach to one run on a real MLflow server at the same moment and each log 1,000 metric
points, a param and an artifact, with no error: MLflow holds one run with all 32,000 points, 32 params, 32 artifact
records and 32 task runs, counted with MLflow's own client (tests/concurrency.py has the workers)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from orchestrack.stores.mlflow_store import MlflowStore
from tests.concurrency import KEY, WORKERS, expected_points, run_workers

pytestmark = pytest.mark.timeout(900)


# On MLflow 3 with PostgreSQL, the backend teams run under many writers (MLflow 2 on SQLite passed the same
# test by hand); on two CI cores the suite's time goes to breadth elsewhere.
@pytest.mark.parametrize("server", ["mlflow3-postgresql"], indirect=True)
def test_thirty_two_processes_log_into_one_mlflow_run(store: MlflowStore, mlflow_client: Any, tmp_path: Path) -> None:
    # As workers run in production: fail-open, so each process journals its writes and a courier sends
    # them in batches (strict mode would send every metric point in a request of its own). Each process
    # waits at exit until its journal is delivered, so every write is in MLflow when the workers are done.
    env = {**os.environ, "ORCHESTRACK_TRACKING_URI": store.uri, "ORCHESTRACK_STRICT": "0",
           "ORCHESTRACK_DELIVERY_TIMEOUT_S": "600",
           "ORCHESTRACK_MLFLOW__EXPERIMENT": store.experiment_template, "ORCHESTRACK_MLFLOW__CLAIMS": store.claims}
    assert len(run_workers(tmp_path, env, quiet=True)) == 1  # every process got the same run
    assert not list((tmp_path / "orchestrack-home" / "spool").glob("*.jsonl")), "a write was left undelivered"

    experiment = mlflow_client.get_experiment_by_name(store.experiment_template.format(pipeline="shared", kind=""))
    found = mlflow_client.search_runs([experiment.experiment_id], f"tags.`orchestrack.key` = '{KEY}'")
    assert len(found) == 1
    run = found[0]
    assert run.data.params == {f"param_{i}": str(i) for i in range(WORKERS)}
    for index in range(WORKERS):  # 32,000 points in all, each once
        history = mlflow_client.get_metric_history(run.info.run_id, f"loss_{index}")
        assert sorted((m.step, m.value) for m in history) == expected_points(index)
    artifacts = []
    tags = run.data.tags
    for parts in [k for k in tags if k.startswith("orchestrack.doc.artifact.") and k.endswith(".parts")]:
        base = parts.removesuffix(".parts")
        artifacts.append(json.loads(tags[base] + "".join(tags[f"{base}.{i}"] for i in range(1, int(tags[parts]))))
                         ["artifact"]["name"])
    assert sorted(artifacts) == sorted(f"artifact-{i}.txt" for i in range(WORKERS))
    children = mlflow_client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'",
                                         max_results=1000)
    assert sorted((c.data.tags["orchestrack.task_id"], c.info.status) for c in children) == sorted(
        (f"worker-{i}", "FINISHED") for i in range(WORKERS))
