"""Hostile and malformed input, tried on purpose (issue 12, "Bad input").

Every case gets either a clear orchestrack error (a subclass of :class:`OrchestrackError`) whose
message says what was wrong, where it came from and how to fix it, or a coercion documented in
docs/configuration.md ("Input rules"). After every case the ``guard`` fixture checks that the run
recorded before it is intact and that nothing was written outside the configured folders
(``$ORCHESTRACK_HOME`` and the spool's temp fallback).

The MLflow tracking server that answers garbage or hangs is in tests/mlflow/test_hostile_server.py
(it needs ``requests``, which the core environment does not install).

==========================  =====  ============================================================
Surface                     Cases  What is tried
==========================  =====  ============================================================
Public API: params             17  wrong container/key types, non-UTF-8 bytes, lone surrogates,
                                   NUL, 251-char names, bytes/objects/sets, 5000-deep lists and
                                   dicts, a 5000-digit int, NaN inside a list, mixed dict keys
Public API: metrics            15  wrong container, NaN/inf/-inf, text, bool, complex, None, a
                                   10**400 int, a surrogate name, steps -1 / 2**63 / 1.5 / True,
                                   a slice with a line break
Public API: tags, datasets     14  tags as a list, bytes values, NUL names; dataset URIs of the
                                   wrong type, bytes, blank, with NUL; rows/size/version/date/
                                   leakage of the wrong type or range
Public API: artifacts          20  path None/int/bytes/NUL/missing; names with ``../``, absolute,
                                   Windows drive, drive-relative and UNC, ``.``, ``./``, NUL, a
                                   config name with ``../``; folders holding symlinks (absolute
                                   and relative) to a file and to a folder outside
Public API: configs, runs      25  log_config/log_prompt arguments; start_run key/name/started_at/
                                   image/version/purpose/owner; task attempts 0, "1", 2**63;
                                   features; get_run/search_runs/finish arguments
Public API: coercions          15  NaN/inf/-inf params, 7000-char text, lone surrogates and NUL
                                   in values, tuples; RTL override, zero-width space, BOM, CJK and
                                   emoji names; 10,000 params; a None tag; one feature column
Hypothesis properties           6  any text (with surrogates, NUL, RTL...) as a param name and as
                                   a value, any nesting of JSON values, any float or huge int as
                                   a metric, any artifact name of ``. / \\ :`` and letters, any
                                   integer as a step
CLI                            19  unknown / empty / surrogate / 10,000-char run refs, unknown
                                   flags, bad option values, unknown and malformed store URIs,
                                   unwritable destinations, a stored artifact name and a folder
                                   manifest that point outside
Config file                    15  malformed TOML, YAML, non-UTF-8, NUL, 5000-deep nesting, wrong
                                   types, NaN/inf, unknown keys (top and nested), a bad regex, a
                                   bad template, a folder, a missing file
Environment                    18  bad numbers (NaN, inf, negative, text, a year, fractional,
                                   1e400), bad bools, non-JSON lists/tables, a zero timeout,
                                   control-char / in-memory / unknown store and artifact URIs,
                                   an empty URI (means unset)
Stores                         12  garbage, truncated and overwritten database files, another
                                   program's database, a newer store version, a folder and
                                   /dev/null as the database, an immutable (read-only) database
                                   in strict and fail-open mode, a full disk (RLIMIT_FSIZE) in
                                   strict and fail-open mode, an unwritable artifact folder
==========================  =====  ============================================================

Total: 176 hostile inputs here (parametrized cases, each hypothesis property counted once), plus
11 against a tracking server that answers garbage or hangs (tests/mlflow/test_hostile_server.py)
and the adapters' decorator arguments (tests/prefect, tests/airflow, tests/kfp:
``test_hostile_arguments.py``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import orchestrack
from orchestrack import InvalidInputError, OrchestrackError, RunNotFoundError, StoreError, stores
from orchestrack.cli import main as cli
from orchestrack.inputs import masked
from orchestrack.record import Artifact
from orchestrack.settings import load_settings
from tests.cli_runner import CliRunner

#: Few, reproducible examples: the properties must stay fast and never flaky.
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

BASELINE = "baseline/2026-12-01"
#: Any character, plus the ones that break stores and terminals: lone surrogates, NUL, line breaks,
#: right-to-left override, zero-width space, byte order mark.
_HOSTILE_CHARS = st.characters(exclude_categories=()) | st.sampled_from(
    ["\udc80", "\ud800", "\x00", "\n", "\x7f", "\u202e", "\u200b", "\ufeff", "/", "."])


# -- the guard: what was recorded stays, nothing is written outside the configured folders ----------


def _tree(root: Path, skip: tuple[Path, ...]) -> set[str]:
    """Every path under ``root`` outside the ``skip`` folders (links are listed, not followed)."""
    found = set()
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = [d for d in dirs if here / d not in skip]
        found.update(str((here / name).relative_to(root)) for name in [*dirs, *files])
    return found


@dataclass
class Guard:
    """The sandbox of one case: ``inputs`` holds the files a case logs, ``outside`` the sentinel
    folder next to the configured ones, which nothing may touch."""

    root: Path
    home: Path
    inputs: Path
    outside: Path
    temp: Path
    before: set[str]

    def file(self, name: str, content: str = "x") -> Path:
        path = self.inputs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        self.before.add(str(path.relative_to(self.root)))
        return path

    def check(self) -> None:
        stores.close_all()
        record = orchestrack.get_run(BASELINE)
        assert record.params == {"lr": 0.1, "layers": "[64,32]"}, "a hostile input changed what was recorded"
        assert record.metrics == {"auc": 0.91} and record.tags == {"team": "ml"}
        assert [a.name for a in record.artifacts] == ["model.pt"]
        assert _tree(self.root, (self.home, self.temp)) == self.before, "something was written outside"
        assert (self.outside / "keep.txt").read_text() == "sentinel"


@pytest.fixture
def guard(tmp_path: Path, orchestrack_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Guard]:
    temp = tmp_path / "tmp"  # the spool's documented fallback folder lives under the temp folder
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    inputs, outside = tmp_path / "inputs", tmp_path / "outside"
    inputs.mkdir()
    outside.mkdir()
    (outside / "keep.txt").write_text("sentinel")
    (inputs / "model.pt").write_text("weights")
    run = orchestrack.start_run(key=BASELINE, owner="ml", purpose="baseline")
    run.log_params({"lr": 0.1, "layers": [64, 32]})
    run.log_metrics({"auc": 0.91})
    run.set_tags({"team": "ml"})
    run.log_artifact(inputs / "model.pt")
    guard = Guard(tmp_path, orchestrack_home, inputs, outside, temp, set())
    guard.before = _tree(tmp_path, (orchestrack_home, temp))
    yield guard
    guard.check()


@pytest.fixture
def run(guard: Guard) -> orchestrack.Run:
    return orchestrack.start_run(key="hostile", owner="ml", purpose="tuning")


def _says(err: BaseException, *patterns: str) -> None:
    """The message names what was wrong, where it came from and the fix (each a regex)."""
    text = str(err)
    for pattern in patterns:
        assert re.search(pattern, text, re.S), f"{pattern!r} not in {text!r}"


def _deep_list(depth: int) -> list[Any]:
    top: list[Any] = []
    level = top
    for _ in range(depth):
        level.append([])
        level = level[0]
    return top


def _deep_dict(depth: int) -> dict[str, Any]:
    top: dict[str, Any] = {}
    level = top
    for _ in range(depth):
        level["a"] = {}
        level = level["a"]
    return top


# -- public API: refused with a clear error ---------------------------------------------------------

#: Every public API error names the call (and argument) the value came from ...
WHERE = r"\((start_run|log_\w+|set_tags|run\.\w+\(\)|get_run|search_runs)[^)]*\)|list runs with"
#: ... and what to do: what the value must be, or the fix.
FIX = (r"must be|must have|use |pass |give |remove |write |flatten|decode |rename|list runs|not one of|"
       r"log (text|it|a)|set_tags|shorter")

Call = Callable[[orchestrack.Run, Guard], Any]

#: (id, call, error class, patterns the message must match: what, where, fix)
API_ERRORS: list[tuple[str, Call, type[OrchestrackError], tuple[str, ...]]] = [
    # params
    ("params-list", lambda r, g: r.log_params([("a", 1)]), InvalidInputError,
     ("params must be a mapping", r"got list", r"\(log_params\)")),
    ("params-none", lambda r, g: r.log_params(None), InvalidInputError, ("params must be a mapping", "NoneType")),
    ("param-name-int", lambda r, g: r.log_params({1: 2}), InvalidInputError,
     ("param name must be a string", "got int", r"\(log_params\)")),
    ("param-name-non-utf8-bytes", lambda r, g: r.log_params({b"\xff\xfe": 1}), InvalidInputError,
     ("param name must be a string", "bytes")),
    ("param-name-lone-surrogate", lambda r, g: r.log_params({"lr\udc80": 1}), InvalidInputError,
     ("param name", "lone surrogate", r"\(log_params\)", "errors='replace'")),
    ("param-name-nul", lambda r, g: r.log_params({"lr\x00": 1}), InvalidInputError,
     ("param name", "control characters", "remove them")),
    ("param-name-251-chars", lambda r, g: r.log_params({"p" * 251: 1}), InvalidInputError,
     ("251 characters long, the limit is 250", "shorter name")),
    ("param-value-bytes", lambda r, g: r.log_params({"blob": b"\xff"}), InvalidInputError,
     (r"param 'blob' \(log_params\) has type bytes", r"str\(value\)")),
    ("param-value-object", lambda r, g: r.log_params({"model": object()}), InvalidInputError,
     ("has type object", r"str\(value\)")),
    ("param-value-set", lambda r, g: r.log_params({"ids": {1, 2}}), InvalidInputError, ("has type set",)),
    ("param-deep-list", lambda r, g: r.log_params({"deep": _deep_list(5000)}), InvalidInputError,
     ("param 'deep'", "more than 100 levels deep", "flatten")),
    ("param-deep-dict", lambda r, g: r.log_params({"deep": _deep_dict(5000)}), InvalidInputError,
     ("more than 100 levels deep",)),
    ("param-5000-digit-int", lambda r, g: r.log_params({"big": 10**5000}), InvalidInputError,
     ("param 'big'", "too large to keep", r"str\(value\)")),
    ("param-nan-in-list", lambda r, g: r.log_params({"grid": [0.1, math.nan]}), InvalidInputError,
     ("holds a list that is not JSON-serialisable", "separate params")),
    ("param-dict-mixed-keys", lambda r, g: r.log_params({"map": {1: "a", "b": 2}}), InvalidInputError,
     ("holds a dict that is not JSON-serialisable",)),
    ("start-params-list", lambda r, g: orchestrack.start_run(key="p", params=[1]), InvalidInputError,
     (r"\(start_run params=\)",)),
    ("llm-retrieval-object", lambda r, g: r.log_llm(retrieval={"index": object()}), InvalidInputError,
     (r"log_llm retrieval=",)),
    # metrics
    ("metrics-list", lambda r, g: r.log_metrics([0.9]), InvalidInputError, ("mapping of name to number",)),
    ("metric-nan", lambda r, g: r.log_metrics({"auc": math.nan}), InvalidInputError,
     ("metric 'auc'", "is nan", "non-finite", "set_tags")),
    ("metric-inf", lambda r, g: r.log_metrics({"auc": math.inf}), InvalidInputError, ("is inf", "non-finite")),
    ("metric-minus-inf", lambda r, g: r.log_metrics({"loss": -math.inf}), InvalidInputError, ("is -inf",)),
    ("metric-text", lambda r, g: r.log_metrics({"auc": "0.9"}), InvalidInputError,
     ("must be a number", "got str", "tag or param")),
    ("metric-bool", lambda r, g: r.log_metrics({"auc": True}), InvalidInputError, ("must be a number", "bool")),
    ("metric-complex", lambda r, g: r.log_metrics({"auc": 1j}), InvalidInputError, ("complex",)),
    ("metric-none", lambda r, g: r.log_metrics({"auc": None}), InvalidInputError, ("NoneType",)),
    ("metric-huge-int", lambda r, g: r.log_metrics({"n": 10**400}), InvalidInputError,
     ("metric 'n'", "too large for a float", "logarithmic")),
    ("metric-name-surrogate", lambda r, g: r.log_metrics({"auc\udcff": 0.5}), InvalidInputError,
     ("metric name", "lone surrogate")),
    ("step-negative", lambda r, g: r.log_metrics({"loss": 1.0}, step=-1), InvalidInputError,
     (r"step -1 \(log_metrics step=\)", "integer from 0")),
    ("step-2-pow-63", lambda r, g: r.log_metrics({"loss": 1.0}, step=2**63), InvalidInputError,
     ("step 9223372036854775808", r"2\*\*63-1")),
    ("step-float", lambda r, g: r.log_metrics({"loss": 1.0}, step=1.5), InvalidInputError, ("step 1.5",)),
    ("step-bool", lambda r, g: r.log_metrics({"loss": 1.0}, step=True), InvalidInputError, ("step True",)),
    ("slice-control-chars", lambda r, g: r.log_metrics({"auc": 0.5}, slice="a\nb"), InvalidInputError,
     ("metric slice", "control characters")),
    # tags and datasets
    ("tags-list", lambda r, g: r.set_tags(["a"]), InvalidInputError, ("tags must be a mapping", r"\(set_tags\)")),
    ("tag-value-bytes", lambda r, g: r.set_tags({"t": b"\x80"}), InvalidInputError, ("has type bytes",)),
    ("tag-name-nul", lambda r, g: r.set_tags({"t\x00": "v"}), InvalidInputError, ("tag name", "control characters")),
    ("dataset-uri-int", lambda r, g: r.log_dataset("train", 5), InvalidInputError,
     ("uri of dataset 'train' must be a path or URI string", "got int", r"log_dataset uri=")),
    ("dataset-uri-none", lambda r, g: r.log_dataset("train", None), InvalidInputError, ("got NoneType",)),
    ("dataset-uri-bytes", lambda r, g: r.log_dataset("train", b"/data/\xff"), InvalidInputError,
     ("got bytes", r"os\.fsdecode")),
    ("dataset-uri-empty", lambda r, g: r.log_dataset("train", " "), InvalidInputError,
     ("uri of dataset 'train' is empty", "give the path or URI")),
    ("dataset-uri-nul", lambda r, g: r.log_dataset("train", "/data/a\x00b"), InvalidInputError,
     ("NUL character", r"log_dataset uri=")),
    ("dataset-rows-negative", lambda r, g: r.log_dataset("train", "s3://b/k", rows=-5), InvalidInputError,
     ("rows -5", r"log_dataset rows=")),
    ("dataset-rows-2-pow-64", lambda r, g: r.log_dataset("train", "s3://b/k", rows=2**64), InvalidInputError,
     ("rows 18446744073709551616",)),
    ("dataset-size-text", lambda r, g: r.log_dataset("train", "s3://b/k", size_bytes="big"), InvalidInputError,
     ("size_bytes of dataset 'train' 'big'", "integer from 0")),
    ("dataset-version-int", lambda r, g: r.log_dataset("train", "s3://b/k", version=3), InvalidInputError,
     ("version of dataset 'train' must be a string", r"log_dataset version=")),
    ("dataset-labels-as-of-text", lambda r, g: r.log_dataset("t", "s3://b/k", labels_as_of="yesterday"),
     InvalidInputError, ("not an ISO 8601 date", "2026-10-01")),
    ("dataset-leakage-maybe", lambda r, g: r.log_dataset("t", "s3://b/k", leakage_check="maybe"),
     InvalidInputError, ("leakage check 'maybe'", "not one of: passed")),
    # artifacts: paths
    ("artifact-path-none", lambda r, g: r.log_artifact(None), InvalidInputError,
     ("artifact path must be a path or URI string", "NoneType", r"log_artifact path=")),
    ("artifact-path-int", lambda r, g: r.log_artifact(3), InvalidInputError, ("got int",)),
    ("artifact-path-bytes", lambda r, g: r.log_artifact(os.fsencode(g.inputs / "model.pt")), InvalidInputError,
     ("got bytes", r"os\.fsdecode")),
    ("artifact-path-nul", lambda r, g: r.log_artifact("model\x00.pt"), InvalidInputError, ("NUL character",)),
    ("artifact-path-missing", lambda r, g: r.log_artifact(g.inputs / "nope.pt"), InvalidInputError,
     ("does not exist", "working directory", "write it before logging it")),
    # artifacts: names that would escape
    *[(f"artifact-name-{label}", (lambda given: lambda r, g: r.log_artifact(g.inputs / "model.pt", name=given))(name),
       InvalidInputError, (re.escape(repr(name)), r"log_artifact name=", reason))
      for label, name, reason in [
          ("dotdot", "../escape.pt", "would escape"), ("inner-dotdot", "a/../../b.pt", "would escape"),
          ("absolute", "/etc/passwd", "would escape"), ("windows-absolute", "C:\\Windows\\x.pt", "would escape"),
          ("drive-relative", "C:x.pt", "would escape"), ("unc", "\\\\server\\share\\x.pt", "would escape"),
          ("backslash-dotdot", "..\\..\\x.pt", "would escape"), ("dot", ".", "names no file"),
          ("dot-slash", "./", "names no file"), ("nul", "a\x00b", "control characters")]],
    ("config-name-dotdot", lambda r, g: r.log_config(g.file("train.yaml", "a: 1\n"), name="../../x.yaml"),
     InvalidInputError, ("configs/../../x.yaml", "would escape")),
    # configs, runs, tasks, features, reads
    ("config-path-none", lambda r, g: r.log_config(None), InvalidInputError,
     ("config path must be a path", r"log_config path=")),
    ("config-missing", lambda r, g: r.log_config("conf/nope.yaml"), InvalidInputError,
     ("does not exist", "working directory")),
    ("config-name-int", lambda r, g: r.log_config(g.file("t.yaml", "a: 1\n"), name=3), InvalidInputError,
     ("config name must be a string",)),
    ("prompt-template-bytes", lambda r, g: r.log_prompt("answer", b"\xff"), InvalidInputError,
     ("prompt 'answer'", "must be text")),
    ("key-int", lambda r, g: orchestrack.start_run(key=5), InvalidInputError,
     ("run key must be a string", r"start_run key=")),
    ("key-surrogate", lambda r, g: orchestrack.start_run(key="nightly/\udc80"), InvalidInputError,
     ("run key", "lone surrogate")),
    ("key-501-chars", lambda r, g: orchestrack.start_run(key="k" * 501), InvalidInputError,
     ("501 characters long, the limit is 500",)),
    ("run-name-int", lambda r, g: orchestrack.start_run(key="n", name=7), InvalidInputError,
     ("name must be a string", r"start_run name=")),
    ("started-at-text", lambda r, g: orchestrack.start_run(key="s", started_at="yesterday"), InvalidInputError,
     ("started_at 'yesterday'", "must be a datetime", "fromisoformat")),
    ("image-int", lambda r, g: orchestrack.start_run(key="i", image=5), InvalidInputError,
     ("image must be a string", r"start_run image=")),
    ("pipeline-version-int", lambda r, g: orchestrack.start_run(key="v", pipeline_version=41), InvalidInputError,
     ("pipeline_version must be a string",)),
    ("purpose-unknown", lambda r, g: orchestrack.start_run(key="u", purpose="tune"), InvalidInputError,
     ("purpose 'tune'", "not one of: baseline")),
    ("owner-rtl-newline", lambda r, g: orchestrack.start_run(key="o", owner="\u202eml\n"), InvalidInputError,
     ("owner", "control characters")),
    ("attempt-zero", lambda r, g: r.start_task("train", 0), InvalidInputError, ("attempt 0 of task 'train'",)),
    ("attempt-text", lambda r, g: r.start_task("train", "1"), InvalidInputError, ("attempt '1'",)),
    ("attempt-2-pow-63", lambda r, g: r.start_task("train", 2**63), InvalidInputError,
     ("attempt 9223372036854775808",)),
    ("features-none", lambda r, g: r.log_features(None), InvalidInputError,
     ("feature columns", "must be a list of names", "NoneType")),
    ("features-int-column", lambda r, g: r.log_features(["age", 3]), InvalidInputError,
     ("feature column must be a string",)),
    ("get-run-int", lambda r, g: orchestrack.get_run(5), InvalidInputError, ("must be a string", r"get_run")),
    ("get-run-surrogate", lambda r, g: orchestrack.get_run("\udc80"), InvalidInputError, ("lone surrogate",)),
    ("get-run-unknown", lambda r, g: orchestrack.get_run("no-such-run"), RunNotFoundError,
     ("no run with key or id 'no-such-run'", "orchestrack runs")),
    ("search-limit-zero", lambda r, g: orchestrack.search_runs(limit=0), InvalidInputError, ("limit 0",)),
    ("search-pipeline-int", lambda r, g: orchestrack.search_runs(pipeline=5), InvalidInputError,
     ("pipeline must be a string", r"search_runs pipeline=")),
    ("search-status-unknown", lambda r, g: orchestrack.search_runs(status="done"), InvalidInputError,
     ("status 'done'", "not one of")),
    ("finish-status-unknown", lambda r, g: r.finish(status="done"), InvalidInputError,
     ("run status 'done'", "not one of")),
]


@pytest.mark.parametrize("call, error, patterns", [pytest.param(c, e, p, id=i) for i, c, e, p in API_ERRORS])
def test_public_api_refuses_with_a_clear_error(run: orchestrack.Run, guard: Guard, call: Call,
                                               error: type[OrchestrackError], patterns: tuple[str, ...]) -> None:
    with pytest.raises(error) as caught:
        call(run, guard)
    assert isinstance(caught.value, OrchestrackError)
    _says(caught.value, *patterns, WHERE, FIX)
    assert orchestrack.get_run("hostile").params == {}  # a refused call stored nothing


@pytest.mark.parametrize("target", ["file", "folder"])
@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_artifact_folder_with_a_link_outside_is_refused(run: orchestrack.Run, guard: Guard, target: str,
                                                         how: str) -> None:
    folder = guard.inputs / "model"
    folder.mkdir()
    guard.before.add(str(folder.relative_to(guard.root)))
    outside = guard.outside / "keep.txt" if target == "file" else guard.outside
    link = folder / "link"
    link.symlink_to(outside if how == "absolute" else os.path.relpath(outside, folder))
    guard.before.add(str(link.relative_to(guard.root)))
    with pytest.raises(InvalidInputError) as caught:
        run.log_artifact(folder)
    _says(caught.value, "'link' links to", "outside the folder", "copy the target in or remove the link")
    assert orchestrack.get_run("hostile").artifacts == []


# -- public API: documented coercions -----------------------------------------------------------


COERCED_PARAMS: list[tuple[str, Any, Any]] = [
    ("nan", math.nan, "nan"), ("inf", math.inf, "inf"), ("minus-inf", -math.inf, "-inf"),
    ("long-text", "y" * 7000, "y" * 5999 + "…"),
    ("lone-surrogate", "caf\udce9", "caf\ufffd"), ("nul", "a\x00b", "a\ufffdb"),
    ("tuple", (1, 2), "[1,2]"),
]


@pytest.mark.parametrize("value, stored", [pytest.param(v, s, id=i) for i, v, s in COERCED_PARAMS])
def test_param_values_are_coerced_as_documented(run: orchestrack.Run, guard: Guard, value: Any, stored: Any) -> None:
    run.log_params({"p": value})
    run.set_tags({"t": value})
    record = orchestrack.get_run("hostile")
    assert record.params == {"p": stored} and record.tags == {"t": str(stored)}


@pytest.mark.parametrize("name", ["\u202eevil", "a\u200bb", "\ufeffbom", "名前", "emoji-\U0001F600"])
def test_odd_but_valid_unicode_names_are_kept_as_given(run: orchestrack.Run, guard: Guard, name: str) -> None:
    run.log_params({name: 1})
    run.log_metrics({name: 0.5})
    record = orchestrack.get_run("hostile")
    assert record.params == {name: 1} and record.metrics == {name: 0.5}


def test_ten_thousand_params_are_all_kept(run: orchestrack.Run, guard: Guard) -> None:
    params = {f"feature_{i}": i for i in range(10_000)}
    run.log_params(params)
    assert orchestrack.get_run("hostile").params == params


def test_none_tag_and_single_feature_column(run: orchestrack.Run, guard: Guard) -> None:
    run.set_tags({"note": None})
    run.log_features("age")  # one column, not the letters a, g, e
    record = orchestrack.get_run("hostile")
    assert record.tags == {"note": ""} and record.features is not None and record.features.columns == ["age"]


# -- public API: properties -----------------------------------------------------------------------


@PROPERTY
@given(name=st.text(alphabet=_HOSTILE_CHARS, max_size=300))
def test_any_text_as_a_param_name_is_kept_or_refused_clearly(run: orchestrack.Run, guard: Guard, name: str) -> None:
    try:
        run.log_params({name: 1})
    except InvalidInputError as err:
        _says(err, "param name", r"\(log_params\)", "give it a name|shorter name|remove them|errors='replace'")
        return
    assert orchestrack.get_run("hostile").params[name] == masked(name, 1)


@PROPERTY
@given(value=st.text(alphabet=_HOSTILE_CHARS, max_size=7000))
def test_any_text_as_a_param_value_is_kept_or_cleaned(run: orchestrack.Run, guard: Guard, value: str) -> None:
    run.log_params({"v": value})
    stored = orchestrack.get_run("hostile").params["v"]
    cleaned = re.sub("[\x00\ud800-\udfff]", "\ufffd", value)
    assert stored == masked("v", cleaned if len(cleaned) <= 6000 else cleaned[:5999] + "…")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=30)


@PROPERTY
@given(value=_json)
def test_any_json_nesting_is_stored_as_compact_json_or_refused(run: orchestrack.Run, guard: Guard, value: Any) -> None:
    try:
        run.log_params({"v": value})
    except InvalidInputError as err:
        _says(err, "param 'v'", "not JSON-serialisable")
        return
    stored = orchestrack.get_run("hostile").params["v"]
    if isinstance(value, (list, dict)):  # compact JSON text, keys sorted
        assert stored == masked("v", json.dumps(value, separators=(",", ":"), sort_keys=isinstance(value, dict)))


@PROPERTY
@given(value=st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-(10**400), max_value=10**400))
def test_any_number_as_a_metric_is_stored_or_refused(run: orchestrack.Run, guard: Guard, value: float) -> None:
    try:
        expected: float | None = float(value)
    except OverflowError:
        expected = None
    if expected is None or not math.isfinite(expected):
        with pytest.raises(InvalidInputError) as caught:
            run.log_metrics({"m": value}, step=0)
        _says(caught.value, "metric 'm'", "non-finite|too large for a float", "set_tags|logarithmic")
    else:
        run.log_metrics({"m": value}, step=0)
        assert orchestrack.get_run("hostile").metrics["m"] == expected


@PROPERTY
@given(name=st.text(alphabet="./\\:Ca", min_size=1, max_size=12))
def test_any_artifact_name_stays_inside(run: orchestrack.Run, guard: Guard, name: str) -> None:
    try:
        artifact = run.log_artifact(guard.inputs / "model.pt", name=name)
    except InvalidInputError as err:
        _says(err, re.escape(repr(name)), "would escape|names no file")
        return
    assert artifact is not None
    stored = PurePosixPath(artifact.name)
    assert not stored.is_absolute() and ".." not in stored.parts and stored.parts
    assert not PureWindowsPath(artifact.name).drive and not PureWindowsPath(artifact.name).is_absolute()


@PROPERTY
@given(step=st.integers(min_value=-(2**70), max_value=2**70))
def test_any_integer_as_a_step_is_stored_or_refused(run: orchestrack.Run, guard: Guard, step: int) -> None:
    try:
        run.log_metrics({"loss": 1.0}, step=step)
    except InvalidInputError as err:
        assert not 0 <= step < 2**63
        _says(err, f"step {step}", r"integer from 0 to 2\*\*63-1")


# -- CLI --------------------------------------------------------------------------------------------


CLI_ERRORS: list[tuple[str, list[str], int, tuple[str, ...]]] = [
    ("show-unknown", ["show", "no-such-run"], 1, ("no run with key or id 'no-such-run'", "orchestrack runs")),
    ("show-empty", ["show", ""], 1, ("run key is empty", "get_run")),
    ("show-surrogate", ["show", "\udc80"], 1, ("lone surrogate",)),
    ("show-huge-ref", ["show", "x" * 10_000], 1, ("10000 characters long",)),
    ("show-unknown-flag", ["show", BASELINE, "--bogus"], 2, (r"No such option:? '?--bogus",)),
    ("runs-limit-zero", ["runs", "--limit", "0"], 2, ("Invalid value for '--limit'", "range 1<=x<=10000")),
    ("runs-limit-text", ["runs", "--limit", "many"], 2, ("'many' is not a valid integer",)),
    ("runs-status-unknown", ["runs", "--status", "done"], 2, ("'done' is not one of 'running'",)),
    ("uri-unknown-scheme", ["--tracking-uri", "ftp://x/y", "runs"], 1,
     ("no store for tracking URI 'ftp://x/y'", "known schemes")),
    ("uri-two-slashes", ["--tracking-uri", "sqlite://runs.db", "runs"], 1, ("three or four slashes",)),
    ("uri-blank", ["--tracking-uri", "   ", "runs"], 1, ("setting 'tracking_uri'", "blank")),
    ("fetch-unknown-artifact", ["fetch", BASELINE, "../../etc/passwd"], 2,
     ("has no artifact named '../../etc/passwd'", "it has: model.pt")),
    ("fetch-to-full-disk", ["fetch", BASELINE, "model.pt", "--to", "/dev/full"], 1,
     ("cannot copy artifact", "/dev/full", "No space left", "--to")),
    ("report-unwritable", ["report", BASELINE, "-o", "/dev/full/report.html"], 1,
     ("cannot write the report to '/dev/full/report.html'", "-o/--output")),
    ("classify-exit-code-text", ["classify", "--exit-code", "x"], 2, ("'x' is not a valid integer",)),
    ("classify-signal-no-value", ["classify", "--signal", "crashed"], 2, ("is not KEY=VALUE",)),
    ("gate-spec-missing", ["gate", BASELINE, "--spec", "nope.yaml"], 1, ("gate spec", "does not exist")),
]


@pytest.mark.parametrize("args, code, patterns", [pytest.param(a, c, p, id=i) for i, a, c, p in CLI_ERRORS])
def test_cli_refuses_with_a_clear_error(guard: Guard, args: list[str], code: int, patterns: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, args, input="")
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    _says(Exception(" ".join(result.output.split())), *patterns)


def test_cli_fetch_refuses_stored_names_and_manifests_that_point_outside(guard: Guard) -> None:
    """A record or folder manifest written by something else (a foreign MLflow run, a hand-edited
    database) cannot make ``orchestrack fetch`` write outside the destination."""
    run = orchestrack.start_run(key="foreign")
    stored = run.log_artifact(guard.inputs / "model.pt")
    assert stored is not None
    # the name as another writer could have stored it, bypassing the checks of log_artifact
    run.store.log_artifact(run.run_id, Artifact(name="../outside/evil.txt", kind="file", uri=stored.uri,
                                                sha256=stored.sha256, size_bytes=stored.size_bytes))
    result = CliRunner().invoke(cli, ["fetch", "foreign", "../outside/evil.txt"])
    assert result.exit_code == 1 and "would escape" in result.output and "use --to" in result.output

    root = Path(stored.uri.removeprefix("file://")).parents[2]
    manifest = json.dumps({"kind": "folder", "files": {"../../outside/evil.txt": {"sha256": stored.sha256,
                                                                                   "size": 7}}}).encode()
    folder_blob = root / "sha256" / "ff" / ("ff" * 32)
    folder_blob.parent.mkdir(parents=True, exist_ok=True)
    folder_blob.write_bytes(manifest)
    run.store.log_artifact(run.run_id, Artifact(name="weights", kind="folder", uri=folder_blob.as_uri(),
                                                sha256="ff" * 32, size_bytes=7))
    result = CliRunner().invoke(cli, ["fetch", "foreign", "weights", "--to", str(guard.inputs / "fetched")])
    assert result.exit_code == 1
    _says(Exception(" ".join(result.output.split())), "lists the file '../../outside/evil.txt'",
          "outside", "nothing was fetched")


# -- config file --------------------------------------------------------------------------------------


CONFIG_FILES: list[tuple[str, bytes | None, tuple[str, ...]]] = [
    ("malformed-toml", b"tracking_uri = \n", ("config file", "not valid UTF-8 TOML", "Invalid value", "fix the file")),
    ("yaml-not-toml", b"tracking_uri: x\n", ("not valid UTF-8 TOML", "Expected '='")),
    ("non-utf8", b"home = '\xff\xfe'\n", ("not valid UTF-8 TOML", "codec can't decode")),
    ("nul-byte", b"home = 'a\x00'\n", ("invalid character",)),
    ("deep-nesting", b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", ("nests too deeply",)),
    ("wrong-type", b"busy_timeout_s = 'soon'\n", ("setting 'busy_timeout_s' from config file", "valid number")),
    ("table-for-number", b"busy_timeout_s = {a = 1}\n", ("setting 'busy_timeout_s'", "valid number")),
    ("nan", b"busy_timeout_s = nan\n", ("setting 'busy_timeout_s'", "greater than 0|finite number")),
    ("inf", b"metric_flush_s = inf\n", ("setting 'metric_flush_s'", "finite number")),
    ("unknown-key", b"trackng_uri = 'x'\n", ("setting 'trackng_uri' from config file", "Extra inputs")),
    ("unknown-nested-key", b"[policy]\nstrictt = true\n", ("setting 'policy.strictt'", "Extra inputs")),
    ("bad-rule-regex", b"[[failure_rules]]\npattern = '('\nreason = 'data-error'\n",
     ("failure_rules.0.pattern", "not a valid regular expression")),
    ("bad-experiment-template", b"[mlflow]\nexperiment = '{team}'\n", ("mlflow.experiment", "only {pipeline}")),
    ("a-folder", None, ("does not exist", "unset ORCHESTRACK_CONFIG")),
]


@pytest.mark.parametrize("content, patterns", [pytest.param(c, p, id=i) for i, c, p in CONFIG_FILES])
def test_config_file_problems_name_the_file_and_the_fix(guard: Guard, monkeypatch: pytest.MonkeyPatch,
                                                        content: bytes | None, patterns: tuple[str, ...]) -> None:
    path = guard.home / "config.toml"  # $ORCHESTRACK_HOME/config.toml: found without ORCHESTRACK_CONFIG
    if content is None:
        path.mkdir()
        monkeypatch.setenv("ORCHESTRACK_CONFIG", str(path))
    else:
        path.write_bytes(content)
    with pytest.raises(InvalidInputError) as caught:
        orchestrack.start_run(key="configured")
    _says(caught.value, re.escape(str(path)), *patterns)
    monkeypatch.delenv("ORCHESTRACK_CONFIG", raising=False)
    if content is None:
        path.rmdir()
    else:
        path.unlink()


def test_missing_config_file_is_named(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_CONFIG", str(guard.inputs / "orchestrack.toml"))
    with pytest.raises(InvalidInputError) as caught:
        orchestrack.get_run(BASELINE)
    _says(caught.value, "orchestrack.toml' \\(from ORCHESTRACK_CONFIG\\) does not exist", "create it or unset")
    monkeypatch.delenv("ORCHESTRACK_CONFIG")


# -- environment ---------------------------------------------------------------------------------


ENVIRONMENT: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("busy-nan", "ORCHESTRACK_BUSY_TIMEOUT_S", "nan", ("greater than 0|finite",)),
    ("busy-inf", "ORCHESTRACK_BUSY_TIMEOUT_S", "inf", ("finite number",)),
    ("busy-negative", "ORCHESTRACK_BUSY_TIMEOUT_S", "-1", ("greater than 0",)),
    ("busy-text", "ORCHESTRACK_BUSY_TIMEOUT_S", "soon", ("valid number",)),
    ("busy-a-year", "ORCHESTRACK_BUSY_TIMEOUT_S", "31536000", ("less than or equal to 86400",)),
    ("flush-inf", "ORCHESTRACK_METRIC_FLUSH_S", "inf", ("finite number",)),
    ("hash-limit-fraction", "ORCHESTRACK_DATA_HASH_LIMIT_MB", "1.5", ("valid integer",)),
    ("hash-limit-1e400", "ORCHESTRACK_DATA_HASH_LIMIT_MB", "1e400", ("valid integer",)),
    ("strict-maybe", "ORCHESTRACK_STRICT", "maybe", ("valid boolean",)),
    ("policy-strict-perhaps", "ORCHESTRACK_POLICY__STRICT", "perhaps", ("valid boolean",)),
    ("packages-comma-list", "ORCHESTRACK_PACKAGES", "lightgbm,xgboost", ("not valid JSON", "'lightgbm,xgboost'",
                                                                          r"ORCHESTRACK_PACKAGES='\[")),
    ("policy-broken-json", "ORCHESTRACK_POLICY", "{", ("ORCHESTRACK_POLICY is not valid JSON", "__FIELD")),
    ("mlflow-timeout-zero", "ORCHESTRACK_MLFLOW__TIMEOUT_S", "0", ("greater than 0",)),
    ("uri-control-char", "ORCHESTRACK_TRACKING_URI", "/srv/runs\x01.db", ("control characters",)),
    ("uri-memory", "ORCHESTRACK_TRACKING_URI", "sqlite:///:memory:", ("in-memory SQLite store", "give a file")),
    ("uri-unknown-scheme", "ORCHESTRACK_TRACKING_URI", "postgresql://db/runs", ("no store for tracking URI",
                                                                                "known schemes")),
    ("artifact-uri-unknown-scheme", "ORCHESTRACK_ARTIFACT_URI", "gs://bucket/x", ("no artifact store for 'gs://",
                                                                                   "known: a folder path")),
]


@pytest.mark.parametrize("name, value, patterns", [pytest.param(n, v, p, id=i) for i, n, v, p in ENVIRONMENT])
def test_environment_problems_name_the_variable_and_the_fix(guard: Guard, monkeypatch: pytest.MonkeyPatch,
                                                            name: str, value: str, patterns: tuple[str, ...]) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInputError) as caught:
        orchestrack.start_run(key="from-env").log_artifact(guard.inputs / "model.pt")
    _says(caught.value, name, *patterns)
    monkeypatch.delenv(name)


def test_empty_tracking_uri_means_unset(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_TRACKING_URI", "")  # `export ORCHESTRACK_TRACKING_URI=` in a shell
    assert load_settings().tracking_uri is None
    assert orchestrack.get_run(BASELINE).key == BASELINE


# -- stores -------------------------------------------------------------------------------------------


def _other_store(guard: Guard, name: str, damage: Callable[[Path], None]) -> Path:
    """A copy of the baseline's database, damaged; the original stays as it was."""
    stores.close_all()
    with sqlite3.connect(guard.home / "orchestrack.db") as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    path = guard.home / name
    shutil.copyfile(guard.home / "orchestrack.db", path)
    damage(path)
    return path


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _overwrite_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[4096:8192] = b"\xff" * 4096
    path.write_bytes(bytes(data))


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a database at all" * 300)


