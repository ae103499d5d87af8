"""The one place that decides how a task attempt and a run end (orchestrack.outcome), and the
lifecycle calls adapters make with it (report_tasks, conclude)."""

from __future__ import annotations

import pytest

import orchestrack
from orchestrack.outcome import Outcome, RunEnd, TaskReport, conclusion
from orchestrack.record import FailureReason, RunStatus, TaskStatus, utcnow


def attempt(task_id: str, outcome: Outcome, **facts: object) -> TaskReport:
    return TaskReport(task_id=task_id, name=task_id.split("#")[0], attempt=1, outcome=outcome,
                      started_at=utcnow(), ended_at=None if outcome is Outcome.RUNNING else utcnow(), **facts)


@pytest.mark.parametrize(("outcome", "message", "status", "reason", "detail"), [
    (Outcome.SUCCEEDED, None, RunStatus.SUCCEEDED, None, None),
    (Outcome.CANCELLED, "Flow run was cancelled successfully.", RunStatus.CANCELLED, FailureReason.CANCELLED,
     "cancelled"),
    (Outcome.FAILED, None, RunStatus.FAILED, FailureReason.UNKNOWN, None),  # never succeeded, even without words
    (Outcome.TIMED_OUT, None, RunStatus.FAILED, FailureReason.TIMEOUT, None),
    (Outcome.CRASHED, "Execution was aborted by a termination signal.", RunStatus.FAILED,
     FailureReason.INFRA_ERROR, None),
    (Outcome.CRASHED, "something odd", RunStatus.FAILED, FailureReason.INFRA_ERROR, "crashed"),
    (Outcome.LOST, "heartbeat lost", RunStatus.FAILED, FailureReason.INFRA_ERROR, "heartbeat-lost"),
])
def test_how_a_run_ends_without_failed_tasks(outcome: Outcome, message: str | None, status: RunStatus,
                                             reason: FailureReason | None, detail: str | None) -> None:
    decided, failure = conclusion(RunEnd(outcome, message), {})
    assert decided is status
    assert (failure.reason if failure else None) is reason
    if detail is not None:
        assert failure is not None and failure.detail == detail
    if failure is not None:
        assert failure.summary.startswith("The run ") and failure.summary.endswith(".")


def test_the_pipelines_own_exception_is_the_reason_when_no_task_failed() -> None:
    status, failure = conclusion(RunEnd(Outcome.FAILED, "Flow run encountered an exception",
                                        error=FileNotFoundError("No such file or directory: 'train.parquet'")), {})
    assert status is RunStatus.FAILED and failure is not None
    assert failure.reason is FailureReason.DATA_ERROR and "train.parquet" in failure.summary
    # A failed task still gives the run its reason first.
    failed = TaskReport(task_id="t", name="t", attempt=1, outcome=Outcome.FAILED, started_at=utcnow(),
                        ended_at=utcnow(), error=TypeError("unsupported operand type(s)"))
    run = orchestrack.start_run(key="own-exception/1")
    attempt = run.report_tasks([failed])[0]
    assert conclusion(RunEnd(Outcome.FAILED, error=KeyError("x")), {"t": attempt})[1] == attempt.failure


def test_a_person_marking_a_run_failed_is_cancelled() -> None:
    status, failure = conclusion(RunEnd(Outcome.FAILED, by_person=True), {})
    assert status is RunStatus.CANCELLED and failure is not None
    assert (failure.reason, failure.detail) == (FailureReason.CANCELLED, "by-person")


def test_the_first_failed_task_gives_the_run_its_reason(tmp_path: object) -> None:
    run = orchestrack.start_run(key="outcome/first-failed")
    run.report_tasks([
        attempt("load", Outcome.SUCCEEDED),
        attempt("train", Outcome.FAILED, error=FileNotFoundError("data/train.parquet")),
        attempt("slow", Outcome.TIMED_OUT, message="Task run exceeded timeout of 1 second(s)"),
        attempt("never", Outcome.UPSTREAM_FAILED),
        attempt("open", Outcome.RUNNING),
    ])
    closed = run.conclude(RunEnd(Outcome.FAILED, "Flow run encountered an exception"))
    assert closed is not None and closed.status is RunStatus.FAILED
    assert closed.failure is not None and closed.failure.task == "train"
    assert closed.failure.reason is FailureReason.DATA_ERROR
    by_id = {a.task_id: a for a in closed.tasks}
    assert by_id["slow"].failure.reason is FailureReason.TIMEOUT  # type: ignore[union-attr]
    assert by_id["never"].status is TaskStatus.UPSTREAM_FAILED
    assert by_id["open"].status is TaskStatus.CANCELLED  # still running when the run ended


def test_a_lost_run_ends_its_running_tasks_as_lost() -> None:
    run = orchestrack.start_run(key="outcome/lost")
    run.report_tasks([attempt("train", Outcome.RUNNING)])
    closed = run.conclude(RunEnd(Outcome.LOST, "the flow process (pid 4242) was found gone"))
    assert closed is not None and closed.status is RunStatus.FAILED
    (train,) = closed.tasks
    assert train.status is TaskStatus.FAILED and train.failure is not None
    assert (train.failure.reason, train.failure.detail) == (FailureReason.INFRA_ERROR, "process-lost")
    assert "pid 4242" in train.failure.summary


def test_a_closed_run_is_not_contradicted_by_late_reports() -> None:
    run = orchestrack.start_run(key="outcome/late")
    run.report_tasks([attempt("train", Outcome.FAILED, message="TaskInstance's state was manually set to `failed`.")])
    first = run.conclude(RunEnd(Outcome.FAILED))
    assert first is not None and first.status is RunStatus.CANCELLED  # a person stopped it
    # The stopped task's own hook arrives seconds later with another story:
    run.report_tasks([attempt("train", Outcome.FAILED, message="Task received SIGTERM signal")])
    assert run.conclude(RunEnd(Outcome.FAILED, "task_failure")) == first
    assert orchestrack.get_run("outcome/late").tasks == first.tasks


def test_tasks_sharing_a_display_name_are_kept_apart() -> None:
    run = orchestrack.start_run(key="outcome/twins")
    run.report_tasks([attempt(f"square-3a1#{i}", Outcome.SUCCEEDED) for i in range(500)])
    record = run.conclude(RunEnd(Outcome.SUCCEEDED))
    assert record is not None and len(record.tasks) == 500 and {t.name for t in record.tasks} == {"square-3a1"}
