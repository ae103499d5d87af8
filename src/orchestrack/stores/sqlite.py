"""The embedded store: one SQLite file, safe for many processes on one machine.

WAL journal, a busy timeout and ``BEGIN IMMEDIATE`` write transactions make concurrent writers
queue instead of failing; every write is one short transaction. Open and close of a run are
idempotent by key thanks to the unique index on ``runs.key``.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Any

from orchestrack.errors import InvalidInputError, RunNotFoundError, StoreError
from orchestrack.record import (
    Artifact,
    ConfigFile,
    DataSnapshot,
    MetricPoint,
    RunRecord,
    RunStatus,
    Scalar,
    SeriesPoint,
    TaskAttempt,
)
from orchestrack.stores.base import RunQuery

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, name TEXT NOT NULL, owner TEXT, purpose TEXT,
    status TEXT NOT NULL, pipeline TEXT, failure_reason TEXT, started_at TEXT NOT NULL, ended_at TEXT,
    doc TEXT NOT NULL, failure_fingerprint TEXT);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs (failure_fingerprint);
CREATE TABLE IF NOT EXISTS params (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS tags (run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS metrics (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
    key TEXT NOT NULL, value REAL NOT NULL, step INTEGER, slice TEXT, ts TEXT NOT NULL, task TEXT);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id);
CREATE TABLE IF NOT EXISTS data (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
    name TEXT NOT NULL, uri TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (run_id, name, uri));
CREATE TABLE IF NOT EXISTS configs (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
    name TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (run_id, name));
CREATE TABLE IF NOT EXISTS artifacts (seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL,
    name TEXT NOT NULL, doc TEXT NOT NULL, UNIQUE (run_id, name));
CREATE INDEX IF NOT EXISTS artifacts_sha256 ON artifacts (json_extract(doc, '$.sha256'));
CREATE TABLE IF NOT EXISTS tasks (run_id TEXT NOT NULL, task_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    status TEXT NOT NULL, started_at TEXT, doc TEXT NOT NULL, PRIMARY KEY (run_id, task_id, attempt));
CREATE TABLE IF NOT EXISTS replayed_writes (write_id TEXT PRIMARY KEY, run_id TEXT NOT NULL);
"""
#: ``PRAGMA user_version`` of a store this version writes. 0: orchestrack 0.1 (tasks keyed by name,
#: metric points without their task); 2: tasks keyed by the orchestrator's task identity; 3: runs keep
#: their failure's fingerprint in a column of their own.
STORE_VERSION = 3
_UPGRADE_FROM_0 = """
ALTER TABLE tasks RENAME TO tasks_by_name;
CREATE TABLE tasks (run_id TEXT NOT NULL, task_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    status TEXT NOT NULL, started_at TEXT, doc TEXT NOT NULL, PRIMARY KEY (run_id, task_id, attempt));
INSERT INTO tasks SELECT run_id, name, attempt, status, json_extract(doc, '$.started_at'), doc FROM tasks_by_name;
DROP TABLE tasks_by_name;
ALTER TABLE metrics ADD COLUMN task TEXT;
"""
# The fingerprint column, filled from the failure documents of the rows already there (those written
# before fingerprints existed have none: they stay out of `orchestrack failures --group`).
_ADD_FINGERPRINT = """
ALTER TABLE runs ADD COLUMN failure_fingerprint TEXT;
UPDATE runs SET failure_fingerprint = json_extract(doc, '$.failure.fingerprint') WHERE failure_reason IS NOT NULL;
"""
# A final task attempt is never replaced: a late or repeated report (a stopped task's own hook after
# its DAG run was closed, a replayed write) cannot contradict what the orchestrator already said.
# An ending that does not know when the attempt started keeps the stored start.
_RECORD_TASK = """
INSERT INTO tasks (run_id, task_id, attempt, status, started_at, doc) VALUES (?,?,?,?,?,?)
ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET status = excluded.status,
    started_at = coalesce(excluded.started_at, tasks.started_at),
    doc = CASE WHEN json_extract(excluded.doc, '$.started_at') IS NULL
               THEN json_set(excluded.doc, '$.started_at', json_extract(tasks.doc, '$.started_at'))
               ELSE excluded.doc END
    WHERE tasks.status = 'running'
"""
_TASK_ORDER = "ORDER BY started_at IS NULL, started_at, task_id, attempt"

