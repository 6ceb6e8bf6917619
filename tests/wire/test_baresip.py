"""baresip as a real phone: it dials the daemon's demo flow, hears the greeting, presses 0.

baresip (Debian's baresip-core, installed by scripts/bootstrap) runs headless from a
config this test writes (tests/peers/templates/baresip/*.template): a WAV of silence is its microphone
(aufile), the ``sndfile`` filter records what it receives, the ``aubridge`` player
stands in for a sound card, and ``ctrl_tcp`` is how the test drives it (JSON commands
in netstrings: dial, sndcode, hangup, quit; call events come back the same way).
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import socket
import string
import subprocess
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from peers.daemon import DaemonProcess, wait_until
from peers.net import free_port

from voicegw.media import g711

BARESIP = shutil.which("baresip")
TEMPLATES = Path(__file__).resolve().parents[1] / "peers" / "templates" / "baresip"
RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
WAV_HEADER = 44

pytestmark = [
    pytest.mark.wire,
    pytest.mark.timeout(60),
    pytest.mark.skipif(BARESIP is None, reason="baresip not installed: run scripts/bootstrap"),
]


class BaresipControl:
    """baresip's ctrl_tcp: netstring-framed JSON commands, responses and events."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.buffer = b""
        self.events: list[dict] = []
        self._token = 0

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict:
        self._token += 1
        token = str(self._token)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self.sock.sendall(b"%d:%s," % (len(body), body))
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline - time.monotonic())
            if message is None:
                raise TimeoutError(f"baresip did not answer {command!r}")
            if message.get("response") and message.get("token") == token:
                return message

    def wait_event(self, kind: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("type") == kind:
                    return event
            message = self._read(deadline - time.monotonic())
            if message is None:
                return None

    def _read(self, timeout: float) -> dict | None:
        """The next message (events are also kept in ``self.events``)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            head, colon, rest = self.buffer.partition(b":")
            if colon and len(rest) > int(head) and rest[int(head):int(head) + 1] == b",":
                body, self.buffer = rest[: int(head)], rest[int(head) + 1:]
                message = json.loads(body)
                if message.get("event"):
                    self.events.append(message)
                return message
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


def write_silence(path: Path, seconds: float) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(bytes(2 * int(RATE * seconds)))


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono samples as floats in [-1, 1)."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2") / 32768.0


def frame_rms(samples: np.ndarray) -> np.ndarray:
    frames = samples[: len(samples) // FRAME * FRAME].reshape(-1, FRAME)
    return np.sqrt(np.mean(frames**2, axis=1))


def recorded_seconds(record_dir: Path) -> float:
    """Seconds of audio baresip has received so far (the file grows as it decodes)."""
    files = list(record_dir.glob("*-dec.wav"))
    if not files:
        return 0.0
    return max(0, files[0].stat().st_size - WAV_HEADER) / (2 * RATE)


def wait_quiet(record_dir: Path, at_least: float, quiet: float, timeout: float) -> float:
    """Wait until at least ``at_least`` s were received, then ``quiet`` s with no growth."""
    deadline = time.monotonic() + timeout
    last, since = recorded_seconds(record_dir), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = recorded_seconds(record_dir)
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
    record_dir = tmp_path / "recordings"
    record_dir.mkdir()
    source = tmp_path / "silence.wav"
    # aufile ends the call at the end of its file: make it outlast the test.
    write_silence(source, 90)
    ctrl_port = free_port()
    fields = {
        "sip_port": free_port(), "ctrl_port": ctrl_port, "source_wav": source,
        "record_dir": record_dir, "rtp_min": rtp_low + 200, "rtp_max": rtp_low + 298,
    }
    for name in ("config", "accounts"):
        template = string.Template((TEMPLATES / f"{name}.template").read_text())
        (tmp_path / name).write_text(template.substitute(fields))
    log_path = tmp_path / "baresip.log"

    baresip: subprocess.Popen | None = None
    control: BaresipControl | None = None
    daemon.start()
    try:
        with log_path.open("wb") as log:
            # -t: baresip quits by itself after 55 s whatever happens to this test.
            baresip = subprocess.Popen(
                [BARESIP, "-f", str(tmp_path), "-t", "55"], cwd=tmp_path,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )

        def context() -> str:
            return ("\n--- baresip ---\n" + log_path.read_text(errors="replace")[-3000:]
                    + "\n--- daemon ---\n" + "\n".join(daemon.lines[-15:]))

        control = BaresipControl(ctrl_port)
        uri = f"sip:demo@{daemon.host}:{daemon.port}"
        reply = control.command("dial", uri)
        assert reply.get("ok"), f"dial refused: {reply}{context()}"

        # 1. answered
        established = control.wait_event("CALL_ESTABLISHED", 10)
        assert established is not None, f"call not answered{context()}"

        # 2. the greeting arrives; it is over when nothing more comes for 0.8 s
        greeting_s = wait_quiet(record_dir, at_least=2.0, quiet=0.8, timeout=15)
        assert greeting_s >= 2.0, f"only {greeting_s:.2f} s of audio received{context()}"

        # 3. DTMF 0 (RFC 4733 telephone-event, negotiated in the SDP)
        assert control.command("sndcode", "0").get("ok"), context()
        assert wait_until(
            lambda: any(e.get("digit") == "0" for e in daemon_events(daemon, "flow.dtmf")), 5
        ), f"daemon logged no flow.dtmf 0{context()}"
        # ...and the flow acted on it: the agent prompt starts playing to baresip
        assert wait_until(lambda: recorded_seconds(record_dir) > greeting_s + 0.5, 8), (
            f"no audio after the digit{context()}")

        # 4. baresip hangs up
        assert control.command("hangup").get("ok"), context()
        assert control.wait_event("CALL_CLOSED", 5) is not None, context()
        assert wait_until(lambda: daemon_events(daemon, "call.ended"), 5), context()
        ended = daemon_events(daemon, "call.ended")
        assert [e["reason"] for e in ended] == ["caller hung up"], ended
        # one key press is one digit (baresip repeats the end packet, RFC 4733 2.5.1.4),
        # and it came in the RTP stream, not as a SIP INFO
        assert [e["digit"] for e in daemon_events(daemon, "flow.dtmf")] == ["0"]
        assert not [e for e in daemon.events() if e.get("method") == "INFO"]

        control.command("quit")
        baresip.wait(10)  # the recordings are complete once baresip has closed them
    finally:
        if control is not None:
            control.close()
        if baresip is not None and baresip.poll() is None:
            baresip.send_signal(signal.SIGTERM)
            try:
                baresip.wait(5)
            except subprocess.TimeoutExpired:
                baresip.kill()
                baresip.wait(5)
        daemon.terminate()
    assert not daemon.running() and baresip.poll() is not None

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
