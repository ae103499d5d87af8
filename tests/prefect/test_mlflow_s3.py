"""A real Prefect flow run tracked into a real MLflow server with its artifacts on a real S3 server
(SeaweedFS), set up as a user would: ORCHESTRACK_TRACKING_URI, ORCHESTRACK_ARTIFACT_URI and boto3's own
AWS_* variables. Read back from each server's side: MLflow's own client, boto3 and Prefect's client."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

import orchestrack
from tests.prefect import flows
from tests.prefect.test_tracked_flow import wait_for_prefect_final
from tests.servers import MlflowServer, s3_client

# Starting the MLflow server (up to 120 s) and writing 31 child runs into its SQLite store take minutes on two
# busy cores: more than the suite's default 300 s.
pytestmark = [pytest.mark.mlflow_s3, pytest.mark.timeout(600)]

SHARDS, MISSING = 30, 17
#: MLflow search page size: the flow run's child runs take several pages.
PAGE = 7


def every_page(search: Callable[..., Any], **kwargs: Any) -> list[Any]:
    """Every result of an MlflowClient search, page by page."""
    found: list[Any] = []
    token = None
    while True:
        page = search(max_results=PAGE, page_token=token, **kwargs)
        found.extend(page)
        token = page.token
        if not token:
            return found


def test_a_failing_flow_run_is_one_mlflow_run_with_a_child_run_per_task_and_its_artifact_on_s3(
        mlflow_server: MlflowServer, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient, entities

    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", mlflow_server.url)
    monkeypatch.setenv("ORCHESTRACK_ARTIFACT_URI", f"s3://{bucket}/team/runs")
    data_dir = tmp_path / "shards"
    data_dir.mkdir()
    for shard in range(SHARDS):
        if shard != MISSING:
            (data_dir / f"shard-{shard:02d}.csv").write_text("row\n" * (shard + 1))

    state = flows.score_shards(str(data_dir), SHARDS, return_state=True)
    assert state.is_failed()
    flow_run_id = state.state_details.flow_run_id
    key = f"prefect/{flow_run_id}"
    task_runs = wait_for_prefect_final(flow_run_id, SHARDS + 1)  # every shard, and prepare

    # MLflow: one run for the flow run, in the experiment named after the flow.
    client = MlflowClient(tracking_uri=mlflow_server.url)
    every = entities.ViewType.ALL  # deleted ones too: nothing may hide a second run
    experiments = every_page(client.search_experiments, view_type=every)
    runs = every_page(client.search_runs, experiment_ids=[e.experiment_id for e in experiments],
                      filter_string=f"tags.`orchestrack.key` = '{key}'", run_view_type=every)
    assert len(runs) == 1, [(r.info.run_id, r.data.tags.get("orchestrack.record")) for r in runs]
    run = runs[0]
    assert client.get_experiment(run.info.experiment_id).name == "score-shards"
    tags = run.data.tags
    assert run.info.status == "FAILED" and run.info.end_time is not None
    assert (tags["orchestrack.status"], tags["orchestrack.reason"]) == ("failed", "data-error")
    assert f"shard-{MISSING:02d}.csv" in tags["orchestrack.sentence"], tags["orchestrack.sentence"]
    assert tags["orchestrack.orchestrator_run_id"] == str(flow_run_id)
    params = run.data.params
    assert (params["model"], params["learning_rate"], params["shards"]) == ("gbm", "0.1", str(SHARDS))
    history = client.get_metric_history(run.info.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.7), (1, 0.4), (2, 0.25)]

    # One child run per Prefect task run, with its final status.
    children = every_page(client.search_runs, experiment_ids=[run.info.experiment_id],
                          filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'", run_view_type=every)
    twins = Counter(c.data.tags["orchestrack.task_id"] for c in children)
    assert len(children) == len(task_runs) == SHARDS + 1, [  # twins: one attempt made two child runs
        (c.info.run_id, c.info.status, c.data.tags["mlflow.runName"]) for c in children
        if twins[c.data.tags["orchestrack.task_id"]] > 1]
    expected = {"COMPLETED": ("FINISHED", "succeeded"), "FAILED": ("FAILED", "failed")}
    assert {c.data.tags["orchestrack.task_id"]: (c.info.status, c.data.tags["orchestrack.status"]) for c in children} \
        == {str(tr.id): expected[tr.state.type.value] for tr in task_runs}
    failed = [c for c in children if c.info.status == "FAILED"]
    assert len(failed) == 1 and failed[0].data.tags["mlflow.runName"].startswith("score_shard")
    assert failed[0].data.tags["orchestrack.reason"] == "data-error"
    assert f"shard-{MISSING:02d}.csv" in failed[0].data.tags["orchestrack.sentence"]
    scored = {str(tr.id) for tr in task_runs if tr.name.startswith("score_shard") and tr.state.is_completed()}
    by_task = {name: value for name, value in run.data.metrics.items() if name.startswith("tasks/")}
    assert set(by_task) == {f"tasks/{task_id}/rows" for task_id in scored} | {
        f"tasks/{tr.id}/loss" for tr in task_runs if tr.name.startswith("prepare")}
    assert sorted(v for name, v in by_task.items() if name.endswith("/rows")) == [
        float(shard + 1) for shard in range(SHARDS) if shard != MISSING]

    # S3: the report, stored once under the prefix, with the bytes the task wrote.
    report = (data_dir / "report.txt").read_bytes()
    sha256 = hashlib.sha256(report).hexdigest()
    object_key = f"team/runs/sha256/{sha256[:2]}/{sha256}"
    s3 = s3_client()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="team/runs/")
    assert [o["Key"] for o in listed.get("Contents", [])] == [object_key]
    assert s3.get_object(Bucket=bucket, Key=object_key)["Body"].read() == report
    artifacts = orchestrack.get_run(key).artifacts
    assert [(a.name, a.kind, a.uri, a.size_bytes) for a in artifacts] == [
        ("report.txt", "report", f"s3://{bucket}/{object_key}", len(report))]

    # Prefect: the flow run's markdown artifact links the MLflow UI's run page.
    with get_client(sync_client=True) as prefect_client:
        published = prefect_client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["orchestrack-run"]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    page = f"{mlflow_server.url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert len(published) == 1 and published[0].type == "markdown"
    assert f"]({page})" in str(published[0].data), published[0].data
    assert "**failed**" in str(published[0].data) and "data-error" in str(published[0].data)
