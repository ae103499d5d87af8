"""Series points read back from a store without validation (``SeriesPoint.read_back``) behave as
validated ones, and the embedded store's derived metric views keep their rules (docs/record-schema.md)."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta

import orchestrack
from orchestrack.lifecycle import store_for
from orchestrack.record import MetricPoint, RunRecord, SeriesPoint

STAMP = "2026-12-03T11:28:12.123456Z"


def test_a_point_read_back_is_a_validated_point() -> None:
    (point,) = SeriesPoint.read_back([(3, 0.5, STAMP)])
    validated = SeriesPoint(step=3, value=0.5, timestamp=STAMP)  # type: ignore[arg-type]
    assert point == validated and point.model_dump(mode="json") == validated.model_dump(mode="json")
    assert point.timestamp == datetime(2026, 12, 3, 11, 28, 12, 123456, tzinfo=UTC)
    point.value = 0.25  # still an ordinary model: assignable, copyable, part of a record
    assert point.model_copy(update={"step": 4}).step == 4 and point.model_fields_set == {"step", "value", "timestamp"}
    record = RunRecord(run_id="r", key="k", name="n", metric_series={"loss": [point]})
    assert RunRecord.model_validate_json(record.model_dump_json()).metric_series["loss"][0].value == 0.25


def test_derived_views_follow_the_documented_rules() -> None:
    run = orchestrack.start_run(key="views/rules")
    at = datetime(2026, 12, 3, tzinfo=UTC)
    points = [MetricPoint(key="loss", value=v, step=s, task=t, timestamp=at + timedelta(seconds=sec))
              for v, s, t, sec in ((0.9, 2, "a", 0), (0.8, 1, "b", 5), (0.7, 2, "b", 0), (0.6, None, "a", 9))]
    points.append(MetricPoint(key="auc", value=0.8, slice="country=DE", timestamp=at))
    store = store_for(None)
    store.log_metrics(run.run_id, points)
    enabled = gc.isenabled()
    record = store.get_run(run.run_id)
    assert gc.isenabled() is enabled  # the collector is left as it was found
    # Latest: highest step, then latest time, then the later log (0.7 ties 0.9 and came later).
    assert record.metrics == {"loss": 0.7} and record.slice_metrics == {"country=DE": {"auc": 0.8}}
    assert record.task_metrics == {"a": {"loss": 0.9}, "b": {"loss": 0.7}}
    assert [(p.step, p.value) for p in record.metric_series["loss"]] == [(1, 0.8), (2, 0.9), (2, 0.7)]
