"""What decided a label (``orchestrack classify --explain``), orchestrator signals, the learned tier
and the evidence picker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import orchestrack
from orchestrack import FailureReason, classify_failure, explain_failure
from orchestrack.evidence import Evidence
from orchestrack.failure_model import FailureModel, features, shipped_model, train
from orchestrack.outcome import Outcome, TaskReport


def test_a_rule_decision_names_the_rule_and_what_it_matched() -> None:
    diagnosis = explain_failure(text="ERROR - Task timed out after 3600s", task="train")
    assert diagnosis.decided_by == "rule" and diagnosis.confidence == 1.0
    assert "built-in rule #" in diagnosis.basis and "timeout/execution-timeout" in diagnosis.basis
    assert "'Task timed out after'" in diagnosis.basis
    assert diagnosis.failure.reason is FailureReason.TIMEOUT
    lines = diagnosis.explanation()
    assert lines[0].startswith("timeout: Task 'train' ran past its time limit")
    assert any(line.startswith("decided by: rule: built-in rule #") for line in lines)


def test_an_exception_type_decision_names_the_type() -> None:
    diagnosis = explain_failure(ModuleNotFoundError("No module named 'xgboost'"))
    assert diagnosis.decided_by == "rule" and "exception ModuleNotFoundError" in diagnosis.basis


def test_a_team_rule_says_so() -> None:
    import re

    rule = orchestrack.register_rule(orchestrack.Rule(FailureReason.DATA_ERROR, "late-partition",
                                                      pattern=re.compile("partition .* not ready")))
    try:
        diagnosis = explain_failure(text="partition 2026-12-01 not ready")
    finally:
        orchestrack.classify.unregister_rule(rule)
    assert diagnosis.decided_by == "team-rule" and "data-error/late-partition" in diagnosis.basis


@pytest.mark.parametrize(("signals", "text", "reason", "detail"), [
    ({"termination_reason": "OOMKilled"}, "Error: exit status 1", "infra-error", "oom"),
    ({"termination_reason": "Evicted"}, None, "infra-error", "evicted"),
    ({"termination_reason": "DeadlineExceeded"}, "ValueError: bad row", "timeout", "deadline"),
    ({"state": "Cancelled"}, "ValueError: bad row", "cancelled", "cancelled"),
    ({"state": "TIMED_OUT"}, "something happened", "timeout", "execution-timeout"),
    ({"state": "crashed"}, "the worker vanished", "infra-error", "crashed"),
    ({"signal": "SIGKILL"}, None, "infra-error", "killed"),
    ({"signal": 2}, None, "cancelled", "interrupted"),
])
def test_orchestrator_signals(signals: dict, text: str | None, reason: str, detail: str) -> None:
    diagnosis = explain_failure(text=text, signals=signals)
    assert (diagnosis.failure.reason.value, diagnosis.failure.detail) == (reason, detail)
    assert diagnosis.decided_by == "signal"
    assert f"{next(iter(signals))}=" in diagnosis.basis


def test_a_strong_signal_beats_the_text_and_a_weak_one_does_not() -> None:
    # Kubernetes says OOMKilled: the text's ValueError is what the process printed while dying.
    assert classify_failure(text="ValueError: x", signals={"termination_reason": "OOMKilled"}).detail == "oom"
    # Prefect says Crashed, but the text says why: the text decides.
    crashed = explain_failure(text="CUDA out of memory. Tried to allocate 2.00 GiB", signals={"state": "crashed"})
    assert crashed.decided_by == "rule" and crashed.failure.detail == "gpu-oom"
    # An unknown signal value is ignored, not an error.
    assert classify_failure(text="ValueError: x", signals={"state": "weird", "other": 1}).reason is not None


def test_a_text_rule_of_the_same_label_refines_a_strong_signal() -> None:
    """TimedOut says timeout; the text says which limit (the DAG run's), and that detail is kept."""
    diagnosis = explain_failure(text="Dag run msg=timed_out", signals={"state": "timed_out"})
    assert (diagnosis.failure.reason, diagnosis.failure.detail) == (FailureReason.TIMEOUT, "dagrun-timeout")
    assert diagnosis.decided_by == "signal" and "built-in rule #1 " in diagnosis.basis
    # A text rule of another label does not: the signal's label stands.
    other = explain_failure(text="Connection reset by peer", signals={"state": "timed_out"})
    assert other.failure.reason is FailureReason.TIMEOUT and other.failure.detail == "execution-timeout"


def test_adapters_pass_the_orchestrator_state_as_a_signal() -> None:
    attempt = TaskReport(task_id="t", name="train", attempt=1, outcome=Outcome.CRASHED,
                         message="the worker vanished").attempt_record()
    assert attempt.failure is not None
    assert (attempt.failure.reason, attempt.failure.detail) == (FailureReason.INFRA_ERROR, "crashed")
    timed_out = TaskReport(task_id="t", name="train", attempt=1, outcome=Outcome.TIMED_OUT,
                           message="Task run exceeded its budget").attempt_record()
    assert timed_out.failure is not None and timed_out.failure.reason is FailureReason.TIMEOUT


def test_the_learned_tier_decides_only_above_its_threshold() -> None:
    model = shipped_model()
    assert model is not None and 0.5 < model.threshold <= 1.0
    assert model.meta["samples"] >= 500 and model.meta["trained_on"]
    # A text no rule knows, worded like the training texts of one label.
    text = "Exception in stage: warehouse returned: Quota for bucket exhausted, try later"
    diagnosis = explain_failure(text=text)
    assert diagnosis.model is not None, "the model was asked"
    if diagnosis.model.confident and diagnosis.model.label != "unknown":
        assert diagnosis.decided_by == "model" and diagnosis.failure.detail == "model"
    else:
        assert diagnosis.failure.reason is FailureReason.UNKNOWN
        assert "not sure enough" in diagnosis.basis or diagnosis.model.label == "unknown"


def test_a_model_decision_is_explained_with_its_features(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = [(f"zorbly frobnication {n} failed", None, "data-error") for n in range(5)]
    samples += [(f"quux overheat {n} failed", None, "infra-error") for n in range(5)]
    labels = tuple(reason.value for reason in FailureReason)
    trained = train(samples, labels, epochs=30)
    model = FailureModel(trained.labels, trained.bias, trained.weights, 0.5, {"samples": 10})
    monkeypatch.setattr("orchestrack.classify.shipped_model", lambda: model)
    diagnosis = explain_failure(text="zorbly frobnication 77 failed")
    assert diagnosis.decided_by == "model" and diagnosis.failure.reason is FailureReason.DATA_ERROR
    assert diagnosis.model is not None and diagnosis.model.confident
    assert any(name.startswith("zorbly") or name.startswith("frobnication")
               for name, _ in diagnosis.model.top_features)
    assert diagnosis.failure.summary.startswith("The run found a problem with its input data")
    assert any(line.startswith("model: data-error at") for line in diagnosis.explanation())


def test_training_is_deterministic() -> None:
    samples = [("connection refused to db", None, "infra-error"), ("KeyError: 'col'", None, "bad-schema"),
               ("connection reset by peer", None, "infra-error"), ("KeyError: 'age'", None, "bad-schema")]
    labels = tuple(reason.value for reason in FailureReason)
    first = train(samples, labels, min_count=1).to_json()
    assert train(samples, labels, min_count=1).to_json() == first
    assert FailureModel.from_json(json.loads(json.dumps(first))).to_json() == first


def test_features_are_words_pairs_and_exception_name_parts() -> None:
    found = features("org.apache.spark.ExecutorLostFailure: Executor 3 lost", exit_code=137)
    assert {"executorlostfailure", "executor lost", "~executor", "~lost", "~failure", "exit:137"} <= found


@pytest.mark.parametrize("noise", ["}", "----------", "+------+------+", "| a | b |", "═══════", "  ]", "..."])
def test_the_evidence_picker_never_quotes_a_brace_separator_or_border(noise: str) -> None:
    text = f"Step 3 started\nstatus: FAILED because the loader was rejected\n{noise}\n{noise}"
    picked = Evidence(None, text, None).pick_line()
    assert picked == "status: FAILED because the loader was rejected"
    summary = classify_failure(text=text).summary
    assert "rejected" in summary and noise not in summary.split("(", 1)[-1]


def test_the_picker_prefers_error_lines_and_the_later_of_equals() -> None:
    text = "starting job\nerror: first failure\nretrying\nerror: second failure\ndone"
    assert Evidence(None, text, None).pick_line() == "error: second failure"
    assert Evidence(None, "}\n{\n", None).pick_line() is None


def test_cli_explain_and_signals(tmp_path) -> None:
    log = tmp_path / "task.log"
    log.write_text("Step 12/12 failed\n----------\n}\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "orchestrack", "classify", str(log), "--explain",
                             "--signal", "termination_reason=OOMKilled", "--task", "train"],
                            capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.startswith("infra-error: Task 'train' was killed for running out of memory (OOMKilled)")
    assert "decided by: signal: the orchestrator reported termination_reason=OOMKilled" in result.stdout
    assert "confidence: 1.00" in result.stdout
    as_json = subprocess.run([sys.executable, "-m", "orchestrack", "classify", str(log), "--explain", "--json"],
                             capture_output=True, text=True, check=True, timeout=60)
    document = json.loads(as_json.stdout)
    assert document["decided_by"] in ("nothing", "model") and "model" in document and "basis" in document
    bad = subprocess.run([sys.executable, "-m", "orchestrack", "classify", str(log), "--signal", "oops"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "is not KEY=VALUE" in bad.stderr
