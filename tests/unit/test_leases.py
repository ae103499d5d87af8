"""Runs never left running: leases on running task attempts, `orchestrack reap`, and the reaps that
happen on the way (closing a run, listing runs)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

import orchestrack
from orchestrack import FailureReason, RunStatus, TaskAttempt, TaskStatus, reaper
from orchestrack.cli import main
from orchestrack.lease import leases
from orchestrack.lifecycle import store_for
from orchestrack.record import utcnow
from tests.cli_runner import CliRunner


def _stored(key: str, task_id: str, attempt: int = 1) -> TaskAttempt:
    return next(a for a in orchestrack.get_run(key).tasks if (a.task_id, a.attempt) == (task_id, attempt))


def _dead_pid() -> int:
    """The pid of a process of this host that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _held_elsewhere(key: str, task: str, *, holder: str, expires_in_s: float, attempt: int = 1) -> None:
    """A running attempt as another process (``holder``) recorded it, with its lease."""
    run = orchestrack.start_run(key=key, pipeline="leases")
    run.store.record_tasks(run.run_id, [TaskAttempt(
        task_id=task, name=task, attempt=attempt, status=TaskStatus.RUNNING, started_at=utcnow(), hostname="elsewhere",
        lease_expires_at=utcnow() + timedelta(seconds=expires_in_s), lease_holder=holder)])


def test_a_running_attempt_holds_a_lease_renewed_until_it_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_LEASE_S", "0.6")
    run = orchestrack.start_run(key="lease/renew")
    started = run.start_task("train")
    first = _stored("lease/renew", "train")
    assert first.lease_holder == f"{socket.gethostname()}:{__import__('os').getpid()}"
    assert first.lease_expires_at is not None
    assert timedelta(0) < first.lease_expires_at - first.started_at <= timedelta(seconds=0.7)  # type: ignore[operator]
    time.sleep(0.5)  # the renewer runs every lease_s / 3 = 0.2 s
    renewed = _stored("lease/renew", "train")
    assert renewed.lease_expires_at > first.lease_expires_at  # type: ignore[operator]
    assert renewed.started_at == first.started_at and renewed.status is TaskStatus.RUNNING
    assert orchestrack.reap() == []  # a renewed lease is alive, even past its first expiry

    run.end_task(started, TaskStatus.SUCCEEDED)
    assert leases.held(run.run_id) == []
    time.sleep(0.5)
    ended = _stored("lease/renew", "train")
    assert ended.status is TaskStatus.SUCCEEDED and ended.lease_expires_at is None and ended.lease_holder is None


def test_a_renewal_never_overwrites_an_attempt_ended_elsewhere() -> None:
    run = orchestrack.start_run(key="lease/race")
    started = run.start_task("train")
    # Another process ends the attempt; this process still holds (an old copy of) it.
    run.store.record_tasks(run.run_id, [started.model_copy(update={"status": TaskStatus.SUCCEEDED,
                                                                   "ended_at": utcnow()})])
    leases.renew()
    stored = _stored("lease/race", "train")
    assert stored.status is TaskStatus.SUCCEEDED and stored.started_at == started.started_at


def test_an_expired_lease_on_another_host_is_reaped_as_heartbeat_lost() -> None:
    _held_elsewhere("lease/expired", "train", holder="worker-7:4242", expires_in_s=-5)
    reaped = orchestrack.reap()
    assert [(r.key, r.closed) for r in reaped] == [("lease/expired", True)]
    attempt = _stored("lease/expired", "train")
    assert attempt.status is TaskStatus.FAILED
    assert attempt.failure is not None and attempt.failure.reason is FailureReason.INFRA_ERROR
    assert attempt.failure.detail == "heartbeat-lost"
    assert "heartbeat lost: lease expired at" in attempt.failure.summary
    assert "held by worker-7:4242" in attempt.failure.summary
    record = orchestrack.get_run("lease/expired")
    assert record.status is RunStatus.FAILED and record.ended_at is not None
    assert record.failure is not None and record.failure.reason is FailureReason.INFRA_ERROR
    assert record.failure.detail == "heartbeat-lost"


def test_a_live_lease_on_another_host_waits_for_its_expiry() -> None:
    _held_elsewhere("lease/live", "train", holder="worker-7:4242", expires_in_s=60)
    assert orchestrack.reap() == []
    assert orchestrack.get_run("lease/live").status is RunStatus.RUNNING
    reaped = orchestrack.reap(now=utcnow() + timedelta(seconds=61))  # the same reap a minute later
    assert [r.key for r in reaped] == ["lease/live"]


def test_a_gone_process_on_this_host_is_reaped_at_once() -> None:
    pid = _dead_pid()
    _held_elsewhere("lease/gone", "train", holder=f"{socket.gethostname()}:{pid}", expires_in_s=60)
    reaped = orchestrack.reap()
    assert reaped[0].attempts == [("train", 1, f"process gone: pid {pid} on {socket.gethostname()} "
                                              "exited without reporting")]
    attempt = _stored("lease/gone", "train")
    assert attempt.failure is not None and attempt.failure.reason is FailureReason.INFRA_ERROR
    assert attempt.failure.detail == "process-lost" and f"pid {pid}" in attempt.failure.summary
    assert orchestrack.get_run("lease/gone").status is RunStatus.FAILED


