"""The WebRTC agent desk in a real browser (issue 15): headless Debian chromium takes a
transferred call at ``/desk``.

One daemon for the module with the desk on (agent ``alice``, a scrypt hash in the
config) and a flow whose ``agent_transfer`` node rings ``desk:alice``; its fallback
sends a 603 (declined at the desk) and ``no_agent`` to an ``apology`` prompt (1900 Hz).
The caller is the scripted RTP caller of tests/peers (peers.agent.Carrier): it
presses 1, sends a 1000 Hz tone and records what it gets. The browser's microphone is
chromium's fake device playing a 600 Hz WAV. Asserted on what crossed the wire: the
caller hears 600 Hz (Goertzel on its PCMU), the page hears 1000 Hz (a WebAudio
analyser on the remote track, read through the driver), the context panel shows the
caller's and the called number, the UUI, X-header values, summary and transcript link, mute silences the agent for the
caller, hold from the page plays ``desk.hold_file`` (1700 Hz) to the caller and
silences each side for the other until the agent takes the call back, a decline (603) and a ring not accepted within calls.ring_timeout (6 s,
``no_answer``) play the fallback's prompt to the caller, a warm transfer to a queue
briefs the agent in the page (the caller never hears it) and connects on accept, and
with nobody signed in the transfer fails with ``no_agent`` at once.
"""

from __future__ import annotations

import os
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from peers.agent import Carrier
from peers.browser import available, chromium
from peers.ops import OpsDaemon
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from voicegw.desk.passwords import hash_password
from voicegw.media import g711
from voicegw.media.tones import goertzel_power
from voicegw.media.wav import write_wav

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(120),
    pytest.mark.skipif(not available(), reason="chromium/chromedriver missing: run scripts/bootstrap"),
]
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"
AGENT_HZ, CALLER_HZ, APOLOGY_HZ, BRIEFING_HZ, HOLD_HZ = 600, 1000, 1900, 1400, 1700


