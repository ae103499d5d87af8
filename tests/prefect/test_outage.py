"""The MLflow server goes down in the middle of a real Prefect flow run and comes back after the flow
process has exited: the flow keeps its own outcome, and after `orchestrack replay` MLflow holds every
param, metric point, task attempt and artifact exactly once (tests/outage.py has the harness)."""

from __future__ import annotations

import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.outage import nothing_left_in_the_journal, pipeline_outage

pytestmark = [pytest.mark.mlflow_s3, pytest.mark.timeout(600)]

TASKS, STEPS, GATED = 6, 40, 2

FLOW = textwrap.dedent('''
    import sys
    from pathlib import Path

    from prefect import task

    import orchestrack
    from orchestrack.prefect import tracked_flow

    sys.path.insert(0, {root!r})
    from tests.outage import wait_at_gate

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
''').format(root=str(Path(__file__).resolve().parents[2]), gated=GATED, steps=STEPS, tasks=TASKS)


def test_mlflow_stopped_mid_flow_then_replayed_holds_everything_exactly_once(tmp_path: Path) -> None:
    script = tmp_path / "outage_flow.py"
    script.write_text(FLOW)
    with pipeline_outage(tmp_path) as outage:
        flow = outage.run_worker([sys.executable, str(script), str(outage.folder), str(outage.gate)], tmp_path)
        outcome, flow_run_id = flow.stdout.split("FLOW ")[1].split()
        assert outcome == "COMPLETED"  # the flow kept its own outcome through the outage
        count = outage.restart_and_replay(f"prefect/{flow_run_id}")
    folder, gate = outage.folder, outage.gate
    assert count.runs == 1 and count.status == "succeeded"
    assert count.params == {**{f"param_{i}": str(i) for i in range(TASKS)}, "folder": str(folder), "gate": str(gate)}
    expected_points = Counter({(f"loss_{i}", step, 1.0 / (step + 1)): 1 for i in range(TASKS) for step in range(STEPS)})
    # Points logged inside a task are also the task's own series (tasks/<name>/...): count the run's.
    run_points = Counter({point: n for point, n in count.points.items() if point[0].startswith("loss_")})
    assert run_points == expected_points
    assert sum(count.attempts.values()) == TASKS and set(count.attempts.values()) == {1}
    assert set(count.attempt_status.values()) == {"succeeded"}
    assert count.artifacts == Counter({f"artifact-{i}.txt": 1 for i in range(TASKS)})
    assert nothing_left_in_the_journal()
