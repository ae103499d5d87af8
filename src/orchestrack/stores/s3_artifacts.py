"""Artifacts on S3, or any S3-compatible server, through boto3; addressed by sha256 like the local folder.

A file goes to ``s3://BUCKET/PREFIX/sha256/ab/abcdef...`` and is uploaded only when no object has
that key yet (the same bytes are stored once, whoever logs them). A folder is stored file by file
plus a JSON manifest at ``PREFIX/folders/ab/<sha256>.json``; the folder's sha256 is the manifest's.
Uploads and downloads use boto3's managed transfers (multipart above :data:`MULTIPART_BYTES`).

Credentials, region and endpoint come from boto3's own chain (environment, profile, instance role;
``AWS_ENDPOINT_URL_S3`` for an S3-compatible server), or from ``ORCHESTRACK_S3__ENDPOINT_URL``,
``ORCHESTRACK_S3__REGION`` and ``ORCHESTRACK_S3__PROFILE``. No credential is ever stored or logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrack.capture import hash_file
from orchestrack.errors import InvalidInputError, StoreError
from orchestrack.stores.local_artifacts import blob_name, folder_document, folder_targets, read_manifest

#: Files above this size are uploaded and downloaded in parts, several at once.
MULTIPART_BYTES = 64 * 1024 * 1024

#: Called with the bytes moved so far by an upload or download (the CLI draws a progress bar with it).
Progress = Callable[[int], None]


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")``, with a clear error for anything else."""
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise InvalidInputError(f"{uri!r} is not an S3 URI; write it as s3://BUCKET/PREFIX "
                                "(ORCHESTRACK_ARTIFACT_URI, or a log_dataset uri)")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def is_manifest_key(key: str) -> bool:
    """True for the key of a folder artifact's manifest (``PREFIX/folders/ab/<sha256>.json``)."""
    return "/folders/" in f"/{key}" and key.endswith(".json")


