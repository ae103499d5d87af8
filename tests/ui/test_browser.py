"""The pages as a person sees them: headless Chromium on `orchestrack ui` and on an offline report.

Each test saves a screenshot under test-artifacts/ui/ to look at when a page changes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.ui.conftest import LOSS, SCRIPT_PARAM, Runs, Server, click_to_navigate, screenshot

By = pytest.importorskip("selenium.webdriver.common.by").By
DIFFERS_BACKGROUND = "rgba(255, 244, 194, 1)"  # --differs in ui.css


def visible_text(driver: Any, selector: str) -> list[str]:
    """The text of every displayed element matching ``selector``."""
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, selector) if e.is_displayed()]


def test_runs_list_filters_with_its_form(browser: Any, ui_server: Server, runs: Runs) -> None:
    browser.get(ui_server.base + "/")
    names = visible_text(browser, "table.runs tbody td:nth-child(3)")
    assert {"ui/good", "ui/bad", "ui/evil"} <= set(names)
    screenshot(browser, "runs")
    browser.find_element(By.CSS_SELECTOR, "select[name=status] option[value=failed]").click()
    click_to_navigate(browser, browser.find_element(By.CSS_SELECTOR, "form.filters button"))
    assert "status=failed" in browser.current_url
    assert visible_text(browser, "table.runs tbody td:nth-child(3)") == ["ui/bad"]


def test_a_failed_run_shows_its_failure_sentence(browser: Any, ui_server: Server, runs: Runs) -> None:
    assert runs.bad.failure is not None
    browser.get(f"{ui_server.base}/runs/{runs.bad.run_id}")
    assert visible_text(browser, ".failure .sentence") == [runs.bad.failure.summary]
    assert runs.bad.failure.summary in visible_text(browser, "table.tasks .sentence")
    assert "data-error" in browser.find_element(By.CSS_SELECTOR, ".failure").text
    screenshot(browser, "run-failed")


def test_a_run_page_draws_its_series_and_gate(browser: Any, ui_server: Server, runs: Runs) -> None:
    browser.get(f"{ui_server.base}/runs/{runs.good.run_id}")
    chart = browser.find_element(By.CSS_SELECTOR, 'svg.chart[data-metric="loss"]')
    circles = chart.find_elements(By.CSS_SELECTOR, "circle")
    assert len(circles) == len(LOSS)
    assert all(c.is_displayed() and c.size["width"] > 0 for c in circles)
    assert len({c.location["x"] for c in circles}) == len(LOSS)  # spread along the steps
    sentences = visible_text(browser, "table.gate .sentence")
    assert sentences == [check.sentence for check in runs.good.gate.checks]  # type: ignore[union-attr]
    assert "0.88" in browser.find_element(By.CSS_SELECTOR, "table.gate").text
    params = browser.find_element(By.CSS_SELECTOR, "table.params").text
    assert SCRIPT_PARAM in params  # shown as text, not run
    assert browser.execute_script("return document.querySelectorAll('main script').length") == 0
    assert "country=DE" in browser.page_source
    screenshot(browser, "run-good")
    link = browser.find_element(By.LINK_TEXT, "model.pt").get_attribute("href")
    with urllib.request.urlopen(link, timeout=30) as response:
        assert response.read() == b"weights-" * 64


def test_compare_highlights_the_differing_rows(browser: Any, ui_server: Server, runs: Runs) -> None:
    browser.get(f"{ui_server.base}/compare?run={runs.good.run_id}&run={runs.bad.run_id}")
    rows = {tuple(cell.text for cell in row.find_elements(By.CSS_SELECTOR, "td")[1:3]): row
            for row in browser.find_elements(By.CSS_SELECTOR, "table.compare tbody tr")}
    differing, same = rows[("params", "lr")], rows[("params", "epochs")]
    assert "differs" in differing.get_attribute("class")
    assert differing.find_element(By.CSS_SELECTOR, "td").value_of_css_property("background-color") == DIFFERS_BACKGROUND
    assert same.find_element(By.CSS_SELECTOR, "td").value_of_css_property("background-color") != DIFFERS_BACKGROUND
    screenshot(browser, "compare")
    browser.find_element(By.ID, "only-differences").click()  # ui.js, allowed by the page's policy
    assert not same.is_displayed() and differing.is_displayed()


def test_failures_groups_runs_by_reason(browser: Any, ui_server: Server, runs: Runs) -> None:
    assert runs.bad.failure is not None
    browser.get(ui_server.base + "/failures")
    section = browser.find_element(By.ID, "reason-data-error")
    assert section.find_element(By.CSS_SELECTOR, "h2").text == "data-error (1)"
    assert runs.bad.failure.summary in visible_text(browser, "table.failures .sentence")
    screenshot(browser, "failures")


def test_the_report_opens_offline(browser: Any, runs: Runs, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    subprocess.run([sys.executable, "-m", "orchestrack", "report", "ui/good", "ui/bad", "-o", str(out)],
                   env=runs.env, check=True, capture_output=True, timeout=60)
    html = out.read_text(encoding="utf-8")
    assert not re.search(r"https?://", html), "the report must not reference any other host"
    assert not re.search(r"""(src|href)=["'](?!#)""", html), "only in-file anchors may be linked"
    browser.get(out.as_uri())
    assert len(browser.find_elements(By.CSS_SELECTOR, 'svg.chart[data-metric="loss"] circle')) == len(LOSS)
    differing = browser.find_element(By.CSS_SELECTOR, "table.compare tr.differs td")
    assert differing.value_of_css_property("background-color") == DIFFERS_BACKGROUND
    assert runs.bad.failure is not None and runs.bad.failure.summary in visible_text(browser, ".failure .sentence")
    screenshot(browser, "report")
