"""The store protocol every backend implements, and the query type it answers.

A store keeps run records; an artifact store keeps the bytes of artifacts. Both are plain
synchronous objects. Writes are idempotent where the lifecycle may repeat them (opening a run by
key, recording a task attempt, logging a param again), so a retried or replayed write is harmless.
tests/contract/ holds the suite every store must pass.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from orchestrack.record import (
    Artifact,
    ConfigFile,
    DataSnapshot,
    FailureReason,
    MetricPoint,
    Purpose,
    RunRecord,
    RunStatus,
    Scalar,
    TaskAttempt,
)


class RunQuery(BaseModel):
    """Filters for :meth:`Store.search_runs`; results come newest first."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    status: RunStatus | None = None
    pipeline: str | None = None
    reason: FailureReason | None = None
    purpose: Purpose | None = None
    owner: str | None = None
    fingerprint: str | None = None
    limit: int = Field(default=50, ge=1, le=10_000)
    started_before: datetime | None = Field(default=None, description=(
        "Only runs started at or before this time (inclusive, so runs sharing the last start time of a "
        "page are not skipped): page through every run by passing the last page's oldest start."))
    summary: bool = Field(default=False, description=(
        "Only what the run itself holds is needed (status, failure, pipeline, times, params, latest metrics): "
        "a store may leave out task attempts and metric series to answer faster."))


@runtime_checkable
class Store(Protocol):
    """Where run records live.

    A store across a network sets a class attribute ``remote = True`` (the MLflow store): writes to it
    go to the journal first and reach it in the background (:mod:`orchestrack.delivery`). A store
    without it is written at once, and only a write that fails is journaled.
    """

    uri: str

    def open_run(self, record: RunRecord) -> RunRecord:
        """Insert ``record`` unless a run with its key exists; return the stored run either way."""

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id; raises ``RunNotFoundError``."""

    def get_run_without_series(self, run_id: str) -> RunRecord:
        """The run with this id with its latest metric values but an empty ``metric_series``: what
        closing a run reads (a long series is most of a record's reading time). Raises ``RunNotFoundError``."""

    def get_progress(self, run_id: str, task_id: str | None = None) -> tuple[RunStatus, list[TaskAttempt]]:
        """The run's status and task attempts (only ``task_id``'s when given), without reading metrics.

        Raises ``RunNotFoundError``.
        """

    def find_run(self, key_or_run_id: str) -> RunRecord | None:
        """The run with this key or run id, or ``None``."""

    def search_runs(self, query: RunQuery) -> list[RunRecord]:
        """Runs matching ``query``, newest first."""

    def update_run(self, run_id: str, changes: dict[str, Any]) -> None:
        """Replace top-level run fields (status, ended_at, failure, code, environment, ...).
        ``metric_units`` is merged by metric, so that units set by different processes all stay."""

    def log_params(self, run_id: str, params: dict[str, Scalar]) -> None:
        """Set params; a key logged again takes the new value."""

    def log_metrics(self, run_id: str, points: list[MetricPoint], write_id: str | None = None) -> None:
        """Append metric points. A journal replay passes the batch's ``write_id``: a batch already
        taken must not be appended again (every other write is idempotent by its key)."""

    def log_data(self, run_id: str, snapshot: DataSnapshot) -> None:
        """Record a data snapshot; the same (name, uri) logged again is replaced."""

    def log_config(self, run_id: str, config: ConfigFile) -> None:
        """Record a config file or prompt template (its copy is an artifact of its own); the same name
        is replaced."""

    def log_artifact(self, run_id: str, artifact: Artifact) -> None:
        """Record an artifact already put in the artifact store; the same name is replaced."""

    def find_artifacts(self, sha256: str) -> list[tuple[RunRecord, Artifact]]:
        """Every run artifact whose content has this sha256, as ``(run, artifact)``, newest run first
        (``orchestrack which``)."""

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags."""

    def record_tasks(self, run_id: str, attempts: list[TaskAttempt]) -> None:
        """Insert each attempt, keyed by (``task_id``, ``attempt``), or replace the stored one while
        that is still ``running`` (keeping its ``started_at`` when the new one has none). A final
        attempt is never replaced: the first final word stands."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class ArtifactStore(Protocol):
    """Where artifact bytes live, addressed by content."""

    uri: str

    def put(self, path: Path, name: str) -> tuple[str, str, int]:
        """Store a file or folder; return ``(uri, sha256, size_bytes)``."""

    def fetch(self, uri: str, destination: Path, progress: Callable[[int], None] | None = None) -> Path:
        """Copy the artifact at ``uri`` to ``destination``; return the written path. ``progress`` is
        called with the bytes moved since its last call (a progress bar)."""
