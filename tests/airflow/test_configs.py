"""The run checklist through real Airflow 3 (dag.test()): config files recorded by
``TrackRunOperator(configs=...)``, the example DAG's data snapshot, config and features, and what
``compare`` makes of two runs whose config differs in one key."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

import orchestrack
from orchestrack import LeakageStatus, RunStatus, TaskStatus
from orchestrack.errors import InvalidInputError
from orchestrack.views import comparison_rows
from tests.airflow.test_dag_test import load_dag, only_run

pytestmark = pytest.mark.integration


def test_the_example_dag_records_the_whole_checklist(dags_folder: Path) -> None:
    dag_run = load_dag(dags_folder, "churn_train_dag.py").test()
    record = orchestrack.get_run(f"airflow/churn_train/{dag_run.run_id}")
    assert record.status is RunStatus.SUCCEEDED, record.failure
    assert record.params == {"min_accuracy": 0.7}

    [events] = record.data
    assert (events.name, events.rows, events.task) == ("events", 300, "extract")
    assert events.filters == {"country": ["DE", "FR", "NL"], "tenure_months": ">= 1"}
    assert events.labels_as_of == date(2026, 10, 31)
    assert events.leakage_check is not None and events.leakage_check.status is LeakageStatus.PASSED
    assert events.leakage_check.note and events.leakage_check.note.startswith("max |corr(feature, label)| = 0.")

    # Found next to the DAG file (the test's working directory is elsewhere), parsed, hashed and stored.
    [config] = record.configs
    deployed = dags_folder / "churn_train.yaml"
    assert (config.name, config.format, config.task) == ("churn_train.yaml", "yaml", "orchestrack")
    assert config.source == str(deployed.resolve()) and Path.cwd() != dags_folder
    assert config.sha256 == hashlib.sha256(deployed.read_bytes()).hexdigest()
    assert config.values == {
        "data.countries[0]": "DE", "data.countries[1]": "FR", "data.countries[2]": "NL",
        "data.min_tenure_months": 1, "data.labels_as_of": "2026-10-31",
        "features.columns[0]": "tenure", "features.columns[1]": "tickets", "features.target": "churned",
        "features.store": "feast:churn_features", "features.store_version": "7",
        "model.lr": 0.5, "model.epochs": 5}
    assert config.artifact == "configs/churn_train.yaml" and not config.redacted
    [stored] = [a for a in record.artifacts if a.name == config.artifact]
    assert stored.kind == "config" and stored.sha256 == config.sha256
    assert Path(stored.uri.removeprefix("file://")).read_bytes() == deployed.read_bytes()

    # The training task read its hyperparameters from the file: epochs=5 gives five losses.
    assert len(record.metric_series["train_loss"]) == 5 and record.metrics["accuracy"] >= 0.7
    features = record.features
    assert (features.columns, features.target) == (["tenure", "tickets"], "churned")
    assert features.joins == ["events JOIN labels USING (customer_id)"]
    assert features.transformations == ["tenure / 60", "tickets / 8"]
    assert (features.feature_store, features.feature_store_version) == ("feast:churn_features", "7")


@pytest.fixture
def config_file(dags_folder: Path) -> Iterator[Path]:
    """The `configured` DAG's config file, put back as it was after the test."""
    path = dags_folder / "configured.yaml"
    original = path.read_text()
    yield path
    path.write_text(original)


def test_two_runs_whose_config_differs_in_one_key_differ_in_that_key_only(config_file: Path,
                                                                          dags_folder: Path) -> None:
    dag = load_dag(dags_folder, "configured.py", "configured")
    first = dag.test()
    assert "depth: 4" in config_file.read_text()
    config_file.write_text(config_file.read_text().replace("depth: 4", "depth: 6"))
    second = dag.test()
    assert first.run_id != second.run_id
    records = [orchestrack.get_run(f"airflow/configured/{r.run_id}") for r in (first, second)]
    assert [r.status for r in records] == [RunStatus.SUCCEEDED] * 2, [r.failure for r in records]

    rows = comparison_rows(records)
    differing = {(row["section"], row["field"]): row["values"] for row in rows if row["differs"]}
    assert differing.keys() == {("config", "configured.yaml sha256"), ("config", "configured.yaml: model.depth")}
    assert differing[("config", "configured.yaml: model.depth")] == [4, 6]
    assert [c.sha256[:12] for r in records for c in r.configs] == differing[("config", "configured.yaml sha256")]
    # The rows that do not differ are there all the same: the other keys and the metric.
    alike = {(row["section"], row["field"]): row["values"] for row in rows if not row["differs"]}
    assert alike[("config", "configured.yaml: model.lr")] == [0.3, 0.3]
    assert alike[("metrics", "auc")] == [0.8, 0.8]


