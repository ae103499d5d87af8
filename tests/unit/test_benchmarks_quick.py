"""The embedded store's benchmarks (P1, P4, P6) run in --quick mode as a smoke test: each still
measures what it says and stores what it claims to. No time is asserted (see BENCHMARKS.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from benchmarks import p1_lifecycle, p4_metric_series, p6_read_back
from benchmarks.measure import Report


@pytest.fixture(autouse=True)
def as_users_run_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Benchmarks set ORCHESTRACK_HOME (and clear strict mode) in os.environ, as a user's shell
    would: setenv first records each variable's state, so the test's environment comes back after."""
    for name in ("ORCHESTRACK_HOME", "ORCHESTRACK_STRICT", "ORCHESTRACK_METRIC_FLUSH_S", "MLFLOW_DISABLE_TELEMETRY"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    from orchestrack import stores

    stores.close_all()
    yield
    stores.close_all()


def _sound(report: Report, path: Path, comparisons: int, repeats: int) -> dict[str, object]:
    written = json.loads(path.read_text())
    assert written["benchmark"] == report.benchmark and written["quick"] is True
    assert len(report.comparisons) == comparisons == len(written["comparisons"])
    for comparison in report.comparisons:
        assert len(comparison.subject_samples) == len(comparison.baseline_samples) == repeats
        assert all(math.isfinite(v) and v > 0 for v in comparison.subject_samples + comparison.baseline_samples)
        assert math.isfinite(comparison.figure) and comparison.figure > 0
    return written


def test_p1_compares_the_lifecycle_with_the_same_sql_run_raw(tmp_path: Path) -> None:
    report = p1_lifecycle.main(["--quick", "--json", str(tmp_path / "p1.json")])
    comparisons = 1 if "MLflow comparison" in report.facts else 2
    _sound(report, tmp_path / "p1.json", comparisons, 5)
    # The floor replays what the store really ran: every write transaction of a lifecycle, traced.
    assert report.facts["write transactions a lifecycle"] >= 8
    assert report.facts["statements a lifecycle"] > 40


def test_p4_stores_every_point_of_each_series(tmp_path: Path) -> None:
    report = p4_metric_series.main(["--quick", "--json", str(tmp_path / "p4.json")])
    _sound(report, tmp_path / "p4.json", 2, 2)
    assert report.facts["points stored a run"] == [5_000]


def test_p6_reads_back_the_listing_and_the_long_series(tmp_path: Path) -> None:
    report = p6_read_back.main(["--quick", "--json", str(tmp_path / "p6.json")])
    _sound(report, tmp_path / "p6.json", 4, 3)
    assert report.facts["runs listed"] == 200
    assert report.facts["points read back"] == 5_000
