"""Artifacts in a local folder, addressed by sha256 (the same bytes are stored once).

A file goes to ``ROOT/sha256/ab/abcdef...``. A folder is stored file by file plus a JSON
manifest (relative path -> sha256, size); the folder's sha256 is the manifest's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from orchestrack.capture import hash_file
from orchestrack.errors import InvalidInputError, StoreError


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """The files of an artifact folder as ``(relative posix path, resolved path)``, sorted; a link
    pointing outside the folder is refused (its target would be stored as if it were inside)."""
    base = folder.resolve()
    files = []
    for child in sorted(folder.rglob("*")):
        resolved = child.resolve()
        if child.is_dir() and not child.is_symlink():
            continue
        if not resolved.is_relative_to(base):
            raise InvalidInputError(
                f"artifact folder {str(folder)!r}: {str(child.relative_to(folder))!r} links to {str(resolved)!r}, "
                "outside the folder; copy the target in or remove the link before logging the folder")
        if resolved.is_file():
            files.append((child.relative_to(folder).as_posix(), resolved))
    return files


def folder_targets(files: dict[str, dict[str, object]], destination: Path, uri: str) -> list[tuple[str, Path]]:
    """Where each file of a folder manifest goes under ``destination``; a manifest entry that would land
    outside it (``../x``, an absolute path: a manifest written by something else) is refused."""
    base = Path(os.path.abspath(destination))
    targets = []
    for relative in files:
        target = Path(os.path.abspath(base / relative))
        if not relative or PurePosixPath(relative).is_absolute() or not target.is_relative_to(base) or target == base:
            raise InvalidInputError(
                f"folder artifact {uri!r} lists the file {relative!r}, which would be written outside "
                f"{str(destination)!r}; the manifest was not written by orchestrack: nothing was fetched")
        targets.append((relative, target))
    return targets


def folder_manifest(files: dict[str, dict[str, object]]) -> bytes:
    """A folder artifact's manifest (relative path -> sha256, size); its sha256 is the folder's."""
    return json.dumps({"kind": "folder", "files": files}, sort_keys=True).encode()


def blob_name(sha256: str) -> str:
    """Where a blob lives under an artifact store's folder or S3 prefix: ``sha256/ab/<sha256>``."""
    return f"sha256/{sha256[:2]}/{sha256}"


def folder_document(folder: Path, each: Callable[[Path], tuple[str, int]] = hash_file) -> tuple[bytes, int]:
    """A folder artifact's manifest and total size; ``each`` hashes (and may store) every file."""
    files: dict[str, dict[str, object]] = {}
    total = 0
    for relative, resolved in folder_files(folder):
        sha256, size = each(resolved)
        files[relative] = {"sha256": sha256, "size": size}
        total += size
    return folder_manifest(files), total


def content_sha256(path: Path) -> tuple[str, int]:
    """``(sha256, size_bytes)`` that a stored artifact of ``path`` is recorded with, without storing it: a
    file's own hash, a folder's manifest hash (so ``orchestrack which`` finds both).

    Example::

        sha256, size = content_sha256(Path("model/"))
    """
    path = Path(path)
    if path.is_dir():
        document, total = folder_document(path)
        return hashlib.sha256(document).hexdigest(), total
    return hash_file(path)


def read_manifest(document: bytes) -> dict[str, dict[str, object]] | None:
    """The files of a folder manifest, or ``None`` when ``document`` is not one (a plain artifact)."""
    try:
        manifest = json.loads(document)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest["files"] if isinstance(manifest, dict) and manifest.get("kind") == "folder" else None


class LocalArtifactStore:
    """Content-addressed artifacts under ``root`` (a path or ``file://`` URI).

    Example::

        uri, sha256, size = LocalArtifactStore("/tmp/artifacts").put(Path("model.pt"), "model.pt")
    """

    def __init__(self, root: str) -> None:
        self.uri = root
        self.root = Path(root.removeprefix("file://")).expanduser().resolve()

    def _blob(self, sha256: str) -> Path:
        return self.root / blob_name(sha256)

    def _store_file(self, path: Path) -> tuple[str, int]:
        sha256, size = hash_file(path)
        target = self._blob(sha256)
        if target.exists():
            return sha256, size
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # Copy then rename, so a reader never sees half a file and concurrent puts of the same
            # bytes simply replace each other with identical content.
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            os.close(handle)
            shutil.copyfile(path, temporary)
            os.replace(temporary, target)
        except OSError as err:
            raise StoreError(
                f"cannot write artifact {str(path)!r} into {str(self.root)!r}: {err.strerror or err}; "
                "make the folder writable or set ORCHESTRACK_ARTIFACT_URI / ORCHESTRACK_HOME elsewhere") from err
        return sha256, size

    def put(self, path: Path, name: str) -> tuple[str, str, int]:
        """Store a file or a folder; return ``(uri, sha256, size_bytes)``."""
        path = Path(path)
        if path.is_dir():
            return self._put_folder(path)
        if not path.is_file():
            raise InvalidInputError(
                f"artifact {name!r}: {str(path)!r} is not a file or folder (log_artifact path=); "
                "write the file before logging it, or check the working directory "
                f"({os.getcwd()})")
        sha256, size = self._store_file(path)
        return self._blob(sha256).as_uri(), sha256, size

    def _put_folder(self, folder: Path) -> tuple[str, str, int]:
        document, total = folder_document(folder, self._store_file)
        with tempfile.NamedTemporaryFile(delete=False, suffix=".json") as handle:
            handle.write(document)
        try:
            sha256, _ = self._store_file(Path(handle.name))
        finally:
            os.unlink(handle.name)
        return self._blob(sha256).as_uri(), sha256, total

    def fetch(self, uri: str, destination: Path, progress: Callable[[int], None] | None = None) -> Path:
        """Copy an artifact (file, or folder by its manifest) to ``destination``."""
        source = Path(uri.removeprefix("file://"))
        if not source.is_file():
            raise StoreError(f"artifact {uri!r} is not in {str(self.root)!r}; was the artifact folder moved?")
        destination = Path(destination)
        try:
            files = read_manifest(source.read_bytes())
            if files is not None:
                for relative, target in folder_targets(files, destination, uri):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(self._blob(str(files[relative]["sha256"])), target)
                    if progress is not None:
                        progress(target.stat().st_size)
                return destination
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
        except OSError as err:
            raise StoreError(
                f"cannot copy artifact {uri!r} to {str(destination)!r}: {err.strerror or err}; "
                "free space there or choose another destination (orchestrack fetch --to)") from err
        if progress is not None:
            progress(destination.stat().st_size)
        return destination