class Collected(logging.Handler):
    """The records one logger emits. Held on that logger itself: the root logger's handlers (pytest's
    caplog among them) are Airflow's to configure while a task runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def guard_log() -> Iterator[Collected]:
    loggers = [logging.getLogger("orchestrack.guard"),  # where fail_open logs
               logging.getLogger("orchestrack.configs")]  # where a config kept as text is reported
    handler = Collected()
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)


def test_a_missing_or_broken_config_is_a_warning_and_the_dag_run_succeeds(
        dags_folder: Path, monkeypatch: pytest.MonkeyPatch, guard_log: Collected) -> None:
    monkeypatch.setenv("ORCHESTRACK_STRICT", "0")
    dag_run = load_dag(dags_folder, "configured.py", "config_missing").test()
    assert dag_run.state == "success"
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED, record.failure
    assert {(t.name, t.status) for t in record.tasks} == {("orchestrack", TaskStatus.SUCCEEDED),
                                                          ("work", TaskStatus.SUCCEEDED)}
    # The broken one is still recorded, by its hash, with the parser's message; the missing one is not.
    assert [c.name for c in record.configs] == ["configured.yaml", "broken.yaml"]
    kept = record.configs[1]
    assert kept.format == "text" and kept.values == {} and "not valid YAML" in (kept.parse_error or "")
    assert [r.levelno for r in guard_log.records] == [logging.WARNING] * 2, guard_log.records  # no traceback
    missing, broken = (r.getMessage() for r in guard_log.records)
    assert "'not_there.yaml'" in missing and "'config_missing'" in missing
    assert str(dags_folder) in missing and "put it next to the DAG file, or give its absolute path" in missing
    assert f"'{dags_folder / 'broken.yaml'}'" in broken and "not valid YAML" in broken
    assert "kept as text and compared by its hash only" in broken and "fix the file" in broken


def test_a_missing_config_fails_the_task_in_strict_mode(dags_folder: Path) -> None:
    dag_run = load_dag(dags_folder, "configured.py", "config_missing").test()
    assert dag_run.state == "failed"
    record = only_run()
    statuses = {t.name: t.status for t in record.tasks}
    assert statuses == {"orchestrack": TaskStatus.FAILED, "work": TaskStatus.UPSTREAM_FAILED}
    [failed] = [t for t in record.tasks if t.status is TaskStatus.FAILED]
    assert failed.failure is not None and "not_there.yaml" in failed.failure.summary
    assert record.status is RunStatus.FAILED


def test_a_relative_config_is_found_next_to_the_dag_file_first(tmp_path: Path) -> None:
    from orchestrack.airflow.operator import _dag_folder
    from orchestrack.configs import find_config

    dag_folder, cwd = tmp_path / "dags", tmp_path  # the test runs in tmp_path
    dag_folder.mkdir()
    task = SimpleNamespace(dag=SimpleNamespace(fileloc=str(dag_folder / "train.py")))
    for folder in (dag_folder, cwd):
        (folder / "both.yaml").write_text("a: 1\n")
    (cwd / "cwd_only.yaml").write_text("a: 1\n")
    assert find_config("both.yaml", _dag_folder(task), "t") == dag_folder / "both.yaml"
    assert find_config("cwd_only.yaml", _dag_folder(task), "t") == cwd / "cwd_only.yaml"
    assert find_config("both.yaml", _dag_folder(SimpleNamespace(dag=None)), "t") == cwd / "both.yaml"  # no DAG file


def test_configs_are_only_kept_when_the_dag_file_is_parsed(tmp_path: Path) -> None:
    from orchestrack.airflow import TrackRunOperator

    track = TrackRunOperator(task_id="orchestrack", configs=["train.yaml", tmp_path / "not" / "there.json"])
    assert track.configs == ["train.yaml", str(tmp_path / "not" / "there.json")]  # nothing read, nothing checked
    assert TrackRunOperator(task_id="one", configs="train.yaml").configs == ["train.yaml"]  # not its letters
    with pytest.raises(InvalidInputError, match=r"TrackRunOperator 'bad' configs= takes file or folder paths"):
        TrackRunOperator(task_id="bad", configs=["train.yaml", None])  # type: ignore[list-item]
