"""P6: reading runs back from the embedded store, side by side with raw ``sqlite3`` running the very
statements the store ran (traced with ``set_trace_callback``) and fetching the same rows: the
floor. Target: within 3x of it, and flat as the store grows.

- listing: ``orchestrack.search_runs(limit=200)`` (what ``orchestrack runs --limit 200`` reads) with
  1,000, 10,000 and 100,000 runs stored (each with 20 params, 20 metrics and 3 task attempts);
- one run: ``get_run`` of a run with a 100,000-point metric series.

The stored runs are copies of one run logged through the public API, made in SQL (logging 100,000
runs one by one would take the benchmark's whole time).

    python -m benchmarks.p6_read_back [--quick] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.measure import Comparison, Report, Target, arguments, finish, interleaved

PARAMS = {f"param_{i}": i * 0.5 for i in range(20)}
METRICS = {f"metric_{i}": i / 20 for i in range(20)}
#: Each child table's columns, in order, with ``run_id`` to be replaced by the copy's.
TABLES = {"params": "run_id, key, value", "tags": "run_id, key, value",
          "metrics": "run_id, key, value, step, slice, ts, task",
          "tasks": "run_id, task_id, attempt, status, started_at, doc"}


def _grow(connection: sqlite3.Connection, template: str, runs: int) -> None:
    """Copy the template run until the store holds ``runs`` runs, each started a second apart."""
    have = connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    if have >= runs:
        return
    connection.execute("BEGIN IMMEDIATE")
    connection.execute("CREATE TEMP TABLE IF NOT EXISTS copies (n INTEGER PRIMARY KEY)")
    connection.execute("DELETE FROM copies")
    connection.execute("WITH RECURSIVE c(n) AS (SELECT ? UNION ALL SELECT n + 1 FROM c WHERE n < ?) "
                       "INSERT INTO copies SELECT n FROM c", (have, runs - 1))
    copy_id = "printf('%032x', copies.n)"
    connection.execute(
        "INSERT INTO runs (run_id, key, name, owner, purpose, status, pipeline, failure_reason, started_at, "
        f"ended_at, doc, failure_fingerprint) SELECT {copy_id}, 'p6/' || copies.n, name, owner, purpose, status, "
        "pipeline, failure_reason, strftime('%Y-%m-%dT%H:%M:%f000Z', '2026-01-01', '+' || copies.n || ' seconds'), "
        "ended_at, doc, failure_fingerprint FROM runs, copies WHERE runs.run_id = ?", (template,))
    for table, columns in TABLES.items():
        rest = columns.removeprefix("run_id, ")
        connection.execute(f"INSERT INTO {table} ({columns}) SELECT {copy_id}, {rest} FROM {table}, copies "
                           f"WHERE {table}.run_id = ?", (template,))
    connection.execute("COMMIT")


def _traced(connection: sqlite3.Connection, call: Callable[[], object]) -> list[str]:
    """The SELECT statements ``call`` ran on ``connection``, with their values written in."""
    statements: list[str] = []
    connection.set_trace_callback(statements.append)
    try:
        call()
    finally:
        connection.set_trace_callback(None)
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")]


def _replay(connection: sqlite3.Connection, statements: list[str]) -> Callable[[], Any]:
    def read() -> int:
        return sum(len(connection.execute(statement).fetchall()) for statement in statements)
    return read


def main(argv: Sequence[str] | None = None) -> Report:
    """Run P6 and print its report."""
    args = arguments(__doc__.splitlines()[0], argv, repeats=15, quick_repeats=3)
    sizes = (1_000, 2_000) if args.quick else (1_000, 10_000, 100_000)
    points = 5_000 if args.quick else 100_000
    report = Report("P6", "reading runs back: a 200-run listing as the store grows, and one run with "
                          f"{points:,} metric points", args.quick)
    with tempfile.TemporaryDirectory() as work:
        os.environ["ORCHESTRACK_HOME"] = str(Path(work) / "orchestrack")
        for name in ("ORCHESTRACK_TRACKING_URI", "ORCHESTRACK_STRICT"):
            os.environ.pop(name, None)
        import orchestrack
        from orchestrack.lifecycle import store_for

        template = orchestrack.start_run(key="p6/template", owner="bench", purpose="baseline", pipeline="p6")
        template.log_params(PARAMS)
        template.log_metrics(METRICS)
        for attempt in range(1, 4):
            with template.task("train", attempt=attempt):
                pass
        template.finish()
        store = store_for(None)
        connection = store._connect()  # type: ignore[attr-defined]
        raw = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
        listings: dict[int, list[float]] = {}
        for size in sizes:
            _grow(raw, template.run_id, size)
            def listing() -> object:
                return orchestrack.search_runs(limit=200)
            statements = _traced(connection, listing)
            samples = interleaved({"orchestrack": listing, "raw": _replay(raw, statements)}, args.repeats)
            listings[size] = samples["orchestrack"]
            report.comparisons.append(Comparison(
                f"P6 list 200 of {size:,} runs vs raw (same SQL)", "orchestrack", "raw sqlite3",
                samples["orchestrack"], samples["raw"], Target("slower", 3.0)))
        smallest, largest = sizes[0], sizes[-1]
        flat = Comparison(f"P6 list 200: {largest:,} vs {smallest:,} runs stored", f"{largest:,} runs",
                          f"{smallest:,} runs", listings[largest], listings[smallest], Target("slower", 1.5))
        flat.notes.append("flat: the listing reads the newest 200 by index, whatever the store holds "
                          "(samples of different sizes, not interleaved)")
        report.comparisons.append(flat)

        big = orchestrack.start_run(key="p6/series")
        for step in range(points):
            big.log_metrics({"loss": 1 / (step + 1)}, step=step)
        big.finish()
        def get_run() -> object:
            return store.get_run(big.run_id)
        statements = _traced(connection, get_run)
        samples = interleaved({"orchestrack": get_run, "raw": _replay(raw, statements)},
                              max(3, args.repeats // 3))
        report.comparisons.append(Comparison(
            f"P6 get_run, {points:,} points vs raw (same SQL)", "orchestrack", "raw sqlite3",
            samples["orchestrack"], samples["raw"], Target("slower", 3.0)))
        report.facts["runs listed"] = len(orchestrack.search_runs(limit=200))
        report.facts["points read back"] = len(store.get_run(big.run_id).metric_series["loss"])
        report.facts["listing statements"] = len(_traced(connection, lambda: orchestrack.search_runs(limit=200)))
        report.facts["median listing ms by runs stored"] = {f"{size:,}": round(statistics.median(listings[size]), 2)
                                                            for size in sizes}
    return finish(report, args)


if __name__ == "__main__":
    main()
