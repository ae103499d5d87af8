"""P3: what a TrackRunOperator adds to parsing a DAG file, as Airflow 3's DAG processor pays it. The
DAG processor parses each file in a child forked from its long-lived manager process; so does this
benchmark: one fresh interpreter plays the manager (Airflow imported, providers' configuration
initialised as ``airflow dag-processor`` does, the files' ``airflow.*`` imports pre-imported as
``[dag_processor] parsing_pre_import_modules`` does), then forks one child per sample, which times
``DagBag(file)`` (the parse) and the DAG's serialization. Each sample is a fresh fork, so nothing the
previous parse imported is cached; the plain file and the same file with the operator alternate.

Two manager states are compared: ``start`` (plugins not loaded yet: the parse must import the
operator's module) and ``steady`` (the manager has loaded plugins, as it does once it writes its first
parsing results: orchestrack's listener plugin, and with it the operator's module, is already there).
The files are the 30-task DAG of P2 (benchmarks/p2_airflow.py), plain and with the operator.
Target: the parse costs at most +5 ms more with the operator. The report's facts list every module the
parse with the operator imports, and what importing orchestrack costs an Airflow process whose
providers are initialised (its provider entry point imports the ``orchestrack`` package).

The measuring processes import from compiled bytecode, as an installed deployment does.

Run from the repository root, in an environment with Airflow 3 and orchestrack installed::

    python -m benchmarks.p3_dag_parse [--quick] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.measure import Comparison, Report, Target, arguments, finish, interleaved
from benchmarks.p2_airflow import REPO, TASKS, dag_source, private_airflow_home

DESCRIPTION = f"DAG-file parse in a forked DAG-processor child, {TASKS}-task DAG: with a TrackRunOperator vs without"
STATES = ("start", "steady")
#: Modules the operator's constructor does not need, so parsing a DAG file must not import them: the
#: listener and plugin, the store and its SQLite driver, the run lifecycle, settings, capture, the gate.
UNNEEDED_AT_PARSE = ("orchestrack.airflow.listener", "orchestrack.airflow.plugin", "orchestrack.airflow.facts",
                     "orchestrack.lifecycle", "orchestrack.stores.sqlite", "orchestrack.settings",
                     "orchestrack.capture", "orchestrack.gate", "orchestrack.inputs", "sqlite3",
                     "pydantic_settings", "yaml")


def _heavy(modules: Sequence[str]) -> list[str]:
    return sorted(m for m in modules if m in UNNEEDED_AT_PARSE or m.startswith("orchestrack.stores.sqlite"))


def _fork(work: Any) -> dict[str, Any]:
    """Run ``work()`` (returning JSON-able facts) in a forked child, as the DAG processor does."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read)
        try:
            payload = json.dumps(work()).encode()
        except BaseException as err:  # reported to the parent, which raises
            payload = json.dumps({"error": repr(err)}).encode()
        with os.fdopen(write, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    if "error" in result:
        raise RuntimeError(f"the forked parse failed: {result['error']}")
    return dict(result)


def worker(out: str, state: str, repeats: int, warmup: int) -> None:
    """In a fresh interpreter: become a DAG-processor manager in ``state``, then sample forked parses."""
    import inspect

    import airflow
    import structlog
    from airflow.providers_manager import ProvidersManager

    ProvidersManager().initialize_providers_configuration()  # what `airflow dag-processor` does first
    try:
        from airflow.dag_processing.dagbag import DagBag  # Airflow 3.1 and later
    except ImportError:
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]  # Airflow 3.0
    from airflow.dag_processing import processor

    log = structlog.get_logger()
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    files = {name: folder / f"p3_{name}.py" for name in ("plain", "tracked")}
    for file in files.values():
        processor._pre_import_airflow_modules(str(file), log)
    options: dict[str, Any] = {"bundle_path": folder, "load_op_links": False}
    if "include_examples" in inspect.signature(DagBag).parameters:
        options["include_examples"] = False  # Airflow 3.0 (later minors never include them here)

    def parse(file: Path) -> dict[str, Any]:
        before = set(sys.modules)
        start = time.perf_counter()
        bag = DagBag(dag_folder=file, **options)
        parsed = time.perf_counter()
        serialized, errors = processor._serialize_dags(bag, log)
        done = time.perf_counter()
        return {"parse": (parsed - start) * 1000, "serialize": (done - parsed) * 1000,
                "imported": sorted(set(sys.modules) - before), "errors": {**bag.import_errors, **errors},
                "tasks": sorted(len(dag.tasks) for dag in bag.dags.values()), "serialized": len(serialized)}

    # A running manager has long imported the parse and serialization machinery (DagBag, the serialized
    # DAG model, the @task decorator's modules), which the first parse of a file otherwise pays: import
    # in the manager what parsing the plain file imports, orchestrack's modules excepted (there are none).
    machinery = [m for m in _fork(lambda: parse(files["plain"]))["imported"]
                 if not m.startswith("unusual_prefix_") and m.split(".")[0] != "orchestrack"]
    for module in machinery:
        importlib.import_module(module)
    if state == "steady":
        from airflow.listeners.listener import get_listener_manager

        get_listener_manager()  # loads the plugins (orchestrack's listener among them), as the manager does

    inner: dict[str, list[dict[str, Any]]] = {"plain": [], "tracked": []}
    outer = interleaved({name: (lambda name=name: inner[name].append(_fork(lambda: parse(files[name]))))
                         for name in files}, repeats, warmup=warmup)
    inner = {name: found[warmup:] for name, found in inner.items()}  # interleaved's warm-up rounds come first

    def orchestrack_import() -> dict[str, Any]:
        # What the provider entry point costs a process that has not imported orchestrack yet.
        for name in [m for m in sys.modules if m == "orchestrack" or m.startswith("orchestrack.")]:
            del sys.modules[name]
        before = set(sys.modules)
        start = time.perf_counter()
        import orchestrack.airflow.provider  # noqa: F401
        return {"ms": (time.perf_counter() - start) * 1000, "imported": sorted(set(sys.modules) - before)}

    cold = [_fork(orchestrack_import) for _ in range(max(3, min(repeats, 15)))]
    Path(out).write_text(json.dumps({
        "airflow": airflow.__version__, "inner": inner, "outer": outer, "machinery": len(machinery),
        "manager has": sorted(m for m in sys.modules if m == "orchestrack" or m.startswith("orchestrack.")),
        "orchestrack import ms": statistics.median(c["ms"] for c in cold),
        "orchestrack import modules": cold[0]["imported"]}))


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(DESCRIPTION, argv, repeats=150, quick_repeats=8)
    env = private_airflow_home("orchestrack-p3-airflow-", migrate=False)
    # An installed deployment imports from compiled bytecode (pip writes it): so do the measuring
    # processes, whatever this shell says (compiling orchestrack's sources in every forked parse is no
    # deployment's cost). Any source compiled here is compiled once, by the warm-up, into __pycache__.
    bytecode = "written and used" if env.pop("PYTHONDONTWRITEBYTECODE", None) is None else \
        "written and used (PYTHONDONTWRITEBYTECODE dropped for the measuring processes)"
    folder = Path(env["AIRFLOW__CORE__DAGS_FOLDER"])
    for name in ("plain", "tracked"):
        (folder / f"p3_{name}.py").write_text(dag_source(f"p3_{name}", tracked=name == "tracked"))
    report = Report(benchmark="p3_dag_parse", description=DESCRIPTION, quick=args.quick,
                    facts={"bytecode": bytecode})
    for state in STATES:
        out = Path(env["AIRFLOW_HOME"]) / f"p3-{state}.json"
        done = subprocess.run(
            [sys.executable, "-c", "import sys; from benchmarks.p3_dag_parse import worker; "
             "worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))",
             str(out), state, str(args.repeats), "1" if args.quick else "3"],
            env=env, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the {state} worker failed (exit {done.returncode}):\n{done.stderr[-8000:]}")
        result = json.loads(out.read_text())
        inner = result["inner"]
        for name, samples in inner.items():
            errors = [s["errors"] for s in samples if s["errors"]]
            if errors or any(s["serialized"] != 1 for s in samples):
                raise RuntimeError(f"parsing the {name} DAG file failed: {errors[:1]}")
        parse = {name: [s["parse"] for s in samples] for name, samples in inner.items()}
        whole = {name: [s["parse"] + s["serialize"] for s in samples] for name, samples in inner.items()}
        report.comparisons.append(Comparison(
            name=f"parse (DagBag), manager at {state}", subject="with operator", baseline="without",
            subject_samples=parse["tracked"], baseline_samples=parse["plain"], target=Target("extra", 5.0)))
        report.comparisons.append(Comparison(
            name=f"parse + serialize, manager at {state}", subject="with operator", baseline="without",
            subject_samples=whole["tracked"], baseline_samples=whole["plain"], target=Target("extra", 5.0)))
        tracked_imports = sorted({m for s in inner["tracked"] for m in s["imported"]})
        report.facts.update({
            f"{state}: airflow": result["airflow"],
            f"{state}: tasks parsed (without, with)": (inner["plain"][0]["tasks"], inner["tracked"][0]["tasks"]),
            f"{state}: orchestrack modules the manager already has": result["manager has"],
            f"{state}: modules the manager pre-imported from the plain file's parse": result["machinery"],
            f"{state}: modules the parse with the operator imports": tracked_imports,
            f"{state}: modules the parse without the operator imports": sorted(
                {m for s in inner["plain"] for m in s["imported"]}),
            f"{state}: unneeded modules the parse with the operator imports": _heavy(tracked_imports),
            f"{state}: fork + parse + serialize + exit, median ms (without, with)": (
                round(statistics.median(result["outer"]["plain"]), 2),
                round(statistics.median(result["outer"]["tracked"]), 2)),
            f"{state}: orchestrack package import, ms (once per Airflow process with providers initialised)":
                round(result["orchestrack import ms"], 1),
            f"{state}: modules that import brings": len(result["orchestrack import modules"]),
        })
    shutil.rmtree(env["AIRFLOW_HOME"], ignore_errors=True)  # kept only when a worker failed, for reading
    return finish(report, args)


if __name__ == "__main__":
    main()
