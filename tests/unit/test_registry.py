"""The model registry on the embedded store: promote (gate refusal, force, aliases), models, which, and
version numbers under 16 processes promoting at once, through the public API and the CLI."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack.cli import main
from orchestrack.errors import InvalidInputError, ModelNotFoundError, OrchestrackError, PromotionRefusedError
from orchestrack.record import GateDecision, GateOutcome, RunRecord
from orchestrack.registry import EmbeddedRegistry, file_sha256, open_registry
from orchestrack.settings import load_settings
from orchestrack.stores import open_store
from tests.cli_runner import CliRunner, Result


def set_gate(record: RunRecord, outcome: GateOutcome, summary: str) -> None:
    store = open_store(load_settings().resolved_tracking_uri)
    store.update_run(record.run_id, {"gate": GateDecision(outcome=outcome, summary=summary).model_dump(mode="json")})


def make_run(key: str, content: str = "weights", *, gate: GateOutcome | None = GateOutcome.PASSED,
             fail: bool = False, artifacts: dict[str, str] | None = None) -> RunRecord:
    """A finished run with a ``model.pt`` artifact of kind model (or ``artifacts``: name -> kind), a data
    snapshot, and the given gate decision."""
    run = orchestrack.start_run(key=key, pipeline="churn")
    folder = Path(key.replace("/", "_"))
    folder.mkdir()
    (folder / "train.csv").write_text("a,b\n1,2\n")
    run.log_dataset("train", folder / "train.csv")
    for name, kind in (artifacts or {"model.pt": "model"}).items():
        (folder / name).write_text(f"{content}:{name}")
        run.log_artifact(folder / name, kind=kind)
    if fail:
        with pytest.raises(RuntimeError), run.task("train"):
            raise RuntimeError("diverged")
    record = run.finish()
    assert record is not None
    if gate is not None:
        set_gate(record, gate, f"The gate {gate.value}: auc 0.91 against min 0.85.")
    return orchestrack.get_run(key)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


# -- promote ----------------------------------------------------------------------------------


def test_promote_registers_numbered_versions_with_the_run_facts() -> None:
    first, second = make_run("churn/1", "one"), make_run("churn/2", "two")
    v1 = orchestrack.promote("churn/1", "churn", note="first cut")
    v2 = orchestrack.promote(second.run_id[:10], "churn")
    assert (v1.version, v2.version) == (1, 2)
    artifact = first.artifacts[0]
    assert (v1.run_id, v1.run_key, v1.run_name, v1.artifact) == (first.run_id, "churn/1", first.name, "model.pt")
    assert (v1.uri, v1.sha256, v1.size_bytes) == (artifact.uri, artifact.sha256, artifact.size_bytes)
    assert (v1.gate, v1.forced, v1.note) == (GateOutcome.PASSED, False, "first cut")
    assert v1.gate_summary == "The gate passed: auc 0.91 against min 0.85."
    assert v1.data_versions == {"train": first.data[0].version} and first.data[0].version
    registry = open_registry()
    assert isinstance(registry, EmbeddedRegistry)
    assert [v.version for v in registry.versions("churn")] == [2, 1]
    assert registry.versions("churn")[1] == v1
    assert registry.models() == ["churn"]
    assert registry.versions("no-such-model") == []


def test_versions_live_in_the_embedded_store_file(orchestrack_home: Path) -> None:
    make_run("churn/1")
    orchestrack.promote("churn/1", "churn", alias="champion")
    database = sqlite3.connect(orchestrack_home / "orchestrack.db")
    assert database.execute("SELECT name, version, run_id FROM model_versions").fetchall() == [
        ("churn", 1, orchestrack.run_id_for("churn/1"))]
    assert database.execute("SELECT name, alias, version FROM model_aliases").fetchall() == [("churn", "champion", 1)]
    assert database.execute("SELECT name FROM registered_models").fetchall() == [("churn",)]


@pytest.mark.parametrize(("gate", "fail", "expected"), [
    (None, False, "has no quality gate decision"),
    (GateOutcome.FAILED, False, "failed its quality gate: 'The gate failed: auc 0.91 against min 0.85.'"),
    (GateOutcome.HELD, False, "held it for a person to look at: 'The gate held: auc 0.91 against min 0.85.'"),
    (GateOutcome.PASSED, True, "its status is failed, not succeeded"),
])
def test_a_run_the_gate_did_not_pass_is_refused_unless_forced(gate: GateOutcome | None, fail: bool,
                                                              expected: str) -> None:
    record = make_run("churn/1", gate=gate, fail=fail)
    with pytest.raises(PromotionRefusedError) as refused:
        orchestrack.promote("churn/1", "churn", alias="champion")
    message = str(refused.value)
    assert expected in message
    assert "orchestrack gate churn/1 --spec" in message and "--force" in message
    assert isinstance(refused.value, OrchestrackError)
    registry = open_registry()
    assert registry.models() == [] and registry.alias("churn", "champion") is None  # nothing registered

    forced = orchestrack.promote("churn/1", "churn", alias="champion", force=True, note="hotfix, reviewed by hand")
    assert (forced.version, forced.forced, forced.gate, forced.aliases) == (1, True, gate, ["champion"])
    assert forced.run_id == record.run_id
    assert registry.alias("churn", "champion") == forced


def test_force_on_a_passed_run_is_not_recorded_as_forced() -> None:
    make_run("churn/1")
    assert orchestrack.promote("churn/1", "churn", force=True).forced is False


def test_alias_moves_to_the_newest_promotion_and_back() -> None:
    make_run("churn/1", "one")
    make_run("churn/2", "two")
    orchestrack.promote("churn/1", "churn", alias="champion")
    registry = open_registry()
    champion = registry.alias("churn", "champion")
    assert champion is not None and (champion.version, champion.run_key) == (1, "churn/1")
    orchestrack.promote("churn/2", "churn", alias="champion")
    registry.set_alias("churn", "challenger", 1)
    assert [(v.version, v.aliases) for v in registry.versions("churn")] == [(2, ["champion"]), (1, ["challenger"])]
    registry.set_alias("churn", "champion", 1)
    assert [(v.version, v.aliases) for v in registry.versions("churn")] == [
        (2, []), (1, ["challenger", "champion"])]
    with pytest.raises(ModelNotFoundError, match="has no version 7"):
        registry.set_alias("churn", "champion", 7)
    assert registry.alias("churn", "nobody") is None


@pytest.mark.parametrize("alias", ["latest", "v3", "two words", "a/b", ""])
def test_bad_aliases_and_model_names_are_refused_before_anything_is_written(alias: str) -> None:
    make_run("churn/1")
    with pytest.raises(InvalidInputError, match="alias"):
        orchestrack.promote("churn/1", "churn", alias=alias)
    with pytest.raises(InvalidInputError, match="model name"):
        orchestrack.promote("churn/1", "team/churn")
    assert open_registry().models() == []


def test_the_artifact_is_the_only_model_or_the_named_one() -> None:
    make_run("two/1", artifacts={"a.pt": "model", "b.pt": "model", "report.html": "report"})
    with pytest.raises(InvalidInputError, match=r"has 2 artifacts of kind 'model' \(a.pt, b.pt\).*--artifact"):
        orchestrack.promote("two/1", "m")
    assert orchestrack.promote("two/1", "m", artifact="b.pt").artifact == "b.pt"
    with pytest.raises(InvalidInputError, match=r"no artifact named 'c.pt'.*a.pt \(model\), b.pt \(model\)"):
        orchestrack.promote("two/1", "m", artifact="c.pt")
    make_run("none/1", artifacts={"report.html": "report"})
    with pytest.raises(InvalidInputError, match=r"no artifact of kind 'model'.*report.html \(report\)"):
        orchestrack.promote("none/1", "m")


# -- which ------------------------------------------------------------------------------------


def test_which_finds_the_runs_of_a_file_by_content(tmp_path: Path) -> None:
    first = make_run("churn/1", "same")
    make_run("churn/2", "other")
    copy = tmp_path / "downloaded.pt"
    shutil.copyfile(Path("churn_1") / "model.pt", copy)
    found = orchestrack.which(copy)
    assert [(r.key, a.name) for r, a in found] == [("churn/1", "model.pt")]
    assert found[0][1] == first.artifacts[0]
    copy.write_text("changed")
    assert orchestrack.which(copy) == []
    with pytest.raises(InvalidInputError, match="does not exist"):
        orchestrack.which(tmp_path / "missing.pt")


def test_the_embedded_store_finds_artifacts_by_hash_from_an_index(orchestrack_home: Path) -> None:
    make_run("churn/1")
    database = sqlite3.connect(orchestrack_home / "orchestrack.db")
    plan = database.execute("EXPLAIN QUERY PLAN SELECT run_id FROM artifacts "
                            "WHERE json_extract(doc, '$.sha256') = ?", ("ab" * 32,)).fetchall()
    assert "artifacts_sha256" in " ".join(str(row) for row in plan)


def test_which_finds_a_folder_artifact_and_its_model_versions(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"\x00\x01" * 100)
    (folder / "sub" / "config.json").write_text("{}")
    run = orchestrack.start_run(key="folder/1")
    logged = run.log_artifact(folder, kind="model")
    run.finish()
    set_gate(orchestrack.get_run("folder/1"), GateOutcome.PASSED, "passed")
    copy = tmp_path / "elsewhere"
    shutil.copytree(folder, copy)
    assert logged is not None and file_sha256(copy) == logged.sha256
    assert [(r.key, a.kind) for r, a in orchestrack.which(copy)] == [("folder/1", "model")]
    version = orchestrack.promote("folder/1", "folded")
    assert open_registry().find_versions(file_sha256(copy)) == [version]
    (copy / "sub" / "config.json").write_text('{"changed": true}')
    assert orchestrack.which(copy) == []


# -- CLI --------------------------------------------------------------------------------------


def test_cli_promote_models_and_which() -> None:
    make_run("churn/1", "one")
    make_run("churn/2", "two")
    result = invoke("promote", "churn/1", "--model", "churn", "--alias", "champion", "--note", "first")
    assert result.exit_code == 0, result.output
    assert "Promoted run churn/1 to churn version 1 (champion)." in result.stdout
    promoted = json.loads(invoke("promote", "churn/2", "--model", "churn", "--json").stdout)
    assert (promoted["version"], promoted["run_key"], promoted["gate"]) == (2, "churn/2", "passed")

    listed = json.loads(invoke("models", "--json").stdout)
    assert [(m["name"], m["versions"], m["latest"]["version"], m["aliases"]) for m in listed] == [
        ("churn", 2, 2, {"champion": 1})]
    table = invoke("models").stdout
    assert "churn" in table and "champion: v1" in table
    versions = invoke("models", "churn")
    assert versions.exit_code == 0
    second = orchestrack.get_run("churn/2")
    assert second.name in versions.stdout and second.run_id[:8] in versions.stdout and "passed" in versions.stdout
    assert [v["version"] for v in json.loads(invoke("models", "churn", "--json").stdout)] == [2, 1]

    found = json.loads(invoke("which", str(Path("churn_1") / "model.pt"), "--json").stdout)
    assert [r["key"] for r in found["runs"]] == ["churn/1"]
    assert [(v["name"], v["version"]) for v in found["model_versions"]] == [("churn", 1)]
    human = invoke("which", str(Path("churn_2") / "model.pt"))
    assert human.exit_code == 0 and "1 run artifact, 1 model version" in human.stdout


def test_cli_refusals_and_unknowns_are_one_line_errors(tmp_path: Path) -> None:
    make_run("churn/1", gate=GateOutcome.HELD)
    refused = invoke("promote", "churn/1", "--model", "churn")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("Error: run 'churn/1'") and refused.stderr.count("\n") == 1
    assert "held it for a person to look at" in refused.stderr and "--force" in refused.stderr
    forced = invoke("promote", "churn/1", "--model", "churn", "--force")
    assert forced.exit_code == 0 and "(forced)" in forced.stdout

    unknown = invoke("models", "nope")
    assert unknown.exit_code == 1 and "no model named 'nope'" in unknown.stderr and "churn" in unknown.stderr
    stranger = tmp_path / "stranger.bin"
    stranger.write_text("never logged")
    none = invoke("which", str(stranger))
    assert none.exit_code == 1 and "no run in" in none.stderr and file_sha256(stranger) in none.stderr


def test_cli_models_with_none_registered() -> None:
    assert "No models registered yet" in invoke("models").stdout
    assert json.loads(invoke("models", "--json").stdout) == []


# -- many processes at once ---------------------------------------------------------------------


def _promote_in_process(start: Any, results: Any) -> None:
    start.wait(60)
    try:
        results.put(orchestrack.promote("churn/1", "churn", alias="champion").version)
    except BaseException as err:  # the parent reports it
        results.put(repr(err))


def test_sixteen_processes_promoting_at_once_get_distinct_consecutive_versions() -> None:
    make_run("churn/1")  # the registry's tables do not exist yet: the workers race to make them too
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_promote_in_process, args=(start, results)) for _ in range(16)]
    for worker in workers:
        worker.start()
    time.sleep(2.0)  # let every interpreter start and import orchestrack before the race
    start.set()
    got = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(30)
    assert all(isinstance(version, int) for version in got), got  # else a worker's error
    assert sorted(got) == list(range(1, 17)), got
    registry = open_registry()
    versions = registry.versions("churn")
    assert [v.version for v in versions] == list(range(16, 0, -1))
    champion = registry.alias("churn", "champion")
    assert champion is not None and champion.aliases == ["champion"]


# -- with the quality gate ----------------------------------------------------------------------


def _scored_run(key: str, auc: float) -> RunRecord:
    run = orchestrack.start_run(key=key, pipeline="churn")
    run.log_metrics({"auc": auc})
    path = Path(f"{key.replace('/', '_')}.pt")
    path.write_text(f"model {auc}")
    run.log_artifact(path, kind="model")
    record = run.finish()
    assert record is not None
    return record


def test_the_gate_compares_with_the_champion_and_its_decision_decides_promotion() -> None:
    from orchestrack.gate import check_gate

    champion = _scored_run("churn/1", 0.90)
    assert check_gate("churn/1", {"metrics": {"auc": {"min": 0.5}}}).outcome is GateOutcome.PASSED
    orchestrack.promote("churn/1", "churn", alias="champion")
    _scored_run("churn/2", 0.80)
    decision = check_gate("churn/2", {"baseline": {"run": "champion", "model": "churn",
                                                   "max_regression": {"auc": 0.02}}})
    assert (decision.outcome, decision.baseline_run) == (GateOutcome.FAILED, champion.run_id)
    with pytest.raises(PromotionRefusedError) as refused:
        orchestrack.promote("churn/2", "churn", alias="champion")
    assert decision.summary in str(refused.value)
    champion_now = open_registry().alias("churn", "champion")
    assert champion_now is not None and champion_now.run_id == champion.run_id
