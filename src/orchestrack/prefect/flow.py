"""The decorator: a real Prefect ``Flow`` with orchestrack's state hooks added.

The run opens when the flow run starts running and closes on completion, failure, crash and
cancellation. Task attempts are recorded as they happen: every task-run state change the task
engine makes in this process is observed (:class:`_TaskRunObserver`) and written in batches, so a
flow mapping a task over thousands of items is recorded whole, while it runs, at the cost of one
store write per batch. Hooks that run where the flow did not (a runner reporting a crash or a
cancellation) read the task runs back from the API instead, every page of them. Subflows are runs
of their own, linked to the parent's run by the tag ``parent_run``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import prefect
from prefect import Flow

import orchestrack
from orchestrack.capture import process_alive
from orchestrack.configs import config_paths, find_config, source_folder
from orchestrack.errors import InvalidInputError
from orchestrack.guard import fail_open, log_fault, strict
from orchestrack.inputs import adapter_args, mask_sensitive
from orchestrack.lifecycle import Run, enter_task
from orchestrack.outcome import Outcome, RunEnd, TaskReport
from orchestrack.prefect.facts import (
    image_of,
    orchestrator_info,
    report_of_change,
    reports_from_api,
    run_end_of,
    run_key,
)
from orchestrack.reaper import RunLost
from orchestrack.record import RunRecord
from orchestrack.report import gate_markdown, markdown_summary
from orchestrack.versions import installed_release

log = logging.getLogger(__name__)

#: The API's page size when reading task runs back (the server's own default limit is 200).
PAGE = 200
#: Seconds a task report may wait before it is written (tasks show up in `orchestrack show` this fast).
FLUSH_INTERVAL_S = 0.5
#: Seconds a SIGTERMed flow process may spend recording its run before it exits (Prefect before 3.8.4).
SIGTERM_RECORD_S = 5.0
#: Seconds the end of a flow run waits for the API to have the final states of task runs that ran in other
#: processes (a process pool, Dask, Ray), whose engines report them as events.
SETTLE_S = 10.0


def tracked_flow(__fn: Any = None, *, purpose: str | None = None, run_owner: str | None = None,
                 datasets: Sequence[str] = (), configs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str] = (),
                 **flow_kwargs: Any) -> Any:
    """Like ``prefect.flow`` (same arguments), plus ``purpose``, ``run_owner``, ``datasets`` and ``configs``.

    ``configs`` are the config files or folders the flow reads: each is recorded once per flow run
    when it starts (hash, parsed keys, a stored copy: :meth:`Run.log_config`). A relative path is
    looked for next to the flow's source file, then in the working directory. Works on a function
    or on an existing ``Flow``; returns a ``Flow`` (deployable, servable, usable as a subflow).

    Example::

        @tracked_flow(purpose="baseline", configs=["train.yaml"], log_prints=True)
        def train(lr: float = 3e-4): ...
    """
    hooks = _Hooks(purpose=purpose, run_owner=run_owner,
                   datasets=adapter_args("tracked_flow", purpose=purpose, run_owner=run_owner, datasets=datasets),
                   configs=config_paths(configs, "tracked_flow configs="))

    def decorate(target: Any) -> Flow[Any, Any]:
        flow = target if isinstance(target, Flow) else prefect.flow(**flow_kwargs)(target)
        if isinstance(target, Flow) and flow_kwargs:
            flow = flow.with_options(**flow_kwargs)
        tracked = flow.with_options(
            on_running=[*flow.on_running_hooks, hooks.running],
            on_completion=[*flow.on_completion_hooks, hooks.ended],
            on_failure=[*flow.on_failure_hooks, hooks.ended],
            on_crashed=[*flow.on_crashed_hooks, hooks.ended],
            on_cancellation=[*flow.on_cancellation_hooks, hooks.ended])
        for flag in ("_isclassmethod", "_isstaticmethod"):  # a flow on a classmethod or staticmethod:
            if getattr(flow, flag, False):  # Flow.with_options forgets it, and the call would not bind
                setattr(tracked, flag, True)
        return tracked

    return decorate(__fn) if __fn is not None else decorate


def _check_gate(spec: Any, fail_on_held: bool = False) -> dict[str, Any]:
    """Check the flow run's run against ``spec``; raises when the gate failed (see :func:`quality_gate`)."""
    from prefect.runtime import flow_run

    from orchestrack.gate import gate_step

    if not flow_run.id:
        raise orchestrack.InvalidInputError("quality_gate is a Prefect task: call it inside a tracked_flow")
    run = orchestrack.start_run(key=run_key(flow_run.id))  # attaches: the flow's hook opened it
    decision = gate_step(spec, fail_on_held=fail_on_held, run=run,
                         publish=lambda decided: _publish_gate(decided, run, flow_run.id))
    return decision.model_dump(mode="json")


