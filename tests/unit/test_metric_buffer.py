"""Metric points written in batches (orchestrack.metric_buffer) on the real embedded store: nothing
logged is lost or written twice, whatever ends the process, and a step-per-call training loop pays
one transaction a batch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack.lifecycle import store_for


@pytest.fixture(autouse=True)
def batching(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracking as users run it: not strict (strict mode writes every call at once)."""
    monkeypatch.setenv("ORCHESTRACK_STRICT", "0")


def _count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    store, sizes = store_for(None), []
    original = store.log_metrics

    def counting(run_id: str, points: list[Any]) -> None:
        sizes.append(len(points))
        original(run_id, points)

    monkeypatch.setattr(store, "log_metrics", counting)
    return sizes


def _stored_series(run_id: str, key: str) -> list[tuple[int, float]]:
    """The points as the store holds them, read past the lifecycle (which would flush first)."""
    return [(p.step, p.value) for p in store_for(None).get_run(run_id).metric_series.get(key, [])]


def test_a_step_per_call_loop_is_written_in_batches_and_completely(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _count_writes(monkeypatch)
    run = orchestrack.start_run(key="batched/1")
    with run.task("train"):
        for step in range(10_000):
            orchestrack.log_metrics({"loss": 1 / (step + 1)}, step=step)
    assert run.finish() is not None
    assert [(p.step, p.value) for p in run.record.metric_series["loss"]] == [(s, 1 / (s + 1)) for s in range(10_000)]
    assert sum(sizes) == 10_000 and len(sizes) <= 11  # 1,000 a batch, and the rest at the task's end


def test_points_land_within_the_flush_interval_without_any_other_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_METRIC_FLUSH_S", "0.2")
    run = orchestrack.start_run(key="batched/timer")
    run.log_metrics({"auc": 0.5}, step=0)
    run.log_metrics({"auc": 0.6}, step=1)
    deadline = time.monotonic() + 10
    while not _stored_series(run.run_id, "auc") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _stored_series(run.run_id, "auc") == [(0, 0.5), (1, 0.6)]


def test_what_a_task_logged_is_stored_when_its_end_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_METRIC_FLUSH_S", "3600")
    run = orchestrack.start_run(key="batched/task-end")
    with run.task("evaluate"):
        run.log_metrics({"auc": 0.91})
    assert store_for(None).get_run(run.run_id).metrics == {"auc": 0.91}


def test_reading_a_run_in_the_logging_process_sees_every_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_METRIC_FLUSH_S", "3600")
    run = orchestrack.start_run(key="batched/read")
    run.log_metrics({"auc": 0.7})
    assert orchestrack.get_run("batched/read").metrics == {"auc": 0.7}
    run.log_metrics({"auc": 0.8})
    assert run.record.metrics == {"auc": 0.8}


def test_zero_writes_every_call_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_METRIC_FLUSH_S", "0")
    sizes = _count_writes(monkeypatch)
    run = orchestrack.start_run(key="batched/off")
    for step in range(3):
        run.log_metrics({"loss": step}, step=step)
    assert sizes == [1, 1, 1]
    assert _stored_series(run.run_id, "loss") == [(0, 0.0), (1, 1.0), (2, 2.0)]


EXITING = """
import orchestrack, sys
run = orchestrack.start_run(key=sys.argv[1])
for step in range(250):
    orchestrack.log_metrics({"loss": step}, step=step)
"""  # no finish(), no task: the interpreter's exit writes what waits


def test_the_process_exit_writes_what_waits(tmp_path: Path) -> None:
    env = {**os.environ, "ORCHESTRACK_METRIC_FLUSH_S": "3600"}
    subprocess.run([sys.executable, "-c", EXITING, "batched/exit"], check=True, env=env, cwd=tmp_path, timeout=120)
    record = orchestrack.get_run("batched/exit")
    assert [p.step for p in record.metric_series["loss"]] == list(range(250))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_does_not_write_its_parents_waiting_points(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow's LocalExecutor and Celery fork workers from a process that may have logged.
    monkeypatch.setenv("ORCHESTRACK_METRIC_FLUSH_S", "3600")
    run = orchestrack.start_run(key="batched/fork")
    run.log_metrics({"parent": 1.0}, step=0)
    pid = os.fork()
    if pid == 0:  # the child: log its own point and write everything it holds
        try:
            run.log_metrics({"child": 2.0}, step=0)
            orchestrack.metric_buffer.flush_all()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    run.finish()
    record = orchestrack.get_run("batched/fork")
    points = store_for(None).query("SELECT key, COUNT(*) FROM metrics WHERE run_id = ? GROUP BY key",
                                   (record.run_id,))
    assert sorted(points) == [("child", 1), ("parent", 1)]



def test_a_task_end_waits_for_a_batch_being_written(monkeypatch: pytest.MonkeyPatch) -> None:
    # The timer's batch is mid-write when the task ends: the end (and a gate reading the run right
    # after it) must find the points stored.
    import threading

    monkeypatch.setenv("ORCHESTRACK_METRIC_FLUSH_S", "0.05")
    store, writing = store_for(None), threading.Event()
    original = store.log_metrics

    def slow(run_id: str, points: list[Any]) -> None:
        writing.set()
        time.sleep(0.5)
        original(run_id, points)

    monkeypatch.setattr(store, "log_metrics", slow)
    run = orchestrack.start_run(key="batched/mid-write")
    run.log_metrics({"auc": 0.9})
    assert writing.wait(10)
    orchestrack.metric_buffer.flush_all()
    assert original.__self__.get_run(run.run_id).metrics == {"auc": 0.9}
