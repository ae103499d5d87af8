"""The journal: writes to a remote store never hold up a task, survive its outage and land exactly once.

The remote store here is the embedded store behind a switch (tests/flaky_store.py); the same promises
against a real MLflow server that is stopped mid-pipeline are in tests/prefect/test_outage.py and
tests/airflow/test_outage.py.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

import orchestrack
from orchestrack import delivery
from orchestrack.cli import main
from orchestrack.record import MetricPoint, utcnow
from orchestrack.stores import open_store
from tests import flaky_store
from tests.flaky_store import set_down

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Fail-open mode tracking into a flaky remote store; returns the store's database path."""
    flaky_store.register()
    monkeypatch.delenv("ORCHESTRACK_STRICT")
    monkeypatch.setenv("ORCHESTRACK_DELIVERY_TIMEOUT_S", "5")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    path = tmp_path / "remote.db"
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", f"flaky://{path}")
    return path


def _points(path: Path, run_id: str) -> Counter[tuple[str, int]]:
    with sqlite3.connect(path) as db:
        return Counter(db.execute("SELECT key, step FROM metrics WHERE run_id = ?", (run_id,)).fetchall())


def _journal_lines(home: Path) -> list[dict[str, object]]:
    return [json.loads(line) for f in (home / "spool").glob("*.jsonl") for line in f.read_text().splitlines()]


def test_an_outage_holds_up_nothing_and_every_write_lands_once_it_is_back(
        remote: Path, orchestrack_home: Path) -> None:
    run = orchestrack.start_run(key="outage/1", owner="ml", purpose="baseline")
    set_down(remote, True, hang_s=3)  # a server that hangs, then refuses
    started = time.monotonic()
    with run.task("train", attempt=1):
        orchestrack.log_params({"lr": 0.1})
        for step in range(50):
            orchestrack.log_metrics({"loss": 1 / (step + 1)}, step=step)
        orchestrack.set_tags({"phase": "outage"})
    # The task's end waited at most delivery_timeout_s for a store that hangs, and not at all once down.
    assert time.monotonic() - started < 15
    assert delivery.store_down(remote.as_uri().replace("file://", "flaky://"))
    waiting = orchestrack.waiting_writes(run.run_id)[run.run_id]
    assert sum(count for _, count in waiting) >= 3
    assert all(path.parent == orchestrack_home / "spool" for path, _ in waiting)

    set_down(remote, False)
    # The courier finds the store back and delivers the rest, in order.
    assert delivery.settle(60, while_down=True, uri=run.store.uri)
    record = run.finish()
    assert record is not None and record.status == "succeeded"
    assert record.params == {"lr": 0.1} and record.tags == {"phase": "outage"}
    assert [(t.name, t.status.value) for t in record.tasks] == [("train", "succeeded")]
    assert _points(remote, run.run_id) == Counter({("loss", step): 1 for step in range(50)})
    assert delivery.settle(30, uri=run.store.uri)  # the close is journaled too, delivered behind the rest
    assert orchestrack.waiting_writes(run.run_id) == {}
    assert _journal_lines(orchestrack_home) == []  # a journal whose writes all arrived is emptied


