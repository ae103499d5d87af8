"""How a run record is laid out in MLflow: tags, params, metric names and child runs.

The layout (docs/record-schema.md, "In MLflow") is readable in MLflow's own UI and complete enough
to rebuild the record exactly:

- MLflow's own tags are filled: ``mlflow.runName``, ``mlflow.user`` (the owner),
  ``mlflow.source.git.commit`` / ``.branch`` / ``.repoURL``, ``mlflow.parentRunId`` on task runs.
- ``orchestrack.*`` tags carry what people filter on (key, status, reason, sentence, fingerprint,
  purpose, owner, pipeline, pipeline version, image, orchestrator run id and URL) and, as JSON documents
  split over numbered tags where long, the nested parts (code, environment, features, ...).
- Params keep their values as MLflow params; metrics keep their names, with slices and per-task
  values under ``slices/<slice>/<key>`` and ``tasks/<task>/<key>``.

Nothing here talks to a server; :mod:`orchestrack.stores.mlflow_store` does.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from orchestrack.record import MetricPoint, RunStatus, Scalar, TaskStatus

PREFIX = "orchestrack."
#: ``orchestrack.record`` tells a run (``run``) from a task attempt's child run (``task``).
KIND_TAG = PREFIX + "record"
RUN_ID_TAG = PREFIX + "run_id"
KEY_TAG = PREFIX + "key"
STATUS_TAG = PREFIX + "status"
REASON_TAG = PREFIX + "reason"
SENTENCE_TAG = PREFIX + "sentence"
#: The failure's fingerprint (``orchestrack failures --group``): a tag, as MLflow filters on tags only.
FINGERPRINT_TAG = PREFIX + "fingerprint"
GATE_TAG = PREFIX + "gate"
PIPELINE_TAG = PREFIX + "pipeline"
OWNER_TAG = PREFIX + "owner"
PURPOSE_TAG = PREFIX + "purpose"
TASK_ID_TAG = PREFIX + "task_id"
ATTEMPT_TAG = PREFIX + "attempt"
#: On experiments orchestrack writes runs into, so searches can find them all.
EXPERIMENT_TAG = PREFIX + "experiment"
#: ``orchestrack.sha256.<sha256>`` = ``true`` on a run with an artifact of that content (``orchestrack which``).
SHA256_TAG_PREFIX = PREFIX + "sha256."
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"

#: MLflow's limits (the smallest of the 2.x and 3.x servers orchestrack supports).
TAG_VALUE_LIMIT = 5000
PARAM_VALUE_LIMIT = 500
NAME_LIMIT = 250
#: What one ``log-batch`` request may carry: 1,000 entities in all, of them at most 100 params and 100 tags.
BATCH_ENTITIES, BATCH_PARAMS, BATCH_TAGS = 1000, 100, 100

_NAME_OK = re.compile(r"^[\w./\- ]*$")
_NAME_BAD_CHAR = re.compile(r"[^\w./\- ]")

RUN_STATUS = {RunStatus.RUNNING: "RUNNING", RunStatus.SUCCEEDED: "FINISHED", RunStatus.FAILED: "FAILED",
              RunStatus.CANCELLED: "KILLED"}
TASK_STATUS = {TaskStatus.RUNNING: "RUNNING", TaskStatus.SUCCEEDED: "FINISHED", TaskStatus.SKIPPED: "FINISHED",
               TaskStatus.FAILED: "FAILED", TaskStatus.UPSTREAM_FAILED: "FAILED", TaskStatus.CANCELLED: "KILLED"}


def millis(moment: datetime | None) -> int | None:
    """MLflow's timestamps: milliseconds since the epoch."""
    return None if moment is None else int(moment.timestamp() * 1000)


def from_millis(value: Any) -> datetime:
    """A datetime from MLflow's milliseconds."""
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def safe_name(name: str, what: str = "name") -> str:
    """``name`` as MLflow accepts it for a param, metric or tag key: characters outside letters,
    digits, ``_ - . / space`` become ``_``, and a short hash keeps names that differed apart."""
    if _NAME_OK.match(name) and len(name) <= NAME_LIMIT and ".." not in name and not name.startswith("/"):
        return name
    cleaned = _NAME_BAD_CHAR.sub("_", name).replace("..", "_.").lstrip("/")
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{cleaned[:NAME_LIMIT - 9]}~{digest}".replace("~", "-")


def short_hash(*parts: str) -> str:
    """A stable 16-hex-digit name for a (name, uri) pair and the like."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


# -- JSON documents in tags ------------------------------------------------------------------

def document_tags(name: str, value: Any) -> dict[str, str]:
    """``value`` as JSON in tag ``orchestrack.doc.<name>``, split over ``...<name>.1``, ``.2`` ... past
    MLflow's tag length; ``orchestrack.doc.<name>.parts`` says how many there are."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    chunks = [text[i:i + TAG_VALUE_LIMIT] for i in range(0, len(text), TAG_VALUE_LIMIT)] or [""]
    tags = {f"{PREFIX}doc.{name}.parts": str(len(chunks)), f"{PREFIX}doc.{name}": chunks[0]}
    tags.update({f"{PREFIX}doc.{name}.{index}": chunk for index, chunk in enumerate(chunks[1:], start=1)})
    return tags


