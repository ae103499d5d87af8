"""The decorator: a real Prefect ``Flow`` with orchestrack's state hooks added.

The run opens when the flow run starts running and closes on completion, failure, crash and
cancellation. Task runs are read back from the Prefect API at the end (task hooks never see a
crash or a cancellation), each try recorded as its own attempt with its classified failure.
Subflows are runs of their own, linked to the parent's run by the tag ``parent_run``.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import prefect
from prefect import Flow

import orchestrack
from orchestrack.capture import process_alive
from orchestrack.inputs import mask_sensitive
from orchestrack.lifecycle import Run
from orchestrack.prefect.facts import Attempt, attempts_from_states, image_of, orchestrator_info, run_key
from orchestrack.record import Failure, FailureReason, RunStatus, TaskStatus
from orchestrack.report import markdown_summary

log = logging.getLogger(__name__)


def tracked_flow(__fn: Any = None, *, purpose: str | None = None, run_owner: str | None = None,
                 datasets: Sequence[str] = (), **flow_kwargs: Any) -> Any:
    """Like ``prefect.flow`` (same arguments), plus ``purpose``, ``run_owner`` and ``datasets``.

    Works on a function or on an existing ``Flow``; returns a ``Flow`` (deployable, servable,
    usable as a subflow).

    Example::

        @tracked_flow(purpose="baseline", log_prints=True)
        def train(lr: float = 3e-4): ...
    """
    hooks = _Hooks(purpose=purpose, run_owner=run_owner, datasets=list(datasets))

    def decorate(target: Any) -> Flow[Any, Any]:
        flow = target if isinstance(target, Flow) else prefect.flow(**flow_kwargs)(target)
        if isinstance(target, Flow) and flow_kwargs:
            flow = flow.with_options(**flow_kwargs)
        return flow.with_options(
            on_running=[*flow.on_running_hooks, hooks.running],
            on_completion=[*flow.on_completion_hooks, hooks.ended],
            on_failure=[*flow.on_failure_hooks, hooks.ended],
            on_crashed=[*flow.on_crashed_hooks, hooks.ended],
            on_cancellation=[*flow.on_cancellation_hooks, hooks.ended])

    return decorate(__fn) if __fn is not None else decorate


class _Hooks:
    """Flow state hooks in, lifecycle calls out; fail-open like every adapter."""

    def __init__(self, *, purpose: str | None, run_owner: str | None, datasets: list[str]) -> None:
        self.purpose, self.run_owner, self.datasets = purpose, run_owner, datasets

    def running(self, flow: Any, flow_run: Any, state: Any) -> None:
        _guarded(self._running, flow, flow_run)

    def ended(self, flow: Any, flow_run: Any, state: Any) -> None:
        _guarded(self._ended, flow, flow_run, state)

    def _open(self, flow: Any, flow_run: Any, process: dict[str, Any] | None = None) -> Run:
        tags = {"parent_run": run_key(parent)} if (parent := _parent_flow_run_id(flow_run)) else {}
        return orchestrack.start_run(
            key=run_key(flow_run.id), owner=self.run_owner, purpose=self.purpose,
            orchestrator=orchestrator_info(flow, flow_run, _ui_url(flow_run.id), process),
            image=image_of(flow_run),
            params=mask_sensitive(getattr(flow_run, "parameters", None) or {}), tags=tags)

    def _running(self, flow: Any, flow_run: Any) -> None:
        _listen_for_retries()
        run = self._open(flow, flow_run, {"host": socket.gethostname(), "pid": os.getpid()})
        for uri in self.datasets:
            run.log_dataset(uri.rstrip("/").rsplit("/", 1)[-1] or uri, uri)

    def _ended(self, flow: Any, flow_run: Any, state: Any) -> None:
        run = self._open(flow, flow_run)  # attach; a runner-side hook may be the first to see the run
        for attempt in _task_attempts(flow_run.id):
            _record(run, attempt)
        status, failure = _final(state, run)
        run.finish(status, failure=failure)
        _publish(run, flow_run.id)


class _RetriedErrors(logging.Handler):
    """The exceptions of retried task tries. Prefect logs them ("Task run failed with exception: ...
    - Retry 1/2 will start") but stores no message with its Retrying state, so we listen."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.by_task_run: dict[str, list[BaseException]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, str) and record.msg.startswith("Task run failed with") and record.args:
            error = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else None
            if isinstance(error, BaseException):
                self.by_task_run.setdefault(str(getattr(record, "task_run_id", "")), []).append(error)


_retried = _RetriedErrors()


def _listen_for_retries() -> None:
    logger = logging.getLogger("prefect.task_runs")
    if _retried not in logger.handlers:
        logger.addHandler(_retried)


def _guarded(hook: Callable[..., None], *args: Any) -> None:
    try:
        hook(*args)
    except Exception:
        log.exception("orchestrack Prefect hook %s failed; no impact on the flow run", hook.__name__)


def _record(run: Run, attempt: Attempt) -> None:
    started = run.start_task(attempt.name, attempt.number, started_at=attempt.started_at)
    if attempt.status is TaskStatus.RUNNING:
        return  # still running when the flow ended: finish() closes it
    text = attempt.message if attempt.status is not TaskStatus.SUCCEEDED else None
    if text and attempt.state_name == "TimedOut":
        text = f"TimedOut: {text}"
    run.end_task(started, attempt.status, error=attempt.error, text=text if attempt.error is None else None,
                 ended_at=attempt.ended_at)


def _final(state: Any, run: Run) -> tuple[RunStatus | None, Failure | None]:
    """The run's status and failure from the flow run's final state (Prefect's own words)."""
    kind = getattr(state.type, "value", str(state.type))
    message = state.message or ""
    if kind == "COMPLETED":
        return RunStatus.SUCCEEDED, None
    if kind in ("CANCELLED", "CANCELLING"):
        return RunStatus.CANCELLED, Failure(reason=FailureReason.CANCELLED, detail="cancelled",
                                            summary=f"The flow run was cancelled ({message or state.name}).")
    if state.name == "TimedOut":
        return RunStatus.FAILED, orchestrack.classify_failure(text=f"TimedOut: {message}")
    if kind == "CRASHED":
        failure = orchestrack.classify_failure(text=message)
        if failure.reason is FailureReason.UNKNOWN:  # Prefect says it crashed: the platform lost the process
            failure = failure.model_copy(update={"reason": FailureReason.INFRA_ERROR, "detail": "crashed",
                                                 "summary": f"The flow run crashed ({message[:150]})."})
        return RunStatus.FAILED if failure.reason is not FailureReason.CANCELLED else RunStatus.CANCELLED, failure
    failed_tasks = [a for a in run.record.last_attempts().values() if a.status is TaskStatus.FAILED]
    if failed_tasks:
        return None, None  # the first failed task's failure is the run's
    return RunStatus.FAILED, orchestrack.classify_failure(text=message or state.name)


def _task_attempts(flow_run_id: Any) -> list[Attempt]:
    """Every try of every task run of the flow run, read from the API once the list is stable."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    _flush_events()
    with get_client(sync_client=True) as client:
        task_runs: list[Any] = []
        for _ in range(20):  # task runs reach the API a little after the flow's own state
            latest = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            settled = all(tr.state is not None and tr.state.is_final() for tr in latest)
            if latest and len(latest) == len(task_runs) and settled:
                break
            task_runs = latest
            time.sleep(0.1)
        task_runs = latest
        attempts: list[Attempt] = []
        for task_run in task_runs:
            tries = attempts_from_states(task_run.name, client.read_task_run_states(task_run.id))
            retried = iter(_retried.by_task_run.pop(str(task_run.id), []))
            for attempt in tries:
                if attempt.status is TaskStatus.FAILED and not attempt.message:
                    attempt.error = next(retried, None)
            attempts.extend(tries)
    return attempts


def _flush_events() -> None:
    try:
        from prefect.events.worker import EventsWorker

        EventsWorker.instance().wait_until_empty()
    except Exception:  # no events worker in this process (e.g. a runner-side hook)
        log.debug("no Prefect events worker to flush")


def _publish(run: Run, flow_run_id: Any) -> None:
    """A markdown artifact on the flow run: the run's summary and where to open it."""
    from prefect import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(key="orchestrack-run", type="markdown",
                                              data=markdown_summary(run.record, run.url),
                                              description="orchestrack run summary", flow_run_id=flow_run_id))


