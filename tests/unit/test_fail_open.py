"""Tracking faults never change the task's outcome: they are logged and spooled, then replayed.
With ORCHESTRACK_STRICT=1 they raise instead, with a message that says how to fix them."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrack
from orchestrack import StoreError, stores


@pytest.fixture
def lenient(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Fail-open mode, a short lock wait, and a private fallback spool folder."""
    monkeypatch.delenv("ORCHESTRACK_STRICT")
    monkeypatch.setenv("ORCHESTRACK_BUSY_TIMEOUT_S", "0.2")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path


@pytest.fixture
def locked_store(orchestrack_home: Path) -> Iterator[sqlite3.Connection]:
    """The embedded store exists but another process holds its write lock."""
    orchestrack.start_run(key="warm-up")  # creates the database and its tables
    stores.close_all()
    holder = sqlite3.connect(orchestrack_home / "orchestrack.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    yield holder
    holder.close()


def _spooled_lines(home: Path) -> list[str]:
    return [line for f in (home / "spool").glob("*.jsonl") for line in f.read_text().splitlines()]


def test_locked_store_spools_and_task_keeps_its_outcome(
        lenient: Path, locked_store: sqlite3.Connection, orchestrack_home: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "orchestrack")
    run = orchestrack.start_run(key="locked", owner="ml", purpose="tuning")
    (lenient / "train.yaml").write_text("model:\n  lr: 0.1\n")
    with run.task("train"):
        orchestrack.log_metrics({"auc": 0.9})
        orchestrack.log_config(lenient / "train.yaml")
        orchestrack.log_dataset("train", "s3://lake/t/", filters={"country": ["DE"]}, leakage_check="passed")
        orchestrack.log_llm_usage(latency_s=0.4, step=0)
    with pytest.raises(ZeroDivisionError), run.task("evaluate"):
        1 / 0  # noqa: B018 - the task's own failure must come through unchanged
    assert run.finish() is None  # could not read the store; the close is spooled
    assert "spooled to" in caplog.text and "no impact on the task" in caplog.text
    assert len(_spooled_lines(orchestrack_home)) >= 6

    locked_store.execute("ROLLBACK")
    applied, problems = orchestrack.replay_spool()
    assert problems == [] and applied >= 6
    record = orchestrack.get_run("locked")
    assert record.owner == "ml" and record.metrics == {"auc": 0.9, "llm.latency": 0.4}
    assert record.configs[0].values == {"model.lr": 0.1} and record.metric_units == {"llm.latency": "s"}
    assert record.data[0].filters == {"country": ["DE"]} and record.data[0].leakage_check.status == "passed"  # type: ignore[union-attr]
    assert [(t.name, t.status) for t in record.tasks] == [("train", "succeeded"), ("evaluate", "failed")]
    assert record.tasks[1].failure.error_type == "ZeroDivisionError"  # type: ignore[union-attr]
    assert record.status != "running"
    assert _spooled_lines(orchestrack_home) == []


def test_locked_store_in_strict_mode_raises_with_fix(locked_store: sqlite3.Connection,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_BUSY_TIMEOUT_S", "0.2")
    with pytest.raises(StoreError, match="locked.*ORCHESTRACK_BUSY_TIMEOUT_S"):
        orchestrack.start_run(key="strict-locked")


def test_corrupt_database_then_recovery(lenient: Path, orchestrack_home: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    orchestrack_home.mkdir(parents=True)
    database = orchestrack_home / "orchestrack.db"
    database.write_bytes(b"this is not sqlite" * 512)
    run = orchestrack.start_run(key="corrupt", owner="ml")
    run.log_params({"lr": 0.1})
    run.finish()
    monkeypatch.setenv("ORCHESTRACK_STRICT", "1")
    stores.close_all()
    with pytest.raises(StoreError, match=r"not a readable SQLite database; move it aside \(mv .*orchestrack.db"):
        orchestrack.start_run(key="corrupt-strict")
    stores.close_all()
    database.rename(database.with_suffix(".corrupt"))  # what the message tells the user to do
    applied, problems = orchestrack.replay_spool()
    assert problems == [] and applied >= 3
    record = orchestrack.get_run("corrupt")
    assert record.params == {"lr": 0.1} and record.status == "succeeded"


def test_unwritable_home_falls_back_to_temp_spool(lenient: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = lenient / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ORCHESTRACK_HOME", str(blocker / "home"))
    run = orchestrack.start_run(key="no-home")
    with run.task("train"):
        orchestrack.log_metrics({"auc": 0.5})
    fallback = list((lenient / "tmp").glob("orchestrack-spool-*/*.jsonl"))
    assert len(fallback) == 1 and '"log_metrics"' in fallback[0].read_text()

    monkeypatch.setenv("ORCHESTRACK_STRICT", "1")
    with pytest.raises(StoreError, match="set ORCHESTRACK_HOME .* to a writable location"):
        orchestrack.start_run(key="no-home-strict")


def test_unwritable_artifact_folder_keeps_the_run(lenient: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = lenient / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("ORCHESTRACK_ARTIFACT_URI", str(blocker / "artifacts"))
    (lenient / "model.pt").write_text("weights")
    run = orchestrack.start_run(key="no-artifacts")
    artifact = run.log_artifact("model.pt")
    # Recorded pointing at a copy kept in the spool folder, its upload journaled ...
    assert artifact is not None and artifact.uri.startswith((lenient / "orchestrack-home" / "spool").as_uri())
    assert orchestrack.get_run("no-artifacts").artifacts[0].name == "model.pt"
    # ... and stored for real by the replay once the folder can be written.
    blocker.unlink()
    assert orchestrack.replay_spool() == (1, [])
    stored = orchestrack.get_run("no-artifacts").artifacts[0]
    assert stored.uri.startswith((blocker / "artifacts").as_uri()) and stored.sha256 and stored.size_bytes == 7
    shutil.rmtree(blocker)
    blocker.write_text("x")
    monkeypatch.setenv("ORCHESTRACK_STRICT", "1")
    with pytest.raises(StoreError, match="cannot write artifact"):
        orchestrack.start_run(key="no-artifacts").log_artifact("model.pt")


def test_replay_is_automatic_at_next_start(lenient: Path, locked_store: sqlite3.Connection) -> None:
    orchestrack.start_run(key="auto").log_params({"a": 1})
    locked_store.execute("ROLLBACK")
    stores.close_all()
    # A new process (simulated: fresh replay marker) replays what earlier processes spooled. The
    # spool file of a live process is skipped, so pretend the writer has exited.
    from orchestrack import lifecycle, spool
    lenient_pid_check = spool._alive
    try:
        spool._alive = lambda pid: False  # type: ignore[assignment]
        lifecycle._replayed.clear()
        orchestrack.start_run(key="later")
    finally:
        spool._alive = lenient_pid_check  # type: ignore[assignment]
    assert orchestrack.get_run("auto").params == {"a": 1}


def test_spooled_close_of_a_run_with_a_failed_task_says_failed(
        lenient: Path, locked_store: sqlite3.Connection) -> None:
    run = orchestrack.start_run(key="spooled-close")
    with pytest.raises(FileNotFoundError), run.task("load"):
        raise FileNotFoundError("train.csv")
    assert run.finish() is None
    locked_store.execute("ROLLBACK")
    orchestrack.replay_spool()
    record = orchestrack.get_run("spooled-close")
    assert record.status == "failed" and record.failure is not None and record.failure.reason == "data-error"


def test_replay_takes_over_a_file_whose_replayer_died(lenient: Path, locked_store: sqlite3.Connection,
                                                      orchestrack_home: Path) -> None:
    orchestrack.start_run(key="orphan").set_tags({"a": "1"})
    locked_store.execute("ROLLBACK")
    [spooled] = list((orchestrack_home / "spool").glob("*.jsonl"))
    orphan = spooled.with_suffix(".replaying-999999999")  # a pid that does not exist
    spooled.rename(orphan)
    applied, problems = orchestrack.replay_spool()
    assert (applied, problems) == (2, []) and orchestrack.get_run("orphan").tags == {"a": "1"}
    assert not orphan.exists()


def test_a_write_cut_short_by_a_kill_mid_append_is_left_out_and_the_rest_replayed(
        lenient: Path, locked_store: sqlite3.Connection, orchestrack_home: Path) -> None:
    """A process killed with SIGKILL while appending to its journal leaves a last line without its
    newline (never acknowledged: append returns after the whole line is fsynced), possibly cut inside
    a UTF-8 character. Found by CI (tests/integration/test_crash_safety.py): replay called it a problem."""
    orchestrack.start_run(key="torn").log_params({"a": 1, "name": "Zoë"})
    locked_store.execute("ROLLBACK")
    [spooled] = list((orchestrack_home / "spool").glob("*.jsonl"))
    whole = spooled.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    cut = last[:40] + "ë".encode()[:1]  # a line cut short, here inside a UTF-8 character
    spooled.write_bytes(whole + cut)
    from orchestrack.spool import pending_writes

    pending = pending_writes([spooled.parent])  # what `orchestrack show` lists: readable, the cut line left out
    assert sorted(count for files in pending.values() for _, count in files) == [2]
    applied, problems = orchestrack.replay_spool()
    assert (applied, problems) == (2, [])
    assert orchestrack.get_run("torn").params == {"a": 1, "name": "Zoë"}


def test_a_damaged_line_inside_a_journal_is_still_a_problem(lenient: Path, locked_store: sqlite3.Connection,
                                                           orchestrack_home: Path) -> None:
    orchestrack.start_run(key="damaged").log_params({"a": 1})
    locked_store.execute("ROLLBACK")
    [spooled] = list((orchestrack_home / "spool").glob("*.jsonl"))
    first, *rest = spooled.read_text().splitlines(keepends=True)
    spooled.write_text(first + '{"id": "x", "op": "log_par\n' + "".join(rest))
    applied, problems = orchestrack.replay_spool()
    assert applied == 2 and len(problems) == 1 and ":2: JSONDecodeError" in problems[0], problems


def test_a_hook_fault_the_user_must_fix_is_one_warning_line(lenient: Path, monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    from orchestrack import InvalidInputError
    from orchestrack.guard import fail_open

    @fail_open("test hook", warn=(InvalidInputError,))
    def hook(error: Exception) -> None:
        raise error

    caplog.set_level(logging.WARNING, "orchestrack")
    assert hook(InvalidInputError("config 'x.yaml' does not exist; pass its absolute path")) is None
    assert hook(KeyError("a bug of ours")) is None
    user, ours = caplog.records
    assert (user.levelno, user.exc_info) == (logging.WARNING, None) and "'x.yaml' does not exist" in user.getMessage()
    # anything else keeps its traceback, as text with secrets redacted (tests/integration/test_secret_sweep.py)
    assert ours.levelno == logging.ERROR and "Traceback" in ours.getMessage() and "KeyError" in ours.getMessage()
    monkeypatch.setenv("ORCHESTRACK_STRICT", "1")
    with pytest.raises(InvalidInputError):
        hook(InvalidInputError("x"))
