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
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


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
    log = (tmp_path / "streamlit.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


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


def _click_text(driver: WebDriver, xpath: str) -> None:
    element = WebDriverWait(driver, 30).until(EC.element_to_be_clickable((By.XPATH, xpath)))
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    element.click()


def _selectboxes(driver: WebDriver, label: str) -> list:
    return driver.find_elements(By.CSS_SELECTOR, f'[data-testid="stSelectbox"] input[aria-label="{label}"]')


def _choose(driver: WebDriver, index: int, label: str, option: str) -> None:
    """Open the ``index``-th selectbox labelled ``label`` and click ``option`` in its list."""
    field = WebDriverWait(driver, 30).until(lambda d: (_selectboxes(d, label) + [None] * (index + 1))[index])
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", field)
    field.click()
    _click_text(driver, f"//*[@role='option'][normalize-space(.)='{option}']")
    WebDriverWait(driver, 30).until(lambda d: _selectboxes(d, label)[index].get_attribute("value") == option)


def test_compare_in_browser_shows_verdict_and_charts(app_url: str, browser: WebDriver, tmp_path: Path) -> None:
    try:
        _compare_in_browser(app_url, browser, tmp_path)
    except Exception:
        # What the page showed when it failed, for whoever reads the CI artifacts.
        browser.save_screenshot(str(_artifacts_dir(tmp_path) / "dashboard-failure.png"))
        raise


def _compare_in_browser(app_url: str, browser: WebDriver, tmp_path: Path) -> None:
    browser.get(app_url)
    WebDriverWait(browser, 60).until(EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'Reference product (RLD)')]")))

    # Both products from the server folder: reference rld/lr, test generic/lr.
    for i in range(2):
        _click_text(browser, f"(//*[@data-testid='stRadio']//label[.//*[contains(text(), 'Server folder')]])[{i + 1}]")
        WebDriverWait(browser, 30).until(lambda d, n=i + 1: len(_selectboxes(d, "Product folder")) >= n)
    _choose(browser, 0, "Product folder", "rld/lr")
    _choose(browser, 1, "Product folder", "generic/lr")
    WebDriverWait(browser, 60).until(EC.presence_of_element_located((By.XPATH, "//*[contains(text(), 'lot3: 3 images')]")))

    _click_text(browser, "//button[.//*[contains(text(), 'Compare products')]]")
    verdict = WebDriverWait(browser, ANALYSIS_TIMEOUT_S).until(
        EC.visibility_of_element_located((By.XPATH, "//*[@data-testid='stAlert'][.//*[contains(text(), 'Verdict:')]]"))
    )
    assert any(word in verdict.text for word in ("EQUIVALENT", "NOT EQUIVALENT", "INCONCLUSIVE")), verdict.text

    # The number- and volume-weighted PSD figures are rendered images on the page.
    WebDriverWait(browser, 60).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img, [data-testid="stFullScreenFrame"] img')) >= 2
    )
    figures = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img, [data-testid="stFullScreenFrame"] img')
    # An image below the fold may load only once scrolled into view, and loading takes a moment:
    # wait until each figure has decoded pixels.
    decoded = "arguments[0].scrollIntoView(); return arguments[0].complete && arguments[0].naturalWidth > 0;"
    for img in figures[:2]:
        WebDriverWait(browser, 60).until(lambda d, img=img: d.execute_script(decoded, img))
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
