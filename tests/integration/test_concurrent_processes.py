"""Eight processes open the same key at the same moment and log into it: one run holds everything."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import orchestrack
from tests.concurrency import KEY, WORKERS, expected_points, run_workers

pytestmark = pytest.mark.integration

WORKER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import orchestrack

    index, start_at = int(sys.argv[1]), float(sys.argv[2])
    Path(f"artifact-{index}.txt").write_text(f"output of worker {index}")
    while time.time() < start_at:  # all workers hit the store together
        time.sleep(0.001)
    run = orchestrack.start_run(key="shared/2026-11-28", owner="ml", purpose="tuning", pipeline="shared")
    with run.task(f"worker-{index}", attempt=1):
        orchestrack.log_params({f"param_{index}": index})
        for step in range(20):
            orchestrack.log_metrics({f"loss_{index}": 1.0 / (step + 1)}, step=step)
        orchestrack.log_dataset(f"shard-{index}", f"s3://bucket/shard-{index}.parquet", version=f"v{index}")
        orchestrack.log_artifact(f"artifact-{index}.txt")
        orchestrack.set_tags({f"worker_{index}": "done"})
    print(run.run_id)
""")


def test_eight_processes_share_one_run(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    start_at = time.time() + 3.0  # leaves time for every interpreter to start
    workers = [subprocess.Popen([sys.executable, str(script), str(i), str(start_at)], cwd=tmp_path,
                                env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(8)]
    outputs = [w.communicate(timeout=120) for w in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    assert len({out.strip() for out, _ in outputs}) == 1  # every process got the same run id

    runs = orchestrack.search_runs()
    assert [r.key for r in runs] == ["shared/2026-11-28"]
    record = orchestrack.start_run(key="shared/2026-11-28").finish()
    assert record is not None and record.status == "succeeded"
    assert record.params == {f"param_{i}": i for i in range(8)}
    assert record.tags == {f"worker_{i}": "done" for i in range(8)}
    assert sorted((t.name, t.attempt, t.status.value) for t in record.tasks) == [
        (f"worker-{i}", 1, "succeeded") for i in range(8)]
    assert {key: len(points) for key, points in orchestrack.get_run(record.run_id).metric_series.items()} == {
        f"loss_{i}": 20 for i in range(8)}
    assert sorted(d.name for d in record.data) == [f"shard-{i}" for i in range(8)]
    assert sorted(a.name for a in record.artifacts) == [f"artifact-{i}.txt" for i in range(8)]
    assert all(Path(a.uri.removeprefix("file://")).is_file() for a in record.artifacts)
    assert not list((tmp_path / "orchestrack-home").glob("spool/*.jsonl"))  # strict mode: nothing was spooled


def test_thirty_two_processes_log_a_thousand_points_each_into_one_run(tmp_path: Path) -> None:
    """32 processes attach at once and each log 1,000 points, a param and an artifact: one run holds
    all 32,000 points, 32 params, 32 artifacts and 32 attempts, and nothing was spooled (strict mode)."""
    assert len(run_workers(tmp_path)) == 1  # every process got the same run
    runs = orchestrack.search_runs(limit=100)
    assert [r.key for r in runs] == [KEY]
    record = orchestrack.get_run(KEY)
    assert record.params == {f"param_{i}": i for i in range(WORKERS)}
    assert {key: sorted((p.step, p.value) for p in points) for key, points in record.metric_series.items()} == {
        f"loss_{i}": expected_points(i) for i in range(WORKERS)}
    assert sorted(a.name for a in record.artifacts) == sorted(f"artifact-{i}.txt" for i in range(WORKERS))
    assert all(Path(a.uri.removeprefix("file://")).is_file() for a in record.artifacts)
    assert sorted((t.name, t.status.value) for t in record.tasks) == sorted(
        (f"worker-{i}", "succeeded") for i in range(WORKERS))
    assert not list((tmp_path / "orchestrack-home").glob("spool/*.jsonl"))
