"""Prefect objects in, neutral facts out: the run key, orchestrator facts, task attempts.

Hooks can run in the flow's own process or in a runner that has none of its memory, so everything
here works from the ``Flow``, the ``FlowRun`` and the Prefect API alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orchestrack.record import OrchestratorInfo, OrchestratorKind, TaskStatus


def run_key(flow_run_id: Any) -> str:
    """The orchestrack key of one flow run (every task, thread and runner derives the same one)."""
    return f"prefect/{flow_run_id}"


def orchestrator_info(flow: Any, flow_run: Any, ui_url: str | None = None,
                      process: dict[str, Any] | None = None) -> OrchestratorInfo:
    """Flow name and version, flow run id and name, deployment, work pool, tags, parent flow run, and
    (from the flow's own process) its host and pid, which :func:`reap_lost_runs` checks."""
    details: dict[str, Any] = dict(process or {})
    for name in ("name", "deployment_id", "deployment_version", "work_pool_name", "parent_task_run_id"):
        value = getattr(flow_run, name, None)
        if value is not None:
            details["flow_run_name" if name == "name" else name] = str(value)
    if getattr(flow_run, "tags", None):
        details["tags"] = sorted(flow_run.tags)
    return OrchestratorInfo(kind=OrchestratorKind.PREFECT, pipeline=getattr(flow, "name", None),
                            pipeline_version=getattr(flow_run, "flow_version", None) or getattr(flow, "version", None),
                            run_id=str(flow_run.id), url=ui_url, details=details)


def image_of(flow_run: Any) -> str | None:
    """The container image from the run's job variables (Docker/Kubernetes work pools)."""
    variables = getattr(flow_run, "job_variables", None) or {}
    image = variables.get("image") if isinstance(variables, dict) else None
    return str(image) if image else None


@dataclass
class Attempt:
    """One try of one task run, read back from the task run's state history."""

    name: str
    number: int
    status: TaskStatus
    started_at: datetime | None
    ended_at: datetime | None
    message: str | None
    state_name: str
    error: BaseException | None = None


_FINAL = {"COMPLETED": TaskStatus.SUCCEEDED, "FAILED": TaskStatus.FAILED, "CRASHED": TaskStatus.FAILED,
          "CANCELLED": TaskStatus.CANCELLED, "CANCELLING": TaskStatus.CANCELLED}


def attempts_from_states(name: str, states: list[Any]) -> list[Attempt]:
    """Each RUNNING state opens an attempt; the next retry, failure or final state closes it."""
    attempts: list[Attempt] = []
    current: Attempt | None = None
    for state in sorted(states, key=lambda s: s.timestamp):
        kind = getattr(state.type, "value", str(state.type))
        if state.name == "Retrying" and current is not None and current.ended_at is None:
            # Prefect 3 retries in place: "Retrying" (a RUNNING state) ends one try and starts the next.
            current.status, current.ended_at = TaskStatus.FAILED, state.timestamp
            current.message, current.state_name = state.message, state.name
            current = Attempt(name, len(attempts) + 1, TaskStatus.RUNNING, state.timestamp, None, None, state.name)
            attempts.append(current)
            continue
        if kind == "RUNNING":
            if current is not None and current.ended_at is None:
                continue  # Prefect can report RUNNING twice for one try
            current = Attempt(name, len(attempts) + 1, TaskStatus.RUNNING, state.timestamp, None, None, state.name)
            attempts.append(current)
        elif current is not None and current.ended_at is None and (
                kind in _FINAL or state.name in ("AwaitingRetry", "Retrying")):
            current.status = _FINAL.get(kind, TaskStatus.FAILED)
            current.ended_at = state.timestamp
            current.message = state.message
            current.state_name = state.name
    return attempts
