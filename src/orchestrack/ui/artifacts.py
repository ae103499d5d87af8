"""Which artifact bytes the UI may serve: only what lies in the configured artifact store.

The URL names a run and an artifact *name*; the bytes come from the ``uri`` the run record holds
for that name, and only when that uri is inside the configured store (``ORCHESTRACK_ARTIFACT_URI``,
default ``$ORCHESTRACK_HOME/artifacts``): a local blob must resolve, symlinks followed, inside the
store's folder; an S3 object must be in the store's bucket under its prefix. Nothing from the URL
is ever joined into a path or a key. A folder artifact is served as a zip of its files.

Example::

    source = artifact_source(settings.resolved_artifact_uri)
    blob = source.locate(artifact.uri) if source else None   # None: answer 404
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from io import BufferedIOBase
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Protocol
from urllib.parse import urlsplit
from urllib.request import url2pathname

from orchestrack.stores.local_artifacts import blob_name, read_manifest

#: A blob name: a sha256 in hex (folder manifests name their files by it).
SHA256 = re.compile(r"[0-9a-f]{64}")
#: A local file up to this size is read to see whether it is a folder manifest (as the store does).
MANIFEST_BYTES = 16 << 20
CHUNK = 1 << 20


class Source(Protocol):
    """Reads blobs of one configured artifact store."""

    def locate(self, uri: str) -> str | None:
        """The blob behind ``uri`` (a path or key) when it is inside this store, else ``None``."""

    def size(self, blob: str) -> int:
        """The blob's size in bytes."""

    def open(self, blob: str) -> BinaryIO:
        """The blob's bytes, to read in chunks."""

    def by_sha256(self, sha256: str) -> str | None:
        """The blob of a folder member, named by its sha256, when it is inside this store."""

    def manifest(self, blob: str) -> dict[str, dict[str, object]] | None:
        """The files of a folder artifact's manifest, or ``None`` for a plain file."""


@dataclass(frozen=True)
class LocalSource:
    """Blobs in a local artifact folder."""

    root: Path

    def _inside(self, path: Path) -> str | None:
        resolved = path.resolve()
        return str(resolved) if resolved.is_relative_to(self.root) and resolved.is_file() else None

    def locate(self, uri: str) -> str | None:
        """The resolved file of ``uri`` if it lies in the store's folder."""
        if uri.startswith("file://"):
            parts = urlsplit(uri)
            if parts.netloc not in ("", "localhost"):
                return None
            return self._inside(Path(url2pathname(parts.path)))
        return None if "://" in uri else self._inside(Path(uri))

    def size(self, blob: str) -> int:
        """The file's size."""
        return Path(blob).stat().st_size

    def open(self, blob: str) -> BinaryIO:
        """The file, opened for reading."""
        return Path(blob).open("rb")

    def by_sha256(self, sha256: str) -> str | None:
        """``ROOT/sha256/ab/<sha256>`` if it is a file inside the store."""
        return self._inside(self.root / blob_name(sha256)) if SHA256.fullmatch(sha256) else None

    def manifest(self, blob: str) -> dict[str, dict[str, object]] | None:
        """The folder manifest in ``blob``, if it is one."""
        return read_manifest(Path(blob).read_bytes()) if self.size(blob) <= MANIFEST_BYTES else None


@dataclass(frozen=True)
class S3Source:
    """Objects under the configured ``s3://bucket/prefix``."""

    bucket: str
    prefix: str
    client: Any

    def locate(self, uri: str) -> str | None:
        """The key of ``uri`` if it is in the bucket under the prefix (no ``..`` segment)."""
        if not uri.startswith(f"s3://{self.bucket}/"):
            return None
        key = uri[len(f"s3://{self.bucket}/"):]
        if not key.startswith(self.prefix) or any(part in ("", ".", "..") for part in key.split("/")):
            return None
        return key

    def size(self, blob: str) -> int:
        """The object's size."""
        return int(self.client.head_object(Bucket=self.bucket, Key=blob)["ContentLength"])

    def open(self, blob: str) -> BinaryIO:
        """The object's body, streamed."""
        body: BinaryIO = self.client.get_object(Bucket=self.bucket, Key=blob)["Body"]
        return body

    def by_sha256(self, sha256: str) -> str | None:
        """``PREFIX/sha256/ab/<sha256>`` (how S3ArtifactStore names a folder member)."""
        return self.prefix + blob_name(sha256) if SHA256.fullmatch(sha256) else None

    def manifest(self, blob: str) -> dict[str, dict[str, object]] | None:
        """The folder manifest at ``blob``, if the key is a manifest's (``PREFIX/folders/...json``)."""
        if not (blob.startswith(f"{self.prefix}folders/") and blob.endswith(".json")):
            return None
        with self.open(blob) as body:
            return read_manifest(body.read(MANIFEST_BYTES))


def artifact_source(artifact_uri: str) -> Source | None:
    """The reader of the configured artifact store, or ``None`` for a kind the UI does not serve."""
    scheme = artifact_uri.split("://", 1)[0].lower() if "://" in artifact_uri else ""
    if scheme in ("", "file"):
        from orchestrack.stores.local_artifacts import LocalArtifactStore

        return LocalSource(LocalArtifactStore(artifact_uri).root)
    if scheme == "s3":
        from orchestrack.stores import open_artifact_store

        store: Any = open_artifact_store(artifact_uri)
        return S3Source(store.bucket, store.prefix, store.client)
    return None


def folder_members(source: Source, files: dict[str, dict[str, object]]) -> list[tuple[str, str]] | None:
    """``(zip entry name, blob)`` of each file of a folder manifest; ``None`` if any entry is unsafe."""
    members = []
    for relative, entry in sorted(files.items()):
        path = PurePosixPath(relative)
        blob = source.by_sha256(str(entry.get("sha256", ""))) if isinstance(entry, dict) else None
        if path.is_absolute() or ".." in path.parts or not relative or blob is None:
            return None
        members.append((path.as_posix(), blob))
    return members


def chunks(source: Source, blob: str) -> Iterator[bytes]:
    """The blob's bytes, a chunk at a time."""
    with source.open(blob) as stream:
        while chunk := stream.read(CHUNK):
            yield chunk


def write_zip(source: Source, members: list[tuple[str, str]], out: BufferedIOBase) -> None:
    """Write a zip of ``members`` to ``out`` as it is read (``out`` need not be seekable)."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, blob in members:
            with archive.open(name, "w", force_zip64=True) as member:
                for chunk in chunks(source, blob):
                    member.write(chunk)
