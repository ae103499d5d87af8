"""Airflow objects in, neutral facts out: the run key, task names, orchestrator and code facts.

Works with the task-SDK ``RuntimeTaskInstance`` (task processes), the ORM ``TaskInstance`` and
``DagRun`` (scheduler, API server), reading attributes defensively: which ones exist depends on the
process and the Airflow version (3.0+).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from orchestrack.outcome import Outcome, RunEnd, TaskReport
from orchestrack.record import CodeInfo, OrchestratorInfo, OrchestratorKind, TaskAttempt, TaskStatus


def run_key(dag_id: str, run_id: str) -> str:
    """The orchestrack key of one DAG run: every worker and retry derives the same one."""
    return f"airflow/{dag_id}/{run_id}"


def task_name(task_id: str, map_index: int | None) -> str:
    """``task_id``, or ``task_id[i]`` for the i-th instance of a mapped task."""
    return f"{task_id}[{map_index}]" if map_index is not None and map_index >= 0 else task_id


def orchestrator_info(dag_id: str, run_id: str, *, ti: Any = None, dag_run: Any = None,
                      base_url: str | None = None) -> OrchestratorInfo:
    """What Airflow knows of this execution, from whichever objects the hook has."""
    details: dict[str, Any] = {}
    version = _first(ti, "dag_version_id") or _first(dag_run, "created_dag_version_id")
    for name, value in (
        ("run_type", _first(dag_run, "run_type")),
        ("logical_date", _first(dag_run, "logical_date")),
        ("triggering_user", _first(dag_run, "triggering_user_name")),
        ("bundle_name", _first(_first(ti, "bundle_instance"), "name") or _first(dag_run, "bundle_name")),
        ("bundle_version", _first(_first(ti, "bundle_instance"), "version") or _first(dag_run, "bundle_version")),
    ):
        if value is not None:
            details[name] = getattr(value, "value", None) or (value.isoformat() if hasattr(value, "isoformat")
                                                               else str(value))
    url = f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}" if base_url else None
    return OrchestratorInfo(kind=OrchestratorKind.AIRFLOW, pipeline=dag_id, run_id=run_id, url=url,
                            pipeline_version=str(version) if version else None, details=details)


def dag_version_of(dag_run: Any, task_instances: list[dict[str, Any]]) -> Any:
    """The DAG version a DAG run ran, as the DAG-run hook can read it.

    Airflow 3.1 and later also give task processes the version (``RuntimeTaskInstance.dag_version_id``)
    and set ``DagRun.created_dag_version_id`` under ``dag.test()``. Airflow 3.0 does neither there, but
    its task instance rows carry ``dag_version_id``: the newest of them is the version that ran last.
    """
    created = _first(dag_run, "created_dag_version_id")
    if created:
        return created
    versions = sorted(str(ti["dag_version_id"]) for ti in task_instances if ti.get("dag_version_id"))
    return versions[-1] if versions else None


#: What the record says of a DAG run that ended by its dagrun_timeout.
DAGRUN_TIMEOUT = "the DAG run timed out (dagrun_timeout)"
#: What the record says of a DAG run a person marked failed when Airflow gives no message (3.0-3.2).
MARKED_FAILED = "the DAG run was marked failed in the Airflow UI or API"


def run_end(msg: str | None, *, succeeded: bool, ended_at: Any = None, dag_run: Any = None) -> RunEnd:
    """How a DAG run ended, from the hook that fired, Airflow's message and the DAG run itself.

    A DAG run Airflow ended failed is always recorded failed, timed out or cancelled, whichever
    Airflow minor words it (see :func:`dagrun_timed_out` and :func:`marked_failed_by_person`).
    """
    if succeeded:
        return RunEnd(Outcome.SUCCEEDED, ended_at=ended_at)
    if dagrun_timed_out(msg, dag_run):
        return RunEnd(Outcome.TIMED_OUT, DAGRUN_TIMEOUT, ended_at=ended_at)
    if marked_failed_by_person(msg):
        return RunEnd(Outcome.FAILED, msg or MARKED_FAILED, by_person=True, ended_at=ended_at)
    said = msg if msg and msg != "task_failure" else None
    return RunEnd(Outcome.FAILED, said, ended_at=ended_at)


def dagrun_timed_out(msg: str | None, dag_run: Any) -> bool:
    """Whether the scheduler failed the DAG run for its ``dagrun_timeout``.

    Airflow 3.2 and later say so (``msg="timed_out"``). Airflow 3.0 and 3.1 call the hook with an
    empty message; their scheduler has set ``dag_run.dag`` just before, so the DAG's own
    ``dagrun_timeout`` against the run's duration tells.
    """
    if "timed_out" in (msg or ""):
        return True
    if msg:
        return False
    limit = _first(_first(dag_run, "dag"), "dagrun_timeout")
    start, end = _first(dag_run, "start_date"), _first(dag_run, "end_date")
    try:
        return bool(limit and start and end and end - start >= limit)
    except TypeError:  # not a timedelta and datetimes (a stand-in DAG run)
        return False


def marked_failed_by_person(msg: str | None) -> bool:
    """Whether a person marked the DAG run failed (UI or REST API).

    Airflow 3.3 and later say "Dag Run's state was manually set to `failed`.". Airflow 3.0 through
    3.2 call ``on_dag_run_failed`` with an empty message from the API server, the only failed-run
    call without one once a 3.0/3.1 dagrun timeout is ruled out (:func:`dagrun_timed_out`).
    """
    return not msg or "manually set" in msg


_ENDED = {"success": Outcome.SUCCEEDED, "skipped": Outcome.SKIPPED, "upstream_failed": Outcome.UPSTREAM_FAILED,
          "removed": Outcome.CANCELLED}


def task_report_at_end(ti: dict[str, Any], end: RunEnd, recorded: dict[str, TaskAttempt], *,
                       vanished: str) -> TaskReport | None:
    """What one task instance's row says when its DAG run ends (``None``: nothing to add).

    Task hooks cannot see everything (upstream_failed and trigger-rule skips have none; a SIGKILLed
    task process runs none), so every instance is reported with Airflow's own dates; an attempt a
    hook already ended keeps that ending (the store never replaces one).
    """
    name = task_name(ti["task_id"], ti["map_index"])
    attempt, state = int(ti["try_number"] or 0), ti["state"]
    last = recorded.get(name)
    if last is not None and last.attempt > attempt:
        return None
    message, by_person = None, False
    if end.outcome is Outcome.TIMED_OUT and last is not None and last.status is TaskStatus.RUNNING \
            and last.attempt == attempt and state in ("skipped", "failed", "running", None):
        # Stopped by the dagrun_timeout (Airflow 3.0 and 3.1 mark such a task skipped).
        outcome, message = Outcome.TIMED_OUT, DAGRUN_TIMEOUT
    elif state in _ENDED:
        outcome = _ENDED[state]
    elif state == "failed" and end.by_person:
        # Failed with its DAG run by a person; Airflow 3.0-3.2 run no task hook for it.
        outcome, message, by_person = Outcome.CANCELLED, end.message, True
    elif state == "failed":
        outcome, message = Outcome.LOST, vanished  # only used when no hook ended this attempt
    elif end.outcome is Outcome.SUCCEEDED:
        return None
    elif end.outcome is Outcome.TIMED_OUT:
        outcome, message = Outcome.TIMED_OUT, DAGRUN_TIMEOUT
    elif last is not None and last.status is TaskStatus.RUNNING:
        return None  # still running when the run ended: the lifecycle closes it with the run's outcome
    else:
        outcome = Outcome.CANCELLED  # never got to run (queued, scheduled, no state) before the run ended
        message = f"it was {state or 'not yet scheduled'} when the DAG run ended"
    return TaskReport(task_id=name, name=name, attempt=attempt, outcome=outcome, started_at=ti["start_date"],
                      ended_at=ti["end_date"] or end.ended_at, message=message, by_person=by_person,
                      hostname=ti["hostname"] or None)


def code_from_bundle(ti: Any) -> CodeInfo | None:
    """A Git DAG bundle's version is the commit the DAG ran from."""
    bundle = _first(ti, "bundle_instance")
    version = _first(bundle, "version")
    if not version:
        return None
    return CodeInfo(commit=str(version), repository=_first(bundle, "repo_url"))


def image_of(task: Any) -> str | None:
    """The container image a task runs in: KubernetesPodOperator's, or a pod_override's."""
    image = _first(task, "image")
    if isinstance(image, str) and image:
        return image
    override = (_first(task, "executor_config") or {}).get("pod_override") if isinstance(
        _first(task, "executor_config"), dict) else None
    containers = _first(_first(override, "spec"), "containers") or []
    for container in containers:
        if _first(container, "name") in ("base", None) and _first(container, "image"):
            return str(container.image)
    return None


def _first(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    try:
        return getattr(obj, name, None)
    except Exception:  # detached ORM objects raise on unloaded relationships
        return None
