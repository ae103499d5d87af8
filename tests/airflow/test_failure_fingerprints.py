"""Real Airflow 3 (dag.test()): the same failure in three DAG runs is one fingerprint."""

from __future__ import annotations

from pathlib import Path

import pytest

import orchestrack
from orchestrack import RunStatus
from orchestrack.cli import main
from tests.airflow.test_dag_test import load_dag
from tests.cli_runner import CliRunner

pytestmark = pytest.mark.integration


def test_the_same_failure_in_three_dag_runs_groups_into_one_fingerprint(dags_folder: Path) -> None:
    dag = load_dag(dags_folder, "bad_batch.py")
    for _ in range(3):
        dag.test()
    runs = orchestrack.search_runs()
    assert len(runs) == 3 and all(r.status is RunStatus.FAILED and r.failure is not None for r in runs)
    failures = [r.failure for r in runs if r.failure is not None]
    assert all(f.task == "check_batch" for f in failures) and len({f.summary for f in failures}) == 3
    [fingerprint] = {f.fingerprint for f in failures}
    assert fingerprint is not None

    history = orchestrack.failure_history(fingerprint)
    assert (history.count, history.pipelines, history.tasks) == (3, ["bad_batch"], ["check_batch"])
    shown = CliRunner().invoke(main, ["show", runs[0].key], catch_exceptions=False, env={"COLUMNS": "200"})
    assert history.first_seen is not None
    assert f"Seen 3 times since {history.first_seen:%Y-%m-%d} (fingerprint {fingerprint[:8]}…)." in shown.stdout
