"""How much one run's lifecycle costs: open, 20 params, 20 metrics, a small artifact, 3 task
attempts, close. Runs against the embedded store and, when mlflow is installed, against MLflow's
fluent API with a local SQLite backend for the same work.

    python benchmarks/lifecycle.py [--runs 200]        (or: scripts/test -s benchmark)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

PARAMS = {f"param_{i}": i * 0.5 for i in range(20)}
METRICS = {f"metric_{i}": i / 20 for i in range(20)}


def orchestrack_lifecycle(artifact: Path) -> None:
    import orchestrack

    run = orchestrack.start_run(key=f"bench/{uuid.uuid4().hex}", owner="bench", purpose="baseline",
                                pipeline="bench")
    run.log_params(PARAMS)
    run.log_metrics(METRICS)
    run.log_artifact(artifact)
    for attempt in range(1, 4):
        with run.task("train", attempt=attempt):
            pass
    run.finish()


def mlflow_lifecycle(artifact: Path) -> None:
    import mlflow

    with mlflow.start_run():
        mlflow.log_params(PARAMS)
        mlflow.log_metrics(METRICS)
        mlflow.log_artifact(str(artifact))
        for attempt in range(1, 4):  # the nearest thing to a task attempt: a start and an end tag
            mlflow.set_tag(f"task.train.{attempt}", "running")
            mlflow.set_tag(f"task.train.{attempt}", "succeeded")


def measure(name: str, lifecycle: Callable[[Path], None], artifact: Path, runs: int) -> list[float]:
    lifecycle(artifact)  # warm-up: imports, schema creation, capture caches
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        lifecycle(artifact)
        timings.append((time.perf_counter() - start) * 1000)
    timings.sort()
    p95 = timings[int(len(timings) * 0.95) - 1]
    print(f"{name:<28} median {statistics.median(timings):7.2f} ms   p95 {p95:7.2f} ms   ({runs} runs)")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        os.environ["ORCHESTRACK_HOME"] = str(Path(work) / "orchestrack")
        artifact = Path(work) / "model.bin"
        artifact.write_bytes(os.urandom(4096))
        print(f"python {sys.version.split()[0]}, one lifecycle = open, 20 params, 20 metrics, 4 KiB artifact, "
              "3 task attempts, close")
        measure("orchestrack (embedded)", orchestrack_lifecycle, artifact, args.runs)
        try:
            import mlflow
        except ImportError:
            print("mlflow is not installed: `pip install mlflow` to compare")
            return
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        mlflow.set_tracking_uri(f"sqlite:///{Path(work) / 'mlflow.db'}")
        # Artifacts into the temporary folder too (MLflow's default is ./mlruns in the working directory).
        mlflow.create_experiment("bench", artifact_location=(Path(work) / "mlartifacts").as_uri())
        mlflow.set_experiment("bench")
        measure("mlflow fluent (sqlite)", mlflow_lifecycle, artifact, max(20, args.runs // 5))


if __name__ == "__main__":
    main()
