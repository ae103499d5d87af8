"""How a record is laid out in MLflow (no server: the pure mapping of tests/mlflow's real-server tests)."""

from __future__ import annotations

import json

import pytest

from orchestrack.record import MetricPoint
from orchestrack.stores import mlflow_record as layout


@pytest.mark.parametrize("name", ["lr", "train.lr", "slices/a b/auc", "x-y_z"])
def test_names_mlflow_accepts_stay_as_they_are(name: str) -> None:
    assert layout.safe_name(name) == name


@pytest.mark.parametrize("name", ["country=DE", "eval[0]", "a..b", "/abs", "ü" * 300, "x" * 251])
def test_other_names_are_made_acceptable_and_kept_apart(name: str) -> None:
    safe = layout.safe_name(name)
    assert len(safe) <= layout.NAME_LIMIT and layout._NAME_OK.match(safe) and ".." not in safe
    assert not safe.startswith("/")
    assert layout.safe_name(name + "!") != safe


def test_a_long_document_is_split_over_tags_and_joined_back() -> None:
    value = {"packages": {f"package-{i}": f"{i}.0.0" for i in range(800)}}
    tags = layout.document_tags("environment", value)
    assert len(tags) > 3 and all(len(v) <= layout.TAG_VALUE_LIMIT for v in tags.values())
    assert layout.read_document(tags, "environment") == value
    assert layout.read_document({}, "environment", {}) == {}


def test_params_keep_their_types_through_mlflow_text() -> None:
    params = {"lr": 0.1, "layers": 3, "flag": True, "none": None, "name": "adam", "epochs": "3", "yes": "true",
              "long": "x" * 800, "odd key=1": 2}
    values, tags = layout.param_entries(params)
    assert values["lr"] == "0.1" and values["flag"] == "true" and values["name"] == "adam"
    assert all(len(v) <= layout.PARAM_VALUE_LIMIT for v in values.values())
    stored = [{"key": k, "value": v} for k, v in values.items()]
    assert layout.read_params(stored, tags) == dict(sorted(params.items()))


def test_metric_names_say_their_slice_and_task() -> None:
    sliced = MetricPoint(key="auc", value=0.9, slice="country=DE")
    by_task = MetricPoint(key="auc", value=0.8, task="eval[3]")
    plain = MetricPoint(key="auc", value=0.7)
    assert layout.metric_name(plain) == "auc" and layout.metric_meaning_tag(plain) == {}
    assert layout.metric_name(sliced).startswith("slices/country_DE/auc")
    assert layout.metric_name(by_task).startswith("tasks/eval_3_/auc")
    meanings = layout.metric_meanings({**layout.metric_meaning_tag(sliced), **layout.metric_meaning_tag(by_task)})
    assert meanings[layout.metric_name(sliced)] == {"key": "auc", "slice": "country=DE", "task": None}
    assert meanings[layout.metric_name(by_task)] == {"key": "auc", "slice": None, "task": "eval[3]"}


def test_user_tags_round_trip_and_exclude_mlflow_and_orchestrack_tags() -> None:
    entries = layout.user_tag_entries({"team": "ml", "cost center=1": "x"})
    stored = {**entries, "mlflow.runName": "r", "orchestrack.key": "k"}
    assert layout.user_tags(stored) == {"cost center=1": "x", "team": "ml"}
    assert json.loads(json.dumps(stored))  # every value is plain text