def _worker_in_an_outage(tmp_path: Path, remote: Path, key: str, task_body: str, after: str = "") -> tuple[str, str]:
    """Run a process that opens ``key``, takes the store down, runs one task of ``task_body`` (a block
    of Python), then ``after``, and exits; its run id and what it logged."""
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(ROOT)!r})
        from tests import flaky_store
        from tests.flaky_store import set_down
        from pathlib import Path
        import orchestrack

        flaky_store.register()
        remote = Path({str(remote)!r})
        run = orchestrack.start_run(key={key!r}, owner="ml", purpose="baseline")
        set_down(remote, True)
        with run.task("train", attempt=1):
    """) + textwrap.indent(textwrap.dedent(task_body).strip("\n"), "    ") + f"\n{after}\nprint(run.run_id)\n")
    worker = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                            env=dict(os.environ))
    assert worker.returncode == 0, worker.stderr
    return worker.stdout.strip(), worker.stderr


def test_a_process_that_ends_while_its_store_is_briefly_down_waits_and_delivers_everything(
        remote: Path, orchestrack_home: Path, tmp_path: Path) -> None:
    # A pod's journal goes with the pod: at exit the process waits (up to delivery_timeout_s) even for
    # a store its courier found down, e.g. a server that timed out once under load.
    run_id, logged = _worker_in_an_outage(
        tmp_path, remote, "outage/brief",
        """
        for step in range(100):
            orchestrack.log_metrics({"loss": 1 / (step + 1)}, step=step)
        """,
        after="threading.Timer(1.0, set_down, (remote, False)).start()  # back a moment after the exit begins")
    assert "cannot reach" in logged and "still waiting" not in logged, logged
    assert _points(remote, run_id) == Counter({("loss", step): 1 for step in range(100)})
    assert orchestrack.waiting_writes(run_id) == {}


def test_a_process_that_ends_during_the_outage_leaves_its_writes_for_replay(
        remote: Path, orchestrack_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id, logged = _worker_in_an_outage(
        tmp_path, remote, "outage/exit",
        """
        orchestrack.log_params({"lr": 0.1, "depth": 6})
        for step in range(100):
            orchestrack.log_metrics({"loss": 1 / (step + 1), "acc": step / 100}, step=step)
        """)
    assert "are still waiting in" in logged  # said at exit, with where
    waiting = orchestrack.waiting_writes(run_id)[run_id]
    assert [path.parent for path, _ in waiting] == [orchestrack_home / "spool"]

    # `show` says the run has writes waiting, and where.
    set_down(remote, False)
    assert main(["show", "outage/exit"], standalone_mode=False) in (0, None)
    shown = capsys.readouterr().out
    assert "waiting in the journal" in shown and str(waiting[0][0]) in shown

    # Replay lands everything; a second replay finds nothing to do and stores nothing twice.
    applied, problems = orchestrack.replay_spool()
    assert problems == [] and applied >= 3
    assert orchestrack.replay_spool() == (0, [])
    record = orchestrack.get_run("outage/exit")
    assert record.params == {"lr": 0.1, "depth": 6}
    assert [(t.name, t.status.value) for t in record.tasks] == [("train", "succeeded")]
    assert _points(remote, run_id) == Counter({(key, step): 1 for key in ("loss", "acc") for step in range(100)})
    assert orchestrack.waiting_writes(run_id) == {}
    assert not list((orchestrack_home / "spool").iterdir())


def test_replay_of_a_batch_the_store_already_took_adds_nothing(orchestrack_home: Path) -> None:
    """The write in flight when a replay dies: it reached the store, its delivery was not noted yet."""
    run = orchestrack.start_run(key="replay/in-flight")
    points = [MetricPoint(key="loss", value=0.5, step=step, timestamp=utcnow()) for step in range(10)]
    store = open_store(run.store.uri)
    store.log_metrics(run.run_id, points, write_id="batch-1")
    store.log_metrics(run.run_id, points, write_id="batch-1")  # the same batch again: skipped
    assert len(orchestrack.get_run("replay/in-flight").metric_series["loss"]) == 10


REPLAYER = textwrap.dedent("""
    import orchestrack
    orchestrack.replay_spool()
