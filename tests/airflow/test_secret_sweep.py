"""A real Airflow DAG run (dag.test()) handed known secrets writes none of them: not into the embedded
store, its artifacts or journal, not into a log line of ours (captured, and in the task logs).

The DAG's params hold secrets by name and by shape, one task records every kind of fact with secrets
in it (tests/seeded_secrets.py), another raises an exception whose message and chain hold secrets.
Airflow keeps the user's own params and exception in its metadata database and task logs: that is
the user's code talking to Airflow, not orchestrack, and is not searched.
"""

from __future__ import annotations

import json
import logging
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrack
from orchestrack import stores
from tests.airflow.test_dag_test import load_dag
from tests.seeded_secrets import ENV_TOKEN, sweep_files, sweep_texts

pytestmark = pytest.mark.integration


#: The DAG, written into the DAGs folder for the test only (dag.test() runs a DAG its bundle holds).
DAG_FILE = textwrap.dedent("""
    from datetime import datetime
    from pathlib import Path
    import tempfile

    from airflow.sdk import DAG, task

    import orchestrack
    from orchestrack.airflow import TrackRunOperator
    from tests.seeded_secrets import BEARER, DB_URL, PARAM_PASSWORD, SECRET_LOG, secret_error, seed_through_api

    with DAG("secret_sweep", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
             default_args={"owner": "ml-platform"},
             params={"db_password": PARAM_PASSWORD, "dsn": DB_URL, "header": f"Authorization: Bearer {BEARER}",
                     "notes": SECRET_LOG}) as dag:
        track = TrackRunOperator(task_id="orchestrack", purpose="tuning")

        @task
        def seed() -> None:
            run = orchestrack.active_run()
            assert run is not None
            seed_through_api(run, Path(tempfile.mkdtemp(prefix="secret-sweep-")))

        @task
        def crash() -> None:
            raise secret_error()

        track >> [seed(), crash()]
""")


@pytest.fixture
def dag_file(dags_folder: Path) -> Iterator[Path]:
    path = dags_folder / "secret_sweep.py"
    path.write_text(DAG_FILE)
    yield path
    path.unlink()


def _orchestrack_lines(logs: Path) -> str:
    """The lines orchestrack's loggers wrote into Airflow's task logs (JSON lines naming their logger,
    or text lines naming it)."""
    lines = []
    for folder, _, names in os.walk(logs):
        for name in names:
            for line in (Path(folder) / name).read_text(errors="replace").splitlines():
                try:
                    logger = str(json.loads(line).get("logger", ""))
                except (ValueError, AttributeError):
                    logger = line
                if "orchestrack" in logger:
                    lines.append(line)
    return "\n".join(lines)


def test_an_airflow_dag_run_handed_secrets_writes_none(dag_file: Path, orchestrack_home: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MY_API_TOKEN", ENV_TOKEN)
    caplog.set_level(logging.DEBUG, "orchestrack")
    dag_run = load_dag(dag_file.parent, dag_file.name).test()
    record = orchestrack.get_run(f"airflow/secret_sweep/{dag_run.run_id}")
    # Airflow's own masker hides a param it finds sensitive whole; orchestrack then its password part
    assert record.params["db_password"] == "***" and record.params["dsn"] in (
        "***", "postgresql://user:***@db.internal:5432/warehouse")
    assert {t.name for t in record.tasks} >= {"seed", "crash"} and len(record.configs) == 2
    assert record.failure is not None and record.failure.task == "crash"
    stores.close_all()
    ours = "\n".join(r.getMessage() + (f"\n{r.exc_text}" if r.exc_text else "")
                     for r in caplog.records if r.name.startswith("orchestrack"))
    # dag.test() writes the task logs to the console, a scheduler's worker into files: read both
    out, err = capfd.readouterr()
    console = [line for line in (out + err).splitlines() if "orchestrack" in line]
    task_logs = "\n".join([_orchestrack_lines(Path(os.environ["AIRFLOW_HOME"]) / "logs"), *console])
    found = sweep_files(orchestrack_home) + sweep_texts({
        "record": record.model_dump_json(), "orchestrack's lines in the task logs": task_logs,
        "orchestrack's log lines at DEBUG": ours})
    assert found == [], "\n".join(found)
