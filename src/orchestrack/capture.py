"""Facts about the code, the environment and the data, gathered cheaply at every task start.

Everything expensive (git, package versions, NVML) is computed once per process and cached.
Nothing here raises for a missing tool: an absent git, GPU or package simply leaves the field empty.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import logging
import os
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from orchestrack.evidence import redact
from orchestrack.record import CodeInfo, DataSnapshot, Environment, Gpu

log = logging.getLogger(__name__)

#: Distributions whose versions explain an ML run; ``Settings.packages`` adds more.
KEY_PACKAGES = (
    "orchestrack", "numpy", "pandas", "polars", "pyarrow", "scikit-learn", "scipy", "torch",
    "tensorflow", "jax", "xgboost", "lightgbm", "catboost", "transformers", "datasets",
    "pydantic", "mlflow", "apache-airflow", "apache-airflow-core", "prefect", "kfp",
)

# CI systems that build without a checkout tell the commit and branch through these variables.
_CI_COMMIT_VARS = ("GITHUB_SHA", "CI_COMMIT_SHA", "GIT_COMMIT", "BUILDKITE_COMMIT",
                   "CIRCLE_SHA1", "BITBUCKET_COMMIT", "TRAVIS_COMMIT", "BUILD_SOURCEVERSION", "COMMIT_SHA")
_CI_BRANCH_VARS = ("GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME",
                   "GIT_BRANCH", "BUILDKITE_BRANCH", "CIRCLE_BRANCH", "BITBUCKET_BRANCH", "TRAVIS_BRANCH",
                   "BUILD_SOURCEBRANCHNAME", "BRANCH_NAME")
_CI_REPO_VARS = ("CI_PROJECT_URL", "BUILDKITE_REPO", "CIRCLE_REPOSITORY_URL",
                 "BITBUCKET_GIT_HTTP_ORIGIN", "BUILD_REPOSITORY_URI", "GIT_URL")


def strip_credentials(url: str) -> str:
    """``url`` without a user name or password (remote URLs often carry tokens)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def capture_code(directory: str | os.PathLike[str] | None = None) -> CodeInfo:
    """The code state.

    Git of ``directory`` when given, else of the main script's folder, else of the working
    directory (the first checkout found wins). ``ORCHESTRACK_CODE_COMMIT`` / ``_BRANCH`` /
    ``_REPOSITORY`` override what git says; CI variables fill what is still unknown.
    """
    if directory is not None:
        candidates = [str(Path(directory).resolve())]
    else:
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        candidates = [str(Path(main_file).resolve().parent)] if main_file else []
        candidates.append(str(Path.cwd().resolve()))
    found = (_git_info(candidate) for candidate in dict.fromkeys(candidates))
    info = next((i for i in found if i is not None and i.commit is not None), None)
    info = info.model_copy() if info is not None else CodeInfo()
    env = os.environ
    info.commit = env.get("ORCHESTRACK_CODE_COMMIT") or info.commit or _first(_CI_COMMIT_VARS)
    branch = env.get("ORCHESTRACK_CODE_BRANCH") or info.branch or _first(_CI_BRANCH_VARS)
    info.branch = branch.removeprefix("refs/heads/").removeprefix("origin/") if branch else None
    repository = env.get("ORCHESTRACK_CODE_REPOSITORY") or info.repository
    if repository is None and env.get("GITHUB_REPOSITORY"):
        repository = f"{env.get('GITHUB_SERVER_URL', 'https://github.com')}/{env['GITHUB_REPOSITORY']}"
    repository = repository or _first(_CI_REPO_VARS)
    info.repository = strip_credentials(repository) if repository else None
    return info


def _first(names: tuple[str, ...]) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


@functools.lru_cache(maxsize=16)
def _git_info(directory: str) -> CodeInfo | None:
    return _from_git(directory)


