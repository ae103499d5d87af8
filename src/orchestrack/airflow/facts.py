"""Airflow objects in, neutral facts out: the run key, task names, orchestrator and code facts.

Works with the task-SDK ``RuntimeTaskInstance`` (task processes), the ORM ``TaskInstance`` and
``DagRun`` (scheduler, API server), reading attributes defensively: which ones exist depends on the
process and the Airflow version (3.0+).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from orchestrack.record import CodeInfo, OrchestratorInfo, OrchestratorKind


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
