"""Flows exercised by tests/prefect/test_tracked_flow.py (importable by a subprocess too)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import INPUTS

import orchestrack
from orchestrack.prefect import tracked_flow


@task
def load(rows: int) -> int:
    orchestrack.log_dataset("events", "s3://bucket/events/", version="v3", rows=rows)
    return rows


@task
def train(rows: int, lr: float) -> float:
    for step in range(3):
        orchestrack.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    orchestrack.log_metrics({"auc": 0.9})
    return 0.9


@tracked_flow(purpose="baseline", run_owner="ml-platform", log_prints=True)
def succeeds(lr: float = 3e-4, api_key: str = "k-123") -> float:
    return train(load(100), lr)


@task
def read_missing() -> None:
    raise FileNotFoundError("[Errno 2] No such file or directory: 'data/train.parquet'")


@tracked_flow(purpose="tuning")
def fails_in_a_task() -> None:
    read_missing()


@task(timeout_seconds=1)
def slow() -> None:
    time.sleep(10)


@tracked_flow(purpose="tuning")
def times_out() -> None:
    slow()


@task(retries=2, retry_delay_seconds=0)
def flaky(marker: str) -> str:
    path = Path(marker)
    tries = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(tries))
    if tries < 3:
        raise ConnectionResetError(104, "Connection reset by peer")
    return "ok"


@tracked_flow(purpose="recovery")
def retries_then_succeeds(marker: str) -> str:
    return flaky(marker)


@task
def square(n: int) -> int:
    return n * n


@tracked_flow(purpose="ablation")
def concurrent() -> int:
    futures = square.map([1, 2, 3])
    extra = square.submit(4)
    return sum(f.result() for f in futures) + extra.result()


@tracked_flow(purpose="baseline")
def child(n: int) -> int:
    return square(n)


@tracked_flow(purpose="baseline")
def parent() -> int:
    return child(3)


@flow
def untouched(n: int = 2) -> int:
    return n * 2


@tracked_flow(purpose="tuning")
def hangs(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)


@task
def trains_forever(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(120)


@tracked_flow(purpose="tuning")
def hangs_in_a_task(pid_file: str) -> None:
    trains_forever(pid_file)




@task(retries=1, retry_delay_seconds=0)
def item(n: int, marker_dir: str) -> int:
    """Fails for every 97th item; every 50th item fails its first try only (then succeeds on retry)."""
    if n % 97 == 13:
        raise ValueError(f"item {n} is malformed")
    marker = Path(marker_dir) / str(n)
    if n % 50 == 7 and not marker.exists():
        marker.touch()
        raise ConnectionResetError(104, "Connection reset by peer")
    orchestrack.log_metrics({"value": float(n)})
    return n


@tracked_flow(purpose="tuning")
def wide_map(width: int, marker_dir: str) -> Any:
    return item.map(range(width), marker_dir=marker_dir)  # returned futures: the flow fails if any item failed


@tracked_flow(purpose="baseline", retries=3, retry_delay_seconds=0)
def fails_three_times(marker: str) -> str:
    path = Path(marker)
    tries = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(tries))
    if tries < 4:
        raise RuntimeError(f"flow try {tries} fails")
    return "ok"


@task(cache_policy=INPUTS, persist_result=True)
def cached_square(n: int) -> int:
    return n * n


@tracked_flow(purpose="baseline")
def uses_cache(n: int) -> int:
    return cached_square(n)


@task
def waits_for(path: str) -> str:
    deadline = time.time() + 60
    while not Path(path).exists() and time.time() < deadline:
        time.sleep(0.05)
    return path


@tracked_flow(purpose="baseline")
def long_running(started: str, release: str) -> str:
    square(2)
    Path(started).touch()
    return waits_for(release)


@tracked_flow(purpose="baseline")
def no_tasks() -> int:
    return 1


@task
def prepare(data_dir: str) -> str:
    """Params, a metric series and a report file stored as an artifact."""
    orchestrack.log_params({"model": "gbm", "learning_rate": 0.1})
    for step, loss in enumerate([0.7, 0.4, 0.25]):
        orchestrack.log_metrics({"loss": loss}, step=step)
    report = Path(data_dir) / "report.txt"
    report.write_text(f"shards under {data_dir}: one file per shard\n")
    orchestrack.log_artifact(report, kind="report")
    return data_dir


@task
def score_shard(shard: int, data_dir: str) -> int:
    """A missing shard file raises FileNotFoundError (a data error)."""
    rows = len((Path(data_dir) / f"shard-{shard:02d}.csv").read_text().splitlines())
    orchestrack.log_metrics({"rows": float(rows)})
    return rows


@tracked_flow(name="score-shards", purpose="tuning")
def score_shards(data_dir: str, shards: int) -> Any:
    prepare(data_dir)
    return score_shard.map(range(shards), data_dir=data_dir)  # returned futures: the flow fails if a shard failed


def serve_hangs() -> None:
    """Serve `hangs` as a deployment: its runs go through a Prefect runner, as in production."""
    hangs.serve(name="hangs-served")


if __name__ == "__main__":
    import sys

    if sys.argv[1] == "serve":
        serve_hangs()
    elif sys.argv[1] == "task":
        hangs_in_a_task(sys.argv[2])
    else:
        hangs(sys.argv[1])


GATE = {"metrics": {"auc": {"min": 0.75}}, "suspicious": {"ceiling": {"auc": 0.99}}}


@task
def evaluate(auc: float) -> float:
    import tempfile

    orchestrack.log_metrics({"auc": auc})
    model = Path(tempfile.mkdtemp()) / "model.json"
    model.write_text(f'{{"auc": {auc}}}')
    orchestrack.log_artifact(model, kind="model")
    return auc


@tracked_flow(purpose="tuning")
def gated(auc: float = 0.82) -> dict[str, Any]:
    from orchestrack.prefect import quality_gate

    evaluate(auc)
    return quality_gate(GATE)


@tracked_flow(purpose="tuning", configs=["tuning.yaml"])
def configured(rows: int = 100) -> float:
    """Reads tuning.yaml from the working directory (there is none next to this file)."""
    return train(load(rows), 0.1)


@tracked_flow(purpose="tuning", configs=["missing.yaml", "broken.yaml", "tuning.yaml"])
def misconfigured() -> float:
    return train(load(10), 0.1)


@tracked_flow(purpose="recovery", configs=["tuning.yaml"], retries=1, retry_delay_seconds=0)
def configured_then_retried(marker: str) -> str:
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise RuntimeError("the first try fails")
    return "ok"


@task
def check_batch(rows: int) -> int:
    # A new batch number and temporary folder every run: the raw error text differs each time.
    raise ValueError(f"bad batch {uuid.uuid4().int % 100_000} at /tmp/{uuid.uuid4()}/part-{rows}.parquet")


@tracked_flow(purpose="baseline")
def fails_on_a_bad_batch(rows: int = 100) -> int:
    return check_batch(rows)


class Trainer:
    """Flows on methods, as Prefect's documentation writes them (a classmethod, a staticmethod, a method)."""

    def __init__(self, rows: int) -> None:
        self.rows = rows

    @tracked_flow(purpose="baseline")
    def on_instance(self, lr: float = 0.1) -> int:
        return load(self.rows)

    @tracked_flow(purpose="baseline")
    @classmethod
    def on_class(cls, lr: float = 0.1) -> str:
        return cls.__name__

    @tracked_flow(purpose="baseline")
    @staticmethod
    def on_nothing(rows: int = 3) -> int:
        return load(rows)


@tracked_flow
def body_raises() -> None:
    """A flow whose own body fails, with no task."""
    raise ValueError("the holdout split is empty")


@tracked_flow
def takes_rows(rows: int) -> int:
    return rows


@task
def square_but_four(x: int) -> int:
    if x == 4:
        raise ValueError("4 is not allowed")
    return x * x


def process_pool_flow() -> Any:
    """Tasks run by Prefect's ProcessPoolTaskRunner (Prefect 3.4.14+), in processes of their own."""
    from prefect.task_runners import ProcessPoolTaskRunner

    @tracked_flow(purpose="baseline", task_runner=ProcessPoolTaskRunner(max_workers=2))
    def in_processes(n: int = 6) -> list[int]:
        futures = square_but_four.map(range(n))
        futures.wait()
        return [f.result() for f in futures if f.state.is_completed()]

    return in_processes
