"""Prefect objects in, neutral facts out: the run key, orchestrator facts, task reports, how a run ended.

Hooks can run in the flow's own process or in a runner that has none of its memory, so everything
here works from the ``Flow``, the ``FlowRun`` and the Prefect API alone.
"""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from orchestrack.outcome import Outcome, RunEnd, TaskReport
from orchestrack.record import OrchestratorInfo, OrchestratorKind


def run_key(flow_run_id: Any) -> str:
    """The orchestrack key of one flow run (every task, thread and runner derives the same one)."""
    return f"prefect/{flow_run_id}"


def orchestrator_info(flow: Any, flow_run: Any, ui_url: str | None = None,
                      process: dict[str, Any] | None = None, *, ended: bool = False) -> OrchestratorInfo:
    """Flow name and version, flow run id and name, deployment, work pool, tags, parent flow run,
    (from the flow's own process) its host and pid, which :func:`reap_lost_runs` checks, and (once
    the flow run ended) how many tries it took."""
    details: dict[str, Any] = dict(process or {})
    for name in ("name", "deployment_id", "deployment_version", "work_pool_name", "parent_task_run_id"):
        value = getattr(flow_run, name, None)
        if value is not None:
            details["flow_run_name" if name == "name" else name] = str(value)
    if getattr(flow_run, "tags", None):
        details["tags"] = sorted(flow_run.tags)
    if ended and int(getattr(flow_run, "run_count", 0) or 0) > 1:
        details["flow_run_tries"] = int(flow_run.run_count)  # a flow with retries=N: one flow run, N+1 tries
    return OrchestratorInfo(kind=OrchestratorKind.PREFECT, pipeline=getattr(flow, "name", None),
                            pipeline_version=getattr(flow_run, "flow_version", None) or getattr(flow, "version", None),
                            run_id=str(flow_run.id), url=ui_url, details=details)


def image_of(flow_run: Any) -> str | None:
    """The container image from the run's job variables (Docker/Kubernetes work pools)."""
    variables = getattr(flow_run, "job_variables", None) or {}
    image = variables.get("image") if isinstance(variables, dict) else None
    return str(image) if image else None


def report_of_change(task_run: Any, state: Any, error: BaseException | None,
                     started: dict[int, datetime]) -> list[TaskReport]:
    """What one task-run state change, as the task engine makes it, says of the task's attempts.

    ``task_run.run_count`` is already the number of the try a RUNNING state starts; ``started`` is
    the caller's memory of when each try of this task run started (filled here). Pending and
    scheduled states say nothing of an attempt and give no report.
    """
    kind, name, count = _kind(state), getattr(state, "name", ""), int(getattr(task_run, "run_count", 0) or 0)
    task_id, display, at = str(task_run.id), str(task_run.name), state.timestamp
    reports = []
    if kind == "RUNNING":
        if name == "Retrying" and count > 1:  # a retry in place: the previous try failed just now
            reports.append(TaskReport(task_id, display, count - 1, Outcome.FAILED, started.get(count - 1), at,
                                      state.message or None, error))
        started.setdefault(count, at)
        reports.append(TaskReport(task_id, display, count, Outcome.RUNNING, started[count]))
    elif name == "AwaitingRetry":  # scheduled for a later retry: this try failed
        reports.append(TaskReport(task_id, display, count, Outcome.FAILED, started.get(count), at,
                                  state.message or None, error))
    elif kind in _OUTCOMES:
        outcome = Outcome.TIMED_OUT if name == "TimedOut" else _OUTCOMES[kind]
        reports.append(TaskReport(task_id, display, count, outcome, started.get(count), at,
                                  None if outcome is Outcome.SUCCEEDED else (state.message or None),
                                  error if outcome is not Outcome.SUCCEEDED else None, cached=name == "Cached"))
    return reports


def reports_from_api(task_run: Any, states: list[Any] | None) -> list[TaskReport]:
    """The attempts of a task run read back from the API: from its state history when given (needed
    only for runs with retries), else from its current state and times."""
    started: dict[int, datetime] = {}
    if states is None:
        state = task_run.state
        if state is None:
            return []
        if task_run.start_time is not None:
            started[max(int(task_run.run_count or 0), 1)] = task_run.start_time
        if _kind(state) == "RUNNING":
            return [TaskReport(str(task_run.id), str(task_run.name), max(int(task_run.run_count or 0), 1),
                               Outcome.RUNNING, task_run.start_time)]
        return report_of_change(task_run, state, None, started)
    reports: dict[int, TaskReport] = {}
    count = 0
    for state in sorted(states, key=lambda s: s.timestamp):
        if _kind(state) == "RUNNING":
            count += 1
        at_that_time = SimpleNamespace(id=task_run.id, name=task_run.name, run_count=count)
        for report in report_of_change(at_that_time, state, None, started):
            reports[report.attempt] = report
    return [reports[number] for number in sorted(reports)]


def run_end_of(state: Any) -> RunEnd:
    """How a flow run ended, from its final state (Prefect's own type, name and message, and the
    exception a failed flow body raised, where the state holds it)."""
    kind, name, message = _kind(state), getattr(state, "name", ""), state.message or None
    if name == "TimedOut":
        return RunEnd(Outcome.TIMED_OUT, message)
    if kind in ("CANCELLED", "CANCELLING"):
        return RunEnd(Outcome.CANCELLED, message)
    return RunEnd(_OUTCOMES.get(kind, Outcome.FAILED), message, error=_raised(state) if kind == "FAILED" else None)


def _raised(state: Any) -> BaseException | None:
    """The exception of a failed state, as the engine that failed it holds it: the state's data, or the
    result record in it (nothing is read from result storage)."""
    data = getattr(state, "data", None)
    found = getattr(data, "result", data)
    return found if isinstance(found, BaseException) else None


_OUTCOMES = {"COMPLETED": Outcome.SUCCEEDED, "FAILED": Outcome.FAILED, "CRASHED": Outcome.CRASHED,
             "CANCELLED": Outcome.CANCELLED, "CANCELLING": Outcome.CANCELLED}


def _kind(state: Any) -> str:
    return str(getattr(state.type, "value", state.type))
