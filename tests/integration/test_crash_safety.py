"""kill -9 in the middle of heavy writes, again and again: the embedded store stays sound and keeps
every write it had acknowledged (the first of the crash-safety promises of issue 12)."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import orchestrack
from orchestrack.metric_buffer import flush_all

pytestmark = pytest.mark.integration

#: A writer that says "ack N" only after write N is acknowledged (committed to the embedded store, or
#: in the journal for a remote one): a param, a flushed metric point, a tag. ``{setup}`` makes the store.
WRITER = textwrap.dedent("""
    import sys
    {setup}
    import orchestrack
    from orchestrack.metric_buffer import flush_all

    first = int(sys.argv[1])
    run = orchestrack.start_run(key="{key}", pipeline="crash")
    for n in range(first, first + 100_000):
        orchestrack.log_params({{f"p{{n}}": n}})
        orchestrack.log_metrics({{"loss": 1.0 / (n + 1)}}, step=n)
        flush_all()
        orchestrack.set_tags({{f"t{{n}}": "x"}})
        print(f"ack {{n}}", flush=True)
""")

ROUNDS = 12


def test_kill_9_during_heavy_writes_loses_nothing_acknowledged(tmp_path: Path, orchestrack_home: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(setup="", key="crash/loop"))
    acknowledged: list[int] = []
    shuffle = random.Random(12)
    for index in range(ROUNDS):
        writer = subprocess.Popen([sys.executable, str(script), str(index * 100_000)], cwd=tmp_path,
                                  env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert writer.stdout is not None
        first = writer.stdout.readline()  # the interpreter is up and has written once
        assert first.startswith("ack "), writer.stderr.read() if writer.stderr else first
        time.sleep(shuffle.uniform(0.05, 0.6))  # then die at an arbitrary point of a write
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate(timeout=60)
        assert writer.returncode == -signal.SIGKILL
        acknowledged += [int(line.split()[1]) for line in [first, *out.splitlines()] if line.startswith("ack ")]
    assert len(acknowledged) > ROUNDS * 2, "the writers got some work done before each kill"

    database = orchestrack_home / "orchestrack.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    flush_all()
    record = orchestrack.search_runs(pipeline="crash")[0]
    assert len(orchestrack.search_runs(pipeline="crash")) == 1, "every writer attached to the one run"
    full = orchestrack.get_run(record.run_id)
    missing_params = [n for n in acknowledged if full.params.get(f"p{n}") != n]
    missing_tags = [n for n in acknowledged if full.tags.get(f"t{n}") != "x"]
    steps = {point.step for point in full.metric_series.get("loss", [])}
    missing_points = [n for n in acknowledged if n not in steps]
    assert (missing_params, missing_tags, missing_points) == ([], [], [])


def test_kill_9_while_the_journal_is_delivered_then_replay_lands_each_write_exactly_once(
        tmp_path: Path, orchestrack_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writers killed mid-write while their couriers deliver to a remote store (up for half the rounds,
    down for the rest): the replay delivers every acknowledged write, and none twice."""
    from tests import flaky_store

    flaky_store.register()
    remote = tmp_path / "remote.db"
    monkeypatch.delenv("ORCHESTRACK_STRICT")
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", f"flaky://{remote}")
    # The same writer in fail-open mode against a remote store (tests/flaky_store.py): its acks come once
    # a write is in the journal (fsynced), while a courier thread delivers the journal behind it.
    root = str(Path(__file__).resolve().parents[2])
    script = tmp_path / "journal_writer.py"
    script.write_text(WRITER.format(setup=f"sys.path.insert(0, {root!r}); from tests import flaky_store; "
                                          "flaky_store.register()", key="crash/journal"))
    acknowledged: list[int] = []
    shuffle = random.Random(21)
    for index in range(ROUNDS):
        flaky_store.set_down(remote, index % 2 == 1)
        writer = subprocess.Popen([sys.executable, str(script), str(index * 100_000)], cwd=tmp_path,
                                  env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert writer.stdout is not None
        first = writer.stdout.readline()
        assert first.startswith("ack "), writer.stderr.read() if writer.stderr else first
        time.sleep(shuffle.uniform(0.05, 0.6))
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate(timeout=60)
        assert writer.returncode == -signal.SIGKILL
        acknowledged += [int(line.split()[1]) for line in [first, *out.splitlines()] if line.startswith("ack ")]
    assert len(acknowledged) > ROUNDS * 2

    flaky_store.set_down(remote, False)
    for _ in range(2):  # the second replay finds nothing left
        applied, problems = orchestrack.replay_spool()
        assert problems == []
    assert applied == 0
    with sqlite3.connect(remote) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        steps = [step for (step,) in connection.execute("SELECT step FROM metrics WHERE key = 'loss'")]
    full = orchestrack.get_run("crash/journal")
    missing_params = [n for n in acknowledged if full.params.get(f"p{n}") != n]
    missing_tags = [n for n in acknowledged if full.tags.get(f"t{n}") != "x"]
    missing_points = sorted(set(acknowledged) - set(steps))
    assert (missing_params, missing_tags, missing_points) == ([], [], [])
    assert len(steps) == len(set(steps)), "a metric point landed twice"
    assert not list((orchestrack_home / "spool").glob("*.jsonl"))
