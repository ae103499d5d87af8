"""A tracking server that answers garbage or hangs (issue 12, "Bad input").

A tiny ``http.server`` on 127.0.0.1 plays the tracking server: an HTML login page, broken JSON, a
JSON list, empty and HTML 500s, a 404, a 401, a port where nothing listens, and one that accepts
and never answers. Each is a :class:`StoreError` (a subclass of ``OrchestrackError``) naming the
server, the endpoint and the fix, within ``ORCHESTRACK_MLFLOW__TIMEOUT_S``; in fail-open mode a
pipeline-style run against the hanging server returns without raising, in bounded time, with its
writes waiting in the journal under ``$ORCHESTRACK_HOME/spool`` and nothing written elsewhere.

These need ``requests`` (the MLflow extra), so they run in the mlflow session, not in core; the
other hostile inputs are in tests/unit/test_hostile_inputs.py.
"""

from __future__ import annotations

import http.server
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import orchestrack
from orchestrack import OrchestrackError, StoreError, stores

TIMEOUT_S = 1.5

#: mode -> (status, content type, body)
ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "html-login-page": (200, "text/html", b"<html><body><form>Sign in</form></body></html>"),
    "broken-json": (200, "application/json", b'{"experiment": {"experiment_id": '),
    "json-list": (200, "application/json", b"[1, 2, 3]"),
    "empty-500": (500, "text/plain", b""),
    "html-500": (500, "text/html", b"<html><h1>Internal Server Error</h1></html>"),
    "not-found": (404, "text/plain", b"no such page"),
    "unauthorized": (401, "application/json", b'{"error_code": "UNAUTHENTICATED", "message": "login"}'),
}


class FakeServer:
    """An HTTP server on loopback answering every request the same way, or never (``hang``)."""

    def __init__(self, mode: str) -> None:
        self.release = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def answer(self) -> None:
                if mode == "hang":  # accept, read the request, never answer
                    outer.release.wait(60)
                    return
                status, kind, body = ANSWERS[mode]
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sandbox(tmp_path: Path, orchestrack_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A short server timeout, the temp folder inside the test, and a check that nothing was written
    outside ``$ORCHESTRACK_HOME`` and that temp folder."""
    monkeypatch.setenv("ORCHESTRACK_MLFLOW__TIMEOUT_S", str(TIMEOUT_S))
    monkeypatch.setenv("ORCHESTRACK_DELIVERY_TIMEOUT_S", "1")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    before = {p for p in tmp_path.iterdir()}
    yield tmp_path
    stores.close_all()
    assert {p for p in tmp_path.iterdir()} - {orchestrack_home} == before - {orchestrack_home}


@pytest.fixture
def fake(request: pytest.FixtureRequest, sandbox: Path) -> Iterator[FakeServer]:
    server = FakeServer(request.param)
    yield server
    server.stop()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


GARBAGE = [
    ("html-login-page", ("answered experiments/get-by-name with text/html that is not a JSON object",
                         "Sign in", "not a proxy, login page or UI address")),
    ("broken-json", ("application/json that is not a JSON object", "ORCHESTRACK_TRACKING_URI")),
    ("json-list", ("not a JSON object", r"'\[1, 2, 3\]'")),
    ("empty-500", ("HTTP_500: \\(empty answer\\)", "kept failing for 1.5 s", "orchestrack replay")),
    ("html-500", ("HTTP_500: <html><h1>Internal Server Error", "check its logs")),
    ("not-found", ("HTTP_404: no such page", "an MLflow tracking server \\(ORCHESTRACK_TRACKING_URI\\)")),
    ("unauthorized", ("UNAUTHENTICATED: login", "MLFLOW_TRACKING_TOKEN")),
]


@pytest.mark.parametrize("fake, patterns", [pytest.param(m, p, id=m) for m, p in GARBAGE], indirect=["fake"])
def test_garbage_answers_are_clear_store_errors(fake: FakeServer, patterns: tuple[str, ...]) -> None:
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        orchestrack.start_run(key="garbage", tracking_uri=fake.url)
    assert time.monotonic() - started < TIMEOUT_S + 3
    assert isinstance(caught.value, OrchestrackError)
    text = str(caught.value)
    assert fake.url in text
    for pattern in patterns:
        assert re.search(pattern, text), f"{pattern!r} not in {text!r}"


@pytest.mark.parametrize("fake", ["hang"], indirect=True)
def test_a_server_that_never_answers_times_out_in_bounded_time(fake: FakeServer) -> None:
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        orchestrack.start_run(key="hung", tracking_uri=fake.url)
    assert time.monotonic() - started < TIMEOUT_S + 3
    assert re.search(r"ReadTimeout \(no answer within 1.5 s; ORCHESTRACK_MLFLOW__TIMEOUT_S\).*server is up",
                     str(caught.value))


def test_a_port_where_nothing_listens(sandbox: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(StoreError, match=r"cannot reach the MLflow tracking server at .*ConnectionError.*"
                                         r"check ORCHESTRACK_TRACKING_URI"):
        orchestrack.start_run(key="nobody", tracking_uri=url)


@pytest.mark.parametrize("fake", ["hang", "html-500"], indirect=True)
def test_fail_open_pipeline_returns_and_journals(fake: FakeServer, sandbox: Path, orchestrack_home: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORCHESTRACK_STRICT")
    started = time.monotonic()
    run = orchestrack.start_run(key="pipeline", tracking_uri=fake.url, owner="ml")
    with pytest.raises(ZeroDivisionError), run.task("train"):
        orchestrack.log_params({"lr": 0.1})
        orchestrack.log_metrics({"auc": 0.9})
        1 / 0  # noqa: B018 - the task's own failure comes through unchanged
    run.finish()
    assert time.monotonic() - started < 6 * TIMEOUT_S + 10  # each store call bounded, none repeated at length
    journal = "".join(p.read_text() for p in (orchestrack_home / "spool").glob("*.jsonl"))
    assert '"log_params"' in journal and '"open_run"' in journal
