"""The example pipeline (README's main job) tracked for real: one succeeding run, one failing run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import orchestrack

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "examples" / "python_pipeline" / "churn_pipeline.py"


def pipeline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(PIPELINE), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ))


def test_succeeding_and_failing_days(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pipeline("--day", "2026-11-28", "--data-dir", str(data), "--write-sample-data", "200", cwd=tmp_path
                    ).returncode == 0
    good = pipeline("--day", "2026-11-28", "--data-dir", str(data), "--execution", "manual__1", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    bad = pipeline("--day", "2026-11-29", "--data-dir", str(data), "--execution", "manual__1",
                   "--purpose", "recovery", cwd=tmp_path)
    assert bad.returncode == 1 and "FileNotFoundError" in bad.stderr  # the pipeline's own outcome stands

    record = orchestrack.get_run("churn-train/2026-11-28/manual__1")
    assert record.status == "succeeded" and record.purpose == "baseline" and record.owner == "ml-platform"
    assert [(t.name, t.status.value) for t in record.tasks] == [
        ("prepare", "succeeded"), ("train", "succeeded"), ("evaluate", "succeeded")]
    assert record.data[0].rows == 200 and record.data[0].version.startswith("sha256:")  # type: ignore[union-attr]
    assert record.features.columns == ["tenure_months", "support_tickets", "monthly_spend"]
    snapshot = record.data[0]
    assert snapshot.filters == {"country": ["DE", "FR", "NL"], "tenure_months": ">= 1", "day": "2026-11-28"}
    assert str(snapshot.labels_as_of) == "2026-10-29"
    assert snapshot.leakage_check is not None and snapshot.leakage_check.status == "passed"
    assert record.features.joins == ["events LEFT JOIN customers USING (customer_id)"]
    [config] = record.configs
    assert config.name == "churn.yaml" and config.values["model.lr"] == 0.5 and config.artifact == "configs/churn.yaml"
    assert len(record.metric_series["train_loss"]) == 5 and 0.5 < record.metrics["auc"] <= 1.0
    assert sorted(record.slice_metrics) == ["country=DE", "country=FR", "country=NL"]
    assert [(a.name, a.kind) for a in record.artifacts] == [("configs/churn.yaml", "config"), ("model.json", "model")]

    failed = orchestrack.get_run("churn-train/2026-11-29/manual__1")
    assert failed.status == "failed" and [t.status.value for t in failed.tasks] == ["failed"]
    assert failed.failure is not None and failed.failure.reason == "data-error" and failed.failure.task == "prepare"
    assert "events-2026-11-29.csv" in failed.failure.summary


def test_run_example_script_shows_both_runs(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(["bash", str(REPO / "examples" / "python_pipeline" / "run_example.sh")], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout and "failed" in result.stdout
    assert "Failure: data-error" in result.stdout and "Task 'prepare' could not find its input" in result.stdout
    runs = orchestrack.search_runs(pipeline="churn-train")
    assert len(runs) == 2
    good = next(r for r in runs if r.status == "succeeded")
    assert good.gate is not None and good.gate.outcome == "passed", good.gate
    assert [t.name for t in good.tasks] == ["prepare", "train", "evaluate", "gate"]
    versions = orchestrack.open_registry().versions("churn")
    assert [(v.version, v.run_id, v.aliases) for v in versions] == [(1, good.run_id, ["champion"])]
    assert "Model churn" in result.stdout
    assert "models:/churn@champion (sha256" in result.stdout and f"source run: {good.run_id}" in result.stdout
