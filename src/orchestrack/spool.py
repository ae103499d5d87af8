"""The spool: where a write waits when its store fails, so no run is ever lost.

Each process appends the writes it could not make to its own JSON-lines file. ``orchestrack
replay`` (and every later ``start_run``) sends them to the store again; a file is claimed by
renaming it first, so two processes never replay the same writes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import to_jsonable_python

from orchestrack.capture import process_alive
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
}


@functools.cache
def _adapters(op: str) -> dict[str, TypeAdapter[Any]]:
    return {arg: TypeAdapter(kind) for arg, kind in OPERATIONS[op].items()}


def fallback_dir() -> Path:
    """Where spool files go when the configured spool folder is not writable."""
    return Path(tempfile.gettempdir()) / f"orchestrack-spool-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


class Spool:
    """This process's spool file in ``directory`` (or the fallback folder when it is unwritable)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._pid = -1

    def _file(self) -> Path:
        if self._path is not None and self._pid == os.getpid():
            return self._path
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = f"{socket.gethostname()}-{os.getpid()}-{stamp}.jsonl"
        for directory in (self.directory, fallback_dir()):
            try:
                directory.mkdir(parents=True, exist_ok=True)
                path = directory / name
                path.touch()
            except OSError as err:
                log.warning("cannot spool into %s (%s); trying the next folder", directory, err)
                continue
            self._path, self._pid = path, os.getpid()
            return path
        raise OSError(f"no writable spool folder: {self.directory} and {fallback_dir()} both failed")

    def write(self, store_uri: str, op: str, **args: Any) -> Path:
        """Append one failed write; return the spool file it went to."""
        line = json.dumps({"store": store_uri, "op": op, "at": datetime.now(UTC).isoformat(),
                           "args": to_jsonable_python(args)})
        with self._lock:
            path = self._file()
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        return path


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
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and _alive(int(parts[1])):
                continue
            files.append(path)
    return sorted(files, key=lambda p: p.stat().st_mtime if p.exists() else 0)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own file: nothing else writes it, and replaying it here is safe
    return process_alive(pid)


def replay(directories: list[Path], open_store: Any) -> tuple[int, list[str]]:
    """Send spooled writes to their stores; return ``(writes applied, problems)``.

    ``open_store(uri)`` returns the store for a spooled write's store URI. A file whose writes all
    succeed is deleted; one with failures is kept (renamed back) for a later replay.
    """
    applied, problems = 0, []
    for path in pending_files(directories):
        claimed = path.with_suffix(f".replaying-{os.getpid()}")
        try:
            os.rename(path, claimed)
        except OSError:
            continue  # another process claimed it first
        path = path.with_suffix(".jsonl")
        failed_lines = []
        for number, line in enumerate(claimed.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                adapters = _adapters(entry["op"])
                args = {name: adapters[name].validate_python(value) for name, value in entry["args"].items()}
                getattr(open_store(entry["store"]), entry["op"])(**args)
                applied += 1
            except Exception as err:
                problems.append(f"{path.name}:{number}: {type(err).__name__}: {err}")
                failed_lines.append(line)
        if failed_lines:
            claimed.write_text("\n".join(failed_lines) + "\n", encoding="utf-8")
            os.rename(claimed, path)
        else:
            claimed.unlink()
    return applied, problems
