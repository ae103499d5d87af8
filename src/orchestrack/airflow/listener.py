"""Airflow listener hooks in, neutral reports out. Every hook is fail-open (:mod:`orchestrack.guard`):
a tracking fault is logged, and the task keeps its own outcome."""

from __future__ import annotations

import logging
from typing import Any

from airflow.listeners import hookimpl

import orchestrack
from orchestrack.airflow.facts import dag_version_of, image_of, run_end, run_key, task_name, task_report_at_end
from orchestrack.airflow.operator import forget_opened_run, open_tracked_run, run_facts_of, tracker_in, tracker_of
from orchestrack.delivery import is_transient
from orchestrack.errors import RunNotFoundError
from orchestrack.guard import fail_open
from orchestrack.lifecycle import Run, enter_task
from orchestrack.outcome import Outcome, TaskReport
from orchestrack.record import OrchestratorInfo, OrchestratorKind, utcnow

log = logging.getLogger(__name__)

#: What Airflow says of a task whose process vanished (SIGKILL, OOM kill) without a word.
VANISHED = "Airflow marked it failed after its process vanished: killed, often by the out-of-memory killer"


def _tracked(key: str, dag: Any = None) -> bool:
    """Whether a TrackRunOperator (or an earlier hook) opened the run of this DAG run. While the store
    cannot be reached, the DAG itself says: tracked when it has a TrackRunOperator (what a hook then
    writes waits in the journal)."""
    try:
        orchestrack.get_run(key)
    except RunNotFoundError:
        return False
    except Exception as err:
        if dag is None or not is_transient(err):
            raise
        return _has_tracker(dag)
    return True


def _has_tracker(dag: Any) -> bool:
    """Whether ``dag`` (as parsed, or as the scheduler holds it serialized) has a TrackRunOperator."""
    return tracker_in(dag) is not None


#: The run each task attempt's running hook opened in this process, and the attempt's details, by
#: (DAG id, run id, task, try): the attempt's end hook, which Airflow fires in the same task process,
#: reuses them instead of opening the run again (a whole start_run: settings, code capture, a store
#: round trip) and reading the details again (``log_url`` reads Airflow's configuration). Emptied by end hooks.
_opened: dict[tuple[str, str, str, int], tuple[Run, dict[str, Any]]] = {}


def _attempt_of(ti: Any) -> tuple[str, str, str, int]:
    return ti.dag_id, ti.run_id, task_name(ti.task_id, ti.map_index), int(ti.try_number or 0)


def _run_for(ti: Any) -> Run | None:
    tracker = tracker_of(getattr(ti, "task", None))
    if tracker is not None:
        return open_tracked_run(tracker, ti)
    key = run_key(ti.dag_id, ti.run_id)
    return orchestrack.start_run(key=key) if _tracked(key, getattr(getattr(ti, "task", None), "dag", None)) else None


def _details_of(ti: Any) -> dict[str, Any]:
    details = {"log_url": getattr(ti, "log_url", None), "image": image_of(getattr(ti, "task", None)),
               "queue": getattr(ti, "queue", None)}
    return {k: v for k, v in details.items() if v}


def _report(ti: Any, outcome: Outcome, **facts: Any) -> None:
    attempt = _attempt_of(ti)
    opened = _opened.pop(attempt, None) if outcome is not Outcome.RUNNING else None
    run, details = opened if opened is not None else (_run_for(ti), None)
    if run is None:
        return
    if details is None:
        details = _details_of(ti)
    if outcome is Outcome.RUNNING:
        _opened.clear()  # one task attempt at a time runs in a task process: forget any left unended
        _opened[attempt] = (run, details)
    name = task_name(ti.task_id, ti.map_index)
    attempts = run.report_tasks([TaskReport(
        task_id=name, name=name, attempt=int(ti.try_number or 0), outcome=outcome,
        started_at=getattr(ti, "start_date", None) or (utcnow() if outcome is Outcome.RUNNING else None),
        ended_at=None if outcome is Outcome.RUNNING else utcnow(), hostname=getattr(ti, "hostname", None),
        details=details, **facts)], hold=outcome is Outcome.RUNNING)
    # The running hook fires in the task's own process, which holds the attempt's lease until it ends.
    # In the task's own process the task's code runs next: its fluent calls attach to this attempt.
    enter_task(run, attempts[0] if outcome is Outcome.RUNNING else None)


