"""P2: what tracking adds to an Airflow 3 DAG run. The same DAG of 30 trivial ``@task`` tasks (one
first task, 28 in a fan, one last task) runs under ``dag.test()`` plain and with a
:class:`~orchestrack.airflow.TrackRunOperator` upstream of its first task, interleaved. orchestrack's
listener plugin is loaded from its entry point in both cases, as in any deployment with orchestrack
installed (so the plain DAG pays what an untracked DAG pays there). Figures: the median tracked / plain
wall-time ratio (target <= 1.03x), the same for the CPU time of the process that runs every task
(steadier on a busy machine), and the absolute extra cost per task (ms). ``--quick`` runs a
6-task DAG twice each, without a warm-up round (a smoke test: Airflow 3.0's dag.test() is slow).

Run from the repository root, in an environment with Airflow 3 and orchestrack installed::

    python -m benchmarks.p2_airflow [--quick] [--repeats N] [--json PATH]

The DAG runs happen in a fresh interpreter with a private AIRFLOW_HOME (a migrated SQLite metadata DB,
a DAGs folder holding only the two DAG files, serialized as the DAG processor would), whatever Airflow
configuration the calling process has. Tracked runs go to ``$ORCHESTRACK_HOME`` (a private temporary
one when it is unset); every tracked DAG run is checked to have been recorded with all its tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.measure import Comparison, Report, Target, arguments, cpu_timed, finish, interleaved

TASKS = 30
#: ``--quick``'s DAG: Airflow 3.0's dag.test() takes over a second a task on a small machine, and a smoke
#: test must end within a minute there too.
QUICK_TASKS = 6
DESCRIPTION = f"Airflow dag.test() of {TASKS} trivial tasks: with a TrackRunOperator vs plain (listener loaded)"
REPO = Path(__file__).resolve().parents[1]

_DAG_SOURCE = '''"""orchestrack benchmark DAG: first >> {fan} fan tasks >> last, each doing nothing."""
from datetime import datetime

from airflow.sdk import DAG, task
{import_operator}

@task
def step() -> None:
    return None


with DAG("{dag_id}", start_date=datetime(2026, 1, 1), schedule=None, catchup=False,
         default_args={{"owner": "bench"}}) as dag:
    first = step.override(task_id="first")()
    fan = [step.override(task_id=f"fan_{{i:02d}}")() for i in range({fan})]
    last = step.override(task_id="last")()
    first >> fan >> last
{add_operator}'''


def dag_source(dag_id: str, *, tracked: bool, tasks: int = TASKS) -> str:
    """The text of a DAG file of ``tasks`` tasks; ``tracked`` adds a TrackRunOperator upstream of
    its first task (one more task: part of what tracking costs), as a user adds it to an existing DAG."""
    return _DAG_SOURCE.format(
        dag_id=dag_id, fan=tasks - 2,
        import_operator="\nfrom orchestrack.airflow import TrackRunOperator\n" if tracked else "",
        add_operator='    TrackRunOperator(task_id="orchestrack", purpose="baseline") >> first\n' if tracked else "")


def private_airflow_home(prefix: str, *, migrate: bool) -> dict[str, str]:
    """The environment of a process with its own Airflow home (and, with ``migrate``, metadata DB)."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    (home / "dags").mkdir()
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    if migrate:
        airflow = str(Path(sys.executable).parent / "airflow")
        subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, timeout=300, env=env)
    return env


