"""The run record: one pipeline execution, as stored and as shown.

A :class:`RunRecord` is what every store keeps and every command shows. Its JSON form
(``record.model_dump(mode="json")``) is the documented schema (docs/record-schema.md); adding a
field is fine, renaming or removing one needs a new ``schema_version``. Unknown fields are ignored
when a record is read, so an older orchestrack on one worker can read what a newer one wrote.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: 2: task attempts carry the orchestrator's task identity (``task_id``), may be attempt 0 (never ran)
#: and ``cached``; metric points carry their task (``task_metrics``). Version 1 records still read.
SCHEMA_VERSION = 2

#: The value types a parameter or tag may hold after coercion.
Scalar = str | int | float | bool | None


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (all record timestamps are UTC)."""
    return datetime.now(UTC)


class RunStatus(StrEnum):
    """Where a run stands."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskStatus(StrEnum):
    """Where one task attempt stands."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"


class Purpose(StrEnum):
    """Why a run was made."""

    BASELINE = "baseline"
    TUNING = "tuning"
    ABLATION = "ablation"
    RECOVERY = "recovery"


class FailureReason(StrEnum):
    """The closed set of failure labels (../shared/failure-reasons.md, docs/failure-reasons.md)."""

    TIMEOUT = "timeout"
    INFRA_ERROR = "infra-error"
    DATA_ERROR = "data-error"
    BAD_SCHEMA = "bad-schema"
    METRIC_REGRESSION = "metric-regression"
    CODE_ERROR = "code-error"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"


class OrchestratorKind(StrEnum):
    """Which orchestrator ran the pipeline (``python`` when none did)."""

    AIRFLOW = "airflow"
    PREFECT = "prefect"
    KFP = "kfp"
    PYTHON = "python"


class _Model(BaseModel):
    # Schemas are built on first use, not at import: DAG files import us on every parse.
    model_config = ConfigDict(extra="ignore", defer_build=True)


_new, _set_attribute = object.__new__, object.__setattr__  # object's own: BaseModel's would validate
_M = TypeVar("_M", bound=_Model)


def _unvalidated(cls: type[_M], fields: dict[str, Any]) -> _M:
    """An instance of ``cls`` holding ``fields`` (every field, in field order) as given, not validated:
    what ``model_construct`` does, at a third of its cost. Only for values already checked, each of
    the exact type its field holds."""
    item = _new(cls)
    _set_attribute(item, "__dict__", fields)
    _set_attribute(item, "__pydantic_fields_set__", set(fields))
    _set_attribute(item, "__pydantic_extra__", None)
    _set_attribute(item, "__pydantic_private__", None)
    return item


class Failure(_Model):
    """Why a task or a run failed: one label and one plain sentence."""

    reason: FailureReason
    summary: str = Field(description="One sentence: the task, the cause and the key evidence.")
    task: str | None = None
    detail: str | None = Field(default=None, description="A finer label, e.g. oom, gpu-oom, preempted.")
    error_type: str | None = None
    exit_code: int | None = None
    evidence: str | None = Field(default=None, description="The (redacted) text the label rests on.")
    fingerprint: str | None = Field(
        default=None, description="16 hex digits, the same for the same failure in any run: exception type, "
        "message with numbers, ids, paths and quoted values masked, and user-code frames "
        "(orchestrack.fingerprint). None when no error text or exception was seen.")


class OrchestratorInfo(_Model):
    """The orchestrator's identity of this execution."""

    kind: OrchestratorKind = OrchestratorKind.PYTHON
    pipeline: str | None = None
    pipeline_version: str | None = None
    run_id: str | None = None
    url: str | None = None
    details: dict[str, Any] = Field(default_factory=dict, description="Adapter-specific facts.")


class CodeInfo(_Model):
    """The code state the run executed."""

    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    repository: str | None = None


class LeakageStatus(StrEnum):
    """What a screening for label leakage found."""

    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not-run"


class LeakageCheck(_Model):
    """Whether leakage screening ran on a data snapshot, what it found, and a note (which check, what leaked)."""

    status: LeakageStatus
    note: str | None = None


class DataSnapshot(_Model):
    """One input data set as it was when the run read it."""

    name: str
    uri: str
    version: str | None = None
    size_bytes: int | None = None
    rows: int | None = None
    task: str | None = None
    filters: dict[str, Any] | str | None = Field(
        default=None, description="What selected the snapshot: a mapping (``{'country': ['DE', 'FR']}``) or "
        "an expression (``\"date >= '2026-10-01'\"``).")
    labels_as_of: date | datetime | None = Field(
        default=None, description="When the labels were last refreshed (a date, or a UTC datetime).")
    leakage_check: LeakageCheck | None = None
    details: dict[str, Any] = Field(
        default_factory=dict, description="What the data's source says of it: for an S3 object version_id, "
        "etag, last_modified; for an S3 prefix objects and manifest_sha256.")


