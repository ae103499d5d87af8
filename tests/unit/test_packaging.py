"""`import orchestrack` stays light, and the package declares what the issue promises."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

HEAVY = ("airflow", "prefect", "kfp", "mlflow", "boto3", "botocore", "click", "rich", "pynvml", "numpy", "pandas",
         "torch", "sqlalchemy")


def test_import_loads_no_orchestrator_or_heavy_library() -> None:
    probe = ("import sys, orchestrack; "
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


def test_extras_and_console_script() -> None:
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    assert {"airflow", "prefect", "kfp", "mlflow", "s3", "dev"} <= set(project["optional-dependencies"])
    assert project["scripts"]["orchestrack"] == "orchestrack.cli:main"
    core = {d.split(">")[0].split("[")[0].split("=")[0].strip() for d in project["dependencies"]}
    assert core == {"pydantic", "pydantic-settings", "click", "rich"}
