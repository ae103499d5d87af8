"""Secrets seeded through every path of the Python API and the CLI never reach anything written.

Known secrets (tests/seeded_secrets.py) go in by name and by shape: params, tags, data sets, configs,
prompts, LLM settings, features, metric slices, task details, a raised exception with its
traceback, a failing task's log, an orchestrator's failure message, and errors orchestrack raises
about bad input. Then every byte orchestrack left behind is read (the SQLite database with its -wal,
artifacts, spool files, the CLI's output and HTML report, every log line at DEBUG) and searched.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack import stores
from orchestrack.cli import main
from orchestrack.errors import StoreError
from orchestrack.outcome import Outcome, RunEnd, TaskReport
from orchestrack.record import TaskStatus
from orchestrack.settings import load_settings
from tests.cli_runner import CliRunner
from tests.seeded_secrets import (
    AWS_KEY_ID,
    AWS_SECRET,
    BEARER,
    DB_URL,
    ENV_TOKEN,
    GITHUB_TOKEN,
    JWT,
    PARAM_PASSWORD,
    SECRET_LOG,
    SECRET_TEXT,
    hits,
    secret_error,
    seed_through_api,
    sweep_files,
    sweep_texts,
)

pytestmark = pytest.mark.integration

_WRITES = ("log_params", "set_tags", "log_data", "log_config", "log_artifact", "log_metrics", "update_run",
           "record_tasks")


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets in the process environment, as a task's container has them."""
    monkeypatch.setenv("MY_API_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("DATABASE_URL", DB_URL)


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as a handler would write it, tracebacks included."""
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def _seed_failures(run: orchestrack.Run) -> None:
    """A task that raises a secret-laden exception, one that fails with a secret-laden log, and one
    an orchestrator reports failed with such a message."""
    with pytest.raises(RuntimeError), run.task("train", details={"password": PARAM_PASSWORD, "conn": DB_URL}):
        raise secret_error()
    started = run.start_task("load", details={"auth_header": f"Bearer {BEARER}"})
    run.end_task(started, TaskStatus.FAILED, text=SECRET_LOG, exit_code=1)
    run.report_tasks([TaskReport(task_id="external", name="external", attempt=1, outcome=Outcome.FAILED,
                                 message=SECRET_LOG, details={"token": ENV_TOKEN, "url": DB_URL})])
    run.report_tasks([TaskReport(task_id="killed", name="killed", attempt=1, outcome=Outcome.CRASHED,
                                 message=SECRET_TEXT)])


def _raised_messages() -> dict[str, str]:
    """Errors orchestrack raises about input that quotes a secret: their messages and tracebacks."""
    calls: dict[str, Callable[[], Any]] = {
        "metric value": lambda: orchestrack.log_metrics({"x": f"Bearer {BEARER}"}),
        "purpose": lambda: orchestrack.start_run(key="sweep/bad", purpose=GITHUB_TOKEN),
        "labels_as_of": lambda: orchestrack.log_dataset("d", "x.csv", labels_as_of=JWT),
        "leakage check": lambda: orchestrack.log_dataset("d", "x.csv", leakage_check=f"token={ENV_TOKEN}"),
        "unknown run": lambda: orchestrack.get_run(DB_URL),
        "task name": lambda: orchestrack.active_run().start_task(f"t\n{AWS_KEY_ID}"),  # type: ignore[union-attr]
        "status": lambda: orchestrack.active_run().finish(f"password={PARAM_PASSWORD}"),  # type: ignore[union-attr]
    }
    messages = {}
    for what, call in calls.items():
        with pytest.raises(orchestrack.OrchestrackError) as raised:
            call()
        messages[f"error for {what}"] = "".join(traceback.format_exception(raised.value))
    return messages


def _cli_outputs(tmp_path: Path) -> dict[str, str]:
    runner = CliRunner()
    log_file = tmp_path / "task.log"
    log_file.write_text(SECRET_LOG)
    (tmp_path / "out").mkdir()
    outputs = {}
    for args in (["runs"], ["runs", "--json"], ["show", "sweep/api"], ["show", "sweep/api", "--json"],
                 ["show", "sweep/cancelled", "--json"], ["failures"], ["failures", "--group"],
                 ["compare", "sweep/api", "sweep/cancelled", "--json"],
                 ["classify", str(log_file), "--explain"], ["classify", str(log_file), "--json"],
                 ["report", "sweep/api", "-o", str(tmp_path / "out" / "report.html")],
                 ["show", f"password={PARAM_PASSWORD}"]):
        result = runner.invoke(main, args)
        assert result.exit_code == (1 if args[-1].startswith("password=") else 0), (args, result.output)
        outputs[f"orchestrack {' '.join(args[:2])} output"] = result.output + (
            "".join(traceback.format_exception(result.exception)) if result.exception else "")
    return outputs


def test_api_cli_failures_and_debug_logs_write_no_secret(tmp_path: Path, orchestrack_home: Path, secret_env: None,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    run = orchestrack.start_run(key="sweep/api", owner="ml", pipeline="sweep",
                                params={"db_password": PARAM_PASSWORD, "dsn": DB_URL, "header": f"Bearer {BEARER}"},
                                tags={"deploy_token": GITHUB_TOKEN, "note": f"jwt {JWT}"})
    seed_through_api(run, tmp_path)
    _seed_failures(run)
    messages = _raised_messages()
    closed = run.conclude(RunEnd(Outcome.FAILED, message=SECRET_TEXT))
    cancelled = orchestrack.start_run(key="sweep/cancelled").conclude(RunEnd(Outcome.CANCELLED, message=SECRET_LOG))
    assert closed is not None and cancelled is not None
    diagnosis = orchestrack.explain_failure(secret_error(), text=SECRET_LOG, task="train")
    messages["explain_failure"] = "\n".join(diagnosis.explanation()) + str(diagnosis.as_json())
    messages["classify_failure"] = orchestrack.classify_failure(text=SECRET_TEXT).model_dump_json()
    version = orchestrack.promote("sweep/api", "churn", artifact="model.txt", force=True, alias="champion",
                                  note=f"approved by token={GITHUB_TOKEN} over {DB_URL}")
    messages["model version"] = version.model_dump_json()

    record = orchestrack.get_run("sweep/api")
    # Masked, not dropped: each path still recorded what it was given, readable where it is no secret.
    assert record.params["db_password"] == "***" and record.params["dsn"] == "postgresql://user:***@db.internal:5432/warehouse"
    assert record.params["lr"] == 0.1 and record.tags["deploy_token"] == "***"
    assert [a.status for a in record.tasks if a.task_id == "train"] == [TaskStatus.FAILED]
    assert record.failure is not None and "***" in (record.failure.evidence or record.failure.summary)
    assert {c.kind for c in record.configs} == {"config", "prompt"} and all(c.redacted for c in record.configs)
    outputs = _cli_outputs(tmp_path)
    assert "report.html" in str(list((tmp_path / "out").iterdir()))

    found = sweep_files(orchestrack_home, tmp_path / "out")  # db, -wal, artifacts, spool; the HTML report
    stores.close_all()  # the WAL is checkpointed into the database file at close: read both states
    found += sweep_files(orchestrack_home)
    found += sweep_texts({"record JSON": record.model_dump_json(), "closed record": closed.model_dump_json(),
                          "cancelled record": cancelled.model_dump_json(), **messages, **outputs,
                          "log lines at DEBUG": _log_text(caplog)})
    assert found == [], "\n".join(found)


def test_spooled_writes_and_their_warnings_hold_no_secret(tmp_path: Path, orchestrack_home: Path, secret_env: None,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ORCHESTRACK_STRICT", "0")
    caplog.set_level(logging.DEBUG)
    run = orchestrack.start_run(key="sweep/spool", params={"db_password": PARAM_PASSWORD, "dsn": DB_URL})

    def broken(op: str) -> Callable[..., None]:
        def write(**args: Any) -> None:  # a store whose error quotes what it was handed, as drivers do
            raise StoreError(f"disk I/O error in {op} of {args!r}")
        return write

    for op in _WRITES:
        monkeypatch.setattr(run.store, op, broken(op))
    seed_through_api(run, tmp_path)
    _seed_failures(run)
    run.finish()
    spool = load_settings().resolved_spool_dir
    spooled = [path for path in spool.rglob("*") if path.is_file()]
    assert spooled, f"nothing was spooled into {spool}"
    written = b"".join(path.read_bytes() for path in spooled)
    assert b"log_params" in written and b"record_tasks" in written and b"postgresql://user:***@" in written
    assert "spooled to" in caplog.text
    found = sweep_files(orchestrack_home) + sweep_texts({"log lines at DEBUG": _log_text(caplog)})
    assert found == [], "\n".join(found)

    for op in _WRITES:  # the store is back: replaying delivers the masked writes, still nothing secret
        monkeypatch.delattr(run.store, op)
    applied, problems = orchestrack.replay_spool()
    assert applied and not problems
    replayed = orchestrack.get_run("sweep/spool")
    assert replayed.params["db_password"] == "***" and replayed.params["conn"] == "postgresql://user:***@db.internal:5432/warehouse"
    stores.close_all()
    assert sweep_files(orchestrack_home) + hits(replayed.model_dump_json(), "replayed record") == []


def test_every_seed_is_found_when_it_is_there(tmp_path: Path) -> None:
    """The search itself works: each seed, written raw, is found (so zero hits above means something)."""
    (tmp_path / "raw.txt").write_text(SECRET_TEXT + SECRET_LOG + str(secret_error()) + AWS_SECRET)
    found = sweep_files(tmp_path)
    assert len(found) == len(set(found)) and {hit.split(" in ")[0] for hit in found} == {
        "aws access key id", "aws secret key", "bearer token", "jwt", "private key", "url password", "github token",
        "db_password param", "MY_API_TOKEN env var", "exception message", "traceback"}
