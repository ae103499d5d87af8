"""Airflow listener hooks in, lifecycle calls out. Every hook is fail-open: a tracking fault is
logged, and the task keeps its own outcome."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from airflow.listeners import hookimpl

import orchestrack
from orchestrack.airflow.facts import image_of, run_key, task_name
from orchestrack.airflow.operator import open_tracked_run, tracker_of
from orchestrack.errors import RunNotFoundError
from orchestrack.lifecycle import Run
from orchestrack.record import Failure, FailureReason, OrchestratorInfo, OrchestratorKind, RunStatus, TaskStatus

log = logging.getLogger(__name__)

#: What a task whose process vanished (SIGKILL, OOM kill) left behind: Airflow failed it for us.
VANISHED = ("The task process ended without reporting and Airflow marked it failed: it was killed (SIGKILL), "
            "often for memory.")
_TERMINAL = {"skipped": TaskStatus.SKIPPED, "upstream_failed": TaskStatus.UPSTREAM_FAILED,
             "removed": TaskStatus.CANCELLED}


def _fail_open(hook: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(hook)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            hook(*args, **kwargs)
        except Exception:
            log.exception("orchestrack listener %s failed; no impact on the task or DAG run", hook.__name__)
    return guarded


def _tracked(key: str) -> bool:
    """Whether a TrackRunOperator (or an earlier hook) opened the run of this DAG run."""
    try:
        orchestrack.get_run(key)
    except RunNotFoundError:
        return False
    return True


def _existing_run(dag_id: str, run_id: str) -> Run | None:
    """The run of a tracked DAG run, attached to; ``None`` if the DAG is not tracked."""
    key = run_key(dag_id, run_id)
    return orchestrack.start_run(key=key) if _tracked(key) else None


def _run_for(ti: Any) -> Run | None:
    tracker = tracker_of(getattr(ti, "task", None))
    if tracker is not None:
        return open_tracked_run(tracker, ti)
    return _existing_run(ti.dag_id, ti.run_id)


class OrchestrackListener:
    """Follows every task attempt of tracked DAGs and closes the run when the DAG run ends."""

    @hookimpl
    @_fail_open
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        ti = task_instance
        run = _run_for(ti)
        if run is None:
            return
        details = {"log_url": getattr(ti, "log_url", None), "image": image_of(getattr(ti, "task", None)),
                   "queue": getattr(ti, "queue", None)}
        run.start_task(task_name(ti.task_id, ti.map_index), ti.try_number, hostname=getattr(ti, "hostname", None),
                       details={k: v for k, v in details.items() if v})

    @hookimpl
    @_fail_open
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        ti = task_instance
        run = _run_for(ti)
        if run is not None:
            run.end_task((task_name(ti.task_id, ti.map_index), ti.try_number), TaskStatus.SUCCEEDED)

    @hookimpl
    @_fail_open
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any = None) -> None:
        # Fired for a failed attempt that will be retried too (state up_for_retry): every try is its own attempt.
        ti = task_instance
        run = _run_for(ti)
        if run is None:
            return
        text = error if isinstance(error, str) else None
        exception = error if isinstance(error, BaseException) else None
        if exception is None and text is None:
            text = VANISHED
        run.end_task((task_name(ti.task_id, ti.map_index), ti.try_number), TaskStatus.FAILED,
                     error=exception, text=text)

    @hookimpl
    @_fail_open
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        _close(dag_run, msg, succeeded=True)

    @hookimpl
    @_fail_open
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        _close(dag_run, msg, succeeded=False)


def _close(dag_run: Any, msg: str, *, succeeded: bool) -> None:
    """Record what the task hooks could not see (skips, upstream failures, killed processes), then close."""
    key = run_key(dag_run.dag_id, dag_run.run_id)
    if not _tracked(key):
        return
    # The scheduler can read the DAG version's number, which task processes cannot.
    version = _dag_version_number(getattr(dag_run, "created_dag_version_id", None))
    run = orchestrack.start_run(key=key, orchestrator=OrchestratorInfo(
        kind=OrchestratorKind.AIRFLOW, details={"dag_version_number": version} if version is not None else {}))
    timed_out = "timed_out" in (msg or "")
    recorded = run.record.last_attempts()
    for task_id, map_index, try_number, state in _task_states(dag_run.dag_id, dag_run.run_id):
        name = task_name(task_id, map_index)
        attempt = max(try_number or 1, 1)
        last = recorded.get(name)
        open_here = last is None or last.status is TaskStatus.RUNNING
        if state in _TERMINAL and last is None:
            run.end_task((name, attempt), _TERMINAL[state])
        elif state == "failed" and open_here:
            run.end_task((name, attempt), TaskStatus.FAILED, text=VANISHED)
        elif state == "success" and open_here:
            run.end_task((name, attempt), TaskStatus.SUCCEEDED)
        elif state in ("running", "queued", "scheduled", "up_for_retry", "deferred", None) and not succeeded:
            if timed_out:
                failure = Failure(reason=FailureReason.TIMEOUT, detail="dagrun-timeout", task=name,
                                  summary=f"Task '{name}' was stopped when its DAG run hit its dagrun_timeout.")
                run.end_task((name, attempt), TaskStatus.FAILED, failure=failure)
            elif last is not None and last.status is TaskStatus.RUNNING:
                run.end_task((name, attempt), TaskStatus.CANCELLED)
    if succeeded:
        run.finish(RunStatus.SUCCEEDED)
    elif timed_out:
        run.finish(RunStatus.FAILED, failure=Failure(
            reason=FailureReason.TIMEOUT, detail="dagrun-timeout",
            summary=f"The DAG run of '{dag_run.dag_id}' exceeded its dagrun_timeout."))
    else:
        run.finish()  # the first failed task decides: a task a person marked failed makes the run cancelled


def _dag_version_number(version_id: Any) -> int | None:
    if version_id is None:
        return None
    try:
        from airflow import settings
        from airflow.models.dag_version import DagVersion
        from sqlalchemy import select
        from sqlalchemy.orm import Session
    except ImportError:
        return None
    with Session(bind=settings.engine) as session:
        number = session.execute(select(DagVersion.version_number).where(DagVersion.id == version_id)).scalar()
    return int(number) if number is not None else None


def _task_states(dag_id: str, run_id: str) -> list[tuple[str, int | None, int, str | None]]:
    """Task instance states from the metadata database (the scheduler and API server can read it)."""
    try:
        from airflow import settings
        from airflow.models.taskinstance import TaskInstance
        from sqlalchemy import select
        from sqlalchemy.orm import Session
    except ImportError:
        return []
    # A session of our own: Airflow's scoped session belongs to the scheduler's loop, and closing it
    # here would detach the scheduler's objects.
    with Session(bind=settings.engine) as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.try_number, TaskInstance.state)
            .where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)).all()
    return [(task_id, map_index, try_number, getattr(state, "value", state)) for task_id, map_index, try_number, state
            in rows]
