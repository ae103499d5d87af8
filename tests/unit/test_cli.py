"""The ``orchestrack`` command line, run against real runs in a temporary embedded store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack import stores
from orchestrack.cli import main
from tests.cli_runner import CliRunner, Result

Runs = tuple[orchestrack.RunRecord, orchestrack.RunRecord]


@pytest.fixture(autouse=True)
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh store per test, strict so tracking faults fail loudly; stores closed afterwards."""
    home = tmp_path / "cli-home"
    monkeypatch.setenv("ORCHESTRACK_HOME", str(home))
    monkeypatch.setenv("ORCHESTRACK_STRICT", "1")
    monkeypatch.delenv("ORCHESTRACK_TRACKING_URI", raising=False)
    monkeypatch.delenv("ORCHESTRACK_RUN_KEY", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)  # piped output then uses the CLI's fixed wide layout
    yield home
    stores.close_all()


@pytest.fixture
def two_runs() -> Runs:
    """A succeeding run and one whose task raises FileNotFoundError (labelled data-error)."""
    good = orchestrack.start_run(key="cli/good", owner="ml", purpose="baseline", pipeline="demo",
                                 params={"epochs": 3})
    with good.task("train"):
        good.log_params({"lr": 0.1})
        good.log_metrics({"auc": 0.9})
    bad = orchestrack.start_run(key="cli/bad", owner="ml", purpose="tuning", pipeline="demo",
                                params={"epochs": 3})
    with pytest.raises(FileNotFoundError), bad.task("load"):
        bad.log_params({"lr": 0.2})
        raise FileNotFoundError("data/train.parquet")
    finished = good.finish(), bad.finish()
    assert finished[0] is not None and finished[1] is not None
    return finished  # type: ignore[return-value]


def invoke(*args: str, stdin: str | None = None) -> Result:
    """Run the CLI in-process; stdout and stderr stay separate on the result."""
    return CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)


def as_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- runs ---------------------------------------------------------------------------------------


def test_runs_json_lists_both_runs_with_their_status(two_runs: Runs) -> None:
    listed = {item["key"]: item for item in as_json(invoke("runs", "--json"))}
    assert set(listed) == {"cli/good", "cli/bad"}
    assert listed["cli/good"]["status"] == "succeeded"
    assert listed["cli/bad"]["status"] == "failed"
    assert listed["cli/bad"]["failure"]["reason"] == "data-error"


def test_runs_filters_by_status_and_reason(two_runs: Runs) -> None:
    failed = as_json(invoke("runs", "--status", "failed", "--json"))
    assert [item["key"] for item in failed] == ["cli/bad"]
    by_reason = as_json(invoke("runs", "--reason", "data-error", "--json"))
    assert [item["key"] for item in by_reason] == ["cli/bad"]
    assert as_json(invoke("runs", "--purpose", "ablation", "--json")) == []


def test_runs_table_shows_short_ids_status_and_reason(two_runs: Runs) -> None:
    good, bad = two_runs
    result = invoke("runs")
    assert result.exit_code == 0
    assert good.run_id[:8] in result.stdout and bad.run_id[:8] in result.stdout
    assert good.run_id not in result.stdout  # only the short id
    line = next(line for line in result.stdout.splitlines() if bad.run_id[:8] in line)
    assert "failed" in line and "data-error" in line and "cli/bad" in line


def test_runs_rejects_an_unknown_status_listing_the_valid_ones() -> None:
    result = invoke("runs", "--status", "bogus")
    assert result.exit_code == 2
    assert "bogus" in result.stderr
    for choice in ("running", "succeeded", "failed", "cancelled"):
        assert choice in result.stderr


# -- show ---------------------------------------------------------------------------------------


def test_show_json_round_trips_to_a_run_record(two_runs: Runs) -> None:
    _, bad = two_runs
    shown = orchestrack.RunRecord.model_validate(as_json(invoke("show", "cli/bad", "--json")))
    assert shown == orchestrack.get_run("cli/bad")
    assert shown.run_id == bad.run_id


