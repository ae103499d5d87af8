"""Writes to a remote store go to a durable journal first and reach the store in the background.

A task never waits on an MLflow server that is down, restarting, slow or throttling: each write to
a store that says it is remote (``Store.remote``, the MLflow store) is appended to this process's
journal file in the spool folder (fsynced) and handed to that store's :class:`Courier`, a daemon
thread that delivers the writes in order, retrying a transient failure with backoff (up to
:data:`MAX_BACKOFF_S` apart) for as long as the process lives. A write waits at most
``metric_flush_s`` (or until :func:`settle` asks for it) so that the writes made meanwhile go
together: a store that can (``Store.apply_writes``, the MLflow store) makes consecutive writes of
one run in as few requests as it allows. Each delivered write's id is noted
beside the journal, so whatever stops the delivery (the process ends, is killed, the store stays
down), ``orchestrack replay`` sends exactly the rest; every write is idempotent, so the one that was
in flight when a process died lands once.

:func:`settle` (a task attempt's end, a run's close, any read of a run) writes the waiting metric
points and then waits for the couriers to deliver what this process has journaled, for at most
``delivery_timeout_s``, and not at all while a store is known to be down. At interpreter exit the
same bounded wait runs once more, while the store is down too: the journal may be lost with the
machine (a pod's disk), and a store that failed one write is often only overloaded. A journal whose
writes all arrived is deleted.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import random
import shutil
import sqlite3
import threading
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from orchestrack.errors import InvalidInputError, StoreError
from orchestrack.evidence import redact
from orchestrack.metric_buffer import flush_all
from orchestrack.settings import load_settings
from orchestrack.spool import Spool
from orchestrack.stores import open_artifact_store, open_store

log = logging.getLogger(__name__)

#: Longest pause between two tries of a write the store refused for a transient reason.
MAX_BACKOFF_S = 10.0
#: Most journaled writes handed to a store at once.
MAX_BATCH = 1000
_couriers: dict[str, Courier] = {}
_couriers_lock = threading.Lock()


def is_transient(error: BaseException) -> bool:
    """Whether trying the same write again later may succeed (the store down, slow, locked or
    throttling), as opposed to a write the store rejects for what it is."""
    transient = getattr(error, "transient", None)  # the store's own word (MlflowApiError)
    if isinstance(transient, bool):
        return transient
    status = getattr(error, "status", None)
    if isinstance(status, int):  # an HTTP answer: throttled or a server fault
        return status == 429 or status >= 500
    if isinstance(error, InvalidInputError):
        return False
    return isinstance(error, (StoreError, OSError, sqlite3.OperationalError, TimeoutError, ConnectionError))


def apply_write(store: Any, op: str, args: dict[str, Any], write_id: str | None) -> None:
    """Make one journaled write: a store method (a metric batch with its ``write_id``, so that the store
    never takes it twice), or ``put_artifact``: upload the copy kept in the spool folder to the artifact
    store, record the artifact where it now is, and drop the copy."""
    if op == "log_metrics":
        store.log_metrics(**args, write_id=write_id)
    elif op == "put_artifact":
        staged = Path(args["staged"])
        if not staged.exists():
            return  # uploaded and recorded before its delivery was noted (the copy goes last)
        target = configured_uri(args["artifact_uri"], load_settings().resolved_artifact_uri)
        uri, sha256, size = open_artifact_store(target).put(staged, args["artifact"].name)
        artifact = args["artifact"].model_copy(update={"uri": uri, "sha256": sha256, "size_bytes": size})
        store.log_artifact(args["run_id"], artifact)
        shutil.rmtree(staged.parent, ignore_errors=True)
    else:
        getattr(store, op)(**args)


def apply_writes(store: Any, writes: list[tuple[str, dict[str, Any], str | None]]) -> None:
    """Make consecutive journaled writes ``(op, args, write_id)`` in order: together where the store can
    (``store.apply_writes``), else one by one."""
    together = getattr(store, "apply_writes", None)
    if together is not None and len(writes) > 1:
        together(writes, lambda op, args, write_id: apply_write(store, op, args, write_id))
        return
    for op, args, write_id in writes:
        apply_write(store, op, args, write_id)


def configured_uri(journaled: str, configured: str) -> str:
    """The URI a journal line names its store by (its password masked): ``configured`` when that is the
    one it names, else the line's own."""
    return configured if "***" in journaled and redact(configured) == journaled else journaled


