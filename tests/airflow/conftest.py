"""Airflow 3 for real: a private AIRFLOW_HOME with a migrated SQLite metadata DB, the DAGs in
tests/airflow/dags (plus the example DAG) and orchestrack's plugin loaded from its entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import SessionHome

DAGS = Path(__file__).parent / "dags"
#: Airflow's own example DAGs (installed with Airflow) run through the adapter with one operator added.
UPSTREAM_EXAMPLES = {
    "example_bash_operator.py": "example_bash_operator",  # a BashOperator exiting 99 skips itself
    "example_short_circuit_operator.py": "example_short_circuit_operator",
    "example_skip_dag.py": "example_skip_dag",
    "example_nested_branch_dag.py": "example_nested_branch_dag",
    "example_dynamic_task_mapping.py": "example_dynamic_task_mapping",
    "example_task_group.py": "example_task_group",
    "example_setup_teardown.py": "example_setup_teardown",
    "example_failed_dag.py": "example_failed_dag",  # shipped since Airflow 3.2
}
#: Example files older Airflow minors do not ship (everything else must be found).
NEWER_EXAMPLES = {"example_failed_dag.py"}
# What a user does to an existing DAG, done to every DAG of an example file: one operator, upstream of
# its first tasks.
_ADD_THE_OPERATOR = """

# -- added by orchestrack's tests: one TrackRunOperator upstream of the DAG's first tasks --
import gc as _gc

from airflow.sdk import DAG as _DAG
from orchestrack.airflow import TrackRunOperator as _TrackRunOperator

# Every DAG this file made, bound to a name or not (Airflow's DAG processor finds them all).
for _dag in [_o for _o in _gc.get_objects()
             if issubclass(type(_o), _DAG) and _o.fileloc == __file__ and "orchestrack" not in _o.task_dict]:
    _roots = list(_dag.roots)
    with _dag:
        _track = _TrackRunOperator(task_id="orchestrack", purpose="baseline")
    _track >> _roots
"""


def upstream_example_sources() -> dict[str, Path]:
    """Where the installed Airflow keeps each of :data:`UPSTREAM_EXAMPLES` (found without importing
    Airflow, which reads its configuration once, at import). A missing one fails the run, except
    those of :data:`NEWER_EXAMPLES` on the older minors that do not ship them."""
    import importlib.util

    spec = importlib.util.find_spec("airflow")
    assert spec is not None and spec.submodule_search_locations
    package = Path(next(iter(spec.submodule_search_locations)))
    folders = [package / "example_dags", package / "providers" / "standard" / "example_dags"]
    found = {name: next((f / name for f in folders if (f / name).is_file()), None) for name in UPSTREAM_EXAMPLES}
    missing = sorted(name for name, path in found.items() if path is None and name not in NEWER_EXAMPLES)
    assert not missing, f"Airflow's example DAGs moved: {missing} not found under {folders}"
    return {name: path for name, path in found.items() if path is not None}


def _copy_upstream_examples(folder: Path, only: set[str] | None = None) -> None:
    """Airflow's own example files (``only`` these, when given) into ``folder``, each DAG with the operator added."""
    folder.mkdir()
    for filename, source in upstream_example_sources().items():
        if only is None or filename in only:
            (folder / filename).write_text(source.read_text() + _ADD_THE_OPERATOR)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "airflow" / "churn_train_dag.py"
#: The config file the example DAG reads, deployed next to it as its users would.
EXAMPLE_CONFIG = EXAMPLE.with_name("churn_train.yaml")


_home: SessionHome | None = None  # AIRFLOW_HOME: the metadata database, logs and DAGs of this session


def pytest_configure(config: pytest.Config) -> None:
    global _home
    # Airflow reads its configuration once, at import: set it before anything imports airflow.
    _home = SessionHome("orchestrack-airflow-")
    home = _home.path
    dags = home / "dags"
    shutil.copytree(DAGS, dags)
    shutil.copy(EXAMPLE, dags / EXAMPLE.name)
    shutil.copy(EXAMPLE_CONFIG, dags / EXAMPLE_CONFIG.name)
    _copy_upstream_examples(dags / "upstream")
    os.environ.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    })
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, timeout=300)
    # As in a deployment, the DAG processor has parsed the DAGs before they run: DAG versions and
    # assets exist (Airflow 3.0's dag.test() creates neither, and fails tasks with outlets without them).
    subprocess.run([str(airflow), "dags", "reserialize"], check=True, capture_output=True, timeout=300)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _home is not None:
        _home.passed = exitstatus == 0


def pytest_unconfigure(config: pytest.Config) -> None:
    if _home is not None:
        _home.finish()


@pytest.fixture(scope="session")
def dags_folder() -> Path:
    return Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
