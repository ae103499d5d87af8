"""The whole story a team lives, seen in a browser: a tracked pipeline runs its gate step; the good
run passes and is promoted (listed with its run), the regressed run fails with metric-regression,
the too-good run is held and refused promotion; the run and model pages show all of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import orchestrack
from orchestrack import stores
from orchestrack.gate import GateFailedError
from tests.ui.conftest import Server, click_to_navigate, screenshot, start_ui, stop

By = pytest.importorskip("selenium.webdriver.common.by").By

GATE = {"metrics": {"auc": {"min": 0.75}}, "baseline": {"run": "latest-baseline", "max_regression": {"auc": 0.03}},
        "require": ["data"], "suspicious": {"max_sigma": 4}}


@dataclass(frozen=True)
class Story:
    env: dict[str, str]
    good: str
    regressed: str
    leaky: str


def pipeline(key: str, auc: float, work: Path, *, purpose: str = "tuning", minutes_ago: float = 0) -> str:
    """One execution of a small tracked pipeline: train (a model file), evaluate (auc), gate."""
    run = orchestrack.start_run(key=key, pipeline="churn", purpose=purpose, owner="ml",
                                started_at=orchestrack.record.utcnow() - timedelta(minutes=minutes_ago))
    with run.task("train"):
        orchestrack.log_dataset("events", work / "events.csv")
        model = work / f"{key.replace('/', '-')}.json"
        model.write_text(f'{{"auc": {auc}}}')
        orchestrack.log_artifact(model, name="model.json", kind="model")
    with run.task("evaluate"):
        orchestrack.log_metrics({"auc": auc})
    try:
        with run.task("gate"):
            orchestrack.gate_step(GATE)
    except GateFailedError:
        pass  # the pipeline fails here, as the orchestrator's would
    run.finish()
    return key


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    root = tmp_path_factory.mktemp("promotion")
    work = root / "work"
    work.mkdir()
    (work / "events.csv").write_text("id,churned\n1,0\n2,1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRACK_")}
    env.update(ORCHESTRACK_HOME=str(root / "home"), ORCHESTRACK_STRICT="1")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("ORCHESTRACK_")]:
            patch.delenv(name)
        patch.setenv("ORCHESTRACK_HOME", env["ORCHESTRACK_HOME"])
        for index, auc in enumerate((0.80, 0.79, 0.81, 0.80, 0.795, 0.805)):
            pipeline(f"churn/history-{index}", auc, work, purpose="baseline" if index == 0 else "tuning",
                     minutes_ago=60 - index)
        story = Story(env=env, good=pipeline("churn/good", 0.81, work, minutes_ago=3),
                      regressed=pipeline("churn/regressed", 0.70, work, minutes_ago=2),
                      leaky=pipeline("churn/leaky", 0.97, work, minutes_ago=1))
        stores.close_all()
    return story


def cli(story: Story, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrack", *args], env=story.env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def promoted(story: Story) -> Story:
    """The good run promoted as the champion; the held one refused."""
    done = cli(story, "promote", story.good, "--model", "churn", "--alias", "champion")
    assert done.returncode == 0, done.stderr
    refused = cli(story, "promote", story.leaky, "--model", "churn")
    assert refused.returncode == 1 and "held" in refused.stderr, refused.stderr
    failed = cli(story, "promote", story.regressed, "--model", "churn")
    assert failed.returncode == 1 and "failed" in failed.stderr, failed.stderr
    return story


@pytest.fixture(scope="module")
def story_server(promoted: Story) -> Iterator[Server]:
    server = start_ui(promoted.env)
    yield server
    stop(server)


def open_listed(browser: Any, name: str) -> None:
    """Click the run named ``name`` in the runs table, as a person would."""
    row = f"//table[contains(@class,'runs')]//tr[td[3][normalize-space()='{name}']]"
    click_to_navigate(browser, browser.find_element(By.XPATH, f"{row}//a"))


def test_the_runs_end_as_the_gate_decided(promoted: Story) -> None:
    listed = cli(promoted, "runs", "--pipeline", "churn", "--limit", "3", "--json")
    assert listed.returncode == 0, listed.stderr

    by_key = {r["key"]: r for r in json.loads(listed.stdout)}
    assert by_key[promoted.good]["status"] == "succeeded" and by_key[promoted.good]["gate"]["outcome"] == "passed"
    assert by_key[promoted.regressed]["status"] == "failed"
    assert by_key[promoted.regressed]["failure"]["reason"] == "metric-regression"
    assert by_key[promoted.leaky]["status"] == "succeeded" and by_key[promoted.leaky]["gate"]["outcome"] == "held"
    models = cli(promoted, "models", "churn", "--json")
    versions = json.loads(models.stdout)
    assert [(v["version"], v["run_key"], v["aliases"]) for v in versions] == [(1, promoted.good, ["champion"])]


def test_the_run_pages_show_gate_promotion_regression_and_hold(browser: Any, story_server: Server,
                                                                promoted: Story) -> None:
    base = story_server.base
    good = orchestrack.get_run(promoted.good, tracking_uri=f"sqlite:///{promoted.env['ORCHESTRACK_HOME']}"
                                                             "/orchestrack.db")
    browser.get(f"{base}/runs/{good.run_id}")
    versions = browser.find_element(By.CSS_SELECTOR, "table.versions").text
    assert "churn" in versions and "champion" in versions and "passed" in versions
    assert "Quality gate passed" in browser.find_element(By.CSS_SELECTOR, "main").text
    screenshot(browser, "promotion-good")

    click_to_navigate(browser, browser.find_element(By.LINK_TEXT, "Models"))
    assert "churn" in browser.find_element(By.CSS_SELECTOR, "table.models").text
    click_to_navigate(browser, browser.find_element(By.LINK_TEXT, "churn"))
    model_rows = browser.find_elements(By.CSS_SELECTOR, "table.versions tbody tr")
    assert len(model_rows) == 1 and "churn/good" in model_rows[0].text and "champion" in model_rows[0].text
    screenshot(browser, "promotion-model")

    browser.get(f"{base}/?pipeline=churn&reason=metric-regression")
    open_listed(browser, promoted.regressed)
    failure = browser.find_element(By.CSS_SELECTOR, ".failure").text
    assert "metric-regression" in failure and "auc = 0.7 is below its minimum 0.75" in failure
    screenshot(browser, "promotion-regressed")

    browser.get(f"{base}/?pipeline=churn")
    open_listed(browser, promoted.leaky)
    gate = browser.find_element(By.CSS_SELECTOR, "main").text
    assert "Quality gate held the run for review: auc = 0.97 is" in gate and "earlier runs of churn" in gate
    held = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "table.gate tbody tr") if "held" in row.text]
    assert held and "sigma" in held[0]
    assert not browser.find_elements(By.CSS_SELECTOR, "table.versions")  # never promoted
    screenshot(browser, "promotion-held")