def _parent_flow_run_id(flow_run: Any) -> str | None:
    parent_task_run = getattr(flow_run, "parent_task_run_id", None)
    if parent_task_run is None:
        return None
    from prefect import get_client

    with get_client(sync_client=True) as client:
        task_run = client.read_task_run(parent_task_run)
    return str(task_run.flow_run_id) if task_run.flow_run_id else None


def _ui_url(flow_run_id: Any) -> str | None:
    try:
        from prefect.settings import PREFECT_UI_URL

        base = PREFECT_UI_URL.value()
    except Exception:
        return None
    return f"{str(base).rstrip('/')}/runs/flow-run/{flow_run_id}" if base else None


def reap_lost_runs(tracking_uri: str | None = None) -> list[str]:
    """Close the runs whose flow process on this host died without a word (SIGKILL, OOM kill).

    A flow run started directly (``python flow.py``) and killed this way stays RUNNING in Prefect
    forever: no hook runs and no runner reports it. Run this now and then (cron, a Prefect
    automation, a worker's start-up): each such run ends ``failed`` / ``infra-error`` here and
    ``Crashed`` in Prefect. Returns the keys it closed.
    """
    from prefect import get_client
    from prefect.states import Crashed

    closed = []
    host = socket.gethostname()
    for record in orchestrack.search_runs(status=RunStatus.RUNNING, limit=10_000, tracking_uri=tracking_uri):
        details = record.orchestrator.details
        if record.orchestrator.kind != "prefect" or details.get("host") != host or _alive(details.get("pid")):
            continue
        message = (f"The flow process (pid {details.get('pid')} on {host}) died without reporting: "
                   "killed or out of memory.")
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(record.orchestrator.run_id, Crashed(message=message), force=True)
        run = orchestrack.start_run(key=record.key, tracking_uri=tracking_uri)
        for attempt in record.last_attempts().values():
            if attempt.status is TaskStatus.RUNNING:
                run.end_task(attempt, TaskStatus.FAILED, text=message)
        run.finish(RunStatus.FAILED, failure=Failure(reason=FailureReason.INFRA_ERROR, detail="process-lost",
                                                     summary=message))
        closed.append(record.key)
    return closed


def _alive(pid: Any) -> bool:
    return process_alive(pid) if isinstance(pid, int) else True  # nothing to check: leave the run alone


__all__ = ["reap_lost_runs", "tracked_flow"]
