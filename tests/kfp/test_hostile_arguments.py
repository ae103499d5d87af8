"""Hostile ``otk.pipeline`` / ``otk.component`` arguments (issue 12, "Bad input"; the core cases are in
tests/unit/test_hostile_inputs.py): each fails where the pipeline is defined, naming the argument and
the fix, before anything is compiled or run, and records nothing."""

from __future__ import annotations

from typing import Any

import pytest

import orchestrack
from orchestrack import InvalidInputError, OrchestrackError
from tests.kfp import pipelines

BAD_ARGUMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("purpose-unknown", {"purpose": "tune"}, r"purpose 'tune' \(otk.pipeline purpose=\) is not one of: baseline"),
    ("purpose-list", {"purpose": ["tuning"]}, r"purpose \"\['tuning'\]\" \(otk.pipeline purpose=\) is not one of"),
    ("owner-int", {"run_owner": 7}, r"run_owner must be a string, got int 7 \(otk.pipeline run_owner=\)"),
    ("owner-nul", {"run_owner": "ml\x00"}, r"run_owner 'ml\\x00' contains control characters"),
    ("owner-surrogate", {"run_owner": "ml\udc80"}, r"run_owner 'ml\\udc80' is not valid Unicode text"),
    ("configs-missing", {"configs": ["conf/no-such-file.yaml"]}, r"'conf/no-such-file.yaml' does not exist"),
]


@pytest.mark.parametrize("arguments, message", [pytest.param(a, m, id=i) for i, a, m in BAD_ARGUMENTS])
def test_bad_pipeline_arguments_fail_at_definition(arguments: dict[str, Any], message: str) -> None:
    from orchestrack import kfp as otk

    with pytest.raises(InvalidInputError, match=message) as raised:
        @otk.pipeline(name="hostile", packages_to_install=[], **arguments)
        def hostile() -> None:
            pipelines.prepare(rows=1)
    assert isinstance(raised.value, OrchestrackError)
    assert orchestrack.search_runs() == []
