"""baresip as a real phone: it dials the daemon's demo flow, hears the greeting, presses 0.

baresip (Debian's baresip-core, installed by scripts/bootstrap) runs headless as
peers.baresip sets it up: a WAV of silence is its microphone (aufile), the ``sndfile``
filter records what it receives, the ``aubridge`` player stands in for a sound card,
and ``ctrl_tcp`` is how the test drives it (JSON commands in netstrings: dial, sndcode,
hangup, quit; call events come back the same way).
"""

from __future__ import annotations

import random
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from peers.baresip import BARESIP, RATE, Baresip
from peers.daemon import DaemonProcess, wait_until

from voicegw.media import g711

FRAME = 160  # 20 ms at 8 kHz

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(60),
    pytest.mark.skipif(BARESIP is None, reason="baresip not installed: run scripts/bootstrap"),
]


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono samples as floats in [-1, 1)."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2") / 32768.0


def frame_rms(samples: np.ndarray) -> np.ndarray:
    frames = samples[: len(samples) // FRAME * FRAME].reshape(-1, FRAME)
    return np.sqrt(np.mean(frames**2, axis=1))


def wait_quiet(phone: Baresip, at_least: float, quiet: float, timeout: float) -> float:
    """Wait until at least ``at_least`` s were received, then ``quiet`` s with no growth."""
    deadline = time.monotonic() + timeout
    last, since = phone.received_seconds(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = phone.received_seconds()
        if now != last:
            last, since = now, time.monotonic()
        elif now >= at_least and time.monotonic() - since >= quiet:
            return now
    return last


def daemon_events(daemon: DaemonProcess, name: str) -> list[dict]:
    return [e for e in daemon.events() if e.get("event") == name]


def test_baresip_hears_greeting_presses_zero_and_hangs_up(tmp_path: Path) -> None:
    rtp_low = random.randrange(40000, 48000, 2)
    daemon = DaemonProcess("127.0.0.1", None, "--rtp-ports", f"{rtp_low}-{rtp_low + 98}")
    # its microphone is silence; -t: baresip quits by itself after 55 s whatever happens
    phone = Baresip(tmp_path, "phone", user="phone", answermode="manual", max_life=55)
    record_dir = phone.record_dir
    daemon.start()
    try:
        phone.start()

        def context() -> str:
            return ("\n--- baresip ---\n" + phone.log()[-3000:]
                    + "\n--- daemon ---\n" + "\n".join(daemon.lines[-15:]))

        uri = f"sip:demo@{daemon.host}:{daemon.port}"
        reply = phone.command("dial", uri)
        assert reply.get("ok"), f"dial refused: {reply}{context()}"

        # 1. answered
        established = phone.wait_event("CALL_ESTABLISHED", 10)
        assert established is not None, f"call not answered{context()}"

        # 2. the greeting arrives; it is over when nothing more comes for 0.8 s
        greeting_s = wait_quiet(phone, at_least=2.0, quiet=0.8, timeout=15)
        assert greeting_s >= 2.0, f"only {greeting_s:.2f} s of audio received{context()}"

        # 3. DTMF 0 (RFC 4733 telephone-event, negotiated in the SDP)
        assert phone.command("sndcode", "0").get("ok"), context()
        assert wait_until(
            lambda: any(e.get("digit") == "0" for e in daemon_events(daemon, "flow.dtmf")), 5
        ), f"daemon logged no flow.dtmf 0{context()}"
        # ...and the flow acted on it: the agent prompt starts playing to baresip
        assert wait_until(lambda: phone.received_seconds() > greeting_s + 0.5, 8), (
            f"no audio after the digit{context()}")

        # 4. baresip hangs up
        assert phone.command("hangup").get("ok"), context()
        assert phone.wait_event("CALL_CLOSED", 5) is not None, context()
        assert wait_until(lambda: daemon_events(daemon, "call.ended"), 5), context()
        ended = daemon_events(daemon, "call.ended")
        assert [e["reason"] for e in ended] == ["caller hung up"], ended
        # one key press is one digit (baresip repeats the end packet, RFC 4733 2.5.1.4),
        # and it came in the RTP stream, not as a SIP INFO
        assert [e["digit"] for e in daemon_events(daemon, "flow.dtmf")] == ["0"]
        assert not [e for e in daemon.events() if e.get("method") == "INFO"]

        phone.stop()  # quit: the recordings are complete once baresip has closed them
    finally:
        phone.stop()
        daemon.terminate()
    assert not daemon.running() and not phone.running()

    # What baresip heard: the greeting ("Welcome to voice gateway. Press zero...", about
    # 4 s of speech) well above a silent baseline for a good part of the first 4 s.
    recording = read_wav(next(record_dir.glob("*-dec.wav")))
    first = frame_rms(recording[: 4 * RATE])
    assert len(first) >= 150, f"only {len(recording) / RATE:.2f} s recorded"
    # Baseline: digital silence as it comes through PCMU (what a silent leg sounds
    # like), and what baresip itself sent (the silent WAV), whichever is louder.
    pcmu_silence = frame_rms(g711.ulaw_decode(g711.silence(0, FRAME * 50)))
    sent = frame_rms(read_wav(next(record_dir.glob("*-enc.wav"))))
    baseline = max(float(np.max(pcmu_silence)), float(np.median(sent)), 1 / 32768)
    loud = first > baseline * 10 ** (30 / 20)  # 30 dB above the baseline
    assert loud.mean() > 0.5, (
        f"only {loud.mean():.0%} of the first 4 s is 30 dB over silence "
        f"(baseline rms {baseline:.2e}, median {np.median(first):.2e})")
    assert np.median(first) > 0.01, "the greeting is too quiet (median below -40 dBFS)"
    # speech, not a tone or noise: its loudness varies (syllables and pauses)
    assert np.percentile(first, 90) > 4 * np.percentile(first, 20)
