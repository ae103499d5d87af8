"""An MLflow server that a test stops in the middle of a real pipeline run and starts again later, and
what MLflow then holds for one run, counted from MLflow's side with its own client.

Used by tests/prefect/test_outage.py and tests/airflow/test_outage.py: the pipeline runs in a worker
process of its own (as on a real worker), a task waits at a gate while the server goes down, the
rest of the pipeline runs during the outage and the worker exits with writes left in its journal.
The server comes back on the same port with the same backend, `orchestrack replay` delivers the rest,
and a second replay must find nothing to do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.servers import _stop, free_port, start_mlflow

#: How long a gated task waits for the test to take the server down.
GATE_WAIT_S = 120


class RestartableMlflow:
    """An MLflow 3 server with a SQLite backend under ``home`` that keeps its port across restarts."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        _, self._process = start_mlflow("outage", 3, f"sqlite:///{self.home / 'outage.db'}", self.home, self.port)

    def stop(self) -> None:
        if self._process is not None:
            _stop(self._process)
            self._process = None


@dataclass
class Outage:
    """A worker's set-up for one outage: the server, the task's gate, a folder for its outputs, and
    the worker's environment (fail-open, tracking into the server, ``OUTAGE_FOLDER``/``OUTAGE_GATE``)."""

    server: RestartableMlflow
    gate: Path
    folder: Path
    env: dict[str, str]

    def run_worker(self, command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        """Run the pipeline in a worker process; the server goes down when a task reaches the gate.
        The worker must succeed and say at exit what it left in its journal."""
        watcher = take_down_at_gate(self.server, self.gate)
        worker = subprocess.run(command, env=self.env, cwd=cwd, capture_output=True, text=True, timeout=400)
        watcher.join(5)
        assert worker.returncode == 0, worker.stderr[-3000:]
        assert "still waiting in" in worker.stdout + worker.stderr, worker.stderr[-3000:]
        return worker

    def restart_and_replay(self, key: str) -> MlflowCount:
        """Start the server again; `show` must say the run has writes waiting, one `orchestrack replay`
        delivers them and a second finds nothing. Returns what MLflow then holds for ``key``."""
        self.server.start()
        shown = self._cli("show", key)
        assert "waiting in the journal" in shown.stdout, shown.stdout + shown.stderr
        for _ in range(2):
            replay = self._cli("replay")
            assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "Replayed 0 " in replay.stdout, replay.stdout + replay.stderr
        return count_in_mlflow(self.server.url, key)

    def _cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "orchestrack", *args], env=self.env, capture_output=True,
                              text=True, timeout=300)


@contextmanager
def pipeline_outage(tmp_path: Path) -> Iterator[Outage]:
    """An MLflow server under ``tmp_path`` and a worker environment tracking into it."""
    gate, folder, home = tmp_path / "gate", tmp_path / "outputs", tmp_path / "mlflow"
    folder.mkdir()
    home.mkdir()
    server = RestartableMlflow(home)
    server.start()
    try:
        env = {**os.environ, "ORCHESTRACK_TRACKING_URI": server.url, "ORCHESTRACK_STRICT": "0",
               "ORCHESTRACK_ARTIFACT_URI": str(tmp_path / "artifacts"), "ORCHESTRACK_DELIVERY_TIMEOUT_S": "5",
               "OUTAGE_FOLDER": str(folder), "OUTAGE_GATE": str(gate)}
        yield Outage(server, gate, folder, env)
    finally:
        server.stop()


def nothing_left_in_the_journal() -> bool:
    """Whether this test's spool folder holds no journal any more."""
    return not list((Path(os.environ["ORCHESTRACK_HOME"]) / "spool").glob("*.jsonl"))


def take_down_at_gate(server: RestartableMlflow, gate: Path) -> threading.Thread:
    """Stop ``server`` once a task reaches ``gate`` (it writes ``gate``), then let the task go on
    (``gate.open``). Returns the watching thread."""
    def watch() -> None:
        deadline = time.monotonic() + GATE_WAIT_S
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        server.stop()
        gate.with_suffix(".open").write_text("down")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def wait_at_gate(gate: Path | str) -> None:
    """In the worker's task: say the gate is reached, then wait until the test has taken the tracking
    server down."""
    gate = Path(gate)
    gate.write_text("reached")
    deadline = time.monotonic() + GATE_WAIT_S
    while not gate.with_suffix(".open").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


@dataclass
class MlflowCount:
    """One orchestrack run as MLflow holds it."""

    runs: int = 0
    status: str = ""
    params: dict[str, str] = field(default_factory=dict)
    points: Counter[tuple[str, int, float]] = field(default_factory=Counter)
    attempts: Counter[tuple[str, str]] = field(default_factory=Counter)
    attempt_status: dict[tuple[str, str], str] = field(default_factory=dict)
    artifacts: Counter[str] = field(default_factory=Counter)


def count_in_mlflow(url: str, key: str) -> MlflowCount:
    """Count, with MLflow's own client and reading every page, the runs carrying ``key``, their params,
    every metric point, the child run of each task attempt and the artifact records."""
    from mlflow import MlflowClient, entities

    client = MlflowClient(tracking_uri=url)
    every = entities.ViewType.ALL
    experiments = [e.experiment_id for e in _pages(client.search_experiments, view_type=every)]
    found = _pages(client.search_runs, experiment_ids=experiments, run_view_type=every,
                   filter_string=f"tags.`orchestrack.key` = '{key}'")
    count = MlflowCount(runs=len(found))
    if not found:
        return count
    run = found[0]
    count.status = run.data.tags.get("orchestrack.status", "")
    count.params = dict(run.data.params)
    for metric in run.data.metrics:
        for point in _pages(client.get_metric_history, run_id=run.info.run_id, key=metric, paged=True):
            count.points[(metric, point.step, point.value)] += 1
    children = _pages(client.search_runs, experiment_ids=[run.info.experiment_id], run_view_type=every,
                      filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    for child in children:
        attempt = (child.data.tags.get("orchestrack.task_id", ""), child.data.tags.get("orchestrack.attempt", ""))
        count.attempts[attempt] += 1
        count.attempt_status[attempt] = child.data.tags.get("orchestrack.status", "")
    tags = run.data.tags
    for parts_key in [k for k in tags if k.startswith("orchestrack.doc.artifact.") and k.endswith(".parts")]:
        base = parts_key.removesuffix(".parts")
        text = tags[base] + "".join(tags[f"{base}.{i}"] for i in range(1, int(tags[parts_key])))
        count.artifacts[json.loads(text)["artifact"]["name"]] += 1
    return count


def _pages(search: Any, *, paged: bool = True, **kwargs: Any) -> list[Any]:
    found: list[Any] = []
    token = None
    while True:
        try:
            page = search(max_results=100, page_token=token, **kwargs)
        except TypeError:  # get_metric_history reads every page itself
            return list(search(**kwargs))
        found.extend(page)
        token = getattr(page, "token", None)
        if not token:
            return found
