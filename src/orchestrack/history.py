"""Failures across runs: how often the same failure (one fingerprint, :mod:`orchestrack.fingerprint`)
came back, since when, in which pipelines and tasks.

``orchestrack failures --group`` lists :func:`failure_histories`; ``orchestrack show`` adds the
:func:`failure_history` of a failed run's fingerprint.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from orchestrack.lifecycle import search_runs
from orchestrack.record import FailureReason, RunRecord, RunStatus
from orchestrack.views import failure_groups, fingerprint_of

#: The most runs one search returns (``RunQuery.limit``): a history reads up to this many.
MAX_RUNS = 10_000


class FailureHistory(BaseModel):
    """One failure fingerprint across runs: how often, since when, where, and the newest runs.

    Example::

        history = orchestrack.failure_history(record.failure.fingerprint)
        history.count, history.first_seen, history.runs[:3]
    """

    model_config = ConfigDict(extra="ignore", defer_build=True)

    fingerprint: str
    count: int = Field(description="Runs whose failure has this fingerprint.")
    reason: FailureReason | None = Field(default=None, description="The newest run's failure reason.")
    error_type: str | None = None
    summary: str | None = Field(default=None, description="The newest run's failure sentence.")
    first_seen: datetime | None = Field(default=None, description="When the oldest of the runs failed.")
    last_seen: datetime | None = Field(default=None, description="When the newest of the runs failed.")
    pipelines: list[str] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list, description="The tasks the failure was raised in.")
    runs: list[str] = Field(default_factory=list, description="Run ids of the newest runs, newest first.")


def _failed_at(record: RunRecord) -> datetime:
    return record.ended_at or record.started_at


def history_of(fingerprint: str, records: Sequence[RunRecord], newest: int = 5) -> FailureHistory:
    """The :class:`FailureHistory` of ``fingerprint`` over ``records`` (those without it are ignored)."""
    matching = sorted((r for r in records if fingerprint_of(r) == fingerprint), key=_failed_at, reverse=True)
    latest = matching[0].failure if matching else None
    return FailureHistory(
        fingerprint=fingerprint, count=len(matching),
        reason=latest.reason if latest else None, error_type=latest.error_type if latest else None,
        summary=latest.summary if latest else None,
        first_seen=_failed_at(matching[-1]) if matching else None,
        last_seen=_failed_at(matching[0]) if matching else None,
        pipelines=sorted({r.orchestrator.pipeline for r in matching if r.orchestrator.pipeline}),
        tasks=sorted({r.failure.task for r in matching if r.failure and r.failure.task}),
        runs=[r.run_id for r in matching[:newest]])


def histories_of(records: Sequence[RunRecord], newest: int = 3) -> list[FailureHistory]:
    """One :class:`FailureHistory` per fingerprint among ``records``, most frequent first (runs
    without a fingerprint are left out)."""
    return [history_of(fingerprint, grouped, newest)
            for fingerprint, _, grouped in failure_groups(records, len(records), by=fingerprint_of)]


def failure_history(fingerprint: str, *, newest: int = 5, tracking_uri: str | None = None) -> FailureHistory:
    """Every run (up to 10,000) whose failure has ``fingerprint``, summarised; ``count`` is 0 when none has.

    Example::

        orchestrack.failure_history("1a2b3c4d5e6f7a8b").count
    """
    found = search_runs(fingerprint=fingerprint, limit=MAX_RUNS, summary=True, tracking_uri=tracking_uri)
    return history_of(fingerprint, found, newest)


def failed_runs(*, pipeline: str | None = None, limit: int = 200, tracking_uri: str | None = None) -> list[RunRecord]:
    """The newest ``limit`` failed or cancelled runs (of ``pipeline``), newest first."""
    found = [record for status in (RunStatus.FAILED, RunStatus.CANCELLED)
             for record in search_runs(status=status, pipeline=pipeline, limit=limit, summary=True,
                                       tracking_uri=tracking_uri)]
    found.sort(key=_failed_at, reverse=True)
    return found[:limit]


def failure_histories(*, pipeline: str | None = None, limit: int = 200, newest: int = 3,
                      tracking_uri: str | None = None) -> list[FailureHistory]:
    """The failures of the newest ``limit`` failed or cancelled runs grouped by fingerprint, most
    frequent first; counts and dates are over those runs. Runs without a fingerprint (cancelled by a
    person, recorded before fingerprints) are left out.

    Example::

        for history in orchestrack.failure_histories(pipeline="nightly-train"):
            print(history.count, history.reason, history.summary)
    """
    return histories_of(failed_runs(pipeline=pipeline, limit=limit, tracking_uri=tracking_uri), newest)
