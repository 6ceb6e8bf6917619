"""PJSIP (pjsua2, one process per UA: peers.pjsua) in the roles of tests/peers/roles.py:
caller, agent, bot; tones fed into the call and detected in its recordings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from peers.calls import HOST, SipMessage
from peers.daemon import DaemonProcess
from peers.pjsua import PjCall, Pjsua, PjsuaError, hears


def _pj_hears(call: PjCall, hz: float, timeout: float, chunk: float = 0.6) -> bool:
    """Record ``chunk`` seconds at a time until ``hz`` is heard or ``timeout`` passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hears(call.record(chunk), hz):
            return True
    return False


class _Pj:
    ua: Pjsua | None = None
    the_call: PjCall | None = None

    def report(self) -> str:
        return self.ua.report() if self.ua is not None else ""

    def close(self) -> None:
        if self.ua is not None:
            self.ua.stop()


class PjsuaCaller(_Pj):
    """PJSIP (pjsua2, its own process) calling voicegw."""

    name = "pjsua"
    detects = True
    user = "caller"

    def __init__(self, workdir: Path) -> None:
        self.ua = Pjsua(workdir, "caller", user=self.user).start()

    def voicegw_port(self) -> int | None:
        return None

    def call(self, voicegw: DaemonProcess) -> None:
        assert self.ua is not None
        self.the_call = self.ua.call(f"sip:demo@{voicegw.host}:{voicegw.port}")
        self.the_call.wait_confirmed()

    def talk(self, hz: float) -> None:
        assert self.the_call is not None
        self.the_call.tone(hz)

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        assert self.the_call is not None
        return _pj_hears(self.the_call, hz, timeout)

    def kept(self) -> bool:
        assert self.the_call is not None and self.ua is not None
        return self.the_call.state != "DISCONNECTED" and not self.ua.requests("BYE")

    def hang_up(self) -> None:
        assert self.the_call is not None and self.ua is not None
        self.the_call.hangup()
        self.the_call.wait_disconnected()
        self.ua.wait_sip("BYE", "in", status=200)  # voicegw answered our BYE


class PjsuaAgent(_Pj):
    """PJSIP as the agent: ``incoming`` answer / busy (486) / ignore (rings)."""

    name = "pjsua"
    detects = True
    INCOMING: ClassVar[dict[str, str]] = {"answer": "answer", "busy": "busy", "never": "ignore"}

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ua = Pjsua(workdir, "agent").start()
        self.uri = self.ua.contact()
        self.allow = f"sip:*@{HOST}:{self.ua.port}"

    def voicegw_port(self) -> int | None:
        return None

    def start(self, mode: str) -> None:
        assert self.ua is not None
        self.ua.set(incoming=self.INCOMING[mode])

    def _call(self, timeout: float = 10.0) -> PjCall:
        assert self.ua is not None
        if self.the_call is None:
            self.the_call = self.ua.incoming(timeout)
        return self.the_call

    def wait_answered(self, timeout: float = 10.0) -> bool:
        try:
            self._call(timeout).wait_confirmed(timeout)
        except PjsuaError:
            return False
        return True

    def talk(self, hz: float) -> None:
        self._call().tone(hz)

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        return _pj_hears(self._call(), hz, timeout)

    def invite(self, timeout: float = 5.0) -> SipMessage | None:
        assert self.ua is not None
        try:
            return self.ua.wait_sip("INVITE", "in", timeout)[0]
        except PjsuaError:
            return None

    def caller_context(self) -> str | None:
        invite = self.invite()
        return invite.header("x-vg-caller") if invite else None

    def wait_cancelled(self, timeout: float = 10.0) -> bool:
        assert self.ua is not None
        try:
            self.ua.wait_sip("CANCEL", "in", timeout)
        except PjsuaError:
            return False
        return True

    def wait_bye(self, timeout: float = 10.0) -> bool:
        assert self.ua is not None
        try:
            self.ua.wait_sip("BYE", "in", timeout)
        except PjsuaError:
            return False
        return True


class PjsuaBot(_Pj):
    """PJSIP as the bot: answers, plays ``tone_hz``, REFERs when told; it leaves the
    BYE to voicegw (``bye_after_transfer`` off)."""

    name = "pjsua"
    detects = True

    def __init__(self, workdir: Path, tone_hz: float = 1700.0) -> None:
        self.tone_hz = tone_hz
        self.ua = Pjsua(workdir, "bot", tone_hz=tone_hz, bye_after_transfer=False).start()
        self.uri = self.ua.contact()
        self.target = ""

    def start(self, refer_to: str, succeeds: bool) -> None:
        self.target = refer_to

    def refer(self) -> None:
        assert self.ua is not None
        self.the_call = self.ua.incoming()
        self.the_call.wait_confirmed()
        self.the_call.refer(self.target)

    def sound(self, caller_hz: float) -> float:
        return self.tone_hz

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        assert self.the_call is not None
        return _pj_hears(self.the_call, hz, timeout)

    def notified(self) -> list[int]:
        assert self.the_call is not None
        return [status for status, _ in self.the_call.transfer_statuses()]

    def wait_final(self, timeout: float = 15.0) -> tuple[int, bool]:
        assert self.the_call is not None
        return self.the_call.wait_transfer_final(timeout), True

    def wait_bye(self, timeout: float = 10.0) -> bool:
        assert self.ua is not None
        try:
            self.ua.wait_sip("BYE", "in", timeout)
        except PjsuaError:
            return False
        return True

    def wait_kept(self, timeout: float = 10.0) -> bool:
        assert self.the_call is not None and self.ua is not None
        return self.the_call.state == "CONFIRMED" and not self.ua.requests("BYE")

    def finish(self) -> None:
        assert self.the_call is not None
        self.the_call.wait_disconnected()
