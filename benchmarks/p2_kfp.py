"""P2 for Kubeflow Pipelines: what tracking adds to a pipeline run's wall time. One pipeline of 5
components in a chain (``load`` -> ``clean`` -> ``train`` -> ``evaluate`` -> ``publish``: datasets, a
model, metrics and parameters passed along), built twice from the same functions: with
``dsl.component`` / ``dsl.pipeline`` and with ``orchestrack.kfp``'s ``component`` / ``pipeline``
(which add the exit handler whose task closes the run: the first tracked task opens it; kfp.local before 2.17
runs no exit handler, and the calling process closes the run instead). Both run under
kfp.local's ``SubprocessRunner(use_venv=False)`` (every task a real subprocess of this Python),
interleaved, with ``ORCHESTRACK_HOME`` in a temporary directory (the embedded store). Target:
tracked / plain at most 1.03x; the absolute cost per component is reported beside it, and the facts
say what the tracked runs left in the store (runs, and task attempts per run). The CPU time of all
the processes (this one and the tasks') is compared too: less disturbed by a busy machine. A third
case, orchestrack's components in a plain ``dsl.pipeline`` (runs never closed), splits the cost
between the components and the closing task.

    python -m benchmarks.p2_kfp [--quick] [--repeats N] [--json PATH]     (from the repo root)

``--quick`` (a smoke test, under a minute) runs the first 2 components of the chain, twice each.
"""

# No `from __future__ import annotations`: kfp reads the component annotations at runtime.

import resource
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kfp import dsl, local

from benchmarks.measure import (
    Comparison,
    Report,
    Target,
    arguments,
    embedded_store_in,
    finish,
    interleaved,
    tracked_run_facts,
)
from orchestrack import kfp as otk

COMPONENTS = 5
QUICK_COMPONENTS = 2
REPEATS = 7
IMAGE = "python:3.11"
TRACKED = "p2-tracked"
COMPONENTS_ONLY = "p2-tracked-components"


def load(rows: int, raw: dsl.Output[dsl.Dataset]) -> None:
    with open(raw.path, "w") as handle:
        handle.write("\n".join(f"{i},{(i * 37) % 101}" for i in range(rows)))


def clean(raw: dsl.Input[dsl.Dataset], threshold: int, cleaned: dsl.Output[dsl.Dataset]) -> int:
    with open(raw.path) as handle:
        kept = [line for line in handle.read().splitlines() if int(line.split(",")[1]) >= threshold]
    with open(cleaned.path, "w") as handle:
        handle.write("\n".join(kept))
    return len(kept)


def train(data: dsl.Input[dsl.Dataset], epochs: int, model: dsl.Output[dsl.Model],
          metrics: dsl.Output[dsl.Metrics]) -> float:
    with open(data.path) as handle:
        values = [int(line.split(",")[1]) for line in handle.read().splitlines()]
    weight = 0.0
    for _ in range(epochs):
        weight = sum(values) / max(len(values), 1) / 100
    with open(model.path, "w") as handle:
        handle.write(f"{weight}")
    metrics.log_metric("weight", weight)
    return weight


def evaluate(model: dsl.Input[dsl.Model], weight: float, metrics: dsl.Output[dsl.Metrics]) -> float:
    with open(model.path) as handle:
        stored = float(handle.read())
    auc = min(0.99, 0.5 + abs(stored - weight) + weight / 2)
    metrics.log_metric("auc", auc)
    return auc


def publish(auc: float, report: dsl.Output[dsl.Markdown]) -> str:
    with open(report.path, "w") as handle:
        handle.write(f"# model\n\nauc = {auc:.3f}\n")
    return "published" if auc >= 0.5 else "held"


FUNCTIONS = (load, clean, train, evaluate, publish)


def chain(width: int, components: dict[str, Any]) -> Callable[..., None]:
    """The pipeline body over the first ``width`` components of the chain."""

    def body(rows: int = 200, threshold: int = 20, epochs: int = 3) -> None:
        step = components["load"](rows=rows)
        if width >= 2:
            step = components["clean"](raw=step.outputs["raw"], threshold=threshold)
        if width >= 3:
            step = components["train"](data=step.outputs["cleaned"], epochs=epochs)
        if width >= 4:
            step = components["evaluate"](model=step.outputs["model"], weight=step.outputs["Output"])
        if width >= 5:
            components["publish"](auc=step.outputs["Output"])

    return body


