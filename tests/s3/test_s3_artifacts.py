"""Artifacts on a real S3 server (SeaweedFS on loopback), written with boto3's managed transfers."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

import orchestrack
from orchestrack.errors import StoreError
from orchestrack.stores.s3_artifacts import MULTIPART_BYTES, S3ArtifactStore
from tests.servers import SECRET_KEY, s3_client

pytestmark = pytest.mark.integration


def versions_of(bucket: str, key: str) -> list[dict[str, object]]:
    listed = s3_client().list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in listed.get("Versions", []) if v["Key"] == key]


def test_a_file_is_stored_once_by_its_sha256(bucket: str, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights" * 1000)
    store = S3ArtifactStore(f"s3://{bucket}/team-a/")
    uri, sha256, size = store.put(model, "model.pt")
    key = f"team-a/sha256/{sha256[:2]}/{sha256}"
    assert (uri, size) == (f"s3://{bucket}/{key}", 7000)
    again = tmp_path / "copy.pt"
    again.write_bytes(model.read_bytes())
    assert store.put(again, "copy.pt") == (uri, sha256, size)
    assert len(versions_of(bucket, key)) == 1  # the same bytes were not uploaded twice (versioned bucket)
    fetched = store.fetch(uri, tmp_path / "out" / "model.pt")
    assert fetched.read_bytes() == model.read_bytes()


def test_a_big_model_file_goes_up_in_parts_and_comes_back_whole(bucket: str, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.write(os.urandom(MULTIPART_BYTES + 3 * 1024 * 1024))
    moved: list[int] = []
    store = S3ArtifactStore(f"s3://{bucket}")
    uri, sha256, size = store.put(big, "big.bin", progress=moved.append)
    assert size == big.stat().st_size and sum(moved) == size  # the progress callback saw every byte
    head = s3_client().head_object(Bucket=bucket, Key=uri.split("/", 3)[3])
    assert head["ContentLength"] == size and str(head["ETag"]).strip('"').endswith("-2")  # a multipart upload
    back = store.fetch(uri, tmp_path / "back.bin")
    from orchestrack.capture import hash_file

    assert hash_file(back)[0] == sha256


def test_a_folder_round_trips_through_its_manifest(bucket: str, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    (folder / "weights").mkdir(parents=True)
    (folder / "config.json").write_text('{"layers": 2}')
    (folder / "weights" / "a.bin").write_bytes(b"a" * 10)
    store = S3ArtifactStore(f"s3://{bucket}/p")
    uri, _, size = store.put(folder, "model")
    assert "/p/folders/" in uri and size == 23
    out = store.fetch(uri, tmp_path / "restored")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "config.json", "weights/a.bin"]
    assert (out / "weights" / "a.bin").read_bytes() == b"a" * 10


def test_a_run_logs_artifacts_to_s3_with_two_settings(bucket: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_ARTIFACT_URI", f"s3://{bucket}/runs")
    report = tmp_path / "report.html"
    report.write_text("<p>auc 0.91</p>")
    with orchestrack.start_run(key="s3-example", purpose="baseline") as run:
        run.log_artifact(report, kind="report")
    artifact = orchestrack.get_run("s3-example").artifacts[0]
    assert artifact.uri.startswith(f"s3://{bucket}/runs/sha256/") and artifact.size_bytes == report.stat().st_size
    body = s3_client().get_object(Bucket=bucket, Key=artifact.uri.split("/", 3)[3])["Body"].read()
    assert body == report.read_bytes()


def test_a_refused_upload_names_the_bucket_and_never_the_secret(bucket: str, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY + "-wrong")
    data = tmp_path / "x.txt"
    data.write_text("x")
    with caplog.at_level(logging.DEBUG), pytest.raises(StoreError) as raised:
        S3ArtifactStore(f"s3://{bucket}/p").put(data, "x.txt")
    message = str(raised.value)
    assert bucket in message and "credentials" in message
    assert SECRET_KEY not in message and SECRET_KEY not in caplog.text


def test_an_s3_data_set_is_versioned_from_its_metadata_without_downloading(bucket: str) -> None:
    client = s3_client()
    first = client.put_object(Bucket=bucket, Key="train/part-0.parquet", Body=b"p0" * 100)
    client.put_object(Bucket=bucket, Key="train/part-1.parquet", Body=b"p1" * 50)
    with orchestrack.start_run(key="s3-data") as run:
        one = run.log_dataset("part0", f"s3://{bucket}/train/part-0.parquet")
        whole = run.log_dataset("train", f"s3://{bucket}/train/")
    assert one.version == f"s3-version:{first['VersionId']}" and one.size_bytes == 200
    assert one.details["etag"] == first["ETag"].strip('"') and one.details["last_modified"]
    assert whole.size_bytes == 300 and whole.details["objects"] == 2
    assert whole.version == f"manifest:sha256:{whole.details['manifest_sha256']}"
    client.put_object(Bucket=bucket, Key="train/part-1.parquet", Body=b"changed")  # a new object version
    with orchestrack.start_run(key="s3-data-2") as run:
        assert run.log_dataset("train", f"s3://{bucket}/train").version != whole.version
        assert run.log_dataset("part0", f"s3://{bucket}/train/part-0.parquet").version == one.version
    stored = orchestrack.get_run("s3-data").data
    assert {d.name: d.details.get("objects") for d in stored} == {"part0": None, "train": 2}


def test_a_data_set_s3_cannot_answer_for_is_kept_by_its_uri(s3_env: dict[str, str],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    with orchestrack.start_run(key="s3-missing") as run:
        snapshot = run.log_dataset("gone", "s3://no-such-bucket-otk/x.csv")
    assert (snapshot.uri, snapshot.version, snapshot.size_bytes) == ("s3://no-such-bucket-otk/x.csv", None, None)
    assert "cannot read s3://no-such-bucket-otk/x.csv" in caplog.text and SECRET_KEY not in caplog.text


def test_the_cli_fetches_an_artifact_from_s3(bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrack.cli import main
    from tests.cli_runner import CliRunner

    monkeypatch.setenv("ORCHESTRACK_ARTIFACT_URI", f"s3://{bucket}/runs")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(os.urandom(1000))
    with orchestrack.start_run(key="s3-fetch") as run:
        run.log_artifact(folder)
    result = CliRunner().invoke(main, ["fetch", "s3-fetch", "model", "--to", str(tmp_path / "restored")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "restored" / "weights.bin").read_bytes() == (folder / "weights.bin").read_bytes()
