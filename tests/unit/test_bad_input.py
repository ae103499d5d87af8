"""Bad input gets an error naming the value, where it came from and the fix; or a documented coercion."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path

import pytest

import orchestrack
from orchestrack import InvalidInputError


@pytest.fixture
def run() -> orchestrack.Run:
    return orchestrack.start_run(key="bad-input", owner="ml", purpose="baseline")


def test_unknown_purpose_lists_choices() -> None:
    with pytest.raises(InvalidInputError, match=r"purpose 'tune' \(start_run purpose=\) is not one of: baseline"):
        orchestrack.start_run(key="x", purpose="tune")


def test_unknown_finish_status(run: orchestrack.Run) -> None:
    with pytest.raises(InvalidInputError, match="not one of: running, succeeded, failed, cancelled"):
        run.finish(status="done")
    with pytest.raises(InvalidInputError, match="not a final status"):
        run.finish(status="running")
    assert orchestrack.get_run("bad-input").status == "running"  # nothing recorded was lost


@pytest.mark.parametrize("key, message", [("", "run key is empty"), ("x" * 501, "501 characters long"),
                                          ("a\nb", "control characters")])
def test_bad_keys(key: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        orchestrack.start_run(key=key)


def test_name_must_follow_naming_rule() -> None:
    with pytest.raises(InvalidInputError, match="naming rule"):
        orchestrack.start_run(key="k", name="!bad name")


def test_generated_name_is_cleaned_not_refused() -> None:
    run = orchestrack.start_run(key="weird#key!")
    assert orchestrack.get_run(run.run_id).name == "weird-key-"


class Color(Enum):
    RED = "red"


def test_param_coercions(run: orchestrack.Run, tmp_path: Path) -> None:
    run.log_params({"layers": [64, 32], "opt": {"b": 1, "a": 2}, "path": tmp_path / "x", "color": Color.RED,
                    "lr": math.nan, "big": math.inf, "long": "y" * 7000})
    params = orchestrack.get_run("bad-input").params
    assert params["layers"] == "[64,32]" and params["opt"] == '{"a":2,"b":1}'
    assert params["path"] == str(tmp_path / "x") and params["color"] == "red"
    assert params["lr"] == "nan" and params["big"] == "inf"
    assert len(params["long"]) == 6000  # type: ignore[arg-type]


def test_non_serialisable_param_is_refused_and_nothing_else_lost(run: orchestrack.Run) -> None:
    run.log_params({"ok": 1})
    with pytest.raises(InvalidInputError, match=r"param 'model' \(log_params\) has type object.*str\(value\)"):
        run.log_params({"model": object()})
    assert orchestrack.get_run("bad-input").params == {"ok": 1}


@pytest.mark.parametrize("value, message", [(math.nan, "is nan"), (math.inf, "is inf"), ("0.9", "must be a number"),
                                            (True, "must be a number")])
def test_bad_metrics(run: orchestrack.Run, value: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        run.log_metrics({"auc": value})
    assert orchestrack.get_run("bad-input").metrics == {}


def test_metric_step_and_slice(run: orchestrack.Run) -> None:
    with pytest.raises(InvalidInputError, match="step -1"):
        run.log_metrics({"loss": 1.0}, step=-1)
    run.log_metrics({"auc": 0.7}, slice={"country": "DE", "device": "ios"})
    assert orchestrack.get_run("bad-input").slice_metrics == {"country=DE,device=ios": {"auc": 0.7}}


def test_missing_artifact_says_where_it_looked(run: orchestrack.Run, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=f"does not exist.*{tmp_path}"):
        run.log_artifact("model.pt")


@pytest.mark.parametrize("name", ["../escape.pt", "/etc/passwd", "a/../../b"])
def test_artifact_name_cannot_escape(run: orchestrack.Run, tmp_path: Path, name: str) -> None:
    (tmp_path / "model.pt").write_text("x")
    with pytest.raises(InvalidInputError, match="escape the run's artifact folder"):
        run.log_artifact("model.pt", name=name)


def test_artifact_folder_with_link_outside_is_refused(run: orchestrack.Run, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.txt").write_text("s")
    (folder / "link").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(InvalidInputError, match="outside the folder"):
        run.log_artifact(folder)
    assert orchestrack.get_run("bad-input").artifacts == []


def test_task_names_and_attempts(run: orchestrack.Run) -> None:
    with pytest.raises(InvalidInputError, match="task name is empty"), run.task(" "):
        pass
    with pytest.raises(InvalidInputError, match="attempt 0"), run.task("train", attempt=0):
        pass


def test_dataset_rows(run: orchestrack.Run) -> None:
    with pytest.raises(InvalidInputError, match="rows -5"):
        run.log_dataset("train", "s3://b/k", rows=-5)


def test_artifact_folder_with_link_to_outside_folder_is_refused(run: orchestrack.Run, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("s")
    (folder / "linked").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(InvalidInputError, match="'linked' links to .*outside', outside the folder"):
        run.log_artifact(folder)


def test_two_slash_sqlite_uri_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", "sqlite://runs.db")
    with pytest.raises(InvalidInputError, match="three or four slashes"):
        orchestrack.start_run(key="two-slashes")