# What a run row is read as (named, not ``*``: columns added by an upgrade come last in old files).
_RUN_ROW = "run_id, key, name, owner, purpose, status, pipeline, failure_reason, started_at, ended_at, doc"
# Top-level record fields with their own column; everything else lives in the JSON ``doc``.
_COLUMNS = ("key", "name", "owner", "purpose", "status", "started_at", "ended_at")
# What a metric point is read as: the slice as a flag and a text (``None`` does not sort), then in the
# order of :func:`_latest_last`'s columns.
_METRIC_ROW = "run_id, slice IS NOT NULL, ifnull(slice, ''), key, step, value, ts, task"
_DOC_FIELDS = ("schema_version", "orchestrator", "code", "features", "llm", "metric_units", "environment", "failure",
               "gate", "incomplete")


def _ts(value: datetime | str | None) -> str | None:
    """A sortable UTC timestamp text (fixed width, so text order is time order)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is not UTC:
        offset = value.utcoffset()
        if offset:
            value = value - offset
    # The wall-clock part of isoformat (now UTC): several times faster than strftime, and a
    # 100,000-point metric series pays it per point.
    return value.isoformat(timespec="microseconds")[:26] + "Z"


#: For :func:`_metric_rows`: the second it starts from, and the span of one second.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NO_TIME, _SECOND = timedelta(0), timedelta(seconds=1)


def _stamp_to_second(value: datetime) -> str:
    """:func:`_ts`'s text of a UTC ``value`` up to its fraction: ``"YYYY-MM-DDTHH:MM:SS."``."""
    return str(_ts(value))[:20]


def _metric_rows(run_id: str, points: list[MetricPoint]) -> list[tuple[Any, ...]]:
    """The ``metrics`` rows of ``points``, their timestamps as :func:`_ts` writes them. A training loop
    logs a timestamp a step: UTC ones within the same second share their text up to the fraction, as
    formatting each whole cost more than the rest of its row."""
    rows: list[tuple[Any, ...]] = []
    last, stamp, second = None, None, _EPOCH
    prefix = _stamp_to_second(second)
    for p in points:
        moment = p.timestamp
        if moment is not last:  # the points of one log_metrics call share one timestamp
            last = moment
            if type(moment) is datetime and moment.tzinfo is UTC:  # anything else as _ts takes it
                if not _NO_TIME <= moment - second < _SECOND:
                    second = moment.replace(microsecond=0)
                    prefix = _stamp_to_second(second)
                stamp = f"{prefix}{moment.microsecond:06d}Z"
            else:
                stamp = _ts(moment)
        rows.append((run_id, p.key, p.value, p.step, p.slice, stamp, p.task))
    return rows


def _latest_last(points: list[Any]) -> list[Any]:
    """One key's points (rows of ``_METRIC_ROW``, in log order) by step, then time, log order within
    ties (a stable sort): the last is the latest. A point without a step counts as step -1."""
    if None in map(itemgetter(4), points):
        return sorted(points, key=lambda point: (-1 if point[4] is None else point[4], point[6]))
    return sorted(points, key=itemgetter(4, 6))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused for the block (left as it was found). Reading a run
    back makes one object per metric point, none in a cycle; on a 100,000-point series the collector,
    triggered over and over by those allocations and scanning every object they keep alive, took
    as long as making them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


#: SQLite's primary result codes (``sqlite3.Error.sqlite_errorname``, Python 3.11+) by what they mean here.
_ERROR_KINDS = {"SQLITE_BUSY": "busy", "SQLITE_LOCKED": "busy", "SQLITE_NOTADB": "corrupt", "SQLITE_CORRUPT": "corrupt",
                "SQLITE_FULL": "full", "SQLITE_READONLY": "unwritable", "SQLITE_CANTOPEN": "unwritable",
                "SQLITE_PERM": "unwritable", "SQLITE_IOERR": "io"}


