"""The MLflow server goes down in the middle of a real Prefect flow run and comes back after the flow
process has exited: the flow keeps its own outcome, and after `orchestrack replay` MLflow holds every
param, metric point, task attempt and artifact exactly once (tests/outage.py has the harness)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.outage import GATE_CODE, count_in_mlflow, mlflow_that_goes_down, take_down_at_gate

pytestmark = [pytest.mark.mlflow_s3, pytest.mark.timeout(600)]

TASKS, STEPS, GATED = 12, 40, 4

FLOW = textwrap.dedent('''
    import sys
    from pathlib import Path

    from prefect import task

    import orchestrack
    from orchestrack.prefect import tracked_flow
    {gate_code}

    @task
    def work(index: int, folder: str, gate: str) -> int:
        if index == {gated}:
            wait_at_gate(gate)  # the server goes down here
        orchestrack.log_params({{f"param_{{index}}": index}})
        for step in range({steps}):
            orchestrack.log_metrics({{f"loss_{{index}}": 1.0 / (step + 1)}}, step=step)
        artifact = Path(folder) / f"artifact-{{index}}.txt"
        artifact.write_text(f"output of task {{index}}")
        orchestrack.log_artifact(artifact)
        return index

    @tracked_flow(name="outage-flow", purpose="baseline", run_owner="ml-platform")
    def outage_flow(folder: str, gate: str) -> int:
        total = 0
        for index in range({tasks}):
            total += work(index, folder, gate)
        return total

    if __name__ == "__main__":
        state = outage_flow(sys.argv[1], sys.argv[2], return_state=True)
        print("FLOW", state.type.value, state.state_details.flow_run_id)
''').format(gate_code=GATE_CODE, gated=GATED, steps=STEPS, tasks=TASKS)


def test_mlflow_stopped_mid_flow_then_replayed_holds_everything_exactly_once(tmp_path: Path) -> None:
    script = tmp_path / "outage_flow.py"
    script.write_text(FLOW)
    gate = tmp_path / "gate"
    folder = tmp_path / "outputs"
    folder.mkdir()
    home = tmp_path / "mlflow"
    home.mkdir()
    with mlflow_that_goes_down(home) as server:
        env = {**os.environ, "ORCHESTRACK_TRACKING_URI": server.url, "ORCHESTRACK_STRICT": "0",
               "ORCHESTRACK_ARTIFACT_URI": str(tmp_path / "artifacts"), "ORCHESTRACK_DELIVERY_TIMEOUT_S": "5"}
        watcher = take_down_at_gate(server, gate)
        started = time.monotonic()
        flow = subprocess.run([sys.executable, str(script), str(folder), str(gate)], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=400)
        watcher.join(5)
        assert flow.returncode == 0, flow.stderr[-3000:]
        outcome, flow_run_id = flow.stdout.split("FLOW ")[1].split()
        assert outcome == "COMPLETED"  # the flow kept its own outcome through the outage
        assert "still waiting in" in flow.stderr  # the worker said at exit what it left, and where
        key = f"prefect/{flow_run_id}"
        print(f"flow ran {time.monotonic() - started:.1f} s with the server down from task {GATED} on")

        server.start()
        shown = subprocess.run([sys.executable, "-m", "orchestrack", "show", key], env=env, capture_output=True,
                               text=True, timeout=120)
        assert "waiting in the journal" in shown.stdout, shown.stdout + shown.stderr
        replay = subprocess.run([sys.executable, "-m", "orchestrack", "replay"], env=env, capture_output=True,
                                text=True, timeout=300)
        assert replay.returncode == 0, replay.stderr
        again = subprocess.run([sys.executable, "-m", "orchestrack", "replay"], env=env, capture_output=True,
                               text=True, timeout=300)
        assert again.returncode == 0 and "Replayed 0 " in again.stdout, again.stdout + again.stderr

        count = count_in_mlflow(server.url, key)
    assert count.runs == 1 and count.status == "succeeded"
    assert count.params == {**{f"param_{i}": str(i) for i in range(TASKS)}, "folder": str(folder), "gate": str(gate)}
    expected_points = Counter({(f"loss_{i}", step, 1.0 / (step + 1)): 1 for i in range(TASKS) for step in range(STEPS)})
    # Points logged inside a task are also the task's own series (tasks/<name>/...): count the run's.
    run_points = Counter({point: n for point, n in count.points.items() if point[0].startswith("loss_")})
    assert run_points == expected_points
    assert sum(count.attempts.values()) == TASKS and set(count.attempts.values()) == {1}
    assert set(count.attempt_status.values()) == {"succeeded"}
    assert count.artifacts == Counter({f"artifact-{i}.txt": 1 for i in range(TASKS)})
    assert not list((Path(os.environ["ORCHESTRACK_HOME"]) / "spool").glob("*.jsonl"))  # all delivered
