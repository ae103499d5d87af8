"""What an orchestrator says happened, and the one place that turns it into status and failure.

Adapters report neutral facts: a :class:`TaskReport` for one task attempt, a :class:`RunEnd` for the
pipeline execution (its :class:`Outcome`, the orchestrator's own message, an exit code, whether a
person ended it). They never build a :class:`~orchestrack.record.Failure` or pick a run status:
:func:`task_failure` and :func:`conclusion` do, with the classifier, the same way for every
orchestrator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from orchestrack.classify import classify_failure
from orchestrack.evidence import redact
from orchestrack.record import Failure, FailureReason, RunStatus, TaskAttempt, TaskStatus

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    """How an orchestrator says a task attempt or a whole run ended."""

    RUNNING = "running"  # not ended (yet)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    CRASHED = "crashed"  # the platform lost the process (signal, eviction, runner gone)
    LOST = "lost"  # nobody reported: found dead later (heartbeat lost, process gone)
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"


_TASK_STATUS = {Outcome.RUNNING: TaskStatus.RUNNING, Outcome.SUCCEEDED: TaskStatus.SUCCEEDED,
                Outcome.SKIPPED: TaskStatus.SKIPPED, Outcome.UPSTREAM_FAILED: TaskStatus.UPSTREAM_FAILED,
                Outcome.CANCELLED: TaskStatus.CANCELLED}


@dataclass
class TaskReport:
    """One task attempt as the orchestrator reports it.

    ``task_id`` is the orchestrator's identity of the task (unique in the run), ``name`` the name
    people read; ``attempt`` 0 means the task never ran.

    Example::

        TaskReport(task_id=str(task_run.id), name=task_run.name, attempt=2, outcome=Outcome.FAILED,
                   message="Task run encountered an exception ValueError: bad row")
    """

    task_id: str
    name: str
    attempt: int
    outcome: Outcome
    started_at: datetime | None = None
    ended_at: datetime | None = None
    message: str | None = None
    error: BaseException | None = None
    exit_code: int | None = None
    by_person: bool = False
    cached: bool = False
    hostname: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def attempt_record(self) -> TaskAttempt:
        """The task attempt to store: status and failure decided here, not by the adapter."""
        status = _TASK_STATUS.get(self.outcome, TaskStatus.FAILED)
        failure = None
        if self.outcome not in (Outcome.RUNNING, Outcome.SUCCEEDED, Outcome.SKIPPED):
            failure = task_failure(self)
            if self.outcome is Outcome.FAILED and failure.reason is FailureReason.CANCELLED:
                status = TaskStatus.CANCELLED
        return TaskAttempt(task_id=self.task_id, name=self.name, attempt=self.attempt, status=status,
                           started_at=self.started_at, ended_at=self.ended_at, failure=failure,
                           hostname=self.hostname, cached=self.cached, details=dict(self.details))


def classify(error: BaseException | None = None, *, text: str | None = None, exit_code: int | None = None,
             task: str | None = None, signals: Mapping[str, Any] | None = None) -> Failure:
    """:func:`classify_failure`, except that a broken (team) rule can never replace the task's own error."""
    try:
        return classify_failure(error, text=text, exit_code=exit_code, task=task, signals=signals)
    except Exception as err:
        log.warning("orchestrack could not classify a failure of %s (%s: %s); recorded as unknown",
                    task or "the run", type(err).__name__, redact(str(err)))
        seen = redact(f"{type(error).__name__}: {error}" if error is not None else (text or f"exit code {exit_code}"))
        return Failure(reason=FailureReason.UNKNOWN, task=task, summary=f"{_subject(task)} failed ({seen[:150]}).",
                       error_type=type(error).__name__ if error is not None else None, exit_code=exit_code)


def task_failure(report: TaskReport) -> Failure:
    """Why one task attempt did not succeed, from what the orchestrator said of it."""
    return _failure(report.outcome, report.message, report.error, report.exit_code, report.by_person, report.name)


@dataclass
class RunEnd:
    """How the orchestrator says the whole pipeline execution ended.

    Example::

        run.conclude(RunEnd(Outcome.FAILED, message="", by_person=True))  # marked failed in the UI
    """

    outcome: Outcome
    message: str | None = None
    exit_code: int | None = None
    by_person: bool = False
    ended_at: datetime | None = None
    #: The exception that ended the pipeline itself (a flow body's own), when the orchestrator has it:
    #: the reason when no failed task gives one.
    error: BaseException | None = None


