"""Hostile ``TrackRunOperator`` arguments (issue 12, "Bad input"; the core cases are in
tests/unit/test_hostile_inputs.py): a wrong type fails when the DAG file is parsed, naming the
operator, the argument and what it takes, without importing more of orchestrack than a parse may."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrack import InvalidInputError, OrchestrackError

BAD_ARGUMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("purpose-int", {"purpose": 5}, r"TrackRunOperator 'track' purpose= must be text, got int 5"),
    ("owner-list", {"run_owner": ["ml"]}, r"run_owner= must be text, got list"),
    ("tags-list", {"run_tags": [("team", "ml")]}, r"run_tags= must be a dict, got list"),
    ("datasets-none-item", {"datasets": [None]}, r"datasets= takes file or folder paths .* got None"),
    ("datasets-int", {"datasets": [3]}, r"datasets= takes file or folder paths .* got 3"),
    ("configs-int", {"configs": [3]}, r"configs= takes file or folder paths .* got 3"),
]


@pytest.mark.parametrize("arguments, message", [pytest.param(a, m, id=i) for i, a, m in BAD_ARGUMENTS])
def test_bad_operator_arguments_fail_at_parse(arguments: dict[str, Any], message: str) -> None:
    from orchestrack.airflow import TrackRunOperator

    with pytest.raises(InvalidInputError, match=message) as raised:
        TrackRunOperator(task_id="track", **arguments)
    assert isinstance(raised.value, OrchestrackError)


def test_one_dataset_given_as_text_is_one_dataset() -> None:
    from orchestrack.airflow import TrackRunOperator

    assert TrackRunOperator(task_id="track", datasets="s3://lake/train/").datasets == ["s3://lake/train/"]