def _error_kind(err: sqlite3.Error) -> str | None:
    """What a SQLite error means, from its result code (extended codes such as SQLITE_BUSY_SNAPSHOT
    count as their primary code)."""
    name = getattr(err, "sqlite_errorname", None) or ""
    for code, kind in _ERROR_KINDS.items():
        if name == code or name.startswith(code + "_"):
            return kind
    return None


class SQLiteStore:
    """The embedded store. ``uri`` is ``sqlite:///ABSOLUTE/PATH.db`` or a plain path.

    Example::

        store = SQLiteStore("sqlite:////tmp/orchestrack.db")
    """

    def __init__(self, uri: str, *, busy_timeout_s: float = 30.0) -> None:
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute/path.db
        if uri.startswith("sqlite:") and not uri.startswith("sqlite:///"):
            raise InvalidInputError(
                f"tracking URI {uri!r} is not a SQLite URI orchestrack understands; write "
                "sqlite:///relative/path.db or sqlite:////absolute/path.db (three or four slashes)")
        # Absolute, so that the URI handed to subprocesses (Run.env) means the same file there.
        self.path = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
        self.uri = f"sqlite:///{self.path}"
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._connection: sqlite3.Connection | None = None
        self._pid = -1

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        # A connection must not cross a fork: reconnect in a child process.
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(
                f"cannot create the folder of the embedded store {str(self.path.parent)!r}: {err.strerror}; "
                "set ORCHESTRACK_HOME (or ORCHESTRACK_TRACKING_URI) to a writable location") from err
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                connection = self._set_up()
                break
            except sqlite3.OperationalError as err:
                # Switching a new file to WAL can report "locked" without waiting on the busy
                # handler while other processes create the same file: wait and try again.
                if _error_kind(err) != "busy" or time.monotonic() > deadline:
                    raise self._explain(err, "open") from err
                time.sleep(0.01 + random.random() * 0.05)
            except sqlite3.Error as err:
                raise self._explain(err, "open") from err
        self._connection, self._pid = connection, os.getpid()
        return connection

    def _set_up(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                     check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            self._refuse_foreign(connection)  # before WAL mode, which would change the other program's file
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.execute("BEGIN IMMEDIATE")
            try:
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                existing = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if version < 2 and "tasks" in existing:
                    for statement in filter(str.strip, _UPGRADE_FROM_0.split(";")):
                        connection.execute(statement)
                if "runs" in existing and "failure_fingerprint" not in {
                        row[1] for row in connection.execute("PRAGMA table_info(runs)")}:
                    for statement in filter(str.strip, _ADD_FINGERPRINT.split(";")):
                        connection.execute(statement)
                for statement in filter(str.strip, SCHEMA.split(";")):
                    connection.execute(statement)
                if version < STORE_VERSION:
                    connection.execute(f"PRAGMA user_version = {STORE_VERSION}")
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:  # a failed BEGIN leaves none, and its error is the one to report
                    connection.execute("ROLLBACK")
                raise
        except BaseException:
            connection.close()
            raise
        return connection

    def _refuse_foreign(self, connection: sqlite3.Connection) -> None:
        """Refuse a SQLite file that another program or a newer orchestrack wrote: adding our tables to
        it, or reading a schema we do not know, would damage it or misread it."""
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
                  if not row[0].startswith("sqlite_")}
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
        if tables and not {"run_id", "key", "doc"} <= columns:
            raise StoreError(
                f"cannot open the embedded store {str(self.path)!r}: it is a SQLite database of another program "
                f"(tables {', '.join(sorted(tables)[:5])}), not an orchestrack store; point "
                "ORCHESTRACK_TRACKING_URI (or ORCHESTRACK_HOME) at a new file; nothing was changed in this one")
        if version > STORE_VERSION:
            raise StoreError(
                f"cannot open the embedded store {str(self.path)!r}: a newer orchestrack wrote it (store version "
                f"{version}, this one knows up to {STORE_VERSION}); upgrade orchestrack (pip install -U orchestrack)")

    def _explain(self, err: sqlite3.Error, action: str) -> StoreError:
        text, kind = str(err), _error_kind(err)
        where = f"embedded store {str(self.path)!r}"
        if kind == "busy":
            fix = (f"another process held the lock for more than {self.busy_timeout_s:g} s; "
                   "raise ORCHESTRACK_BUSY_TIMEOUT_S or find the process holding it")
        elif kind == "corrupt":
            fix = (f"the file is not a readable SQLite database; move it aside (mv {self.path} {self.path}.corrupt) "
                   "and orchestrack starts a new one, then `orchestrack replay` loads what was spooled meanwhile")
        elif kind == "full":
            fix = "the disk is full; free space or point ORCHESTRACK_HOME elsewhere"
        elif self.path.is_dir():
            fix = "that is a folder, not a database file; name a file, e.g. sqlite:////srv/orchestrack/runs.db"
        elif kind == "unwritable":
            fix = ("the file or its folder is not writable (read-only file, mount or immutable flag); fix permissions "
                   "or set ORCHESTRACK_HOME to a writable folder")
        elif kind == "io":
            fix = ("the disk refused a read or write (full, over a file size limit, failing or a lost network "
                   "mount); free space or point ORCHESTRACK_HOME elsewhere, then `orchestrack replay`")
        else:
            fix = "see the SQLite error above"
        return StoreError(f"cannot {action} the {where}: {text}; {fix}")

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            connection = self._connect()
            try:
                connection.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise self._explain(err, action) from err
            try:
                yield connection
                connection.execute("COMMIT")
            except sqlite3.Error as err:
                # SQLite may have rolled back already (a full disk, an I/O error): report the first error.
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise self._explain(err, action) from err
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row | tuple[Any, ...]]:
        with self._lock:
            connection = self._connect()
            try:
                return connection.execute(sql, args).fetchall()
            except sqlite3.Error as err:
                raise self._explain(err, "read") from err

    @contextmanager
    def transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` write transaction on this store's connection, for tables other
        modules keep in the same file (the model registry); ``action`` completes "cannot ... the
        embedded store" in an error.

        Example::

            with store.transaction("register a model in") as connection:
                connection.execute("INSERT INTO ...")
        """
        with self._write(action) as connection:
            yield connection

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement on this store's connection."""
        return [tuple(row) for row in self._read(sql, args)]

    def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    # -- runs -------------------------------------------------------------------------------

    def open_run(self, record: RunRecord) -> RunRecord:
        """Insert ``record`` unless its key exists; return the stored run."""
        document = record.model_dump(mode="json")
        with self._write("open a run in") as connection:
            inserted = connection.execute(
                "INSERT INTO runs (run_id, key, name, owner, purpose, status, pipeline, failure_reason,"
                " started_at, ended_at, doc, failure_fingerprint) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (key) DO NOTHING",
                (record.run_id, record.key, record.name, record.owner, document["purpose"], document["status"],
                 record.orchestrator.pipeline, record.failure.reason.value if record.failure else None,
                 _ts(record.started_at), _ts(record.ended_at),
                 json.dumps({k: document[k] for k in _DOC_FIELDS}),
                 record.failure.fingerprint if record.failure else None)).rowcount == 1
            for key, value in record.params.items():
                connection.execute("INSERT OR IGNORE INTO params VALUES (?,?,?)",
                                   (record.run_id, key, json.dumps(value)))
            for key, value in record.tags.items():
                connection.execute("INSERT OR IGNORE INTO tags VALUES (?,?,?)", (record.run_id, key, value))
        if inserted:  # this call made the run: it is stored as given, nothing to read back
            return record
        found = self.find_run(record.key)
        if found is None:  # pragma: no cover - the insert above guarantees a row
            raise RunNotFoundError(f"run {record.key!r} vanished right after it was opened in {self.path}")
        return found

    def update_run(self, run_id: str, changes: dict[str, Any]) -> None:
        """Replace top-level fields of the run (metric units merge by metric)."""
        unknown = set(changes) - set(_COLUMNS) - set(_DOC_FIELDS)
        if unknown:
            raise InvalidInputError(f"update_run cannot change {sorted(unknown)}; use the matching log_* call")
        patch = RunRecord.model_validate({"run_id": run_id, "key": "-", "name": "-", **changes}).model_dump(mode="json")
        with self._write("update a run in") as connection:
            row = connection.execute("SELECT doc FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFoundError(f"no run with id {run_id!r} in {self.path}")
            doc = json.loads(row[0])
            sets: dict[str, Any] = {}
            for field in changes:
                if field == "metric_units":  # merged by metric: units set by other processes stay
                    doc[field] = {**doc.get(field, {}), **patch[field]}
                elif field in _DOC_FIELDS:
                    doc[field] = patch[field]
                elif field in ("started_at", "ended_at"):
                    sets[field] = _ts(patch[field])
                else:
                    sets[field] = patch[field]
            if "failure" in changes:
                sets["failure_reason"] = patch["failure"]["reason"] if patch["failure"] else None
                sets["failure_fingerprint"] = patch["failure"]["fingerprint"] if patch["failure"] else None
            if "orchestrator" in changes:
                sets["pipeline"] = patch["orchestrator"]["pipeline"]
            sets["doc"] = json.dumps(doc)
            assignments = ", ".join(f"{column} = ?" for column in sets)
            connection.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", (*sets.values(), run_id))

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id."""
        return self._read_run(run_id, series=True)

    def get_run_without_series(self, run_id: str) -> RunRecord:
        """The run with its latest metric values but no metric series: what closing a run needs (a
        long training loop's series is most of a record's reading time)."""
        return self._read_run(run_id, series=False)

    def _read_run(self, run_id: str, *, series: bool) -> RunRecord:
        rows = self._read(f"SELECT {_RUN_ROW} FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise RunNotFoundError(f"no run with id {run_id!r} in the embedded store {str(self.path)!r}")
        return self._assemble_many([rows[0]], series=series)[0]

    def get_progress(self, run_id: str, task_id: str | None = None) -> tuple[RunStatus, list[TaskAttempt]]:
        """The run's status and task attempts (only ``task_id``'s when given)."""
        rows = self._read("SELECT status FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise RunNotFoundError(f"no run with id {run_id!r} in the embedded store {str(self.path)!r}")
        only, args = ("AND task_id = ?", (run_id, task_id)) if task_id is not None else ("", (run_id,))
        tasks = [TaskAttempt.model_validate_json(d) for (d,) in self._read(
            f"SELECT doc FROM tasks WHERE run_id = ? {only} {_TASK_ORDER}", args)]
        return RunStatus(rows[0][0]), tasks

    def find_run(self, key_or_run_id: str) -> RunRecord | None:
        """The run with this key or id (a unique id prefix of 8+ characters works too)."""
        rows = (self._read(f"SELECT {_RUN_ROW} FROM runs WHERE key = ?", (key_or_run_id,))
                or self._read(f"SELECT {_RUN_ROW} FROM runs WHERE run_id = ?", (key_or_run_id,)))
        if not rows and len(key_or_run_id) >= 8 and all(c in "0123456789abcdef" for c in key_or_run_id):
            rows = self._read(f"SELECT {_RUN_ROW} FROM runs WHERE run_id >= ? AND run_id < ? LIMIT 2",
                              (key_or_run_id, key_or_run_id + "g"))
            if len(rows) != 1:
                return None
        return self._assemble(rows[0]) if rows else None

    def search_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching ``query``, newest first."""
        clauses, args = [], []
        for column, value in (("status", query.status), ("pipeline", query.pipeline),
                              ("failure_reason", query.reason), ("purpose", query.purpose), ("owner", query.owner),
                              ("failure_fingerprint", query.fingerprint)):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(str(value))
        if query.started_before is not None:
            clauses.append("started_at <= ?")
            args.append(str(_ts(query.started_before)))
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._read(f"SELECT {_RUN_ROW} FROM runs {where} ORDER BY started_at DESC, rowid DESC LIMIT ?",
                          (*args, query.limit))
        return self._assemble_many(rows)

    def find_artifacts(self, sha256: str) -> list[tuple[RunRecord, Artifact]]:
        """Every run artifact with this sha256, as ``(run, artifact)``, newest run first."""
        # The same expression as the artifacts_sha256 index, so SQLite answers from the index.
        rows = self._read(f"SELECT {_RUN_ROW} FROM runs WHERE run_id IN (SELECT run_id FROM artifacts "
                          "WHERE json_extract(doc, '$.sha256') = ?) ORDER BY started_at DESC, rowid DESC", (sha256,))
        return [(record, artifact) for record in self._assemble_many(rows)
                for artifact in record.artifacts if artifact.sha256 == sha256]

    def _assemble(self, row: Any) -> RunRecord:
        return self._assemble_many([row])[0]

    def _assemble_many(self, rows: list[Any], *, series: bool = True) -> list[RunRecord]:
        """Whole records for ``rows`` of ``runs`` (without metric series unless ``series``), with one
        query per child table for all of them."""
        with _collector_paused():
            return self._assemble_documents(rows, series)

    def _assemble_documents(self, rows: list[Any], series: bool) -> list[RunRecord]:
        documents: dict[str, dict[str, Any]] = {}
        for row in rows:
            (run_id, key, name, owner, purpose, status, _pipeline, _reason, started_at, ended_at, doc) = tuple(row)
            document: dict[str, Any] = json.loads(doc)
            document.update(run_id=run_id, key=key, name=name, owner=owner, purpose=purpose, status=status,
                            started_at=started_at, ended_at=ended_at, params={}, tags={}, data=[], artifacts=[],
                            configs=[], tasks=[])
            documents[run_id] = document
        if not documents:
            return []
        ids = list(documents)
        marks = ",".join("?" * len(ids))
        params = self._read(f"SELECT run_id, key, value FROM params WHERE run_id IN ({marks}) ORDER BY key", tuple(ids))
        # Each value is one JSON text: parsed as one array (a listing holds thousands; json.loads costs
        # microseconds a call before it reads a character).
        values = json.loads(f"[{','.join(row[2] for row in params)}]")
        for (run_id, key, _), value in zip(params, values, strict=True):
            documents[run_id]["params"][key] = value
        for run_id, key, value in self._read(f"SELECT run_id, key, value FROM tags WHERE run_id IN ({marks}) "
                                             "ORDER BY key", tuple(ids)):
            documents[run_id]["tags"][key] = value
        for table in ("data", "configs", "artifacts"):
            for run_id, doc in self._read(f"SELECT run_id, doc FROM {table} WHERE run_id IN ({marks}) ORDER BY seq",
                                          tuple(ids)):
                documents[run_id][table].append(json.loads(doc))
        for run_id, doc in self._read(f"SELECT run_id, doc FROM tasks WHERE run_id IN ({marks}) {_TASK_ORDER}",
                                      tuple(ids)):
            documents[run_id]["tasks"].append(json.loads(doc))
        for run_id, views in self._metric_views(ids, series).items():
            documents[run_id].update(views)
        return [RunRecord.model_validate(document) for document in documents.values()]

    def _metric_views(self, ids: list[str], series: bool = True) -> dict[str, dict[str, Any]]:
        """Each run's latest value per key (overall, per slice, per task) and its step series, from
        its raw points. "Latest" is the highest step, then the latest log, as in MLflow.

        The points are grouped by run, slice and key, and each group put in "latest last" order, by
        stable sorts on their columns instead of comparisons in Python per point: a group's last point
        is its latest value, its stepped points are its series, each task's last point its latest."""
        views: dict[str, dict[str, Any]] = {run_id: {"metrics": {}, "slice_metrics": {}, "task_metrics": {},
                                                     "metric_series": {}} for run_id in ids}
        marks = ",".join("?" * len(ids))
        rows = self._read(f"SELECT {_METRIC_ROW} FROM metrics WHERE run_id IN ({marks}) ORDER BY run_id, seq",
                          tuple(ids))
        group_of = itemgetter(0, 1, 2, 3)  # run_id, sliced, slice, key
        rows.sort(key=group_of)  # stable: log order within a group
        by_task: dict[str, dict[tuple[str, str], float]] = {run_id: {} for run_id in ids}
        for (run_id, sliced, slice_, key), group in groupby(rows, key=group_of):
            points = list(group)
            if len(points) > 1:
                points = _latest_last(points)
            latest = points[-1]
            if sliced:
                views[run_id]["slice_metrics"].setdefault(slice_, {})[key] = latest[5]
                continue
            views[run_id]["metrics"][key] = latest[5]
            if len(points) == 1:  # most keys of most runs: one value, no series
                if latest[7] is not None:
                    by_task[run_id][(latest[7], key)] = latest[5]
                continue
            # In "latest last" order, each task's last value is its latest.
            for task, value in dict(zip(map(itemgetter(7), points), map(itemgetter(5), points), strict=True)).items():
                by_task[run_id][(task, key)] = value
            stepped = [point for point in points if point[4] is not None] if series else []
            if len(stepped) > 1:
                views[run_id]["metric_series"][key] = SeriesPoint.read_back(map(itemgetter(4, 5, 6), stepped))
        for run_id, by_key in by_task.items():
            tasks = views[run_id]["task_metrics"]
            for (task, key), value in sorted(item for item in by_key.items() if item[0][0] is not None):
                tasks.setdefault(task, {})[key] = value
        return views

    # -- logging ----------------------------------------------------------------------------

    def log_params(self, run_id: str, params: dict[str, Scalar]) -> None:
        """Set params (a key logged again takes the new value)."""
        with self._write("log params to") as connection:
            connection.executemany("INSERT OR REPLACE INTO params VALUES (?,?,?)",
                                   [(run_id, k, json.dumps(v)) for k, v in params.items()])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags."""
        with self._write("set tags in") as connection:
            connection.executemany("INSERT OR REPLACE INTO tags VALUES (?,?,?)",
                                   [(run_id, k, v) for k, v in tags.items()])

    def log_metrics(self, run_id: str, points: list[MetricPoint], write_id: str | None = None) -> None:
        """Append metric points; a batch whose ``write_id`` was taken before is skipped."""
        rows = _metric_rows(run_id, points)
        with self._write("log metrics to") as connection:
            if write_id is not None and not connection.execute(
                    "INSERT OR IGNORE INTO replayed_writes (write_id, run_id) VALUES (?,?)",
                    (write_id, run_id)).rowcount:
                return  # the same batch, replayed again: in the same transaction as its points, so never twice
            connection.executemany(
                "INSERT INTO metrics (run_id, key, value, step, slice, ts, task) VALUES (?,?,?,?,?,?,?)", rows)

    def log_data(self, run_id: str, snapshot: DataSnapshot) -> None:
        """Record a data snapshot."""
        with self._write("log data to") as connection:
            connection.execute(
                "INSERT INTO data (run_id, name, uri, doc) VALUES (?,?,?,?) "
                "ON CONFLICT (run_id, name, uri) DO UPDATE SET doc = excluded.doc",
                (run_id, snapshot.name, snapshot.uri, snapshot.model_dump_json()))

    def log_config(self, run_id: str, config: ConfigFile) -> None:
        """Record a config file or prompt template."""
        self._put_named("configs", run_id, config.name, config.model_dump_json(), "log a config to")

    def log_artifact(self, run_id: str, artifact: Artifact) -> None:
        """Record an artifact."""
        self._put_named("artifacts", run_id, artifact.name, artifact.model_dump_json(), "log an artifact to")

    def _put_named(self, table: str, run_id: str, name: str, doc: str, action: str) -> None:
        """Insert a run's ``name`` document in ``table`` (configs, artifacts), or replace it."""
        with self._write(action) as connection:
            connection.execute(f"INSERT INTO {table} (run_id, name, doc) VALUES (?,?,?) "
                               "ON CONFLICT (run_id, name) DO UPDATE SET doc = excluded.doc", (run_id, name, doc))

    def record_tasks(self, run_id: str, attempts: list[TaskAttempt]) -> None:
        """Insert task attempts, or replace ones still running (a final attempt is never replaced)."""
        with self._write("record tasks in") as connection:
            connection.executemany(_RECORD_TASK, [
                (run_id, a.task_id, a.attempt, a.status.value, _ts(a.started_at), a.model_dump_json())
                for a in attempts])

    def record_task(self, run_id: str, attempt: TaskAttempt) -> None:
        """One attempt (what orchestrack 0.1 spooled)."""
        self.record_tasks(run_id, [attempt])

