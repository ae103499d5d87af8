"""Kubeflow Pipelines v2: kfp.local executing the real components, and the compiled YAML."""

# No `from __future__ import annotations`: kfp reads the pipeline annotations below at runtime.

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kfp import compiler

import orchestrack
from orchestrack import FailureReason, RunStatus, TaskStatus
from orchestrack.kfp.decorators import kfp_version
from orchestrack.kfp.local_runs import local_runner_runs_exit_handlers
from tests.kfp import pipelines
from tests.promotion import assert_gated_run

pytestmark = pytest.mark.integration

#: kfp.local from 2.17 on runs exit handlers and passes tasks' environment variables; before, the
#: calling process closes the run, and what only a task's variables carry is not there locally.
FULL_LOCAL_RUNNER = local_runner_runs_exit_handlers(kfp_version())


def only_run() -> orchestrack.RunRecord:
    runs = orchestrack.search_runs()
    assert len(runs) == 1, [r.key for r in runs]
    return runs[0]


def test_a_succeeding_pipeline_is_one_run_closed_by_the_exit_handler() -> None:
    pipelines.nightly(rows=50, epochs=2)
    record = only_run()
    assert record.key.startswith("kfp/") and record.status is RunStatus.SUCCEEDED
    assert (record.owner, record.purpose, record.orchestrator.kind) == ("ml-platform", "tuning", "kfp")
    assert record.orchestrator.pipeline == "nightly-train" and record.orchestrator.details["run_name"]
    assert [(t.name, t.status) for t in sorted(record.tasks, key=lambda t: t.started_at)] == [
        ("prepare", TaskStatus.SUCCEEDED), ("train", TaskStatus.SUCCEEDED)]
    assert record.params == {"prepare.rows": 50, "train.epochs": 2}
    assert record.metrics == {"auc": 0.91, "loss": 0.5} and len(record.metric_series["loss"]) == 2
    assert [d.name for d in record.data] == ["data"]  # the Input[Dataset]
    assert sorted((a.name, a.kind) for a in record.artifacts) == [("dataset", "dataset"), ("model", "model")]
    assert record.orchestrator.pipeline_version is not None and len(record.orchestrator.pipeline_version) == 16
    train = next(t for t in record.tasks if t.name == "train")
    images = {t.name: t.details.get("image") for t in record.tasks}  # injected at compile time, per component
    if FULL_LOCAL_RUNNER:
        assert (train.details["accelerator_type"], train.details["accelerator_count"]) == ("nvidia.com/gpu", "1")
        assert images == {"prepare": "python:3.11", "train": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"}
    else:  # set_env_variable is not applied by kfp.local before 2.17 (compiled pipelines carry it)
        assert "accelerator_type" not in train.details and images == {"prepare": None, "train": None}


def test_the_exit_task_writes_a_markdown_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_UI_URL", "http://127.0.0.1:8765")  # `orchestrack ui`'s address
    pipelines.nightly(rows=5, epochs=1)
    summaries = [p.read_text() for p in (tmp_path / "pipeline-root").rglob("summary") if p.is_file()]
    if FULL_LOCAL_RUNNER:
        assert summaries and "status: **succeeded**" in summaries[0] and "auc = 0.91" in summaries[0]
        assert f"(http://127.0.0.1:8765/runs/{only_run().run_id})" in summaries[0]  # links to the run page
    else:  # no exit task runs locally before kfp 2.17: the calling process closed the run, without one
        assert summaries == [] and only_run().status is RunStatus.SUCCEEDED


def test_a_pod_on_a_cluster_refuses_a_local_sqlite_store(monkeypatch: pytest.MonkeyPatch,
                                                          capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")  # what every pod sees
    with pytest.raises(RuntimeError, match="FAILURE"):
        pipelines.exits_non_zero(code=0)
    out = capfd.readouterr().out
    assert "no other pod can see" in out and "ORCHESTRACK_TRACKING_URI=http(s)://" in out
    assert "ORCHESTRACK_ARTIFACT_URI=s3://<bucket>/<prefix>" in out and "use_secret_as_env" in out


def run_failed_in_evaluate(pipeline: Any) -> orchestrack.RunRecord:
    """Run a pipeline whose `evaluate` task cannot find its hold-out data; the one run it recorded."""
    with pytest.raises(RuntimeError, match="FAILURE"):
        pipeline()
    record = only_run()
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert record.failure.reason is FailureReason.DATA_ERROR and record.failure.task == "evaluate"
    return record


def test_a_failing_component_gives_the_run_its_reason() -> None:
    record = run_failed_in_evaluate(pipelines.failing)
    assert record.failure is not None and "holdout.parquet" in record.failure.summary


def test_a_component_that_exits_non_zero_fails_the_run() -> None:
    with pytest.raises(RuntimeError, match="FAILURE"):
        pipelines.exits_non_zero(code=3)
    record = only_run()
    crashed = next(t for t in record.tasks if t.name == "crashes")
    assert crashed.status is TaskStatus.FAILED and record.status is RunStatus.FAILED
    assert crashed.failure is not None and crashed.failure.exit_code == 3
    assert record.failure is not None and record.failure.task == "crashes"


def test_a_sigkilled_component_ends_failed_infra_error_by_the_exit_handler() -> None:
    """No code of ours runs in a SIGKILLed component; the exit handler finds its attempt still running,
    its holder gone, and ends it (and the run) failed / infra-error."""
    with pytest.raises(RuntimeError, match="FAILURE"):
        pipelines.loses_a_task()
    record = only_run()
    lost = next(t for t in record.tasks if t.name == "killed-mid-task")
    assert lost.status is TaskStatus.FAILED and lost.failure is not None
    assert (lost.failure.reason, lost.failure.detail) == (FailureReason.INFRA_ERROR, "process-lost")
    assert "process gone: pid" in lost.failure.summary
    assert next(t for t in record.tasks if t.name == "prepare").status is TaskStatus.SUCCEEDED
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert record.failure.reason is FailureReason.INFRA_ERROR and record.failure.task == "killed-mid-task"


def test_the_exit_handler_ends_an_attempt_whose_pod_vanished_as_lost() -> None:
    """On a cluster the killed pod was another machine: its lease may not have expired yet when the exit
    handler runs, but KFP runs it only after every task ended, so an attempt still running lost its pod."""
    from datetime import timedelta

    from orchestrack.kfp.executor import POD_GONE, end_lost_attempts
    from orchestrack.record import TaskAttempt, utcnow

    run = orchestrack.start_run(key="kfp/pod-gone")
    run.store.record_tasks(run.run_id, [TaskAttempt(
        task_id="train", name="train", attempt=1, status=TaskStatus.RUNNING, started_at=utcnow(),
        lease_holder="train-pod-7:1", lease_expires_at=utcnow() + timedelta(seconds=60))])
    end_lost_attempts(run)
    record = run.finish()
    assert record is not None and record.status is RunStatus.FAILED
    (train,) = record.tasks
    assert train.status is TaskStatus.FAILED and train.failure is not None
    assert train.failure.reason is FailureReason.INFRA_ERROR and POD_GONE in train.failure.summary


def test_compiled_yaml_has_the_exit_handler_settings_and_no_secrets(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", "http://mlflow.ml.svc:5000")
    monkeypatch.setenv("ORCHESTRACK_S3__ENDPOINT_URL", "http://minio.kubeflow:9000")
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    from orchestrack import kfp as otk

    # kfp traces a pipeline when it is decorated: settings are read then, from the compiling environment.
    # What a user does with kfp-kubernetes' use_secret_as_env: configure the tasks orchestrack adds too.
    def configure(task: Any) -> None:
        task.set_env_variable("MLFLOW_TRACKING_TOKEN_SECRET", "mlflow-token")

    @otk.pipeline(name="nightly-train", purpose="tuning", configure_task=configure)
    def nightly(rows: int = 50, epochs: int = 2) -> None:
        data = pipelines.prepare(rows=rows)
        trained = pipelines.train(data=data.outputs["dataset"], epochs=epochs)
        trained.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)

    path = tmp_path / "nightly.yaml"
    compiler.Compiler().compile(nightly, str(path))
    text = path.read_text()
    spec = yaml.safe_load(text)
    assert secret not in text
    tasks = spec["root"]["dag"]["tasks"]
    assert any(task["taskInfo"]["name"] == "orchestrack-run" for task in tasks.values())  # the ExitHandler group
    assert tasks["close-run"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    executors = spec["deploymentSpec"]["executors"]
    train_executor = next(e for name, e in executors.items() if "train" in name)["container"]
    assert any("orchestrack.kfp.executor" in part for part in train_executor["command"])
    env = {item["name"]: item["value"] for item in train_executor["env"]}
    assert env["ORCHESTRACK_TRACKING_URI"] == "http://mlflow.ml.svc:5000"
    assert env["ORCHESTRACK_S3__ENDPOINT_URL"] == "http://minio.kubeflow:9000"
    assert env["ORCHESTRACK_KFP_PIPELINE"] == "nightly-train"  # the run's MLflow experiment, whoever opens it
    assert env["ORCHESTRACK_IMAGE"] == "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime"
    accelerator = train_executor["resources"]["accelerator"]
    assert (accelerator["resourceType"], accelerator["resourceCount"]) == ("nvidia.com/gpu", "1")
    assert "{{$.pipeline_job_uuid}}" in text  # the KFP run id placeholder every task receives
    # No task only opens the run: whichever task runs first opens it, with what the pipeline says of it.
    assert sorted(name for name in executors if "run" in name) == ["exec-close-run"]
    opening = json.loads(env["ORCHESTRACK_KFP_OPENING"])
    assert (opening["owner"], opening["purpose"]) == (None, "tuning") and len(opening["pipeline_version"]) == 16
    assert "{{$.pipeline_job_name}}" in text  # the KFP run name, an input of every tracked task
    closer_env = {item["name"]: item["value"] for item in executors["exec-close-run"]["container"]["env"]}
    assert closer_env["MLFLOW_TRACKING_TOKEN_SECRET"] == "mlflow-token"
    assert closer_env["ORCHESTRACK_TRACKING_URI"] == "http://mlflow.ml.svc:5000"
    assert closer_env["ORCHESTRACK_KFP_OPENING"] == env["ORCHESTRACK_KFP_OPENING"]
    assert closer_env["ORCHESTRACK_KFP_PIPELINE"] == "nightly-train"


def test_parallel_for_iterations_are_tasks_of_their_own() -> None:
    if not FULL_LOCAL_RUNNER:  # kfp.local before 2.17 refuses dsl.ParallelFor itself (compiling works)
        with pytest.raises(NotImplementedError, match="ParallelFor"):
            pipelines.cross_validated_folds()
        # kfp 2.14 refuses before any task runs (no run); 2.10 after the tasks before the loop ran:
        # then the run is closed with kfp's own refusal, never left running.
        for record in orchestrack.search_runs():
            assert record.status is RunStatus.FAILED and record.failure is not None
            assert "ParallelFor" in (record.failure.evidence or record.failure.summary), record.failure
        return
    pipelines.cross_validated_folds()
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED and record.orchestrator.pipeline == "cross-validated-folds"
    scores = [t for t in record.tasks if t.name == "score"]
    assert len(scores) == 3 and len({t.task_id for t in scores}) == 3  # one attempt each, not retries of one
    assert {t.attempt for t in scores} == {1} and {t.status for t in scores} == {TaskStatus.SUCCEEDED}
    accuracies = sorted(record.task_metrics[t.task_id]["accuracy"] for t in scores)
    assert accuracies == pytest.approx([0.7, 0.8, 0.9])  # each iteration's metric kept, none overwritten
    assert record.environment.image == "python:3.11"  # kfp's default base image, as the compiled spec says


def test_a_loop_over_dicts_runs_and_is_closed_by_a_last_task(tmp_path: Path) -> None:
    # kfp fails a loop over dicts inside an exit handler (kubeflow/pipelines#13273), plain kfp too:
    # otk.pipeline closes such a pipeline with a last task instead of wrapping it in one.
    compiler.Compiler().compile(pipelines.grid_over_dicts, str(tmp_path / "grid.yaml"))
    tasks = yaml.safe_load((tmp_path / "grid.yaml").read_text())["root"]["dag"]["tasks"]
    assert "finish-run" in tasks and "orchestrack-run" not in json.dumps(tasks)
    if not FULL_LOCAL_RUNNER:  # kfp.local before 2.17 refuses dsl.ParallelFor itself
        return
    pipelines.grid_over_dicts()
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED and record.orchestrator.pipeline == "grid-over-dicts"
    assert sorted(t.name for t in record.tasks) == ["score", "score", "score-2", "score-2"]
    assert "/" not in record.orchestrator.details["run_name"]  # the run's name, not a loop iteration's


def test_a_component_without_a_pipeline_run_is_a_run_of_its_own() -> None:
    pipelines.prepare(rows=3)
    pipelines.prepare(rows=4)
    keys = {r.key for r in orchestrack.search_runs()}
    assert len(keys) == 2 and all(k.startswith("kfp/") for k in keys)  # kfp.local gives each its own job id


def test_a_pipeline_that_returns_an_output_is_closed_by_a_last_task() -> None:
    assert pipelines.returns_an_output(rows=7).output == 7
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED and record.orchestrator.pipeline == "returns-an-output"
    assert [t.name for t in record.tasks] == ["count"]


def test_a_pipeline_of_plain_components_is_one_run_opened_by_the_exit_task() -> None:
    """``otk.pipeline`` over components that are not ours: no task opens the run, so the exit task opens
    it, with the pipeline's facts and the KFP run's name, and closes it with no task attempts."""
    pipelines.only_plain_components(rows=3)
    if not FULL_LOCAL_RUNNER:  # kfp.local before 2.17 runs no exit task, and no tracked task noted a run
        assert orchestrack.search_runs() == []
        return
    record = only_run()
    assert (record.status, record.tasks, record.purpose) == (RunStatus.SUCCEEDED, [], "baseline")
    assert record.orchestrator.pipeline == "only-plain-components"
    assert record.orchestrator.details["run_name"].startswith("only-plain-components-")


def test_a_pipeline_with_its_own_exit_handler_is_closed_by_that_exit_task() -> None:
    record = run_failed_in_evaluate(pipelines.has_its_own_exit_handler)
    # Before kfp 2.17 kfp.local stops at the failed task and runs no exit task: the call closed the run.
    notify = {"notify": TaskStatus.SUCCEEDED} if FULL_LOCAL_RUNNER else {}
    assert {t.name: t.status for t in record.tasks} == {"prepare": TaskStatus.SUCCEEDED,
                                                       "evaluate": TaskStatus.FAILED, **notify}


def test_an_own_exit_handler_with_a_plain_exit_task_is_refused_with_the_fix() -> None:
    from kfp import dsl

    from orchestrack import kfp as otk
    from orchestrack.errors import OrchestrackError

    with pytest.raises(OrchestrackError, match="@otk.component"):
        @otk.pipeline(purpose="baseline", packages_to_install=[])
        def plain_exit_task() -> None:
            with dsl.ExitHandler(pipelines.plain_notify()):
                pipelines.prepare(rows=3)


@pytest.mark.parametrize(("auc", "outcome"), [(0.82, "passed"), (0.6, "failed"), (0.999, "held")])
def test_the_quality_gate_component_passes_fails_or_holds_the_run(auc: float, outcome: str, tmp_path: Path) -> None:
    if outcome == "failed":
        with pytest.raises(RuntimeError, match="FAILURE"):
            pipelines.gated(auc=auc)
    else:
        pipelines.gated(auc=auc)
    assert_gated_run(only_run(), outcome, "check-gate", artifact="model")
    reports = [p.read_text() for p in (tmp_path / "pipeline-root").rglob("gate_report") if p.is_file()]
    assert reports and f"### Quality gate: **{outcome}**" in reports[0] and "| min | auc |" in reports[0]
