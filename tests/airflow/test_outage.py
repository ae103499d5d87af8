"""The MLflow server goes down in the middle of a real Airflow DAG run (`dag.test()` in a worker process
of its own) and comes back after that process has exited: every task keeps its own outcome, and after
`orchestrack replay` MLflow holds every param, metric point, task attempt and artifact exactly once
(tests/outage.py has the harness)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.airflow.dags.outage import STEPS, TASKS
from tests.outage import count_in_mlflow, mlflow_that_goes_down, take_down_at_gate

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
    gate = tmp_path / "gate"
    folder = tmp_path / "outputs"
    folder.mkdir()
    home = tmp_path / "mlflow"
    home.mkdir()
    with mlflow_that_goes_down(home) as server:
        env = {**os.environ, "ORCHESTRACK_TRACKING_URI": server.url, "ORCHESTRACK_STRICT": "0",
               "ORCHESTRACK_ARTIFACT_URI": str(tmp_path / "artifacts"), "ORCHESTRACK_DELIVERY_TIMEOUT_S": "5",
               "OUTAGE_FOLDER": str(folder), "OUTAGE_GATE": str(gate)}
        watcher = take_down_at_gate(server, gate)
        worker = subprocess.run([sys.executable, str(script), str(dags_folder), str(ROOT)], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=400)
        watcher.join(5)
        assert worker.returncode == 0, worker.stderr[-3000:]
        state, run_id = worker.stdout.split("DAGRUN ")[1].split()[:2]
        assert state == "success"  # every task kept its own outcome through the outage
        assert "still waiting in" in worker.stdout + worker.stderr  # the worker said at exit what it left, and where
        key = f"airflow/outage_dag/{run_id}"

        server.start()
        shown = subprocess.run([sys.executable, "-m", "orchestrack", "show", key], env=env, capture_output=True,
                               text=True, timeout=120)
        assert "waiting in the journal" in shown.stdout, shown.stdout + shown.stderr
        for _ in range(2):  # the second replay finds nothing left
            replay = subprocess.run([sys.executable, "-m", "orchestrack", "replay"], env=env, capture_output=True,
                                    text=True, timeout=300)
            assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "Replayed 0 " in replay.stdout, replay.stdout + replay.stderr

        count = count_in_mlflow(server.url, key)
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
    assert not list((Path(os.environ["ORCHESTRACK_HOME"]) / "spool").glob("*.jsonl"))  # all delivered