def conclusion(end: RunEnd, latest: Mapping[str, TaskAttempt]) -> tuple[RunStatus, Failure | None]:
    """The run's status and failure: the orchestrator's word on the outcome, the failed tasks' on the reason.

    ``latest`` is the last attempt of each task as the orchestrator reported it (before attempts
    left running are closed).

    A run the orchestrator ended failed is never recorded as succeeded, with or without a message.
    """
    failed = sorted((a for a in latest.values() if a.status is TaskStatus.FAILED and a.failure is not None),
                    key=lambda a: (a.ended_at is None, a.ended_at, a.task_id))
    if end.outcome is Outcome.SUCCEEDED:
        return RunStatus.SUCCEEDED, None
    if end.outcome is Outcome.CANCELLED:
        return RunStatus.CANCELLED, _failure(Outcome.CANCELLED, end.message, None, None, end.by_person, None)
    if end.outcome is Outcome.FAILED and not end.by_person:
        # A task a person stopped (e.g. marked failed) ends cancelled: the run was stopped on purpose.
        stopped = sorted((a for a in latest.values() if a.status is TaskStatus.CANCELLED and a.failure is not None),
                         key=lambda a: (a.ended_at is None, a.ended_at, a.task_id))
        first = failed[0].failure if failed else (stopped[0].failure if stopped else None)
        if first is not None:
            return (RunStatus.CANCELLED if first.reason is FailureReason.CANCELLED else RunStatus.FAILED), first
    failure = _failure(end.outcome, end.message, end.error, end.exit_code, end.by_person, None)
    return (RunStatus.CANCELLED if failure.reason is FailureReason.CANCELLED else RunStatus.FAILED), failure


def left_running(end: RunEnd, attempt: TaskAttempt) -> TaskReport:
    """What became of an attempt still open when the run ended the way ``end`` says."""
    carried = end.outcome in (Outcome.TIMED_OUT, Outcome.CRASHED, Outcome.LOST, Outcome.CANCELLED)
    outcome = end.outcome if carried else Outcome.CANCELLED
    message = end.message if carried else "still running when the run ended"
    return TaskReport(task_id=attempt.task_id, name=attempt.name, attempt=attempt.attempt, outcome=outcome,
                      started_at=attempt.started_at, ended_at=end.ended_at, message=message,
                      by_person=end.by_person, hostname=attempt.hostname, cached=attempt.cached,
                      details=attempt.details)


def _subject(task: str | None) -> str:
    return f"Task '{task}'" if task else "The run"


def _failure(outcome: Outcome, message: str | None, error: BaseException | None, exit_code: int | None,
             by_person: bool, task: str | None) -> Failure:
    subject, said = _subject(task), redact(message or "").strip()
    quoted = f" ({said[:150]})" if said else ""
    if outcome is Outcome.CANCELLED or (by_person and outcome is Outcome.FAILED and error is None):
        how = "was stopped by a person" if by_person else "was cancelled"
        return Failure(reason=FailureReason.CANCELLED, task=task, detail="by-person" if by_person else "cancelled",
                       summary=f"{subject} {how}{quoted}.", exit_code=exit_code)
    if outcome is Outcome.UPSTREAM_FAILED:
        return Failure(reason=FailureReason.CANCELLED, task=task, detail="upstream-failed",
                       summary=f"{subject} did not run because a task it depends on failed.")
    if outcome is Outcome.LOST:
        # How it was found (heartbeat lost, process gone, pod evicted) is in the words of whoever found
        # it: the classifier's rules turn them into the detail.
        found = classify(None, text=said, task=task, signals={"state": outcome.value}) if said else None
        detail = found.detail if found is not None and found.reason is FailureReason.INFRA_ERROR else None
        return Failure(reason=FailureReason.INFRA_ERROR, task=task, detail=detail or "process-lost",
                       exit_code=exit_code,
                       summary=f"{subject} ended without reporting{quoted or ': its process was lost'}.")
    if error is None and not said and exit_code is None:
        if outcome is Outcome.TIMED_OUT:
            return Failure(reason=FailureReason.TIMEOUT, task=task, summary=f"{subject} exceeded its time limit.")
        if outcome is Outcome.CRASHED:
            return Failure(reason=FailureReason.INFRA_ERROR, task=task, detail="crashed",
                           summary=f"{subject} crashed: the orchestrator lost its process.")
        return Failure(reason=FailureReason.UNKNOWN, task=task,
                       summary=f"{subject} ended failed with no error message or failed task to say why.")
    # The orchestrator's state is a signal the classifier weighs (timed out decides; crashed and lost
    # decide only where the text says nothing better): orchestrack classify --explain shows which.
    signals = {"state": outcome.value} if outcome in (Outcome.TIMED_OUT, Outcome.CRASHED, Outcome.LOST) else None
    return classify(error, text=(said or None) if error is None else None, exit_code=exit_code, task=task,
                    signals=signals)
