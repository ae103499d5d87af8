"""Secrets never reach a store through the Python API: masked by name, redacted by shape, in the core."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrack
from orchestrack import stores
from orchestrack.evidence import redact
from orchestrack.inputs import is_secret_name, mask_sensitive, scrub
from orchestrack.record import DataSnapshot, Environment, RunRecord, TaskAttempt, TaskStatus

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


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql://app:pw-seed@db/x", "postgresql://app:***@db/x"),
    ("{'Authorization': 'Bearer tok0123456789abcdefgh'}", "{'Authorization': 'Bearer ***'}"),
    ("retry with Bearer tok0123456789abcdefgh now", "retry with Bearer *** now"),
    ('curl -H "Authorization: Basic dXNlcjpwYXNz"', 'curl -H "Authorization: Basic ***"'),
    ("aws_secret_access_key = wJalrXUtnFEMIK7MDENGbPxRfiCY", "aws_secret_access_key = ***"),
    ("MY_API_TOKEN=abc123 done", "MY_API_TOKEN=*** done"),
    ("key AKIAIOSFODNN7SEEDXYZ used", "key *** used"),
    ("'t\\nAKIAIOSFODNN7SEEDXYZ'", "'t\\n***'"),  # right after a repr's escaped line break
    ("ghp_abcdefghijklmnopqrstuvwxyz0123 and sk-abcdefghijklmnopqrstuv12", "*** and ***"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEseed\n-----END RSA PRIVATE KEY-----",
     "-----BEGIN RSA PRIVATE KEY-----***-----END RSA PRIVATE KEY-----"),
    ("-----BEGIN PRIVATE KEY-----\nMIIEseed\nAAAA==\n…\nTraceback", "-----BEGIN PRIVATE KEY-----***…\nTraceback"),
    ("max_tokens 512, basic training, tokenizer bert", "max_tokens 512, basic training, tokenizer bert")])
def test_redact_hides_each_secret_shape_and_keeps_ordinary_text(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_scrub_masks_any_record_part_and_keeps_identities_and_clean_objects() -> None:
    attempt = TaskAttempt(task_id="t", name="t", attempt=1, status=TaskStatus.FAILED,
                          details={"password": "pw-seed", "url": "https://u:pw-seed@h/x", "n": 3})
    snapshot = DataSnapshot(name="d", uri="postgresql://u:pw-seed@db/x", details={"api_token": "x"})
    scrubbed = scrub({"attempts": [attempt], "snapshot": snapshot, "run_id": "abc"})
    assert scrubbed["attempts"][0].details == {"password": "***", "url": "https://u:***@h/x", "n": 3}
    assert scrubbed["snapshot"].uri == "postgresql://u:***@db/x"
    assert scrubbed["snapshot"].details == {"api_token": "***"}
    clean = {"attempts": [attempt.model_copy(update={"details": {"lr": 0.1}})], "run_id": "abc"}
    assert scrub(clean) is clean  # nothing to hide: the same objects, no copy
    assert scrub(Environment(packages={"django-auth-ldap": "4.0"})).packages == {"django-auth-ldap": "4.0"}
    key = "nightly/token=abc"
    assert scrub(RunRecord(run_id="r", key=key, name="n")).key == key  # an identity is kept as given


def test_an_orchestrack_error_never_shows_a_secret_it_quotes(home: Path) -> None:
    with pytest.raises(orchestrack.InvalidInputError) as raised:
        orchestrack.start_run(key="sec/err", purpose="Bearer tok0123456789abcdefgh")
    assert "tok0123456789abcdefgh" not in str(raised.value) and "Bearer ***" in str(raised.value)
