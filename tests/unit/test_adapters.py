"""Adapter facts with stand-ins, and cheap imports (the real orchestrators run in tests/airflow and tests/prefect)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from orchestrack.airflow.facts import code_from_bundle, image_of, orchestrator_info, run_key, task_name
from orchestrack.inputs import mask_sensitive as redacted


def test_keys_and_names() -> None:
    assert run_key("train", "manual__2026-11-28T10:00:00+00:00") == "airflow/train/manual__2026-11-28T10:00:00+00:00"
    assert task_name("shard", 2) == "shard[2]" and task_name("train", -1) == "train" and task_name("x", None) == "x"


def test_images_from_kubernetes_pod_operator_and_pod_override() -> None:
    assert image_of(SimpleNamespace(image="repo/train:41")) == "repo/train:41"
    container = SimpleNamespace(name="base", image="repo/worker:7")
    pod = SimpleNamespace(spec=SimpleNamespace(containers=[container]))
    assert image_of(SimpleNamespace(executor_config={"pod_override": pod})) == "repo/worker:7"
    assert image_of(SimpleNamespace()) is None and image_of(None) is None


def test_git_bundle_version_is_the_commit() -> None:
    ti = SimpleNamespace(bundle_instance=SimpleNamespace(name="dags-repo", version="9f1c2e", repo_url="https://git/x"))
    code = code_from_bundle(ti)
    assert code is not None and (code.commit, code.repository) == ("9f1c2e", "https://git/x")
    assert code_from_bundle(SimpleNamespace(bundle_instance=SimpleNamespace(version=None))) is None
    info = orchestrator_info("train", "r1", ti=ti, base_url="http://airflow:8080/")
    assert info.details["bundle_name"] == "dags-repo" and info.details["bundle_version"] == "9f1c2e"
    assert info.url == "http://airflow:8080/dags/train/runs/r1"


def test_sensitive_params_are_masked() -> None:
    assert redacted({"lr": 0.1, "db_password": "x", "API_TOKEN": "y", "aws_secret_access_key": "z"}) == {
        "lr": 0.1, "db_password": "***", "API_TOKEN": "***", "aws_secret_access_key": "***"}


def test_importing_the_adapter_package_imports_no_airflow() -> None:
    probe = "import sys, orchestrack.airflow, orchestrack.airflow.facts; print('airflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_importing_the_prefect_adapter_package_imports_no_prefect() -> None:
    probe = "import sys, orchestrack.prefect, orchestrack.prefect.facts; print('prefect' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_a_source_folder_is_the_folder_of_its_function_file() -> None:
    from orchestrack.configs import source_folder

    assert source_folder(test_keys_and_names) == Path(__file__).resolve().parent
    typed_in: dict[str, object] = {}
    exec("def typed(): pass", typed_in)  # as in a console: no file
    assert source_folder(typed_in["typed"]) is None
    assert source_folder(len) is None and source_folder(object()) is None


def test_a_relative_config_is_found_beside_the_source_then_in_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrack.configs import config_paths, find_config
    from orchestrack.errors import InvalidInputError

    beside, cwd = tmp_path / "dags", tmp_path / "cwd"
    beside.mkdir(), cwd.mkdir()
    monkeypatch.chdir(cwd)
    (beside / "both.yaml").write_text("a: 1")
    (cwd / "both.yaml").write_text("a: 2")
    (cwd / "only-here.yaml").write_text("a: 3")
    assert find_config("both.yaml", beside, "t") == beside / "both.yaml"
    assert find_config("only-here.yaml", beside, "t") == cwd / "only-here.yaml"
    assert find_config(cwd / "only-here.yaml", None, "t") == cwd / "only-here.yaml"
    with pytest.raises(InvalidInputError, match=r"'gone.yaml' does not exist \(flow 'f'\): looked for .*dags/gone"):
        find_config("gone.yaml", beside, "flow 'f'")
    assert config_paths("one.yaml", "t") == ["one.yaml"]
    with pytest.raises(InvalidInputError, match="must be a list of file or folder paths"):
        config_paths([1], "tracked_flow configs=")


def test_a_failed_dag_run_is_never_read_as_succeeded_whatever_the_airflow_minor() -> None:
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from orchestrack.airflow.facts import DAGRUN_TIMEOUT, MARKED_FAILED, run_end
    from orchestrack.outcome import Outcome

    start = datetime(2026, 12, 1, tzinfo=UTC)
    timed = SimpleNamespace(dag=SimpleNamespace(dagrun_timeout=timedelta(seconds=20)), start_date=start,
                            end_date=start + timedelta(seconds=21))
    # Airflow 3.2+ names the timeout; 3.0 and 3.1 say nothing, but the DAG's timeout has passed.
    assert run_end("timed_out", succeeded=False).outcome is Outcome.TIMED_OUT
    assert (run_end("", succeeded=False, dag_run=timed).outcome, run_end("", succeeded=False, dag_run=timed).message) \
        == (Outcome.TIMED_OUT, DAGRUN_TIMEOUT)
    # A person marking the run failed: 3.3 says so, 3.0-3.2 call the hook with an empty message.
    early = SimpleNamespace(dag=timed.dag, start_date=start, end_date=start + timedelta(seconds=5))
    for said, dag_run in (("Dag Run's state was manually set to `failed`.", None), ("", early), ("", None)):
        end = run_end(said, succeeded=False, dag_run=dag_run)
        assert (end.outcome, end.by_person) == (Outcome.FAILED, True)
        assert end.message == (said or MARKED_FAILED)
    for said in ("task_failure", "all_tasks_deadlocked"):
        assert (run_end(said, succeeded=False).outcome, run_end(said, succeeded=False).by_person) == (
            Outcome.FAILED, False)
