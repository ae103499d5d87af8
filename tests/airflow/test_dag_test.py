"""Real Airflow 3 (dag.test() with its SQLite metadata DB): one DAG run, one tracked run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack import FailureReason, RunStatus, TaskStatus
from tests.airflow.conftest import UPSTREAM_EXAMPLES, upstream_example_sources
from tests.promotion import assert_gated_run

pytestmark = pytest.mark.integration


def load_dag(folder: Path, filename: str, name: str = "dag") -> Any:
    spec = importlib.util.spec_from_file_location(filename.removesuffix(".py"), folder / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def only_run() -> orchestrack.RunRecord:
    runs = orchestrack.search_runs()
    assert len(runs) == 1, [r.key for r in runs]
    return runs[0]


def test_every_way_a_task_ends(dags_folder: Path) -> None:
    dag_run = load_dag(dags_folder, "tracked_cases.py").test()
    record = only_run()
    assert record.key == f"airflow/tracked_cases/{dag_run.run_id}"
    assert (record.owner, record.purpose, record.orchestrator.kind) == ("ml-platform", "tuning", "airflow")
    assert record.orchestrator.pipeline == "tracked_cases" and record.orchestrator.run_id == dag_run.run_id
    assert record.orchestrator.pipeline_version  # the DAG version id
    assert record.orchestrator.details["dag_version_number"] == 1  # read by the DAG-run hook
    assert record.orchestrator.details["run_type"] == "manual"
    assert record.params == {"lr": 0.1, "api_token": "***"}
    # The Asset's URI as Airflow normalises it (no trailing slash).
    assert sorted((d.name, d.uri) for d in record.data) == [("scores", "s3://bucket/scores"),
                                                             ("train", "s3://bucket/train/")]
    assert record.metrics == {"auc": 0.91}

    attempts = {(t.name, t.attempt): t for t in record.tasks}
    assert attempts[("ok", 1)].status is TaskStatus.SUCCEEDED
    missing = attempts[("missing_input", 1)]
    assert missing.status is TaskStatus.FAILED and missing.failure.reason is FailureReason.DATA_ERROR  # type: ignore[union-attr]
    assert "s3cache/train.parquet" in missing.failure.summary  # type: ignore[union-attr]
    slow = attempts[("too_slow", 1)]
    assert slow.status is TaskStatus.FAILED and slow.failure.reason is FailureReason.TIMEOUT  # type: ignore[union-attr]
    assert [attempts[("flaky", n)].status for n in (1, 2, 3)] == [TaskStatus.FAILED, TaskStatus.FAILED,
                                                                  TaskStatus.SUCCEEDED]
    assert attempts[("flaky", 1)].failure.reason is FailureReason.INFRA_ERROR  # type: ignore[union-attr]
    assert {attempts[(f"shard[{i}]", 1)].status for i in range(3)} == {TaskStatus.SUCCEEDED}
    assert attempts[("chosen", 1)].status is TaskStatus.SUCCEEDED
    assert attempts[("not_chosen", 0)].status is TaskStatus.SKIPPED  # no task hook: read at DAG-run end
    assert attempts[("after_missing_input", 0)].status is TaskStatus.UPSTREAM_FAILED
    never_ran = (TaskStatus.SKIPPED, TaskStatus.UPSTREAM_FAILED)
    assert all(t.hostname for t in record.tasks if t.status not in never_ran)

    assert record.status is RunStatus.FAILED and record.ended_at is not None
    assert record.failure is not None and record.failure.task in ("missing_input", "too_slow")
    assert record.failure.reason in (FailureReason.DATA_ERROR, FailureReason.TIMEOUT)


def test_existing_dag_with_the_operator_added(dags_folder: Path) -> None:
    dag_run = load_dag(dags_folder, "churn_train_dag.py").test()
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED and record.failure is None, record.failure
    assert record.key == f"airflow/churn_train/{dag_run.run_id}"
    assert [(t.name, t.status) for t in sorted(record.tasks, key=lambda t: t.started_at)] == [
        ("orchestrack", TaskStatus.SUCCEEDED), ("extract", TaskStatus.SUCCEEDED), ("train", TaskStatus.SUCCEEDED),
        ("evaluate", TaskStatus.SUCCEEDED)]
    assert record.params == {"min_accuracy": 0.7} and record.owner == "ml-platform"
    assert record.data[0].name == "events" and record.data[0].rows == 300
    assert len(record.metric_series["train_loss"]) == 5 and record.metrics["accuracy"] >= 0.7
    assert sorted(a.kind for a in record.artifacts) == ["config", "model"]  # the config: configs=


def test_the_operators_run_facts_travel_in_airflows_serialized_dag() -> None:
    """The scheduler holds the DAG serialized: when no task ran, the DAG run's end opens the run from it."""
    from airflow.sdk import DAG
    try:  # Airflow 3.1 and later
        from airflow.serialization.serialized_objects import DagSerialization as serialization
    except ImportError:  # Airflow 3.0
        from airflow.serialization.serialized_objects import SerializedDAG as serialization

    from orchestrack.airflow.operator import TrackRunOperator, run_facts_of, tracker_in

    with DAG("serialized_facts", schedule=None, default_args={"owner": "ml-platform"}) as dag:
        TrackRunOperator(task_id="orchestrack", purpose="tuning", run_tags={"team": "forecasting", "ticket": "ML-7"})
    with DAG("serialized_defaults", schedule=None) as plain:
        TrackRunOperator(task_id="orchestrack")
    stored = serialization.from_dict(serialization.to_dict(dag))  # to_dict checks Airflow's JSON schema
    tracker = tracker_in(stored)
    assert tracker is not None and not isinstance(tracker, TrackRunOperator)
    assert run_facts_of(tracker) == {"owner": "ml-platform", "purpose": "tuning",
                                     "tags": {"team": "forecasting", "ticket": "ML-7"}}
    assert run_facts_of(tracker) == run_facts_of(dag.get_task("orchestrack"))
    bare = tracker_in(serialization.from_dict(serialization.to_dict(plain)))
    assert run_facts_of(bare) == run_facts_of(plain.get_task("orchestrack"))
    assert run_facts_of(bare)["purpose"] is None and run_facts_of(bare)["tags"] == {}