""")


def test_a_replay_killed_half_way_and_run_again_stores_everything_exactly_once(
        orchestrack_home: Path, tmp_path: Path) -> None:
    run = orchestrack.start_run(key="replay/killed")
    run_id, uri = run.run_id, run.store.uri
    orchestrack.stores.close_all()
    spool = orchestrack_home / "spool"
    spool.mkdir(parents=True)
    journal = spool / "lost-worker-4242-20261203T000000.journal.jsonl"  # a worker on a machine gone for good
    batches, per_batch = 600, 20
    with journal.open("w") as out:
        for batch in range(batches):
            args = {"run_id": run_id, "points": [
                {"key": f"m{i}", "value": float(batch), "step": batch, "timestamp": "2026-12-03T00:00:00+00:00"}
                for i in range(per_batch)]}
            out.write(json.dumps({"id": f"w{batch}", "store": uri, "op": "log_metrics",
                                  "at": "2026-12-03T00:00:00+00:00", "args": args}) + "\n")
        out.write(json.dumps({"id": "params", "store": uri, "op": "log_params", "at": "2026-12-03T00:00:00+00:00",
                              "args": {"run_id": run_id, "params": {"lr": 0.1}}}) + "\n")
    progress = journal.with_suffix(".delivered")
    script = tmp_path / "replay.py"
    script.write_text(REPLAYER)
    env = {**os.environ}
    kills = 0
    for _ in range(3):  # kill -9 three replays at different points, then let one finish
        replayer = subprocess.Popen([sys.executable, str(script)], env=env)
        target = (kills + 1) * 100
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and replayer.poll() is None:
            if progress.exists() and len(progress.read_text().split()) >= target:
                break
            time.sleep(0.01)
        if replayer.poll() is None:
            os.kill(replayer.pid, signal.SIGKILL)
            kills += 1
        replayer.wait()
    assert kills >= 1
    finished = subprocess.run([sys.executable, str(script)], env=env, timeout=300)
    assert finished.returncode == 0
    assert not journal.exists() and not list(spool.iterdir())

    with sqlite3.connect(orchestrack_home / "orchestrack.db") as db:
        rows = db.execute("SELECT key, step, COUNT(*) FROM metrics WHERE run_id = ? GROUP BY key, step",
                          (run_id,)).fetchall()
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert len(rows) == batches * per_batch and {count for _, _, count in rows} == {1}
    assert orchestrack.get_run("replay/killed").params == {"lr": 0.1}


def test_a_write_the_store_refuses_stays_in_the_journal_and_the_rest_goes_on(
        remote: Path, orchestrack_home: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A write refused for what it is (not an outage) is not retried forever, does not hold up the writes
    behind it, and is not lost: it stays in the journal, which is no longer emptied."""
    from orchestrack.errors import InvalidInputError

    run = orchestrack.start_run(key="refused/1")
    store = open_store(run.store.uri)

    def refuse(*args: object, **kwargs: object) -> None:
        raise InvalidInputError("tag value refused by the server")

    monkeypatch.setattr(store.inner, "set_tags", refuse)
    orchestrack.log_params({"lr": 0.1})
    orchestrack.set_tags({"team": "vision"})
    orchestrack.log_params({"depth": 6})
    assert delivery.settle(30, uri=run.store.uri)
    assert orchestrack.get_run("refused/1").params == {"lr": 0.1, "depth": 6}
    assert "refused set_tags" in caplog.text
    waiting = orchestrack.waiting_writes(run.run_id)[run.run_id]
    assert [count for _, count in waiting] == [1]
    assert any(entry["op"] == "set_tags" for entry in _journal_lines(orchestrack_home))


def test_a_password_in_the_store_uri_is_never_journaled_and_replay_still_finds_the_store(
        orchestrack_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from orchestrack.spool import Spool
    from orchestrack.stores import register_store
    from orchestrack.stores.sqlite import SQLiteStore

    database = tmp_path / "vault.db"
    opened: list[str] = []

    def vault(uri: str, busy_timeout_s: float) -> SQLiteStore:
        opened.append(uri)
        assert "S3cr3tPw" in uri, "the replay must reach the store with its credentials"
        store = SQLiteStore(f"sqlite:///{database}")
        store.uri = uri
        return store

    register_store("vault", vault)
    uri = "vault://alice:S3cr3tPw@db.example.com/runs"
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", uri)
    run = orchestrack.start_run(key="vault/1")
    Spool(orchestrack_home / "spool").write(uri, "log_params", run_id=run.run_id, params={"lr": 0.1})
    journaled = "".join(f.read_text() for f in (orchestrack_home / "spool").glob("*.jsonl"))
    assert "S3cr3tPw" not in journaled and "alice:***@db.example.com" in journaled
    assert orchestrack.replay_spool() == (1, [])
    assert orchestrack.get_run("vault/1").params == {"lr": 0.1}
