"""How every benchmark here measures: the cases of one comparison run side by side, interleaved
(the order rotates each repetition), so a noisy machine slows both alike; each figure is a ratio of
medians with its spread (the middle 80 % of the per-repetition ratios); a report prints a table and
can write JSON (``--json``). ``--quick`` runs every case a few times, as a smoke test: its figures
are printed but mean little."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

#: ``faster``: baseline / subject at least ``bound`` (a speed-up, or a share of the baseline's throughput);
#: ``fewer``: the same for counts (HTTP requests); ``slower``: subject / baseline at most ``bound``;
#: ``extra``: subject - baseline at most ``bound`` (in the comparison's unit).
Kind = Literal["faster", "fewer", "slower", "extra"]


@dataclass(frozen=True)
class Target:
    """What a comparison must show, as the issue states it."""

    kind: Kind
    bound: float

    def describe(self, unit: str) -> str:
        """The target in words: ``≥ 30×``, ``≤ 1.03×``, ``≤ +5 ms``."""
        if self.kind in ("faster", "fewer"):
            return f">= {self.bound:g}x {self.kind}"
        if self.kind == "slower":
            return f"<= {self.bound:g}x"
        return f"<= +{self.bound:g} {unit}"


@dataclass
class Comparison:
    """A subject and its baseline, sample by sample (samples at the same index ran side by side)."""

    name: str
    subject: str
    baseline: str
    subject_samples: list[float]
    baseline_samples: list[float]
    target: Target
    unit: str = "ms"
    notes: list[str] = field(default_factory=list)

    def _pairwise(self) -> list[float]:
        pairs = zip(self.subject_samples, self.baseline_samples, strict=True)
        if self.target.kind == "extra":
            return sorted(s - b for s, b in pairs)
        if self.target.kind == "slower":
            return sorted(s / b for s, b in pairs)
        return sorted(b / s for s, b in pairs)

    @property
    def figure(self) -> float:
        """The comparison's figure: the median of the per-repetition ratios (or differences)."""
        return statistics.median(self._pairwise())

    @property
    def spread(self) -> tuple[float, float]:
        """The 10th and 90th percentile of the per-repetition ratios (or differences)."""
        values = self._pairwise()
        return values[int((len(values) - 1) * 0.1)], values[int((len(values) - 1) * 0.9 + 0.5)]

    @property
    def met(self) -> bool:
        """Whether the median meets the target."""
        if self.target.kind in ("faster", "fewer"):
            return self.figure >= self.target.bound
        return self.figure <= self.target.bound

    def row(self) -> str:
        """One line of the report's table."""
        low, high = self.spread
        unit = f" {self.unit}" if self.target.kind == "extra" else "x"
        return (f"{self.name:<46} {_fmt(statistics.median(self.subject_samples)):>10} {self.unit:<4}"
                f" vs {_fmt(statistics.median(self.baseline_samples)):>10}  {_fmt(self.figure):>8}{unit}"
                f"  [{_fmt(low)}..{_fmt(high)}]  target {self.target.describe(self.unit):<16}"
                f" {'MET' if self.met else 'MISSED'}")

    def as_json(self) -> dict[str, object]:
        """The comparison for ``--json``: samples, figure, spread, target, verdict."""
        return {**asdict(self), "figure": self.figure, "spread": list(self.spread), "met": self.met,
                "subject_median": statistics.median(self.subject_samples),
                "baseline_median": statistics.median(self.baseline_samples)}


def _fmt(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


@dataclass
class Report:
    """One benchmark's comparisons and the facts worth printing beside them."""

    benchmark: str
    description: str
    quick: bool
    comparisons: list[Comparison] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    def print(self) -> None:
        """The table, one comparison a line, then the facts."""
        quick = "  (--quick: a smoke test, figures mean little)" if self.quick else ""
        print(f"{self.benchmark}: {self.description}{quick}")
        for comparison in self.comparisons:
            print("  " + comparison.row())
            for note in comparison.notes:
                print(f"      {note}")
        for name, value in self.facts.items():
            print(f"  {name}: {value}")

    def write(self, path: Path) -> None:
        """Write the report as JSON (the samples included)."""
        path.write_text(json.dumps({"benchmark": self.benchmark, "description": self.description,
                                    "quick": self.quick, "facts": self.facts,
                                    "comparisons": [c.as_json() for c in self.comparisons]}, indent=2))


def interleaved(cases: Mapping[str, Callable[[], object]], repeats: int, *, warmup: int = 1,
                scale: float = 1000.0) -> dict[str, list[float]]:
    """Time every case ``repeats`` times, one repetition of each case after another (their order
    rotating), after ``warmup`` untimed rounds; seconds times ``scale`` (milliseconds by default)."""
    names = list(cases)
    for _ in range(warmup):
        for name in names:
            cases[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repetition in range(repeats):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            cases[name]()
            samples[name].append((time.perf_counter() - start) * scale)
    return samples


def cpu_timed(call: Callable[[], object], into: list[float]) -> Callable[[], None]:
    """``call``, also noting the CPU time this process spent in it (ms, every thread: the orchestrator's
    and orchestrack's own) into ``into``: far less disturbed by a busy machine than wall time."""

    def case() -> None:
        start = time.process_time()
        call()
        into.append((time.process_time() - start) * 1000)

    return case


def arguments(description: str, argv: Sequence[str] | None, *, repeats: int, quick_repeats: int = 3
              ) -> argparse.Namespace:
    """The options every benchmark takes: ``--quick``, ``--repeats N``, ``--json PATH``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few repetitions, as a smoke test")
    parser.add_argument("--repeats", type=int, default=None, help=f"repetitions (default {repeats})")
    parser.add_argument("--json", type=Path, default=None, help="also write the report as JSON here")
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = quick_repeats if args.quick else repeats
    return args


def finish(report: Report, args: argparse.Namespace) -> Report:
    """Print the report, write its JSON when asked, and hand it back."""
    report.print()
    if args.json is not None:
        report.write(args.json)
    return report


def tracked_run_facts(expected_runs: int, *, pipeline: str | None = None) -> dict[str, object]:
    """What the tracked pipeline runs left in the store: runs recorded and succeeded, task attempts a run."""
    import orchestrack
    from orchestrack import RunStatus, TaskStatus

    runs = orchestrack.search_runs(pipeline=pipeline, limit=10 * expected_runs + 10)
    attempts = [len(r.last_attempts()) for r in runs]
    succeeded = [sum(a.status is TaskStatus.SUCCEEDED for a in r.last_attempts().values()) for r in runs]
    return {"tracked_runs_expected": expected_runs, "tracked_runs_recorded": len(runs),
            "tracked_runs_succeeded": sum(r.status is RunStatus.SUCCEEDED for r in runs),
            "task_attempts_per_run_min": min(attempts, default=0),
            "task_attempts_per_run_max": max(attempts, default=0),
            "succeeded_task_attempts_per_run_min": min(succeeded, default=0)}


@contextmanager
def embedded_store_in(folder: Path) -> Iterator[Path]:
    """Track into an embedded store in ``folder`` (``ORCHESTRACK_HOME``) for the block, then put the
    environment back as it was and close the store."""
    from orchestrack import stores

    previous = os.environ.get("ORCHESTRACK_HOME")
    os.environ["ORCHESTRACK_HOME"] = str(folder)
    try:
        yield folder
    finally:
        stores.close_all()
        if previous is None:
            os.environ.pop("ORCHESTRACK_HOME", None)
        else:
            os.environ["ORCHESTRACK_HOME"] = previous
