"""A real Prefect flow run handed known secrets writes none of them: not into the embedded store, its
artifacts or journal, not into the Prefect artifacts orchestrack publishes, not into a log line of ours.

The flow takes secrets as parameters (by name and by shape), a task records every kind of fact with
secrets in it (tests/seeded_secrets.py), and another task raises an exception whose message and chain
hold secrets, so the flow run fails. Prefect keeps the user's own parameters and exception in its
database and logs: that is the user's code talking to Prefect, not orchestrack, and not searched.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client, task
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId

import orchestrack
from orchestrack import stores
from orchestrack.prefect import tracked_flow
from tests.seeded_secrets import (
    BEARER,
    DB_URL,
    ENV_TOKEN,
    PARAM_PASSWORD,
    SECRET_LOG,
    secret_error,
    seed_through_api,
    sweep_files,
    sweep_texts,
)


@task
def seed(folder: str) -> None:
    run = orchestrack.active_run()
    assert run is not None
    seed_through_api(run, Path(folder))
    print(f"task output with {DB_URL}")  # the user's own print: Prefect's log, not ours


@task
def crash() -> None:
    raise secret_error()


@tracked_flow(purpose="tuning", log_prints=True)
def leaky(folder: str, db_password: str = PARAM_PASSWORD, dsn: str = DB_URL,
          header: str = f"Authorization: Bearer {BEARER}", notes: str = SECRET_LOG) -> None:
    seed(folder)
    crash()


def _published(flow_run_id: Any) -> tuple[list[str], list[str]]:
    """The artifacts published on the flow run, and the flow run's log lines from orchestrack's loggers,
    read back from Prefect's API (logs arrive in batches: wait until they stop growing)."""
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        count, deadline = -1, time.time() + 30
        while time.time() < deadline:
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
            if len(logs) == count:
                break
            count = len(logs)
            time.sleep(1.5)
    return ([f"{a.key} {a.description} {a.data}" for a in artifacts],
            [f"{line.name} {line.message}" for line in logs if line.name.startswith("orchestrack")])


def test_a_prefect_flow_run_handed_secrets_writes_none(tmp_path: Path, orchestrack_home: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MY_API_TOKEN", ENV_TOKEN)
    caplog.set_level(logging.DEBUG, "orchestrack")
    state = leaky(str(tmp_path), return_state=True)
    assert state.is_failed()
    flow_run_id = state.state_details.flow_run_id
    record = orchestrack.get_run(f"prefect/{flow_run_id}")
    assert record.params["db_password"] == "***" and record.params["dsn"] == "postgresql://user:***@db.internal:5432/warehouse"
    assert record.failure is not None and (record.failure.task or "").startswith("crash") and len(record.configs) == 2
    artifacts, prefect_logs = _published(flow_run_id)
    assert any(text.startswith("orchestrack-run ") for text in artifacts), artifacts
    stores.close_all()
    ours = "\n".join(r.getMessage() + (f"\n{r.exc_text}" if r.exc_text else "")
                     for r in caplog.records if r.name.startswith("orchestrack"))
    found = sweep_files(orchestrack_home) + sweep_texts({
        "record": record.model_dump_json(), **{f"Prefect artifact {i}": text for i, text in enumerate(artifacts)},
        "orchestrack's lines in the flow run's Prefect log": "\n".join(prefect_logs),
        "orchestrack's log lines at DEBUG": ours})
    assert found == [], "\n".join(found)
