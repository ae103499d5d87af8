"""Real runs in a temporary store, `orchestrack ui` as a real subprocess, and headless Chromium.

The runs are built once per module with the public API (a failed task with its failure sentence, a
metric series, slice metrics, artifacts, a gate decision); the server reads them from the same
ORCHESTRACK_HOME the way a person's `orchestrack ui` would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack import stores
from orchestrack.record import Artifact, GateCheck, GateDecision, GateOutcome

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
#: Where screenshots go (ignored by git); a person looks at them when a page changes.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
LOSS = [0.9, 0.61, 0.42, 0.35, 0.31]
SCRIPT_PARAM = "<script>alert('x')</script>"
#: The flags that work on a closed network (no Google lookups, no background connections).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,900")


@dataclass(frozen=True)
class Runs:
    """The store the UI reads and the runs in it."""

    home: Path
    env: dict[str, str]
    good: orchestrack.RunRecord
    bad: orchestrack.RunRecord
    evil_run: str  # a run whose artifact records point outside the artifact store


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRACK_")}
    return {**env, "ORCHESTRACK_HOME": str(home), "ORCHESTRACK_STRICT": "1"}


def _gate(baseline: str) -> GateDecision:
    return GateDecision(outcome=GateOutcome.FAILED, summary="Gate failed: auc[country=DE] fell below the baseline.",
                        baseline_run=baseline, spec="gate.yaml", checks=[
        GateCheck(kind="min", subject="auc", outcome=GateOutcome.PASSED, value=0.91, bound=0.8,
                  sentence="auc 0.91 is at least the minimum 0.8."),
        GateCheck(kind="baseline", subject="auc[country=DE]", outcome=GateOutcome.FAILED, value=0.88, bound=0.9,
                  reference=baseline, sentence="auc[country=DE] 0.88 is below the baseline's 0.9 minus 0.02.")])


def build_runs(root: Path) -> Runs:
    """A good run (series, slices, artifacts, gate), a failed one, and one with artifacts outside the store."""
    home, work = root / "home", root / "work"
    work.mkdir(parents=True)
    (work / "model.pt").write_bytes(b"weights-" * 64)
    (work / "tokenizer" / "vocab").mkdir(parents=True)
    (work / "tokenizer" / "vocab" / "words.txt").write_text("a\nb\n")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("ORCHESTRACK_")]:
            patch.delenv(name)
        patch.setenv("ORCHESTRACK_HOME", str(home))
        patch.setenv("ORCHESTRACK_STRICT", "1")
        patch.setenv("ORCHESTRACK_CODE_DIR", str(work))
        patch.setenv("GIT_CEILING_DIRECTORIES", str(root))
        bad = orchestrack.start_run(key="ui/bad", owner="ml", purpose="tuning", pipeline="demo",
                                    params={"epochs": 3, "lr": 0.2, "note": SCRIPT_PARAM})
        with pytest.raises(FileNotFoundError), bad.task("load"):
            raise FileNotFoundError("data/train.parquet")
        good = orchestrack.start_run(key="ui/good", owner="ml", purpose="baseline", pipeline="demo",
                                     params={"epochs": 3, "lr": 0.1, "note": SCRIPT_PARAM})
        with good.task("train"):
            for step, loss in enumerate(LOSS):
                good.log_metrics({"loss": loss}, step=step)
            good.log_metrics({"auc": 0.91})
            good.log_metrics({"auc": 0.88}, slice="country=DE")
            good.log_metrics({"auc": 0.93}, slice="country=FR")
            good.log_artifact(work / "model.pt")
            good.log_artifact(work / "tokenizer")
        good.store.update_run(good.run_id, {"gate": _gate(bad.run_id).model_dump(mode="json")})
        evil = orchestrack.start_run(key="ui/evil", pipeline="demo")
        artifacts = home / "artifacts"
        link = artifacts / "sha256" / "ee" / ("e" * 64)  # inside the store, pointing out of it
        link.parent.mkdir(parents=True)
        link.symlink_to("/etc/passwd")
        for name, uri in (("passwd", "file:///etc/passwd"), ("linked", link.as_uri()),
                          ("elsewhere", "s3://other-bucket/sha256/ab/" + "a" * 64)):
            evil.store.log_artifact(evil.run_id, Artifact(name=name, uri=uri, sha256="e" * 64, size_bytes=1))
        records = good.finish(), bad.finish(), evil.finish()
        stores.close_all()
    assert records[0] is not None and records[1] is not None
    return Runs(home=home, env=_clean_env(home), good=records[0], bad=records[1], evil_run=evil.run_id)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The module's runs, in their own ORCHESTRACK_HOME."""
    return build_runs(tmp_path_factory.mktemp("ui-runs"))


@dataclass(frozen=True)
class Server:
    """A running `orchestrack ui`: where it answers and the line it printed."""

    base: str
    printed: str
    process: subprocess.Popen[str]


def start_ui(env: dict[str, str], *args: str) -> Server:
    """Start `orchestrack ui --port 0 ARGS` and wait for the address it prints."""
    process = subprocess.Popen([sys.executable, "-m", "orchestrack", "ui", "--port", "0", *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    printed = process.stdout.readline().strip()
    if not printed.startswith("orchestrack ui: http://"):
        process.kill()
        raise AssertionError(f"orchestrack ui did not start: {printed!r}")
    port = printed.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
    return Server(base=f"http://127.0.0.1:{port}", printed=printed, process=process)


def stop(server: Server) -> None:
    """Stop the server this test started (by its own process handle)."""
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


@pytest.fixture(scope="module")
def ui_server(runs: Runs) -> Iterator[Server]:
    """`orchestrack ui` on a free loopback port, no token."""
    server = start_ui(runs.env)
    yield server
    stop(server)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Debian Chromium through its own chromedriver (selenium-manager never downloads)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        missing = ("needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver "
                   "(`scripts/test -s ui` installs them as root)")
        if os.environ.get("CI"):
            pytest.fail(missing)  # in CI a browser test that did not run is a failure, not a skip
        pytest.skip(missing)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def screenshot(driver: Any, name: str) -> Path:
    """Save the whole page as test-artifacts/ui/NAME.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height) + 120, 600), 6000))
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    return path


def click_to_navigate(driver: Any, element: Any, timeout: float = 20) -> None:
    """Click ``element`` and wait until the page it leads to has replaced the current one.

    A click that submits a form or follows a link returns before the new page is loaded; reading
    the URL or the page right after it can still see the old one.
    """
    from selenium.webdriver.support.ui import WebDriverWait

    old_page = driver.find_element("tag name", "html")
    element.click()

    def replaced(d: Any) -> bool:
        try:
            old_page.is_enabled()  # raises StaleElementReference once the old page is gone
        except Exception:
            return d.execute_script("return document.readyState") == "complete"
        return False

    WebDriverWait(driver, timeout).until(replaced)
