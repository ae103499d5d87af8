"""benchmarks/p2_prefect.py --quick as a smoke test: it still compares, and the tracked flow runs
were recorded (no assertion on times: this machine's figures mean little)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from benchmarks import p2_prefect

pytestmark = [pytest.mark.integration, pytest.mark.newest_minor_only]  # ~1 minute; a benchmark, not a version


def test_the_quick_benchmark_compares_and_records_every_tracked_run(tmp_path: Path) -> None:
    report = p2_prefect.main(["--quick", "--json", str(tmp_path / "r.json")])
    assert report.quick and [(c.subject, c.baseline) for c in report.comparisons] == [("tracked", "plain")] * 2
    assert report.comparisons[0].name == f"flow run, {p2_prefect.QUICK_TASKS} task runs: tracked vs plain"
    written = json.loads((tmp_path / "r.json").read_text())["comparisons"]
    for comparison, as_json in zip(report.comparisons, written, strict=True):  # wall time, then CPU time
        assert len(comparison.subject_samples) == len(comparison.baseline_samples) == 3
        for median in (as_json["subject_median"], as_json["baseline_median"], as_json["figure"]):
            assert math.isfinite(median) and median > 0
    assert math.isfinite(report.facts["ms_per_task"])  # type: ignore[arg-type]
    runs = 3 + 1  # repeats and the warm-up
    facts = report.facts
    assert (facts["tracked_runs_recorded"], facts["tracked_runs_succeeded"]) == (runs, runs)
    assert facts["task_attempts_per_run_min"] == facts["task_attempts_per_run_max"] == p2_prefect.QUICK_TASKS
    assert facts["succeeded_task_attempts_per_run_min"] == p2_prefect.QUICK_TASKS
