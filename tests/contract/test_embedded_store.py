"""The embedded store (SQLite + local artifact folder) passes the store contracts."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from orchestrack.record import TaskAttempt, TaskStatus
from orchestrack.stores.base import RunQuery
from orchestrack.stores.local_artifacts import LocalArtifactStore
from orchestrack.stores.sqlite import STORE_VERSION, SQLiteStore
from tests.contract.store_contract import ArtifactStoreContract, StoreContract


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> SQLiteStore:
        store = SQLiteStore(f"sqlite:///{tmp_path / 'contract.db'}")
        yield store
        store.close()


def test_a_store_written_by_0_1_is_upgraded_and_reads(tmp_path: Path) -> None:
    """The 0.1 layout (tasks keyed by name, metric points without a task) opens, reads and takes new writes."""
    path = tmp_path / "old.db"
    doc = {"schema_version": 1, "orchestrator": {"kind": "python"}, "code": {}, "features": {}, "environment": {},
           "failure": None, "incomplete": []}
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE runs (run_id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, name TEXT NOT NULL, owner TEXT,
            purpose TEXT, status TEXT NOT NULL, pipeline TEXT, failure_reason TEXT, started_at TEXT NOT NULL,
            ended_at TEXT, doc TEXT NOT NULL);
        CREATE TABLE params (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key));
        CREATE TABLE tags (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key));
        CREATE TABLE metrics (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, key TEXT NOT NULL,
            value REAL NOT NULL, step INTEGER, slice TEXT, ts TEXT NOT NULL);
        CREATE TABLE data (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, name TEXT NOT NULL,
            uri TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (run_id, name, uri));
        CREATE TABLE artifacts (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, name TEXT NOT NULL,
            doc TEXT NOT NULL, UNIQUE (run_id, name));
        CREATE TABLE tasks (run_id TEXT NOT NULL, name TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL,
            doc TEXT NOT NULL, PRIMARY KEY (run_id, name, attempt));""")
    old.execute("INSERT INTO runs VALUES ('r1','old/1','old','me',NULL,'failed','p','data-error',"
                "'2026-11-01T00:00:00.000000Z','2026-11-01T00:01:00.000000Z',?)", (json.dumps(doc),))
    old.execute("INSERT INTO metrics (run_id, key, value, step, slice, ts) VALUES "
                "('r1','auc',0.9,NULL,NULL,'2026-11-01T00:00:30.000000Z')")
    old.execute("INSERT INTO tasks VALUES ('r1','load',1,'failed',?)", (json.dumps(
        {"name": "load", "attempt": 1, "status": "failed", "started_at": "2026-11-01T00:00:10Z"}),))
    old.commit()
    old.close()

    store = SQLiteStore(f"sqlite:///{path}")
    record = store.get_run("r1")
    assert (record.key, record.metrics, record.status) == ("old/1", {"auc": 0.9}, "failed")
    assert [(t.task_id, t.name, t.attempt) for t in record.tasks] == [("load", "load", 1)]
    store.record_tasks("r1", [TaskAttempt(task_id="tr-1", name="load", attempt=1, status=TaskStatus.SUCCEEDED)])
    assert sorted(t.task_id for t in store.get_run("r1").tasks) == ["load", "tr-1"]
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION


def test_a_store_without_the_fingerprint_column_gets_it_indexed_and_filled(tmp_path: Path) -> None:
    """A version-2 store (no ``failure_fingerprint`` column) gains the column and its index on open; rows
    whose failure document has a fingerprint are found by it, rows without one are not."""
    path = tmp_path / "v2.db"
    current = SQLiteStore(f"sqlite:///{path}")
    current.query("SELECT 1")  # makes the file with today's layout, to take the column off again
    current.close()
    old = sqlite3.connect(path)
    old.executescript("""
        DROP INDEX runs_fingerprint;
        ALTER TABLE runs DROP COLUMN failure_fingerprint;
        PRAGMA user_version = 2;""")
    for index, fingerprint in enumerate(["1a2b3c4d5e6f7a8b", None]):
        failure = {"reason": "data-error", "summary": "x", "fingerprint": fingerprint}
        doc = {"schema_version": 2, "orchestrator": {"kind": "python"}, "code": {}, "features": {}, "environment": {},
               "failure": failure, "incomplete": []}
        old.execute("INSERT INTO runs VALUES (?,?,'old','me',NULL,'failed','p','data-error',"
                    "'2026-11-01T00:00:00.000000Z',NULL,?)", (f"r{index}", f"old/{index}", json.dumps(doc)))
    old.commit()
    old.close()

    store = SQLiteStore(f"sqlite:///{path}")
    assert [r.key for r in store.search_runs(RunQuery(fingerprint="1a2b3c4d5e6f7a8b"))] == ["old/0"]
    assert {r.key for r in store.search_runs(RunQuery())} == {"old/0", "old/1"}
    store.close()
    upgraded = sqlite3.connect(path)
    assert upgraded.execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION
    assert "runs_fingerprint" in {row[1] for row in upgraded.execute("PRAGMA index_list(runs)")}
    upgraded.close()


class TestLocalArtifactStore(ArtifactStoreContract):
    @pytest.fixture
    def artifact_store(self, tmp_path: Path) -> LocalArtifactStore:
        return LocalArtifactStore(str(tmp_path / "artifacts"))
