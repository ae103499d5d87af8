"""Shared fixtures: every test gets its own ORCHESTRACK_HOME and strict mode unless it opts out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrack
from orchestrack import lifecycle, stores
from orchestrack.lease import leases

# Real servers on loopback (S3, PostgreSQL, MLflow), started by the suites that ask for them.
pytest_plugins = ["tests.servers"]


@pytest.fixture(autouse=True)
def orchestrack_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh embedded store per test; strict mode so tracking faults fail the test loudly."""
    for name in list(__import__("os").environ):
        if name.startswith("ORCHESTRACK_"):
            monkeypatch.delenv(name)
    home = tmp_path / "orchestrack-home"
    monkeypatch.setenv("ORCHESTRACK_HOME", str(home))
    monkeypatch.setenv("ORCHESTRACK_STRICT", "1")
    monkeypatch.setattr(lifecycle, "_process_run", None)
    monkeypatch.setattr(lifecycle, "_replayed", set())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no git checkout above the test
    monkeypatch.setenv("ORCHESTRACK_CODE_DIR", str(tmp_path))  # not the checkout pytest runs from
    token = lifecycle._active_run.set(None)
    yield home
    lifecycle._active_run.reset(token)
    leases.clear()  # attempts a test left open are not renewed into the next test's store
    stores.close_all()


@pytest.fixture
def finished_runs() -> tuple[orchestrack.RunRecord, orchestrack.RunRecord]:
    """One succeeding and one failing run in the test's store."""
    good = orchestrack.start_run(key="demo/good", owner="ml", purpose="baseline", pipeline="demo")
    with good.task("train"):
        orchestrack.log_params({"lr": 0.1})
        orchestrack.log_metrics({"auc": 0.9})
    bad = orchestrack.start_run(key="demo/bad", owner="ml", purpose="tuning", pipeline="demo")
    with pytest.raises(FileNotFoundError), bad.task("train"):
        raise FileNotFoundError("data/train.parquet")
    return good.finish(), bad.finish()  # type: ignore[return-value]
