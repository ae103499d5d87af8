"""What people are shown of runs, the same in the terminal (``orchestrack``) and on the run pages
(``orchestrack ui``, ``orchestrack report``): durations and sizes in words, the rows of a comparison,
failures grouped by reason or by fingerprint."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any

from orchestrack.record import DataSnapshot, FailureReason, Features, LeakageCheck, LlmSettings, RunRecord


def duration_text(seconds: float | None) -> str | None:
    """``35ms``, ``4.2s``, ``3m 05s``, ``2h 07m`` or ``1d 03h``."""
    if seconds is None:
        return None
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def run_seconds(record: RunRecord) -> float | None:
    """How long a finished run took."""
    return (record.ended_at - record.started_at).total_seconds() if record.ended_at else None


def size_text(size_bytes: int | None) -> str | None:
    """A byte count in binary units."""
    if size_bytes is None:
        return None
    value = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size_bytes} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return None  # pragma: no cover - the loop always returns


def reason_of(record: RunRecord) -> str | None:
    """The run's failure label, if any."""
    return record.failure.reason.value if record.failure else None


def comparison_rows(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One row per compared field: ``{"section", "field", "values" (one per run), "differs"}``."""
    def union(keys: Iterable[Iterable[str]]) -> list[str]:
        return sorted(set().union(*keys))

    def data_field(record: RunRecord, name: str, read: Callable[[DataSnapshot], Any]) -> Any:
        values = [read(d) for d in record.data if d.name == name]
        if not values or all(v is None for v in values):
            return None
        return values[0] if len(values) == 1 else ", ".join(map(str, values))

    data_reads: list[tuple[str, Callable[[DataSnapshot], Any]]] = [
        ("", lambda d: d.version or "?"), (" filters", lambda d: filters_text(d.filters)),
        (" labels as of", lambda d: label_date_text(d.labels_as_of)),
        (" leakage check", lambda d: leakage_text(d.leakage_check))]
    fields: list[tuple[str, str, list[Any]]] = [
        ("run", "status", [r.status.value for r in records]),
        ("run", "failure reason", [reason_of(r) for r in records]),
        ("run", "purpose", [r.purpose.value if r.purpose else None for r in records]),
        ("run", "gate", [r.gate.outcome.value if r.gate else None for r in records]),
        ("code", "commit", [r.code.commit for r in records]),
    ]
    fields += [("params", key, [r.params.get(key) for r in records]) for key in union(r.params for r in records)]
    fields += [("metrics", _metric_label(records, key), [r.metrics.get(key) for r in records])
               for key in union(r.metrics for r in records)]
    for name in union((d.name for d in r.data) for r in records):
        rows = [(f"{name}{suffix}", [data_field(r, name, read) for r in records]) for suffix, read in data_reads]
        fields += [("data", label, values) for label, values in rows if _shown(label, name, values)]
    fields += [("config", label, values) for label, values in _config_rows(records)]
    fields += [("features", label, values) for label, values in _by_label(
        records, lambda r: [("columns", ", ".join(r.features.columns) or None), ("target", r.features.target),
                            *feature_fields(r.features)]) if any(v is not None for v in values)]
    fields += [("llm", label, values) for label, values in _by_label(records, lambda r: llm_fields(r.llm))]
    fields += [("environment", "python", [r.environment.python for r in records]),
               ("environment", "image", [r.environment.image for r in records])]
    fields += [("environment", name, [r.environment.packages.get(name) for r in records])
               for name in union(r.environment.packages for r in records)]
    return [{"section": section, "field": field, "values": values, "differs": differs(values)}
            for section, field, values in fields]


def _shown(label: str, name: str, values: list[Any]) -> bool:
    """The version row of a data set always; its filters, label date and leakage rows when any run has them."""
    return label == name or any(v is not None for v in values)


def _metric_label(records: Sequence[RunRecord], key: str) -> str:
    """``key``, with its unit when a run recorded one (``llm.latency (s)``)."""
    units = sorted({r.metric_units[key] for r in records if key in r.metric_units})
    return f"{key} ({', '.join(units)})" if units else key


def filters_text(filters: dict[str, Any] | str | None) -> str | None:
    """A data snapshot's filters as one line: the expression, or ``country=["DE", "FR"], min_age=18``."""
    if filters is None or isinstance(filters, str):
        return filters
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in sorted(filters.items()))


