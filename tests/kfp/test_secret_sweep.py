"""A kfp.local pipeline run handed known secrets writes none of them through orchestrack: not into the
embedded store, its artifacts or journal, not into the KFP outputs orchestrack writes (the exit task's
summary, in the pipeline root), not into a log line of ours.

The pipeline's parameters hold secrets by name and by shape; one component records every kind of
fact with secrets in it (tests/seeded_secrets.py), the next raises an exception whose message and
chain hold secrets. What kfp itself prints of the user's exception is the user's code talking to KFP.
"""

# No `from __future__ import annotations`: kfp reads the annotations of the pipeline compiled below.

import logging
from pathlib import Path

import pytest

import orchestrack
from orchestrack import stores
from orchestrack.kfp.decorators import kfp_version
from orchestrack.kfp.local_runs import local_runner_runs_exit_handlers
from tests.kfp import secret_pipelines
from tests.seeded_secrets import DB_PASSWORD, ENV_TOKEN, GITHUB_TOKEN, sweep_files, sweep_texts

CHECKOUT = Path(__file__).resolve().parents[2]


def test_a_kfp_pipeline_run_handed_secrets_writes_none(tmp_path: Path, orchestrack_home: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MY_API_TOKEN", ENV_TOKEN)
    monkeypatch.setenv("PYTHONPATH", str(CHECKOUT))  # the components import tests.seeded_secrets
    caplog.set_level(logging.DEBUG, "orchestrack")
    with pytest.raises(RuntimeError, match="FAILURE"):
        secret_pipelines.leaky()
    runs = orchestrack.search_runs()
    assert len(runs) == 1
    record = runs[0]
    assert record.params["seed.db_password"] == "***"
    assert record.params["seed.dsn"] == "postgresql://user:***@db.internal:5432/warehouse"
    assert {t.name for t in record.tasks} >= {"seed", "crash"} and len(record.configs) == 2
    assert record.failure is not None and record.failure.task == "crash"
    root = tmp_path / "pipeline-root"
    if local_runner_runs_exit_handlers(kfp_version()):  # the exit task wrote its summary into the outputs
        assert [p for p in root.rglob("summary") if p.is_file()]
    stores.close_all()
    out, err = capfd.readouterr()  # component logs: kfp.local prints each subprocess's output
    ours = [line for line in (out + err).splitlines() if "orchestrack" in line and "Traceback" not in line]
    found = sweep_files(orchestrack_home, root) + sweep_texts({
        "record": record.model_dump_json(), "orchestrack's lines in the component logs": "\n".join(ours),
        "orchestrack's log lines at DEBUG": "\n".join(r.getMessage() for r in caplog.records
                                                      if r.name.startswith("orchestrack"))})
    assert found == [], "\n".join(found)


def test_a_tracking_uri_with_credentials_is_forwarded_to_pods_without_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from kfp import compiler

    from orchestrack import kfp as otk

    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", f"https://ml:{DB_PASSWORD}@mlflow.ml.svc:5000")
    monkeypatch.setenv("ORCHESTRACK_S3__ENDPOINT_URL", f"http://minio:{GITHUB_TOKEN}@minio.kubeflow:9000")

    @otk.pipeline(name="secret-sweep-compiled", purpose="tuning", packages_to_install=[])
    def compiled() -> None:
        secret_pipelines.crash(dsn="postgresql://db/x")

    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(compiled, str(path))
    text = path.read_text()
    assert "https://mlflow.ml.svc:5000" in text and "http://minio.kubeflow:9000" in text
    assert sweep_texts({"compiled pipeline": text, "warnings": caplog.text}) == []
    assert "ORCHESTRACK_TRACKING_URI holds credentials" in caplog.text
