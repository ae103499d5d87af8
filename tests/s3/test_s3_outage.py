"""A network cut between the task and the S3 server (SeaweedFS on loopback, through a forwarder that
drops every connection): the task goes on, the artifact is recorded pointing at a copy kept in the
journal folder, and `orchestrack replay` uploads it once the network is back, exactly once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import orchestrack
from tests.servers import Forwarder, s3_client

pytestmark = pytest.mark.integration


def test_an_s3_cut_keeps_a_copy_and_replay_uploads_it_once(
        bucket: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        orchestrack_home: Path) -> None:
    forwarder = Forwarder(int(s3_endpoint.rsplit(":", 1)[1]))
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{forwarder.port}")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{forwarder.port}")
    monkeypatch.setenv("ORCHESTRACK_ARTIFACT_URI", f"s3://{bucket}/runs")
    monkeypatch.delenv("ORCHESTRACK_STRICT")  # the fail-open path: the task keeps its own outcome
    content = b"weights after the cut\n" * 100
    run = orchestrack.start_run(key="s3/cut", pipeline="s3-cut")
    forwarder.cut()
    model = tmp_path / "model.bin"
    model.write_bytes(content)
    with run.task("train"):
        recorded = orchestrack.log_artifact(model, kind="model")
    model.unlink()  # the task cleans up its own files: the copy in the journal folder is what is uploaded
    assert recorded is not None and recorded.uri.startswith("file://")
    staged = Path(recorded.uri.removeprefix("file://"))
    assert staged.is_file() and staged.is_relative_to(orchestrack_home / "spool" / "artifacts")
    assert orchestrack.waiting_writes(run.run_id)

    forwarder.restore()
    applied, problems = orchestrack.replay_spool()
    assert problems == [] and applied == 1
    assert orchestrack.replay_spool() == (0, [])  # nothing left, nothing twice
    artifact = next(a for a in orchestrack.get_run("s3/cut").artifacts if a.name == "model.bin")
    sha256 = hashlib.sha256(content).hexdigest()
    assert (artifact.sha256, artifact.size_bytes, artifact.kind) == (sha256, len(content), "model")
    assert artifact.uri == f"s3://{bucket}/runs/sha256/{sha256[:2]}/{sha256}"
    body = s3_client().get_object(Bucket=bucket, Key=f"runs/sha256/{sha256[:2]}/{sha256}")["Body"].read()
    assert body == content
    assert not staged.exists() and orchestrack.waiting_writes(run.run_id) == {}
