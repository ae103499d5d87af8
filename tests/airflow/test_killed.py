"""A machine lost mid-task: the process running an Airflow task (here `dag.test()`, which runs tasks in
its own process) is SIGKILLed, so no hook and no scheduler is left to report it. The attempt's lease
(held by that process) lets `orchestrack reap` end it, and the run, as failed / infra-error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import orchestrack
from orchestrack import FailureReason, RunStatus, TaskStatus

RUNNER = textwrap.dedent("""
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("killed_mid_task", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.dag.test()
""")


def _running_attempt() -> bool:
    runs = orchestrack.search_runs()
    return bool(runs) and any(t.name == "long_train" and t.status is TaskStatus.RUNNING
                              for t in orchestrack.get_run(runs[0].key).tasks)


def test_sigkill_mid_task_is_reaped_as_infra_error(dags_folder: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = tmp_path / "run_dag.py"
    script.write_text(RUNNER)
    env = {**os.environ, "ORCHESTRACK_LEASE_S": "2", "ORCHESTRACK_TEST_PID_FILE": str(pid_file)}
    process = subprocess.Popen([sys.executable, str(script), str(dags_folder / "killed_mid_task.py")], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while not (pid_file.exists() and pid_file.read_text().strip() and _running_attempt()):
            assert time.time() < deadline and process.poll() is None, "the task never started"
            time.sleep(0.2)
        killed = int(pid_file.read_text())
    finally:
        os.kill(process.pid, signal.SIGKILL)  # dag.test() runs the task in this very process
        process.wait(30)
    assert killed == process.pid
    (record,) = orchestrack.search_runs()
    assert record.status is RunStatus.RUNNING  # nobody is left to say otherwise

    reaped = subprocess.run([sys.executable, "-m", "orchestrack", "reap", "--json"], env=dict(os.environ),
                            capture_output=True, text=True, timeout=120)
    assert reaped.returncode == 0, reaped.stderr
    assert [r["key"] for r in json.loads(reaped.stdout)] == [record.key]
    record = orchestrack.get_run(record.key)
    lost = next(t for t in record.tasks if t.name == "long_train")
    assert lost.status is TaskStatus.FAILED and lost.failure is not None
    assert (lost.failure.reason, lost.failure.detail) == (FailureReason.INFRA_ERROR, "process-lost")
    assert f"process gone: pid {process.pid}" in lost.failure.summary
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert record.failure.reason is FailureReason.INFRA_ERROR
