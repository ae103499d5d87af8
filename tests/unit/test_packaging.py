"""`import orchestrack` stays light, and the package declares what the issue promises."""

from __future__ import annotations

import json
import shutil
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
    assert core == {"pydantic", "click", "rich", "pyyaml"}  # pyyaml: gate specs


def _noxfile() -> object:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "noxfile.py"
    spec = importlib.util.spec_from_file_location("orchestrack_noxfile", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extras_allow_exactly_the_tested_orchestrator_versions() -> None:
    """`pip install orchestrack[airflow]` must not move an orchestrator inside the supported range,
    and must not admit a major nobody tested."""
    noxfile = _noxfile()
    extras = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for orchestrator, minors in noxfile.MATRIX.items():  # type: ignore[attr-defined]
        oldest = min(minors, key=lambda minor: tuple(int(p) for p in minor.split(".")))
        major = int(oldest.split(".")[0])
        package = noxfile.PACKAGE[orchestrator]  # type: ignore[attr-defined]
        assert extras[orchestrator] == [f"{package}>={oldest},<{major + 1}"], extras[orchestrator]


def test_the_readme_version_table_is_the_one_the_noxfile_makes() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = _noxfile().supported_versions_table()  # type: ignore[attr-defined]
    assert f"-->\n{table}\n<!-- /supported-versions -->" in readme, "run `scripts/test -s readme_versions`"


def test_the_two_lanes_of_scripts_test_run_every_default_session_once() -> None:
    nox = shutil.which("nox") or str(Path(sys.executable).parent / "nox")
    listed = json.loads(subprocess.run([nox, "-l", "--json"], cwd=Path(__file__).resolve().parents[2],
                                       capture_output=True, text=True, check=True, timeout=120).stdout)
    lanes = {s["session"]: s["tags"] for s in listed if s["tags"]}
    assert all(len(tags) == 1 and tags[0] in ("lane-1", "lane-2") for tags in lanes.values()), lanes
    defaults = subprocess.run([nox, "-l"], cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
                              check=True, timeout=120).stdout
    selected = {line.split()[1] for line in defaults.splitlines() if line.startswith("* ")}
    assert set(lanes) == selected  # every default session in exactly one lane, nothing else
