"""The record answers the team's checklist: data filters, label date and leakage screening; config
files; feature joins, transformations and store; LLM settings, prompts and usage with units; and
the way back from a model to its run (`orchestrack which`, `orchestrack link`)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack.cli import main
from orchestrack.errors import InvalidInputError, PolicyError
from orchestrack.gate import check_gate
from orchestrack.views import comparison_rows
from tests.cli_runner import CliRunner

TRAIN_YAML = """\
model:
  lr: 0.01
  layers: [64, 32]
data:
  window_days: 90
"""


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def differing(*keys: str) -> list[tuple[str, str]]:
    """The (section, field) of every compare row whose values differ between the runs ``keys``."""
    records = [orchestrack.get_run(key) for key in keys]
    return [(row["section"], row["field"]) for row in comparison_rows(records) if row["differs"]]


def churn_run(key: str, config: Path, *, filters: Any = None, labels_as_of: Any = "2026-10-01",
              joins: tuple[str, ...] = ("events LEFT JOIN customers ON customer_id",)) -> orchestrack.RunRecord:
    """The same small run each time, but for what the caller changes."""
    run = orchestrack.start_run(key=key, owner="ml", purpose="baseline", pipeline="churn")
    with run.task("train"):
        orchestrack.log_dataset("train", "s3://lake/churn/train/", version="v7", rows=1000,
                                filters=filters or {"country": ["DE", "FR"], "date": ">= 2026-10-01"},
                                labels_as_of=labels_as_of, leakage_check="passed")
        orchestrack.log_config(config)
        orchestrack.log_features(["tenure", "tickets"], target="churned", joins=list(joins),
                                 transformations=["log1p(tickets)"], feature_store="feast:churn",
                                 feature_store_version="7")
        orchestrack.log_params({"lr": 0.01})
        orchestrack.log_metrics({"auc": 0.9})
    return run.finish()  # type: ignore[return-value]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "train.yaml"
    path.write_text(TRAIN_YAML)
    return path


# -- data --------------------------------------------------------------------------------------


def test_data_filters_label_date_and_leakage_check_are_recorded_and_shown(config: Path) -> None:
    churn_run("churn/1", config, filters={"country": {"FR", "DE"}, "min_age": 18}, labels_as_of="2026-10-01")
    snapshot = orchestrack.get_run("churn/1").data[0]
    assert snapshot.filters == {"country": ["DE", "FR"], "min_age": 18}  # a set becomes a sorted list
    assert snapshot.labels_as_of == date(2026, 10, 1)
    assert snapshot.leakage_check is not None and snapshot.leakage_check.status == "passed"
    shown = json.loads(cli("show", "churn/1", "--json").output)["data"][0]
    assert shown["filters"] == {"country": ["DE", "FR"], "min_age": 18}
    assert shown["labels_as_of"] == "2026-10-01"
    assert shown["leakage_check"] == {"status": "passed", "note": None}
    text = cli("show", "churn/1", env={"COLUMNS": "200"}).output
    assert 'country=["DE", "FR"]' in text and "2026-10-01" in text and "passed" in text


def test_a_label_datetime_is_kept_in_utc_and_a_note_goes_with_a_failed_check() -> None:
    run = orchestrack.start_run(key="leaky")
    run.log_dataset("train", "s3://lake/t/", labels_as_of=datetime(2026, 10, 1, 6, 30),
                    leakage_check={"status": "failed", "note": "customer_id predicts the label (AUC 0.99 alone)"})
    run.log_dataset("eval", "s3://lake/e/", filters="country IN ('DE') AND date >= '2026-10-01'",
                    labels_as_of="2026-10-01T08:00:00+02:00")
    data = orchestrack.get_run("leaky").data
    assert data[0].labels_as_of == datetime(2026, 10, 1, 6, 30, tzinfo=UTC)
    assert data[0].leakage_check.note == "customer_id predicts the label (AUC 0.99 alone)"  # type: ignore[union-attr]
    assert data[1].labels_as_of == datetime(2026, 10, 1, 6, 0, tzinfo=UTC)
    assert data[1].filters == "country IN ('DE') AND date >= '2026-10-01'"


@pytest.mark.parametrize(("argument", "value", "says"), [
    ("leakage_check", "maybe", "passed, failed, not-run"),
    ("leakage_check", {"status": "passed", "extra": 1}, "'passed', 'failed' or 'not-run'"),
    ("labels_as_of", "yesterday", "ISO 8601"),
    ("labels_as_of", 20261001, "must be a date"),
    ("filters", 42, "must be a mapping"),
    ("filters", "  ", "is empty"),
])
def test_bad_checklist_values_say_what_and_where(argument: str, value: Any, says: str) -> None:
    run = orchestrack.start_run(key="bad-input")
    with pytest.raises(InvalidInputError, match="log_dataset 'train'") as raised:
        run.log_dataset("train", "s3://lake/t/", **{argument: value})
    assert says in str(raised.value) and argument in str(raised.value)
    assert orchestrack.get_run("bad-input").data == []  # nothing half-written


def test_secrets_in_filters_are_masked() -> None:
    run = orchestrack.start_run(key="filters-secret")
    run.log_dataset("a", "s3://lake/a/", filters={"api_token": "tok-123", "source": "postgres://u:pw123@db/x"})
    run.log_dataset("b", "s3://lake/b/", filters="dsn = 'postgres://u:pw123@db/x'")
    data = orchestrack.get_run("filters-secret").data
    assert data[0].filters == {"api_token": "***", "source": "postgres://u:***@db/x"}
    assert "pw123" not in str(data[1].filters)


# -- configs -----------------------------------------------------------------------------------


def test_a_yaml_config_is_hashed_parsed_and_stored(config: Path) -> None:
    churn_run("churn/cfg", config)
    record = orchestrack.get_run("churn/cfg")
    [stored] = record.configs
    assert stored.sha256 == hashlib.sha256(config.read_bytes()).hexdigest()
    assert stored.values == {"model.lr": 0.01, "model.layers[0]": 64, "model.layers[1]": 32, "data.window_days": 90}
    assert (stored.format, stored.kind, stored.source, stored.artifact) == (
        "yaml", "config", str(config.resolve()), "configs/train.yaml")
    assert stored.task == "train"
    artifact = next(a for a in record.artifacts if a.name == "configs/train.yaml")
    assert artifact.kind == "config" and artifact.sha256 == stored.sha256  # the file itself, byte for byte
    fetched = cli("fetch", "churn/cfg", "configs/train.yaml", "--to", str(config.parent / "fetched"))
    assert fetched.exit_code == 0, fetched.output
    assert (config.parent / "fetched").read_text() == TRAIN_YAML


@pytest.mark.parametrize(("name", "text", "fmt", "values"), [
    ("c.json", '{"a": {"b": [1, {"c": null}]}, "e": []}', "json", {"a.b[0]": 1, "a.b[1].c": None, "e": "[]"}),
    ("c.toml", 'title = "x"\n[model]\nlr = 0.5\nwhen = 2026-10-01\n', "toml",
     {"title": "x", "model.lr": 0.5, "model.when": "2026-10-01"}),
    ("c.cfg", "[section]\nkey = value\n", "text", {}),
])
def test_json_toml_and_other_configs(tmp_path: Path, name: str, text: str, fmt: str, values: dict[str, Any]) -> None:
    (tmp_path / name).write_text(text)
    stored = orchestrack.start_run(key=f"cfg-{fmt}").log_config(tmp_path / name)
    assert (stored.format, stored.values) == (fmt, values)


def test_a_config_folder_is_one_config_with_keys_per_file(tmp_path: Path) -> None:
    folder = tmp_path / ".hydra"
    folder.mkdir()
    (folder / "config.yaml").write_text("model:\n  lr: 0.1\n")
    (folder / "overrides.yaml").write_text("- model.lr=0.1\n")
    stored = orchestrack.start_run(key="cfg-folder").log_config(folder, name="hydra")
    assert stored.format == "folder" and stored.name == "hydra"
    assert stored.values == {"config.yaml:model.lr": 0.1, "overrides.yaml:[0]": "model.lr=0.1"}
    artifact = next(a for a in orchestrack.get_run("cfg-folder").artifacts if a.name == "configs/hydra")
    assert artifact.kind == "config" and artifact.sha256 == stored.sha256


def test_secrets_in_a_config_reach_neither_the_record_nor_the_stored_copy(tmp_path: Path,
                                                                         orchestrack_home: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("db:\n  password: hunter2-secret\n  url: postgres://svc:pa55word@db:5432/x\nmodel: m1\n")
    stored = orchestrack.start_run(key="cfg-secret").log_config(path)
    assert stored.redacted and stored.values["db.password"] == "***"
    assert stored.values["db.url"] == "postgres://svc:***@db:5432/x" and stored.values["model"] == "m1"
    assert stored.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()  # still names the file as read
    written = b"".join(p.read_bytes() for p in orchestrack_home.rglob("*") if p.is_file())
    assert b"hunter2-secret" not in written and b"pa55word" not in written


def test_a_config_that_does_not_parse_is_kept_by_its_hash_and_a_missing_one_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    run = orchestrack.start_run(key="cfg-bad")
    kept = run.log_config(tmp_path / "broken.yaml")
    assert (kept.format, kept.values) == ("text", {}) and "not valid YAML" in (kept.parse_error or "")
    assert kept.sha256 == hashlib.sha256(b"model: [unclosed\n").hexdigest()
    assert "kept as text and compared by its hash only" in caplog.text and "broken.yaml" in caplog.text
    with pytest.raises(InvalidInputError, match=r"missing\.yaml.*does not exist"):
        run.log_config(tmp_path / "missing.yaml")
    assert [c.name for c in orchestrack.get_run("cfg-bad").configs] == ["broken.yaml"]


def test_secrets_in_a_text_config_are_masked_line_by_line(tmp_path: Path, orchestrack_home: Path) -> None:
    env = tmp_path / "serving.env"
    env.write_text("MODEL=churn-v7\nexport DB_PASSWORD=hunter2-in-env\nAPI_TOKEN = tok-abc-123\n"
                   "DSN=postgres://svc:pa55-in-env@db/x\nmax_tokens=300\n")
    stored = orchestrack.start_run(key="cfg-env").log_config(env)
    assert stored.format == "text" and stored.redacted
    written = b"".join(p.read_bytes() for p in orchestrack_home.rglob("*") if p.is_file())
    assert b"hunter2-in-env" not in written and b"tok-abc-123" not in written and b"pa55-in-env" not in written
    copy = tmp_path / "copy.env"
    assert cli("fetch", "cfg-env", "configs/serving.env", "--to", str(copy)).exit_code == 0
    assert copy.read_text() == ("MODEL=churn-v7\nexport DB_PASSWORD=***\nAPI_TOKEN = ***\n"
                                "DSN=postgres://svc:***@db/x\nmax_tokens=300\n")


def test_a_secret_in_a_yaml_comment_is_masked_in_the_stored_copy(tmp_path: Path, orchestrack_home: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("# old: api_token: tok-in-a-comment-42\nmodel:\n  lr: 0.1  # tuned\n")
    stored = orchestrack.start_run(key="cfg-comment").log_config(path)
    assert stored.redacted and stored.values == {"model.lr": 0.1}
    written = b"".join(p.read_bytes() for p in orchestrack_home.rglob("*") if p.is_file())
    assert b"tok-in-a-comment-42" not in written and b"# tuned" in written  # the rest of the file as it was


def test_a_multi_document_yaml_file_is_parsed_document_by_document(tmp_path: Path) -> None:
    (tmp_path / "deploy.yaml").write_text("kind: Service\nport: 80\n---\nkind: Deployment\nreplicas: 3\n")
    stored = orchestrack.start_run(key="cfg-multi").log_config(tmp_path / "deploy.yaml")
    assert stored.values == {"[0].kind": "Service", "[0].port": 80, "[1].kind": "Deployment", "[1].replicas": 3}


def test_a_config_the_size_of_a_data_set_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrack import configs

    monkeypatch.setattr(configs, "MAX_CONFIG_BYTES", 1000)
    (tmp_path / "embeddings.json").write_text("[" + ",".join(["0.1"] * 400) + "]")
    with pytest.raises(InvalidInputError, match=r"embeddings\.json.*over the 0 MiB a config may be.*log_artifact"):
        orchestrack.start_run(key="cfg-big").log_config(tmp_path / "embeddings.json")


# -- compare shows exactly what differs ---------------------------------------------------------


def test_compare_of_runs_that_differ_only_in_filters_shows_only_filters(config: Path) -> None:
    churn_run("f/1", config, filters={"country": ["DE", "FR"]})
    churn_run("f/2", config, filters={"country": ["DE"]})
    assert differing("f/1", "f/2") == [("data", "train filters")]


def test_compare_of_runs_that_differ_only_in_label_date_shows_only_that(config: Path) -> None:
    churn_run("l/1", config, labels_as_of="2026-10-01")
    churn_run("l/2", config, labels_as_of="2026-11-01")
    assert differing("l/1", "l/2") == [("data", "train labels as of")]


def test_compare_of_runs_that_differ_in_one_config_key_shows_that_key_and_the_hash(config: Path) -> None:
    churn_run("c/1", config)
    config.write_text(TRAIN_YAML.replace("window_days: 90", "window_days: 60"))
    churn_run("c/2", config)
    assert differing("c/1", "c/2") == [("config", "train.yaml sha256"), ("config", "train.yaml: data.window_days")]
    rows = json.loads(cli("compare", "c/1", "c/2", "--json").output)["rows"]
    row = next(r for r in rows if r["field"] == "train.yaml: data.window_days")
    assert row["values"] == [90, 60] and row["differs"]
    only = json.loads(cli("compare", "c/1", "c/2", "--differences", "--json").output)["rows"]
    assert [r["field"] for r in only] == ["train.yaml sha256", "train.yaml: data.window_days"]
    text = cli("compare", "c/1", "c/2", "--differences", env={"COLUMNS": "200"}).output
    assert "data.window_days" in text and "model.lr" not in text


def test_compare_of_runs_with_the_same_columns_but_other_joins_shows_the_joins(config: Path) -> None:
    churn_run("j/1", config)
    churn_run("j/2", config, joins=("events INNER JOIN customers ON customer_id",))
    assert differing("j/1", "j/2") == [("features", "joins")]


# -- gate and policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(("leakage", "outcome", "says"), [
    ("passed", "passed", "leakage screening passed on 'train'"),
    ({"status": "failed", "note": "customer_id leaks"}, "failed", "failed: customer_id leaks"),
    ("not-run", "failed", "did not run on data set 'train'"),
    (None, "failed", "records no leakage screening"),
])
def test_the_gate_can_require_a_passed_leakage_check(leakage: Any, outcome: str, says: str) -> None:
    run = orchestrack.start_run(key=f"gate-{outcome}-{says[:6]}")
    run.log_dataset("train", "s3://lake/t/", leakage_check=leakage)
    run.log_metrics({"auc": 0.9})
    run.finish()
    decision = check_gate(run.key, {"require": ["data.leakage_check", "configs"]})
    leakage_check = next(c for c in decision.checks if c.subject == "data.leakage_check")
    assert leakage_check.outcome == outcome and says in leakage_check.sentence
    configs_check = next(c for c in decision.checks if c.subject == "configs")
    assert configs_check.outcome == "failed"  # no config was logged


def test_the_policy_can_make_checklist_fields_mandatory(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_POLICY__MANDATORY",
                       '["data.labels_as_of", "data.leakage_check", "configs", "features.feature_store"]')
    churn_run("policy/ok", config)
    assert orchestrack.get_run("policy/ok").incomplete == []
    bare = orchestrack.start_run(key="policy/bare")
    bare.log_dataset("train", "s3://lake/t/")
    assert bare.finish().incomplete == [  # type: ignore[union-attr]
        "data.labels_as_of", "data.leakage_check", "configs", "features.feature_store"]
    monkeypatch.setenv("ORCHESTRACK_POLICY__STRICT", "true")
    strict = orchestrack.start_run(key="policy/strict")
    with pytest.raises(PolicyError, match="data.leakage_check"):
        strict.finish()


def test_a_pipeline_can_have_mandatory_fields_of_its_own(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_POLICY__MANDATORY", '["owner"]')
    monkeypatch.setenv("ORCHESTRACK_POLICY__PIPELINES", '{"churn": ["data.leakage_check", "configs"], '
                                                        '"llm-*": ["llm.model"]}')
    churn = orchestrack.start_run(key="pp/churn", pipeline="churn", owner="ml")
    llm = orchestrack.start_run(key="pp/llm", pipeline="llm-answers", owner="ml")
    other = orchestrack.start_run(key="pp/other", pipeline="forecast", owner="ml")
    assert churn.finish().incomplete == ["data.leakage_check", "configs"]  # type: ignore[union-attr]
    assert llm.finish().incomplete == ["llm.model"]  # type: ignore[union-attr]
    assert other.finish().incomplete == []  # type: ignore[union-attr]
    monkeypatch.setenv("ORCHESTRACK_POLICY__PIPELINES", '{"churn": ["data.leakage"]}')
    with pytest.raises(InvalidInputError, match=r"policy.pipelines\['churn'\] path 'data.leakage'"):
        orchestrack.start_run(key="pp/bad-policy")


# -- LLM runs -----------------------------------------------------------------------------------


def test_an_llm_run_records_prompts_settings_and_usage_with_units(tmp_path: Path) -> None:
    (tmp_path / "system.txt").write_text("You answer from the context only.")
    run = orchestrack.start_run(key="rag/1", purpose="tuning")
    with run.task("evaluate"):
        orchestrack.log_prompt("answer", "Context:\n{context}\n\nQuestion: {question}")
        orchestrack.log_prompt("system", path=tmp_path / "system.txt")
        orchestrack.log_llm(provider="vllm", model="llama-3.1-8b-instruct",
                            retrieval={"index": "docs-2026-11", "top_k": 8, "api_key": "sk-live-123"},
                            temperature=0.2)
        for batch, (latency, cost) in enumerate([(0.8, 0.002), (1.1, 0.003), (0.9, 0.002)]):
            orchestrack.log_llm_usage(latency_s=latency, cost=cost, currency="EUR", input_tokens=800,
                                      output_tokens=90, step=batch)
        orchestrack.log_metrics({"ttft_ms": 120.0}, unit="ms")
    record = run.finish()
    assert record is not None
    assert [(c.name, c.kind, c.format) for c in record.configs] == [("answer", "prompt", "text"),
                                                                     ("system", "prompt", "text")]
    assert record.configs[0].sha256 == hashlib.sha256(b"Context:\n{context}\n\nQuestion: {question}").hexdigest()
    assert {a.name for a in record.artifacts} == {"prompts/answer", "prompts/system"}
    assert record.llm.retrieval == {"index": "docs-2026-11", "top_k": 8, "api_key": "***"}
    assert record.llm.model_dump()["temperature"] == 0.2
    assert record.metric_units == {"llm.latency": "s", "llm.cost": "EUR", "llm.input_tokens": "tokens",
                                   "llm.output_tokens": "tokens", "ttft_ms": "ms"}
    assert record.metric_series == {}  # finish() reads the run without its series: run.record has them
    assert [p.value for p in run.record.metric_series["llm.latency"]] == [0.8, 1.1, 0.9]
    compared = {r["field"] for r in comparison_rows([record, record])}
    assert {"llm.latency (s)", "llm.cost (EUR)", "model", "retrieval.top_k", "answer sha256"} <= compared


def test_a_changed_prompt_shows_in_compare() -> None:
    for key, template in (("p/1", "Answer briefly: {q}"), ("p/2", "Answer in detail: {q}")):
        run = orchestrack.start_run(key=key)
        run.log_prompt("answer", template)
        run.finish()
    assert differing("p/1", "p/2") == [("config", "answer sha256")]


def test_llm_usage_needs_something_to_log() -> None:
    with pytest.raises(InvalidInputError, match="latency_s="):
        orchestrack.start_run(key="rag/empty").log_llm_usage(step=1)


# -- from a model back to its run ---------------------------------------------------------------


def test_which_finds_the_run_of_a_model_version_and_link_prints_its_url(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "model.pt").write_bytes(b"weights")
    run = orchestrack.start_run(key="nightly/2026-11-28", owner="ml", purpose="baseline")
    run.log_artifact(tmp_path / "model.pt", kind="model")
    run.finish()
    orchestrack.promote("nightly/2026-11-28", "churn", alias="champion", force=True)
    for ref in ("models:/churn/1", "models:/churn@champion"):
        found = json.loads(cli("which", ref, "--json").output)
        assert [r["key"] for r in found["runs"]] == ["nightly/2026-11-28"]
        assert found["model_versions"][0]["version"] == 1
    missing = cli("which", "models:/churn/9")
    assert missing.exit_code != 0 and "has no version 9" in missing.output

    no_url = cli("link", "nightly/2026-11-28")
    assert no_url.exit_code != 0 and "ORCHESTRACK_UI_URL" in no_url.output
    monkeypatch.setenv("ORCHESTRACK_UI_URL", "https://orchestrack.example.com")
    expected = f"https://orchestrack.example.com/runs/{run.run_id}"
    assert cli("link", "nightly/2026-11-28").output.strip() == expected
    markdown = cli("link", run.run_id[:8], "--markdown").output.strip()
    assert markdown == f"[nightly/2026-11-28 ({run.run_id[:8]})]({expected})"
    monkeypatch.setenv("ORCHESTRACK_UI_URL", "https://grafana.example.com/d/runs?key={key}")
    templated = cli("link", "nightly/2026-11-28").output.strip()
    assert templated == "https://grafana.example.com/d/runs?key=nightly%2F2026-11-28"


def test_the_embedded_store_keeps_configs_in_its_own_table(config: Path, orchestrack_home: Path) -> None:
    churn_run("table/1", config)
    with sqlite3.connect(orchestrack_home / "orchestrack.db") as connection:
        [(name, doc)] = connection.execute("SELECT name, doc FROM configs").fetchall()
    assert name == "train.yaml" and json.loads(doc)["values"]["model.lr"] == 0.01


def test_units_set_by_different_processes_all_stay() -> None:
    import subprocess
    import sys

    run = orchestrack.start_run(key="units/processes")
    run.log_metrics({"ttft": 120.0}, unit="ms")
    script = "import orchestrack; orchestrack.log_llm_usage(cost=0.01, currency='EUR', step=0)"
    done = subprocess.run([sys.executable, "-c", script], env={**__import__("os").environ, **run.env()},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    run.log_metrics({"throughput": 12.0}, unit="req/s")  # this process knows nothing of the other's units
    assert orchestrack.get_run("units/processes").metric_units == {"ttft": "ms", "llm.cost": "EUR",
                                                                   "throughput": "req/s"}
