"""Hostile ``tracked_flow`` arguments and a broken store, against a real Prefect server (issue 12,
"Bad input"; the core cases are in tests/unit/test_hostile_inputs.py).

A wrong argument fails where the flow is defined, with an error naming the argument and the fix, so
no run goes untracked for a typo; a store that cannot be used never changes the flow's outcome."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack import InvalidInputError, RunStatus
from orchestrack.prefect import tracked_flow
from tests.prefect import flows

pytestmark = pytest.mark.integration

BAD_ARGUMENTS: list[tuple[str, dict[str, Any], str]] = [
    ("purpose-unknown", {"purpose": "tune"}, r"purpose 'tune' \(tracked_flow purpose=\) is not one of: baseline"),
    ("purpose-int", {"purpose": 5}, r"purpose '5' \(tracked_flow purpose=\) is not one of"),
    ("owner-int", {"run_owner": 5}, r"run_owner must be a string, got int 5 \(tracked_flow run_owner=\)"),
    ("owner-newline", {"run_owner": "ml\nplatform"}, r"run_owner 'ml\\nplatform' contains control characters"),
    ("datasets-int", {"datasets": 5}, r"datasets \(tracked_flow datasets=\) must be a list of URIs"),
    ("datasets-bytes", {"datasets": b"s3://b/k"}, r"must be a list of URIs"),
    ("datasets-none-item", {"datasets": [None]}, r"dataset URI must be a path or URI string, got NoneType"),
    ("datasets-nul", {"datasets": ["s3://b/\x00"]}, r"dataset URI 's3://b/\\x00' contains a NUL character"),
    ("configs-int", {"configs": [3]}, r"configs=.*list of file or folder paths"),
]


@pytest.mark.parametrize("arguments, message", [pytest.param(a, m, id=i) for i, a, m in BAD_ARGUMENTS])
def test_bad_arguments_fail_where_the_flow_is_defined(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        tracked_flow(flows.untouched, **arguments)
    assert orchestrack.search_runs() == []


def test_one_dataset_given_as_text_is_one_dataset() -> None:
    flow = tracked_flow(flows.untouched, datasets="s3://lake/train/")
    assert flow(3) == 6
    [record] = orchestrack.search_runs()
    assert [(d.name, d.uri) for d in record.data] == [("train", "s3://lake/train/")]


@pytest.mark.parametrize("uri", ["ftp://nowhere/runs", "sqlite:///{tmp}/a-folder"], ids=["unknown-scheme", "folder"])
def test_an_unusable_store_never_changes_the_flow_outcome(uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("ORCHESTRACK_STRICT")
    (tmp_path / "a-folder").mkdir()
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", uri.format(tmp=tmp_path))
    caplog.set_level(logging.WARNING, "orchestrack")
    flow = tracked_flow(flows.untouched, purpose="baseline")
    state = flow(4, return_state=True)
    assert state.is_completed() and state.result() == 8
    assert "orchestrack" in caplog.text  # said once, in the log, without failing the flow


def test_flow_keeps_its_own_failure_when_the_store_is_unusable(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRACK_STRICT")
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", "ftp://nowhere/runs")
    state = flows.fails_in_a_task(return_state=True)
    assert state.is_failed() and "FileNotFoundError" in str(state.message) + repr(state.result(raise_on_failure=False))
    monkeypatch.delenv("ORCHESTRACK_TRACKING_URI")
    assert all(r.status is not RunStatus.RUNNING for r in orchestrack.search_runs())
