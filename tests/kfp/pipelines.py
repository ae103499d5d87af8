"""Pipelines exercised by tests/kfp (components need their source in a real module file)."""

# No `from __future__ import annotations`: kfp reads component annotations at runtime.

from kfp import dsl

from orchestrack import kfp as otk


@otk.component(base_image="python:3.11", packages_to_install=[])
def prepare(rows: int, dataset: dsl.Output[dsl.Dataset]) -> None:
    with open(dataset.path, "w") as handle:
        handle.write("\n".join(str(i) for i in range(rows)))


@otk.component(base_image="pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", packages_to_install=[])
def train(data: dsl.Input[dsl.Dataset], epochs: int, model: dsl.Output[dsl.Model],
          metrics: dsl.Output[dsl.Metrics]) -> float:
    import orchestrack

    with open(data.path) as handle:
        rows = len(handle.read().splitlines())
    for epoch in range(epochs):
        orchestrack.log_metrics({"loss": 1.0 / (epoch + 1)}, step=epoch)
    with open(model.path, "w") as handle:
        handle.write(f"weights for {rows} rows")
    metrics.log_metric("auc", 0.91)
    return 0.91


@otk.component(base_image="python:3.11", packages_to_install=[])
def evaluate(auc: float, holdout: str) -> None:
    raise FileNotFoundError(f"[Errno 2] No such file or directory: '{holdout}'")


@otk.component(base_image="python:3.11", packages_to_install=[])
def crashes(code: int) -> None:
    import sys

    sys.exit(code)


@otk.component(base_image="python:3.11", packages_to_install=[])
def killed_mid_task() -> None:
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would: no code of ours runs after


@otk.pipeline(name="nightly-killed", purpose="tuning", packages_to_install=[])
def loses_a_task() -> None:
    data = prepare(rows=5)
    killed_mid_task().after(data)


@otk.pipeline(name="nightly-train", purpose="tuning", run_owner="ml-platform", packages_to_install=[])
def nightly(rows: int = 50, epochs: int = 2) -> None:
    data = prepare(rows=rows)
    trained = train(data=data.outputs["dataset"], epochs=epochs)
    trained.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)


@otk.pipeline(name="nightly-eval", purpose="tuning", packages_to_install=[])
def failing(holdout: str = "gs://bucket/holdout.parquet") -> None:
    data = prepare(rows=10)
    trained = train(data=data.outputs["dataset"], epochs=1)
    evaluate(auc=trained.outputs["Output"], holdout=holdout)


@otk.pipeline(name="nightly-crash", purpose="tuning", packages_to_install=[])
def exits_non_zero(code: int = 3) -> None:
    crashes(code=code)


@otk.component(packages_to_install=[])  # kfp's default base image
def score(fold: int, metrics: dsl.Output[dsl.Metrics]) -> float:
    accuracy = 0.7 + fold / 10
    metrics.log_metric("accuracy", accuracy)
    return accuracy


@otk.pipeline(purpose="ablation", packages_to_install=[])  # no name: KFP names it after the function
def cross_validated_folds() -> None:
    with dsl.ParallelFor([0, 1, 2]) as fold:
        score(fold=fold)


@otk.pipeline(purpose="tuning", packages_to_install=[])
def grid_over_dicts() -> None:
    """kfp's own samples/core/loop_parallelism shape: a loop over dicts, each key read as ``item.key``."""
    with dsl.ParallelFor([{"fold": 0, "lr": 1}, {"fold": 1, "lr": 10}], parallelism=2) as item:
        score(fold=item.fold)
        score(fold=item.lr)


@otk.component(base_image="python:3.11", packages_to_install=[])
def count(rows: int) -> int:
    return rows


@otk.pipeline(purpose="baseline", packages_to_install=[])
def returns_an_output(rows: int = 5) -> int:
    return count(rows=rows).output


@otk.component(base_image="python:3.11", packages_to_install=[])
def notify(status: dsl.PipelineTaskFinalStatus) -> None:
    print(f"pipeline ended {status.state}")


@dsl.component(base_image="python:3.11", packages_to_install=[])
def plain_notify(status: dsl.PipelineTaskFinalStatus) -> None:
    print(f"pipeline ended {status.state}")


@dsl.component(base_image="python:3.11", packages_to_install=[])
def plain_count(rows: int) -> int:
    return rows


@otk.pipeline(purpose="baseline", packages_to_install=[])
def only_plain_components(rows: int = 3) -> None:
    plain_count(rows=rows)


@otk.pipeline(purpose="baseline", packages_to_install=[])
def has_its_own_exit_handler(holdout: str = "gs://bucket/holdout.parquet") -> None:
    with dsl.ExitHandler(notify(), name="notify-the-team"):
        data = prepare(rows=10)
        evaluate(auc=0.5, holdout=holdout).after(data)


@otk.pipeline(name="nightly-holdout", purpose="tuning", packages_to_install=[])
def one_failing_task(holdout: str = "s3://bucket/holdout.parquet") -> None:
    evaluate(auc=0.5, holdout=holdout)


GATE = "metrics:\n  auc: {min: 0.75}\nsuspicious:\n  ceiling: {auc: 0.99}\n"
quality_gate = otk.quality_gate(base_image="python:3.11", packages_to_install=[])


@otk.component(base_image="python:3.11", packages_to_install=[])
def scores(auc: float, model: dsl.Output[dsl.Model]) -> None:
    import orchestrack

    orchestrack.log_metrics({"auc": auc})
    with open(model.path, "w") as handle:
        handle.write(f'{{"auc": {auc}}}')


@otk.pipeline(name="gated-train", purpose="tuning", packages_to_install=[])
def gated(auc: float = 0.82) -> None:
    scored = scores(auc=auc)
    quality_gate(spec=GATE).after(scored)
