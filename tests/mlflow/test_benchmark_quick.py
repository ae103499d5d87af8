"""P5's benchmark (benchmarks/p5_mlflow_requests.py) runs end to end against the test MLflow 3 server: a smoke
test of its counting and of the run it records, with no assertion on time or on the figures' targets."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import p5_mlflow_requests as p5

from orchestrack.stores.mlflow_store import MlflowStore
from tests.servers import MlflowServer

#: orchestrack's requests for P5's run, and for the run alone (no task attempts), as BENCHMARKS.md last reported
#: them (2026-12-04).
REQUESTS_A_RUN = 18
REQUESTS_THE_RUN_ALONE = 11


def test_quick_benchmark_counts_requests_and_records_the_run(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    report = p5.main(["--quick", "--tracking-uri", mlflow_server.url, "--json", str(tmp_path / "p5.json")])

    requests, alone, wall_time = report.comparisons
    assert requests.unit == alone.unit == "requests"
    assert len(requests.subject_samples) == len(requests.baseline_samples) == 2
    assert all(n > 0 for n in requests.subject_samples + requests.baseline_samples)
    assert len(set(requests.subject_samples)) == 1, f"orchestrack's requests vary: {requests.subject_samples}"
    # Measured as users run it (fail-open, default settings), whatever this suite's strict mode says; the run
    # takes no more requests than it did when P5 was last measured.
    assert report.facts["orchestrack mode"].startswith("fail-open, default settings")
    assert requests.subject_samples[0] <= REQUESTS_A_RUN, report.facts["orchestrack requests by endpoint (last run)"]
    assert len(set(alone.subject_samples)) == 1 and alone.subject_samples[0] <= REQUESTS_THE_RUN_ALONE, \
        report.facts["orchestrack requests by endpoint (last run alone)"]
    # A task attempt is a nested run on both sides: two requests each, which the run alone does not make.
    assert requests.subject_samples[0] - alone.subject_samples[0] >= 2 * len(p5.TASKS)
    assert min(requests.baseline_samples) - max(alone.baseline_samples) == 2 * len(p5.TASKS)
    # MLflow's fluent API makes at least one request per param and per metric point.
    assert min(requests.baseline_samples) >= len(p5.PARAMS) + len(p5.METRIC_KEYS) * p5.STEPS
    assert sum(report.facts["orchestrack requests by endpoint (last run)"].values()) == requests.subject_samples[-1]
    assert all(t > 0 for t in wall_time.subject_samples + wall_time.baseline_samples)
    assert json.loads((tmp_path / "p5.json").read_text())["comparisons"][0]["unit"] == "requests"

    # The counted runs are in MLflow, whole, readable back through the store.
    keys = report.facts["orchestrack run keys (counted runs)"]
    assert len(keys) == 4  # each repetition: the pipeline run, then the run alone
    store = MlflowStore(mlflow_server.url)
    for number, key in enumerate(keys):
        record = store.find_run(key)
        assert record is not None, f"run {key} is not in MLflow"
        assert record.status.value == "succeeded"
        assert record.params == p5.PARAMS
        tasks = p5.TASKS if number % 2 == 0 else ()
        assert [(a.name, a.status.value) for a in record.tasks] == [(t, "succeeded") for t in tasks]
        assert set(record.metric_series) == set(p5.METRIC_KEYS)
        for key_name, points in record.metric_series.items():
            assert [(p.step, p.value) for p in points] == [
                (step, p5.metric_value(key_name, step)) for step in range(p5.STEPS)]
