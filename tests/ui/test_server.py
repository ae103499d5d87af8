"""`orchestrack ui` over HTTP: read-only, the token off the loopback, artifacts only from the store."""

from __future__ import annotations

import http.client
import io
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.ui.conftest import Runs, Server, start_ui, stop


def request(server: Server, path: str, method: str = "GET",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send ``path`` exactly as written (no client-side normalisation of ``..``)."""
    parts = urlsplit(server.base)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture(scope="module")
def token_server(runs: Runs) -> Iterator[Server]:
    """`orchestrack ui --host 0.0.0.0` without a token: it makes one and prints it once."""
    server = start_ui(runs.env, "--host", "0.0.0.0")
    yield server
    stop(server)


def _token(server: Server) -> str:
    return server.printed.split("?token=", 1)[1]


def test_off_the_loopback_every_request_needs_the_token(token_server: Server) -> None:
    token = _token(token_server)
    assert len(token) >= 24
    assert request(token_server, "/")[0] == 401
    assert request(token_server, "/runs/ui%2Fgood")[0] == 401
    assert request(token_server, "/", headers={"Authorization": "Bearer wrong"})[0] == 403
    assert request(token_server, "/?token=wrong")[0] == 403
    status, headers, body = request(token_server, f"/?token={token}")
    assert status == 200
    assert "HttpOnly" in headers["set-cookie"] and token in headers["set-cookie"]
    assert token.encode() not in body  # the page itself never shows it
    cookie = headers["set-cookie"].split(";", 1)[0]
    assert request(token_server, "/failures", headers={"Cookie": cookie})[0] == 200
    assert request(token_server, "/failures", headers={"Authorization": f"Bearer {token}"})[0] == 200


def test_a_given_token_is_required_and_not_printed(runs: Runs) -> None:
    server = start_ui({**runs.env, "ORCHESTRACK_UI_TOKEN": "team-secret-1234"}, "--host", "0.0.0.0")
    try:
        assert "team-secret-1234" not in server.printed
        assert request(server, "/")[0] == 401
        assert request(server, "/", headers={"Authorization": "Bearer team-secret-1234"})[0] == 200
    finally:
        stop(server)


def test_only_get_and_head_are_answered(ui_server: Server) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = request(ui_server, "/", method=method)
        assert status == 405, method
        assert headers["allow"] == "GET, HEAD"
    status, headers, body = request(ui_server, "/", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_pages_forbid_remote_loads(ui_server: Server, runs: Runs) -> None:
    status, headers, _ = request(ui_server, f"/runs/{runs.good.run_id}")
    assert status == 200
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert headers["x-content-type-options"] == "nosniff"
    assert request(ui_server, "/runs/no-such-run")[0] == 404
    assert request(ui_server, "/assets/../pyproject.toml")[0] == 404
    assert request(ui_server, "/nothing-here")[0] == 404


def test_an_artifact_downloads_from_the_store(ui_server: Server, runs: Runs) -> None:
    status, headers, body = request(ui_server, f"/artifacts/{runs.good.run_id}/model.pt")
    assert status == 200 and body == b"weights-" * 64
    assert headers["content-disposition"].startswith("attachment;")
    status, headers, body = request(ui_server, f"/artifacts/{runs.good.run_id}/tokenizer")
    assert status == 200 and headers["content-type"] == "application/zip"
    assert zipfile.ZipFile(io.BytesIO(body)).read("vocab/words.txt") == b"a\nb\n"


@pytest.mark.parametrize("path", [
    "/artifacts/{good}/../../etc/passwd", "/artifacts/{good}/..%2F..%2Fetc%2Fpasswd",
    "/artifacts/{good}/%2Fetc%2Fpasswd",
    "/artifacts/../../../etc/passwd", "/artifacts/{good}/", "/artifacts/{good}", "/artifacts/{evil}/passwd",
    "/artifacts/{evil}/linked", "/artifacts/{evil}/elsewhere", "/artifacts/no-such-run/model.pt",
])
def test_nothing_outside_the_artifact_store_is_served(ui_server: Server, runs: Runs, path: str) -> None:
    status, _, body = request(ui_server, path.format(good=runs.good.run_id, evil=runs.evil_run))
    assert status == 404, path
    assert b"root:" not in body


def test_report_writes_one_file(runs: Runs, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = subprocess.run([sys.executable, "-m", "orchestrack", "report", "ui/good", "ui/bad", "-o", str(out)],
                            env=runs.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "2 runs" in result.stdout and out.exists()


def test_the_model_pages_list_what_was_promoted_and_404_an_unknown_model(ui_server: Server, runs: Runs) -> None:
    status, _, body = request(ui_server, "/models")
    assert status == 200 and b"No model has been promoted yet" in body  # the fixture promotes nothing
    status, _, body = request(ui_server, "/models/no-such-model")
    assert status == 404 and b"No model named &#x27;no-such-model&#x27; has a version" in body


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    """10,000 runs of 10 pipelines, one of them with a 1,000-task map, served by `orchestrack ui`."""
    import os

    from orchestrack import stores
    from orchestrack.lifecycle import run_id_for
    from orchestrack.record import OrchestratorInfo, RunRecord, RunStatus, TaskAttempt, TaskStatus

    home = tmp_path_factory.mktemp("wide") / "home"
    home.mkdir()
    store = stores.open_store(f"sqlite:///{home}/orchestrack.db")
    for index in range(10_000):
        key = f"wide/{index:05d}"
        store.open_run(RunRecord(run_id=run_id_for(key), key=key, name=key, status=RunStatus.SUCCEEDED,
                                 orchestrator=OrchestratorInfo(pipeline=f"p{index % 10}")))
    mapped = run_id_for("wide/09999")
    store.record_tasks(mapped, [TaskAttempt(task_id=f"shard[{i}]", name=f"shard[{i}]", attempt=1,
                                            status=TaskStatus.SUCCEEDED) for i in range(1_000)])
    stores.close_all()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRACK_")}
    server = start_ui({**env, "ORCHESTRACK_HOME": str(home)})
    yield server, mapped
    stop(server)


def test_at_user_width_the_list_says_it_is_cut_and_a_run_shows_every_task(wide_store: tuple[Server, str]) -> None:
    server, mapped = wide_store
    status, _, body = request(server, "/")
    assert status == 200 and body.count(b'name="run" value=') == 200
    assert b"The newest 200 matching runs; older ones exist" in body
    status, _, body = request(server, "/?pipeline=p3")
    assert status == 200 and body.count(b"<td>p3</td>") == 200 and b"<td>p4</td>" not in body
    status, _, body = request(server, f"/runs/{mapped}")
    assert status == 200 and all(f"shard[{i}]".encode() in body for i in (0, 499, 999))
    assert body.count(b"<td>shard[") == 1_000
