"""report.html in a real headless Chromium (Debian's chromium and chromedriver, driven by
selenium; nothing is downloaded): the gallery shows every explained image, sorting and the class
filter change what is shown, the detail view opens, the page makes no network request, and a
screenshot has content."""

import io
import json
import os
import time

import numpy as np
import pytest

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(
            f"{CHROMIUM} or {CHROMEDRIVER} absent (apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver  # requirements.txt
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never fetch a driver or browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _shown_ids(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.gallery .thumb'))"
        ".filter(c => !c.hidden).map(c => c.dataset.id);"
    )


def _choose(driver, css, value):
    driver.execute_script(
        "const s = document.querySelector(arguments[0]); s.value = arguments[1];"
        "s.dispatchEvent(new Event('change'));",
        css,
        value,
    )


def _click(driver, element):
    # Centred at once (the page scrolls smoothly otherwise), out from under the sticky header.
    driver.execute_script(
        "arguments[0].scrollIntoView({block: 'center', behavior: 'instant'});", element
    )
    element.click()


def _requested_urls(driver):
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


@pytest.mark.slow
def test_report_in_a_headless_browser(browser, explained_workdir, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    metrics = json.loads((explained_workdir / "attributions/attribution_metrics.json").read_text())
    items = {i: None for i in metrics["localization_cells"]["per_image"]}
    browser.get((explained_workdir / "report.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, ".gallery .thumb")

    # Every explained image is shown, once.
    assert sorted(_shown_ids(browser)) == sorted(items)
    assert "showing 4 of 4 images" in browser.find_element(By.CSS_SELECTOR, ".g-count").text

    # Sorting: by true class ascending, then the order button reverses it.
    _choose(browser, ".g-sort", "label")
    ascending = _shown_ids(browser)
    labels = [i.split("/")[0] for i in ascending]
    assert labels == sorted(labels) and len(set(labels)) > 1
    _click(browser, browser.find_element(By.CSS_SELECTOR, ".g-order"))
    descending = _shown_ids(browser)
    assert descending != ascending and [i.split("/")[0] for i in descending] == labels[::-1]

    # The class filter keeps the images of that class only.
    _choose(browser, ".g-class", labels[0])
    assert _shown_ids(browser) == [i for i in descending if i.startswith(labels[0] + "/")]
    _choose(browser, ".g-class", "")
    assert len(_shown_ids(browser)) == len(items)

    # The detail view opens on a click, shows the panel (loaded from disk) and closes.
    first = browser.find_element(By.CSS_SELECTOR, ".gallery .thumb")
    _click(browser, first)
    dialog = browser.find_element(By.ID, "detail")
    assert dialog.is_displayed()
    assert dialog.find_element(By.CSS_SELECTOR, ".d-title").text == first.get_attribute("data-id")
    time.sleep(0.3)
    assert browser.execute_script("return document.querySelector('.d-panel').naturalWidth") > 0
    shot = browser.get_screenshot_as_png()
    (tmp_path / "detail.png").write_bytes(shot)
    dialog.find_element(By.CSS_SELECTOR, ".d-close").send_keys(Keys.ESCAPE)
    assert not dialog.is_displayed()

    # Nothing but the page's own files and inlined data.
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    for url in resources + _requested_urls(browser):
        assert url.startswith(("file://", "data:")), url

    # The screenshot has content: many colours and real variance.
    pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("RGB"), np.float32)
    assert pixels.shape[0] > 500 and pixels.std() > 20.0
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500
