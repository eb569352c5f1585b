"""The page at `/` of `minimind-tts serve`, driven in headless Chromium: it loads, speaks, and shows the RTF.

    .venv/bin/python -m pytest tests/test_serve_page.py -q

Chromium and its driver are Debian's `chromium` and `chromium-driver` (scripts/setup.sh installs them), driven
through Selenium with both paths given, so nothing is downloaded. The server is conftest's `served`. The
screenshot of a spoken sentence is kept as a test artefact: results/test-artefacts/serve-page.png, and in the
test's tmp_path that pytest keeps for its last three runs.
"""

from __future__ import annotations

import io
import os
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, TTS_SPEAKERS

ARTEFACTS = REPO / "results" / "test-artefacts"
SPEAK_SECONDS = 120  # a short sentence from the tiny model takes a second or two; a busy 2-core machine, more

# Resolves with what the <audio> element made of its source once it has data to play (or has failed): the
# element's own view, and the same bytes decoded by Web Audio, whose peak tells audio from silence.
AUDIO_REPORT = """
const done = arguments[arguments.length - 1];
const player = document.getElementById("player");
async function report() {
  const decoded = { duration: 0, peak: 0 };
  try {
    const bytes = await (await fetch(player.src)).arrayBuffer();
    const buffer = await new OfflineAudioContext(1, 1, 24000).decodeAudioData(bytes);
    decoded.duration = buffer.duration;
    decoded.peak = buffer.getChannelData(0).reduce((peak, x) => Math.max(peak, Math.abs(x)), 0);
  } catch (error) {
    decoded.error = String(error);
  }
  done({ src: player.src, readyState: player.readyState, duration: player.duration,
         error: player.error && player.error.message, decoded });
}
if (player.readyState >= HTMLMediaElement.HAVE_CURRENT_DATA || player.error) report();
else {
  player.addEventListener("loadeddata", report, { once: true });
  player.addEventListener("error", report, { once: true });
}
"""


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        reason = "needs Debian's chromium and chromium-driver: bash scripts/setup.sh installs them"
        if os.environ.get("CI"):  # CI runs setup.sh first, so a missing browser there is a broken setup
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # --no-sandbox: Chromium's sandbox refuses to start as root, which CI and these machines run as
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=900,820", "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(browser, served):
    """The page, once it has listed the server's voices."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{served.url}/")
    WebDriverWait(browser, 30).until(lambda d: page_state(d) != "loading")
    assert page_state(browser) == "ready", status_text(browser)


def page_state(browser) -> str:
    return browser.execute_script("return document.body.dataset.state")


def status_text(browser) -> str:
    return browser.execute_script("return document.getElementById('status').textContent")


def speak_on_page(browser, text: str, voice: str) -> str:
    """Type `text`, choose `voice`, press Speak and wait for the answer; the state the page ends in."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    box = browser.find_element(By.ID, "input")
    box.clear()
    box.send_keys(text)
    Select(browser.find_element(By.ID, "voice")).select_by_value(voice)
    browser.find_element(By.ID, "speak").click()
    WebDriverWait(browser, SPEAK_SECONDS).until(lambda d: page_state(d) in ("spoken", "failed"))
    return page_state(browser)


def assert_playable(browser) -> dict:
    audio = browser.execute_async_script(AUDIO_REPORT)
    assert audio["src"].startswith("blob:") and audio["error"] is None, audio
    assert audio["readyState"] >= 2 and 0 < audio["duration"] < 60, audio
    assert "error" not in audio["decoded"] and audio["decoded"]["peak"] > 0, audio
    assert abs(audio["decoded"]["duration"] - audio["duration"]) < 0.01, audio
    return audio


def test_the_page_lists_the_voices_speaks_and_shows_the_rtf(browser, served, tmp_path):
    from selenium.webdriver.common.by import By

    open_page(browser, served)
    menu = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#voice option")]
    assert menu == ["", *TTS_SPEAKERS]
    state = speak_on_page(browser, "Pride goeth before destruction.", "rms")
    status = status_text(browser)
    assert state == "spoken", status
    audio = assert_playable(browser)

    seconds, rtf = re.search(r"([\d.]+) s of audio; RTF ([\d.]+)", status).groups()
    assert abs(float(seconds) - audio["duration"]) < 0.01, "the page reports the length of what it plays"
    assert float(rtf) > 0

    screenshot = tmp_path / "serve-page.png"
    assert browser.save_screenshot(str(screenshot))
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, ARTEFACTS / screenshot.name)
    print(f"page: {status}; screenshot: {ARTEFACTS / screenshot.name}")


def test_a_voice_prompt_uploaded_on_the_page_is_spoken(browser, served, tmp_path):
    from selenium.webdriver.common.by import By

    prompt = tmp_path / "prompt.wav"
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(np.arange(16000) / 9), 16000, format="WAV", subtype="PCM_16")
    prompt.write_bytes(buffer.getvalue())
    open_page(browser, served)
    browser.find_element(By.ID, "prompt_wav").send_keys(str(prompt))
    browser.find_element(By.ID, "prompt_text").send_keys("a soft answer turneth away wrath")
    state = speak_on_page(browser, "Pride goeth before destruction.", "awb")
    assert state == "spoken", status_text(browser)
    assert_playable(browser)


def test_a_refusal_is_shown_on_the_page_naming_the_field(browser, served):
    open_page(browser, served)
    state = speak_on_page(browser, "   ", "awb")
    assert state == "failed" and status_text(browser).startswith("input: "), status_text(browser)