def pipelines(width: int) -> dict[str, Any]:
    """The pipelines of ``width`` components, from the same functions: ``plain`` (kfp only),
    ``tracked`` (orchestrack's component and pipeline) and ``components`` (orchestrack's component in
    a plain ``dsl.pipeline``: the components' share of the cost, without the closing task;
    its runs are never closed)."""
    plain = {f.__name__: dsl.component(f, base_image=IMAGE, packages_to_install=[]) for f in FUNCTIONS}
    tracked = {f.__name__: otk.component(f, base_image=IMAGE, packages_to_install=[]) for f in FUNCTIONS}
    return {"plain": dsl.pipeline(chain(width, plain), name="p2-plain"),
            "tracked": otk.pipeline(chain(width, tracked), name=TRACKED, purpose="baseline", packages_to_install=[]),
            "components": dsl.pipeline(chain(width, tracked), name=COMPONENTS_ONLY)}


def cpu_ms() -> float:
    """CPU time of this process and of its ended subprocesses (every task kfp.local ran), in ms."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime) * 1000


def cpu_timed(call: Callable[[], object], into: list[float]) -> Callable[[], None]:
    """``call``, also noting the CPU time it took (see :func:`cpu_ms`): less disturbed by a busy
    machine than wall time."""

    def case() -> None:
        start = cpu_ms()
        call()
        into.append(cpu_ms() - start)

    return case


def main(argv: Sequence[str] | None = None) -> Report:
    args = arguments(__doc__.splitlines()[0], argv, repeats=REPEATS, quick_repeats=2)
    width = QUICK_COMPONENTS if args.quick else COMPONENTS
    warmup = 0 if args.quick else 1
    cases = pipelines(width)
    with (tempfile.TemporaryDirectory(prefix="orchestrack-p2-kfp-") as work,
          embedded_store_in(Path(work) / "orchestrack")):
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(Path(work) / "pipeline-root"))
        cpu: dict[str, list[float]] = {name: [] for name in cases}
        samples = interleaved({name: cpu_timed(case, cpu[name]) for name, case in cases.items()},
                              args.repeats, warmup=warmup)
        facts = tracked_run_facts(args.repeats + warmup, pipeline=TRACKED)
    median = {name: statistics.median(values) for name, values in samples.items()}
    per_component = (median["tracked"] - median["plain"]) / width
    in_components = (median["components"] - median["plain"]) / width
    comparison = Comparison(f"pipeline run, {width} components: tracked vs plain", "tracked", "plain",
                            samples["tracked"], samples["plain"], Target("slower", 1.03))
    comparison.notes.append(f"tracking adds {per_component:+.1f} ms a component (difference of medians / {width}; "
                            "the closing task included)")
    share = Comparison(f"  of which the {width} components alone", "components", "plain",
                       samples["components"], samples["plain"], Target("slower", 1.03))
    share.notes.append(f"otk.component in a plain dsl.pipeline: {in_components:+.1f} ms a component; the closing "
                       f"task: {median['tracked'] - median['components']:+.0f} ms a run")
    cpu_comparison = Comparison("  the same in CPU time, all its processes", "tracked", "plain",
                                cpu["tracked"][warmup:], cpu["plain"][warmup:], Target("slower", 1.03))
    cpu_per_component = (statistics.median(cpu["tracked"][warmup:]) - statistics.median(cpu["plain"][warmup:])) / width
    cpu_comparison.notes.append(f"tracking adds {cpu_per_component:+.1f} ms of CPU a component")
    report = Report("p2_kfp", "kfp.local pipeline run wall time, orchestrack.kfp vs plain dsl", args.quick,
                    [comparison, cpu_comparison, share],
                    {"components_per_run": width, "repeats": args.repeats, "ms_per_task": round(per_component, 2),
                     "cpu_ms_per_task": round(cpu_per_component, 2),
                     "ms_per_task_components_only": round(in_components, 2),
                     "ms_close_per_run": round(median["tracked"] - median["components"], 1), **facts})
    return finish(report, args)


if __name__ == "__main__":
    main()
