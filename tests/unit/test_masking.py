"""Secrets never reach a store through the Python API: masked by name, redacted by shape, in the core."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrack
from orchestrack import stores
from orchestrack.inputs import is_secret_name, mask_sensitive

SEEDED = {"db_password": "hunter2-seed", "hfToken": "hf-seed-token", "apiKey": "key-seed", "client_secret": "cs-seed",
          "AUTH": "auth-seed", "note": "AKIAIOSFODNN7SEEDXYZ", "dsn": "postgresql://ml:pw-seed@db/warehouse",
          "header": "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWVkIn0.c2VlZHNpZ25hdHVyZQ"}


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("ORCHESTRACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ORCHESTRACK_STRICT", "1")
    monkeypatch.delenv("ORCHESTRACK_TRACKING_URI", raising=False)
    yield tmp_path / "home"
    stores.close_all()


@pytest.mark.parametrize(("name", "secret"), [
    ("password", True), ("db_password", True), ("hfToken", True), ("GITHUB_TOKEN", True), ("api_key", True),
    ("apiKey", True), ("aws_secret_access_key", True), ("client_secret", True), ("auth", True),
    ("tokenizer", False), ("max_tokens", False), ("author", False), ("num_tokens", False), ("keyspace", False),
    ("lr", False), ("secretary_count", False)])
def test_secret_names_are_whole_words_of_the_name(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_params_and_tags_logged_through_the_api_store_no_secret(home: Path) -> None:
    run = orchestrack.start_run(key="sec/api", params={"seed_param_password": "start-seed"},
                                tags={"deploy_token": "tag-seed"})
    run.log_params({**SEEDED, "tokenizer": "bert-base", "max_tokens": 256})
    run.set_tags({f"t_{key}": value for key, value in SEEDED.items()})
    run.finish()
    record = orchestrack.get_run("sec/api")
    assert record.params["tokenizer"] == "bert-base" and record.params["max_tokens"] == 256
    assert record.params["db_password"] == "***" and record.params["dsn"] == "postgresql://ml:***@db/warehouse"
    assert record.tags["t_note"] == "***" and record.tags["deploy_token"] == "***"
    stores.close_all()
    written = b"".join(path.read_bytes() for path in home.rglob("*") if path.is_file())
    for seed in ["hunter2-seed", "hf-seed-token", "key-seed", "cs-seed", "auth-seed", "AKIAIOSFODNN7SEEDXYZ",
                 "pw-seed", "c2VlZHNpZ25hdHVyZQ", "start-seed", "tag-seed"]:
        assert seed.encode() not in written, seed


def test_adapters_mask_orchestrator_params_the_same_way() -> None:
    assert mask_sensitive({"api_token": "x", "tokenizer": "bert", "url": "https://u:p@h/x"}) == {
        "api_token": "***", "tokenizer": "bert", "url": "https://u:***@h/x"}
