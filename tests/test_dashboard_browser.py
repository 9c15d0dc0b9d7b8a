"""The dashboard in a real browser: ``semqa dashboard`` on loopback, headless Chromium via Selenium.

Needs Debian's ``chromium`` and ``chromium-driver`` (installed by ``scripts/setup.sh --test``).
The screenshot goes to ``$SEMQA_ARTIFACTS_DIR`` when set, else to the test's tmp folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from service.launch import start_group, stop_tree

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
#: The first comparison of 18 small images on 2 shared cores; generous, it only bounds a hang.
ANALYSIS_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not answer on {url} within {timeout_s} s")


@pytest.fixture()
def app_url(lots_root: Path, tmp_path: Path) -> Iterator[str]:
    """``semqa dashboard`` (``streamlit run dashboard/app.py``) on a free loopback port, stopped at the end."""
    port = _free_port()
    env = {
        **os.environ,
        "SEMQA_DASHBOARD_N_BOOTSTRAP": "200",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    env.pop("SEMQA_DASHBOARD_SERVICE_URL", None)
    # Started the way QA staff start it: `semqa dashboard`, which becomes `streamlit run`.
    cmd = [
        sys.executable, "-m", "semqa.cli", "dashboard",
        "--address", "127.0.0.1", "--port", str(port), "--lots-root", str(lots_root),
    ]
    proc = start_group(cmd, log_path=tmp_path / "streamlit.log", env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        stop_tree(proc)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromedriver are needed: run scripts/setup.sh --test (Debian chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1400,1000", "--hide-scrollbars",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _artifacts_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SEMQA_ARTIFACTS_DIR") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


#: Longest wait for one step of the page (a rerun of the script after a click, a list to open).
STEP_TIMEOUT_S = 60
#: What a click can meet while Streamlit re-renders the page after the previous one: the
#: element replaced (stale), covered by the re-rendering overlay, or not yet interactable.
#: Each step below retries until its condition holds, so none depends on how fast the page is.
TRANSIENT = (StaleElementReferenceException, ElementClickInterceptedException, ElementNotInteractableException)


def _until(driver: WebDriver, condition, timeout: float = STEP_TIMEOUT_S, message: str = ""):
    """Poll ``condition(driver)`` until it returns a true value (bounded), ignoring transient DOM errors."""
    return WebDriverWait(driver, timeout, poll_frequency=0.25, ignored_exceptions=TRANSIENT).until(condition, message)


def _click(driver: WebDriver, element) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def _click_until(driver: WebDriver, xpath: str, done, message: str, settle_s: float = 20.0) -> None:
    """Click the element at ``xpath`` until ``done(driver)`` holds.

    After each click the page gets ``settle_s`` seconds to show ``done`` (a rerun on a busy
    machine takes a while); only then is a click taken as lost (the element was re-rendered
    under it) and made again. Bounded by :data:`STEP_TIMEOUT_S` plus one ``settle_s``.
    """

    def attempt(d: WebDriver) -> bool:
        if done(d):
            return True
        found = [e for e in d.find_elements(By.XPATH, xpath) if e.is_displayed() and e.is_enabled()]
        if not found:
            return False
        _click(d, found[0])
        try:
            return bool(WebDriverWait(d, settle_s, poll_frequency=0.25, ignored_exceptions=TRANSIENT).until(done))
        except TimeoutException:
            return False

    _until(driver, attempt, message=message)


def _selectboxes(driver: WebDriver, label: str) -> list:
    return driver.find_elements(By.CSS_SELECTOR, f'[data-testid="stSelectbox"] input[aria-label="{label}"]')


def _choose(driver: WebDriver, index: int, label: str, option: str) -> None:
    """Set the ``index``-th selectbox labelled ``label`` to ``option``.

    Each poll looks at the page as it is now: done when the box shows ``option``; else click
    the option if its list is open; else open the list. A click swallowed by a rerun (the
    box re-rendered between finding and clicking it) is simply made again on the next poll.
    """
    xpath = f"//*[@role='option'][normalize-space(.)='{option}']"

    def attempt(d: WebDriver) -> bool:
        boxes = _selectboxes(d, label)
        if len(boxes) <= index:
            return False
        if boxes[index].get_attribute("value") == option:
            return True
        options = [o for o in d.find_elements(By.XPATH, xpath) if o.is_displayed()]
        _click(d, options[0] if options else boxes[index])
        return False

    _until(driver, attempt, message=f"could not choose {option!r} in selectbox {label!r} #{index + 1}")


def test_compare_in_browser_shows_verdict_and_charts(app_url: str, browser: WebDriver, tmp_path: Path) -> None:
    try:
        _compare_in_browser(app_url, browser, tmp_path)
    except Exception:
        # What the page showed when it failed, for whoever reads the CI artifacts.
        browser.save_screenshot(str(_artifacts_dir(tmp_path) / "dashboard-failure.png"))
        raise


def _compare_in_browser(app_url: str, browser: WebDriver, tmp_path: Path) -> None:
    browser.get(app_url)
    _until(browser, EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'Reference product (RLD)')]")),
           message="the page did not load")

    # Both products from the server folder: reference rld/lr, test generic/lr.
    for i in range(2):
        _click_until(
            browser, f"(//*[@data-testid='stRadio']//label[.//*[contains(text(), 'Server folder')]])[{i + 1}]",
            lambda d, n=i + 1: len(_selectboxes(d, "Product folder")) >= n, f"no folder choice #{i + 1} after 'Server folder'",
        )
    _choose(browser, 0, "Product folder", "rld/lr")
    _choose(browser, 1, "Product folder", "generic/lr")
    lots_listed = EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'lot3: 3 images')]"))
    _until(browser, lots_listed, message="the chosen folders' lots are not listed")

    verdict_shown = EC.visibility_of_element_located(
        (By.XPATH, "//*[@data-testid='stAlert'][.//*[contains(text(), 'Verdict:')]]"))
    running = EC.presence_of_element_located((By.CSS_SELECTOR, '[data-testid="stProgress"]'))  # the page's progress bar
    # Clicked until the run has visibly started (or already ended): a click the page lost in a rerun is repeated.
    _click_until(browser, "//button[.//*[contains(text(), 'Compare products')]]",
                 lambda d: verdict_shown(d) or running(d), "the comparison did not start")
    verdict = WebDriverWait(browser, ANALYSIS_TIMEOUT_S, ignored_exceptions=TRANSIENT).until(
        verdict_shown, message=f"no verdict within {ANALYSIS_TIMEOUT_S} s")
    assert any(word in verdict.text for word in ("EQUIVALENT", "NOT EQUIVALENT", "INCONCLUSIVE")), verdict.text

    # The number- and volume-weighted PSD figures are rendered images on the page.
    _until(
        browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img, [data-testid="stFullScreenFrame"] img')) >= 2
    )
    figures = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img, [data-testid="stFullScreenFrame"] img')
    # An image below the fold may load only once scrolled into view, and loading takes a moment:
    # wait until each figure has decoded pixels.
    decoded = "arguments[0].scrollIntoView(); return arguments[0].complete && arguments[0].naturalWidth > 0;"
    for img in figures[:2]:
        _until(browser, lambda d, img=img: d.execute_script(decoded, img), message="a PSD figure did not load")
    assert browser.find_elements(By.XPATH, "//*[contains(text(), 'Equivalence statistics') or contains(text(), 'Kolmogorov')]")

    # Streamlit scrolls inside its main section, not the document: size the window to it.
    height = browser.execute_script(
        "const m = document.querySelector('[data-testid=\"stMain\"]');"
        "return m ? m.scrollHeight : document.body.scrollHeight;"
    )
    browser.set_window_size(1400, max(1000, min(int(height), 6000)))
    shot = _artifacts_dir(tmp_path) / "dashboard-comparison.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
