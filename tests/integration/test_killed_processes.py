"""A real process tracking a task is SIGKILLed: `orchestrack reap` ends its attempt and run as failed /
infra-error, saying how it was found; while the process lives, its renewed lease keeps it running."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import orchestrack
from orchestrack import FailureReason, RunStatus, TaskStatus

pytestmark = pytest.mark.integration

LEASE_S = 2.0

WORKER = textwrap.dedent("""
    import socket, sys, time
    if sys.argv[2] != "-":  # play a process on another machine
        socket.gethostname = lambda: sys.argv[2]
    import orchestrack

    run = orchestrack.start_run(key=sys.argv[1], pipeline="killed")
    with run.task("train"):
        print("started", flush=True)
        time.sleep(600)
""")


def _start(tmp_path: Path, key: str, host: str = "-") -> subprocess.Popen[str]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "ORCHESTRACK_LEASE_S": str(LEASE_S)}
    worker = subprocess.Popen([sys.executable, str(script), key, host], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert worker.stdout is not None and worker.stdout.readline().strip() == "started", worker.stderr
    return worker


def _reap_cli() -> list[dict[str, object]]:
    done = subprocess.run([sys.executable, "-m", "orchestrack", "reap", "--json"], env=dict(os.environ),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _kill(worker: subprocess.Popen[str]) -> None:
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(30)


def test_a_killed_process_on_this_host_is_reaped_as_process_gone(tmp_path: Path) -> None:
    worker = _start(tmp_path, "killed/here")
    try:
        time.sleep(LEASE_S * 1.5)  # past the first lease: only its renewals keep the attempt alive
        assert _reap_cli() == []
        assert orchestrack.get_run("killed/here").status is RunStatus.RUNNING
    finally:
        _kill(worker)
    [reaped] = _reap_cli()
    assert reaped["key"] == "killed/here" and reaped["closed"] is True
    record = orchestrack.get_run("killed/here")
    (train,) = record.tasks
    assert train.status is TaskStatus.FAILED and train.failure is not None
    assert train.failure.reason is FailureReason.INFRA_ERROR and train.failure.detail == "process-lost"
    assert f"process gone: pid {worker.pid} on {socket.gethostname()} exited without reporting" in \
        train.failure.summary
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert record.failure.reason is FailureReason.INFRA_ERROR
    assert _reap_cli() == []  # idempotent


def test_a_killed_process_on_another_host_is_reaped_when_its_lease_expires(tmp_path: Path) -> None:
    worker = _start(tmp_path, "killed/elsewhere", host="gpu-node-7")
    _kill(worker)
    assert _reap_cli() == []  # its host cannot be checked from here: the lease decides
    deadline = time.time() + LEASE_S + 10
    while not (reaped := _reap_cli()):
        assert time.time() < deadline, "the lease never expired"
        time.sleep(0.5)
    assert [r["key"] for r in reaped] == ["killed/elsewhere"]
    (train,) = orchestrack.get_run("killed/elsewhere").tasks
    assert train.failure is not None and train.failure.detail == "heartbeat-lost"
    assert f"held by gpu-node-7:{worker.pid}" in train.failure.summary
    assert orchestrack.get_run("killed/elsewhere").status is RunStatus.FAILED
