"""The Airflow benchmarks (benchmarks/p2_airflow.py, benchmarks/p3_dag_parse.py) run, as smoke tests:
``--quick``, no assertion on time, but every comparison must have been measured, the tracked DAG runs
recorded, and the parse with the operator must not import what the operator's constructor does not need."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from benchmarks import p2_airflow, p3_dag_parse
from benchmarks.measure import Report

import orchestrack

pytestmark = pytest.mark.integration


def assert_measured(report: Report, json_path: Path, *, comparisons: int, samples: int) -> None:
    assert len(report.comparisons) == comparisons
    for comparison in report.comparisons:
        assert len(comparison.subject_samples) == len(comparison.baseline_samples) == samples, comparison.name
        assert all(math.isfinite(s) and s > 0 for s in comparison.subject_samples + comparison.baseline_samples)
        assert math.isfinite(comparison.figure)
    written = json.loads(json_path.read_text())
    assert [c["name"] for c in written["comparisons"]] == [c.name for c in report.comparisons]
    assert all(c["subject_median"] > 0 and c["baseline_median"] > 0 for c in written["comparisons"])


@pytest.mark.newest_minor_only  # ~2 minutes of dag.test() on Airflow 3.0; P3 below runs on every minor
def test_p2_tracked_dag_runs_are_recorded(tmp_path: Path, orchestrack_home: Path) -> None:
    report = p2_airflow.main(["--quick", "--json", str(tmp_path / "r.json")])
    assert_measured(report, tmp_path / "r.json", comparisons=2, samples=2)  # wall time and CPU time
    assert report.facts["orchestrack home"] == str(orchestrack_home)  # the test's own embedded store
    assert report.facts["listeners loaded"] == ["OrchestrackListener"]
    tasks = p2_airflow.QUICK_TASKS
    assert report.facts["tasks per DAG"] == {"plain": tasks, "tracked": tasks + 1}
    keys = report.facts["tracked run keys"]
    assert isinstance(keys, list) and len(keys) == 2  # --quick: two timed rounds, no warm-up
    for key in keys:
        record = orchestrack.get_run(key)
        assert record.status is orchestrack.RunStatus.SUCCEEDED and record.ended_at is not None
        assert len(record.tasks) == tasks + 1
        assert {t.status for t in record.tasks} == {orchestrack.TaskStatus.SUCCEEDED}
    # Only the tracked DAG became runs: the plain one, with the listener loaded too, left nothing.
    assert sorted(r.key for r in orchestrack.search_runs()) == sorted(keys)


def test_p3_parse_with_the_operator_imports_only_the_operator(tmp_path: Path) -> None:
    report = p3_dag_parse.main(["--quick", "--json", str(tmp_path / "r.json")])
    assert_measured(report, tmp_path / "r.json", comparisons=2 * len(p3_dag_parse.STATES), samples=8)
    tasks = p2_airflow.TASKS
    for state in p3_dag_parse.STATES:
        assert report.facts[f"{state}: tasks parsed (without, with)"] == ([tasks], [tasks + 1])
        imported = report.facts[f"{state}: modules the parse with the operator imports"]
        assert isinstance(imported, list)
        assert p3_dag_parse._heavy(imported) == [] and report.facts[
            f"{state}: unneeded modules the parse with the operator imports"] == []
        # Of orchestrack's, only the operator's own module (not yet there at start); besides, at most Airflow's.
        ours = [m for m in imported if m.split(".")[0] == "orchestrack"]
        assert ours == (["orchestrack.airflow.operator"] if state == "start" else []), ours
        others = [m for m in imported if m not in ours and not m.startswith("unusual_prefix_")]  # the DAG file
        assert all(m.split(".")[0] == "airflow" for m in others), others
    # The manager at start has not loaded plugins: the listener is not there, so the parse had work to do.
    assert "orchestrack.airflow.listener" not in report.facts["start: orchestrack modules the manager already has"]