class Features(_Model):
    """The feature set the model was trained on; extra keys are kept.

    Two runs with the same ``columns`` can still differ in meaning: ``joins``, ``transformations``
    and the feature store's view and version say how the columns were made.
    """

    model_config = ConfigDict(extra="allow")

    columns: list[str] = Field(default_factory=list)
    target: str | None = None
    joins: list[str] = Field(default_factory=list, description="How tables were joined, e.g. "
                             "``orders LEFT JOIN customers ON customer_id``.")
    transformations: list[str] = Field(default_factory=list, description="What was done to columns, e.g. "
                                       "``log1p(amount)``, ``one-hot(country)``.")
    feature_store: str | None = Field(default=None, description="The feature store and view, e.g. ``feast:churn_v``.")
    feature_store_version: str | None = None


class ConfigFile(_Model):
    """A config file or folder (or an LLM prompt template) the run used: hashed, stored, comparable.

    ``values`` holds the parsed file's settings flattened to dotted keys (YAML, JSON and TOML files;
    in a folder each key starts with the file's relative path and a colon), secrets masked; a file
    that does not parse is compared by ``sha256`` alone.
    """

    name: str
    kind: str = Field(default="config", description="``config`` or ``prompt``.")
    format: str = Field(description="yaml, json, toml, text or folder.")
    source: str = Field(description="Where it was read: the path as given, resolved.")
    sha256: str = Field(description="Of the file's bytes as read (a folder: of its manifest).")
    size_bytes: int
    artifact: str | None = Field(default=None, description="The name of the run artifact holding the stored copy.")
    values: dict[str, Scalar] = Field(default_factory=dict)
    values_complete: bool = Field(default=True, description="False when ``values`` was cut at its limit.")
    redacted: bool = Field(default=False, description="True when secrets were masked in the stored copy.")
    parse_error: str | None = Field(default=None, description="Why a YAML, JSON or TOML file was kept as text.")
    task: str | None = None


class LlmSettings(_Model):
    """How an LLM run called its model: provider, model and retrieval settings; extra keys are kept.

    Prompt templates are :class:`ConfigFile` entries of kind ``prompt``; latency, cost and tokens
    are metrics with units (``RunRecord.metric_units``).
    """

    model_config = ConfigDict(extra="allow")

    provider: str | None = None
    model: str | None = None
    retrieval: dict[str, Scalar] = Field(default_factory=dict, description="e.g. index, top_k, embedding "
                                         "model, chunk size.")


class Gpu(_Model):
    """One GPU visible to the process."""

    index: int
    name: str
    memory_total_mb: int | None = None
    uuid: str | None = None


class Environment(_Model):
    """Where the run's code executed."""

    image: str | None = None
    python: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    cuda: str | None = None
    driver: str | None = None
    gpus: list[Gpu] = Field(default_factory=list)
    hostname: str | None = None
    platform: str | None = None


#: The exact types a metric point's optional fields hold once validated.
_INT_OR_NONE = (int, type(None))
_STR_OR_NONE = (str, type(None))


class MetricPoint(_Model):
    """One logged metric value (a step series is several points with ``step`` set)."""

    key: str
    value: float
    step: int | None = None
    slice: str | None = None
    task: str | None = Field(default=None, description="The task_id of the task attempt that logged it.")
    timestamp: datetime = Field(default_factory=utcnow)

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError(f"metric value must be finite, got {value!r}")
        return value

    @classmethod
    def checked(cls, key: str, value: float, step: int | None, slice: str | None, task: str | None,
                timestamp: datetime) -> MetricPoint:
        """A point of fields already checked: a name and a value that passed
        :func:`~orchestrack.inputs.check_metric` (a finite float), a checked step, slice label, task
        and timestamp. Not validated again (a training loop makes one a step) unless a field is of a
        subclass type (an ``IntEnum`` step), which validation converts."""
        if (type(key) is str and type(step) in _INT_OR_NONE and type(slice) in _STR_OR_NONE
                and type(task) in _STR_OR_NONE and type(timestamp) is datetime):
            return _unvalidated(cls, {"key": key, "value": value, "step": step, "slice": slice, "task": task,
                                      "timestamp": timestamp})
        return cls(key=key, value=value, step=step, slice=slice, task=task, timestamp=timestamp)


class SeriesPoint(_Model):
    """One step of a metric series."""

    step: int
    value: float
    timestamp: datetime

    @classmethod
    def read_back(cls, points: Iterable[tuple[int, float, str]]) -> list[SeriesPoint]:
        """Points from a store's rows ``(step, value, timestamp)``: an int, a float and an ISO 8601
        UTC text, as the store's columns hold them; not validated again. What ``model_construct``
        does, at a third of its cost: a 100,000-point series read back used to spend most of its time
        validating its points one by one."""
        parse = datetime.fromisoformat
        return [_unvalidated(cls, {"step": step, "value": value, "timestamp": parse(timestamp)})
                for step, value, timestamp in points]