@fail_open("Prefect quality gate artifact")
def _publish_gate(decision: Any, run: Run, flow_run_id: Any) -> None:
    """The gate's decision as a Markdown artifact on the flow run (key ``orchestrack-gate``)."""
    from prefect import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(key="orchestrack-gate", type="markdown",
                                              data=gate_markdown(decision, run.url),
                                              description="orchestrack quality gate decision",
                                              flow_run_id=flow_run_id))


#: The quality gate as a Prefect task: ``quality_gate("gate.yaml")`` inside a :func:`tracked_flow`
#: checks the flow run's run against the spec (a path, YAML text or a mapping; docs/gate.md), records
#: the decision and returns it; a failed gate fails the task (and the flow) with ``metric-regression``,
#: a held run passes with a warning unless ``fail_on_held=True``.
quality_gate = prefect.task(_check_gate, name="quality-gate", retries=0)


class _Hooks:
    """Flow state hooks in, lifecycle calls out; fail-open like every adapter hook."""

    def __init__(self, *, purpose: str | None, run_owner: str | None, datasets: list[str],
                 configs: list[str | os.PathLike[str]]) -> None:
        self.purpose, self.run_owner, self.datasets, self.configs = purpose, run_owner, datasets, configs
        self._configured: set[str] = set()  # flow runs whose configs were recorded (a flow retry starts again)

    def _open(self, flow: Any, flow_run: Any, process: dict[str, Any] | None = None, *, ended: bool = False) -> Run:
        tags = {"parent_run": run_key(parent)} if (parent := _parent_flow_run_id(flow_run)) else {}
        return orchestrack.start_run(
            key=run_key(flow_run.id), owner=self.run_owner, purpose=self.purpose,
            orchestrator=orchestrator_info(flow, flow_run, _ui_url(flow_run.id), process, ended=ended),
            image=image_of(flow_run),
            params=mask_sensitive(getattr(flow_run, "parameters", None) or {}), tags=tags)

    @fail_open("Prefect flow")
    def running(self, flow: Any, flow_run: Any, state: Any) -> None:
        run = self._open(flow, flow_run, {"host": socket.gethostname(), "pid": os.getpid()})
        if _install_tap():
            _observer.follow(str(flow_run.id), run)
        if not prefect_crashes_runs_on_sigterm():
            _close_run_on_sigterm(run, str(flow_run.id))
        if str(flow_run.id) not in self._configured:
            self._configured.add(str(flow_run.id))
            for path in self.configs:
                self._log_config(run, flow, path)
        for uri in self.datasets:
            run.log_dataset(uri.rstrip("/").rsplit("/", 1)[-1] or uri, uri)

    @fail_open("Prefect flow", warn=(InvalidInputError,))
    def _log_config(self, run: Run, flow: Any, path: str | os.PathLike[str]) -> None:
        """Record one ``configs=`` entry; a missing or unreadable one is the user's to fix: a warning, and
        the other entries are still recorded."""
        found = find_config(path, source_folder(flow.fn), f"flow {flow.name!r}, tracked_flow configs=",
                            "the flow's source file")
        try:
            run.log_config(found)
        except InvalidInputError as err:
            raise InvalidInputError(f"config {str(path)!r} of flow {flow.name!r} (tracked_flow configs=) "
                                    f"was not recorded: {err}") from err

    @fail_open("Prefect flow")
    def ended(self, flow: Any, flow_run: Any, state: Any) -> None:
        self._configured.discard(str(flow_run.id))
        run, seen = _observer.stop_following(str(flow_run.id))
        if run is None:  # not run here (a runner-side hook) or not observable: ask the API
            run = self._open(flow, flow_run, ended=True)
            run.report_tasks(_reports_from_api(flow_run.id))
        else:
            if int(getattr(flow_run, "run_count", 0) or 0) > 1:
                run = self._open(flow, flow_run, ended=True)  # fills what only the end knows: the flow run's tries
            if not _runs_tasks_here(flow):  # a process pool, Dask, Ray: their task engines are elsewhere
                run.report_tasks([report for report in _reports_from_api(flow_run.id, settled=True)
                                  if report.task_id not in seen])
        closed = run.conclude(run_end_of(state))
        _publish(run, flow_run.id, closed)


