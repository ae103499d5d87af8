"""Configuration precedence and errors; the schema policy (mandatory fields, strictness, names)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import orchestrack
from orchestrack import InvalidInputError, PolicyError
from orchestrack.settings import load_settings


def test_precedence_argument_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "orchestrack.toml"  # found in the working directory
    config.write_text('tracking_uri = "sqlite:////from/file.db"\nbusy_timeout_s = 7\n[policy]\nstrict = true\n')
    settings = load_settings()
    assert settings.tracking_uri == "sqlite:////from/file.db" and settings.busy_timeout_s == 7
    assert settings.policy.strict is True and settings.data_hash_limit_mb == 256  # default
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", "sqlite:////from/env.db")
    monkeypatch.setenv("ORCHESTRACK_POLICY__STRICT", "false")
    assert load_settings().tracking_uri == "sqlite:////from/env.db"
    assert load_settings().policy.strict is False
    assert load_settings(tracking_uri="sqlite:////from/arg.db").tracking_uri == "sqlite:////from/arg.db"


def test_explicit_config_file_and_home_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              orchestrack_home: Path) -> None:
    orchestrack_home.mkdir(parents=True)
    (orchestrack_home / "config.toml").write_text("data_hash_limit_mb = 1\n")
    assert load_settings().data_hash_limit_mb == 1
    elsewhere = tmp_path / "team.toml"
    elsewhere.write_text("data_hash_limit_mb = 2\n")
    monkeypatch.setenv("ORCHESTRACK_CONFIG", str(elsewhere))
    assert load_settings().data_hash_limit_mb == 2
    monkeypatch.setenv("ORCHESTRACK_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(InvalidInputError, match="missing.toml.*does not exist.*ORCHESTRACK_CONFIG"):
        load_settings()


def test_typo_in_config_file_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "orchestrack.toml").write_text("trackng_uri = 'x'\n")
    with pytest.raises(InvalidInputError, match=r"'trackng_uri' from config file .*orchestrack.toml.*Extra inputs"):
        orchestrack.start_run(key="typo")


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_BUSY_TIMEOUT_S", "soon")
    with pytest.raises(InvalidInputError, match="environment variable ORCHESTRACK_BUSY_TIMEOUT_S.*'soon'"):
        orchestrack.start_run(key="bad-env")


def test_bad_policy_path_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_POLICY__MANDATORY", '["owner", "ownr"]')
    with pytest.raises(InvalidInputError, match="ORCHESTRACK_POLICY__MANDATORY.*path 'ownr': unknown field 'ownr'"):
        load_settings()
    monkeypatch.setenv("ORCHESTRACK_POLICY__MANDATORY", '["code.comit"]')
    with pytest.raises(InvalidInputError, match="unknown field 'comit'; choose from branch, commit"):
        load_settings()
    monkeypatch.setenv("ORCHESTRACK_POLICY__MANDATORY", '["params.lr", "features.view", "environment.gpus.name"]')
    assert load_settings().policy.mandatory == ["params.lr", "features.view", "environment.gpus.name"]


def test_tracking_uri_selects_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    database = tmp_path / "elsewhere.db"
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", f"sqlite:///{database}")
    orchestrack.start_run(key="where")
    assert database.is_file()
    assert orchestrack.get_run("where", tracking_uri=f"sqlite:///{database}").key == "where"
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", "postgres://db/runs")
    with pytest.raises(InvalidInputError, match="no store for tracking URI 'postgres://db/runs'.*sqlite://"):
        orchestrack.start_run(key="where")


def test_missing_mandatory_fields_are_listed_not_refused() -> None:
    run = orchestrack.start_run(key="partial")
    assert orchestrack.get_run("partial").incomplete == ["owner", "purpose", "code.commit", "data.version"]
    run.log_dataset("train", "s3://b/train", version="v3")
    record = run.finish()
    assert record is not None and record.incomplete == ["owner", "purpose", "code.commit"]
    assert orchestrack.get_run("partial").incomplete == record.incomplete


def test_strict_policy_refuses_at_start_what_is_known_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_POLICY__STRICT", "true")
    with pytest.raises(PolicyError, match=r"misses mandatory fields \['owner', 'code.commit'\] at start"):
        orchestrack.start_run(key="strict", purpose="baseline")
    assert orchestrack.search_runs() == []


def test_strict_policy_judges_an_attaching_process_by_the_stored_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_POLICY__STRICT", "true")
    monkeypatch.setenv("ORCHESTRACK_POLICY__MANDATORY", '["owner", "purpose"]')
    orchestrack.start_run(key="attach", owner="ml", purpose="tuning")
    worker = orchestrack.start_run(key="attach")  # a worker that knows only the key
    assert worker.run_id == orchestrack.run_id_for("attach")


def test_strict_policy_at_finish_records_then_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_POLICY__STRICT", "true")
    monkeypatch.setenv("ORCHESTRACK_POLICY__MANDATORY", '["owner", "data.version"]')
    run = orchestrack.start_run(key="late", owner="ml")
    with pytest.raises(PolicyError, match=r"\['data.version'\] at finish"):
        run.finish()
    record = orchestrack.get_run("late")  # never lose a run: it is closed and says what it lacks
    assert record.status == "succeeded" and record.incomplete == ["data.version"]


def test_name_template(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_POLICY__NAME_TEMPLATE", "{pipeline}-{purpose}-{run_id}")
    run = orchestrack.start_run(key="k1", pipeline="churn", purpose="tuning")
    assert orchestrack.get_run("k1").name == f"churn-tuning-{run.run_id[:8]}"
    monkeypatch.setenv("ORCHESTRACK_POLICY__NAME_TEMPLATE", "{nope}")
    with pytest.raises(InvalidInputError, match=r"unknown variable \{nope\}"):
        orchestrack.start_run(key="k2")


def test_environment_tables_are_laid_over_the_file_key_by_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    (tmp_path / "orchestrack.toml").write_text('[policy]\nmandatory = ["owner"]\nstrict = true\n'
                                               '[mlflow]\nexperiment = "team/{pipeline}"\n')
    monkeypatch.setenv("ORCHESTRACK_POLICY__STRICT", "false")  # one key of the file's table
    monkeypatch.setenv("orchestrack_mlflow__timeout_s", "5")  # names in any case
    monkeypatch.setenv("ORCHESTRACK_CONFIG_NOTE", "not a setting")  # an ORCHESTRACK_ variable that names none
    settings = load_settings()
    assert settings.policy.mandatory == ["owner"] and settings.policy.strict is False
    assert settings.mlflow.experiment == "team/{pipeline}" and settings.mlflow.timeout_s == 5
    # A whole table as JSON replaces the file's table; a nested variable still goes over it.
    monkeypatch.setenv("ORCHESTRACK_POLICY", '{"mandatory": ["purpose"], "strict": true}')
    settings = load_settings()
    assert settings.policy.mandatory == ["purpose"] and settings.policy.strict is False
    # A list inside a table is JSON too; an argument goes over everything.
    monkeypatch.setenv("ORCHESTRACK_POLICY__MANDATORY", '["owner", "purpose"]')
    assert load_settings().policy.mandatory == ["owner", "purpose"]
    assert load_settings(policy={"strict": True}).policy.strict is True


def test_a_list_in_a_table_that_is_not_json_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_POLICY__MANDATORY", "owner,purpose")
    with pytest.raises(InvalidInputError, match=r"ORCHESTRACK_POLICY__MANDATORY is not valid JSON \('owner,purpose'"):
        load_settings()


def test_reading_settings_needs_no_settings_framework() -> None:
    """Every task process, KFP component and CLI call reads settings: its start pays for what that imports."""
    code = ("import sys, orchestrack.settings as s; s.load_settings(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic_settings', 'asyncio')))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]", shown.stdout