class Artifact(_Model):
    """A file or folder the run produced, stored content-addressed."""

    name: str
    kind: str = "file"
    uri: str
    sha256: str
    size_bytes: int
    task: str | None = None


class TaskAttempt(_Model):
    """One attempt of one task.

    ``task_id`` is the orchestrator's own identity of the task (a Prefect task run id, an Airflow
    ``task_id[map_index]``, a KFP task name with its ``ParallelFor`` iteration); ``name`` is what
    people read. Attempt ``0`` is a task that never ran (skipped or upstream-failed before a try).
    """

    task_id: str = ""
    name: str
    attempt: int = Field(ge=0)
    status: TaskStatus
    started_at: datetime | None = None
    ended_at: datetime | None = None
    failure: Failure | None = None
    hostname: str | None = None
    cached: bool = False
    details: dict[str, Any] = Field(default_factory=dict)
    #: While running: until when the process holding the attempt vouches for it (renewed every
    #: ``lease_s / 3``); an attempt whose lease expired is ended by ``orchestrack reap``.
    lease_expires_at: datetime | None = None
    #: While running: ``host:pid`` of the process holding the lease.
    lease_holder: str | None = None

    def model_post_init(self, context: Any) -> None:
        if not self.task_id:  # schema 1 records identified a task by its name
            self.task_id = self.name

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


class GateOutcome(StrEnum):
    """What a quality gate decided of a run."""

    PASSED = "passed"
    FAILED = "failed"
    HELD = "held"  # suspiciously good: kept from promotion until a person looks


class GateCheck(_Model):
    """One check of a quality gate: what was compared, with which numbers, and what it decided."""

    kind: str = Field(description="min, max, baseline, require, sigma or ceiling.")
    subject: str = Field(description="The metric (``auc``, ``auc[country=DE]``) or record field checked.")
    outcome: GateOutcome
    value: float | None = None
    bound: float | None = None
    reference: str | None = Field(default=None, description="The baseline run or the history compared against.")
    sentence: str


class GateDecision(_Model):
    """A quality gate's decision on a run, with every check behind it."""

    outcome: GateOutcome
    summary: str = Field(description="One sentence: the decision and the check that decided it.")
    checks: list[GateCheck] = Field(default_factory=list)
    spec: str | None = Field(default=None, description="Where the gate spec came from (a path, or ``inline``).")
    spec_sha256: str | None = None
    baseline_run: str | None = Field(default=None, description="The run id the baseline checks compared against.")
    decided_at: datetime = Field(default_factory=utcnow)


class RunRecord(_Model):
    """One run: one pipeline execution with everything needed to understand or repeat it.

    Example::

        record = orchestrack.get_run("nightly-train/2026-11-28")
        record.status, record.failure.reason if record.failure else None
    """

    schema_version: int = SCHEMA_VERSION
    run_id: str
    key: str
    name: str
    owner: str | None = None
    purpose: Purpose | None = None
    status: RunStatus = RunStatus.RUNNING
    started_at: datetime = Field(default_factory=utcnow)
    ended_at: datetime | None = None
    orchestrator: OrchestratorInfo = Field(default_factory=OrchestratorInfo)
    code: CodeInfo = Field(default_factory=CodeInfo)
    data: list[DataSnapshot] = Field(default_factory=list)
    features: Features = Field(default_factory=Features)
    configs: list[ConfigFile] = Field(default_factory=list, description="Config files and prompt templates.")
    llm: LlmSettings = Field(default_factory=LlmSettings)
    params: dict[str, Scalar] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    environment: Environment = Field(default_factory=Environment)
    metrics: dict[str, float] = Field(default_factory=dict)
    metric_units: dict[str, str] = Field(default_factory=dict, description="The unit of a metric, e.g. "
                                         "``{'llm.latency': 's', 'llm.cost': 'USD'}``.")
    slice_metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    task_metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Latest value per metric of each task that logged any, by task_id.")
    metric_series: dict[str, list[SeriesPoint]] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)
    tasks: list[TaskAttempt] = Field(default_factory=list)
    failure: Failure | None = None
    gate: GateDecision | None = Field(default=None, description="The latest quality gate decision, if any.")
    incomplete: list[str] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        """True once the run has a final status."""
        return self.status is not RunStatus.RUNNING

    def last_attempts(self) -> dict[str, TaskAttempt]:
        """The latest attempt of every task, by ``task_id``."""
        return last_attempts(self.tasks)


def last_attempts(attempts: list[TaskAttempt]) -> dict[str, TaskAttempt]:
    """The highest-numbered of ``attempts`` of every task, by ``task_id``."""
    latest: dict[str, TaskAttempt] = {}
    for attempt in attempts:
        current = latest.get(attempt.task_id)
        if current is None or attempt.attempt >= current.attempt:
            latest[attempt.task_id] = attempt
    return latest
