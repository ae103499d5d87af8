"""The spool folder: each process's journal of writes that have not reached their store yet.

A process appends each such write to a JSON-lines file of its own (``<host>-<pid>-<time>.jsonl``;
``....journal.jsonl`` for the writes a remote store's courier delivers, see
:mod:`orchestrack.delivery`), one fsynced line per write with a unique ``id``. The ids of writes
that arrived are noted beside it (``<file>.delivered``). ``orchestrack replay`` (and every later
``start_run``) sends the rest to the store again: a file is claimed by renaming it first, so two
processes never replay the same writes, and a replay that dies half-way is taken over from the
last write it delivered. Every write is idempotent (a metric batch carries its id into the store),
so nothing lands twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from orchestrack.capture import process_alive
from orchestrack.evidence import redact
from orchestrack.record import Artifact, ConfigFile, DataSnapshot, MetricPoint, RunRecord, TaskAttempt

log = logging.getLogger(__name__)

# How each spooled operation's arguments are read back: name -> argument -> type.
OPERATIONS: dict[str, dict[str, Any]] = {
    "open_run": {"record": RunRecord},
    "update_run": {"run_id": str, "changes": dict[str, Any]},
    "log_params": {"run_id": str, "params": dict[str, Any]},
    "log_metrics": {"run_id": str, "points": list[MetricPoint]},
    "log_data": {"run_id": str, "snapshot": DataSnapshot},
    "log_config": {"run_id": str, "config": ConfigFile},
    "log_artifact": {"run_id": str, "artifact": Artifact},
    "set_tags": {"run_id": str, "tags": dict[str, str]},
    "record_task": {"run_id": str, "attempt": TaskAttempt},  # orchestrack 0.1
    "record_tasks": {"run_id": str, "attempts": list[TaskAttempt]},
    # Not a store method: upload a copy kept in the spool folder, then record it (orchestrack.delivery).
    "put_artifact": {"run_id": str, "artifact": Artifact, "staged": str, "artifact_uri": str},
}


@functools.cache
def _adapters(op: str) -> dict[str, TypeAdapter[Any]]:
    return {arg: TypeAdapter(kind) for arg, kind in OPERATIONS[op].items()}


def _encoded(op: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` as JSON values, each through the type replay reads it back with (:data:`OPERATIONS`).
    Not pydantic's ``to_jsonable_python`` on the whole: pydantic 2.7, our floor, fails on a model whose
    schema is built on first use when no instance of it was validated yet, such as points made by
    ``MetricPoint.checked``."""
    adapters = _adapters(op)
    return {name: adapters[name].dump_python(value, mode="json", warnings=False) for name, value in args.items()}


def fallback_dir() -> Path:
    """Where spool files go when the configured spool folder is not writable."""
    return Path(tempfile.gettempdir()) / f"orchestrack-spool-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


class Spool:
    """This process's journal file in ``directory`` (or the fallback folder when it is unwritable).

    ``kind`` names files of a second journal kept by the same process (``"journal"``: a courier's).
    """

    def __init__(self, directory: Path, *, kind: str = "") -> None:
        self.directory = directory
        self.kind = kind
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._pid = -1
        self._lines = 0

    @property
    def path(self) -> Path | None:
        """The file this process writes now (``None`` before its first write)."""
        return self._path if self._pid == os.getpid() else None

    def _file(self) -> Path:
        if self._path is not None and self._pid == os.getpid():
            return self._path
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{socket.gethostname()}-{os.getpid()}-{stamp}{'.' + self.kind if self.kind else ''}.jsonl"
        for directory in (self.directory, fallback_dir()):
            try:
                directory.mkdir(parents=True, exist_ok=True)
                path = directory / name
                path.touch()
            except OSError as err:
                log.warning("cannot spool into %s (%s); trying the next folder", directory, err)
                continue
            self._path, self._pid, self._lines = path, os.getpid(), 0
            return path
        raise OSError(f"no writable spool folder: {self.directory} and {fallback_dir()} both failed")

    def append(self, store_uri: str, op: str, args: dict[str, Any]) -> str:
        """Append one write durably (fsynced); return its id. A password in the store's URI is not
        written: replay finds the store again in the configuration."""
        write_id = uuid.uuid4().hex
        line = json.dumps({"id": write_id, "store": redact(store_uri), "op": op, "at": datetime.now(UTC).isoformat(),
                           "args": _encoded(op, args)})
        with self._lock:
            path = self._file()
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            self._lines += 1
        return write_id

    def write(self, store_uri: str, op: str, **args: Any) -> Path:
        """Append one failed write; return the spool file it went to."""
        self.append(store_uri, op, args)
        assert self._path is not None
        return self._path

    def delivered(self, write_id: str) -> None:
        """Note that the write ``write_id`` of this process's file reached its store."""
        with self._lock:
            if self._path is not None and self._pid == os.getpid():
                _note_delivered(self._path, write_id)

    def forget_delivered(self, *, remove: bool = False) -> None:
        """Empty this process's file once every write in it was delivered (the caller knows); with
        ``remove``, delete it (the process is ending)."""
        with self._lock:
            if self._path is None or self._pid != os.getpid() or not (self._lines or remove):
                return
            try:
                if remove:
                    self._path.unlink(missing_ok=True)
                else:
                    self._path.write_bytes(b"")
                progress_file(self._path).unlink(missing_ok=True)
            except OSError as err:
                log.debug("could not empty %s: %s", self._path, err)
                return
            self._lines = 0


def progress_file(journal: Path) -> Path:
    """Where the ids of a journal's delivered writes are noted."""
    return journal.with_suffix(".delivered")


def _note_delivered(journal: Path, write_id: str) -> None:
    with open(progress_file(journal), "a", encoding="utf-8") as handle:
        handle.write(write_id + "\n")


