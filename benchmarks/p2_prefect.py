"""P2 for Prefect: what tracking adds to a flow run's wall time. One flow body of 200 task runs
(``prepare``, a 197-item ``.map`` of ``featurize``, ``aggregate``, ``report``), run as a plain
``@flow`` and under ``orchestrack.prefect.tracked_flow``, interleaved, against one temporary Prefect
API server (``prefect_test_harness``: a real server subprocess on a temporary SQLite database), with
``ORCHESTRACK_HOME`` in a temporary directory (the embedded store). Target: tracked / plain at most
1.03x; the absolute cost per task run is reported beside it, and the same comparison in CPU time of
the flow's process (less disturbed by other work on the machine than wall time). The facts also say what the tracked
runs left in the store (runs, and task attempts per run), so a benchmark of a tracker that records
nothing shows it.

    python -m benchmarks.p2_prefect [--quick] [--repeats N] [--json PATH]     (from the repo root)

``--quick`` (a smoke test, well under a minute) maps 17 items (20 task runs) and runs each case 3 times.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path

from prefect import flow, task
from prefect.testing.utilities import prefect_test_harness

from benchmarks.measure import (
    Comparison,
    Report,
    Target,
    arguments,
    cpu_timed,
    embedded_store_in,
    finish,
    interleaved,
    tracked_run_facts,
)
from orchestrack.prefect import tracked_flow

#: Task runs in one flow run: 3 plain tasks and a map over the rest.
TASKS = 200
QUICK_TASKS = 20
PLAIN_TASKS = 3
REPEATS = 11


@task
def prepare(width: int) -> list[int]:
    return list(range(width))


@task
def featurize(item: int) -> int:
    return sum(i * i for i in range(item % 17 + 50))


@task
def aggregate(values: list[int]) -> float:
    return sum(values) / max(len(values), 1)


@task
def report(mean: float, items: list[int]) -> str:
    return f"{len(items)} items, mean {mean:.1f}"


def pipeline(tasks: int = TASKS) -> str:
    """The flow body: ``tasks`` task runs in all, all but three of them one map."""
    items = prepare(tasks - PLAIN_TASKS)
    features = featurize.map(items)
    mean = aggregate(features)  # waits for every mapped run
    return report(mean, items)


plain = flow(name="p2-plain")(pipeline)
tracked = tracked_flow(pipeline, name="p2-tracked", purpose="baseline")


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.splitlines()[0], argv, repeats=REPEATS)
    tasks = QUICK_TASKS if args.quick else TASKS
    warmup = 1
    with (tempfile.TemporaryDirectory(prefix="orchestrack-p2-prefect-") as work,
          embedded_store_in(Path(work) / "orchestrack")):
        with prefect_test_harness(server_startup_timeout=120):
            cpu: dict[str, list[float]] = {"plain": [], "tracked": []}
            samples = interleaved({"plain": cpu_timed(lambda: plain(tasks), cpu["plain"]),
                                   "tracked": cpu_timed(lambda: tracked(tasks), cpu["tracked"])},
                                  args.repeats, warmup=warmup)
        facts = tracked_run_facts(args.repeats + warmup)
    per_task = (statistics.median(samples["tracked"]) - statistics.median(samples["plain"])) / tasks
    comparison = Comparison(f"flow run, {tasks} task runs: tracked vs plain", "tracked", "plain",
                            samples["tracked"], samples["plain"], Target("slower", 1.03))
    comparison.notes.append(f"tracking adds {per_task:+.3f} ms a task run (difference of medians / {tasks})")
    cpu_comparison = Comparison("  the same, CPU time of the flow's process", "tracked", "plain",
                                cpu["tracked"][warmup:], cpu["plain"][warmup:], Target("slower", 1.03))
    cpu_per_task = (statistics.median(cpu["tracked"][warmup:]) - statistics.median(cpu["plain"][warmup:])) / tasks
    cpu_comparison.notes.append(f"tracking adds {cpu_per_task:+.3f} ms of CPU a task run (the server's own excluded)")
    report = Report("p2_prefect", "Prefect flow run wall time, tracked_flow vs plain @flow", args.quick,
                    [comparison, cpu_comparison], {"tasks_per_flow_run": tasks, "map_width": tasks - PLAIN_TASKS,
                                   "repeats": args.repeats, "ms_per_task": round(per_task, 4),
                                   "cpu_ms_per_task": round(cpu_per_task, 4), **facts})
    return finish(report, args)


if __name__ == "__main__":
    main()
