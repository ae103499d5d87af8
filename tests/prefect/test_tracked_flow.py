"""Real Prefect 3 (a `prefect server` on loopback): one flow run, one tracked run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import Flow, get_client

import orchestrack
from orchestrack import FailureReason, RunStatus, TaskStatus
from orchestrack.prefect import tracked_flow
from tests.prefect import flows
from tests.promotion import assert_gated_run

pytestmark = pytest.mark.integration


def only_run() -> orchestrack.RunRecord:
    runs = orchestrack.search_runs()
    assert len(runs) == 1, [r.key for r in runs]
    return runs[0]


@contextlib.contextmanager
def served_run(tmp_path: Path) -> Iterator[tuple[Any, int]]:
    """A run of `hangs` through a Prefect runner (`flow.serve`), once its flow process has started:
    yields the flow run and the flow process's pid; stops the runner afterwards."""
    from prefect.deployments import run_deployment

    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, "-m", "tests.prefect.flows", "serve"], cwd=root, env=dict(os.environ),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pid_file = tmp_path / "pid"
    try:
        deadline = time.time() + 120
        while True:  # the runner registers the deployment when it starts
            try:
                flow_run = run_deployment("hangs/hangs-served", parameters={"pid_file": str(pid_file)}, timeout=0)
                break
            except Exception:
                assert time.time() < deadline and server.poll() is None
                time.sleep(0.5)
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert time.time() < deadline
            time.sleep(0.2)
        yield flow_run, int(pid_file.read_text())
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)


def wait_until_finished(key: str, seconds: float = 120) -> orchestrack.RunRecord:
    deadline = time.time() + seconds
    while not any(r.key == key and r.finished for r in orchestrack.search_runs()):
        assert time.time() < deadline, orchestrack.search_runs()
        time.sleep(0.5)
    return orchestrack.get_run(key)


def test_a_succeeding_flow_is_one_run_with_everything() -> None:
    state = flows.succeeds(return_state=True)
    assert state.is_completed()
    record = only_run()
    flow_run_id = str(state.state_details.flow_run_id)
    assert record.key == f"prefect/{flow_run_id}" and record.status is RunStatus.SUCCEEDED
    assert (record.owner, record.purpose, record.orchestrator.kind) == ("ml-platform", "baseline", "prefect")
    assert record.orchestrator.pipeline == "succeeds" and record.orchestrator.pipeline_version
    assert record.orchestrator.url and record.orchestrator.url.endswith(f"/runs/flow-run/{flow_run_id}")
    assert record.params == {"lr": 3e-4, "api_key": "***"}
    assert record.metrics == {"loss": 1.0 / 3, "auc": 0.9} and len(record.metric_series["loss"]) == 3
    assert record.data[0].name == "events" and record.data[0].rows == 100
    assert sorted((t.name.split("-")[0], t.attempt, t.status) for t in record.tasks) == [
        ("load", 1, TaskStatus.SUCCEEDED), ("train", 1, TaskStatus.SUCCEEDED)]
    with get_client(sync_client=True) as client:
        artifact = client.read_latest_artifacts()
    assert any(a.key == "orchestrack-run" and "succeeded" in str(a.data) for a in artifact)


def test_a_failing_task_gives_the_run_its_reason() -> None:
    state = flows.fails_in_a_task(return_state=True)
    assert state.is_failed()
    record = only_run()
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert record.failure.reason is FailureReason.DATA_ERROR and record.failure.task.startswith("read_missing")
    assert "data/train.parquet" in record.failure.summary


def test_a_task_timeout_is_timeout() -> None:
    state = flows.times_out(return_state=True)
    assert state.is_failed()
    record = only_run()
    assert record.failure is not None and record.failure.reason is FailureReason.TIMEOUT, record.failure
    slow = next(t for t in record.tasks if t.name.startswith("slow"))
    assert slow.status is TaskStatus.FAILED and slow.failure.reason is FailureReason.TIMEOUT  # type: ignore[union-attr]


def test_retries_are_attempts(tmp_path: Path) -> None:
    state = flows.retries_then_succeeds(str(tmp_path / "tries"), return_state=True)
    assert state.is_completed()
    record = only_run()
    attempts = sorted((t.attempt, t.status) for t in record.tasks if t.name.startswith("flaky"))
    assert attempts == [(1, TaskStatus.FAILED), (2, TaskStatus.FAILED), (3, TaskStatus.SUCCEEDED)]
    first = next(t for t in record.tasks if t.name.startswith("flaky") and t.attempt == 1)
    assert first.failure is not None and first.failure.reason is FailureReason.INFRA_ERROR
    assert record.status is RunStatus.SUCCEEDED and record.failure is None