def stage_artifact(source: Path, spool_dir: Path) -> Path:
    """A copy of ``source`` (file or folder) in ``spool_dir/artifacts/<id>/``, kept until it is uploaded:
    the task may delete or change its own file meanwhile."""
    target = spool_dir / "artifacts" / uuid.uuid4().hex / source.name
    target.parent.mkdir(parents=True)
    if source.is_dir():
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target)
    return target


class Courier:
    """Delivers the writes this process journaled for one store, in order, in a daemon thread.

    A write waits up to ``linger_s`` for the writes that follow it (unless :meth:`drain` asks for it),
    so that the store can make them together.
    """

    def __init__(self, store: Any, journal: Spool, *, linger_s: float = 0.0) -> None:
        self.store = store
        self.journal = journal
        self.linger_s = linger_s
        self._queue: deque[tuple[str, str, dict[str, Any], float]] = deque()  # id, op, args, queued at
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._urgent = False  # deliver what is queued without lingering (a drain asked), until none is left
        self.down_since: float | None = None  # when the store last failed a write it should take
        self.refused = 0  # writes the store rejected: they stay in the journal for `orchestrack replay`

    def send(self, op: str, args: dict[str, Any]) -> None:
        """Journal one write (durably) and queue it for delivery."""
        with self._changed:
            write_id = self.journal.append(self.store.uri, op, args)  # under the lock: see _deliver
            if self._pid != os.getpid():  # a forked child: the parent's queue and thread are not ours
                self._queue.clear()
                self._thread, self._pid, self._urgent = None, os.getpid(), False
            self._queue.append((write_id, op, args, time.monotonic()))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._deliver, name=f"orchestrack-courier {self.store.uri}",
                                                daemon=True)
                self._thread.start()
            self._changed.notify_all()

    def close_journal(self) -> None:
        """Delete this process's journal when every write in it was delivered (at exit)."""
        with self._changed:
            if not self._queue and not self.refused:
                self.journal.forget_delivered(remove=True)

    @property
    def waiting(self) -> int:
        """Writes journaled by this process and not delivered yet."""
        with self._changed:
            return len(self._queue)

    def hurry(self) -> None:
        """Deliver what is queued now, without lingering for more."""
        with self._changed:
            if self._queue:
                self._urgent = True
                self._changed.notify_all()

    def drain(self, timeout_s: float, *, while_down: bool = False) -> bool:
        """Deliver every queued write now and wait until none is left, at most ``timeout_s`` and not
        while the store is down (unless ``while_down``); return whether nothing is left."""
        self.hurry()
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._queue and (while_down or self.down_since is None):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 1.0))
            return not self._queue

    def _next_batch(self, most: int) -> list[tuple[str, str, dict[str, Any], float]]:
        """The writes to deliver next, once the oldest has lingered long enough or a drain waits."""
        with self._changed:
            while True:
                if self._queue:
                    due = self._queue[0][3] + self.linger_s
                    now = time.monotonic()
                    if self._urgent or now >= due or len(self._queue) >= MAX_BATCH:
                        return list(itertools.islice(self._queue, most))
                    self._changed.wait(due - now)
                else:
                    self._changed.wait()

    def _deliver(self) -> None:
        backoff = 0.5
        singly = 0  # a batch was refused: its writes go one by one, so that only the refused one stays
        while True:
            batch = self._next_batch(1 if singly else MAX_BATCH)
            try:  # the open store instance (stores reopen)
                apply_writes(open_store(self.store.uri), [(op, args, write_id) for write_id, op, args, _ in batch])
            except Exception as err:
                if is_transient(err):
                    self._failed(err)
                    time.sleep(backoff * (0.5 + random.random()))
                    backoff = min(MAX_BACKOFF_S, backoff * 2)
                    continue
                if len(batch) > 1:
                    singly = len(batch)
                    continue
                # Rejected for what it is: trying again cannot help. It stays in the journal, where
                # `orchestrack replay` reports it.
                self.refused += 1
                log.error("orchestrack: %s %s refused %s (%s); it stays in %s for `orchestrack replay`",
                          type(self.store).__name__, self.store.uri, batch[0][1], redact(str(err)), self.journal.path)
            else:
                for write_id, *_ in batch:
                    self.journal.delivered(write_id)
                if self.down_since is not None:
                    log.warning("orchestrack: %s is back after %.0f s; delivering the journaled writes",
                                self.store.uri, time.monotonic() - self.down_since)
            backoff = 0.5
            singly = max(0, singly - len(batch))
            with self._changed:
                for _ in batch:
                    self._queue.popleft()
                if not self._queue:
                    self._urgent = False
                    if not self.refused:
                        self.journal.forget_delivered()  # everything arrived: the journal starts empty again
                self.down_since = None
                self._changed.notify_all()

    def _failed(self, err: Exception) -> None:
        if self.down_since is None:  # said before a drain waiting on it returns (only this thread sets it)
            log.warning("orchestrack cannot reach %s (%s); writes wait in %s and are delivered when it is back "
                        "(no impact on the pipeline)", self.store.uri, redact(str(err)), self.journal.path)
        with self._changed:
            if self.down_since is None:
                self.down_since = time.monotonic()
            self._changed.notify_all()


