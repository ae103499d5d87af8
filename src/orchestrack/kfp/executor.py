"""Runs inside a tracked component's container in place of ``kfp.dsl.executor_main``: it opens
(or attaches to) the pipeline run's run, records the component as a task attempt around kfp's own
executor, and records its inputs, output artifacts and metrics.

The command line is kfp's (``--executor_input ... --function_to_execute ...``); the extra input
``orchestrack_run_id`` (the KFP run id, filled in by a placeholder) is taken out before kfp's
executor sees the inputs, so the user's function is called exactly as it was written.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import orchestrack
from orchestrack.errors import InvalidInputError
from orchestrack.guard import fail_open
from orchestrack.lease import lost_because
from orchestrack.outcome import Outcome, RunEnd, TaskReport
from orchestrack.record import OrchestratorInfo, OrchestratorKind, TaskStatus

RUN_ID_INPUT = "orchestrack_run_id"
RUN_NAME_INPUT = "orchestrack_run_name"
TASK_NAME_INPUT = "orchestrack_task_name"
TASK_ID_INPUT = "orchestrack_task_id"
HIDDEN_INPUTS = (RUN_ID_INPUT, RUN_NAME_INPUT, TASK_NAME_INPUT, TASK_ID_INPUT)
#: Set on the exit task of a pipeline's own dsl.ExitHandler: after running, it closes the run.
CLOSES_RUN = "ORCHESTRACK_CLOSES_RUN"
#: Set by a process that runs a pipeline with kfp.local before 2.17 and closes its run afterwards
#: (:mod:`orchestrack.kfp.local_runs`): a file where each tracked task writes the run's key.
RUN_KEY_NOTE = "ORCHESTRACK_KFP_LOCAL_RUN_KEY_FILE"
#: Set at compile time on every tracked task: the name of the pipeline it is part of (as KFP shows it).
PIPELINE_VARIABLE = "ORCHESTRACK_KFP_PIPELINE"
#: Set at compile time by ``otk.pipeline`` on every task it tracks: what the run is opened with (JSON:
#: owner, purpose, the pipeline's version) by whichever task opens it first; no task does only that.
OPENING_VARIABLE = "ORCHESTRACK_KFP_OPENING"
#: Set by ``otk.pipeline(configs=...)`` on the task that closes the run: the packed config files, which
#: that task records.
CONFIGS_VARIABLE = "ORCHESTRACK_KFP_CONFIGS"
#: What KFP's MLflow plugin injects into every task's container: its tracking server and the task's nested run.
PLUGIN_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID")


def _argument(name: str) -> str:
    return sys.argv[sys.argv.index(name) + 1]


def main() -> None:
    """Track the component, then hand over to kfp's executor."""
    executor_input: dict[str, Any] = json.loads(_argument("--executor_input"))
    function = _argument("--function_to_execute")
    inputs = executor_input.setdefault("inputs", {})
    parameters = inputs.setdefault("parameterValues", {})
    # Without a pipeline run (the component called on its own) each execution is a run of its own.
    run_id = str(parameters.pop(RUN_ID_INPUT, "") or os.environ.get("KFP_RUN_ID", "") or f"local-{uuid.uuid4().hex}")
    run_name = str(parameters.pop(RUN_NAME_INPUT, "") or "")
    task_name = str(parameters.pop(TASK_NAME_INPUT, "") or "")
    # KFP's id of this task execution: each ParallelFor iteration has its own, under one task name.
    task_id = str(parameters.pop(TASK_ID_INPUT, "") or "")
    sys.argv[sys.argv.index("--executor_input") + 1] = json.dumps(executor_input)
    track_into_plugin_mlflow()
    refuse_unshared_store()

    run = _open_run(run_id, run_name)
    import importlib

    wrapped = importlib.import_module(os.environ.get("ORCHESTRACK_WRAPPED_EXECUTOR", "kfp.dsl.executor_main"))
    if run is None:  # tracking is broken here (logged): the component still runs as written
        wrapped.executor_main()
        return
    name = task_name or function
    details = {"pod": os.environ.get("KFP_POD_NAME"), "image": os.environ.get("ORCHESTRACK_IMAGE"),
               "accelerator_type": os.environ.get("ORCHESTRACK_ACCELERATOR_TYPE"),
               "accelerator_count": os.environ.get("ORCHESTRACK_ACCELERATOR_COUNT")}
    try:
        with run.task(name, task_id=task_id or name, details={k: v for k, v in details.items() if v}):
            _record_inputs(run, name, parameters, inputs)
            wrapped.executor_main()
            _record_outputs(run, executor_input)
    finally:
        if os.environ.get(CLOSES_RUN) == "1":
            _close_run(run, parameters)