class _TaskRunObserver:
    """Task-run state changes made in this process, as reports for the tracked flow runs they belong to.

    Reports are buffered and written by a daemon thread every :data:`FLUSH_INTERVAL_S` (one store
    write per flow run and batch), and at once when the flow run ends. Batches are written one at a
    time, in order: the end's write waits for a batch the thread is still writing, so the run is
    closed from every attempt, and no attempt is written by two batches at once (which would make
    it twice in a store that inserts, such as an MLflow child run per attempt).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writing = threading.Lock()  # held from taking a batch until it is written
        self._runs: dict[str, Run] = {}
        self._buffer: dict[str, list[TaskReport]] = {}
        self._tries: dict[str, dict[str, dict[int, datetime]]] = {}  # flow run -> task run -> try -> start
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, flow_run_id: str, run: Run) -> None:
        with self._lock:
            self._runs[flow_run_id] = run
            self._buffer.setdefault(flow_run_id, [])
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._flush_forever, name="orchestrack-prefect-tasks",
                                                daemon=True)
                self._thread.start()

    def stop_following(self, flow_run_id: str) -> tuple[Run | None, set[str]]:
        """Write what is buffered for the flow run and stop following it: its run, if it was followed, and
        the ids of the task runs this process saw."""
        self._flush(flow_run_id)
        with self._lock:
            self._buffer.pop(flow_run_id, None)
            seen = set(self._tries.pop(flow_run_id, {}))
            return self._runs.pop(flow_run_id, None), seen

    def saw(self, task_run: Any, state: Any, error: BaseException | None) -> None:
        """One state change made by the task engine (called from the engine's own thread)."""
        flow_run_id = str(getattr(task_run, "flow_run_id", None))
        run = self._runs.get(flow_run_id)
        if run is None:
            return
        with self._lock:
            tries = self._tries.setdefault(flow_run_id, {}).setdefault(str(task_run.id), {})
            reports = report_of_change(task_run, state, error, tries)
            self._buffer.setdefault(flow_run_id, []).extend(reports)
        for report in reports:  # fluent calls made by the task's own code attach to its attempt
            enter_task(run, report.attempt_record() if report.outcome is Outcome.RUNNING else None)
        if reports:
            self._wake.set()

    def _flush(self, flow_run_id: str) -> None:
        with self._writing:
            with self._lock:
                run, reports = self._runs.get(flow_run_id), self._buffer.get(flow_run_id) or []
                if flow_run_id in self._buffer:
                    self._buffer[flow_run_id] = []
            if run is not None and reports:
                run.report_tasks(reports, hold=True)  # the task engine runs them in this process

    def _flush_forever(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            for flow_run_id in list(self._buffer):
                try:
                    self._flush(flow_run_id)
                except Exception:  # the store failed and strict mode raised: say so, keep the thread
                    log_fault(log, "orchestrack could not record task runs of flow run %s", flow_run_id)
            time.sleep(FLUSH_INTERVAL_S)


_observer = _TaskRunObserver()
_tap_lock = threading.Lock()


def _install_tap() -> bool:
    """Observe the task engine's state changes in this process.

    Prefect has no public per-task callback for every task of a flow (task hooks belong to each
    task, and none fires on a crash or a retry), so orchestrack wraps the function the task engine
    calls on every state change, ``prefect.task_engine.emit_task_run_state_change_event`` (present
    in Prefect 3.0 through 3.9). Where it is missing, tasks are read back from the API when the
    flow run ends. The wrapper calls Prefect's function first and never lets a tracking fault reach
    the task (except in strict mode).
    """
    import prefect.task_engine as engine

    with _tap_lock:
        original = getattr(engine, "emit_task_run_state_change_event", None)
        if original is None:
            log.warning("this Prefect has no task_engine.emit_task_run_state_change_event: orchestrack reads "
                        "task runs back from the API when each flow run ends")
            return False
        if getattr(original, "orchestrack_tap", False):
            return True

        def emit_and_observe(*args: Any, **kwargs: Any) -> Any:
            event = original(*args, **kwargs)
            try:
                task_run = kwargs["task_run"] if "task_run" in kwargs else args[0]
                state = kwargs["validated_state"] if "validated_state" in kwargs else args[2]
                # Inside the engine's own `except` when a try fails: the task's real exception.
                _observer.saw(task_run, state, sys.exc_info()[1])
            except Exception:
                if strict():
                    raise
                log_fault(log, "orchestrack could not observe a task-run state change; no impact on the task")
            return event

        emit_and_observe.orchestrack_tap = True  # type: ignore[attr-defined]
        engine.emit_task_run_state_change_event = emit_and_observe
        return True


def prefect_crashes_runs_on_sigterm() -> bool:
    """Whether Prefect itself ends a SIGTERMed flow process's run as Crashed and calls on_crashed.

    Prefect 3.8.4 and later do. Before 3.8.4 (3.0 through 3.8.3) the engine's SIGTERM handler
    restored the default handler and re-sent the signal before the engine recorded the crash: the
    process died at once, no hook ran and the flow run stayed Running.
    """
    found = installed_release("prefect")
    return found is None or found >= (3, 8, 4)


def _close_run_on_sigterm(run: Run, flow_run_id: str) -> None:
    """For Prefect before 3.8.4: record the run as crashed when the flow process is SIGTERMed, then
    hand the signal to Prefect's own handler (which ends the process as before).

    The recording runs on a helper thread that the handler waits for at most
    :data:`SIGTERM_RECORD_S`, so a signal landing while the main thread holds one of our locks
    delays the exit a little instead of hanging it. Prefect restores its previous handler when the
    flow run ends, which removes this one too.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers belong to the main thread; Prefect installed none either
    prefects = signal.getsignal(signal.SIGTERM)

    def record_then_terminate(signum: int, frame: Any) -> Any:
        def record() -> None:
            try:
                _observer.stop_following(flow_run_id)
                run.conclude(_sigterm_end(flow_run_id))
            except Exception:
                log_fault(log, "orchestrack could not record the SIGTERM of flow run %s", flow_run_id)

        recorder = threading.Thread(target=record, name="orchestrack-sigterm", daemon=True)
        recorder.start()
        recorder.join(SIGTERM_RECORD_S)
        if callable(prefects):
            return prefects(signum, frame)
        signal.signal(signal.SIGTERM, prefects or signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return None

    signal.signal(signal.SIGTERM, record_then_terminate)


def _sigterm_end(flow_run_id: str) -> RunEnd:
    """How a SIGTERMed flow run ended: cancelled when Prefect is cancelling it (a runner stops a
    cancelled run with SIGTERM), else crashed."""
    try:
        from prefect import get_client

        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state
    except Exception:  # the API is out of reach: the signal is all there is to go on
        state = None
    if state is not None and (state.is_cancelling() or state.is_cancelled()):
        return RunEnd(Outcome.CANCELLED, "Cancelled: Prefect stopped the flow run with SIGTERM.")
    return RunEnd(Outcome.CRASHED, "Execution was aborted by a termination signal (SIGTERM).")


def _runs_tasks_here(flow: Any) -> bool:
    """Whether the flow's task runner runs its tasks in the flow's own process (threads), where the task
    engine is observed; a process pool, Dask or Ray runs them elsewhere."""
    from prefect.task_runners import ThreadPoolTaskRunner

    return isinstance(getattr(flow, "task_runner", None), ThreadPoolTaskRunner)


def _reports_from_api(flow_run_id: Any, *, settled: bool = False) -> list[TaskReport]:
    """Every task run of the flow run, every page of them; state histories only for runs with retries.

    ``settled``: the flow's task runs ended in other processes, whose state changes reach the API as
    events, a moment later: read again (for up to :data:`SETTLE_S`) until none is left unfinished and
    two reads agree."""
    from prefect import get_client

    with get_client(sync_client=True) as client:
        task_runs = _task_runs(client, flow_run_id)
        deadline = time.monotonic() + SETTLE_S
        while settled and time.monotonic() < deadline:
            unfinished = [t for t in task_runs if t.state is None or not t.state.is_final()]
            time.sleep(0.5)
            again = _task_runs(client, flow_run_id)
            done = not unfinished and [(t.id, t.state_type) for t in again] == [(t.id, t.state_type) for t in task_runs]
            task_runs = again
            if done:
                break
        reports: list[TaskReport] = []
        for task_run in task_runs:
            retried = int(task_run.run_count or 0) > 1
            states = client.read_task_run_states(task_run.id) if retried else None
            reports.extend(reports_from_api(task_run, states))
        return reports


def _task_runs(client: Any, flow_run_id: Any) -> list[Any]:
    """Every task run of the flow run, every page of them."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    found: list[Any] = []
    while True:
        page = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
                                     sort=TaskRunSort.ID_DESC, limit=PAGE, offset=len(found))
        found.extend(page)
        if len(page) < PAGE:
            return found


def _publish(run: Run, flow_run_id: Any, closed: RunRecord | None) -> None:
    """A markdown artifact on the flow run: the run's summary and where to open it. ``closed``: the run as
    its close left it (``None`` when the store could not be read then: it is read again)."""
    from prefect import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        client.create_artifact(ArtifactCreate(key="orchestrack-run", type="markdown",
                                              data=markdown_summary(closed or run.record, run.url),
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
    ``Crashed`` in Prefect. It is :func:`orchestrack.reap` (which also ends task attempts whose lease
    expired, on any host) plus Prefect's word on its runs. Returns the keys it closed.
    """
    return [reaped.key for reaped in orchestrack.reap(tracking_uri, judge=_flow_process_gone) if reaped.closed]


def _flow_process_gone(record: Any) -> RunLost | None:
    """A Prefect run whose flow process on this host is gone: crashed in Prefect, lost here."""
    details, host = record.orchestrator.details, socket.gethostname()
    if record.orchestrator.kind != "prefect" or details.get("host") != host or _alive(details.get("pid")):
        return None
    from prefect import get_client
    from prefect.states import Crashed

    message = f"process gone: flow process pid {details.get('pid')} on {host} exited without reporting"
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(record.orchestrator.run_id, Crashed(message=message), force=True)
    return RunLost(RunEnd(Outcome.LOST, message), _reports_from_api(record.orchestrator.run_id))


def _alive(pid: Any) -> bool:
    return process_alive(pid) if isinstance(pid, int) else True  # nothing to check: leave the run alone


__all__ = ["reap_lost_runs", "tracked_flow"]
