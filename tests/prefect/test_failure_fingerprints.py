"""Real Prefect 3: the same failure in three flow runs is one fingerprint, through the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import orchestrack
from orchestrack import RunStatus, TaskStatus
from tests.prefect import flows

pytestmark = pytest.mark.integration


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed `orchestrack` command on this test's store (ORCHESTRACK_HOME is in the environment)."""
    done = subprocess.run([sys.executable, "-m", "orchestrack", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_the_same_failure_in_three_flow_runs_groups_into_one_fingerprint() -> None:
    states = [flows.fails_on_a_bad_batch(rows=100 + index, return_state=True) for index in range(3)]
    assert all(state.is_failed() for state in states)
    runs = orchestrack.search_runs()
    assert len(runs) == 3 and all(r.status is RunStatus.FAILED and r.failure is not None for r in runs)
    failures = [r.failure for r in runs if r.failure is not None]
    assert len({f.summary for f in failures}) == 3  # the raw texts differ: batch, temporary folder, part
    assert all("bad batch" in f.summary for f in failures)
    [fingerprint] = {f.fingerprint for f in failures}
    assert fingerprint is not None and len(fingerprint) == 16
    for record in runs:  # the failed task attempt carries the same fingerprint as its run
        [attempt] = [t for t in record.tasks if t.status is TaskStatus.FAILED]
        assert attempt.failure is not None and attempt.failure.fingerprint == fingerprint

    grouped: dict[str, Any] = json.loads(cli("failures", "--group", "--json").stdout)
    assert (grouped["total"], grouped["grouped"]) == (3, 3)
    [group] = grouped["groups"]
    assert group["fingerprint"] == fingerprint and group["count"] == 3
    assert group["pipelines"] == [runs[0].orchestrator.pipeline] == ["fails-on-a-bad-batch"]
    assert len(group["tasks"]) >= 1 and all(task.startswith("check_batch") for task in group["tasks"])
    assert group["runs"] == [r.run_id for r in runs]  # newest first
    oldest = runs[-1]
    assert oldest.ended_at is not None and group["first_seen"].startswith(oldest.ended_at.strftime("%Y-%m-%d"))

    shown = cli("show", runs[0].key).stdout
    since = oldest.ended_at.strftime("%Y-%m-%d")
    assert f"Seen 3 times since {since} (fingerprint {fingerprint[:8]}…)." in shown, shown
    as_json = json.loads(cli("show", runs[0].key, "--json").stdout)
    assert as_json["failure_history"]["count"] == 3 and as_json["failure"]["fingerprint"] == fingerprint