def _foreign(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE runs (id INTEGER, started TEXT)")


def _newer(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA user_version = 99")


STORE_FILES = [  # (id, damage, what the error says, whether the file must stay byte for byte as it was)
    ("garbage", _garbage, "not a readable SQLite database; move it aside", True),
    ("truncated", _truncate, "malformed.*move it aside", False),
    ("overwritten-page", _overwrite_page, "malformed.*move it aside", False),
    ("another-programs-database", _foreign, "SQLite database of another program.*nothing was changed", True),
    ("newer-store-version", _newer, "a newer orchestrack wrote it .store version 99.*upgrade orchestrack", True),
]


@pytest.mark.parametrize("damage, pattern, untouched", [pytest.param(d, p, u, id=i) for i, d, p, u in STORE_FILES])
def test_damaged_or_foreign_database_is_refused(guard: Guard, damage: Callable[[Path], None], pattern: str,
                                                untouched: bool) -> None:
    path = _other_store(guard, "damaged.db", damage)
    before = path.read_bytes()
    with pytest.raises(StoreError) as caught:
        orchestrack.start_run(key="damaged", tracking_uri=f"sqlite:///{path}").log_params({"a": 1})
    _says(caught.value, re.escape(str(path)), pattern)
    stores.close_all()
    if untouched:  # another program's file, or a newer one's: not switched to WAL, not given our tables
        assert path.read_bytes() == before
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


@pytest.mark.parametrize("target, pattern", [("folder", "that is a folder, not a database file; name a file"),
                                             ("/dev/null", "cannot open the embedded store '/dev/null'")])
def test_database_path_that_is_no_file(guard: Guard, target: str, pattern: str) -> None:
    path = guard.home / "a-folder.db" if target == "folder" else Path(target)
    if target == "folder":
        path.mkdir()
    with pytest.raises(StoreError) as caught:
        orchestrack.start_run(key="nowhere", tracking_uri=f"sqlite:///{path}")
    _says(caught.value, pattern)
    assert "cannot rollback" not in str(caught.value)  # the first error is the one reported


@pytest.fixture
def immutable_database(guard: Guard) -> Iterator[Path]:
    """The embedded store made read-only with the immutable flag: as root, chmod alone would not stop writes."""
    stores.close_all()
    database = guard.home / "orchestrack.db"
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(database)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available on this filesystem (needs root and ext4/xfs/btrfs)")
    try:
        yield database
    finally:
        subprocess.run(["chattr", "-i", str(database)], check=True)


def test_read_only_database_strict_says_so(guard: Guard, immutable_database: Path) -> None:
    with pytest.raises(StoreError) as caught:
        orchestrack.start_run(key="read-only")
    _says(caught.value, "readonly database", "not writable .read-only file, mount or immutable flag",
          "ORCHESTRACK_HOME")
    assert orchestrack.get_run(BASELINE).params["lr"] == 0.1  # still readable


def test_read_only_database_fail_open_keeps_the_task_and_spools(guard: Guard, immutable_database: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRACK_STRICT")
    run = orchestrack.start_run(key="read-only")
    with pytest.raises(KeyError), run.task("train"):
        orchestrack.log_params({"lr": 0.2})
        raise KeyError("the task's own error comes through unchanged")
    run.finish()
    spooled = "".join(p.read_text() for p in (guard.home / "spool").glob("*.jsonl"))
    assert '"log_params"' in spooled and '"read-only"' in spooled
    subprocess.run(["chattr", "-i", str(immutable_database)], check=True)
    stores.close_all()
    applied, problems = orchestrack.replay_spool()
    assert problems == [] and applied >= 3
    assert orchestrack.get_run("read-only").params == {"lr": 0.2}


_FULL_DISK = textwrap.dedent("""
    import os, resource, signal, sys
    from pathlib import Path
    import orchestrack
    run = orchestrack.start_run(key="full-disk")
    home = Path(os.environ["ORCHESTRACK_HOME"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    limit = max(p.stat().st_size for p in home.rglob("*") if p.is_file()) + 2048
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    try:
        with run.task("train"):
            orchestrack.log_params({f"p{i}": "x" * 5000 for i in range(200)})
            orchestrack.log_metrics({"auc": 0.9})
        run.finish()
        print("PIPELINE-DONE")
    except orchestrack.OrchestrackError as err:
        print("ORCHESTRACK-ERROR", type(err).__name__, err)
""")


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "fail-open"])
def test_full_disk(guard: Guard, strict: bool) -> None:
    stores.close_all()
    env = {**os.environ, "TMPDIR": str(guard.temp)}
    if not strict:
        env.pop("ORCHESTRACK_STRICT")
    done = subprocess.run([sys.executable, "-c", _FULL_DISK], env=env, capture_output=True, text=True, timeout=120,
                          cwd=guard.inputs)
    if strict:
        assert "ORCHESTRACK-ERROR StoreError" in done.stdout, done.stdout + done.stderr
        _says(Exception(done.stdout), "disk I/O error|disk is full", "free space or point ORCHESTRACK_HOME elsewhere")
    else:
        assert "PIPELINE-DONE" in done.stdout and done.returncode == 0, done.stdout + done.stderr
        assert "no impact on the task" in done.stderr or "this write is lost" in done.stderr
    with sqlite3.connect(guard.home / "orchestrack.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_unwritable_artifact_folder(guard: Guard, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_ARTIFACT_URI", "/dev/null/artifacts")
    with pytest.raises(StoreError) as caught:
        orchestrack.start_run(key="no-artifacts").log_artifact(guard.inputs / "model.pt")
    _says(caught.value, "cannot write artifact", "/dev/null/artifacts", "ORCHESTRACK_ARTIFACT_URI")
