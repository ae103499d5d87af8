"""The model registry on an MLflow store: versions land in MLflow's own Model Registry (read back with
MLflow's client and its REST API), aliases move, listing reads every page, and ``which`` finds runs
and versions by content, on every MLflow server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack.cli import main
from orchestrack.errors import PromotionRefusedError
from orchestrack.record import Artifact, GateDecision, GateOutcome, RunRecord
from orchestrack.registry import MlflowRegistry, file_sha256, open_registry
from orchestrack.settings import load_settings
from orchestrack.stores import open_store
from orchestrack.stores.mlflow_rest import MlflowApiError, MlflowRestClient
from orchestrack.stores.mlflow_store import MlflowStore
from tests.cli_runner import CliRunner


@pytest.fixture
def tracked(store: MlflowStore, monkeypatch: pytest.MonkeyPatch) -> MlflowStore:
    """orchestrack's public API pointed at this test's MLflow store."""
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", store.uri)
    monkeypatch.setenv("ORCHESTRACK_MLFLOW__EXPERIMENT", store.experiment_template)
    monkeypatch.setenv("ORCHESTRACK_MLFLOW__CLAIMS", store.claims)
    from orchestrack import stores

    stores.close_all()
    return store


@pytest.fixture
def model() -> str:
    """A model name of this test's own (the registry outlives the test on the session's server)."""
    return f"churn-{uuid.uuid4().hex[:8]}"


def make_run(key: str, content: str, gate: GateOutcome | None = GateOutcome.PASSED, pipeline: str = "churn"
             ) -> RunRecord:
    run = orchestrack.start_run(key=key, pipeline=pipeline)
    folder = Path(key.replace("/", "_"))
    folder.mkdir()
    (folder / "model.pt").write_text(content)
    run.log_artifact(folder / "model.pt", kind="model")
    record = run.finish()
    assert record is not None
    if gate is not None:
        decision = GateDecision(outcome=gate, summary=f"The gate {gate.value}: auc 0.91 against min 0.85.")
        open_store(load_settings().resolved_tracking_uri).update_run(record.run_id,
                                                                     {"gate": decision.model_dump(mode="json")})
    return orchestrack.get_run(key)


def test_a_promoted_version_is_in_mlflows_registry_with_its_run_and_alias(
        tracked: MlflowStore, mlflow_client: Any, model: str) -> None:
    record = make_run("churn/1", "one")
    version = orchestrack.promote("churn/1", model, alias="champion", note="first cut")
    mlflow_run_id, experiment_id = tracked.mlflow_ids(record.run_id)
    assert version.version == 1 and version.aliases == ["champion"]
    assert version.registry_url == f"{tracked.ui_url}/#/models/{model}/versions/1"

    found = mlflow_client.get_model_version(model, "1")
    assert found.run_id == mlflow_run_id
    assert found.source == f"runs:/{mlflow_run_id}/model.pt"  # a local file is no source MLflow accepts
    assert found.description == "first cut"
    assert found.tags["orchestrack.run_id"] == record.run_id and found.tags["orchestrack.key"] == "churn/1"
    assert found.tags["orchestrack.sha256"] == record.artifacts[0].sha256
    assert found.tags["orchestrack.uri"] == record.artifacts[0].uri
    assert (found.tags["orchestrack.gate"], found.tags["orchestrack.forced"]) == ("passed", "false")
    assert mlflow_client.get_registered_model(model).aliases == {"champion": "1"}
    assert mlflow_client.get_model_version_by_alias(model, "champion").run_id == mlflow_run_id

    rest = MlflowRestClient(tracked.uri)  # MLflow's REST answers, as any other client reads them
    registered = rest.call("GET", "registered-models/get", name=model)["registered_model"]
    assert registered["aliases"] == [{"alias": "champion", "version": "1"}]
    assert {"key": "orchestrack.model", "value": "true"} in registered["tags"]
    assert rest.call("GET", "model-versions/get", name=model, version="1")["model_version"]["run_id"] == mlflow_run_id


def test_the_alias_moves_and_versions_read_back_newest_first(tracked: MlflowStore, mlflow_client: Any,
                                                             model: str) -> None:
    make_run("churn/1", "one")
    second = make_run("churn/2", "two")
    orchestrack.promote("churn/1", model, alias="champion")
    orchestrack.promote("churn/2", model, alias="champion")
    registry = open_registry()
    assert isinstance(registry, MlflowRegistry)
    assert [(v.version, v.aliases, v.run_key) for v in registry.versions(model)] == [
        (2, ["champion"], "churn/2"), (1, [], "churn/1")]
    champion = registry.alias(model, "champion")  # what the gate's `baseline: champion` reads
    assert champion is not None and (champion.version, champion.run_id) == (2, second.run_id)
    assert mlflow_client.get_registered_model(model).aliases == {"champion": "2"}
    assert model in registry.models()
    assert registry.alias(model, "nobody") is None
    assert registry.versions(f"{model}-missing") == []


def test_a_refused_promotion_registers_nothing_and_force_records_it(tracked: MlflowStore, model: str) -> None:
    make_run("churn/1", "one", gate=GateOutcome.FAILED)
    with pytest.raises(PromotionRefusedError, match="failed its quality gate: 'The gate failed"):
        orchestrack.promote("churn/1", model)
    with pytest.raises(MlflowApiError) as missing:
        MlflowRestClient(tracked.uri).call("GET", "registered-models/get", name=model)
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    forced = orchestrack.promote("churn/1", model, force=True)
    assert (forced.forced, forced.gate) == (True, GateOutcome.FAILED)
    assert open_registry().versions(model)[0].forced is True


def test_every_page_of_versions_is_read(tracked: MlflowStore, model: str) -> None:
    record = make_run("churn/1", "one")
    registry = open_registry()
    assert isinstance(registry, MlflowRegistry)
    for _ in range(5):
        registry.register(record, record.artifacts[0], model)
    registry.page_size = 2
    assert [v.version for v in registry.versions(model)] == [5, 4, 3, 2, 1]
    assert len([v for v in registry.find_versions(record.artifacts[0].sha256) if v.name == model]) == 5


def test_an_s3_artifact_is_the_version_source(tracked: MlflowStore, mlflow_client: Any, model: str) -> None:
    record = make_run("churn/1", "one")
    artifact = Artifact(name="model.pt", kind="model", uri="s3://models/sha256/ab/abcd", sha256="ab" * 32,
                        size_bytes=10)
    version = open_registry().register(record, artifact, model)
    assert version.uri == "s3://models/sha256/ab/abcd"
    assert mlflow_client.get_model_version(model, str(version.version)).source == "s3://models/sha256/ab/abcd"


def test_which_finds_runs_and_versions_by_content(tracked: MlflowStore, model: str, tmp_path: Path) -> None:
    make_run("churn/1", "same bytes")
    make_run("churn/2", "other bytes")
    orchestrack.promote("churn/1", model)
    copy = tmp_path / "downloaded.pt"
    copy.write_text("same bytes")
    assert [(r.key, a.name) for r, a in orchestrack.which(copy)] == [("churn/1", "model.pt")]
    assert [(v.name, v.version) for v in open_registry().find_versions(file_sha256(copy))] == [(model, 1)]
    copy.write_text("changed")
    assert orchestrack.which(copy) == []


def test_the_cli_promotes_lists_and_answers_which(tracked: MlflowStore, model: str) -> None:
    make_run("churn/1", "one")
    runner = CliRunner()
    promoted = runner.invoke(main, ["promote", "churn/1", "--model", model, "--alias", "champion", "--json"],
                             catch_exceptions=False)
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["registry_url"].endswith(f"/#/models/{model}/versions/1")
    listed = runner.invoke(main, ["models", model, "--json"], catch_exceptions=False)
    assert [(v["version"], v["aliases"]) for v in json.loads(listed.stdout)] == [(1, ["champion"])]
    which = runner.invoke(main, ["which", str(Path("churn_1") / "model.pt"), "--json"], catch_exceptions=False)
    assert [r["key"] for r in json.loads(which.stdout)["runs"]] == ["churn/1"]


def test_a_model_version_leads_back_to_its_run_and_link_prints_the_mlflow_page(tracked: MlflowStore, model: str,
                                                                               server: Any) -> None:
    record = make_run("churn/1", "one")
    orchestrack.promote("churn/1", model, alias="champion")
    runner = CliRunner()
    for ref in (f"models:/{model}/1", f"models:/{model}@champion"):
        found = runner.invoke(main, ["which", ref, "--json"], catch_exceptions=False)
        assert found.exit_code == 0, found.output
        answer = json.loads(found.stdout)
        assert [(r["key"], r["artifact"]["name"]) for r in answer["runs"]] == [("churn/1", "model.pt")]
        assert answer["runs"][0]["url"].startswith(server.url)
    link = runner.invoke(main, ["link", "churn/1"], catch_exceptions=False)
    mlflow_run_id = tracked._ids(record.run_id)[0]
    assert link.exit_code == 0 and link.stdout.strip().endswith(f"/runs/{mlflow_run_id}"), link.output


def test_the_checklist_fields_round_trip_through_mlflow(tracked: MlflowStore, tmp_path: Path,
                                                       mlflow_client: Any) -> None:
    config = tmp_path / "train.yaml"
    config.write_text("model:\n  lr: 0.01\ndb:\n  password: hunter2-on-mlflow\n")
    run = orchestrack.start_run(key="checklist/1", pipeline="churn")
    with run.task("train"):
        orchestrack.log_dataset("train", "s3://lake/t/", filters={"country": ["DE"]}, labels_as_of="2026-10-01",
                                leakage_check={"status": "failed", "note": "id leaks"})
        orchestrack.log_config(config)
        orchestrack.log_llm_usage(latency_s=0.5, cost=0.01, step=0)
        orchestrack.log_features(["a"], joins=["x JOIN y"], feature_store="feast:churn")
    record = run.finish()
    assert record is not None
    got = orchestrack.get_run("checklist/1")
    assert got.data[0].filters == {"country": ["DE"]} and str(got.data[0].labels_as_of) == "2026-10-01"
    assert got.data[0].leakage_check is not None and got.data[0].leakage_check.note == "id leaks"
    assert got.configs[0].values == {"model.lr": 0.01, "db.password": "***"}
    assert got.metric_units == {"llm.latency": "s", "llm.cost": "USD"}
    assert got.features.joins == ["x JOIN y"] and got.features.feature_store == "feast:churn"
    mlflow_run = mlflow_client.get_run(tracked._ids(record.run_id)[0])
    assert "hunter2-on-mlflow" not in json.dumps(mlflow_run.data.tags)


def test_gate_promotion_and_run_pages_over_mlflow(tracked: MlflowStore, model: str, tmp_path: Path) -> None:
    """The gate reads its baseline and history from MLflow, the champion from MLflow's registry, and
    `orchestrack ui` serves the runs and versions from there."""
    import os
    import subprocess
    import sys
    import urllib.request

    from orchestrack.gate import check_gate

    pipeline = f"gated-{uuid.uuid4().hex[:8]}"
    for index, auc in enumerate((0.80, 0.81, 0.79, 0.80, 0.805)):
        run = orchestrack.start_run(key=f"{pipeline}/{index}", pipeline=pipeline,
                                    purpose="baseline" if index == 0 else "tuning")
        run.log_metrics({"auc": auc})
        run.finish()
    good = make_run(f"{pipeline}/good", "good", gate=None, pipeline=pipeline)
    orchestrack.start_run(key=good.key).log_metrics({"auc": 0.81})
    spec = {"metrics": {"auc": {"min": 0.75}}, "baseline": {"max_regression": {"auc": 0.02}}}
    passed = check_gate(good.key, spec)
    assert passed.outcome is GateOutcome.PASSED and passed.baseline_run == orchestrack.get_run(f"{pipeline}/0").run_id
    assert next(c for c in passed.checks if c.kind == "sigma").reference.startswith("5 earlier runs")  # type: ignore[union-attr]
    orchestrack.promote(good.key, model, alias="champion")
    leaky = make_run(f"{pipeline}/leaky", "leaky", gate=None, pipeline=pipeline)
    orchestrack.start_run(key=leaky.key).log_metrics({"auc": 0.95})
    held = check_gate(leaky.key, {**spec, "baseline": {"run": "champion", "model": model,
                                                       "max_regression": {"auc": 0.02}}})
    assert held.outcome is GateOutcome.HELD and held.baseline_run == good.run_id  # the champion, from MLflow
    with pytest.raises(PromotionRefusedError, match="held"):
        orchestrack.promote(leaky.key, model)
    assert orchestrack.get_run(leaky.key).gate == held  # the decision round-trips through MLflow's tags

    env = {k: v for k, v in os.environ.items()}
    server = subprocess.Popen([sys.executable, "-m", "orchestrack", "ui", "--port", "0"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        base = server.stdout.readline().strip().split(" ")[-1].rstrip("/")
        with urllib.request.urlopen(f"{base}/runs/{good.run_id}", timeout=60) as response:
            page = response.read().decode()
        assert "Quality gate passed" in page and model in page and "champion" in page
        with urllib.request.urlopen(f"{base}/models/{model}", timeout=60) as response:
            listing = response.read().decode()
        assert f"{pipeline}/good" in listing
    finally:
        server.terminate()
        server.wait(timeout=10)
