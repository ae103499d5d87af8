"""The MLflow server goes down in the middle of a real Airflow DAG run (`dag.test()` in a worker process
of its own) and comes back after that process has exited: every task keeps its own outcome, and after
`orchestrack replay` MLflow holds every param, metric point, task attempt and artifact exactly once
(tests/outage.py has the harness)."""

from __future__ import annotations

import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.airflow.dags.outage import STEPS, TASKS
from tests.outage import nothing_left_in_the_journal, pipeline_outage

pytestmark = [pytest.mark.mlflow_s3, pytest.mark.timeout(600)]
ROOT = Path(__file__).resolve().parents[2]

WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from tests.airflow.test_dag_test import load_dag
    from pathlib import Path

    dag_run = load_dag(Path(sys.argv[1]), "outage.py").test()
    print("DAGRUN", getattr(dag_run.state, "value", dag_run.state), dag_run.run_id)
""")


def test_mlflow_stopped_mid_dag_run_then_replayed_holds_everything_exactly_once(
        tmp_path: Path, dags_folder: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    with pipeline_outage(tmp_path) as outage:
        worker = outage.run_worker([sys.executable, str(script), str(dags_folder), str(ROOT)], tmp_path)
        state, run_id = worker.stdout.split("DAGRUN ")[1].split()[:2]
        assert state == "success"  # every task kept its own outcome through the outage
        count = outage.restart_and_replay(f"airflow/outage_dag/{run_id}")
    assert count.runs == 1 and count.status == "succeeded"
    assert {k: v for k, v in count.params.items() if k.startswith("param_")} == {
        f"param_{i}": str(i) for i in range(TASKS)}
    run_points = Counter({point: n for point, n in count.points.items() if point[0].startswith("loss_")})
    assert run_points == Counter({(f"loss_{i}", step, 1.0 / (step + 1)): 1
                                  for i in range(TASKS) for step in range(STEPS)})
    expected_attempts = {("orchestrack", "1"), *((f"work_{i}", "1") for i in range(TASKS))}
    assert set(count.attempts) == expected_attempts and set(count.attempts.values()) == {1}
    assert set(count.attempt_status.values()) == {"succeeded"}
    assert count.artifacts == Counter({f"artifact-{i}.txt": 1 for i in range(TASKS)})
    assert nothing_left_in_the_journal()
