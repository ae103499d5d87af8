"""`tracked_flow(configs=...)` and the example flow's whole run checklist, against a real Prefect server."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import orchestrack
from orchestrack import LeakageStatus, RunStatus
from orchestrack.lifecycle import Run
from orchestrack.views import comparison_rows
from tests.prefect import flows

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "prefect"
TUNING = "model:\n  depth: {depth}\n  lr: 0.1\ndata:\n  split: 0.2\n"


def only_run() -> orchestrack.RunRecord:
    runs = orchestrack.search_runs()
    assert len(runs) == 1, [r.key for r in runs]
    return runs[0]


def example_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("churn_flow", EXAMPLE / "churn_flow.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_of(state: Any) -> orchestrack.RunRecord:
    return orchestrack.get_run(f"prefect/{state.state_details.flow_run_id}")


def test_the_example_flow_records_the_whole_checklist() -> None:
    # The working directory is the test's own folder: the config is found next to the flow's source.
    assert example_module().churn_train() >= 0.7
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED
    assert record.params == {"rows": 300, "lr": 0.5, "epochs": 5, "threshold": 0.7, "seed": 28}  # from the YAML

    (snapshot,) = record.data
    assert snapshot.filters == {"country": ["DE", "FR", "NL"], "tenure_months": ">= 1"}
    assert snapshot.labels_as_of == date(2026, 11, 30)
    assert snapshot.leakage_check is not None and snapshot.leakage_check.status is LeakageStatus.PASSED
    assert snapshot.leakage_check.note and snapshot.rows == 300

    (config,) = record.configs
    source = EXAMPLE / "churn_flow.yaml"
    assert (config.name, config.kind, config.format) == ("churn_flow.yaml", "config", "yaml")
    assert config.source == str(source.resolve())
    assert config.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert config.values["train.lr"] == 0.5 and config.values["release.threshold"] == 0.7
    assert config.values["data.countries[2]"] == "NL" and config.values["data.labels_as_of"] == "2026-11-30"
    assert config.values["features.store_version"] == "3" and config.values_complete and not config.redacted
    assert config.artifact == "configs/churn_flow.yaml"
    (stored,) = [a for a in record.artifacts if a.name == config.artifact]
    assert stored.kind == "config" and stored.sha256 == config.sha256

    features = record.features
    assert features is not None
    assert (features.columns, features.target) == (["tenure", "support_tickets"], "churned")
    assert features.joins == ["customers LEFT JOIN support_tickets ON customer_id"]
    assert features.transformations == ["tenure_months / 60", "tickets_90d / 8"]
    assert (features.feature_store, features.feature_store_version) == ("feast:churn_features", "3")


def test_runs_whose_config_differs_in_one_key_differ_in_that_key_alone(tmp_path: Path) -> None:
    config = tmp_path / "tuning.yaml"  # the working directory: nothing of that name is next to flows.py
    config.write_text(TUNING.format(depth=4))
    first = flows.configured(return_state=True)
    config.write_text(TUNING.format(depth=6))
    second = flows.configured(return_state=True)
    assert first.is_completed() and second.is_completed()

    records = [run_of(first), run_of(second)]
    assert [len(r.configs) for r in records] == [1, 1]
    rows = comparison_rows(records)
    assert {(row["section"], row["field"]) for row in rows if row["differs"]} == {
        ("config", "tuning.yaml sha256"), ("config", "tuning.yaml: model.depth")}
    by_field = {row["field"]: row for row in rows}
    assert by_field["tuning.yaml: model.depth"]["values"] == [4, 6]
    assert by_field["tuning.yaml: model.lr"]["values"] == [0.1, 0.1]
    assert by_field["auc"]["values"] == [0.9, 0.9]  # the runs were compared on everything else too


def test_a_flow_retry_records_its_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tuning.yaml").write_text(TUNING.format(depth=4))
    calls: list[Any] = []
    log_config = Run.log_config

    def counted(self: Run, path: Any, **kwargs: Any) -> Any:
        calls.append(path)
        return log_config(self, path, **kwargs)

    monkeypatch.setattr(Run, "log_config", counted)
    assert flows.configured_then_retried(str(tmp_path / "tried")) == "ok"
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED and record.orchestrator.details["flow_run_tries"] == 2
    assert calls == [tmp_path / "tuning.yaml"]
    assert [c.name for c in record.configs] == ["tuning.yaml"]
    assert [a.name for a in record.artifacts] == ["configs/tuning.yaml"]


def test_a_missing_or_broken_config_is_a_warning_and_the_flow_keeps_its_outcome(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ORCHESTRACK_STRICT", "0")
    (tmp_path / "tuning.yaml").write_text(TUNING.format(depth=4))
    (tmp_path / "broken.yaml").write_text("model: [depth: 4\n")
    caplog.set_level(logging.WARNING, "orchestrack")
    state = flows.misconfigured(return_state=True)
    assert state.is_completed()
    missing, broken = [r for r in caplog.records if r.name.startswith("orchestrack")
                       and ("missing.yaml" in r.getMessage() or "broken.yaml" in r.getMessage())]
    assert {missing.levelno, broken.levelno} == {logging.WARNING} and missing.exc_info is broken.exc_info is None
    message = missing.getMessage()
    assert "'missing.yaml'" in message and "flow 'misconfigured'" in message
    assert str(tmp_path / "missing.yaml") in message and "give its absolute path" in message
    message = broken.getMessage()
    assert "broken.yaml" in message and "kept as text and compared by its hash only" in message
    assert "not valid YAML" in message and "fix the file" in message
    record = only_run()  # the broken config is still recorded, by its hash; the missing one is not
    assert record.status is RunStatus.SUCCEEDED and [c.name for c in record.configs] == ["broken.yaml", "tuning.yaml"]
    assert record.configs[0].format == "text" and "not valid YAML" in (record.configs[0].parse_error or "")


def test_a_missing_config_raises_in_strict_mode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "tuning.yaml").write_text(TUNING.format(depth=4))
    caplog.set_level(logging.INFO, "prefect")
    state = flows.misconfigured(return_state=True)
    # Prefect runs each state hook under its own `except Exception` and logs what it raised: the
    # strict-mode error reaches Prefect's log, and the flow run's state stays the flow's own.
    hook_errors = [r for r in caplog.records if "error was encountered while running hook" in r.getMessage()]
    assert len(hook_errors) == 1 and hook_errors[0].exc_info is not None
    error = hook_errors[0].exc_info[1]
    assert isinstance(error, orchestrack.InvalidInputError) and "'missing.yaml'" in str(error)
    assert state.is_completed()
    assert only_run().configs == []  # strict mode stops at the first bad config


def test_configs_takes_paths(tmp_path: Path) -> None:
    from orchestrack.prefect import tracked_flow

    with pytest.raises(orchestrack.InvalidInputError, match=r"configs=.*list of file or folder paths"):
        tracked_flow(configs=[3])
    (tmp_path / "tuning.yaml").write_text(TUNING.format(depth=4))
    single = tracked_flow(flows.untouched, configs=tmp_path / "tuning.yaml")  # one path is a list of one
    assert single(2) == 4
    assert [c.name for c in only_run().configs] == ["tuning.yaml"]
