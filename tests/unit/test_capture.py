"""Context capture: code state from git or CI variables, environment, GPUs, data snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

import orchestrack
from orchestrack import capture


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "feature/x")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    (repo / "train.py").write_text("print('train')\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "first")
    git(repo, "remote", "add", "origin", "https://user:s3cret-token@git.example.com/ml/churn.git")
    return repo


def test_git_commit_branch_dirty_and_credential_free_remote(repo: Path) -> None:
    info = capture.capture_code(repo)
    assert info.commit == git(repo, "rev-parse", "HEAD") and info.branch == "feature/x" and info.dirty is False
    assert info.repository == "https://git.example.com/ml/churn.git"
    (repo / "train.py").write_text("print('changed')\n")
    capture._git_info.cache_clear()
    assert capture.capture_code(repo).dirty is True


def test_explicit_code_variables_override_git(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_CODE_COMMIT", "b" * 40)
    monkeypatch.setenv("GITHUB_SHA", "c" * 40)  # a CI variable never beats git, an explicit one does
    assert capture.capture_code(repo).commit == "b" * 40
    monkeypatch.delenv("ORCHESTRACK_CODE_COMMIT")
    assert capture.capture_code(repo).commit == git(repo, "rev-parse", "HEAD")


def test_ci_variables_when_there_is_no_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    monkeypatch.setenv("GITHUB_REF_NAME", "main")
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/churn")
    info = capture.capture_code(tmp_path)
    assert (info.commit, info.branch, info.repository) == ("a" * 40, "main", "https://github.com/acme/churn")
    assert info.dirty is None


def test_run_records_commit_of_the_main_script_checkout(repo: Path, tmp_path: Path) -> None:
    script = repo / "pipeline.py"
    script.write_text(textwrap.dedent("""
        import orchestrack
        print(orchestrack.start_run(key="from-script").finish().code.commit)
    """))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORCHESTRACK_CODE_DIR"}
    out = subprocess.run([sys.executable, str(script)], cwd=elsewhere, env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == git(repo, "rev-parse", "HEAD")


def test_environment_has_python_host_packages_and_image(monkeypatch: pytest.MonkeyPatch) -> None:
    env = capture.capture_environment("repo/train:1")
    assert env.python == sys.version.split()[0] and env.hostname and env.platform
    assert env.packages["pydantic"] and env.image == "repo/train:1"
    monkeypatch.setenv("ORCHESTRACK_IMAGE", "repo/from-env:2")
    assert capture.capture_environment().image == "repo/from-env:2"
    assert "numpy" not in capture.package_versions(("no-such-distribution-xyz",))


def test_extra_packages_setting_is_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRACK_PACKAGES", '["pytest"]')
    record = orchestrack.start_run(key="pkgs").finish()
    assert record is not None and record.environment.packages["pytest"] == __import__("pytest").__version__


class FakeNvml(types.ModuleType):
    """Stands in for nvidia-ml-py on machines without a GPU."""

    def __init__(self) -> None:
        super().__init__("pynvml")
        self.shutdown = False

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: self.shutdown = True
    def nvmlSystemGetDriverVersion(self) -> bytes: return b"550.54.15"
    def nvmlSystemGetCudaDriverVersion(self) -> int: return 12040
    def nvmlDeviceGetCount(self) -> int: return 2
    def nvmlDeviceGetHandleByIndex(self, index: int) -> int: return index
    def nvmlDeviceGetName(self, handle: int) -> str: return "NVIDIA H100 80GB HBM3"
    def nvmlDeviceGetUUID(self, handle: int) -> str: return f"GPU-{handle}"
    def nvmlDeviceGetMemoryInfo(self, handle: int) -> types.SimpleNamespace:
        return types.SimpleNamespace(total=80 * 1024**3)


def test_gpus_through_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    cuda, driver, gpus = capture.capture_gpus()
    assert (cuda, driver) == ("12.4", "550.54.15") and fake.shutdown
    assert [(g.index, g.name, g.memory_total_mb, g.uuid) for g in gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81920, "GPU-0"), (1, "NVIDIA H100 80GB HBM3", 81920, "GPU-1")]


def test_no_gpu_means_nothing_and_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken(FakeNvml):
        def nvmlInit(self) -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", Broken())
    assert capture.capture_gpus() == (None, None, [])
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed at all
    assert capture.capture_gpus() == (None, None, [])


def test_data_snapshots(tmp_path: Path) -> None:
    small = tmp_path / "small.csv"
    small.write_text("a,b\n1,2\n")
    snapshot = capture.snapshot_data("small", small, rows=1)
    assert snapshot.uri == small.as_uri() and snapshot.size_bytes == 8 and snapshot.version.startswith("sha256:")
    big = capture.snapshot_data("big", small, hash_limit_bytes=4)
    assert big.version.startswith("stat:8-")
    folder = capture.snapshot_data("folder", tmp_path)
    assert folder.version.startswith("stat:1-8-") and folder.size_bytes == 8
    remote = capture.snapshot_data("remote", "s3://bucket/train/", version="v7", rows=10)
    assert (remote.uri, remote.version, remote.size_bytes) == ("s3://bucket/train/", "v7", None)
    missing = capture.snapshot_data("missing", tmp_path / "nope.csv")
    assert missing.version is None and missing.uri.endswith("nope.csv")