def _load(path: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def worker(out: str, repeats: int, warmup: int) -> None:
    """In the fresh interpreter: run both DAGs interleaved, write samples and tracked run ids to ``out``."""
    from airflow.listeners.listener import get_listener_manager

    dags_folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    dags = {name: _load(dags_folder / f"p2_{name}.py") for name in ("plain", "tracked")}
    states: dict[str, list[str]] = {"plain": [], "tracked": []}
    run_ids: list[str] = []

    def case(name: str) -> Any:
        def run() -> None:
            dag_run = dags[name].test()
            states[name].append(str(getattr(dag_run.state, "value", dag_run.state)))
            if name == "tracked":
                run_ids.append(dag_run.run_id)
        return run

    cpu: dict[str, list[float]] = {"plain": [], "tracked": []}
    samples = interleaved({name: cpu_timed(case(name), cpu[name]) for name in ("plain", "tracked")}, repeats,
                          warmup=warmup)
    import airflow

    Path(out).write_text(json.dumps({
        "samples": samples, "cpu": {name: found[warmup:] for name, found in cpu.items()}, "states": states,
        "run_ids": run_ids, "airflow": airflow.__version__,
        "listeners": sorted(type(p).__name__ for p in get_listener_manager().pm.get_plugins()),
        "tasks": {name: len(dag.tasks) for name, dag in dags.items()}}))


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(DESCRIPTION, argv, repeats=30, quick_repeats=2)
    tasks = QUICK_TASKS if args.quick else TASKS
    env = private_airflow_home("orchestrack-p2-airflow-", migrate=True)
    if "ORCHESTRACK_HOME" not in env:  # kept afterwards: the report names it, with the tracked runs in it
        env["ORCHESTRACK_HOME"] = tempfile.mkdtemp(prefix="orchestrack-p2-home-")
    dags_folder = Path(env["AIRFLOW__CORE__DAGS_FOLDER"])
    for name in ("plain", "tracked"):
        (dags_folder / f"p2_{name}.py").write_text(dag_source(f"p2_{name}", tracked=name == "tracked", tasks=tasks))
    airflow = str(Path(sys.executable).parent / "airflow")
    # As in a deployment, the DAG processor has parsed the DAGs before they run (Airflow 3.0's dag.test()
    # needs their serialized form; 3.1 and later sync the DAGs folder on every dag.test() anyway).
    subprocess.run([airflow, "dags", "reserialize"], check=True, capture_output=True, timeout=300, env=env)
    out = Path(env["AIRFLOW_HOME"]) / "p2-result.json"
    done = subprocess.run([sys.executable, "-c", "import sys; from benchmarks.p2_airflow import worker; "
                           "worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))", str(out), str(args.repeats),
                           "0" if args.quick else "1"],
                          env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the DAG runs failed (exit {done.returncode}):\n{done.stdout[-4000:]}\n"
                           f"{done.stderr[-8000:]}")
    result = json.loads(out.read_text())
    shutil.rmtree(env["AIRFLOW_HOME"], ignore_errors=True)  # kept only when the runs failed, for reading
    failed = {name: [s for s in found if s != "success"] for name, found in result["states"].items()}
    if any(failed.values()):
        raise RuntimeError(f"a DAG run did not succeed: {failed}")
    samples = result["samples"]

    comparison = Comparison(
        name=f"dag.test(), {tasks} tasks", subject="tracked", baseline="plain",
        subject_samples=samples["tracked"], baseline_samples=samples["plain"], target=Target("slower", 1.03),
        unit="ms")
    extra = statistics.median(samples["tracked"]) - statistics.median(samples["plain"])
    per_task = statistics.median((t - p) / tasks for t, p in zip(samples["tracked"], samples["plain"], strict=True))
    comparison.notes.append(f"extra per DAG run {extra:.1f} ms = {extra / tasks:.2f} ms per task "
                            f"(median of per-repetition differences: {per_task:.2f} ms per task)")
    cpu = result["cpu"]
    cpu_comparison = Comparison(name="  the same, CPU time of the process (every task runs in it)", subject="tracked",
                                baseline="plain", subject_samples=cpu["tracked"], baseline_samples=cpu["plain"],
                                target=Target("slower", 1.03), unit="ms")
    cpu_extra = statistics.median(cpu["tracked"]) - statistics.median(cpu["plain"])
    cpu_comparison.notes.append(f"tracking adds {cpu_extra:+.1f} ms of CPU a DAG run, "
                                f"{cpu_extra / tasks:+.2f} ms a task")
    report = Report(benchmark="p2_airflow", description=DESCRIPTION, quick=args.quick,
                    comparisons=[comparison, cpu_comparison])
    report.facts.update({
        "airflow": result["airflow"],
        "listeners loaded": result["listeners"],
        "tasks per DAG": result["tasks"],
        "extra ms per DAG run (median tracked - median plain)": round(extra, 2),
        "extra ms per task": round(extra / tasks, 3),
        "extra ms per task (median of per-repetition differences)": round(per_task, 3),
        "extra CPU ms per DAG run (median tracked - median plain)": round(cpu_extra, 2),
        "tracked run keys": [f"airflow/p2_tracked/{run_id}" for run_id in result["run_ids"]],
        "orchestrack home": env["ORCHESTRACK_HOME"],
    })
    report.facts.update(_recorded(env["ORCHESTRACK_HOME"], report.facts["tracked run keys"]))  # type: ignore[arg-type]
    return finish(report, args)


def _recorded(home: str, keys: list[str]) -> dict[str, object]:
    """What the embedded store holds of the tracked DAG runs (each must be one run with every task)."""
    script = ("import json, sys, orchestrack\n"
              "runs = [orchestrack.get_run(k) for k in json.loads(sys.argv[1])]\n"
              "print(json.dumps({'runs recorded': len(runs),\n"
              "  'recorded statuses': sorted({str(getattr(r.status, 'value', r.status)) for r in runs}),\n"
              "  'task attempts per recorded run': sorted({len(r.tasks) for r in runs})}))")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(keys)], capture_output=True, text=True,
                          env={**os.environ, "ORCHESTRACK_HOME": home}, cwd=REPO, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
