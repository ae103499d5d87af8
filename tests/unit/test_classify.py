"""The classifier's behaviour beyond the corpus: live errors, chains, groups, rules, redaction, bounds."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import orchestrack
from orchestrack import FailureReason, classify_failure
from orchestrack.classify import Rule, redact, register_rule, unregister_rule


def raise_in_user_code() -> None:
    config: dict[str, int] = {}
    config["learning_rate"]  # noqa: B018 - a plain dict lookup of the code's own making


def test_live_chained_error_is_classified_by_its_root_cause() -> None:
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError as inner:
            raise RuntimeError("failed to load batch") from inner
    except RuntimeError as error:
        failure = classify_failure(error, task="load")
    assert failure.reason is FailureReason.INFRA_ERROR and failure.detail == "network"
    assert failure.summary.startswith("Task 'load' lost its connection to a service")
    assert failure.error_type == "RuntimeError"


def test_exception_group_members_are_seen() -> None:
    group = ExceptionGroup("tasks failed", [ValueError("x"), FileNotFoundError(2, "No such file", "a.csv")])
    assert classify_failure(group).reason is FailureReason.DATA_ERROR


def test_dict_key_error_is_code_error_and_column_key_error_is_bad_schema() -> None:
    with pytest.raises(KeyError) as caught:
        raise_in_user_code()
    assert classify_failure(caught.value).reason is FailureReason.CODE_ERROR
    column = 'Traceback (most recent call last):\n  File "train.py", line 9, in <module>\n    y = df["label"]\n' \
             '  File "/usr/lib/python3.11/site-packages/pandas/core/frame.py", line 4102, in __getitem__\n' \
             "KeyError: 'label'"
    assert classify_failure(text=column).reason is FailureReason.BAD_SCHEMA


def test_unmatched_error_is_code_error_only_from_user_code() -> None:
    class PipelineSpecificError(Exception):
        pass

    try:
        raise PipelineSpecificError("the thing went wrong")
    except PipelineSpecificError as error:
        assert classify_failure(error).reason is FailureReason.CODE_ERROR
    from_library = ('Traceback (most recent call last):\n  File "/venv/lib/python3.11/site-packages/lib/x.py", line 3\n'
                    "lib.SomethingWentWrong: opaque library failure")
    failure = classify_failure(text=from_library, task="t")
    assert failure.reason is FailureReason.UNKNOWN
    assert "opaque library failure" in failure.summary  # says what was seen, never guesses silently


def test_noisy_log_prefixes_and_ansi_colours_are_ignored() -> None:
    text = ("\x1b[32m10:01:02.345\x1b[0m | \x1b[31mERROR\x1b[0m   | Task run 'load-0' - Task run encountered an "
            "exception FileNotFoundError: [Errno 2] No such file or directory: 's3cache/train.parquet'")
    failure = classify_failure(text=text, task="load")
    assert failure.reason is FailureReason.DATA_ERROR
    assert "\x1b" not in failure.summary and "10:01:02" not in failure.summary


def test_localised_errno_messages_are_understood() -> None:
    french = "FileNotFoundError: [Errno 2] Aucun fichier ou dossier de ce type: 'data/train.csv'"
    german = "OSError: [Errno 28] Auf dem Gerät ist kein Speicherplatz mehr verfügbar"
    assert classify_failure(text=french).reason is FailureReason.DATA_ERROR
    assert classify_failure(text=german).detail == "disk-full"


@pytest.mark.parametrize("code, reason", [(137, "infra-error"), (-9, "infra-error"), (143, "infra-error"),
                                          (139, "infra-error"), (124, "timeout"), (127, "code-error"),
                                          (126, "code-error"), (125, "infra-error"), (130, "cancelled"),
                                          (1, "unknown"), (2, "code-error")])
def test_exit_codes_alone(code: int, reason: str) -> None:
    failure = classify_failure(exit_code=code, task="train")
    assert failure.reason == reason and failure.exit_code == code
    assert failure.summary.startswith("Task 'train' ") and len(failure.summary) <= 200


def test_secrets_are_redacted_from_summary_and_evidence() -> None:
    text = ("botocore.exceptions.ClientError: An error occurred (ExpiredToken) when calling GetObject; "
            "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG token=abc123 postgresql://ml:hunter2@db:5432/x "
            "AKIAIOSFODNN7EXAMPLE")
    failure = classify_failure(text=text)
    for secret in ("wJalrXUtnFEMI", "abc123", "hunter2", "AKIAIOSFODNN7EXAMPLE"):
        assert secret not in failure.summary and secret not in (failure.evidence or "")
    assert failure.detail == "credentials"
    assert redact("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig") == "Authorization: Bearer ***"


def test_summary_is_one_sentence_within_the_limit() -> None:
    failure = classify_failure(text="ValueError: " + "x" * 5000, task="a" * 30)
    assert len(failure.summary) <= 200 and failure.summary.endswith(").") and "\n" not in failure.summary


def test_team_rules_come_before_the_builtins(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = register_rule(Rule(FailureReason.DATA_ERROR, "late-partition", "found its partition not ready",
                              pattern=re.compile(r"partition \S+ is not ready")))
    try:
        failure = classify_failure(text="TimeoutError: partition 2026-11-28 is not ready", task="wait")
        assert (failure.reason, failure.detail) == (FailureReason.DATA_ERROR, "late-partition")
    finally:
        unregister_rule(rule)
    assert classify_failure(text="TimeoutError: partition 2026-11-28 is not ready").reason != FailureReason.DATA_ERROR

    def flaky_vendor(error: BaseException | None, text: str, exit_code: int | None) -> tuple[str, str, str] | None:
        return ("infra-error", "vendor-api", "hit the vendor API outage") if "VendorDown" in text else None

    register_rule(flaky_vendor)  # type: ignore[arg-type]
    try:
        assert classify_failure(text="VendorDown: 500").detail == "vendor-api"
    finally:
        unregister_rule(flaky_vendor)  # type: ignore[arg-type]


def test_config_rules_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_FAILURE_RULES", json.dumps(
        [{"pattern": "feature store .* stale", "reason": "data-error", "detail": "stale-features",
          "cause": "read stale features"}]))
    failure = classify_failure(text="RuntimeError: feature store view churn_v3 is stale", task="train")
    assert (failure.reason, failure.detail) == (FailureReason.DATA_ERROR, "stale-features")
    assert failure.summary.startswith("Task 'train' read stale features")
    monkeypatch.setenv("ORCHESTRACK_FAILURE_RULES", json.dumps([{"pattern": "(", "reason": "data-error"}]))
    with pytest.raises(orchestrack.InvalidInputError, match="ORCHESTRACK_FAILURE_RULES.*not a valid regular"):
        classify_failure(text="x")
    monkeypatch.setenv("ORCHESTRACK_FAILURE_RULES", json.dumps([{"pattern": "x", "reason": "flaky"}]))
    with pytest.raises(orchestrack.InvalidInputError, match="FAILURE_RULES.*'timeout'"):
        classify_failure(text="x")


def test_a_rule_needs_something_to_match() -> None:
    with pytest.raises(ValueError, match="types, a pattern or exit codes"):
        Rule(FailureReason.UNKNOWN)


def test_lifecycle_records_reason_and_sentence_for_a_task_failure() -> None:
    run = orchestrack.start_run(key="classified")
    with pytest.raises(AssertionError), run.task("evaluate"):
        raise AssertionError("validation auc 0.62 is below the baseline 0.70")
    record = run.finish()
    assert record is not None and record.failure is not None
    assert record.failure.reason is FailureReason.METRIC_REGRESSION and record.failure.task == "evaluate"
    assert record.failure.summary.startswith("Task 'evaluate' fell short of its metric threshold")


def test_cli_classifies_a_piped_log() -> None:
    log = ("[2026-11-28, 10:00:00 UTC] {taskinstance.py:3311} ERROR - Task failed\n"
           "LastState: Terminated Reason: OOMKilled")
    result = subprocess.run([sys.executable, "-m", "orchestrack", "classify", "--task", "train", "--json"],
                            input=log, capture_output=True, text=True, check=True, timeout=60)
    document = json.loads(result.stdout)
    assert document["reason"] == "infra-error" and document["detail"] == "oom"
    assert document["summary"].startswith("Task 'train' was killed for running out of memory")


def test_huge_logs_are_read_at_their_end() -> None:
    """A 10 MB log is cut to its head and tail (speed: benchmarks/classify.py), and the tail is where it failed."""
    huge = ("2026-11-28 10:00:00 INFO step 1234 loss=0.1234 lr=0.0003 throughput=1234 samples/s\n" * 130_000
            + "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n")
    assert len(huge) > 10_000_000
    failure = classify_failure(text=huge)
    assert failure.detail == "gpu-oom" and "Tried to allocate 2.00 GiB" in failure.summary
    assert classify_failure(text="x" * 300_000 + "\nKeyError: 'label'\n  in pandas/core/indexes/base.py").detail