def open_pipeline_run(run_id: str, run_name: str = "") -> orchestrack.Run:
    """Open, or attach to, the run of KFP run ``run_id`` with what the compiled pipeline says of it
    (every tracked task and the closing task do: whichever runs first opens it)."""
    opening = json.loads(os.environ.get(OPENING_VARIABLE) or "{}")
    run_name = run_name.split("/")[0]  # kfp.local names a loop iteration "<run name>/for-loop-2-iteration-0"
    run = orchestrack.start_run(
        key=f"kfp/{run_id}", owner=opening.get("owner") or None, purpose=opening.get("purpose") or None,
        orchestrator=OrchestratorInfo(kind=OrchestratorKind.KFP, run_id=run_id,
                                      pipeline=os.environ.get(PIPELINE_VARIABLE) or None,
                                      pipeline_version=opening.get("pipeline_version") or None,
                                      details={"run_name": run_name} if run_name else {}),
        image=os.environ.get("ORCHESTRACK_IMAGE"))
    if os.environ.get(RUN_KEY_NOTE):
        Path(os.environ[RUN_KEY_NOTE]).write_text(run.key)
    return run


@fail_open("KFP executor")
def _open_run(run_id: str, run_name: str) -> orchestrack.Run | None:
    return open_pipeline_run(run_id, run_name)


@fail_open("KFP executor")
def log_pipeline_configs(run: orchestrack.Run, packed: str | None = None) -> None:
    """Record the config files ``otk.pipeline(configs=...)`` packed (default: into this closing task's
    ``ORCHESTRACK_KFP_CONFIGS``)."""
    packed = os.environ.get(CONFIGS_VARIABLE) if packed is None else packed
    if packed:
        from orchestrack.kfp.embedded_configs import log_packed_configs

        log_packed_configs(run, packed)


@fail_open("KFP executor")
def _close_run(run: orchestrack.Run, parameters: dict[str, Any]) -> None:
    """Close the run from the exit task of the pipeline's own exit handler: as its final status says
    when the task takes a ``dsl.PipelineTaskFinalStatus``, else as the recorded tasks say."""
    status = next((value for value in parameters.values() if isinstance(value, dict) and "state" in value), None)
    log_pipeline_configs(run)
    end_lost_attempts(run)
    if status is None:
        run.finish()
    else:
        run.conclude(final_status_end(status.get("state"), (status.get("error") or {}).get("message")))


#: What the end of a pipeline says of an attempt still recorded running: its pod ended without a word.
POD_GONE = "pod gone: still running when the pipeline's exit handler ran (its pod ended without reporting)"


def end_lost_attempts(run: orchestrack.Run) -> None:
    """KFP runs an exit handler (and a pipeline's last task) only once every task before it ended, so
    an attempt still recorded running then lost its pod (evicted, killed, its node lost): it ends
    failed / ``infra-error``, with its lease's word on how it was found where that says more."""
    run.report_tasks(TaskReport(task_id=a.task_id, name=a.name, attempt=a.attempt, outcome=Outcome.LOST,
                                message=lost_because(a) or POD_GONE, started_at=a.started_at, hostname=a.hostname,
                                details=a.details)
                     for a in run.last_attempts().values() if a.status is TaskStatus.RUNNING)