def _from_git(directory: str) -> CodeInfo | None:
    # One porcelain call gives commit, branch and dirtiness; untracked files are ignored on
    # purpose (scanning them is slow in data-heavy checkouts and they rarely change behaviour).
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
            cwd=directory, capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError) as err:
        log.debug("git unavailable in %s: %s", directory, err)
        return None
    if status.returncode != 0:
        return None
    info = CodeInfo(dirty=False)
    for line in status.stdout.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.split()[2]
            info.commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.split(" ", 2)[2]
            info.branch = None if head == "(detached)" else head
        elif line and not line.startswith("#"):
            info.dirty = True
    try:
        remote = subprocess.run(["git", "config", "--get", "remote.origin.url"], cwd=directory,
                                capture_output=True, text=True, timeout=5, check=False)
        if remote.returncode == 0 and remote.stdout.strip():
            info.repository = strip_credentials(remote.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def capture_environment(image: str | None = None, packages: tuple[str, ...] = ()) -> Environment:
    """Python, key package versions, host, platform, GPUs and the container image."""
    env = _static_environment(tuple(packages)).model_copy(deep=True)
    env.image = image or os.environ.get("ORCHESTRACK_IMAGE") or None
    return env


@functools.lru_cache(maxsize=4)
def _static_environment(extra_packages: tuple[str, ...]) -> Environment:
    cuda, driver, gpus = capture_gpus()
    return Environment(
        python=platform.python_version(),
        packages=package_versions(KEY_PACKAGES + extra_packages),
        cuda=cuda,
        driver=driver,
        gpus=gpus,
        hostname=socket.gethostname(),
        platform=f"{platform.system()}-{platform.release()}-{platform.machine()}",
    )


def package_versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the named distributions (absent ones are left out)."""
    found: dict[str, str] = {}
    for name in dict.fromkeys(names):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        except Exception as err:  # a broken dist-info must not stop capture
            log.debug("cannot read version of %s: %s", name, err)
    return found


def capture_gpus() -> tuple[str | None, str | None, list[Gpu]]:
    """``(cuda_version, driver_version, gpus)`` through nvidia-ml-py; nothing when it or a GPU is absent."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return None, None, []
    try:
        nvml.nvmlInit()
    except Exception as err:  # no driver, no device, container without /dev/nvidia*
        log.debug("NVML unavailable: %s", err)
        return None, None, []
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
        cuda = None
        try:
            raw = int(nvml.nvmlSystemGetCudaDriverVersion())
            cuda = f"{raw // 1000}.{(raw % 1000) // 10}"
        except Exception:  # older drivers lack the call; the rest is still worth having
            log.debug("NVML has no CUDA driver version")
        gpus = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            uuid = None
            try:
                uuid = _text(nvml.nvmlDeviceGetUUID(handle))
            except Exception:  # MIG slices and old drivers may refuse; the GPU is still recorded
                log.debug("NVML gave no UUID for GPU %d", index)
            gpus.append(Gpu(index=index, name=_text(nvml.nvmlDeviceGetName(handle)),
                            memory_total_mb=int(memory.total) // (1024 * 1024), uuid=uuid))
        return cuda, driver, gpus
    except Exception as err:
        log.debug("NVML query failed: %s", err)
        return None, None, []
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def hash_file(path: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    """``(sha256 hex, size in bytes)`` of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _s3_snapshot(name: str, uri: str, *, version: str | None, rows: int | None,
                 size_bytes: int | None) -> DataSnapshot:
    """An S3 object's or prefix's version, size and metadata, read without downloading (boto3, when
    installed); the URI alone when S3 cannot be asked, with a warning saying why."""
    try:
        from orchestrack.stores.s3_artifacts import s3_data_facts

        found_version, found_size, details = s3_data_facts(uri)
    except Exception as err:  # boto3 missing, no credentials, no such object: the run still records the URI
        log.warning("data set %r: cannot read %s from S3 (%s); recorded without size or version", name, redact(uri),
                    type(err).__name__ if "credential" in str(err).lower() else redact(str(err)))
        return DataSnapshot(name=name, uri=uri, version=version, rows=rows, size_bytes=size_bytes)
    return DataSnapshot(name=name, uri=uri, version=version or found_version, rows=rows,
                        size_bytes=found_size if size_bytes is None else size_bytes, details=details)


def snapshot_data(name: str, uri: str | os.PathLike[str], *, version: str | None = None, rows: int | None = None,
                  size_bytes: int | None = None, hash_limit_bytes: int = 256 << 20) -> DataSnapshot:
    """A data snapshot. Local paths get an absolute ``file://`` URI, size and, when no version is
    given, a content version: ``sha256:...`` up to ``hash_limit_bytes``, else a ``stat:`` fingerprint
    (size and mtime) that still changes whenever the file is rewritten. Remote URIs are kept as given."""
    text = os.fspath(uri)
    if text.startswith("s3://"):
        return _s3_snapshot(name, text, version=version, rows=rows, size_bytes=size_bytes)
    if _SCHEME.match(text) and not text.startswith("file://"):
        return DataSnapshot(name=name, uri=text, version=version, rows=rows, size_bytes=size_bytes)
    path = Path(text.removeprefix("file://")).expanduser().resolve()
    if path.is_file():
        stat = path.stat()
        size_bytes = stat.st_size if size_bytes is None else size_bytes
        if version is None:
            if stat.st_size <= hash_limit_bytes:
                version = "sha256:" + hash_file(path)[0]
            else:
                version = f"stat:{stat.st_size}-{stat.st_mtime_ns}"
    elif path.is_dir():
        total, newest, count = 0, 0, 0
        for child in path.rglob("*"):
            if child.is_file():
                child_stat = child.stat()
                total += child_stat.st_size
                newest = max(newest, child_stat.st_mtime_ns)
                count += 1
        size_bytes = total if size_bytes is None else size_bytes
        if version is None:
            version = f"stat:{count}-{total}-{newest}"
    else:
        log.warning("data set %r: local path %s does not exist (yet); recorded without size or version", name,
                    redact(str(path)))
    return DataSnapshot(name=name, uri=path.as_uri(), version=version, rows=rows, size_bytes=size_bytes)