def test_show_accepts_a_run_id_prefix(two_runs: Runs) -> None:
    good, _ = two_runs
    assert as_json(invoke("show", good.run_id[:8], "--json"))["key"] == "cli/good"


def test_show_of_a_failed_run_names_the_reason_and_the_sentence(two_runs: Runs) -> None:
    _, bad = two_runs
    assert bad.failure is not None
    result = invoke("show", "cli/bad")
    assert result.exit_code == 0
    assert "data-error" in result.stdout
    assert bad.failure.summary in result.stdout
    assert "data/train.parquet" in bad.failure.summary
    assert "load" in result.stdout and bad.run_id in result.stdout


def test_show_of_a_succeeded_run_lists_params_and_metrics(two_runs: Runs) -> None:
    result = invoke("show", "cli/good")
    assert result.exit_code == 0
    assert "Failure" not in result.stdout
    assert any(line.split()[:2] == ["lr", "0.1"] for line in result.stdout.splitlines() if line.strip())
    assert any(line.split()[:1] == ["auc"] and "0.9" in line for line in result.stdout.splitlines())


def test_show_of_an_unknown_run_is_a_one_line_error() -> None:
    result = invoke("show", "no/such-run")
    assert result.exit_code == 1
    assert "no/such-run" in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_bad_tracking_uri_is_a_clean_error() -> None:
    result = invoke("--tracking-uri", "bogus://nowhere", "runs")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "bogus://nowhere" in result.stderr
    assert "Traceback" not in result.output


# -- compare ------------------------------------------------------------------------------------


def test_compare_marks_a_differing_param_and_not_an_equal_one(two_runs: Runs) -> None:
    good, bad = two_runs
    data = as_json(invoke("compare", "cli/good", "cli/bad", "--json"))
    assert data["runs"] == [good.run_id, bad.run_id]
    rows = {(row["section"], row["field"]): row for row in data["rows"]}
    assert rows[("params", "lr")] == {"section": "params", "field": "lr", "values": [0.1, 0.2], "differs": True}
    assert rows[("params", "epochs")]["differs"] is False
    assert rows[("run", "status")]["values"] == ["succeeded", "failed"]
    assert rows[("run", "failure reason")]["values"] == [None, "data-error"]
    assert rows[("metrics", "auc")]["values"] == [0.9, None]

    table = invoke("compare", "cli/good", "cli/bad").stdout.splitlines()
    lr_line = next(line for line in table if "lr" in line.split())
    epochs_line = next(line for line in table if "epochs" in line.split())
    assert lr_line.split()[0] == "≠"
    assert "≠" not in epochs_line


def test_compare_needs_two_runs(two_runs: Runs) -> None:
    result = invoke("compare", "cli/good")
    assert result.exit_code == 2
    assert "at least two runs" in result.stderr


# -- failures -----------------------------------------------------------------------------------


def test_failures_counts_the_data_error(two_runs: Runs) -> None:
    _, bad = two_runs
    data = as_json(invoke("failures", "--json"))
    assert data["total"] == 1
    assert data["by_reason"] == {"data-error": 1}
    [example] = data["examples"]["data-error"]
    assert example["run_id"] == bad.run_id and example["task"] == "load"
    assert bad.failure is not None and example["summary"] == bad.failure.summary

    table = invoke("failures")
    assert table.exit_code == 0
    assert any(line.split()[:3] == ["data-error", "1", "100%"] for line in table.stdout.splitlines())
    assert as_json(invoke("failures", "--pipeline", "other", "--json"))["total"] == 0


# -- replay -------------------------------------------------------------------------------------