def final_status_end(state: Any, error_message: str | None) -> RunEnd:
    """How a pipeline ended, from KFP's ``PipelineTaskFinalStatus`` (its state and error message)."""
    state = str(state or "").upper()
    outcome = (Outcome.SUCCEEDED if state in ("SUCCEEDED", "SUCCESS") else
               Outcome.CANCELLED if "CANCEL" in state else Outcome.FAILED)
    return RunEnd(outcome, error_message or None)


@fail_open("KFP executor")
def _record_inputs(run: orchestrack.Run, name: str, parameters: dict[str, Any], inputs: dict[str, Any]) -> None:
    run.log_params({f"{name}.{key}": value for key, value in parameters.items()})
    for input_name, artifact in (inputs.get("artifacts") or {}).items():
        for item in artifact.get("artifacts", []):
            if item.get("uri"):
                run.log_dataset(input_name, item["uri"])


@fail_open("KFP executor")
def track_into_plugin_mlflow() -> None:
    """With no store configured, a task of a cluster whose KFP MLflow plugin injected ``MLFLOW_TRACKING_URI``
    and ``MLFLOW_RUN_ID`` tracks into that MLflow server (the MLflow store then writes into the plugin's runs)."""
    from orchestrack.settings import load_settings

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not all(os.environ.get(variable) for variable in PLUGIN_VARIABLES) or load_settings().tracking_uri:
        return
    if uri.startswith(("http://", "https://")) or uri == "databricks":  # an MLflow tracking server
        os.environ["ORCHESTRACK_TRACKING_URI"] = uri


def refuse_unshared_store() -> None:
    """On a cluster every pod is its own machine: an embedded SQLite store would scatter the run."""
    if not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return
    from orchestrack.settings import load_settings

    uri = load_settings().resolved_tracking_uri
    if uri.startswith("sqlite:") or "://" not in uri:
        raise InvalidInputError(
            f"this KFP pod would track into a local SQLite store ({uri}), which no other pod can see; "
            "when you compile the pipeline, set ORCHESTRACK_TRACKING_URI=http(s)://<your MLflow tracking server> "
            "and ORCHESTRACK_ARTIFACT_URI=s3://<bucket>/<prefix>, and give the pods MLFLOW_TRACKING_TOKEN and "
            "AWS credentials from a Kubernetes secret (kfp-kubernetes use_secret_as_env; see docs/kfp.md)")


@fail_open("KFP executor")
def _record_outputs(run: orchestrack.Run, executor_input: dict[str, Any]) -> None:
    outputs = executor_input.get("outputs", {})
    written: dict[str, Any] = {}
    output_file = outputs.get("outputFile")
    if output_file and Path(output_file).is_file():
        written = json.loads(Path(output_file).read_text() or "{}").get("artifacts", {})
    for output_name, artifact in (outputs.get("artifacts") or {}).items():
        for index, item in enumerate(artifact.get("artifacts", [])):
            kind = item.get("type", {}).get("schemaTitle", "")
            if kind == "system.Metrics":
                produced = written.get(output_name, {}).get("artifacts", [{}])
                metadata = produced[index].get("metadata", {}) if index < len(produced) else {}
                run.log_metrics({k: v for k, v in metadata.items() if isinstance(v, (int, float))
                                 and not isinstance(v, bool)})
                continue
            path = _local_path(item.get("uri", ""))
            if path is not None and path.exists():
                run.log_artifact(path, name=output_name, kind=kind.removeprefix("system.").lower() or "artifact")


def _local_path(uri: str) -> Path | None:
    # kfp mounts remote artifact URIs under these local prefixes inside the container.
    for prefix, mount in (("gs://", "/gcs/"), ("s3://", "/s3/"), ("minio://", "/minio/")):
        if uri.startswith(prefix):
            return Path(mount + uri.removeprefix(prefix))
    return Path(uri) if uri.startswith("/") else None


if __name__ == "__main__":
    main()
