"""The pure renderers and the artifact rule, without a server or a browser."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from orchestrack.record import (
    Failure,
    FailureReason,
    GateCheck,
    GateDecision,
    GateOutcome,
    RunRecord,
    RunStatus,
    SeriesPoint,
    TaskAttempt,
    TaskStatus,
)
from orchestrack.ui import artifacts, charts, pages

NOW = datetime(2026, 11, 28, 14, 3, tzinfo=UTC)


def _record(run_id: str, **changes: object) -> RunRecord:
    return RunRecord.model_validate({"run_id": run_id, "key": f"k/{run_id}", "name": f"run {run_id}",
                                     "started_at": NOW, **changes})


def test_a_script_param_is_shown_as_text_never_as_markup() -> None:
    html = pages.run_page(_record("a1", params={"note": "<script>alert(1)</script>", "<b>": "x"}))
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;" in html
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/assets/ui.js" defer>']


def test_a_failure_sentence_and_gate_checks_are_on_the_run_page() -> None:
    failure = Failure(reason=FailureReason.DATA_ERROR, summary="Task 'load' failed: data/x.parquet is missing.",
                      task="load")
    gate = GateDecision(outcome=GateOutcome.HELD, summary="Held: auc is suspiciously good.", checks=[
        GateCheck(kind="ceiling", subject="auc", outcome=GateOutcome.HELD, value=0.999, bound=0.98,
                  sentence="auc 0.999 is above the ceiling 0.98.")])
    task = TaskAttempt(name="load", attempt=1, status=TaskStatus.FAILED, failure=failure)
    html = pages.run_page(_record("b2", status=RunStatus.FAILED, failure=failure, tasks=[task], gate=gate))
    assert html.count("Task &#x27;load&#x27; failed: data/x.parquet is missing.") == 2  # the box and the task row
    assert "auc 0.999 is above the ceiling 0.98." in html and "0.999" in html and "0.98" in html
    assert '<span class="badge held">held</span>' in html


def test_the_failures_page_groups_the_same_failure_by_fingerprint() -> None:
    def failed(run_id: str, fingerprint: str | None, pipeline: str) -> RunRecord:
        failure = Failure(reason=FailureReason.DATA_ERROR, summary=f"Task 'load' failed in {run_id}.", task="load",
                          fingerprint=fingerprint)
        return _record(run_id, status=RunStatus.FAILED, failure=failure, ended_at=NOW,
                       orchestrator={"pipeline": pipeline})

    records = [failed("c1", "1a2b3c4d5e6f7a8b", "nightly"), failed("c2", "1a2b3c4d5e6f7a8b", "backfill"),
               failed("c3", "9f8e7d6c5b4a3f2e", "nightly"), failed("c4", None, "nightly")]
    html = pages.failures_page(records)
    rows = re.findall(r"<tr><td>([0-9a-f]{16})</td>.*?<td>(\d+)</td>.*?</tr>",
                      html.split('class="fingerprints"')[1].split("</table>")[0])
    assert rows == [("1a2b3c4d5e6f7a8b", "2"), ("9f8e7d6c5b4a3f2e", "1")]
    assert "backfill, nightly" in html and 'href="/runs/c2"' in html


def test_a_chart_has_one_circle_per_point_in_step_order() -> None:
    points = [SeriesPoint(step=step, value=value, timestamp=NOW) for step, value in ((2, 0.5), (0, 0.9), (1, 0.7))]
    svg = charts.line_chart("loss", points)
    assert svg.count("<circle") == 3
    xs = [float(x) for x in re.findall(r'<circle class="point" cx="([0-9.]+)"', svg)]
    assert xs == sorted(xs)
    assert charts.line_chart("loss", []) == ""
    flat = charts.line_chart("flat", [SeriesPoint(step=0, value=1.0, timestamp=NOW)])
    assert flat.count("<circle") == 1


def test_compare_marks_differing_rows_with_a_class() -> None:
    html = pages.compare_page([_record("c1", params={"lr": 0.1, "epochs": 3}),
                               _record("c2", params={"lr": 0.2, "epochs": 3})])
    found = re.findall(r'<tr class="(differs|same)"><td>[^<]*</td><td>params</td><td>(\w+)</td>', html)
    assert {field: cls for cls, field in found} == {"lr": "differs", "epochs": "same"}


def test_a_report_is_self_contained() -> None:
    html = pages.report([_record("d1", params={"lr": 0.1}), _record("d2", params={"lr": 0.2})])
    assert "<style>" in html and "/assets/" not in html
    assert not re.search(r"https?://", html)
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert 'href="#run-d1"' in html and 'id="run-d2"' in html


def test_local_artifacts_must_resolve_inside_the_store(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    blob = root / "sha256" / "ab" / ("ab" * 32)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x")
    (root / "sha256" / "ab" / "link").symlink_to(tmp_path / "secret")
    (tmp_path / "secret").write_text("s")
    source = artifacts.LocalSource(root.resolve())
    assert source.locate(blob.as_uri()) == str(blob.resolve())
    assert source.locate((root / "sha256" / "ab" / "link").as_uri()) is None
    assert source.locate((root / "sha256" / ".." / ".." / "secret").as_uri()) is None
    assert source.locate("file:///etc/passwd") is None
    assert source.locate("s3://bucket/sha256/ab/x") is None
    assert source.by_sha256("../../secret") is None


def test_s3_artifacts_must_be_in_the_configured_bucket_and_prefix() -> None:
    source = artifacts.S3Source("ml", "runs/", client=None)
    assert source.locate("s3://ml/runs/sha256/ab/" + "a" * 64) == "runs/sha256/ab/" + "a" * 64
    for outside in ("s3://other/runs/sha256/ab/x", "s3://ml/elsewhere/x", "s3://ml/runs/../elsewhere/x",
                    "s3://ml-2/runs/x", "file:///etc/passwd"):
        assert source.locate(outside) is None, outside


def test_a_folder_manifest_naming_paths_outside_is_refused(tmp_path: Path) -> None:
    source = artifacts.LocalSource(tmp_path)
    good = {"vocab/words.txt": {"sha256": "a" * 64, "size": 1}}
    (tmp_path / "sha256" / "aa").mkdir(parents=True)
    (tmp_path / "sha256" / "aa" / ("a" * 64)).write_bytes(b"a")
    assert artifacts.folder_members(source, good) == [("vocab/words.txt", str(tmp_path / "sha256" / "aa" / ("a" * 64)))]
    assert artifacts.folder_members(source, {"../x": {"sha256": "a" * 64}}) is None
    assert artifacts.folder_members(source, {"x": {"sha256": "../../etc/passwd"}}) is None


def test_only_a_web_address_becomes_the_orchestrator_link() -> None:
    html = pages.run_page(_record("e1", orchestrator={"kind": "airflow", "url": "javascript:alert(1)"}))
    assert 'href="javascript' not in html and "javascript:alert(1)" in html
    html = pages.run_page(_record("e2", orchestrator={"kind": "airflow", "url": "https://airflow/dags/x"}))
    assert 'href="https://airflow/dags/x"' in html


def test_the_run_page_shows_the_checklist_fields_with_the_config_linked_to_its_copy() -> None:
    record = _record("c3", data=[{"name": "train", "uri": "s3://lake/t/", "filters": {"country": ["DE", "FR"]},
                                  "labels_as_of": "2026-10-01",
                                  "leakage_check": {"status": "failed", "note": "<b>id</b> leaks"}}],
                     configs=[{"name": "train.yaml", "format": "yaml", "source": "/repo/train.yaml",
                               "sha256": "ab" * 32, "size_bytes": 10, "artifact": "configs/train.yaml",
                               "values": {"model.lr": 0.1}}],
                     features={"columns": ["a"], "joins": ["x LEFT JOIN y ON id"], "feature_store": "feast:churn",
                               "feature_store_version": "7"},
                     llm={"provider": "vllm", "retrieval": {"top_k": 8}},
                     metrics={"llm.latency": 0.8}, metric_units={"llm.latency": "s"})
    html = pages.run_page(record)
    assert 'country=[&quot;DE&quot;, &quot;FR&quot;]' in html and "2026-10-01" in html
    assert "failed: &lt;b&gt;id&lt;/b&gt; leaks" in html  # a note is text, never markup
    assert 'href="/artifacts/c3/configs%2Ftrain.yaml"' in html and "abababababab" in html
    assert "x LEFT JOIN y ON id" in html and "feast:churn" in html and "retrieval.top_k" in html
    assert re.search(r"<td>llm\.latency</td><td>0\.8</td><td>s</td>", html)
