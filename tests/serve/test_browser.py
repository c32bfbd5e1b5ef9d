"""The page in a real browser: headless Chromium opens it, uploads an image, shows the answer.

Needs Chromium and its driver (Debian: `apt-get install chromium chromium-driver`, which
`make browser` runs); skips with the reason when they are missing.
"""

from __future__ import annotations

import shutil

import pytest

import resnetlab
from resnetlab.serve.predictor import cam_available

from .conftest import start_server

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) is missing")
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WAIT_S = 60


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        pytest.skip(
            "no Chromium and chromedriver on PATH (Debian: apt-get install chromium "
            "chromium-driver, or `make browser`)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    chrome = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    yield chrome
    chrome.quit()


def _text(chrome, element_id: str) -> str:
    return chrome.find_element(By.ID, element_id).text


def test_page_shows_the_top_classes_of_an_uploaded_image(browser, server, model_file, image_files):
    browser.get(server.url)
    wait = WebDriverWait(browser, WAIT_S)
    wait.until(lambda b: "resnet8" in _text(b, "model"))
    assert "3 classes" in _text(browser, "model")
    # The map's checkbox is offered only when the server can draw maps.
    assert browser.find_element(By.ID, "cam-option").is_displayed() is cam_available()
    for name in ("red.png", "blue.jpg"):
        path = image_files[name]
        (expected,) = resnetlab.predict(model_file, [path], top_k=3)
        browser.find_element(By.ID, "file").send_keys(str(path))
        try:
            wait.until(lambda b, e=expected: _text(b, "top-class") == e.label)
        except TimeoutException:
            pytest.fail(
                f"{name}: the page shows {_text(browser, 'top-class')!r}, "
                f"error {_text(browser, 'error')!r}"
            )
        assert name.split(".")[0] == expected.label  # a red picture is red
        rows = browser.find_elements(By.CSS_SELECTOR, "#bars li")
        assert [r.get_attribute("data-class") for r in rows] == [c for c, _ in expected.top]
        shown = [float(r.get_attribute("data-probability")) for r in rows]
        assert shown == pytest.approx([p for _, p in expected.top], abs=1e-5)
        assert _text(browser, "top-probability") == f"{100 * expected.top[0][1]:.1f}%"
        assert _text(browser, "image-name") == name
        assert not browser.find_element(By.ID, "error").is_displayed()


def test_page_reports_a_bad_file(browser, server, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    browser.get(server.url)
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_element(By.ID, "error").is_displayed())
    assert "not an image file" in _text(browser, "error")


def test_page_sends_the_file_name_which_names_a_format_to_convert(browser, server, tmp_path):
    heic = tmp_path / "IMG_0001.HEIC"  # an iPhone's photo, picked on a desktop
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64))
    browser.get(server.url)
    browser.find_element(By.ID, "file").send_keys(str(heic))
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_element(By.ID, "error").is_displayed())
    assert _text(browser, "error") == (
        "the upload IMG_0001.HEIC: HEIC photos cannot be read here; convert it to JPEG or PNG first"
    )


def test_page_names_a_fractional_upload_limit_as_given(browser, model_file, tmp_path):
    """--max-upload-mb 0.5: a larger file is refused on the page, naming 0.5 MB, not 1."""
    big = tmp_path / "big.png"
    big.write_bytes(bytes(600 * 1024))
    small_limit = start_server(model_file, tmp_path / "server", "--max-upload-mb", "0.5")
    try:
        browser.get(small_limit.url)
        wait = WebDriverWait(browser, WAIT_S)
        wait.until(lambda b: "resnet8" in _text(b, "model"))
        browser.find_element(By.ID, "file").send_keys(str(big))
        wait.until(lambda b: b.find_element(By.ID, "error").is_displayed())
        assert _text(browser, "error") == "big.png is 0.6 MB; the limit is 0.5 MB"
    finally:
        small_limit.stop()


def test_page_reports_an_answer_that_is_not_json(browser, server, image_files):
    """Past --max-connections uvicorn itself answers, 503 in plain text: the page named a
    JSON syntax error."""
    browser.get(server.url)
    WebDriverWait(browser, WAIT_S).until(lambda b: "resnet8" in _text(b, "model"))
    browser.execute_script(
        "window.fetch = async () => new Response('Service Unavailable', "
        "{status: 503, statusText: 'Service Unavailable', "
        "headers: {'content-type': 'text/plain; charset=utf-8'}});"
    )
    browser.find_element(By.ID, "file").send_keys(str(image_files["red.png"]))
    WebDriverWait(browser, WAIT_S).until(lambda b: b.find_element(By.ID, "error").is_displayed())
    assert _text(browser, "error") == "503 Service Unavailable"