def _spool_file(home: Path, lines: list[dict[str, Any]]) -> Path:
    """A spool file as another host's worker would leave it (so no live process here owns it)."""
    spool = home / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / "other-host-1-20260101T000000.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_replay_applies_spooled_writes(cli_home: Path) -> None:
    run = orchestrack.start_run(key="cli/spooled", owner="ml", purpose="baseline")
    path = _spool_file(cli_home, [{"store": run.store.uri, "op": "set_tags", "at": "2026-01-01T00:00:00+00:00",
                                   "args": {"run_id": run.run_id, "tags": {"team": "vision"}}}])
    result = invoke("replay")
    assert result.exit_code == 0, result.output
    assert "Replayed 1 spooled write." in result.stdout
    assert orchestrack.get_run("cli/spooled").tags == {"team": "vision"}
    assert not path.exists()


def test_replay_reports_problems_with_exit_code_1(cli_home: Path) -> None:
    _spool_file(cli_home, [{"store": "bogus://nowhere", "op": "set_tags", "at": "2026-01-01T00:00:00+00:00",
                            "args": {"run_id": "x", "tags": {"a": "b"}}}])
    result = invoke("replay")
    assert result.exit_code == 1
    assert "Replayed 0 spooled writes." in result.stdout
    assert "bogus://nowhere" in result.stderr


# -- classify -----------------------------------------------------------------------------------


def test_classify_reads_log_text_from_stdin() -> None:
    text = "FileNotFoundError: x.parquet"
    result = invoke("classify", "--task", "load", stdin=text)
    assert result.exit_code == 0
    assert result.stdout.startswith("data-error: ")
    expected = orchestrack.classify_failure(text=text, task="load")
    assert result.stdout.strip() == f"{expected.reason.value}: {expected.summary}"
    assert "load" in result.stdout and "x.parquet" in result.stdout


def test_classify_uses_the_exit_code_and_prints_json() -> None:
    data = as_json(invoke("classify", "--exit-code", "137", "--task", "train", "--json", stdin=""))
    assert data["reason"] == "infra-error"
    assert data["detail"] == "killed"
    assert "train" in data["summary"]


# -- the real command ---------------------------------------------------------------------------


def test_python_dash_m_orchestrack_runs_in_a_subprocess(two_runs: Runs) -> None:
    stores.close_all()
    command = [sys.executable, "-m", "orchestrack"]
    listed = subprocess.run([*command, "runs", "--json"], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ), check=False)
    assert listed.returncode == 0, listed.stderr
    assert {item["key"]: item["status"] for item in json.loads(listed.stdout)} == {
        "cli/good": "succeeded", "cli/bad": "failed"}
    shown = subprocess.run([*command, "show", "cli/bad"], capture_output=True, text=True, timeout=60,
                           env=dict(os.environ), check=False)
    assert shown.returncode == 0, shown.stderr
    assert "data-error" in shown.stdout
    missing = subprocess.run([*command, "show", "no/such-run"], capture_output=True, text=True, timeout=60,
                             env=dict(os.environ), check=False)
    assert missing.returncode == 1
    assert "no/such-run" in missing.stderr and "Traceback" not in missing.stderr


def test_the_library_does_not_import_click_or_rich() -> None:
    probe = "import sys, orchestrack; print(sorted(m for m in ('click', 'rich') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_fetch_writes_an_artifact_file_and_folder_back(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"w" * 100)
    folder = tmp_path / "tokenizer"
    (folder / "vocab").mkdir(parents=True)
    (folder / "vocab" / "words.txt").write_text("a\nb\n")
    with orchestrack.start_run(key="fetch-me") as run:
        run.log_artifact(model)
        run.log_artifact(folder)
    out = invoke("fetch", "fetch-me", "model.pt", "--to", str(tmp_path / "back" / "model.pt"))
    assert out.exit_code == 0, out.output
    assert (tmp_path / "back" / "model.pt").read_bytes() == b"w" * 100
    assert invoke("fetch", "fetch-me", "tokenizer", "--to", str(tmp_path / "tok")).exit_code == 0
    assert (tmp_path / "tok" / "vocab" / "words.txt").read_text() == "a\nb\n"
    missing = CliRunner().invoke(main, ["fetch", "fetch-me", "weights.bin"])
    assert missing.exit_code == 2 and "no artifact named 'weights.bin'" in missing.output
    assert "model.pt, tokenizer" in missing.output
