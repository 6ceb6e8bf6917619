"""Asterisk and FreeSWITCH in the roles of tests/peers/roles.py: the carrier of a scripted
phone (peers.pbx.Phone) that calls voicegw through them, and the PBX in front of a
scripted agent (peers.pbx.RegisteredAgent) that voicegw's INVITE transfer dials."""

from __future__ import annotations

import abc
import re
import time

from peers.calls import HOST, SipMessage
from peers.daemon import DaemonProcess, wait_until
from peers.freeswitch import FreeSwitch
from peers.pbx import PbxLab, Phone, RegisteredAgent, Talker
from voicegw.sip.message import Request


class _PhoneCaller(abc.ABC):
    """The scripted phone (peers.pbx.Phone: SIP and RTP over its own sockets, tones sent
    by a thread and detected per packet) calling through a PBX upstream of voicegw."""

    name = "phone"
    detects = True
    user = "phone"  # peers.pbx.Phone's From

    def __init__(self) -> None:
        self.phone: Phone | None = None
        self.talker: Talker | None = None

    @abc.abstractmethod
    def _dial(self) -> tuple[tuple[str, int], str]:
        """The PBX's SIP address and the extension that reaches voicegw through it."""

    def call(self, voicegw: DaemonProcess) -> None:
        self.voicegw = voicegw
        address, exten = self._dial()
        self.phone = Phone(address, exten=exten)
        final = self.phone.invite()
        assert final.status == 200, f"the phone's call through the PBX: {final.status}\n{self.report()}"

    def talk(self, hz: float) -> None:
        assert self.phone is not None
        if self.talker is not None:
            self.talker.stop()
        self.talker = self.phone.talk(hz)

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        assert self.phone is not None
        return self.phone.wait_heard(hz, packets=15, since=time.monotonic(), timeout=timeout)

    def kept(self) -> bool:
        assert self.phone is not None
        self.phone.listen(0.2)  # answer and see whatever SIP is waiting
        return not self.phone.got_request("BYE")

    def hang_up(self) -> None:
        assert self.phone is not None
        if self.talker is not None:
            self.talker.stop()
        assert self.phone.bye().status == 200

    def report(self) -> str:
        if self.phone is None:
            return ""
        return "phone SIP: " + " | ".join(
            (m.method if isinstance(m, Request) else f"{m.status} {m.cseq.method}")
            for _, m in self.phone.sip_log)

    def close(self) -> None:
        if self.talker is not None:
            self.talker.stop()
        if self.phone is not None:
            self.phone.hang_up_quietly()
            self.phone.close()


class AsteriskCaller(_PhoneCaller):
    """A phone calling Asterisk's ``vg`` extension, which Dials voicegw
    (templates/asterisk/extensions.conf): Asterisk is the carrier."""

    name = "asterisk"

    def __init__(self, lab: PbxLab) -> None:
        super().__init__()
        self.lab = lab

    def voicegw_port(self) -> int | None:
        return self.lab.pbx.voicegw_port

    def _dial(self) -> tuple[tuple[str, int], str]:
        return self.lab.pbx.address, "vg"


class FreeSwitchCaller(_PhoneCaller):
    """A phone calling FreeSWITCH's ``bridge-<voicegw port>`` (the shipped test
    dialplan): FreeSWITCH is the carrier."""

    name = "freeswitch"

    def __init__(self, fs: FreeSwitch) -> None:
        super().__init__()
        self.fs = fs

    def voicegw_port(self) -> int | None:
        return None

    def _dial(self) -> tuple[tuple[str, int], str]:
        return self.fs.address, f"bridge-{self.voicegw.port}"


class _BehindPbx:
    """An agent behind a PBX: voicegw dials a number of the PBX, the PBX dials the
    scripted agent (peers.pbx.RegisteredAgent) that answers / refuses / rings."""

    name = "pbx"
    detects = True

    def __init__(self, agent: RegisteredAgent) -> None:
        self.agent = agent
        self.talker: Talker | None = None

    def start(self, mode: str) -> None:
        self.agent.mode = mode

    def wait_answered(self, timeout: float = 10.0) -> bool:
        return self.agent.wait_answered(timeout)

    def talk(self, hz: float) -> None:
        self.talker = self.agent.talk(hz)

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        return self.agent.wait_heard(hz, since=time.monotonic(), timeout=timeout)

    def invite(self, timeout: float = 5.0) -> SipMessage | None:
        wait_until(lambda: self.agent.call is not None, timeout, 0.05)
        call = self.agent.call
        return SipMessage.parse(call.raw, "in") if call is not None else None

    def caller_context(self) -> str | None:
        invite = self.invite()
        return invite.header("x-vg-caller") if invite else None

    def wait_cancelled(self, timeout: float = 10.0) -> bool:
        return self.agent.wait_for("CANCEL", timeout)

    def wait_bye(self, timeout: float = 10.0) -> bool:
        return self.agent.wait_for("BYE", timeout)

    def report(self) -> str:
        invite = self.agent.call.raw.decode(errors="replace") if self.agent.call else "(none)"
        return "agent sent: " + " | ".join(line for _, line in self.agent.sent) + f"\nits INVITE:\n{invite}"

    def close(self) -> None:
        if self.talker is not None:
            self.talker.stop()


class AsteriskAgent(_BehindPbx):
    """Asterisk's ``queue`` extension: it reads voicegw's X-VG-Caller (PJSIP_HEADER) and
    Dials the agent registered with digest auth, handing the value on as the caller's
    name ("vg-caller <value>"); busy -> 486, the agent's ringing -> 180."""

    name = "asterisk"

    def __init__(self, lab: PbxLab) -> None:
        super().__init__(lab.agent())  # registered (and unregistered) by the lab
        self.lab = lab
        self.uri = lab.pbx.uri("queue")
        self.allow = f"sip:*@{HOST}:{lab.pbx.sip_port}"

    def voicegw_port(self) -> int | None:
        return self.lab.pbx.voicegw_port  # Asterisk knows voicegw by its address

    def caller_context(self) -> str | None:
        invite = self.invite()
        found = re.match(r'\s*"vg-caller ([^"]*)"', (invite.header("from") or "") if invite else "")
        return found.group(1) if found else None


class FreeSwitchAgent(_BehindPbx):
    """FreeSWITCH's ``bridge-<port>``: it bridges voicegw's INVITE to the scripted agent
    (copying voicegw's X- headers), passing its answer, 486 or ringing back."""

    name = "freeswitch"

    def __init__(self, fs: FreeSwitch) -> None:
        super().__init__(RegisteredAgent())
        self.uri = fs.uri(f"bridge-{self.agent.port}")
        self.allow = f"sip:*@{HOST}:{fs.sip_port}"

    def voicegw_port(self) -> int | None:
        return None

    def close(self) -> None:
        super().close()
        self.agent.close()