def test_the_run_link_opens_the_configured_viewer(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from orchestrack.airflow.operator import OrchestrackRunLink, TrackRunOperator

    link = OrchestrackRunLink()
    ti_key = SimpleNamespace(dag_id="train", run_id="manual__1")
    assert link.name == "orchestrack run" and any(isinstance(x, OrchestrackRunLink)
                                                   for x in TrackRunOperator.operator_extra_links)
    assert link.get_link(None, ti_key=ti_key) == ""  # no viewer configured: nothing to open
    monkeypatch.setenv("ORCHESTRACK_UI_URL", "https://runs.example.com/run/{run_id}?key={key}")
    expected_id = orchestrack.run_id_for("airflow/train/manual__1")
    assert link.get_link(None, ti_key=ti_key) == (
        f"https://runs.example.com/run/{expected_id}?key=airflow%2Ftrain%2Fmanual__1")
    monkeypatch.setenv("ORCHESTRACK_UI_URL", "http://127.0.0.1:8765")  # `orchestrack ui`'s address
    assert link.get_link(None, ti_key=ti_key) == f"http://127.0.0.1:8765/runs/{expected_id}"


def airflow_task_instances(dag_run: Any) -> dict[str, tuple[str, int]]:
    """Airflow's own list: task name (with map index) -> (state, try number)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_run.dag_id,
                                                  TaskInstance.run_id == dag_run.run_id).all()
        return {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"):
                (getattr(ti.state, "value", ti.state), ti.try_number) for ti in rows}


STATUS_OF = {"success": TaskStatus.SUCCEEDED, "failed": TaskStatus.FAILED, "skipped": TaskStatus.SKIPPED,
             "upstream_failed": TaskStatus.UPSTREAM_FAILED}


def test_a_task_expanded_over_300_map_indexes_is_recorded_one_to_one(dags_folder: Path) -> None:
    from tests.airflow.dags.shapes import MALFORMED, WIDTH

    dag_run = load_dag(dags_folder, "shapes.py", "wide_map").test()
    record = only_run()
    airflow = airflow_task_instances(dag_run)
    assert len(airflow) == WIDTH + 1
    assert {a.task_id: (a.status, a.attempt) for a in record.last_attempts().values()} == {
        name: (STATUS_OF[state], tries) for name, (state, tries) in airflow.items()}
    failed = sorted(a.task_id for a in record.tasks if a.status is TaskStatus.FAILED)
    malformed = sorted(f"shard[{n}]" for n in MALFORMED)
    assert failed == malformed and malformed
    assert {a.failure.reason for a in record.tasks if a.failure} == {FailureReason.CODE_ERROR}
    assert len(record.task_metrics) == WIDTH - len(malformed)  # each shard's metric is its own
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert record.started_at == dag_run.start_date  # the DAG run's start, not the first hook's


def test_tasks_that_skip_themselves_and_the_operator_last(dags_folder: Path) -> None:
    dag_run = load_dag(dags_folder, "shapes.py", "skips_itself").test()
    record = only_run()
    assert {a.task_id: (a.status, a.attempt) for a in record.last_attempts().values()} == {
        name: (STATUS_OF[state], tries) for name, (state, tries) in airflow_task_instances(dag_run).items()}
    statuses = {a.task_id: a.status for a in record.tasks}
    assert statuses["nothing_to_do"] is TaskStatus.SKIPPED and statuses["skip_in_python"] is TaskStatus.SKIPPED
    assert [(t.task_id, t.failure) for t in record.tasks if t.failure] == []
    assert record.params == {"threshold": 0.5} and record.orchestrator.details["run_type"] == "manual"
    assert record.orchestrator.url and record.orchestrator.url.endswith(f"/dags/skips_itself/runs/{dag_run.run_id}"
                                                                         .replace(":", "%3A").replace("+", "%2B"))
    assert record.status is RunStatus.SUCCEEDED, record.failure


@pytest.mark.edge_minors_only  # 8 DAGs at 1-4 s a task instance on 3.1 and 3.2: run on 3.0, 3.3, lowest deps
@pytest.mark.parametrize(("filename", "dag_id"),
                         sorted((name, UPSTREAM_EXAMPLES[name]) for name in upstream_example_sources()))
def test_airflows_own_example_dags_with_the_operator_added(dags_folder: Path, filename: str, dag_id: str) -> None:
    spec = importlib.util.spec_from_file_location(f"upstream_{dag_id}", dags_folder / "upstream" / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    import gc

    from airflow.sdk import DAG

    dag = next(o for o in gc.get_objects() if issubclass(type(o), DAG) and o.dag_id == dag_id)
    dag_run = dag.test()
    record = orchestrack.get_run(f"airflow/{dag_id}/{dag_run.run_id}")
    airflow = airflow_task_instances(dag_run)
    assert {a.task_id: (a.status, a.attempt) for a in record.last_attempts().values()} == {
        name: (STATUS_OF[state], tries) for name, (state, tries) in airflow.items()}
    state = getattr(dag_run.state, "value", dag_run.state)
    expected = {"success": {RunStatus.SUCCEEDED}, "failed": {RunStatus.FAILED, RunStatus.CANCELLED}}[state]
    assert record.status in expected, (record.status, record.failure)
    assert (record.failure is None) == (state == "success")


def test_airflows_own_secrets_masker_is_found_on_this_minor() -> None:
    """Values Airflow masks (connection passwords, sensitive variables) stay masked in the record:
    the masker has no public import path, so it is looked up per minor."""
    from orchestrack.airflow.operator import airflow_masked, airflow_redact

    assert airflow_redact() is not None, "Airflow's secrets masker moved: update airflow_redact()"
    try:
        from airflow.sdk._shared.secrets_masker import mask_secret
    except ImportError:
        from airflow.sdk.execution_time.secrets_masker import mask_secret  # Airflow 3.0

    mask_secret("correct-horse-battery-staple")
    assert airflow_masked({"source": "postgresql://u:correct-horse-battery-staple@db/x", "lr": 0.1}) == {
        "source": "postgresql://u:***@db/x", "lr": 0.1}


@pytest.mark.parametrize(("auc", "dag_state", "outcome"), [
    (0.82, "success", "passed"), (0.6, "failed", "failed"), (0.999, "success", "held")])
def test_the_gate_task_passes_fails_or_holds_the_run(dags_folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                     auc: float, dag_state: str, outcome: str) -> None:
    monkeypatch.setenv("ORCHESTRACK_CODE_DIR", str(Path(__file__).resolve().parents[2]))  # a git checkout
    dag_run = load_dag(dags_folder, "gated.py").test(run_conf={"auc": auc})
    assert dag_run.state == dag_state
    record = only_run()
    assert record.gate is not None and record.gate.spec is not None and record.gate.spec.endswith("gate.yaml")
    assert_gated_run(record, outcome, "gate")

