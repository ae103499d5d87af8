"""A real kfp.local pipeline tracked into a real MLflow server with its artifacts on a real S3 server
(tests/servers.py), read back with MLflow's and boto3's own clients; and the runs KFP's MLflow plugin
makes on a cluster, written into instead of duplicated."""

import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestrack.lifecycle import run_url
from orchestrack.stores import mlflow_record as layout
from tests.kfp import pipelines
from tests.servers import MlflowServer, s3_client

# Five real tasks, each a Python process that talks to MLflow and S3, on a busy two-core machine.
pytestmark = [pytest.mark.mlflow_s3, pytest.mark.timeout(900)]

RUNS = "tags.`orchestrack.record` = 'run'"
#: What KFP's MLflow plugin injects into every task's container.
PLUGIN_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


@pytest.fixture
def mlflow_client(mlflow_server: MlflowServer) -> Any:
    """MLflow's own client, to read back what the pipeline's tasks wrote."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url)


def orchestrack_runs(client: Any) -> set[str]:
    """The MLflow run ids of every orchestrack run in the server, in any experiment, deleted or not."""
    from mlflow.entities import ViewType

    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    return {r.info.run_id for r in client.search_runs(experiments, RUNS, run_view_type=ViewType.ALL)}


def children_of(client: Any, run: Any) -> list[Any]:
    return list(client.search_runs([run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"))


def test_a_failing_pipeline_is_one_mlflow_run_with_its_artifacts_on_s3(
        mlflow_server: MlflowServer, mlflow_client: Any, bucket: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in PLUGIN_VARIABLES:  # no MLflow plugin here
        monkeypatch.delenv(variable, raising=False)
    # All a user sets (boto3 reads its credentials and endpoint from AWS_*: the bucket fixture set them);
    # kfp.local's subprocesses inherit this environment.
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("ORCHESTRACK_ARTIFACT_URI", f"s3://{bucket}/runs")
    before = orchestrack_runs(mlflow_client)
    with pytest.raises(RuntimeError, match="FAILURE"):
        pipelines.failing()  # prepare -> train (model, metrics) -> evaluate (its hold-out data is missing)

    experiment = mlflow_client.get_experiment_by_name("nightly-eval")  # the pipeline's name
    runs = mlflow_client.search_runs([experiment.experiment_id], RUNS)
    assert len(runs) == 1 and orchestrack_runs(mlflow_client) - before == {runs[0].info.run_id}
    run = runs[0]
    tags = run.data.tags
    assert run.info.status == "FAILED"
    assert (tags["orchestrack.status"], tags["orchestrack.reason"]) == ("failed", "data-error")
    assert tags["orchestrack.key"].startswith("kfp/") and tags["orchestrack.pipeline"] == "nightly-eval"
    assert tags["orchestrack.sentence"].startswith("Task 'evaluate' could not find its input")
    assert "holdout.parquet" in tags["orchestrack.sentence"]
    assert run.data.params["prepare.rows"] == "10" and run.data.params["train.epochs"] == "1"
    assert run.data.metrics["auc"] == 0.91

    children = {c.data.tags["mlflow.runName"]: c for c in children_of(mlflow_client, run)}
    assert {name: (c.info.status, c.data.tags["orchestrack.status"]) for name, c in children.items()} == {
        "prepare #1": ("FINISHED", "succeeded"), "train #1": ("FINISHED", "succeeded"),
        "evaluate #1": ("FAILED", "failed")}
    assert {c.data.tags["orchestrack.record"] for c in children.values()} == {"task"}
    assert len({c.data.tags["orchestrack.task_id"] for c in children.values()}) == 3
    evaluate = children["evaluate #1"].data.tags
    assert evaluate["orchestrack.reason"] == "data-error" and "holdout.parquet" in evaluate["orchestrack.sentence"]

    # The output artifacts' bytes are on S3, where the run's record says, content-addressed.
    artifacts = {d["artifact"]["name"]: d["artifact"] for d in layout.documents_under(tags, "artifact")}
    assert sorted(artifacts) == ["dataset", "model"]
    s3 = s3_client()
    for name, content in (("model", b"weights for 10 rows"), ("dataset", "\n".join(map(str, range(10))).encode())):
        artifact = artifacts[name]
        assert artifact["uri"] == f"s3://{bucket}/runs/sha256/{artifact['sha256'][:2]}/{artifact['sha256']}"
        body = s3.get_object(Bucket=bucket, Key=artifact["uri"].removeprefix(f"s3://{bucket}/"))["Body"].read()
        assert body == content and hashlib.sha256(body).hexdigest() == artifact["sha256"]
        assert artifact["size_bytes"] == len(content)

    # The exit task's Markdown summary, and run.url, open the run's page in the MLflow UI.
    page = f"{mlflow_server.url}/#/experiments/{experiment.experiment_id}/runs/{run.info.run_id}"
    assert run_url(tags["orchestrack.run_id"], tags["orchestrack.key"]) == page
    summaries = [p.read_text() for p in (tmp_path / "pipeline-root").rglob("summary") if p.is_file()]
    assert len(summaries) == 1 and f"[open the run]({page})" in summaries[0], summaries
    assert "status: **failed**" in summaries[0] and "**data-error**" in summaries[0]


def test_with_kfps_mlflow_plugin_the_tasks_write_into_its_runs(
        mlflow_server: MlflowServer, mlflow_client: Any, orchestrack_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # What the plugin makes before a task starts: the API server a parent run per pipeline run, the
    # driver a nested run per task; the launcher injects their ids and the server into the container.
    experiment_id = mlflow_client.create_experiment(f"kfp-plugin-{uuid.uuid4().hex[:8]}")
    parent = mlflow_client.create_run(experiment_id, run_name="nightly-holdout-abc12")
    task_run = mlflow_client.create_run(experiment_id, run_name="evaluate",
                                        tags={"mlflow.parentRunId": parent.info.run_id})
    before = orchestrack_runs(mlflow_client)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("MLFLOW_RUN_ID", task_run.info.run_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", experiment_id)  # and no ORCHESTRACK_* setting at all
    with pytest.raises(RuntimeError, match="FAILURE"):
        pipelines.one_failing_task()

    # No second tree: the plugin's parent run is the pipeline run's record, and nothing else was made.
    assert orchestrack_runs(mlflow_client) - before == {parent.info.run_id}
    joined = mlflow_client.get_run(parent.info.run_id)
    tags = joined.data.tags
    assert joined.info.status == "FAILED" and tags["orchestrack.key"].startswith("kfp/")
    assert (tags["orchestrack.status"], tags["orchestrack.reason"]) == ("failed", "data-error")
    assert tags["orchestrack.pipeline"] == "nightly-holdout"
    # The task's attempt went into the plugin's nested run, not a child of orchestrack's own.
    children = children_of(mlflow_client, joined)
    assert [c.info.run_id for c in children] == [task_run.info.run_id]
    task = children[0]
    assert task.info.status == "FAILED" and task.data.tags["orchestrack.record"] == "task"
    assert task.data.tags["orchestrack.task_id"] and task.data.tags["mlflow.runName"] == "evaluate #1"
    assert (task.data.tags["orchestrack.status"], task.data.tags["orchestrack.reason"]) == ("failed", "data-error")
    assert task.data.tags["orchestrack.sentence"] == tags["orchestrack.sentence"]
    assert "holdout.parquet" in task.data.tags["orchestrack.sentence"]
    # Every task, the open and close tasks included, tracked into MLflow: no embedded store was made.
    assert not (orchestrack_home / "orchestrack.db").exists()
