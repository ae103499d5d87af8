"""End what nobody will end: task attempts whose process died without a word, and their runs.

A worker killed with SIGKILL, an evicted pod, a lost machine: no hook runs, and the attempt would
stay ``running`` forever. Every attempt a process runs carries a lease it renews
(:mod:`orchestrack.lease`); :func:`reap` reads every running run of a store, ends each running
attempt whose lease expired (on any host), or whose holder on this host is gone, as failed /
``infra-error`` with how it was found, and closes a run once none of its attempts is alive. Runs
recorded without leases are left alone. Reaping twice changes nothing.

Example::

    for reaped in orchestrack.reap():
        print(reaped.key, reaped.attempts, reaped.closed)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from orchestrack.lease import lost_because
from orchestrack.lifecycle import Run
from orchestrack.metric_buffer import flush_all
from orchestrack.outcome import Outcome, RunEnd, TaskReport
from orchestrack.record import RunRecord, RunStatus, TaskStatus, utcnow
from orchestrack.settings import Settings, load_settings
from orchestrack.stores import RunQuery, Store, open_store

log = logging.getLogger(__name__)

#: Runs read per page when listing every running run.
PAGE = 1000


@dataclass
class Reaped:
    """What :func:`reap` did to one run: the attempts it ended (``task_id``, attempt, how it was
    found) and whether it closed the run (``False``: another attempt of it is still alive)."""

    key: str
    run_id: str
    attempts: list[tuple[str, int, str]] = field(default_factory=list)
    closed: bool = False


def running_runs(store: Store, *, page: int = PAGE) -> Iterator[RunRecord]:
    """Every run the store has as running, newest first, page by page (summaries: no task attempts).

    Pages are cut by start time, not by offset, so runs closed while this reads never shift a page.
    """
    seen: set[str] = set()
    before: datetime | None = None
    size = page
    while True:
        batch = store.search_runs(RunQuery(status=RunStatus.RUNNING, summary=True, limit=size,
                                           started_before=before))
        fresh = [record for record in batch if record.run_id not in seen]
        yield from fresh
        seen.update(record.run_id for record in fresh)
        if len(batch) < size:
            return
        if not fresh:  # a whole page shares one start time: read a bigger one
            if size >= 10_000:
                log.warning("orchestrack reap: more than %d running runs started at %s; the rest are left for "
                            "the next reap", size, before)
                return
            size = min(size * 10, 10_000)
            continue
        before = batch[-1].started_at


@dataclass
class RunLost:
    """An orchestrator adapter's word that a whole run is lost (its flow process found gone, say):
    ``end`` closes it, after ``reports`` (what the orchestrator knows of its tasks) are recorded."""

    end: RunEnd
    reports: list[TaskReport] = field(default_factory=list)


def reap(tracking_uri: str | None = None, *, now: datetime | None = None, budget_s: float | None = None,
         judge: Callable[[RunRecord], RunLost | None] | None = None) -> list[Reaped]:
    """End every running attempt whose holder died, and close the runs left with none alive.

    An attempt's lease expired (any host: ``heartbeat lost``), or its holder on this host exited
    (``process gone``): it ends failed / ``infra-error``, and its run closes the same way once no
    attempt of it is alive. ``now`` is the time leases are judged at (default: the clock).
    ``budget_s`` stops reading more runs once that many seconds have passed (``orchestrack runs``
    reaps on the way). ``judge`` lets an orchestrator adapter say of a running run that it is lost
    as a whole (see :class:`RunLost`). Returns what it did, per run.

    Example::

        orchestrack.reap()  # or, from cron or a worker's start: orchestrack reap
    """
    settings = load_settings(**({"tracking_uri": tracking_uri} if tracking_uri else {}))
    store = open_store(settings.resolved_tracking_uri, busy_timeout_s=settings.busy_timeout_s)
    flush_all()
    deadline = None if budget_s is None else time.monotonic() + budget_s
    done: list[Reaped] = []
    for summary in running_runs(store, page=PAGE):
        if deadline is not None and time.monotonic() > deadline:
            log.info("orchestrack reap stopped after %.1f s; run `orchestrack reap` for the rest", budget_s)
            break
        reaped = reap_run(store, settings, summary, now=now, lost=judge(summary) if judge is not None else None)
        if reaped is not None:
            done.append(reaped)
    return done


def reap_run(store: Store, settings: Settings, record: RunRecord, *, now: datetime | None = None,
             lost: RunLost | None = None) -> Reaped | None:
    """Reap one run (``None``: nothing of it was lost). ``lost``: an adapter found the whole run lost."""
    status, attempts = store.get_progress(record.run_id)
    if status is not RunStatus.RUNNING:
        return None
    run = Run(record, store, settings)
    end = lost.end if lost is not None else None
    if lost is not None and lost.reports:
        run.report_tasks(lost.reports)  # the orchestrator's word on its tasks comes first
        status, attempts = store.get_progress(record.run_id)
    # Every try still running counts: an earlier try left running by a killed worker is lost too.
    running = [a for a in attempts if a.status is TaskStatus.RUNNING]
    found = [(a, why) for a in running if (why := lost_because(a, now or utcnow())) is not None]
    if not found and end is None:
        return None
    ended_at = now or utcnow()
    run.report_tasks(TaskReport(task_id=a.task_id, name=a.name, attempt=a.attempt, outcome=Outcome.LOST,
                                message=why, started_at=a.started_at, ended_at=ended_at, hostname=a.hostname,
                                cached=a.cached, details=a.details) for a, why in found)
    reaped = Reaped(key=record.key, run_id=record.run_id, attempts=[(a.task_id, a.attempt, why) for a, why in found])
    if end is not None or len(found) == len(running):
        run.conclude(end or RunEnd(Outcome.LOST, found[0][1], ended_at=ended_at))
        reaped.closed = True
    log.info("orchestrack reaped run %r: %s", record.key, "; ".join(why for _, why in found) or "closed")
    return reaped
