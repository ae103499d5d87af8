"""benchmarks/p2_kfp.py --quick as a smoke test: it still compares, and the tracked pipeline runs
were recorded (no assertion on times: this machine's figures mean little)."""

# No `from __future__ import annotations`, as everywhere in tests/kfp.

import json
import math
from pathlib import Path

import pytest
from benchmarks import p2_kfp

pytestmark = [pytest.mark.integration, pytest.mark.newest_minor_only]  # ~40 s; a benchmark, not a version


def test_the_quick_benchmark_compares_and_records_every_tracked_run(tmp_path: Path) -> None:
    report = p2_kfp.main(["--quick", "--json", str(tmp_path / "r.json")])
    width = p2_kfp.QUICK_COMPONENTS
    assert report.quick and [(c.subject, c.baseline) for c in report.comparisons] == [
        ("tracked", "plain"), ("tracked", "plain"), ("components", "plain")]
    written = json.loads((tmp_path / "r.json").read_text())["comparisons"]
    for comparison, as_json in zip(report.comparisons, written, strict=True):
        assert len(comparison.subject_samples) == len(comparison.baseline_samples) == 2
        for median in (as_json["subject_median"], as_json["baseline_median"], as_json["figure"]):
            assert math.isfinite(median) and median > 0
    assert math.isfinite(report.facts["ms_per_task"])
    facts = report.facts
    runs = 2  # the quick run has no warm-up
    assert (facts["tracked_runs_recorded"], facts["tracked_runs_succeeded"]) == (runs, runs)
    assert facts["task_attempts_per_run_min"] == facts["task_attempts_per_run_max"] == width
    assert facts["succeeded_task_attempts_per_run_min"] == width