def courier_for(store: Any, journal_dir: Path, *, linger_s: float = 0.0) -> Courier:
    """This process's courier for ``store``, journaling into ``journal_dir``; a new one lets writes
    linger ``linger_s`` (the run's ``metric_flush_s``) for the ones that follow."""
    with _couriers_lock:
        courier = _couriers.get(store.uri)
        if courier is None:
            courier = _couriers[store.uri] = Courier(store, Spool(journal_dir, kind="journal"), linger_s=linger_s)
        return courier


def store_down(uri: str) -> bool:
    """Whether this process found the store at ``uri`` down and has not reached it since."""
    courier = _couriers.get(uri)
    return courier is not None and courier.down_since is not None


def settle(timeout_s: float, *, while_down: bool = False, uri: str | None = None) -> bool:
    """Write every waiting metric point, then wait (at most ``timeout_s``; not for a store known to be
    down unless ``while_down``) for every courier (only ``uri``'s when given) to deliver what this
    process journaled; return whether nothing is left waiting."""
    flush_all()
    deadline = time.monotonic() + timeout_s
    with _couriers_lock:
        couriers = [c for c in _couriers.values() if uri is None or c.store.uri == uri]
    for courier in couriers:  # all at once: a slow one must not hold up the others' delivery
        courier.hurry()
    return all([courier.drain(max(0.0, deadline - time.monotonic()), while_down=while_down)
                for courier in couriers])


def _settle_at_exit() -> None:
    try:
        timeout_s = load_settings().delivery_timeout_s
    except Exception:
        timeout_s = 10.0
    with _couriers_lock:
        couriers = list(_couriers.values())
    # Waits while a store is down too: a KFP pod or a container takes its journal with it, and a server that
    # refused one write under load (a timeout, MLflow's QueuePool limit) usually takes the next.
    if settle(timeout_s, while_down=True):
        for courier in couriers:
            courier.close_journal()
    else:
        with _couriers_lock:
            left = [(c.store.uri, c.waiting, c.journal.path) for c in _couriers.values() if c.waiting]
        for uri, count, path in left:
            log.warning("orchestrack: %d writes for %s are still waiting in %s; `orchestrack replay` (or the next "
                        "run on this host) delivers them", count, uri, path)


atexit.register(_settle_at_exit)