def test_concurrent_tasks_are_all_recorded() -> None:
    assert flows.concurrent() == 1 + 4 + 9 + 16
    record = only_run()
    assert len([t for t in record.tasks if t.name.startswith("square")]) == 4
    assert {t.status for t in record.tasks} == {TaskStatus.SUCCEEDED}


def test_a_subflow_is_its_own_run_linked_to_the_parent() -> None:
    assert flows.parent() == 9
    runs = orchestrack.search_runs()
    assert {r.orchestrator.pipeline for r in runs} == {"parent", "child"}
    parent = next(r for r in runs if r.orchestrator.pipeline == "parent")
    child = next(r for r in runs if r.orchestrator.pipeline == "child")
    assert child.tags["parent_run"] == parent.key and child.status is parent.status is RunStatus.SUCCEEDED


def test_an_existing_flow_object_can_be_tracked() -> None:
    tracked = tracked_flow(flows.untouched, purpose="baseline")
    assert isinstance(tracked, Flow) and tracked.name == "untouched"
    assert tracked(5) == 10 and flows.untouched(5) == 10  # the original stays untracked
    assert only_run().orchestrator.pipeline == "untouched"


def test_a_flow_body_that_raises_gives_the_run_its_reason() -> None:
    with pytest.raises(ValueError):
        flows.body_raises()
    record = only_run()
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert record.failure.reason is FailureReason.CODE_ERROR, record.failure
    assert "ValueError" in record.failure.summary and record.failure.task is None


def test_a_flow_called_with_a_wrong_parameter_type_gives_the_run_its_reason() -> None:
    from prefect.exceptions import ParameterTypeError

    with pytest.raises(ParameterTypeError):
        flows.takes_rows(rows="many")
    record = only_run()
    assert record.status is RunStatus.FAILED and record.failure is not None
    # Like Airflow's ParamValidationError: the call's own arguments are wrong, a bug of the calling code.
    assert record.failure.reason is FailureReason.CODE_ERROR, record.failure
    assert "rows" in record.failure.summary


def test_tasks_of_a_process_pool_are_read_back_from_the_api() -> None:
    """ProcessPoolTaskRunner runs each task's engine in another process, where the flow's observer cannot
    see it: the flow run's end reads them back from Prefect's API, every one, final states included."""
    flows.process_pool_flow()(n=6)
    record = orchestrack.get_run(only_run().run_id)
    assert record.status is RunStatus.SUCCEEDED  # the flow kept going and completed
    assert len(record.tasks) == 6 and {t.name.rsplit("-", 1)[0] for t in record.tasks} == {"square_but_four"}
    statuses = sorted(t.status.value for t in record.tasks)
    assert statuses == ["failed"] + ["succeeded"] * 5, statuses
    failed = next(t for t in record.tasks if t.status is TaskStatus.FAILED)
    assert failed.failure is not None and "4 is not allowed" in failed.failure.summary


def test_flows_on_methods_run_and_are_tracked() -> None:
    """Prefect's documented flows on a classmethod, a staticmethod and a method keep binding as Prefect binds them."""
    assert flows.Trainer(5).on_instance(lr=0.2) == 5
    assert flows.Trainer.on_class() == "Trainer"
    assert flows.Trainer.on_nothing(rows=4) == 4
    runs = sorted(orchestrack.search_runs(), key=lambda r: r.started_at)
    assert [(r.status, r.purpose) for r in runs] == [(RunStatus.SUCCEEDED, "baseline")] * 3
    assert [r.params for r in runs] == [{"lr": 0.2}, {"lr": 0.1}, {"rows": 4}]
    tasks = [[t.name.split("-")[0] for t in orchestrack.get_run(r.run_id).tasks] for r in runs]
    assert tasks == [["load"], [], ["load"]]  # Prefect names a task run "<task>-<suffix>"