class OrchestrackListener:
    """Follows every task attempt of tracked DAGs and closes the run when the DAG run ends."""

    @hookimpl
    @fail_open("Airflow listener")
    def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
        _report(task_instance, Outcome.RUNNING)

    @hookimpl
    @fail_open("Airflow listener")
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        _report(task_instance, Outcome.SUCCEEDED)

    @hookimpl
    @fail_open("Airflow listener")
    def on_task_instance_skipped(self, previous_state: Any, task_instance: Any) -> None:
        # A task that started and skipped itself (AirflowSkipException, a BashOperator exiting 99,
        # a soft-fail sensor timing out). Airflow 3.1 and later call this hook; on 3.0 the DAG-run end
        # records such a task from its state.
        _report(task_instance, Outcome.SKIPPED)

    @hookimpl
    @fail_open("Airflow listener")
    def on_task_instance_failed(self, previous_state: Any, task_instance: Any, error: Any) -> None:
        # No default for `error`: pluggy before 1.7 passes no argument that declares one.
        # Fired for a failed attempt that will be retried too (state up_for_retry): every try is its own attempt.
        if isinstance(error, BaseException):
            _report(task_instance, Outcome.FAILED, error=error)
        elif error:
            _report(task_instance, Outcome.FAILED, message=str(error))
        else:
            _report(task_instance, Outcome.LOST, message=VANISHED)

    @hookimpl
    @fail_open("Airflow listener")
    def on_dag_run_success(self, dag_run: Any, msg: str) -> None:
        _close(dag_run, msg, succeeded=True)

    @hookimpl
    @fail_open("Airflow listener")
    def on_dag_run_failed(self, dag_run: Any, msg: str) -> None:
        _close(dag_run, msg, succeeded=False)


def _close(dag_run: Any, msg: str, *, succeeded: bool) -> None:
    """Record every task instance as Airflow has it (skips, upstream failures, killed processes, with
    Airflow's own dates), then close the run as Airflow says it ended."""
    key = run_key(dag_run.dag_id, dag_run.run_id)
    dag = getattr(dag_run, "dag", None)
    # A DAG with a TrackRunOperator is tracked even when none of its tasks ran (the operator itself
    # runs only when it has configs or datasets to record): its run is opened here, with every task.
    tracker = tracker_in(dag)
    if not (tracker is not None or _tracked(key, dag)):
        return
    rows = _task_instances(dag_run)
    # The scheduler can read the DAG version's number, which task processes cannot.
    version_id = dag_version_of(dag_run, rows)
    number = _dag_version_number(version_id)
    # When no task ran, this opens the run: with the operator's facts, which the serialized DAG carries.
    run = orchestrack.start_run(key=key, pipeline=dag_run.dag_id, **(run_facts_of(tracker) if tracker else {}),
                                orchestrator=OrchestratorInfo(
        kind=OrchestratorKind.AIRFLOW, pipeline_version=str(version_id) if version_id else None,
        details={"dag_version_number": number} if number is not None else {}))
    end = run_end(msg, succeeded=succeeded, ended_at=getattr(dag_run, "end_date", None), dag_run=dag_run)
    recorded = run.last_attempts()
    reports = [task_report_at_end(row, end, recorded, vanished=VANISHED) for row in rows]
    run.report_tasks(report for report in reports if report is not None)
    run.conclude(end)
    forget_opened_run(key)


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


def _task_instances(dag_run: Any) -> list[dict[str, Any]]:
    """Every task instance of the DAG run from the metadata database, as plain facts.

    When Airflow calls the hook inside its own transaction (a person marking the run failed through
    the API), that transaction's session is used: it sees the new task states before they are
    committed. Otherwise a session of our own: the scheduler's scoped session is the scheduler's.
    """
    try:
        from airflow import settings
        from airflow.models.taskinstance import TaskInstance
        from sqlalchemy import select
        from sqlalchemy.orm import Session, object_session
    except ImportError:
        return []
    query = (select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.try_number, TaskInstance.state,
                    TaskInstance.start_date, TaskInstance.end_date, TaskInstance.hostname,
                    TaskInstance.dag_version_id)
             .where(TaskInstance.dag_id == dag_run.dag_id, TaskInstance.run_id == dag_run.run_id))
    try:
        current = object_session(dag_run)
    except Exception:  # not a mapped object (a stand-in, or a DagRun of another kind)
        current = None
    if current is not None:
        rows = current.execute(query).all()
    else:
        with Session(bind=settings.engine) as session:
            rows = session.execute(query).all()
    return [{"task_id": task_id, "map_index": map_index, "try_number": try_number,
             "state": getattr(state, "value", state), "start_date": start, "end_date": end, "hostname": host,
             "dag_version_id": version}
            for task_id, map_index, try_number, state, start, end, host, version in rows]
