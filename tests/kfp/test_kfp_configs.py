"""``otk.pipeline(configs=[...])``: config files read at definition, embedded (secrets masked) in the
compiled pipeline, and recorded by the task that closes the run; and the example pipeline's whole run checklist."""

# No `from __future__ import annotations`: kfp reads the pipeline annotations below at runtime.

import hashlib
import importlib.util
import logging
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from kfp import compiler

import orchestrack
from orchestrack import RunStatus
from orchestrack.errors import InvalidInputError
from orchestrack.kfp.embedded_configs import MAX_EMBEDDED, log_packed_configs, pack_configs, unpack_configs
from orchestrack.views import comparison_rows
from tests.kfp import pipelines

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "kfp" / "churn_pipeline.py"
SECRET = "hunter2-s3cr3t-value"


def only_run() -> orchestrack.RunRecord:
    runs = orchestrack.search_runs()
    assert len(runs) == 1, [r.key for r in runs]
    return runs[0]


@pytest.fixture
def example() -> Iterator[ModuleType]:
    """examples/kfp/churn_pipeline.py, imported from its file (kfp takes each component's source from it)."""
    spec = importlib.util.spec_from_file_location("kfp_churn_pipeline", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_the_example_pipeline_records_the_whole_run_checklist(example: ModuleType) -> None:
    example.churn_train()
    record = only_run()
    assert record.status is RunStatus.SUCCEEDED and record.orchestrator.pipeline == "churn-train"
    assert (record.owner, record.purpose) == ("churn-team", "baseline")

    config_file = EXAMPLE.with_name("churn.yaml")
    [config] = record.configs
    assert (config.name, config.kind, config.format, config.artifact) == ("churn.yaml", "config", "yaml",
                                                                           "configs/churn.yaml")
    assert config.sha256 == hashlib.sha256(config_file.read_bytes()).hexdigest()  # the author's file, not a copy
    assert config.size_bytes == config_file.stat().st_size and config.source == str(config_file)
    assert not config.redacted and config.values_complete
    assert config.values == {
        "data.table": "warehouse://analytics.customer_events", "data.rows": 400, "data.seed": 28,
        "data.countries[0]": "DE", "data.countries[1]": "FR", "data.countries[2]": "NL",
        "data.min_tenure_months": 3, "data.features_as_of": "2026-10-31", "data.labels_as_of": "2026-11-28",
        "features.store": "feast://churn/customer_features", "features.store_version": "7",
        "model.lr": 0.5, "model.epochs": 5}
    stored = next(a for a in record.artifacts if a.name == "configs/churn.yaml")
    assert stored.kind == "config" and stored.sha256 == config.sha256

    snapshot = next(d for d in record.data if d.name == "customer_events")
    assert (snapshot.uri, snapshot.version) == ("warehouse://analytics.customer_events", "2026-10-31")
    assert snapshot.rows is not None and 0 < snapshot.rows < 400  # the filters dropped some customers
    assert snapshot.filters == {"country": ["DE", "FR", "NL"], "tenure_months": ">= 3"}
    assert snapshot.labels_as_of is not None and snapshot.labels_as_of.isoformat().startswith("2026-11-28")
    assert snapshot.leakage_check is not None and snapshot.leakage_check.status.value == "passed"
    assert snapshot.leakage_check.note == "features as of 2026-10-31, before the labels"

    features = record.features
    assert features.columns == ["tenure_months", "support_tickets", "monthly_spend"] and features.target == "churned"
    assert features.joins == ["customer_events LEFT JOIN support_tickets ON customer_id"]
    assert features.transformations == ["tenure_months / 60", "support_tickets / 8", "monthly_spend / 120"]
    assert (features.feature_store, features.feature_store_version) == ("feast://churn/customer_features", "7")

    assert record.params["train.lr"] == 0.5 and record.params["extract.min_tenure_months"] == 3
    assert len(record.metric_series["train_loss"]) == 5 and 0.5 < record.metrics["accuracy"] <= 1.0
    assert {a.name for a in record.artifacts} >= {"events", "model", "configs/churn.yaml"}


def tracked_with(config: Path) -> Any:
    """A two-task pipeline with deterministic metrics that records ``config`` (read now, at definition)."""
    from orchestrack import kfp as otk

    @otk.pipeline(name="config-compare", purpose="tuning", packages_to_install=[], configs=[config])
    def compared(rows: int = 20) -> None:
        data = pipelines.prepare(rows=rows)
        pipelines.train(data=data.outputs["dataset"], epochs=2)

    return compared


def test_two_runs_whose_configs_differ_in_one_key_differ_in_that_key_and_the_hash_only(tmp_path: Path) -> None:
    config = tmp_path / "train.yaml"
    text = "model:\n  lr: 0.1\n  dropout: 0.2\ndata:\n  table: events\n"
    for dropout in ("0.2", "0.3"):
        config.write_text(text.replace("0.2", dropout))
        tracked_with(config)()
    records = sorted(orchestrack.search_runs(), key=lambda r: r.started_at)
    assert [r.status for r in records] == [RunStatus.SUCCEEDED] * 2
    rows = comparison_rows(records)
    differing = [(row["section"], row["field"], row["values"]) for row in rows if row["differs"]]
    first, second = (c.sha256[:12] for r in records for c in r.configs)
    assert differing == [("config", "train.yaml sha256", [first, second]),
                         ("config", "train.yaml: model.dropout", [0.2, 0.3])]
    assert ("config", "train.yaml: model.lr") in [(row["section"], row["field"]) for row in rows]


def packed_inputs(node: Any) -> list[str]:
    """Every value of the variable ``ORCHESTRACK_KFP_CONFIGS`` anywhere in a compiled pipeline spec."""
    found = []
    if isinstance(node, dict):
        if node.get("name") == "ORCHESTRACK_KFP_CONFIGS":
            found.append(node["value"])
        for value in node.values():
            found.extend(packed_inputs(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(packed_inputs(value))
    return found


def test_a_secret_in_a_config_reaches_neither_the_compiled_yaml_nor_the_record(tmp_path: Path) -> None:
    config = tmp_path / "warehouse.yaml"
    config.write_text(f"warehouse:\n  host: db.internal\n  user: trainer\n  password: {SECRET}\nmodel:\n  lr: 0.1\n")
    pipeline = tracked_with(config)
    compiled = tmp_path / "compiled.yaml"
    compiler.Compiler().compile(pipeline, str(compiled))
    assert SECRET not in compiled.read_text()
    [packed] = packed_inputs(yaml.safe_load(compiled.read_text()))  # the closing task's, unpacked
    [entry] = unpack_configs(packed)
    embedded = entry["files"]["warehouse.yaml"].decode()
    assert SECRET not in embedded and "password: '***'" in embedded

    pipeline()
    [recorded] = only_run().configs
    assert recorded.values["warehouse.password"] == "***" and recorded.values["warehouse.host"] == "db.internal"
    assert recorded.redacted and recorded.source == str(config.resolve())
    stored = next(a for a in only_run().artifacts if a.name == "configs/warehouse.yaml")
    assert stored.uri.startswith("file://")
    assert SECRET not in Path(stored.uri.removeprefix("file://")).read_text()


def test_a_missing_config_fails_the_definition_naming_the_file_and_the_fix() -> None:
    from orchestrack import kfp as otk

    with pytest.raises(InvalidInputError) as raised:
        @otk.pipeline(name="needs-a-config", packages_to_install=[], configs=["conf/no-such-file.yaml"])
        def needs_a_config() -> None:
            pipelines.prepare(rows=1)
    message = str(raised.value)
    assert "'conf/no-such-file.yaml' does not exist" in message and "'needs-a-config'" in message
    assert str(Path(__file__).parent / "conf" / "no-such-file.yaml") in message  # next to the pipeline's file
    assert "put it next to the pipeline's source file, or give its absolute path" in message


def test_configs_too_large_to_embed_are_refused_naming_the_file_and_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "embeddings.bin"
    big.write_bytes(random.Random(7).randbytes(MAX_EMBEDDED))  # incompressible: packs past the limit
    small = tmp_path / "train.yaml"
    small.write_text("lr: 0.1\n")
    with pytest.raises(InvalidInputError, match=rf"over the limit of {MAX_EMBEDDED}.*leave 'embeddings.bin' out"):
        pack_configs([small, big], pipeline="too-big", func=tracked_with)


def test_a_config_that_cannot_be_recorded_does_not_fail_the_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    toml = tmp_path / "serving.toml"
    toml.write_text('[model]\nname = "churn"\napi_token = "abc123-not-for-the-yaml"\n')
    packed = pack_configs([toml], pipeline="p", func=tracked_with)
    run = orchestrack.start_run(key="kfp/configs-unit")
    with pytest.raises(InvalidInputError, match="not what otk.pipeline packs"):
        log_packed_configs(run, "not a packed text")  # strict mode (the tests' default) raises
    monkeypatch.setenv("ORCHESTRACK_STRICT", "0")
    with caplog.at_level(logging.WARNING):  # a warning or an error, never raised
        log_packed_configs(run, "not a packed text")
    assert "no impact on the pipeline" in caplog.text
    log_packed_configs(run, packed)  # a TOML file with a secret travels masked, as JSON, and still parses
    [config] = run.finish().configs  # type: ignore[union-attr]
    assert config.name == "serving.toml" and config.values == {"model.name": "churn", "model.api_token": "***"}