def _tone(freq: float, seconds: float, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (10000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _agent_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as w:  # chromium's fake microphone loops it
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(_tone(AGENT_HZ, 2.0, 48000).tobytes())
    return path


def dominant(payload: bytes, freqs: tuple[float, ...]) -> float | None:
    samples = g711.ulaw_decode(payload).astype(np.float64)
    if np.sqrt(np.mean(samples**2)) < 300:
        return None
    total = float(np.mean((samples / 32768.0) ** 2))
    powers = {f: goertzel_power(samples, f) for f in freqs}
    best = max(powers, key=powers.__getitem__)
    return best if powers[best] > 0.3 * total else None


def heard(caller: Carrier, since: float, freq: float) -> int:
    """How many 20 ms packets since ``since`` carried ``freq`` above all else."""
    freqs = (AGENT_HZ, CALLER_HZ, APOLOGY_HZ, HOLD_HZ)
    return sum(1 for when, data in list(caller.rtp_log)
               if when >= since and len(data) > 12 and data[1] & 0x7F == 0 and dominant(data[12:], freqs) == freq)


@dataclass
class Lab:
    ops: OpsDaemon
    workdir: Path
    wav: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    workdir = tmp_path_factory.mktemp("desk")
    apology = workdir / "apology.wav"
    write_wav(apology, np.concatenate([_tone(APOLOGY_HZ, 0.6), np.zeros(1600, dtype=np.int16)]))
    flows = workdir / "flows"
    flows.mkdir()
    flow = {
        "name": "desk", "start": "menu",
        "nodes": {
            "menu": {"type": "collect", "routes": {"1": "agent", "2": "warm"}, "timeout": 60,
                     "on_timeout": "hangup"},
            "warm": {"type": "agent_transfer", "target": "desk:sales", "method": "warm",
                     "fallback": {"default": {"action": "goto", "node": "apology"}}},
            "agent": {"type": "agent_transfer", "target": "desk:alice", "method": "invite",
                      "fallback": {"rules": [{"match": [603, "no_agent", "no_answer"], "action": "goto", "node": "apology"}],
                                   "default": {"action": "goto", "node": "apology"}}},
            "apology": {"type": "message", "file": str(apology), "next": "menu"},
            "hangup": {"type": "hangup"},
        },
    }
    (flows / "desk.yaml").write_text(yaml.safe_dump(flow, sort_keys=False))
    hold = workdir / "hold.wav"  # desk.hold_file: the caller's music while the agent holds
    write_wav(hold, _tone(HOLD_HZ, 1.0))
    briefing = workdir / "briefing.wav"
    write_wav(briefing, _tone(BRIEFING_HZ, 4.0))
    ops = OpsDaemon(workdir / "daemon", config={
        "calls": {"ring_timeout": 6, "ringback": "silence",
                  "warm": {"hold": "silence", "briefing_text": "", "briefing_file": str(briefing),
                           "confirm": True, "confirm_timeout": 30}},
        "flows_dir": str(flows), "default_flow": "desk",
        "desk": {"enabled": True, "agents": {"alice": hash_password(PASSWORD)}, "queues": {"sales": ["alice"]},
                 "hold_file": str(hold)},
    })
    with ops:
        yield Lab(ops, workdir, _agent_wav(workdir / "agent.wav"))


@pytest.fixture
def browser(lab: Lab, tmp_path: Path) -> Iterator[Any]:
    driver = chromium(lab.wav, tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(lab: Lab, driver: Any) -> None:
    driver.get(f"{lab.ops.url}/desk")
    wait = WebDriverWait(driver, 10)
    wait.until(lambda d: d.find_element(By.ID, "sign-in").is_displayed())
    driver.find_element(By.ID, "agent").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "#sign-in button").click()
    wait.until(lambda d: d.execute_script("return window.voicegwDesk.presence") == "away")
    driver.find_element(By.CSS_SELECTOR, "#presence option[value=available]").click()
    wait.until(lambda d: d.execute_script("return window.voicegwDesk.presence") == "available")


def timeline(lab: Lab, caller: Carrier) -> list[tuple[str, dict[str, Any]]]:
    data = lab.ops.http("GET", f"/calls/{caller.call_id}").json()
    return [(entry["event"], entry["detail"]) for entry in data["timeline"]]


def call_with_context(lab: Lab, key: str = "1") -> Carrier:
    caller = Carrier(lab.ops.address)
    assert caller.invite().status == 200
    caller.listen(0.2)
    r = lab.ops.http("POST", f"/calls/{caller.call_id}/transcript", json={
        "transcript": "bot: hello\ncaller: my parcel", "summary": "wants to move a delivery"})
    assert r.status_code == 201, r.text
    r = lab.ops.http("PATCH", f"/calls/{caller.call_id}/context", json={"context": {
        "bot_session": "uui-7f3a", "ivr.account": "4711"}})
    assert r.status_code == 200, r.text
    caller.send_dtmf(key)
    return caller


def incoming(driver: Any) -> None:
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "incoming").is_displayed())


def test_agent_accepts_in_the_browser_and_both_sides_hear_each_other(lab: Lab, browser: Any) -> None:
    sign_in(lab, browser)
    caller = call_with_context(lab)
    try:
        incoming(browser)
        text = {i: browser.find_element(By.ID, i).text
                for i in ("ctx-uui", "ctx-summary", "ctx-x", "ctx-flow", "ctx-caller", "ctx-called")}
        assert text["ctx-uui"] == "uui-7f3a" and text["ctx-summary"] == "wants to move a delivery", text
        assert text["ctx-caller"] == caller.user and text["ctx-called"] == "demo", text
        assert text["ctx-x"] == "account=4711" and text["ctx-flow"] == "desk", text
        link = browser.find_element(By.CSS_SELECTOR, "#ctx-transcript a").get_attribute("href")
        assert link.startswith(f"{lab.ops.url}/t/"), link
        # docs/desk.png is this screenshot: VOICEGW_DESK_SCREENSHOT=docs/desk.png makes it again
        shot = os.environ.get("VOICEGW_DESK_SCREENSHOT")
        assert browser.save_screenshot(str(ROOT / shot) if shot else str(lab.workdir / "desk.png"))
        browser.find_element(By.ID, "accept").click()
        assert caller.listen(10, lambda: any(e == "transfer.succeeded" for e, _ in timeline(lab, caller)))
        # the caller talks (1000 Hz) for up to 8 s while both sides listen
        start, tone = time.monotonic(), g711.ulaw_encode(_tone(CALLER_HZ, 0.02))
        page = None
        for i in range(400):
            caller.send_rtp(tone)
            caller.listen(0.02)
            if i % 25 == 24:
                page = browser.execute_script(f"return window.voicegwDesk.spectrum({CALLER_HZ})")
                if page and abs(page["peak"] - CALLER_HZ) < 30 and heard(caller, start, AGENT_HZ) >= 25:
                    break
        assert heard(caller, start, AGENT_HZ) >= 25, "the caller hears the agent's microphone (600 Hz)"
        assert page is not None and abs(page["peak"] - CALLER_HZ) < 30 and page["peakLevel"] > -60, page
        browser.find_element(By.ID, "mute").click()
        caller.listen(0.5)
        muted = time.monotonic()
        caller.listen(1.5)
        assert heard(caller, muted, AGENT_HZ) == 0, "muted: the caller hears nothing of the agent"
        browser.find_element(By.ID, "mute").click()
        unmuted = time.monotonic()
        assert caller.listen(5, lambda: heard(caller, unmuted, AGENT_HZ) >= 25), "unmuted: the agent again"
        browser.find_element(By.ID, "hangup").click()
        assert caller.listen(5, lambda: caller.got_request("BYE")), "the agent's hang-up ends the call"
        events = [e for e, _ in timeline(lab, caller)]
        assert "leg.agent.bye" in events, events
    finally:
        caller.hang_up_quietly()
        caller.close()


