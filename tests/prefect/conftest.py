"""Prefect 3 for real: one `prefect server start` on loopback for the whole session, with a
private PREFECT_HOME, and PREFECT_API_URL pointing at it (no ephemeral servers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.servers import SessionHome

_server: subprocess.Popen[bytes] | None = None
_home: SessionHome | None = None  # the server's PREFECT_HOME: its database, results and log


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pytest_configure(config: pytest.Config) -> None:
    global _server, _home
    _home = SessionHome("orchestrack-prefect-")
    home = _home.path
    port = _free_port()
    os.environ.update({"PREFECT_HOME": str(home), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
                       "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                       "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
                       # Cached task results stay in this session (Prefect 3.4-3.6 keep them under
                       # ~/.prefect/storage whatever PREFECT_HOME says).
                       "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / "storage"),
                       "PREFECT_LOCAL_STORAGE_PATH": str(home / "storage")})
    log = open(home / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    # The server may come from another environment (ORCHESTRACK_TEST_PREFECT_SERVER, the path of a
    # `prefect` executable), as in production, where flows and workers do not run the server: the
    # lowest-dependencies session needs it, as Prefect's server does not run at its declared floors.
    prefect = Path(os.environ.get("ORCHESTRACK_TEST_PREFECT_SERVER") or Path(sys.executable).parent / "prefect")
    _server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                               stdout=log, stderr=log, start_new_session=True, env=dict(os.environ))
    deadline = time.time() + 300  # a cold start migrates a new database: seconds to minutes on 2 cores
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"prefect server did not start: {(home / 'server.log').read_text()[-3000:]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _home is not None:
        _home.passed = exitstatus == 0


def pytest_unconfigure(config: pytest.Config) -> None:
    if _server is not None:
        os.killpg(_server.pid, signal.SIGTERM)
        try:
            _server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(_server.pid, signal.SIGKILL)
    if _home is not None:
        _home.finish()
