"""Real Airflow 3 processes: API server, scheduler and DAG processor with the LocalExecutor, so the
listener fires in separate processes as in production. One DAG run succeeds; in another the task
process is killed with SIGKILL and the run must still end, the task marked infra-error."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack import FailureReason, RunStatus, TaskStatus
from tests.airflow.conftest import UPSTREAM_EXAMPLES, _copy_upstream_examples, upstream_example_sources

pytestmark = pytest.mark.integration

STACK_DAGS = Path(__file__).parent / "stack_dags"
#: Airflow's own example DAGs (with the operator added) that a real scheduler runs here: EmptyOperators,
#: which the scheduler never runs either, branches and short circuits that skip them, and (3.2 and
#: later) a DAG that fails.
SCHEDULED_EXAMPLES = {"example_skip_dag.py", "example_nested_branch_dag.py", "example_short_circuit_operator.py",
                      "example_failed_dag.py"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Stack:
    """The Airflow processes of one test module, on loopback, in their own AIRFLOW_HOME."""

    def __init__(self, home: Path, orchestrack_home: Path, dags: Path = STACK_DAGS) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.token: str | None = None  # a bearer token, once the API asks for one
        self.pid_file = home / "task.pid"
        self.env = {
            **os.environ,
            "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4", "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
            # A lost worker is noticed in seconds, not the default five minutes (checked free of false alarms).
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "1",
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
            "ORCHESTRACK_HOME": str(orchestrack_home), "ORCHESTRACK_TEST_PID_FILE": str(home / "task.pid"),
        }
        self.env.pop("ORCHESTRACK_STRICT", None)  # the stack's processes run as production does
        self.airflow = str(Path(sys.executable).parent / "airflow")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = home / "logs-stack"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        subprocess.run([self.airflow, "db", "migrate"], env=self.env, check=True, capture_output=True, timeout=300)
        for name, args in (("api-server", ["api-server", "-H", "127.0.0.1", "-p", str(self.port)]),
                           ("scheduler", ["scheduler", "--skip-serve-logs"]), ("dag-processor", ["dag-processor"])):
            log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
            self.processes.append(subprocess.Popen([self.airflow, *args], env=self.env, stdout=log, stderr=log,
                                                   start_new_session=True))
        self.wait(lambda: self.get("/api/v2/monitor/health")["scheduler"]["status"] == "healthy", 120, "healthy")

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.time() + 30
        for process in self.processes:
            try:
                process.wait(max(deadline - time.time(), 1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(OSError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            if err.code != 401 or self.token:
                raise
        # Airflow 3.1 and 3.2 want a token even with all_admins; the simple auth manager hands one out.
        with urllib.request.urlopen(self.base + "/auth/token", timeout=10) as response:
            self.token = json.loads(response.read())["access_token"]
        return self.request(method, path, body)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def wait(self, condition: Any, seconds: float, what: str) -> None:
        deadline, last = time.time() + seconds, None
        while time.time() < deadline:
            try:
                if condition():
                    return
            except (urllib.error.URLError, OSError, KeyError, ValueError) as err:  # starting up, or SQLite busy
                last = err
            time.sleep(0.5)
        logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.logs.glob("*.log"))
        raise AssertionError(f"timed out waiting for {what} ({last})\n{logs}")

    def trigger(self, dag_id: str) -> str:
        self.wait(lambda: self.get(f"/api/v2/dags/{dag_id}")["dag_id"] == dag_id, 120, f"DAG {dag_id} parsed")
        run: dict[str, Any] = {}

        def triggered() -> bool:
            run.update(self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None}))
            return True

        self.wait(triggered, 60, f"DAG {dag_id} triggered")
        return str(run["dag_run_id"])

    def finished(self, dag_id: str, run_id: str, seconds: float = 180) -> str:
        state: dict[str, str] = {}

        def done() -> bool:
            state["value"] = self.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            return state["value"] in ("success", "failed")

        self.wait(done, seconds, f"{dag_id} run {run_id} to finish")
        return state["value"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("airflow-stack")
    dags = home / "dags"
    shutil.copytree(STACK_DAGS, dags)
    _copy_upstream_examples(dags / "upstream", SCHEDULED_EXAMPLES)
    running = Stack(home, home / "orchestrack", dags)
    running.start()
    yield running
    running.stop()


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def runs_in(stack: Stack) -> list[orchestrack.RunRecord]:
    return orchestrack.search_runs(tracking_uri=f"sqlite:///{Path(stack.env['ORCHESTRACK_HOME']) / 'orchestrack.db'}")


def test_listeners_fire_in_the_scheduler_and_task_processes(stack: Stack) -> None:
    run_id = stack.trigger("scheduled_ok")
    assert stack.finished("scheduled_ok", run_id) == "success"
    stack.wait(lambda: any(r.key == f"airflow/scheduled_ok/{run_id}" and r.finished for r in runs_in(stack)),
               60, "the run closed by on_dag_run_success in the scheduler")
    record = next(r for r in runs_in(stack) if r.key == f"airflow/scheduled_ok/{run_id}")
    assert record.status is RunStatus.SUCCEEDED and record.metrics == {"auc": 0.93}
    assert {(t.name, t.status) for t in record.tasks} == {("orchestrack", TaskStatus.SUCCEEDED),
                                                         ("train", TaskStatus.SUCCEEDED)}
    # The operator has nothing to record that the tasks' hooks do not: the scheduler marks it
    # succeeded without running it (no host, no duration), and the first task's hook opens the run.
    operator = stack.get(f"/api/v2/dags/scheduled_ok/dagRuns/{run_id}/taskInstances/orchestrack")
    assert (operator["state"], operator["hostname"] or None, operator["duration"]) == ("success", None, 0)
    assert record.last_attempts()["orchestrack"].hostname is None
    assert (record.purpose, record.owner) == ("baseline", "ml-platform")
    quoted = run_id.replace(":", "%3A").replace("+", "%2B")
    assert record.orchestrator.url == f"{stack.base}/dags/scheduled_ok/runs/{quoted}"


def test_a_dag_run_in_which_no_task_ran_is_still_one_run(stack: Stack) -> None:
    run_id = stack.trigger("scheduled_nothing_runs")
    assert stack.finished("scheduled_nothing_runs", run_id) == "success"
    key = f"airflow/scheduled_nothing_runs/{run_id}"
    stack.wait(lambda: any(r.key == key and r.finished for r in runs_in(stack)), 60,
               "the run opened and closed by on_dag_run_success in the scheduler")
    record = next(r for r in runs_in(stack) if r.key == key)
    assert record.status is RunStatus.SUCCEEDED and record.orchestrator.kind == "airflow"
    assert {(t.name, t.status) for t in record.tasks} == {("orchestrack", TaskStatus.SUCCEEDED),
                                                         ("placeholder", TaskStatus.SUCCEEDED)}
    # No task process read the operator: its facts came with the DAG Airflow serialized.
    assert (record.purpose, record.owner) == ("baseline", "forecasting")
    assert record.orchestrator.pipeline == "scheduled_nothing_runs"
    assert record.tags.get("team") == "forecasting", record.tags


def test_sigkill_of_a_task_process_still_ends_the_run_as_infra_error(stack: Stack) -> None:
    run_id = stack.trigger("scheduled_kill")
    stack.wait(lambda: stack.pid_file.exists() and stack.pid_file.read_text().strip() != "", 120, "the task to start")
    os.kill(int(stack.pid_file.read_text()), signal.SIGKILL)
    assert stack.finished("scheduled_kill", run_id) == "failed"
    stack.wait(lambda: any(r.key == f"airflow/scheduled_kill/{run_id}" and r.finished for r in runs_in(stack)),
               60, "the run closed by on_dag_run_failed in the scheduler")
    record = next(r for r in runs_in(stack) if r.key == f"airflow/scheduled_kill/{run_id}")
    killed = next(t for t in record.tasks if t.name == "long_train")
    assert killed.status is TaskStatus.FAILED and killed.failure is not None
    assert killed.failure.reason is FailureReason.INFRA_ERROR and killed.failure.detail == "process-lost"
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert record.failure.reason is FailureReason.INFRA_ERROR and record.failure.task == "long_train"
    # Airflow's own dates, not the moment the run was closed.
    ti = stack.request("GET", f"/api/v2/dags/scheduled_kill/dagRuns/{run_id}/taskInstances/long_train")
    dag_run = stack.request("GET", f"/api/v2/dags/scheduled_kill/dagRuns/{run_id}")
    assert (killed.started_at, killed.ended_at) == (parse_time(ti["start_date"]), parse_time(ti["end_date"]))
    assert record.started_at == parse_time(dag_run["start_date"])


def test_dagrun_timeout_ends_the_run_as_timeout(stack: Stack) -> None:
    run_id = stack.trigger("scheduled_dagrun_timeout")
    assert stack.finished("scheduled_dagrun_timeout", run_id) == "failed"
    key = f"airflow/scheduled_dagrun_timeout/{run_id}"
    stack.wait(lambda: any(r.key == key and r.finished for r in runs_in(stack)), 60, "the timed-out run closed")
    record = next(r for r in runs_in(stack) if r.key == key)
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert (record.failure.reason, record.failure.detail) == (FailureReason.TIMEOUT, "dagrun-timeout")
    assert not [t for t in record.tasks if t.status is TaskStatus.RUNNING]
    # The task the timeout stopped (Airflow 3.0 and 3.1 mark it skipped) failed by the timeout.
    stopped = record.last_attempts()["never_ends"]
    assert stopped.status is TaskStatus.FAILED and stopped.failure is not None, stopped
    assert stopped.failure.reason is FailureReason.TIMEOUT, stopped.failure


def test_a_person_marking_the_run_failed_is_cancelled(stack: Stack) -> None:
    run_id = stack.trigger("scheduled_marked_failed")
    marker = Path(str(stack.pid_file) + ".manual")
    stack.wait(lambda: marker.exists(), 120, "the task to start")
    stack.request("PATCH", f"/api/v2/dags/scheduled_marked_failed/dagRuns/{run_id}", {"state": "failed"})
    key = f"airflow/scheduled_marked_failed/{run_id}"
    stack.wait(lambda: any(r.key == key and r.finished for r in runs_in(stack)), 90, "the marked run closed")
    record = next(r for r in runs_in(stack) if r.key == key)
    assert record.status is RunStatus.CANCELLED, (record.status, record.failure, record.tasks)
    assert record.failure is not None and record.failure.reason is FailureReason.CANCELLED
    airflow = stack.request("GET", f"/api/v2/dags/scheduled_marked_failed/dagRuns/{run_id}/taskInstances")
    assert len(airflow["task_instances"]) == 10
    final = {"success": TaskStatus.SUCCEEDED, "skipped": TaskStatus.SKIPPED, "failed": TaskStatus.CANCELLED,
             "upstream_failed": TaskStatus.UPSTREAM_FAILED}  # failed by a person: cancelled
    assert {a.task_id: a.status for a in record.last_attempts().values()} == {
        ti["task_id"]: final[ti["state"]] for ti in airflow["task_instances"]}
    time.sleep(5)  # the stopped task's own hooks arrive late: they must not rewrite the closed run
    assert next(r for r in runs_in(stack) if r.key == key) == record


def test_a_killed_supervisor_is_reported_by_the_scheduler_as_infra_error(stack: Stack) -> None:
    run_id = stack.trigger("scheduled_supervisor_kill")
    marker = Path(str(stack.pid_file) + ".supervised")
    stack.wait(lambda: marker.exists() and marker.read_text().strip() != "", 120, "the task to start")
    task_pid = int(marker.read_text())
    supervisor = int(next(line.split()[1] for line in Path(f"/proc/{task_pid}/status").read_text().splitlines()
                          if line.startswith("PPid:")))
    os.kill(supervisor, signal.SIGKILL)  # the worker's supervisor dies: no more heartbeats
    try:
        assert stack.finished("scheduled_supervisor_kill", run_id) == "failed"
        key = f"airflow/scheduled_supervisor_kill/{run_id}"
        stack.wait(lambda: any(r.key == key and r.finished for r in runs_in(stack)), 60, "the run closed")
        record = next(r for r in runs_in(stack) if r.key == key)
        lost = next(t for t in record.tasks if t.name == "loses_its_supervisor")
        assert lost.status is TaskStatus.FAILED and lost.failure is not None, lost
        assert lost.failure.reason is FailureReason.INFRA_ERROR, lost.failure
        assert record.failure is not None and record.failure.reason is FailureReason.INFRA_ERROR
    finally:
        with contextlib.suppress(OSError):
            os.kill(task_pid, signal.SIGKILL)  # Airflow never kills the orphaned task process


@pytest.mark.parametrize("filename", sorted(SCHEDULED_EXAMPLES & set(upstream_example_sources())))
def test_airflows_own_example_dags_run_by_the_scheduler_are_recorded_as_airflow_has_them(
        stack: Stack, filename: str) -> None:
    dag_id = UPSTREAM_EXAMPLES[filename]
    run_id = stack.trigger(dag_id)
    state = stack.finished(dag_id, run_id)
    key = f"airflow/{dag_id}/{run_id}"
    stack.wait(lambda: any(r.key == key and r.finished for r in runs_in(stack)), 60, f"{dag_id}'s run closed")
    record = next(r for r in runs_in(stack) if r.key == key)
    instances = stack.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")
    assert instances["total_entries"] == len(instances["task_instances"])  # every one on this page
    status_of = {"success": TaskStatus.SUCCEEDED, "skipped": TaskStatus.SKIPPED, "failed": TaskStatus.FAILED,
                 "upstream_failed": TaskStatus.UPSTREAM_FAILED}
    assert {a.task_id: (a.status, a.attempt) for a in record.last_attempts().values()} == {
        (ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"):
        (status_of[ti["state"]], ti["try_number"]) for ti in instances["task_instances"]}
    assert record.status is {"success": RunStatus.SUCCEEDED, "failed": RunStatus.FAILED}[state], record.failure
    assert (record.purpose, record.orchestrator.run_id) == ("baseline", run_id)
