"""The quality gate: spec loading with line-numbered errors, every check, the recorded decision, the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

import orchestrack
from orchestrack import stores
from orchestrack.cli import main
from orchestrack.errors import InvalidInputError
from orchestrack.gate import GateFailedError, GateSpec, check_gate, evaluate_gate, gate_step, load_gate_spec
from orchestrack.record import FailureReason, GateOutcome, RunRecord, RunStatus, TaskStatus, utcnow
from tests.cli_runner import CliRunner

SPEC_YAML = """\
metrics:
  auc: {min: 0.75}
  latency_ms: {max: 120}
  "auc[country=DE]": {min: 0.70}
baseline:
  run: latest-baseline
  max_regression: {auc: 0.02}
require: [code.commit, data]
suspicious:
  max_sigma: 4
  ceiling: {auc: 0.995}
"""


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ORCHESTRACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORCHESTRACK_STRICT", "1")
    monkeypatch.delenv("ORCHESTRACK_TRACKING_URI", raising=False)
    monkeypatch.delenv("ORCHESTRACK_RUN_KEY", raising=False)
    yield tmp_path / "home"
    stores.close_all()


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(SPEC_YAML)
    return path


def make_run(key: str, *, auc: float, de: float = 0.8, latency: float = 80, purpose: str = "tuning",
             commit: str | None = "c0ffee", data: bool = True, minutes_ago: float = 0) -> RunRecord:
    """A finished, succeeded run of pipeline ``churn`` with these metrics."""
    run = orchestrack.start_run(key=key, pipeline="churn", purpose=purpose, owner="ml",
                                started_at=utcnow() - timedelta(minutes=minutes_ago),
                                code=orchestrack.CodeInfo(commit=commit) if commit else None)
    if commit is None:
        run.store.update_run(run.run_id, {"code": orchestrack.CodeInfo()})
    with run.task("evaluate"):
        run.log_metrics({"auc": auc, "latency_ms": latency})
        run.log_metrics({"auc": de}, slice={"country": "DE"})
        if data:
            run.log_dataset("train", "s3://bucket/train.parquet", version="v1")
    record = run.finish()
    assert record is not None and record.status is RunStatus.SUCCEEDED
    return record


def history(count: int = 6) -> None:
    """``count`` earlier runs around auc 0.80 (sd about 0.01), the oldest a baseline at 0.80."""
    for index in range(count):
        make_run(f"hist/{index}", auc=0.79 + 0.004 * index, purpose="baseline" if index == 0 else "tuning",
                 minutes_ago=100 - index)


# -- the spec ---------------------------------------------------------------------------------------


def test_the_issue_spec_loads_from_yaml_toml_json_and_a_mapping_alike(spec_file: Path, tmp_path: Path) -> None:
    from_yaml, source = load_gate_spec(spec_file)
    assert source == str(spec_file)
    assert from_yaml.metrics["auc[country=DE]"].min == 0.70 and from_yaml.suspicious.ceiling == {"auc": 0.995}
    toml = tmp_path / "gate.toml"
    toml.write_text('require = ["code.commit", "data"]\n[metrics]\nauc = {min = 0.75}\nlatency_ms = {max = 120}\n'
                    '"auc[country=DE]" = {min = 0.70}\n[baseline]\nrun = "latest-baseline"\n'
                    '[baseline.max_regression]\nauc = 0.02\n[suspicious]\nmax_sigma = 4\nceiling = {auc = 0.995}\n')
    as_json = tmp_path / "gate.json"
    as_json.write_text(json.dumps(from_yaml.model_dump(mode="json")))
    digests = {GateSpec.model_validate(from_yaml.model_dump()).model_dump_json(),
               load_gate_spec(toml)[0].model_dump_json(), load_gate_spec(as_json)[0].model_dump_json(),
               load_gate_spec(from_yaml.model_dump())[0].model_dump_json()}
    assert len(digests) == 1


@pytest.mark.parametrize(("text", "expected"), [
    ("metrics:\n  auc: {min: 0.75}\n  loss: {mni: 0.1}\n", ["metrics.loss.mni (line 3)", "unknown key",
                                                          "min, max, better"]),
    ("metrics:\n  auc: {min: high}\n", ["metrics.auc.min (line 2)", "valid number"]),
    ("metrics:\n  auc: {}\n", ["metrics.auc (line 2)", "give min, max or both"]),
    ("require:\n  - code.commit\n  - code.comit\n", ["require (line 1)", "code.comit", "unknown field 'comit'"]),
    ("baseline:\n  run: champion\n  max_regression: {auc: lots}\n", ["baseline.max_regression (line 3)",
                                                                      "percentage"]),
    ("metric:\n  auc: {min: 0.7}\n", ["metric (line 1)", "expected one of metrics, baseline, require, suspicious"]),
    ("metrics: [auc]\n", ["metrics (line 1)", "valid dictionary"]),
    ("metrics:\n  auc: {min: 0.7\n", ["not valid YAML"]),
    ("- 1\n- 2\n", ["must be a mapping"]),
])
def test_a_bad_spec_names_the_key_its_line_and_the_fix(tmp_path: Path, text: str, expected: list[str]) -> None:
    path = tmp_path / "gate.yaml"
    path.write_text(text)
    with pytest.raises(InvalidInputError) as caught:
        load_gate_spec(path)
    message = str(caught.value)
    assert str(path) in message
    for part in expected:
        assert part in message


def test_a_bad_toml_spec_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_text("[metrics]\nauc = {min = 0.75}\n\n[suspicious]\nmax_sigma = -1\n")
    with pytest.raises(InvalidInputError, match=r"suspicious.max_sigma \(line 5\): .*greater than 0"):
        load_gate_spec(path)


def test_a_missing_spec_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_gate_spec(tmp_path / "nope.yaml")


# -- deciding ---------------------------------------------------------------------------------------


def test_a_good_run_passes_every_check_and_the_decision_is_recorded(spec_file: Path) -> None:
    history()
    record = make_run("churn/good", auc=0.81)
    decision = check_gate(record.key, spec_file)
    assert decision.outcome is GateOutcome.PASSED, decision.summary
    kinds = sorted({c.kind for c in decision.checks})
    assert kinds == ["baseline", "ceiling", "max", "min", "require", "sigma"]
    baseline = next(c for c in decision.checks if c.kind == "baseline")
    assert baseline.reference and "hist/0" in baseline.reference and baseline.bound == pytest.approx(0.77)
    stored = orchestrack.get_run(record.key)
    assert stored.gate == decision and stored.status is RunStatus.SUCCEEDED
    assert decision.baseline_run == orchestrack.get_run("hist/0").run_id


def test_a_regressed_run_fails_with_metric_regression_naming_metric_value_and_bound(spec_file: Path) -> None:
    history()
    record = make_run("churn/bad", auc=0.72)
    decision = check_gate(record.key, spec_file)
    assert decision.outcome is GateOutcome.FAILED
    assert decision.summary.startswith("Quality gate failed: auc = 0.72 is below its minimum 0.75")
    stored = orchestrack.get_run(record.key)
    assert stored.status is RunStatus.FAILED and stored.failure is not None
    assert stored.failure.reason is FailureReason.METRIC_REGRESSION
    assert "auc = 0.72" in stored.failure.summary and "0.75" in stored.failure.summary
    assert orchestrack.search_runs(reason="metric-regression")[0].key == "churn/bad"


def test_a_run_worse_than_its_baseline_beyond_the_allowance_fails(spec_file: Path) -> None:
    history()
    decision = check_gate(make_run("churn/slip", auc=0.765).key, spec_file)
    assert decision.outcome is GateOutcome.FAILED
    failed = [c for c in decision.checks if c.outcome is GateOutcome.FAILED]
    assert [c.kind for c in failed] == ["baseline"]
    assert "regressed beyond 0.02 of baseline hist/0" in failed[0].sentence


def test_a_relative_allowance_and_a_lower_is_better_metric() -> None:
    make_run("base", auc=0.8, latency=100, purpose="baseline", minutes_ago=5)
    spec = {"baseline": {"max_regression": {"latency_ms": "10%"}}, "suspicious": {"enabled": False}}
    assert check_gate(make_run("fast", auc=0.8, latency=109).key, spec).outcome is GateOutcome.PASSED
    slow = check_gate(make_run("slow", auc=0.8, latency=111).key, spec)
    assert slow.outcome is GateOutcome.FAILED and slow.checks[0].bound == pytest.approx(110)


def test_a_failing_slice_fails_the_gate(spec_file: Path) -> None:
    decision = check_gate(make_run("churn/de", auc=0.8, de=0.6).key, spec_file)
    assert decision.outcome is GateOutcome.FAILED
    assert "auc[country=DE] = 0.6 is below its minimum 0.7" in decision.summary


def test_missing_required_fields_and_metrics_fail_with_a_sentence_each() -> None:
    record = make_run("bare", auc=0.8, commit=None, data=False)
    decision = check_gate(record.key, {"metrics": {"f1": {"min": 0.5}}, "require": ["code.commit", "data"]})
    sentences = [c.sentence for c in decision.checks if c.outcome is GateOutcome.FAILED]
    assert sentences == ["metric f1 was not logged by the run, so its bound cannot be checked.",
                         "the run has no code.commit, which the gate requires.",
                         "the run has no data, which the gate requires."]


def test_a_jump_far_outside_the_pipelines_history_is_held_not_passed(spec_file: Path) -> None:
    history()
    decision = check_gate(make_run("churn/leak", auc=0.93).key, spec_file)
    assert decision.outcome is GateOutcome.HELD
    sigma = next(c for c in decision.checks if c.kind == "sigma" and c.subject == "auc")
    assert sigma.outcome is GateOutcome.HELD and sigma.reference and "6 earlier runs of churn" in sigma.reference
    assert "better than the mean 0.8" in decision.summary and "leakage" in decision.summary
    assert orchestrack.get_run("churn/leak").status is RunStatus.SUCCEEDED  # held, not failed


def test_a_value_above_the_ceiling_is_held_even_without_history(spec_file: Path) -> None:
    decision = check_gate(make_run("churn/perfect", auc=0.999, de=0.99).key, spec_file)
    assert decision.outcome is GateOutcome.HELD
    assert "auc = 0.999 is beyond its ceiling 0.995" in decision.summary


def test_held_runs_do_not_become_the_history_the_next_run_is_judged_by(spec_file: Path) -> None:
    history(5)
    check_gate(make_run("churn/leak", auc=0.95, minutes_ago=1).key, spec_file)
    later = check_gate(make_run("churn/next", auc=0.805).key, spec_file)
    assert later.outcome is GateOutcome.PASSED
    sigma = next(c for c in later.checks if c.kind == "sigma" and c.subject == "auc")
    assert sigma.reference and sigma.reference.startswith("5 earlier runs")


def test_too_little_history_decides_nothing_about_jumps(spec_file: Path) -> None:
    history(3)
    decision = check_gate(make_run("churn/new", auc=0.93).key, spec_file)
    assert decision.outcome is GateOutcome.PASSED
    assert not [c for c in decision.checks if c.kind == "sigma"]


def test_gating_anew_with_a_passing_spec_clears_the_gate_failure(spec_file: Path) -> None:
    key = make_run("churn/regate", auc=0.72).key
    assert check_gate(key, spec_file).outcome is GateOutcome.FAILED
    assert check_gate(key, {"metrics": {"auc": {"min": 0.7}}}).outcome is GateOutcome.PASSED
    stored = orchestrack.get_run(key)
    assert stored.status is RunStatus.SUCCEEDED and stored.failure is None


def test_evaluate_gate_is_pure_and_names_a_missing_baseline() -> None:
    record = RunRecord(run_id="r", key="k", name="k", metrics={"auc": 0.8})
    spec = GateSpec.model_validate({"baseline": {"max_regression": {"auc": 0.01}}})
    decision = evaluate_gate(record, spec, baseline_note="no earlier succeeded baseline run of pipeline 'x'")
    assert decision.outcome is GateOutcome.PASSED
    assert decision.checks[0].sentence == ("auc has no baseline to compare with "
                                           "(no earlier succeeded baseline run of pipeline 'x').")


def test_a_baseline_run_that_does_not_exist_is_a_clear_error() -> None:
    key = make_run("churn/x", auc=0.8).key
    with pytest.raises(InvalidInputError, match="baseline.run 'nope/never' names no run"):
        check_gate(key, {"baseline": {"run": "nope/never", "max_regression": {"auc": 0.01}}})


# -- the gate as a step -----------------------------------------------------------------------------


def test_the_gate_step_fails_its_task_and_the_run_with_metric_regression(spec_file: Path) -> None:
    run = orchestrack.start_run(key="step/bad", pipeline="churn", code=orchestrack.CodeInfo(commit="c0ffee"))
    with run.task("train"):
        orchestrack.log_metrics({"auc": 0.6, "latency_ms": 90})
        orchestrack.log_metrics({"auc": 0.8}, slice="country=DE")
        orchestrack.log_dataset("train", "s3://b/train.parquet", version="v1")
    with pytest.raises(GateFailedError), run.task("gate"):
        gate_step(spec_file)
    record = run.finish()
    assert record is not None and record.status is RunStatus.FAILED
    assert record.failure is not None and record.failure.reason is FailureReason.METRIC_REGRESSION
    assert record.failure.task == "gate" and "auc = 0.6 is below its minimum 0.75" in record.failure.summary
    gate_task = record.last_attempts()["gate"]
    assert gate_task.status is TaskStatus.FAILED and gate_task.failure is not None
    assert gate_task.failure.reason is FailureReason.METRIC_REGRESSION
    assert record.gate is not None and record.gate.outcome is GateOutcome.FAILED


def test_the_gate_step_without_a_run_says_how_to_get_one() -> None:
    with pytest.raises(InvalidInputError, match="found no active run"):
        gate_step({"metrics": {"auc": {"min": 0.1}}})


# -- the command ------------------------------------------------------------------------------------


def test_the_gate_command_exit_codes_tell_passed_failed_and_held_apart(spec_file: Path) -> None:
    history()
    runner = CliRunner()
    codes = {}
    for key, auc in (("cli/pass", 0.81), ("cli/fail", 0.7), ("cli/held", 0.95)):
        make_run(key, auc=auc)
        result = runner.invoke(main, ["gate", key, "--spec", str(spec_file)], catch_exceptions=False)
        codes[key] = result.exit_code
        assert "Quality gate" in result.stdout
    assert codes == {"cli/pass": 0, "cli/fail": 3, "cli/held": 4}
    as_json = runner.invoke(main, ["gate", "cli/held", "--spec", str(spec_file), "--json"])
    assert as_json.exit_code == 4 and json.loads(as_json.stdout)["outcome"] == "held"


def test_the_gate_command_reports_a_bad_spec_as_one_line_error(tmp_path: Path) -> None:
    make_run("cli/x", auc=0.8)
    bad = tmp_path / "bad.yaml"
    bad.write_text("metrics:\n  auc: {minimum: 0.7}\n")
    result = CliRunner().invoke(main, ["gate", "cli/x", "--spec", str(bad)])
    assert result.exit_code == 1
    assert "metrics.auc.minimum (line 2): unknown key" in result.stderr
    assert "Traceback" not in result.output


def test_show_and_runs_tell_the_gate_decision_and_the_versions_promoted(spec_file: Path, tmp_path: Path) -> None:
    history()
    key = make_run("cli/shown", auc=0.81).key
    check_gate(key, spec_file)
    model = tmp_path / "model.json"
    model.write_text("{}")
    run = orchestrack.start_run(key=key)
    run.store.log_artifact(run.run_id, orchestrack.Artifact(name="model.json", kind="model", uri=model.as_uri(),
                                                            sha256="ab" * 32, size_bytes=2))
    orchestrack.promote(key, "churn", alias="champion")
    runner = CliRunner()
    shown = runner.invoke(main, ["show", key], catch_exceptions=False).stdout
    assert "Quality gate: passed" in shown and "Quality gate checks" in shown
    assert "auc = 0.81 is at or above its minimum 0.75." in " ".join(shown.split())
    versions = shown[shown.index("Model versions"):]
    assert "churn" in versions and "champion" in versions
    listed = runner.invoke(main, ["runs", "--pipeline", "churn"], catch_exceptions=False).stdout
    line = next(row for row in listed.splitlines() if "cli/shown" in row)
    assert "passed" in line


def test_the_decision_as_markdown_has_every_check_and_escapes_table_breakers() -> None:
    from orchestrack.report import gate_markdown

    record = RunRecord(run_id="r", key="k", name="k", metrics={"auc": 0.7})
    decision = evaluate_gate(record, GateSpec.model_validate({"metrics": {"auc": {"min": 0.75}},
                                                              "require": ["tags.a|b"]}))
    text = gate_markdown(decision, "http://127.0.0.1:8765/runs/r")
    assert text.startswith("### Quality gate: **failed**\n")
    assert "| min | auc | 0.7 | 0.75 | failed | auc = 0.7 is below its minimum 0.75. |" in text
    assert "tags.a\\|b" in text and text.endswith("[open the run](http://127.0.0.1:8765/runs/r)\n")
