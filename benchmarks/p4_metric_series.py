"""P4: a 100,000-point metric series into the embedded store, side by side with raw ``sqlite3``
``executemany`` of the same rows in one transaction (the floor). Target: at least 50 % of the
floor's throughput. Two ways in:

- a training loop: one ``run.log_metrics({"loss": value}, step=step)`` call a step through the
  public API (points are written in batches, see ``metric_flush_s``), until the last batch is
  written (``run.finish()``, which reads the run back, is P6's ``get_run``: not timed here);
- a bulk write: the store's ``log_metrics`` with every point at once (what a spool replay or an
  import does).

    python -m benchmarks.p4_metric_series [--quick] [--repeats N] [--json PATH]
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path

from benchmarks.measure import Comparison, Report, Target, arguments, finish, interleaved

INSERT = "INSERT INTO metrics (run_id, key, value, step, slice, ts, task) VALUES (?,?,?,?,?,?,?)"


def main(argv: Sequence[str] | None = None) -> Report:
    """Run P4 and print its report."""
    args = arguments(__doc__.splitlines()[0], argv, repeats=9, quick_repeats=2)
    points = 5_000 if args.quick else 100_000
    report = Report("P4", f"a {points:,}-point metric series into the embedded store", args.quick)
    with tempfile.TemporaryDirectory() as work:
        os.environ["ORCHESTRACK_HOME"] = str(Path(work) / "orchestrack")
        for name in ("ORCHESTRACK_TRACKING_URI", "ORCHESTRACK_STRICT", "ORCHESTRACK_METRIC_FLUSH_S"):
            os.environ.pop(name, None)  # as users run it: batching on, faults logged and spooled
        import orchestrack
        from orchestrack.lifecycle import store_for
        from orchestrack.metric_buffer import flush_all
        from orchestrack.record import MetricPoint, utcnow

        store = store_for(None)
        orchestrack.start_run(key="p4/warm-up").finish()  # the schema exists before timing
        raw = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute("PRAGMA synchronous = NORMAL")
        values = [1 / (step + 1) for step in range(points)]
        stamp = utcnow().isoformat(timespec="microseconds")[:26] + "Z"

        def floor() -> None:
            run_id = uuid.uuid4().hex
            rows = [(run_id, "loss", value, step, None, stamp, None) for step, value in enumerate(values)]
            raw.execute("BEGIN IMMEDIATE")
            raw.executemany(INSERT, rows)
            raw.execute("COMMIT")

        runs = iter([orchestrack.start_run(key=f"p4/{n}") for n in range(2 * (args.repeats + 1))])

        def training_loop() -> None:
            log = next(runs).log_metrics
            for step, value in enumerate(values):
                log({"loss": value}, step=step)
            flush_all()

        def bulk() -> None:
            now = utcnow()
            store.log_metrics(next(runs).run_id, [MetricPoint(key="loss", value=value, step=step, timestamp=now)
                                                  for step, value in enumerate(values)])

        samples = interleaved({"loop": training_loop, "bulk": bulk, "raw": floor}, args.repeats, scale=1.0)
        for name, label in (("loop", "one log_metrics call a step"), ("bulk", "store.log_metrics, all at once")):
            comparison = Comparison(f"P4 {label}", name, "raw executemany", samples[name], samples["raw"],
                                    Target("faster", 0.5), unit="s")
            comparison.notes.append(
                f"share of raw throughput; {points / statistics.median(samples[name]):,.0f} points/s vs "
                f"{points / statistics.median(samples['raw']):,.0f} raw")
            report.comparisons.append(comparison)
        report.facts["points stored a run"] = sorted({count for (count,) in store.query(
            "SELECT COUNT(*) FROM metrics WHERE run_id IN (SELECT run_id FROM runs WHERE key LIKE 'p4/%') "
            "GROUP BY run_id")})
    return finish(report, args)


if __name__ == "__main__":
    main()