def _delivered_ids(journal: Path) -> set[str]:
    try:
        return set(progress_file(journal).read_text(encoding="utf-8").split())
    except OSError:
        return set()


def write_id_of(entry: dict[str, Any], line: str) -> str:
    """A journal line's write id (lines written before ids existed: a hash of the line)."""
    return str(entry.get("id") or hashlib.sha256(line.encode()).hexdigest()[:32])


def pending_files(directories: list[Path]) -> list[Path]:
    """Spool files that no live process on this host is still writing, oldest first."""
    files = []
    host = socket.gethostname()
    for directory in directories:
        try:
            candidates = list(directory.glob("*.jsonl")) + list(directory.glob("*.replaying-*"))
        except OSError:
            continue
        for path in candidates:
            if path.suffix.startswith(".replaying-"):
                # Claimed by a replay; take it over only if that process died half-way.
                owner = path.suffix.removeprefix(".replaying-")
                if not owner.isdigit() or _alive(int(owner)):
                    continue
                files.append(path)
                continue
            parts = path.stem.rsplit("-", 2)
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
                if _alive(int(parts[1])):
                    continue
                if int(parts[1]) == os.getpid() and path.name.endswith(".journal.jsonl"):
                    continue  # this process's courier is delivering it
            files.append(path)
    return sorted(files, key=lambda p: p.stat().st_mtime if p.exists() else 0)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own file: nothing else writes it, and replaying it here is safe
    return process_alive(pid)


def replay(directories: list[Path], deliver: Any, *, transient: Any = None) -> tuple[int, list[str]]:
    """Send journaled writes to their stores; return ``(writes applied, problems)``.

    ``deliver(store_uri, op, args, write_id)`` makes one write. Writes already delivered (noted
    beside their file) are skipped. ``transient(error)`` says a failure means the store is down for
    now: the rest of that store's writes then wait for a later replay instead of each failing in
    turn. A file whose writes all arrived is deleted; one with writes left is put back as it was.
    """
    applied = 0
    problems: list[str] = []
    for path in pending_files(directories):
        claimed = path.with_suffix(f".replaying-{os.getpid()}")
        try:
            os.rename(path, claimed)
        except OSError:
            continue  # another process claimed it first
        path = path.with_suffix(".jsonl")
        with open(progress_file(path), "a+", encoding="utf-8") as progress:
            progress.seek(0)
            done = set(progress.read().split())
            delivered, left = _replay_file(claimed, done, progress, deliver, transient, problems)
        applied += delivered
        if left:
            os.rename(claimed, path)
        else:
            claimed.unlink()
            progress_file(path).unlink(missing_ok=True)
    return applied, problems


def _replay_file(claimed: Path, done: set[str], progress: Any, deliver: Any, transient: Any,
                 problems: list[str]) -> tuple[int, int]:
    """Deliver the writes of one claimed file not in ``done``, noting each in ``progress`` (its open
    ``.delivered`` file) as it lands; return ``(delivered, left)``."""
    delivered = left = 0
    down: set[str] = set()
    name = claimed.with_suffix(".jsonl").name
    lines, torn = _whole_lines(claimed)
    if torn:
        log.info("orchestrack: %s ends in a write cut short when its process was killed mid-append "
                 "(%d bytes, never acknowledged); it is left out", name, len(torn))
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        entry: Any = None
        try:
            entry = json.loads(line)
            write_id = write_id_of(entry, line)
            if write_id in done:
                continue
            if entry["store"] in down:
                left += 1
                continue
            adapters = _adapters(entry["op"])
            args = {arg: adapters[arg].validate_python(value) for arg, value in entry["args"].items()}
            deliver(entry["store"], entry["op"], args, write_id)
        except Exception as err:
            left += 1
            problems.append(f"{name}:{number}: {type(err).__name__}: {err}")
            if transient is not None and isinstance(entry, dict) and transient(err):
                down.add(str(entry.get("store")))
            continue
        progress.write(write_id + "\n")
        progress.flush()  # noted as soon as it landed: a replay killed next resumes after it
        done.add(write_id)
        delivered += 1
    return delivered, left


def _whole_lines(path: Path) -> tuple[list[str], bytes]:
    """A journal's whole lines, and what follows the last newline: a write its process was killed while
    appending (never acknowledged: :meth:`Spool.append` returns once the whole line is fsynced), or
    ``b""``. Read as bytes, so that a cut inside a UTF-8 character cannot make the file unreadable."""
    *lines, torn = path.read_bytes().split(b"\n")
    return [line.decode("utf-8", errors="replace") for line in lines], torn.strip()


def pending_writes(directories: list[Path]) -> dict[str, list[tuple[Path, int]]]:
    """By run id: the journal files holding writes of that run that have not reached the store, with
    their count (files of live processes included: their writes are waiting too)."""
    found: dict[str, list[tuple[Path, int]]] = {}
    for directory in directories:
        try:
            files = sorted([*directory.glob("*.jsonl"), *directory.glob("*.replaying-*")])
        except OSError:
            continue
        for path in files:
            done = _delivered_ids(path.with_suffix(".jsonl"))
            counts: dict[str, int] = {}
            try:
                lines = _whole_lines(path)[0]
            except OSError:
                continue
            for line in lines:
                try:
                    entry = json.loads(line)
                    args = entry.get("args") or {}
                    run_id = args.get("run_id") or (args.get("record") or {}).get("run_id")
                except (ValueError, AttributeError):
                    continue
                if isinstance(run_id, str) and write_id_of(entry, line) not in done:
                    counts[run_id] = counts.get(run_id, 0) + 1
            for run_id, count in counts.items():
                found.setdefault(run_id, []).append((path, count))
    return found