def page_hears(driver: Any, freq: float, seconds: float, also: Any = None) -> dict[str, float] | None:
    """Poll the page's analyser until ``freq`` is the loudest (and ``also()`` holds)."""
    page = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        page = driver.execute_script(f"return window.voicegwDesk.spectrum({freq})")
        if page and abs(page["peak"] - freq) < 30 and page["peakLevel"] > -60 and (also is None or also()):
            return page
        time.sleep(0.1)
    return page


def test_a_warm_transfer_to_a_desk_queue_briefs_the_agent_then_connects_on_accept(lab: Lab, browser: Any) -> None:
    sign_in(lab, browser)
    caller = call_with_context(lab, "2")
    try:
        incoming(browser)
        assert browser.find_element(By.ID, "incoming-title").text == "Incoming warm transfer"
        browser.find_element(By.ID, "accept").click()
        page = page_hears(browser, BRIEFING_HZ, 8)
        assert page is not None and abs(page["peak"] - BRIEFING_HZ) < 30, ("the briefing plays into the page", page)
        since = time.monotonic()
        assert heard(caller, since - 3, BRIEFING_HZ) == 0, "the caller never hears the briefing"
        browser.find_element(By.ID, "warm-accept").click()
        assert caller.listen(10, lambda: any(e == "transfer.succeeded" for e, _ in timeline(lab, caller)))
        assert caller.listen(8, lambda: heard(caller, since, AGENT_HZ) >= 25), "caller and agent are connected"
        moved = [d.get("state") for e, d in timeline(lab, caller) if e == "transfer.warm"]
        assert "completed" in moved, moved
        browser.find_element(By.ID, "hangup").click()
        assert caller.listen(5, lambda: caller.got_request("BYE"))
    finally:
        caller.hang_up_quietly()
        caller.close()


def test_a_ring_the_agent_does_not_accept_in_time_is_no_answer_and_leaves_the_page(lab: Lab, browser: Any) -> None:
    sign_in(lab, browser)
    caller = call_with_context(lab)
    try:
        incoming(browser)
        rang = time.monotonic()
        assert caller.listen(12, lambda: heard(caller, rang, APOLOGY_HZ) >= 20), "the no_answer rule's node plays"
        failed = next(d for e, d in timeline(lab, caller) if e == "transfer.failed")
        assert failed["status"] == "no_answer", failed
        WebDriverWait(browser, 5).until(lambda d: not d.find_element(By.ID, "incoming").is_displayed())
        assert "not accepted in time" in browser.find_element(By.ID, "status").text
        assert browser.execute_script("return window.voicegwDesk.presence") == "available", "free again"
        assert caller.bye().status == 200
    finally:
        caller.hang_up_quietly()
        caller.close()