def test_reaping_twice_changes_nothing() -> None:
    _held_elsewhere("lease/twice", "train", holder="worker-7:4242", expires_in_s=-5)
    assert len(orchestrack.reap()) == 1
    once = orchestrack.get_run("lease/twice").model_dump()
    assert orchestrack.reap() == []
    assert orchestrack.reap(now=utcnow() + timedelta(days=1)) == []
    assert orchestrack.get_run("lease/twice").model_dump() == once


def test_a_run_with_another_attempt_alive_stays_open() -> None:
    _held_elsewhere("lease/partial", "lost", holder="worker-7:4242", expires_in_s=-5)
    run = orchestrack.start_run(key="lease/partial")
    alive = run.start_task("alive")  # held and renewed by this process
    reaped = orchestrack.reap()
    assert [(r.key, r.closed, [a[0] for a in r.attempts]) for r in reaped] == [("lease/partial", False, ["lost"])]
    assert orchestrack.get_run("lease/partial").status is RunStatus.RUNNING
    run.end_task(alive, TaskStatus.SUCCEEDED)
    record = run.finish()
    assert record is not None and record.status is RunStatus.FAILED  # its lost attempt failed it
    assert record.failure is not None and record.failure.reason is FailureReason.INFRA_ERROR


def test_runs_recorded_without_leases_are_left_alone() -> None:
    run = orchestrack.start_run(key="lease/old")
    run.store.record_tasks(run.run_id, [TaskAttempt(task_id="t", name="t", attempt=1, status=TaskStatus.RUNNING,
                                                    started_at=utcnow() - timedelta(days=3), hostname="old")])
    assert orchestrack.reap(now=utcnow() + timedelta(days=30)) == []
    assert _stored("lease/old", "t").status is TaskStatus.RUNNING


def test_reap_reads_every_running_run_across_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reaper, "PAGE", 25)
    store = store_for(None)
    shared_start = utcnow() - timedelta(hours=1)
    for index in range(130):
        key = f"lease/many/{index}"
        run = orchestrack.start_run(key=key, started_at=shared_start if index < 40 else None)  # 40 tie on start
        store.record_tasks(run.run_id, [TaskAttempt(
            task_id="t", name="t", attempt=1, status=TaskStatus.RUNNING, started_at=utcnow(),
            lease_expires_at=utcnow() - timedelta(seconds=1), lease_holder="gone-host:1")])
    orchestrack.start_run(key="lease/many/done").finish()
    assert len({r.run_id for r in reaper.running_runs(store, page=25)}) == 130
    reaped = orchestrack.reap()
    assert sorted(r.key for r in reaped) == sorted(f"lease/many/{i}" for i in range(130))
    assert orchestrack.search_runs(status="running", limit=10_000) == []


def test_closing_a_run_ends_lost_attempts_as_infra_error_not_cancelled() -> None:
    pid = _dead_pid()
    _held_elsewhere("lease/close", "killed", holder=f"{socket.gethostname()}:{pid}", expires_in_s=60)
    _held_elsewhere("lease/close", "expired", holder="worker-7:4242", expires_in_s=-5)
    run = orchestrack.start_run(key="lease/close")
    run.start_task("mine")  # still running here when the run closes: cancelled, as before
    record = run.conclude(orchestrack.outcome.RunEnd(orchestrack.outcome.Outcome.FAILED, "task_failure"))
    assert record is not None
    by_task = {a.task_id: a for a in record.tasks}
    assert by_task["killed"].status is TaskStatus.FAILED and by_task["killed"].failure.detail == "process-lost"  # type: ignore[union-attr]
    assert by_task["expired"].status is TaskStatus.FAILED and by_task["expired"].failure.detail == "heartbeat-lost"  # type: ignore[union-attr]
    assert by_task["mine"].status is TaskStatus.CANCELLED
    assert record.status is RunStatus.FAILED and record.failure.reason is FailureReason.INFRA_ERROR  # type: ignore[union-attr]
    assert {a.task_id: a.status for a in orchestrack.get_run("lease/close").tasks} == {
        "killed": TaskStatus.FAILED, "expired": TaskStatus.FAILED, "mine": TaskStatus.CANCELLED}


def test_listing_runs_reaps_first_and_reap_reports_json() -> None:
    _held_elsewhere("lease/listed", "train", holder="worker-7:4242", expires_in_s=-5)
    listed = CliRunner().invoke(main, ["runs", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(r["key"], r["status"]) for r in json.loads(listed.stdout)] == [("lease/listed", "failed")]

    _held_elsewhere("lease/cli", "train", holder="worker-8:99", expires_in_s=-5)
    reaped = CliRunner().invoke(main, ["reap", "--json"])
    assert reaped.exit_code == 0, reaped.output
    [entry] = json.loads(reaped.stdout)
    assert (entry["key"], entry["closed"], entry["attempts"][0]["task_id"]) == ("lease/cli", True, "train")
    assert entry["attempts"][0]["found"].startswith("heartbeat lost: lease expired at")
    again = CliRunner().invoke(main, ["reap"])
    assert again.exit_code == 0 and "Reaped 0 runs." in again.output


def test_listing_runs_still_lists_when_reaping_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    orchestrack.start_run(key="lease/fail-open").finish()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(orchestrack, "reap", broken)
    listed = CliRunner().invoke(main, ["runs", "--json"])
    assert listed.exit_code == 0
    assert [r["key"] for r in json.loads(listed.stdout)] == ["lease/fail-open"]
    assert "could not reap" in listed.stderr