def filter_literal(value: str) -> str:
    """A string literal for an MLflow search filter (runs, model versions, registered models)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def read_document(tags: dict[str, str], name: str, default: Any = None) -> Any:
    """The JSON document :func:`document_tags` wrote, or ``default``."""
    head = tags.get(f"{PREFIX}doc.{name}")
    if head is None:
        return default
    parts = int(tags.get(f"{PREFIX}doc.{name}.parts", "1"))
    text = head + "".join(tags.get(f"{PREFIX}doc.{name}.{index}", "") for index in range(1, parts))
    return json.loads(text)


def documents_under(tags: dict[str, str], group: str) -> list[Any]:
    """Every document named ``<group>.<something>`` (data snapshots, artifacts)."""
    start = f"{PREFIX}doc.{group}."
    names = {key[len(PREFIX) + 4:].rsplit(".parts", 1)[0] for key in tags
             if key.startswith(start) and key.endswith(".parts")}
    return [read_document(tags, name) for name in sorted(names)]


# -- params ----------------------------------------------------------------------------------

def param_text(value: Scalar) -> str:
    """A param value as MLflow shows it: strings as they are, other values as JSON (``0.1``, ``true``)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:PARAM_VALUE_LIMIT]


def _reads_back_as(text: str) -> Scalar:
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(value, (bool, int, float)) else text


def exact_value(value: Scalar) -> str:
    """A param value as JSON for its ``orchestrack.param.<key>`` tag (strings past MLflow's tag
    length are cut to fit)."""
    text = json.dumps(value)
    if len(text) > TAG_VALUE_LIMIT and isinstance(value, str):
        text = json.dumps(value[: TAG_VALUE_LIMIT // 2])
    return text


def param_value_tags(key: str, value: Scalar) -> dict[str, str]:
    """Tags needed beside the MLflow param so its value reads back exactly: the typed value when the
    param text alone would read back differently (a string ``"3"``, a long string)."""
    text = param_text(value)
    if _reads_back_as(text) == value and type(_reads_back_as(text)) is type(value):
        return {}
    return {f"{PREFIX}param.{safe_name(key)}": exact_value(value)}


def read_params(params: list[dict[str, str]], tags: dict[str, str]) -> dict[str, Scalar]:
    """The run's params with their types, a later value (kept in a tag) winning over the MLflow param,
    which MLflow never lets change."""
    values: dict[str, Scalar] = {}
    names: dict[str, str] = {}
    for param in params:
        key, text = param["key"], param.get("value", "")
        values[key] = _reads_back_as(text)
    for key, text in tags.items():
        if key.startswith(PREFIX + "param."):
            values[key[len(PREFIX) + 6:]] = json.loads(text)
        elif key.startswith(PREFIX + "param_name."):
            names[key[len(PREFIX) + 11:]] = text
    return {names.get(key, key): value for key, value in sorted(values.items())}


# -- metrics ---------------------------------------------------------------------------------

def metric_name(point: MetricPoint) -> str:
    """The MLflow metric name of a point: its key, or ``slices/<slice>/<key>``, ``tasks/<task>/<key>``."""
    if point.slice is not None:
        raw = f"slices/{point.slice}/{point.key}"
    elif point.task is not None:
        raw = f"tasks/{point.task}/{point.key}"
    else:
        raw = point.key
    return safe_name(raw)


def metric_meaning_tag(point: MetricPoint) -> dict[str, str]:
    """For a metric name that is not its plain key, a tag that says what it is (key, slice, task)."""
    name = metric_name(point)
    if name == point.key and point.slice is None and point.task is None:
        return {}
    return {f"{PREFIX}metric.{name}": json.dumps({"key": point.key, "slice": point.slice, "task": point.task})}


def metric_meanings(tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """MLflow metric name -> ``{"key", "slice", "task"}``, for every name that is not a plain key."""
    start = PREFIX + "metric."
    return {key[len(start):]: json.loads(value) for key, value in tags.items() if key.startswith(start)}


#: ``orchestrack.unit.<hash of the metric key>`` = ``[key, unit]``: one tag a metric, so that units
#: set by different processes merge instead of replacing each other.
UNIT_PREFIX = PREFIX + "unit."


def unit_tags(units: dict[str, str]) -> dict[str, str]:
    """The tags that record metric units."""
    return {UNIT_PREFIX + short_hash(key): json.dumps([key, unit]) for key, unit in units.items()}


def read_units(tags: dict[str, str]) -> dict[str, str]:
    """The metric units recorded by :func:`unit_tags`, by metric key."""
    pairs = [json.loads(value) for key, value in tags.items() if key.startswith(UNIT_PREFIX)]
    return dict(sorted((key, unit) for key, unit in pairs))


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    """The tags a user set: every tag that is neither orchestrack's nor MLflow's own."""
    names = {key[len(PREFIX) + 9:]: value for key, value in tags.items() if key.startswith(PREFIX + "tag_name.")}
    return {names.get(key, key): value for key, value in sorted(tags.items())
            if not key.startswith(PREFIX) and not key.startswith("mlflow.")}


def user_tag_entries(tags: dict[str, str]) -> dict[str, str]:
    """User tags as MLflow takes them, with a note of the original key where it had to change."""
    entries: dict[str, str] = {}
    for key, value in tags.items():
        name = safe_name(key)
        entries[name] = value[:TAG_VALUE_LIMIT]
        if name != key:
            entries[f"{PREFIX}tag_name.{name}"] = key
    return entries


def param_entries(params: dict[str, Scalar]) -> tuple[dict[str, str], dict[str, str]]:
    """``(MLflow params, tags)`` for ``params``: the tags keep exact values and original keys."""
    values: dict[str, str] = {}
    tags: dict[str, str] = {}
    for key, value in params.items():
        name = safe_name(key)
        values[name] = param_text(value)
        tags.update(param_value_tags(name, value))
        if name != key:
            tags[f"{PREFIX}param_name.{name}"] = key
    return values, tags