def test_a_decline_at_the_desk_sends_the_caller_to_the_fallback(lab: Lab, browser: Any) -> None:
    sign_in(lab, browser)
    caller = call_with_context(lab)
    try:
        incoming(browser)
        declined = time.monotonic()
        browser.find_element(By.ID, "decline").click()
        assert caller.listen(8, lambda: heard(caller, declined, APOLOGY_HZ) >= 20), "the apology prompt plays"
        failed = next(d for e, d in timeline(lab, caller) if e == "transfer.failed")
        assert failed["status"] == 603, failed
        assert not caller.got_request("BYE"), "a declined transfer never drops the caller"
        assert caller.bye().status == 200
    finally:
        caller.hang_up_quietly()
        caller.close()


def test_nobody_at_the_desk_fails_with_no_agent_at_once(lab: Lab) -> None:
    caller = call_with_context(lab)
    try:
        assert caller.listen(8, lambda: any(e == "transfer.failed" for e, _ in timeline(lab, caller)))
        failed = next(d for e, d in timeline(lab, caller) if e == "transfer.failed")
        assert failed["status"] == "no_agent", failed
        assert caller.listen(8, lambda: heard(caller, 0, APOLOGY_HZ) >= 20), "the fallback's prompt plays"
        assert caller.bye().status == 200
    finally:
        caller.hang_up_quietly()
        caller.close()


def talk(caller: Carrier, seconds: float, done: Any) -> bool:
    """The caller sends its 1000 Hz tone every 20 ms for up to ``seconds``, until ``done()``."""
    tone = g711.ulaw_encode(_tone(CALLER_HZ, 0.02))
    for i in range(int(seconds / 0.02)):
        caller.send_rtp(tone)
        caller.listen(0.02)
        if i % 10 == 9 and done():
            return True
    return bool(done())


def page_hears_now(driver: Any, freq: float) -> bool:
    page = driver.execute_script(f"return window.voicegwDesk.spectrum({freq})")
    return bool(page and abs(page["peak"] - freq) < 30 and page["peakLevel"] > -60)


def page_level(driver: Any, freq: float) -> float:
    """The page's level (dB) at ``freq``; -inf for digital silence (JSON null)."""
    page = driver.execute_script(f"return window.voicegwDesk.spectrum({freq})")
    level = page.get("level") if page else None
    return float("-inf") if level is None else float(level)


def test_hold_from_the_page_plays_music_to_the_caller_and_silences_both_sides_until_taken_back(
        lab: Lab, browser: Any) -> None:
    sign_in(lab, browser)
    caller = call_with_context(lab)
    try:
        incoming(browser)
        browser.find_element(By.ID, "accept").click()
        assert caller.listen(10, lambda: any(e == "transfer.succeeded" for e, _ in timeline(lab, caller)))
        start = time.monotonic()
        assert talk(caller, 8, lambda: heard(caller, start, AGENT_HZ) >= 25 and page_hears_now(browser, CALLER_HZ)), \
            "connected: each side hears the other before the hold"

        browser.find_element(By.ID, "hold").click()
        held = time.monotonic()
        assert talk(caller, 8, lambda: heard(caller, held, HOLD_HZ) >= 25), "on hold: the caller hears the music"
        # the page's analyser keeps ~100 ms of the past: wait until the caller is gone from it
        assert talk(caller, 5, lambda: page_level(browser, CALLER_HZ) < -80), "on hold: the page hears no caller"
        quiet = time.monotonic()
        levels: list[float] = []

        def sample() -> bool:  # the page every 200 ms until 40 packets of music since ``quiet``
            levels.append(page_level(browser, CALLER_HZ))
            return len(levels) >= 5 and heard(caller, quiet, HOLD_HZ) >= 40

        assert talk(caller, 10, sample), "the music goes on while held"
        assert max(levels) < -80, ("the caller never reaches the page while held", levels)
        assert heard(caller, quiet, AGENT_HZ) == 0, "on hold: the agent's microphone never reaches the caller"

        browser.find_element(By.ID, "hold").click()
        back = time.monotonic()
        assert talk(caller, 8, lambda: heard(caller, back, AGENT_HZ) >= 25), "taken back: the caller hears the agent"
        assert talk(caller, 8, lambda: page_hears_now(browser, CALLER_HZ)), "taken back: the page hears the caller"
        after = time.monotonic()
        talk(caller, 1.0, lambda: False)
        assert heard(caller, after, HOLD_HZ) == 0, "the music stopped"
        browser.find_element(By.ID, "hangup").click()
        assert caller.listen(5, lambda: caller.got_request("BYE")), "the agent's hang-up ends the call"
    finally:
        caller.hang_up_quietly()
        caller.close()
