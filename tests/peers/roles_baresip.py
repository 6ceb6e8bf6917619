"""baresip (peers.baresip) as the agent of tests/peers/roles.py."""

from __future__ import annotations

import threading
from pathlib import Path

from peers.baresip import Baresip
from peers.calls import HOST, SipMessage
from peers.daemon import wait_until
from peers.net import free_port
from peers.pjsua import hears


class BaresipAgent:
    """baresip as the agent: ``answermode=auto`` answers; ``manual`` rings, and for
    ``busy`` a thread rejects the call as it comes (baresip answers 486); its microphone
    is a tone file (``tone_hz`` from :meth:`talk` on: the file is written at start, so
    the adapter starts baresip with the agent's tone) and what it receives is recorded."""

    name = "baresip"
    detects = True

    def __init__(self, workdir: Path, tone_hz: float) -> None:
        self.workdir = workdir
        self.tone_hz = tone_hz
        self.ua: Baresip | None = None
        self.port = free_port(HOST)
        self._rejecter: threading.Thread | None = None

    @property
    def uri(self) -> str:
        assert self.ua is not None, "start() first"
        return self.ua.uri

    @property
    def allow(self) -> str:
        assert self.ua is not None
        return f"sip:*@{HOST}:{self.ua.sip_port}"

    def voicegw_port(self) -> int | None:
        return None

    def start(self, mode: str) -> None:
        self.ua = Baresip(self.workdir, "agent", answermode="auto" if mode == "answer" else "manual",
                          tone_hz=self.tone_hz).start()
        if mode == "busy":
            ua = self.ua

            def reject() -> None:
                if ua.wait_event("CALL_INCOMING", 30) is not None:
                    ua.hangup()

            self._rejecter = threading.Thread(target=reject, name="baresip-reject", daemon=True)
            self._rejecter.start()

    def wait_answered(self, timeout: float = 10.0) -> bool:
        assert self.ua is not None
        return self.ua.wait_event("CALL_ESTABLISHED", timeout) is not None

    def talk(self, hz: float) -> None:
        assert hz == self.tone_hz, "baresip's microphone is the tone it was started with"

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        assert self.ua is not None
        ua = self.ua
        since = ua.received_seconds()
        return wait_until(lambda: ua.received_seconds() >= since + 0.6 and hears(ua.received(since), hz),
                          timeout, 0.2)

    def invite(self, timeout: float = 5.0) -> SipMessage | None:
        assert self.ua is not None
        ua = self.ua
        wait_until(lambda: bool(ua.requests("INVITE")), timeout, 0.05)
        found = ua.requests("INVITE")
        return found[0] if found else None

    def caller_context(self) -> str | None:
        invite = self.invite()
        return invite.header("x-vg-caller") if invite else None

    def _wait_request(self, method: str, timeout: float) -> bool:
        assert self.ua is not None
        ua = self.ua
        return wait_until(lambda: bool(ua.requests(method)), timeout, 0.05)

    def wait_cancelled(self, timeout: float = 10.0) -> bool:
        return self._wait_request("CANCEL", timeout)

    def wait_bye(self, timeout: float = 10.0) -> bool:
        return self._wait_request("BYE", timeout)

    def report(self) -> str:
        return self.ua.report() if self.ua is not None else ""

    def close(self) -> None:
        if self.ua is not None:
            self.ua.stop()
        if self._rejecter is not None:
            self._rejecter.join(2)
