"""Failure fingerprints: the same failure across runs gets one, and `failures --group` / `show` read by it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import orchestrack
from orchestrack import failure_fingerprint
from orchestrack.cli import main
from orchestrack.evidence import Evidence
from orchestrack.fingerprint import fingerprint_parts, normalised_message
from orchestrack.gate import gate_failure
from orchestrack.record import GateCheck, GateDecision, GateOutcome
from tests.cli_runner import CliRunner, Result

# -- normalisation --------------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "second"), [
    ("bad batch 812 at /tmp/3f2a9c1e-1111-2222-3333-444455556666/part-0.parquet",
     "bad batch 7 at /tmp/0b7d4e5a-9999-8888-7777-666655554444/part-12.parquet"),
    ("run 6f1c7f0e-2d4b-5a8e-9c3e-0b7d4e5a1c2f failed at 2026-11-03T10:00:00Z",
     "run 0b7d4e5a-1c2f-5a8e-9c3e-6f1c7f0e2d4b failed at 2026-12-01 23:59:59.123 UTC"),
    ("tried to allocate 2.00 GiB (12.5 GiB free) at 10:03:04", "tried to allocate 512 GiB (0.3 GiB free) at 23:00:01"),
    ("object <Batch at 0x7f3a2b9c10> has no rows", "object <Batch at 0x55d1e0> has no rows"),
    ("cannot read s3://bucket/2026-11-03/part-1.csv?versionId=abc", "cannot read s3://other/2026-12-01/x.csv"),
    ("KeyError: 'user_42'", "KeyError: 'order-7'"),
    ('column "age" has nulls', 'column "income" has nulls'),
    ("commit a1b2c3d4e5f6 is not on main", "commit 0f9e8d7c6b5a is not on main"),
    ("read data/2026/11/train.parquet:  not   found", "read data/2026/12/test.parquet: not found"),
    ("login with token=abc123secret refused", "login with token=zzz999other refused"),
])
def test_run_particular_values_are_masked(first: str, second: str) -> None:
    assert normalised_message(first) == normalised_message(second)
    assert failure_fingerprint("ValueError", first) == failure_fingerprint("ValueError", second)


def test_masked_message_keeps_its_wording() -> None:
    assert normalised_message("bad batch 812 at /tmp/x/part-0.parquet\nsecond line") == "bad batch <n> at <path>"
    assert normalised_message("can't open 'x'") == "can't open <value>"  # an apostrophe is no quote
    assert normalised_message("and/or   km/h") == "and/or km/h"  # words with a slash are not paths


def test_the_type_counts_by_its_last_dotted_component() -> None:
    assert failure_fingerprint("pkg.errors.BadBatch", "x") == failure_fingerprint("BadBatch", "x")
    assert failure_fingerprint("ValueError", "bad batch 1") != failure_fingerprint("KeyError", "bad batch 1")
    assert failure_fingerprint(None, "bad batch 1") != failure_fingerprint("ValueError", "bad batch 1")


def test_other_wording_is_another_fingerprint() -> None:
    assert failure_fingerprint("ValueError", "bad batch 1") != failure_fingerprint("ValueError", "empty batch 1")
    assert failure_fingerprint("ValueError", "bad batch 1") != failure_fingerprint("ValueError", None)


def test_frames_count_by_file_and_function_not_path_or_line() -> None:
    base = failure_fingerprint("ValueError", "x", ["/home/a/repo/train.py:load", "/home/a/repo/main.py:run"])
    assert failure_fingerprint("ValueError", "x", ["/srv/b/train.py:12:load", "C:\\b\\main.py:run"]) == base
    assert failure_fingerprint("ValueError", "x", ["train.py:clean", "main.py:run"]) != base
    assert failure_fingerprint("ValueError", "x", []) != base
    # Only the first three frames count.
    three = ["a.py:f", "b.py:g", "c.py:h"]
    assert failure_fingerprint("E", "x", [*three, "d.py:i"]) == failure_fingerprint("E", "x", three)


def test_fingerprint_is_sixteen_hex_digits_and_stable() -> None:
    value = failure_fingerprint("ValueError", "bad batch 1", ["train.py:load"])
    assert len(value) == 16 and int(value, 16) >= 0
    assert value == failure_fingerprint("ValueError", "bad batch 1", ["train.py:load"])


# -- from evidence and classification -------------------------------------------------------------


def _load_batch() -> None:
    raise ValueError(f"bad batch {uuid.uuid4().int % 1000} at /tmp/{uuid.uuid4()}/part-0.parquet")


def _clean_batch() -> None:
    raise ValueError(f"bad batch {uuid.uuid4().int % 1000} at /tmp/{uuid.uuid4()}/part-0.parquet")


def _raised(function: Any) -> BaseException:
    try:
        function()
    except ValueError as err:
        return err
    raise AssertionError("did not raise")


def test_a_live_error_gives_its_type_message_and_user_frames() -> None:
    error_type, message, frames = fingerprint_parts(Evidence(_raised(_load_batch), None, None))
    assert error_type == "ValueError" and message is not None and message.startswith("bad batch ")
    assert [frame.rsplit("/", 1)[-1] for frame in frames] == ["test_fingerprints.py:_load_batch",
                                                              "test_fingerprints.py:_raised"]


def test_classification_gives_the_same_failure_the_same_fingerprint() -> None:
    first, second = (orchestrack.classify_failure(_raised(_load_batch), task="load") for _ in range(2))
    assert first.fingerprint is not None and first.fingerprint == second.fingerprint
    elsewhere = orchestrack.classify_failure(_raised(_clean_batch), task="load")
    assert elsewhere.fingerprint not in (None, first.fingerprint)  # raised in another function
    other_type = orchestrack.classify_failure(KeyError("bad batch 3"), task="load")
    assert other_type.fingerprint not in (None, first.fingerprint)


def test_log_text_is_fingerprinted_from_its_exception_line_and_traceback() -> None:
    def log(batch: int, line: int) -> str:
        return (f"2026-11-0{batch % 9 + 1} 10:00:0{batch % 10} INFO starting batch {batch}\n"
                "Traceback (most recent call last):\n"
                f'  File "/opt/venv/lib/python3.11/site-packages/prefect/engine.py", line {line}, in run\n'
                f'  File "/srv/job-{batch}/pipeline/train.py", line {line + 3}, in load_batch\n'
                f"ValueError: bad batch {batch} at /tmp/{uuid.uuid4()}/x.parquet\n")

    first = orchestrack.classify_failure(text=log(12, 40), task="load")
    second = orchestrack.classify_failure(text=log(345, 77), task="load")
    assert first.fingerprint is not None and first.fingerprint == second.fingerprint
    assert first.fingerprint == failure_fingerprint("ValueError", "bad batch 1 at /tmp/y/x.parquet",
                                                    ["train.py:load_batch"])
    prefect_state = orchestrack.classify_failure(
        text="Task run encountered an exception ValueError: bad batch 9 at /tmp/a/x.parquet", task="load")
    assert prefect_state.fingerprint == failure_fingerprint("ValueError", "bad batch 2 at /tmp/b/x.parquet")


def test_a_log_line_without_an_exception_is_fingerprinted_by_that_line() -> None:
    first = orchestrack.classify_failure(text="pod train-7f9c was OOMKilled after 3612s", exit_code=137)
    second = orchestrack.classify_failure(text="pod train-1a2b was OOMKilled after 12s", exit_code=137)
    assert first.fingerprint is not None and first.fingerprint == second.fingerprint


def test_a_failed_gate_is_fingerprinted_by_its_check_whatever_the_numbers() -> None:
    def decision(value: float, subject: str = "auc") -> GateDecision:
        check = GateCheck(kind="min", subject=subject, outcome=GateOutcome.FAILED, value=value, bound=0.85,
                          sentence=f"{subject} = {value} is below its minimum 0.85.")
        return GateDecision(outcome=GateOutcome.FAILED, summary=f"Quality gate failed: {check.sentence}",
                            checks=[check])

    assert gate_failure(decision(0.81)).fingerprint == gate_failure(decision(0.52)).fingerprint
    assert gate_failure(decision(0.81)).fingerprint != gate_failure(decision(0.81, "f1")).fingerprint


# -- failure_history and the command line ---------------------------------------------------------


@pytest.fixture(autouse=True)
def wide_output(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("COLUMNS", raising=False)  # piped output then uses the CLI's fixed wide layout
    yield


def _failing_run(key: str, pipeline: str, error: BaseException, task: str = "load") -> orchestrack.RunRecord:
    run = orchestrack.start_run(key=key, pipeline=pipeline)
    with pytest.raises(type(error)), run.task(task):
        raise error
    record = run.finish()
    assert record is not None and record.failure is not None and record.failure.fingerprint
    return record


@pytest.fixture
def recurring() -> tuple[list[orchestrack.RunRecord], orchestrack.RunRecord]:
    """Three runs (two pipelines) failing with the same error, raw texts differing; one other failure."""
    same = [_failing_run(f"fp/{index}", pipeline, FileNotFoundError(
        f"[Errno 2] No such file or directory: '/tmp/{uuid.uuid4()}/batch-{index}.parquet'"))
        for index, pipeline in enumerate(["nightly", "nightly", "backfill"])]
    other = _failing_run("fp/other", "nightly", KeyError("user_id"), task="join")
    orchestrack.start_run(key="fp/good", pipeline="nightly").finish()
    return same, other


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_failure_history_counts_the_runs_with_the_fingerprint(recurring: Any) -> None:
    same, _ = recurring
    fingerprint = same[0].failure.fingerprint
    assert {r.failure.fingerprint for r in same} == {fingerprint}
    history = orchestrack.failure_history(fingerprint)
    assert history.count == 3 and history.reason is orchestrack.FailureReason.DATA_ERROR
    assert history.runs == [same[2].run_id, same[1].run_id, same[0].run_id]
    assert history.first_seen == same[0].ended_at and history.last_seen == same[2].ended_at
    assert history.pipelines == ["backfill", "nightly"] and history.tasks == ["load"]
    assert orchestrack.failure_history("0" * 16).count == 0
    assert [r.key for r in orchestrack.search_runs(fingerprint=fingerprint)] == ["fp/2", "fp/1", "fp/0"]


def test_failures_group_json_lists_each_fingerprint(recurring: Any) -> None:
    same, other = recurring
    data = as_json(invoke("failures", "--group", "--json"))
    assert (data["total"], data["grouped"]) == (4, 4)
    first, second = data["groups"]
    assert first["fingerprint"] == same[0].failure.fingerprint and first["count"] == 3
    assert first["reason"] == "data-error" and first["pipelines"] == ["backfill", "nightly"]
    assert first["tasks"] == ["load"] and first["runs"] == [r.run_id for r in reversed(same)]
    assert first["first_seen"] < first["last_seen"] and first["summary"] == same[2].failure.summary
    assert (second["fingerprint"], second["count"], second["tasks"]) == (other.failure.fingerprint, 1, ["join"])
    only_backfill = as_json(invoke("failures", "--group", "--pipeline", "backfill", "--examples", "1", "--json"))
    assert [(g["count"], g["runs"]) for g in only_backfill["groups"]] == [(1, [same[2].run_id])]


def test_failures_group_table_shows_count_dates_and_runs(recurring: Any) -> None:
    same, other = recurring
    result = invoke("failures", "--group")
    assert result.exit_code == 0, result.output
    assert "4 failed or cancelled runs (the newest 200 at most); 4 of them in 2 groups." in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith(same[0].failure.fingerprint))
    assert row.split()[1:3] == ["data-error", "3"]
    assert "backfill, nightly" in row and same[2].run_id[:8] in row
    assert any(line.startswith(other.failure.fingerprint) for line in result.stdout.splitlines())


def test_failures_without_group_is_unchanged_by_fingerprints(recurring: Any) -> None:
    data = as_json(invoke("failures", "--json"))
    assert set(data) == {"total", "by_reason", "examples"}
    assert data["by_reason"] == {"data-error": 3, "code-error": 1}


def test_show_says_how_often_the_failure_was_seen(recurring: Any) -> None:
    same, other = recurring
    since = same[0].ended_at.strftime("%Y-%m-%d")
    result = invoke("show", "fp/1")
    assert result.exit_code == 0, result.output
    assert f"Seen 3 times since {since} (fingerprint {same[0].failure.fingerprint[:8]}…)." in result.stdout
    assert f"Seen only in this run (fingerprint {other.failure.fingerprint[:8]}…)." in invoke("show", "fp/other").stdout
    assert "Seen" not in invoke("show", "fp/good").stdout
    shown = as_json(invoke("show", "fp/1", "--json"))
    assert shown["failure_history"]["count"] == 3 and shown["failure_history"]["runs"][0] == same[2].run_id
    assert orchestrack.RunRecord.model_validate(shown) == orchestrack.get_run("fp/1")
    assert as_json(invoke("show", "fp/good", "--json"))["failure_history"] is None
