"""Real Airflow 3 (dag.test()) tracked into a real MLflow server with artifacts on a real S3 server
(SeaweedFS), configured as a user does: ORCHESTRACK_TRACKING_URI, ORCHESTRACK_ARTIFACT_URI and
boto3's own AWS_* variables. Read back from each server's side with its own client."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import orchestrack
from orchestrack import stores
from tests.airflow.test_dag_test import load_dag
from tests.servers import MlflowServer, s3_client

pytestmark = pytest.mark.mlflow_s3


def test_a_dag_run_is_one_mlflow_run_with_its_artifacts_on_s3(
        dags_folder: Path, mlflow_server: MlflowServer, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from mlflow import MlflowClient

    from orchestrack.airflow.operator import OrchestrackRunLink
    from tests.airflow.dags.mlflow_s3 import MISSING_INPUT, MODEL_BYTES

    # dag.test() runs each task in this process: the environment is the workers' environment.
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("ORCHESTRACK_ARTIFACT_URI", f"s3://{bucket}/orchestrack/artifacts")
    dag = load_dag(dags_folder, "mlflow_s3.py")
    dag_run = dag.test()
    assert getattr(dag_run.state, "value", dag_run.state) == "failed"
    key = f"airflow/mlflow_s3/{dag_run.run_id}"

    # MLflow's side: exactly one MLflow run carries the key, in the experiment named after the DAG.
    client = MlflowClient(tracking_uri=mlflow_server.url)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, f"tags.`orchestrack.key` = '{key}'")
    assert len(found) == 1, [(r.info.run_id, r.info.experiment_id) for r in found]
    run = found[0]
    assert client.get_experiment(run.info.experiment_id).name == "mlflow_s3"
    assert run.info.status == "FAILED" and run.info.end_time is not None
    tags = run.data.tags
    assert (tags["orchestrack.status"], tags["orchestrack.reason"]) == ("failed", "data-error")
    assert "prepare" in tags["orchestrack.sentence"] and MISSING_INPUT in tags["orchestrack.sentence"]
    assert tags["mlflow.user"] == "ml-platform" and tags["orchestrack.purpose"] == "tuning"
    assert run.data.params == {"epochs": "3", "lr": "0.05", "batch_size": "64"}
    assert run.data.metrics == {"auc": 0.91, "loss": 0.25, "tasks/train/auc": 0.91, "tasks/train/loss": 0.25}

    # One nested child run per task attempt, with Airflow's outcome as MLflow's status.
    children = client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert {(c.data.tags["orchestrack.task_id"], c.data.tags["orchestrack.attempt"]): c.info.status
            for c in children} == {("orchestrack", "1"): "FINISHED", ("train", "1"): "FINISHED",
                                   ("prepare", "1"): "FAILED"}
    assert len(children) == 3
    failed = next(c for c in children if c.data.tags["orchestrack.task_id"] == "prepare")
    assert (failed.data.tags["orchestrack.status"], failed.data.tags["orchestrack.reason"]) == ("failed", "data-error")
    assert MISSING_INPUT in failed.data.tags["orchestrack.sentence"]
    assert all(c.info.end_time is not None for c in children)

    # S3's side: the model's bytes under the artifact prefix, content-addressed, and nothing else.
    sha256 = hashlib.sha256(MODEL_BYTES).hexdigest()
    object_key = f"orchestrack/artifacts/sha256/{sha256[:2]}/{sha256}"
    s3 = s3_client()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="orchestrack/artifacts/").get("Contents", [])
    assert [o["Key"] for o in listed] == [object_key]
    assert s3.get_object(Bucket=bucket, Key=object_key)["Body"].read() == MODEL_BYTES
    (artifact,) = orchestrack.get_run(key).artifacts
    assert (artifact.name, artifact.kind, artifact.task) == ("model.bin", "model", "train")
    assert (artifact.uri, artifact.sha256, artifact.size_bytes) == (f"s3://{bucket}/{object_key}", sha256,
                                                                    len(MODEL_BYTES))

    # The operator's extra link, as the API server (a process that never saw the run) computes it.
    stores.close_all()
    ti_key = TaskInstanceKey(dag_id="mlflow_s3", task_id="orchestrack", run_id=dag_run.run_id, try_number=1)
    link = OrchestrackRunLink().get_link(dag.get_task("orchestrack"), ti_key=ti_key)
    assert link == f"{mlflow_server.url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
