"""Leases on running task attempts: how a run killed without a word is found later.

A process that runs a task attempt holds a lease on it: the attempt records who holds it
(``lease_holder``, ``host:pid``) and until when (``lease_expires_at``). One daemon thread per
process renews the leases of the attempts this process has open, every ``lease_s / 3``, with one
``record_tasks`` write per run. An attempt whose lease expired (any host), or whose holder on this
host is gone, is lost: :func:`lost_because` says why, and :mod:`orchestrack.reaper` ends it.

Renewals go through the run's fail-open write, so a store outage never reaches the task, and a
renewal can never undo an ending: stores never replace a final attempt.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrack.capture import process_alive
from orchestrack.guard import log_fault
from orchestrack.record import TaskAttempt, TaskStatus, utcnow

if TYPE_CHECKING:
    from orchestrack.lifecycle import Run

log = logging.getLogger(__name__)


def holder() -> str:
    """``host:pid`` of this process, as leases record it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def leased(attempt: TaskAttempt, lease_s: float, now: datetime | None = None) -> TaskAttempt:
    """``attempt`` held by this process for ``lease_s`` seconds from ``now`` (unchanged when leases are off)."""
    if lease_s <= 0 or attempt.status is not TaskStatus.RUNNING:
        return attempt
    return attempt.model_copy(update={"lease_expires_at": (now or utcnow()) + timedelta(seconds=lease_s),
                                      "lease_holder": holder()})


def lost_because(attempt: TaskAttempt, now: datetime | None = None) -> str | None:
    """Why a running attempt is lost (``None``: it is not, or nothing says so).

    An attempt without a lease (recorded before leases, or by a process that holds none) is never lost.
    """
    if attempt.status is not TaskStatus.RUNNING or attempt.lease_expires_at is None:
        return None
    held_by = attempt.lease_holder or "an unknown process"
    host, _, pid = held_by.rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
        return f"process gone: pid {pid} on {host} exited without reporting"
    now = now or utcnow()
    if attempt.lease_expires_at < now:
        return (f"heartbeat lost: lease expired at {attempt.lease_expires_at.isoformat(timespec='seconds')} "
                f"(held by {held_by})")
    return None


class _Leases:
    """The running attempts this process holds, by run, and the thread that renews them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Held while a renewal is written: releasing an attempt waits for it, so the attempt's end is
        # always written after its last renewal (a store that reads before it writes, such as MLflow,
        # could otherwise let a late renewal undo the end).
        self._renewing = threading.Lock()
        self._held: dict[str, tuple[Run, dict[tuple[str, int], TaskAttempt]]] = {}
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_round = time.monotonic()

    def hold(self, run: Run, attempts: list[TaskAttempt]) -> None:
        """Renew these running attempts of ``run`` (as written: renewals keep what they say) until released."""
        if run.settings.lease_s <= 0:
            return
        with self._lock:
            if not any(held for _, held in self._held.values()):
                self._last_round = time.monotonic()  # nothing was held: the first round is a period away
            _, held = self._held.get(run.run_id, (run, {}))
            held.update(((a.task_id, a.attempt), a) for a in attempts if a.status is TaskStatus.RUNNING)
            self._held[run.run_id] = (run, held)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._renew_forever, name="orchestrack-leases", daemon=True)
                self._thread.start()
        self._wake.set()  # a shorter lease than the thread's current period takes effect now

    def release(self, run_id: str, keys: list[tuple[str, int]] | None = None) -> None:
        """Stop renewing these attempts of the run (``None``: all of them); returns once no renewal of
        them is being written."""
        with self._renewing, self._lock:
            entry = self._held.get(run_id)
            if entry is None:
                return
            for key in (list(entry[1]) if keys is None else keys):
                entry[1].pop(key, None)
            if not entry[1]:
                del self._held[run_id]

    def held(self, run_id: str) -> list[TaskAttempt]:
        with self._lock:
            entry = self._held.get(run_id)
            return list(entry[1].values()) if entry else []

    def renew(self) -> None:
        """One round: every held attempt's lease extended, one store write per run."""
        with self._lock:
            run_ids = list(self._held)
        for run_id in run_ids:
            with self._renewing:
                with self._lock:
                    entry = self._held.get(run_id)
                    if entry is None or not entry[1]:
                        continue
                    run, held = entry
                    renewed = [leased(a, run.settings.lease_s) for a in held.values()]
                try:
                    run._write("record_tasks", run_id=run.run_id, attempts=renewed)
                except Exception as err:  # strict mode raised: say so, keep renewing the others
                    log.warning("orchestrack could not renew the leases of run %r: %s", run.key, err)
                    continue
                with self._lock:  # keep what a newer report of the attempt said, with the new lease
                    for attempt in renewed:
                        key = (attempt.task_id, attempt.attempt)
                        if key in held:
                            held[key] = held[key].model_copy(update={"lease_expires_at": attempt.lease_expires_at,
                                                                     "lease_holder": attempt.lease_holder})

    def _period(self) -> float:
        with self._lock:
            leases = [run.settings.lease_s for run, held in self._held.values() if held]
        return min(leases) / 3 if leases else 60.0

    def _renew_forever(self) -> None:
        while True:
            # Woken by a new hold: recompute when the next round is due (a shorter lease shortens it),
            # counting from the last round, so frequent holds never starve renewal.
            if self._wake.wait(max(0.0, self._last_round + self._period() - time.monotonic())):
                self._wake.clear()
                continue
            try:
                self.renew()
            except Exception:
                log_fault(log, "orchestrack lease renewal failed; retrying next round")
            self._last_round = time.monotonic()

    def clear(self) -> None:
        """Hold nothing (tests: attempts a test left open are not renewed into the next test's store)."""
        with self._lock:
            self._held.clear()

    def _forget(self) -> None:
        """In a forked child: the parent's attempts are not this process's to renew."""
        self._lock = threading.Lock()
        self._renewing = threading.Lock()
        self._held = {}
        self._wake = threading.Event()
        self._thread = None
        self._last_round = time.monotonic()


leases = _Leases()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=leases._forget)
