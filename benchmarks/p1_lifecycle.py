"""P1: one run's lifecycle (open, 20 params, 20 metrics, a 4 KiB artifact, 3 task attempts, close)
through orchestrack's public API into the embedded store, side by side with

- MLflow's fluent API on MLflow's own SQLite store (the same work; target: orchestrack >= 30x faster),
  when ``mlflow`` is installed;
- the floor: raw ``sqlite3`` running the very statements the embedded store ran, in the same
  transactions, plus the artifact's copy (target: orchestrack within 2.5x of it).

The floor is made by tracing (``sqlite3.Connection.set_trace_callback``) the SQL of one orchestrack
lifecycle, then replaying it with fresh ids on a plain connection with the store's pragmas.

    python -m benchmarks.p1_lifecycle [--quick] [--repeats N] [--json PATH]
    scripts/test -s benchmarks          (every benchmark, each in its orchestrator's environment)
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks.measure import Comparison, Report, Target, arguments, finish, interleaved

PARAMS = {f"param_{i}": i * 0.5 for i in range(20)}
METRICS = {f"metric_{i}": i / 20 for i in range(20)}


def orchestrack_lifecycle(artifact: Path, key: str | None = None) -> str:
    """One lifecycle through the public API; the run's id."""
    import orchestrack

    run = orchestrack.start_run(key=key or f"bench/{uuid.uuid4().hex}", owner="bench", purpose="baseline",
                                pipeline="bench")
    run.log_params(PARAMS)
    run.log_metrics(METRICS)
    run.log_artifact(artifact)
    for attempt in range(1, 4):
        with run.task("train", attempt=attempt):
            pass
    run.finish()
    return run.run_id


def mlflow_lifecycle(artifact: Path) -> None:
    """The same work through MLflow's fluent API (a task attempt: a start and an end tag)."""
    import mlflow

    with mlflow.start_run():
        mlflow.log_params(PARAMS)
        mlflow.log_metrics(METRICS)
        mlflow.log_artifact(str(artifact))
        for attempt in range(1, 4):
            mlflow.set_tag(f"task.train.{attempt}", "running")
            mlflow.set_tag(f"task.train.{attempt}", "succeeded")


class RawFloor:
    """The embedded store's statements for one lifecycle, replayed by plain ``sqlite3``."""

    def __init__(self, database: Path, artifact: Path, artifacts: Path) -> None:
        from orchestrack.lifecycle import store_for

        store = store_for(None)
        statements: list[str] = []
        connection = store._connect()  # type: ignore[attr-defined]
        connection.set_trace_callback(statements.append)
        key = f"traced/{uuid.uuid4().hex}"
        run_id = orchestrack_lifecycle(artifact, key)
        connection.set_trace_callback(None)
        self.script = [s for s in statements if not s.startswith("PRAGMA")]
        self.identities = (run_id, key)
        self.connection = sqlite3.connect(database, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode = WAL")
        self.connection.execute("PRAGMA synchronous = NORMAL")
        self.artifact, self.artifacts = artifact, artifacts
        self.statements = len(self.script)
        self.transactions = sum(1 for s in self.script if s.startswith("BEGIN"))

    def lifecycle(self) -> None:
        """Replay the traced statements with a new run id and key, and copy the artifact once."""
        fresh = uuid.uuid4().hex
        swap = re.compile("|".join(re.escape(identity) for identity in self.identities))
        replacements = {self.identities[0]: str(uuid.UUID(fresh)), self.identities[1]: f"raw/{fresh}"}
        execute = self.connection.execute
        for statement in self.script:
            execute(swap.sub(lambda m: replacements[m.group(0)], statement))
        shutil.copyfile(self.artifact, self.artifacts / fresh)


def main(argv: Sequence[str] | None = None) -> Report:
    """Run P1 and print its report."""
    args = arguments(__doc__.splitlines()[0], argv, repeats=300, quick_repeats=5)
    report = Report("P1", "one run's lifecycle: open, 20 params, 20 metrics, a 4 KiB artifact, 3 task attempts, "
                          "close", args.quick)
    with tempfile.TemporaryDirectory() as work:
        os.environ["ORCHESTRACK_HOME"] = str(Path(work) / "orchestrack")
        os.environ.pop("ORCHESTRACK_TRACKING_URI", None)
        artifact = Path(work) / "model.bin"
        artifact.write_bytes(os.urandom(4096))
        (Path(work) / "raw-artifacts").mkdir()
        orchestrack_lifecycle(artifact)  # the schema, imports and capture caches, before the trace
        floor = RawFloor(Path(work) / "orchestrack" / "orchestrack.db", artifact, Path(work) / "raw-artifacts")
        report.facts["statements a lifecycle"] = floor.statements
        report.facts["write transactions a lifecycle"] = floor.transactions
        samples = interleaved({"orchestrack": lambda: orchestrack_lifecycle(artifact), "raw": floor.lifecycle},
                              args.repeats)
        report.comparisons.append(Comparison(
            "P1 embedded store vs raw sqlite3 (same SQL)", "orchestrack", "raw sqlite3",
            samples["orchestrack"], samples["raw"], Target("slower", 2.5)))
        try:
            import mlflow
        except ImportError:
            report.facts["MLflow comparison"] = "not run: mlflow is not installed (`pip install mlflow`)"
            return finish(report, args)
        os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
        mlflow.set_tracking_uri(f"sqlite:///{Path(work) / 'mlflow.db'}")
        # Artifacts into the temporary folder too (MLflow's default is ./mlruns in the working directory).
        mlflow.create_experiment("bench", artifact_location=(Path(work) / "mlartifacts").as_uri())
        mlflow.set_experiment("bench")
        # MLflow is ~40x slower a lifecycle: fewer repetitions keep the run short.
        samples = interleaved({"orchestrack": lambda: orchestrack_lifecycle(artifact),
                               "mlflow": lambda: mlflow_lifecycle(artifact)}, max(3, args.repeats // 5))
        report.comparisons.append(Comparison(
            f"P1 embedded store vs MLflow {mlflow.__version__} fluent (SQLite)", "orchestrack", "mlflow",
            samples["orchestrack"], samples["mlflow"], Target("faster", 30)))
    return finish(report, args)


if __name__ == "__main__":
    main()
