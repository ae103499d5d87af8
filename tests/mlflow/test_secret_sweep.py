"""Secrets seeded through every recording path never reach a real MLflow server or S3.

One run on each MLflow server of the store tests (MLflow 3 on PostgreSQL, MLflow 2 on SQLite), its
artifacts on a real S3 server (SeaweedFS), is handed known secrets by name and by shape
(tests/seeded_secrets.py), plus a failing task with a secret-laden exception and log. Then
everything is searched from the servers' side: MLflow's backend (the SQLite file with its -wal, or
a pg_dump of the PostgreSQL database), its artifact root and its log, every version of every object
in the bucket, and orchestrack's own folder (journal, spool) and log lines.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path

import pytest

import orchestrack
from orchestrack import stores
from orchestrack.outcome import Outcome, RunEnd, TaskReport
from orchestrack.record import TaskStatus
from tests.mlflow.conftest import delete_orchestrack_experiments
from tests.seeded_secrets import (
    BEARER,
    DB_URL,
    ENV_TOKEN,
    PARAM_PASSWORD,
    SECRET_LOG,
    SECRET_TEXT,
    hits,
    secret_error,
    seed_through_api,
    sweep_files,
    sweep_texts,
)
from tests.servers import MlflowServer, s3_client

pytestmark = pytest.mark.timeout(600)


def _backend_dump(server: MlflowServer, request: pytest.FixtureRequest, tmp_path: Path) -> list[Path]:
    """MLflow's backend store as files to search: the SQLite database (and its -wal), or a plain-text
    pg_dump of the PostgreSQL database the fixture created for the server."""
    if "postgresql" not in server.name:
        return sorted(server.home.glob(f"{server.name}.db*"))
    admin = request.getfixturevalue("postgres_uri")
    port = admin.rsplit(":", 1)[1].split("/", 1)[0]
    dump = tmp_path / "mlflow-backend.sql"
    pg_dump = shutil.which("pg_dump")
    assert pg_dump, "pg_dump (postgresql-client) reads the MLflow database back"
    with open(dump, "wb") as out:
        subprocess.run([pg_dump, "-h", "127.0.0.1", "-p", port, "-U", "postgres", "--data-only", "--inserts",
                        server.name.replace("-", "_")], check=True, stdout=out)
    assert dump.stat().st_size > 10_000 and b"orchestrack" in dump.read_bytes()
    return [dump]


def _bucket_objects(bucket: str, tmp_path: Path) -> Path:
    """Every version of every object in the bucket, downloaded into one folder."""
    client = s3_client()
    folder = tmp_path / "s3-objects"
    folder.mkdir()
    count = 0
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            body = client.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])["Body"].read()
            (folder / f"object-{count}").write_bytes(version["Key"].encode() + b"\n" + body)
            count += 1
    assert count >= 3, f"expected the artifact, config and prompt objects in s3://{bucket}, found {count}"
    return folder


def test_mlflow_backend_artifact_root_and_s3_objects_hold_no_secret(
        server: MlflowServer, bucket: str, tmp_path: Path, orchestrack_home: Path, request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    delete_orchestrack_experiments(server.url)
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", server.url)
    monkeypatch.setenv("ORCHESTRACK_ARTIFACT_URI", f"s3://{bucket}/team/runs")
    monkeypatch.setenv("MY_API_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("DATABASE_URL", DB_URL)
    inputs = tmp_path / "inputs"
    inputs.mkdir()

    run = orchestrack.start_run(key=f"sweep/{server.name}", owner="ml", pipeline="sweep",
                                params={"db_password": PARAM_PASSWORD, "dsn": DB_URL},
                                tags={"auth_header": f"Bearer {BEARER}"})
    seed_through_api(run, inputs)
    with pytest.raises(RuntimeError), run.task("train", details={"password": PARAM_PASSWORD, "conn": DB_URL}):
        raise secret_error()
    run.end_task(run.start_task("load"), TaskStatus.FAILED, text=SECRET_LOG, exit_code=1)
    run.report_tasks([TaskReport(task_id="external", name="external", attempt=1, outcome=Outcome.FAILED,
                                 message=SECRET_TEXT, details={"token": ENV_TOKEN})])
    closed = run.conclude(RunEnd(Outcome.FAILED, message=SECRET_LOG))
    assert closed is not None and closed.failure is not None
    record = orchestrack.get_run(f"sweep/{server.name}")
    assert record.params["db_password"] == "***" and record.params["dsn"] == "postgresql://user:***@db.internal:5432/warehouse"
    assert {a.task_id for a in record.tasks} == {"train", "load", "external"} and len(record.artifacts) >= 3
    stores.close_all()

    from mlflow import MlflowClient  # read back with MLflow's own client too: what a user of MLflow sees

    client = MlflowClient(tracking_uri=server.url)
    mlflow_runs = client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)
    assert any(r.data.params.get("db_password") == "***" for r in mlflow_runs)
    found = sweep_files(*_backend_dump(server, request, tmp_path), server.home / f"{server.name}-artifacts",
                        server.home / f"{server.name}.log", _bucket_objects(bucket, tmp_path), orchestrack_home)
    found += sweep_texts({"MLflow runs as MlflowClient reads them": repr([r.to_dictionary() for r in mlflow_runs]),
                          "record": record.model_dump_json(), "log lines at DEBUG": caplog.text})
    assert found == [], "\n".join(found)
    assert hits(SECRET_TEXT, "the seeds") != []  # the search finds what is there
