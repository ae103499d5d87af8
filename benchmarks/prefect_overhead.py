"""What tracking adds to a Prefect flow run: the same flow (20 tasks, a 50-item map) run plain and
tracked, interleaved, against one temporary Prefect server; medians and spread of wall time.

    scripts/test -s benchmark_prefect
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from prefect import flow, task
from prefect.testing.utilities import prefect_test_harness

from orchestrack.prefect import tracked_flow


@task
def step(n: int) -> int:
    return n + 1


def body() -> int:
    total = sum(step(n) for n in range(20))
    return total + sum(f.result() for f in step.map(range(50)))


plain = flow(name="plain")(body)
tracked = tracked_flow(body, name="tracked", purpose="baseline")


def main(repeats: int = 7) -> None:
    with tempfile.TemporaryDirectory() as work, prefect_test_harness():
        os.environ["ORCHESTRACK_HOME"] = str(Path(work) / "orchestrack")
        plain(), tracked()  # warm both paths
        times: dict[str, list[float]] = {"plain": [], "tracked": []}
        for _ in range(repeats):
            for name, run in (("plain", plain), ("tracked", tracked)):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        print(f"{name:8s} median {statistics.median(values) * 1000:7.1f} ms  "
              f"min {min(values) * 1000:7.1f}  max {max(values) * 1000:7.1f}  (70 task runs a flow run)")
    extra = statistics.median(times["tracked"]) - statistics.median(times["plain"])
    print(f"tracking adds {extra * 1000:.1f} ms a flow run ({extra / 70 * 1000:.2f} ms a task run), "
          f"ratio {statistics.median(times['tracked']) / statistics.median(times['plain']):.3f}")


if __name__ == "__main__":
    main()
