"""The lifecycle contract: idempotent open, task attempts, finish rules, fluent calls."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import orchestrack
from orchestrack import FailureReason, RunStatus, TaskStatus


def test_start_run_is_idempotent_by_key() -> None:
    first = orchestrack.start_run(key="nightly/1", owner="ml", purpose="tuning", pipeline="nightly")
    second = orchestrack.start_run(key="nightly/1")
    assert first.run_id == second.run_id == orchestrack.run_id_for("nightly/1")
    assert len(orchestrack.search_runs()) == 1
    record = orchestrack.get_run("nightly/1")
    assert (record.owner, record.purpose, record.orchestrator.pipeline) == ("ml", "tuning", "nightly")


def test_later_opener_fills_missing_fields_but_never_overwrites() -> None:
    orchestrack.start_run(key="k", owner="first")
    orchestrack.start_run(key="k", owner="second", purpose="recovery", image="repo/img:1", params={"a": 1})
    record = orchestrack.get_run("k")
    assert record.owner == "first"
    assert record.purpose == "recovery"
    assert record.environment.image == "repo/img:1"
    assert record.params == {"a": 1}


def test_readme_example_records_everything(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.parquet").write_bytes(b"PAR1" * 10)
    (tmp_path / "model.pt").write_bytes(b"weights")
    run = orchestrack.start_run(key="nightly-train/2026-11-28", owner="ml-platform", purpose="tuning",
                                pipeline="nightly-train", pipeline_version="41")
    with run.task("train", attempt=1):
        orchestrack.log_params({"lr": 3e-4, "batch_size": 64, "seed": 7})
        orchestrack.log_dataset("train", "data/train.parquet", rows=120_000)
        orchestrack.log_metrics({"auc": 0.91}, slice="country=DE")
        orchestrack.log_artifact("model.pt", kind="model")
    record = run.finish()
    assert record is not None and record.status is RunStatus.SUCCEEDED
    assert record.params == {"lr": 3e-4, "batch_size": 64, "seed": 7}
    assert record.data[0].rows == 120_000 and record.data[0].version.startswith("sha256:")
    assert record.data[0].uri == (tmp_path / "data" / "train.parquet").as_uri() and record.data[0].task == "train"
    assert record.slice_metrics == {"country=DE": {"auc": 0.91}}
    assert record.artifacts[0].kind == "model" and record.artifacts[0].size_bytes == 7
    assert Path(record.artifacts[0].uri.removeprefix("file://")).read_bytes() == b"weights"
    assert [(t.name, t.attempt, t.status) for t in record.tasks] == [("train", 1, TaskStatus.SUCCEEDED)]
    assert record.ended_at is not None and record.ended_at >= record.started_at
    assert record.incomplete == ["code.commit"]  # the tmp folder is no git checkout
    document = record.model_dump(mode="json")
    assert document["started_at"].endswith("Z") and document["schema_version"] == orchestrack.SCHEMA_VERSION


def test_exception_in_task_is_recorded_classified_and_reraised() -> None:
    run = orchestrack.start_run(key="fails")
    with pytest.raises(FileNotFoundError), run.task("load"):
        raise FileNotFoundError("s3://bucket/train.parquet not found")
    record = run.finish()
    assert record is not None and record.status is RunStatus.FAILED
    assert record.tasks[0].status is TaskStatus.FAILED
    assert record.failure is not None and record.failure.reason is FailureReason.DATA_ERROR
    assert record.failure.task == "load" and "load" in record.failure.summary
    assert "train.parquet" in record.failure.summary


def test_retry_that_succeeds_leaves_run_succeeded_and_keeps_both_attempts() -> None:
    run = orchestrack.start_run(key="retry")
    with pytest.raises(ConnectionError), run.task("fetch"):
        raise ConnectionError("connection reset by peer")
    with run.task("fetch"):  # attempt defaults to the next one
        pass
    record = run.finish()
    assert record is not None and record.status is RunStatus.SUCCEEDED and record.failure is None
    assert [(t.attempt, t.status) for t in record.tasks] == [(1, TaskStatus.FAILED), (2, TaskStatus.SUCCEEDED)]
    assert record.tasks[0].failure.reason is FailureReason.INFRA_ERROR  # type: ignore[union-attr]


def test_run_reason_is_first_failed_task_not_later_ones() -> None:
    run = orchestrack.start_run(key="two-failures")
    with pytest.raises(FileNotFoundError), run.task("load"):
        raise FileNotFoundError("missing.csv")
    with pytest.raises(TypeError), run.task("report"):
        raise TypeError("bad operand")
    record = run.finish()
    assert record.failure.reason is FailureReason.DATA_ERROR and record.failure.task == "load"  # type: ignore


def test_finish_twice_is_harmless_and_first_close_stands() -> None:
    run = orchestrack.start_run(key="twice")
    first = run.finish(status="cancelled")
    second = run.finish()
    third = orchestrack.start_run(key="twice").finish(status="succeeded")
    assert first.status is second.status is third.status is RunStatus.CANCELLED  # type: ignore[union-attr]
    assert first.failure.reason is FailureReason.CANCELLED  # type: ignore[union-attr]
    assert first.ended_at == second.ended_at  # type: ignore[union-attr]


def test_finish_closes_attempts_left_running() -> None:
    run = orchestrack.start_run(key="open-task")
    run.start_task("train", 1)
    record = run.finish(status="failed")
    assert record.tasks[0].status is TaskStatus.CANCELLED and record.tasks[0].ended_at is not None  # type: ignore


def test_task_starting_on_finished_run_reopens_it() -> None:
    run = orchestrack.start_run(key="cleared")
    with pytest.raises(ValueError), run.task("train"):
        raise ValueError("bug")
    assert run.finish().status is RunStatus.FAILED  # type: ignore[union-attr]
    rerun = orchestrack.start_run(key="cleared")  # e.g. an Airflow "clear" of the task
    with rerun.task("train"):
        pass
    assert orchestrack.get_run("cleared").status is RunStatus.RUNNING
    record = rerun.finish()
    assert record.status is RunStatus.SUCCEEDED and record.failure is None  # type: ignore[union-attr]
    assert [t.attempt for t in record.tasks] == [1, 2]  # type: ignore[union-attr]


def test_end_task_from_another_process_by_name_and_attempt() -> None:
    run = orchestrack.start_run(key="split")
    run.start_task("train", 3)
    other = orchestrack.start_run(key="split")  # another process would do exactly this
    other.end_task(("train", 3), "failed", text="Task exited with return code -9", exit_code=137)
    attempt = orchestrack.get_run("split").tasks[0]
    assert attempt.status is TaskStatus.FAILED and attempt.started_at is not None
    assert attempt.failure.reason is FailureReason.INFRA_ERROR and attempt.failure.exit_code == 137  # type: ignore


def test_run_as_context_manager_records_unhandled_error() -> None:
    with pytest.raises(RuntimeError), orchestrack.start_run(key="ctx"):
        raise RuntimeError("boom")
    record = orchestrack.get_run("ctx")
    assert record.status is RunStatus.FAILED and record.failure is not None
    assert "boom" in record.failure.summary


def test_keyboard_interrupt_cancels_task_and_run() -> None:
    with pytest.raises(KeyboardInterrupt), orchestrack.start_run(key="ctrl-c") as run, run.task("train"):
        raise KeyboardInterrupt
    record = orchestrack.get_run("ctrl-c")
    assert record.status is RunStatus.CANCELLED and record.tasks[0].status is TaskStatus.CANCELLED
    assert record.failure.reason is FailureReason.CANCELLED  # type: ignore[union-attr]


def test_fluent_calls_without_run_say_how_to_fix() -> None:
    with pytest.raises(orchestrack.NoActiveRunError, match="start_run"):
        orchestrack.log_metrics({"auc": 1.0})


def test_fluent_calls_follow_the_task_context() -> None:
    a = orchestrack.start_run(key="a")
    b = orchestrack.start_run(key="b")  # b is now the process's run
    with a.task("t"):
        orchestrack.log_params({"x": 1})
    orchestrack.log_params({"y": 2})
    assert orchestrack.get_run("a").params == {"x": 1}
    assert orchestrack.get_run("b").params == {"y": 2}
    assert b.finish() is not None


def test_subprocess_attaches_through_env(tmp_path: Path) -> None:
    run = orchestrack.start_run(key="parent", owner="ml")
    script = textwrap.dedent("""
        import orchestrack
        orchestrack.log_metrics({"from_child": 1.5})
        orchestrack.set_tags({"child": "yes"})
    """)
    env = {**os.environ, **run.env()}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, cwd=tmp_path)
    record = orchestrack.get_run("parent")
    assert record.metrics == {"from_child": 1.5} and record.tags == {"child": "yes"}
    assert len(orchestrack.search_runs()) == 1


def test_features_and_tags() -> None:
    run = orchestrack.start_run(key="feat")
    run.log_features(["age", "country"], target="churned", view="customers_v3")
    run.set_tags({"ticket": 123, "team": "ml"})
    record = orchestrack.get_run("feat")
    assert record.features.columns == ["age", "country"] and record.features.target == "churned"
    assert record.features.model_dump()["view"] == "customers_v3"
    assert record.tags == {"ticket": "123", "team": "ml"}


def test_get_run_by_id_prefix_and_unknown() -> None:
    run = orchestrack.start_run(key="prefix")
    assert orchestrack.get_run(run.run_id[:10]).key == "prefix"
    with pytest.raises(orchestrack.RunNotFoundError, match="nope"):
        orchestrack.get_run("nope")


def test_search_filters(finished_runs: tuple[orchestrack.RunRecord, orchestrack.RunRecord]) -> None:
    assert [r.key for r in orchestrack.search_runs(status="failed")] == ["demo/bad"]
    assert [r.key for r in orchestrack.search_runs(reason="data-error")] == ["demo/bad"]
    assert [r.key for r in orchestrack.search_runs(purpose="baseline")] == ["demo/good"]
    assert len(orchestrack.search_runs(pipeline="demo")) == 2
    with pytest.raises(orchestrack.InvalidInputError, match="succeeded"):
        orchestrack.search_runs(status="done")


def test_stale_handle_still_reopens_a_run_another_process_closed() -> None:
    early = orchestrack.start_run(key="stale")
    orchestrack.start_run(key="stale").finish()  # e.g. the scheduler closed the run
    with early.task("train"):  # e.g. a cleared task re-runs in a long-lived worker
        assert orchestrack.get_run("stale").status == RunStatus.RUNNING
    assert early.finish().status is RunStatus.SUCCEEDED  # type: ignore[union-attr]


def test_a_broken_team_rule_never_replaces_the_task_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrack import classify

    def broken(error: BaseException | None, text: str, exit_code: int | None) -> None:
        raise RuntimeError("rule bug")

    monkeypatch.setattr(classify, "_registry", classify._Registry(code_rules=[broken]))
    run = orchestrack.start_run(key="broken-rule")
    with pytest.raises(ValueError, match="the task's own"), run.task("train"):
        raise ValueError("the task's own error")
    failure = orchestrack.get_run("broken-rule").tasks[0].failure
    assert failure is not None and failure.reason is FailureReason.UNKNOWN and "the task's own error" in failure.summary


def test_env_hands_subprocesses_absolute_locations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", "sqlite:///relative/runs.db")
    env = orchestrack.start_run(key="env", artifact_uri=str(tmp_path / "arts")).env()
    assert env["ORCHESTRACK_TRACKING_URI"] == f"sqlite:///{tmp_path / 'relative' / 'runs.db'}"
    assert env["ORCHESTRACK_ARTIFACT_URI"] == str(tmp_path / "arts") and env["ORCHESTRACK_RUN_KEY"] == "env"


def test_records_from_a_newer_version_are_readable() -> None:
    document = orchestrack.start_run(key="newer").record.model_dump(mode="json")
    document["field_from_the_future"] = {"x": 1}
    document["tasks"] = [{"name": "t", "attempt": 1, "status": "running", "new_task_field": 2}]
    assert orchestrack.RunRecord.model_validate(document).tasks[0].name == "t"


def test_folder_artifacts_default_to_kind_folder(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"w")
    artifact = orchestrack.start_run(key="folder").log_artifact(tmp_path / "model")
    assert artifact is not None and artifact.kind == "folder" and artifact.size_bytes == 1


def test_run_url_of_a_plain_ui_address_is_its_run_page() -> None:
    from orchestrack.lifecycle import run_url
    from orchestrack.settings import load_settings

    plain = load_settings(ui_url="http://127.0.0.1:8765/")
    assert run_url("abc123", "nightly/1", plain) == "http://127.0.0.1:8765/runs/abc123"
    template = load_settings(ui_url="https://dash.example/r?id={run_id}&k={key}")
    assert run_url("abc123", "nightly/1", template) == "https://dash.example/r?id=abc123&k=nightly%2F1"