def s3_client(endpoint_url: str | None = None, region: str | None = None, profile: str | None = None,
              *, attempts: int = 5) -> Any:
    """A boto3 S3 client from boto3's own credential chain, with short connect timeouts and retries."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as err:
        raise StoreError("S3 needs boto3: pip install 'orchestrack[s3]'") from err
    session = boto3.Session(profile_name=profile, region_name=region)
    config = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": attempts, "mode": "standard"})
    return session.client("s3", endpoint_url=endpoint_url, config=config)


class S3ArtifactStore:
    """Content-addressed artifacts under an ``s3://bucket/prefix`` URI.

    Example::

        uri, sha256, size = S3ArtifactStore("s3://ml-artifacts/runs").put(Path("model.pt"), "model.pt")
    """

    def __init__(self, uri: str, *, client: Any = None, endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.bucket, prefix = split_s3_uri(self.uri)
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.client = client if client is not None else s3_client(endpoint_url, region, profile)

    def _blob_key(self, sha256: str) -> str:
        return self.prefix + blob_name(sha256)

    def _manifest_key(self, sha256: str) -> str:
        return f"{self.prefix}folders/{sha256[:2]}/{sha256}.json"

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._error("look up", key, err) from err
        return True

    def _upload(self, path: Path, key: str, progress: Progress | None) -> None:
        from boto3.s3.transfer import TransferConfig

        if self._exists(key):
            return
        config = TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=MULTIPART_BYTES)
        try:
            self.client.upload_file(str(path), self.bucket, key, Config=config, Callback=progress)
        except Exception as err:  # boto3's S3UploadFailedError, ClientError, connection errors
            raise self._error("upload", key, err) from err

    def put(self, path: Path, name: str, progress: Progress | None = None) -> tuple[str, str, int]:
        """Store a file or a folder; return ``(uri, sha256, size_bytes)``."""
        path = Path(path)
        if path.is_dir():
            return self._put_folder(path, progress)
        if not path.is_file():
            raise InvalidInputError(f"artifact {name!r}: {str(path)!r} is not a file or folder (log_artifact path=)")
        sha256, size = hash_file(path)
        key = self._blob_key(sha256)
        self._upload(path, key, progress)
        return f"s3://{self.bucket}/{key}", sha256, size

    def _put_folder(self, folder: Path, progress: Progress | None) -> tuple[str, str, int]:
        def upload(resolved: Path) -> tuple[str, int]:
            sha256, size = hash_file(resolved)
            self._upload(resolved, self._blob_key(sha256), progress)
            return sha256, size

        document, total = folder_document(folder, upload)
        sha256 = hashlib.sha256(document).hexdigest()
        key = self._manifest_key(sha256)
        if not self._exists(key):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=document)
            except Exception as err:
                raise self._error("upload", key, err) from err
        return f"s3://{self.bucket}/{key}", sha256, total

    def fetch(self, uri: str, destination: Path, progress: Progress | None = None) -> Path:
        """Download an artifact (a file, or a folder by its manifest) to ``destination``."""
        bucket, key = split_s3_uri(uri)
        destination = Path(destination)
        if is_manifest_key(key):
            try:
                document = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except Exception as err:
                raise self._error("download", key, err, bucket) from err
            files = read_manifest(document) or {}
            base = key[: key.rindex("folders/")]  # the prefix the folder was stored under
            for relative, target in folder_targets(files, destination, uri):
                sha256 = str(files[relative]["sha256"])
                self._download(bucket, base + blob_name(sha256), target, progress)
            return destination
        self._download(bucket, key, destination, progress)
        return destination

    def _download(self, bucket: str, key: str, target: Path, progress: Progress | None) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(bucket, key, str(target), Callback=progress)
        except Exception as err:
            raise self._error("download", key, err, bucket) from err

    def _error(self, action: str, key: str, err: BaseException, bucket: str | None = None) -> StoreError:
        # botocore's messages name the operation and the bucket, never the credentials.
        return StoreError(f"cannot {action} s3://{bucket or self.bucket}/{key}: {err}; check the bucket, the "
                          "endpoint (ORCHESTRACK_S3__ENDPOINT_URL or AWS_ENDPOINT_URL_S3) and the credentials "
                          "boto3 finds (environment, AWS_PROFILE, instance role)")


#: A prefix with more objects than this is recorded by its first objects only (``details.truncated``).
PREFIX_OBJECT_LIMIT = 100_000


def s3_data_facts(uri: str, client: Any = None) -> tuple[str, int, dict[str, Any]]:
    """``(version, size_bytes, details)`` of an S3 object or prefix, read from its metadata only.

    An object: its ``VersionId`` (``s3-version:...``) when the bucket is versioned, else its ETag;
    ``details`` has version_id, etag and last_modified. A prefix (no object at that key): every object
    under it, page by page, up to :data:`PREFIX_OBJECT_LIMIT`; the version is the sha256 of the sorted
    list of (key, ETag, size), so it changes when any object does.
    """
    from botocore.exceptions import ClientError

    bucket, key = split_s3_uri(uri)
    if client is None:  # a data set is metadata only: give up sooner than an upload would
        from orchestrack.settings import load_settings

        settings = load_settings().s3
        client = s3_client(settings.endpoint_url, settings.region, settings.profile, attempts=2)
    if key and not key.endswith("/"):
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        else:
            version_id = head.get("VersionId")
            etag = str(head.get("ETag", "")).strip('"')
            details = {"version_id": version_id, "etag": etag,
                       "last_modified": head["LastModified"].isoformat() if head.get("LastModified") else None}
            version = f"s3-version:{version_id}" if version_id and version_id != "null" else f"etag:{etag}"
            return version, int(head.get("ContentLength", 0)), {k: v for k, v in details.items() if v}
    prefix = f"{key.rstrip('/')}/" if key else ""
    listing, total, truncated = hashlib.sha256(), 0, False
    count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if count >= PREFIX_OBJECT_LIMIT:
                truncated = True
                break
            listing.update(f"{item['Key']}\t{str(item.get('ETag', '')).strip(chr(34))}\t{item['Size']}\n".encode())
            total += int(item["Size"])
            count += 1
        if truncated:
            break
    if count == 0:
        raise StoreError(f"{uri!r}: no object and no prefix with objects at that URI; check the bucket and key")
    details = {"objects": count, "manifest_sha256": listing.hexdigest(), **({"truncated": True} if truncated else {})}
    return f"manifest:sha256:{listing.hexdigest()}", total, details