def label_date_text(moment: date | datetime | None) -> str | None:
    """A snapshot's ``labels_as_of`` as ISO 8601 text."""
    return moment.isoformat() if moment is not None else None


def leakage_text(check: LeakageCheck | None) -> str | None:
    """``passed``, ``not-run`` or ``failed: <note>``."""
    return None if check is None else check.status.value + (f": {check.note}" if check.note else "")


def feature_fields(features: Features) -> list[tuple[str, Any]]:
    """``(label, text)`` of the feature set's fields beyond columns and target that are set."""
    return [(key.replace("_", " "), ", ".join(map(str, value)) if isinstance(value, list) else value)
            for key, value in features.model_dump(mode="json", exclude={"columns", "target"}).items()
            if value not in (None, [], "")]


def llm_fields(llm: LlmSettings) -> list[tuple[str, Any]]:
    """``(label, value)`` of the LLM settings that are set, retrieval settings as ``retrieval.<name>``."""
    return [*((k, v) for k, v in llm.model_dump(mode="json", exclude={"retrieval"}).items() if v is not None),
            *((f"retrieval.{k}", v) for k, v in llm.retrieval.items())]


def _by_label(records: Sequence[RunRecord], read: Callable[[RunRecord], list[tuple[str, Any]]]
              ) -> list[tuple[str, list[Any]]]:
    """Rows ``(label, value per run)`` over the labels any run has."""
    per_run = [dict(read(r)) for r in records]
    labels = list(dict.fromkeys(label for values in per_run for label in values))
    return [(label, [values.get(label) for values in per_run]) for label in labels]


def _config_rows(records: Sequence[RunRecord]) -> list[tuple[str, list[Any]]]:
    """``(field, value per run)`` rows that compare the runs' configs: one per parsed key, and the
    hash of each config (changed keys say what differs; the hash also catches comments and files
    that do not parse)."""
    names = sorted({c.name for r in records for c in r.configs})
    rows: list[tuple[str, list[Any]]] = []
    for name in names:
        by_run = [next((c for c in r.configs if c.name == name), None) for r in records]
        rows.append((f"{name} sha256", [c.sha256[:12] if c else None for c in by_run]))
        keys = sorted({k for c in by_run if c for k in c.values})
        rows.extend((f"{name}: {key}", [c.values.get(key) if c else None for c in by_run]) for key in keys)
    return rows


def differs(values: Sequence[Any]) -> bool:
    """True when not all values are the same (``True`` and ``1`` count as different)."""
    first = (type(values[0]) is bool, values[0])
    return any((type(value) is bool, value) != first for value in values[1:])


def _reason_label(record: RunRecord) -> str:
    return reason_of(record) or FailureReason.UNKNOWN.value


def fingerprint_of(record: RunRecord) -> str | None:
    """The fingerprint of the run's failure, if it has one."""
    return record.failure.fingerprint if record.failure else None


def failure_groups(records: Sequence[RunRecord], examples: int,
                   by: Callable[[RunRecord], str | None] = _reason_label) -> list[tuple[str, int, list[RunRecord]]]:
    """``(label, count, newest examples)`` per label, most frequent first. The label is the failure
    reason (``unknown`` for a failed run without a failure), or what ``by`` says (``by=fingerprint_of``);
    runs ``by`` gives no label are left out."""
    newest = sorted(records, key=lambda r: r.ended_at or r.started_at, reverse=True)
    labels = [by(r) for r in newest]
    counts = Counter(label for label in labels if label is not None)
    return [(group, count, [r for r, label in zip(newest, labels, strict=True) if label == group][:examples])
            for group, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
