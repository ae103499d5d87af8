"""Airflow 3 for real: a private AIRFLOW_HOME with a migrated SQLite metadata DB, the DAGs in
tests/airflow/dags (plus the example DAG) and orchestrack's plugin loaded from its entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

DAGS = Path(__file__).parent / "dags"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "airflow" / "churn_train_dag.py"


def pytest_configure(config: pytest.Config) -> None:
    # Airflow reads its configuration once, at import: set it before anything imports airflow.
    home = Path(tempfile.mkdtemp(prefix="orchestrack-airflow-"))
    dags = home / "dags"
    shutil.copytree(DAGS, dags)
    shutil.copy(EXAMPLE, dags / EXAMPLE.name)
    os.environ.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    })
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    return Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