def test_sigterm_crash_ends_the_run(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    process = subprocess.Popen([sys.executable, "-m", "tests.prefect.flows", str(pid_file)],
                               cwd=Path(__file__).resolve().parents[2], env=dict(os.environ),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.time() < deadline and process.poll() is None, process.stdout.read() if process.stdout else ""
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGTERM)
    process.wait(60)
    record = only_run()
    assert record.status is RunStatus.FAILED, record
    # Prefect 3.8.4+ reports the crash itself; before, orchestrack's own SIGTERM bridge records it.
    assert record.failure is not None and record.failure.reason is FailureReason.INFRA_ERROR, record.failure
    assert "termination signal" in (record.failure.evidence or record.failure.summary), record.failure
    assert process.returncode == -signal.SIGTERM  # the process still ends as the signal says


def test_sigkill_of_a_served_flow_run_is_reported_by_the_runner(tmp_path: Path) -> None:
    with served_run(tmp_path) as (flow_run, pid):
        os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
        record = wait_until_finished(f"prefect/{flow_run.id}")
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert record.failure.reason is FailureReason.INFRA_ERROR, record.failure

def test_sigkill_of_a_direct_flow_run_is_reaped(tmp_path: Path) -> None:
    from orchestrack.prefect import reap_lost_runs

    pid_file = tmp_path / "pid"
    process = subprocess.Popen([sys.executable, "-m", "tests.prefect.flows", str(pid_file)],
                               cwd=Path(__file__).resolve().parents[2], env=dict(os.environ),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)  # no hook can run: Prefect keeps the run RUNNING
    process.wait(30)
    record = only_run()
    assert record.status is RunStatus.RUNNING
    assert reap_lost_runs() == [record.key]
    record = orchestrack.get_run(record.key)
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert (record.failure.reason, record.failure.detail) == (FailureReason.INFRA_ERROR, "process-lost")
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(record.orchestrator.run_id).state.is_crashed()
    assert reap_lost_runs() == []  # harmless to run again


def test_sigkill_mid_task_ends_the_task_attempt_infra_error(tmp_path: Path) -> None:
    """The flow process holds the lease of the task attempt it runs; killed mid-task, `orchestrack reap`
    ends the attempt (and the run) failed / infra-error; reap_lost_runs also tells Prefect."""
    from orchestrack.prefect import reap_lost_runs

    pid_file = tmp_path / "pid"
    process = subprocess.Popen([sys.executable, "-m", "tests.prefect.flows", "task", str(pid_file)],
                               cwd=Path(__file__).resolve().parents[2],
                               env={**os.environ, "ORCHESTRACK_LEASE_S": "2"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (orchestrack.search_runs() and any(t.status is TaskStatus.RUNNING for t in only_run().tasks)
               and pid_file.exists() and pid_file.read_text().strip()):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)  # mid-task: no hook can run
    process.wait(30)
    key = only_run().key
    reaped = subprocess.run([sys.executable, "-m", "orchestrack", "reap", "--json"], env=dict(os.environ),
                            capture_output=True, text=True, timeout=120)
    assert reaped.returncode == 0, reaped.stderr
    record = orchestrack.get_run(key)
    (attempt,) = record.tasks
    assert attempt.status is TaskStatus.FAILED and attempt.failure is not None
    assert (attempt.failure.reason, attempt.failure.detail) == (FailureReason.INFRA_ERROR, "process-lost")
    assert f"process gone: pid {process.pid}" in attempt.failure.summary
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert record.failure.reason is FailureReason.INFRA_ERROR
    assert reap_lost_runs() == []  # already closed: nothing changes


def test_the_example_flow_changes_only_its_decorator() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "prefect" / "churn_flow.py"
    spec = importlib.util.spec_from_file_location("churn_flow", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.churn_train() >= 0.7
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED and record.orchestrator.pipeline == "churn-train"
    assert len(record.metric_series["train_loss"]) == 5 and record.metrics["accuracy"] >= 0.7
    assert record.params["threshold"] == 0.7 and record.data[0].rows == 300
    gate = module.churn_train(threshold=0.99, return_state=True)
    assert gate.is_failed()
    failed = orchestrack.search_runs(status="failed")[0]
    assert failed.failure is not None and failed.failure.reason is FailureReason.METRIC_REGRESSION, failed.failure


def test_cancelling_a_served_flow_run_is_cancelled(tmp_path: Path) -> None:
    from prefect.states import Cancelling

    with served_run(tmp_path) as (flow_run, _):
        with get_client(sync_client=True) as client:  # what `prefect flow-run cancel` does
            client.set_flow_run_state(flow_run.id, Cancelling(message="cancelled by a person"), force=True)
        record = wait_until_finished(f"prefect/{flow_run.id}")
    # The runner stops the flow process with SIGTERM; before Prefect 3.8.4 that process records the
    # run itself (as cancelled, not crashed), from 3.8.4 the runner's cancellation hook does.
    assert record.status is RunStatus.CANCELLED, (record.status, record.failure)
    assert record.failure is not None and record.failure.reason is FailureReason.CANCELLED


def prefect_task_runs(flow_run_id: Any) -> list[Any]:
    """Every task run of a flow run, as Prefect has it (every page)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found: list[Any] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                         limit=200, offset=len(found))
            found.extend(page)
            if len(page) < 200:
                return found


def wait_for_prefect_final(flow_run_id: Any, count: int) -> list[Any]:
    """Prefect's own list, once its event stream has delivered every task run's final state."""
    deadline = time.time() + 120
    while True:
        task_runs = prefect_task_runs(flow_run_id)
        if len(task_runs) == count and all(tr.state and tr.state.is_final() for tr in task_runs):
            return task_runs
        assert time.time() < deadline, (len(task_runs), count)
        time.sleep(0.5)


@pytest.mark.newest_minor_only  # scale, not a version difference: on the newest minor (and its lowest deps)
def test_a_thousand_item_map_is_recorded_one_to_one(tmp_path: Path) -> None:
    width = 1000
    state = flows.wide_map(width, str(tmp_path), return_state=True)
    assert state.is_failed()  # some items raise
    record = only_run()
    task_runs = wait_for_prefect_final(state.state_details.flow_run_id, width)
    latest = record.last_attempts()
    assert len(latest) == width and len(task_runs) == width
    expected = {"COMPLETED": TaskStatus.SUCCEEDED, "FAILED": TaskStatus.FAILED}
    assert {str(tr.id): (tr.name, expected[tr.state.type.value], tr.run_count) for tr in task_runs} == {
        a.task_id: (a.name, a.status, a.attempt) for a in latest.values()}
    failed = [a for a in latest.values() if a.status is TaskStatus.FAILED]
    assert len(failed) == len([n for n in range(width) if n % 97 == 13])
    assert {a.failure.reason for a in failed} == {FailureReason.CODE_ERROR}  # type: ignore[union-attr]
    assert all("ValueError" in a.failure.summary for a in failed)  # type: ignore[union-attr]
    retried = [t for t in record.tasks if t.attempt == 1 and t.status is TaskStatus.FAILED
               and t.failure is not None and t.failure.reason is FailureReason.INFRA_ERROR]
    assert len(retried) == len([n for n in range(width) if n % 50 == 7 and n % 97 != 13])
    assert len(record.task_metrics) == width - len(failed)  # each item's metric is its own task's
    assert record.status is RunStatus.FAILED and record.failure in [a.failure for a in failed]


def test_flow_retries_are_counted(tmp_path: Path) -> None:
    assert flows.fails_three_times(str(tmp_path / "tries")) == "ok"
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED
    assert record.orchestrator.details["flow_run_tries"] == 4


def test_a_cached_task_is_marked_cached() -> None:
    assert flows.uses_cache(7) == 49 and flows.uses_cache(7) == 49
    first, second = sorted(orchestrack.search_runs(), key=lambda r: r.started_at)
    assert [t.cached for t in first.tasks] == [False]
    assert [(t.cached, t.status) for t in second.tasks] == [(True, TaskStatus.SUCCEEDED)]


def test_tasks_show_while_the_flow_runs(tmp_path: Path) -> None:
    import threading

    started, release = tmp_path / "started", tmp_path / "release"
    worker = threading.Thread(target=flows.long_running, args=(str(started), str(release)))
    worker.start()
    try:
        deadline = time.time() + 60
        while True:
            runs = orchestrack.search_runs()
            tasks = {t.name.split("-")[0]: t.status for t in runs[0].tasks} if runs else {}
            if tasks == {"square": TaskStatus.SUCCEEDED, "waits_for": TaskStatus.RUNNING}:
                break
            assert time.time() < deadline, tasks
            time.sleep(0.1)
        assert runs[0].status is RunStatus.RUNNING
    finally:
        release.touch()
        worker.join(60)
    assert only_run().status is RunStatus.SUCCEEDED


def test_a_flow_without_tasks_is_recorded() -> None:
    assert flows.no_tasks() == 1
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED and record.tasks == []


@pytest.mark.parametrize(("auc", "outcome"), [(0.82, "passed"), (0.6, "failed"), (0.999, "held")])
def test_the_quality_gate_task_passes_fails_or_holds_the_run(auc: float, outcome: str) -> None:
    state = flows.gated(auc=auc, return_state=True)
    assert state.is_failed() is (outcome == "failed")
    if outcome != "failed":
        assert state.result()["outcome"] == outcome  # the task returns the decision
    assert_gated_run(only_run(), outcome, "quality-gate")
    assert f"### Quality gate: **{outcome}**" in flow_run_artifact(state.state_details.flow_run_id, "orchestrack-gate")


def flow_run_artifact(flow_run_id: Any, key: str) -> str:
    """The data of the artifact ``key`` that the flow run published (read back from Prefect's API)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    published = [str(a.data) for a in artifacts if a.flow_run_id == flow_run_id]
    assert len(published) == 1, published
    return published[0]


def test_the_run_artifact_links_to_orchestrack_ui(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_UI_URL", "http://127.0.0.1:8765")  # `orchestrack ui`'s address
    state = flows.succeeds(return_state=True)
    assert state.is_completed()
    published = flow_run_artifact(state.state_details.flow_run_id, "orchestrack-run")
    assert f"(http://127.0.0.1:8765/runs/{only_run().run_id})" in published
