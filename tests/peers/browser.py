"""Debian's chromium, headless, driven by selenium through Debian's chromedriver.

Selenium never downloads a browser here: both binaries are named (scripts/bootstrap
installs them). The fake media device plays ``wav`` as the microphone, and the
permission prompt is answered yes, so a page's getUserMedia works unattended.
Loopback ICE candidates are allowed and mDNS host names are off: the desk's
WebRTC leg then runs over 127.0.0.1 like every other wire test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def available() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


def chromium(wav: Path, profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required",
                 "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
                 f"--user-data-dir={profile}", "--window-size=1000,760", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


__all__ = ["CHROMEDRIVER", "CHROMIUM", "available", "chromium"]
