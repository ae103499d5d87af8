"""Test sessions, one environment each (Airflow 3 and Prefect 3 cannot share one).

`scripts/test` runs every default session; `scripts/test -s core` runs one. uv builds each
environment in seconds from its cache.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "core", "airflow", "prefect", "kfp"]

PYTHON = "3.11"
AIRFLOW = "apache-airflow==3.3.2"  # Airflow 3.3 and Prefect 3.9 cannot share an environment
PREFECT = "prefect==3.9.1"
KFP = "kfp==2.17.3"


def run_pytest(session: nox.Session, suite: str, *paths: str) -> None:
    """Run pytest and fail loudly when it ran no test (pytest's exit code 5), instead of passing."""
    # Not session.create_tmp(): it points TMPDIR into the checkout, where tests would see our git repo.
    report = Path(session.virtualenv.location) / f"{suite}-junit.xml"
    session.run("python", "-m", "pytest", *paths, f"--junitxml={report}", *session.posargs,
                success_codes=[0, 5], env={"ORCHESTRACK_STRICT": "1"})
    suites = ElementTree.parse(report).getroot().iter("testsuite")
    ran = sum(int(s.get("tests", 0)) - int(s.get("skipped", 0)) for s in suites)
    if ran == 0:
        session.error(f"the {suite} suite ran no test: check the test paths and markers ({' '.join(paths)})")


@nox.session(python=PYTHON)
def core(session: nox.Session) -> None:
    """The core: record, lifecycle, embedded store contract, CLI, multi-process and example tests."""
    session.install("-e", ".[dev]")
    run_pytest(session, "core", "tests/unit", "tests/contract", "tests/integration")


@nox.session(python=PYTHON)
def airflow(session: nox.Session) -> None:
    """The Airflow 3 adapter against real Airflow: dag.test() on its SQLite metadata DB."""
    session.install("-e", ".[dev]", AIRFLOW)
    run_pytest(session, "airflow", "tests/airflow")


@nox.session(python=PYTHON)
def prefect(session: nox.Session) -> None:
    """The Prefect 3 adapter against a real `prefect server` on loopback."""
    session.install("-e", ".[dev]", PREFECT)
    run_pytest(session, "prefect", "tests/prefect")


@nox.session(python=PYTHON)
def kfp(session: nox.Session) -> None:
    """The Kubeflow Pipelines adapter: kfp.local running the real components, and compiled YAML."""
    # pip too: every lightweight component's command runs `python3 -m pip install kfp==...` first
    # (already satisfied here, so nothing is downloaded), and a uv environment has no pip by default.
    session.install("-e", ".[dev]", KFP, "pip")
    run_pytest(session, "kfp", "tests/kfp")


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the package (the public API stays typed)."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("mypy", "src")


@nox.session(python=PYTHON)
def example(session: nox.Session) -> None:
    """The main job: the example pipeline into the embedded store, then `orchestrack show`."""
    session.install("-e", ".")
    session.run("bash", "examples/python_pipeline/run_example.sh", external=True)


@nox.session(python=PYTHON)
def example_airflow(session: nox.Session) -> None:
    """The main job's Airflow half: the example DAG run by real Airflow 3, then `orchestrack show`."""
    session.install("-e", ".", AIRFLOW)
    session.run("bash", "examples/airflow/run_example.sh", external=True)


@nox.session(python=PYTHON)
def benchmark(session: nox.Session) -> None:
    """How long one run's lifecycle takes (embedded store, and MLflow for comparison), and how long
    failure diagnosis takes."""
    session.install("-e", ".", "mlflow==3.17.2")
    session.run("python", "benchmarks/lifecycle.py", *session.posargs)
    session.run("python", "benchmarks/classify.py")


@nox.session(python=PYTHON)
def benchmark_prefect(session: nox.Session) -> None:
    """What tracking adds to a Prefect flow run (plain vs tracked, interleaved)."""
    session.install("-e", ".", PREFECT)
    session.run("python", "benchmarks/prefect_overhead.py")
