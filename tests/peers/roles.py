"""The parts of a transfer scenario and the peers that can play them (issue 11 item 3).

tests/wire/test_scenarios_wire.py writes each transfer scenario once, in terms of three
roles, and runs it with every peer that can play each part:

- :class:`Caller`: calls voicegw (directly, or through a PBX upstream of it), sends a
  tone, tells whether it hears one, hangs up, and reports what it saw;
- :class:`Agent`: a SIP URI voicegw's INVITE transfer dials; it answers, refuses with
  486 or never answers; sends and detects a tone; shows the INVITE it got;
- :class:`Bot`: answers voicegw's bot leg and REFERs it to the agent; reports the
  NOTIFY sipfrags it got and whether voicegw sent it a BYE.

The roles are ``typing.Protocol`` classes: an adapter is any class with those members.
The adapters below wrap the peers of this package (sipp, the scripted caller/agent,
pjsua2, baresip, Asterisk, FreeSWITCH) without changing them.

Audio. A peer either *detects* tones (``detects = True``: it records what it receives
and tells a frequency apart with Goertzel, :func:`peers.pjsua.hears` or
:func:`peers.pbx.tone_packets`) or *echoes* what it receives (sipp's ``-rtp_echo``).
Between a detecting and an echoing peer, one tone that comes back proves both
directions; two echoing peers cannot check audio, and the table never pairs them where
audio is asserted.

Ports. A PBX upstream of voicegw or in front of the agent expects voicegw at the port
its config names (Asterisk identifies the ``voicegw`` endpoint by address):
:meth:`Caller.voicegw_port` / :meth:`Agent.voicegw_port` say so, None where any port
does.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import ClassVar, Protocol

from peers.baresip import Baresip
from peers.calls import HOST, SCENARIOS, SipMessage, SippPeer
from peers.daemon import DaemonProcess, wait_until
from peers.freeswitch import FreeSwitch
from peers.lab import sipfrags
from peers.net import free_port
from peers.pbx import PbxLab, Phone, RegisteredAgent, Talker
from peers.pjsua import PjCall, Pjsua, PjsuaError, hears
from voicegw.sip.message import Request

MODES = ("answer", "busy", "never")
"""What an agent does with voicegw's INVITE: 200, 486, ring until CANCEL."""


class Caller(Protocol):
    name: str
    detects: bool
    """True: :meth:`hears` tells a tone apart; False: it echoes what it receives."""
    user: str
    """The user of its From URI: what voicegw hands the agent as X-VG-Caller (a PBX
    upstream keeps it as the caller id)."""

    def voicegw_port(self) -> int | None:
        """The port voicegw must listen on for this caller to reach it (None: any)."""

    def call(self, voicegw: DaemonProcess) -> None:
        """Call voicegw and return once the call is up (AssertionError if it is not)."""

    def talk(self, hz: float) -> None:
        """Send a continuous ``hz`` tone from now on (an echoing caller does nothing)."""

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        """``hz`` arrives within ``timeout``."""

    def kept(self) -> bool:
        """The call is still up: nobody hung it up on the caller."""

    def hang_up(self) -> None:
        """End the call from the caller's side (and check it ended cleanly)."""

    def report(self) -> str: ...

    def close(self) -> None: ...


class Agent(Protocol):
    name: str
    detects: bool
    uri: str
    """What voicegw dials (the bot REFERs to it)."""
    allow: str
    """The transfer_allow pattern that lets voicegw dial :attr:`uri`."""

    def voicegw_port(self) -> int | None: ...

    def start(self, mode: str) -> None:
        """Be ready to be dialled: ``answer``, ``busy`` (486) or ``never`` (rings)."""

    def wait_answered(self, timeout: float = 10.0) -> bool: ...

    def talk(self, hz: float) -> None: ...

    def hears(self, hz: float, timeout: float = 8.0) -> bool: ...

    def invite(self, timeout: float = 5.0) -> SipMessage | None:
        """The INVITE the agent's UA got (from voicegw, or from the PBX voicegw dialled)."""

    def caller_context(self) -> str | None:
        """voicegw's X-VG-Caller as the agent can read it (a header, or what the PBX
        made of it)."""

    def wait_cancelled(self, timeout: float = 10.0) -> bool:
        """The ringing agent got a CANCEL."""

    def wait_bye(self, timeout: float = 10.0) -> bool:
        """The answered agent got a BYE (the caller hung up through voicegw)."""

    def report(self) -> str: ...

    def close(self) -> None: ...


class Bot(Protocol):
    name: str
    detects: bool
    uri: str
    """voicegw's --bot-uri."""

    def start(self, refer_to: str, succeeds: bool) -> None:
        """Listen for voicegw's bot leg; REFER it to ``refer_to`` once answered;
        ``succeeds`` says whether the transfer is expected to (the sipp bot's script
        differs: it leaves, or stays and probes its leg)."""

    def refer(self) -> None:
        """REFER now (the caller is connected); a scripted bot REFERs by itself."""

    def sound(self, caller_hz: float) -> float:
        """What a caller sending ``caller_hz`` hears while it talks to this bot."""

    def hears(self, hz: float, timeout: float = 8.0) -> bool: ...

    def wait_final(self, timeout: float = 15.0) -> tuple[int, bool]:
        """The status of the final NOTIFY sipfrag about its REFER (and that it was final)."""

    def notified(self) -> list[int]:
        """Every sipfrag status NOTIFYed to the bot so far, in order."""

    def wait_bye(self, timeout: float = 10.0) -> bool:
        """voicegw hung up the bot's leg."""

    def wait_kept(self, timeout: float = 10.0) -> bool:
        """After a failed transfer: the bot's leg is still up (an in-dialog request of
        the bot answered, or no BYE)."""

    def finish(self) -> None:
        """After the call: the bot's side ended cleanly (sipp exited 0, ...)."""

    def report(self) -> str: ...

    def close(self) -> None: ...


# ------------------------------------------------------------------------------ sipp
class _Sipp:
    """A sipp process kept by an adapter (its message log is its view of the wire)."""

    peer: SippPeer | None = None

    def _messages(self) -> list[SipMessage]:
        return self.peer.messages() if self.peer is not None else []

    def _flow(self) -> list[str]:
        return self.peer.flow() if self.peer is not None else []

    def _exited_ok(self, timeout: float) -> bool:
        assert self.peer is not None
        code = self.peer.wait(timeout)
        assert code == 0, f"sipp {self.peer.name} exited {code}\n{self.peer.report()}"
        return True

    def report(self) -> str:
        return self.peer.report() if self.peer is not None else ""

    def close(self) -> None:
        if self.peer is not None:
            self.peer.stop()


class SippCaller(_Sipp):
    """sipp as the caller (tests/peers/scenarios/ops_uac_call.xml): it echoes what it
    receives (``-rtp_echo``) and hangs up by itself after ``talk_ms`` (sipp takes no
    commands mid-call), so the scenario's checks must fit in that time; a BYE from
    voicegw before its own fails its script (exit code not 0)."""

    name = "sipp"
    detects = False
    user = "caller"  # ops_uac_call.xml's From

    def __init__(self, workdir: Path, talk_ms: int = 8000) -> None:
        self.workdir = workdir
        self.talk_ms = talk_ms

    def voicegw_port(self) -> int | None:
        return None

    def call(self, voicegw: DaemonProcess) -> None:
        self.peer = SippPeer("caller", SCENARIOS / "ops_uac_call.xml", self.workdir, remote=voicegw.address,
                             rtp_echo=True, extra=("-d", str(self.talk_ms))).start()
        self.voicegw = voicegw
        assert wait_until(lambda: "out ACK" in self._flow(), 10, 0.05), \
            f"the sipp caller's call was not connected\n{self.report()}"

    def talk(self, hz: float) -> None:
        pass  # sipp echoes

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        raise AssertionError("sipp cannot tell tones apart: it echoes (pair it with a detecting peer)")

    def kept(self) -> bool:
        return self.peer is not None and self.peer.proc is not None and self.peer.proc.poll() is None \
            and "in BYE" not in self._flow()

    def hang_up(self) -> None:
        self._exited_ok(self.talk_ms / 1000 + 10)
        assert "out BYE" in self._flow() and "in BYE" not in self._flow(), self._flow()


class SippAgent(_Sipp):
    """sipp as the agent: agent_answer.xml (its script checks voicegw's context headers;
    ``-rtp_echo``), agent_busy.xml (486), agent_noanswer.xml (180, then requires a CANCEL)."""

    name = "sipp"
    detects = False
    SCRIPTS: ClassVar[dict[str, str]] = {"answer": "agent_answer.xml", "busy": "agent_busy.xml",
                                         "never": "agent_noanswer.xml"}

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port(HOST)
        self.uri = f"sip:agent@{HOST}:{self.port}"
        self.allow = f"sip:*@{HOST}:{self.port}"

    def voicegw_port(self) -> int | None:
        return None

    def start(self, mode: str) -> None:
        self.peer = SippPeer("agent", SCENARIOS / self.SCRIPTS[mode], self.workdir, port=self.port,
                             rtp_echo=mode == "answer").start()

    def _wait_flow(self, line: str, timeout: float) -> bool:
        return wait_until(lambda: line in self._flow(), timeout, 0.05)

    def wait_answered(self, timeout: float = 10.0) -> bool:
        return self._wait_flow("in ACK", timeout)

    def talk(self, hz: float) -> None:
        pass

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        raise AssertionError("sipp cannot tell tones apart: it echoes (pair it with a detecting peer)")

    def invite(self, timeout: float = 5.0) -> SipMessage | None:
        self._wait_flow("in INVITE", timeout)
        return next((m for m in self._messages() if m.direction == "in" and m.method == "INVITE"
                     and m.status is None), None)

    def caller_context(self) -> str | None:
        invite = self.invite()
        return invite.header("x-vg-caller") if invite else None

    def wait_cancelled(self, timeout: float = 10.0) -> bool:
        # agent_noanswer.xml requires the CANCEL: its clean exit is the proof
        return self._wait_flow("in CANCEL", timeout) and self._exited_ok(timeout)

    def wait_bye(self, timeout: float = 10.0) -> bool:
        return self._wait_flow("in BYE", timeout) and self._exited_ok(timeout)


class SippBot(_Sipp):
    """sipp as the bot: bot_refer.xml (REFER, NOTIFYs, then voicegw's BYE) when the
    transfer should succeed, bot_refer_stay.xml (REFER, NOTIFYs, an INFO 1.5 s later
    proves its leg is still up, BYE when the call ends) when it should fail; it echoes
    the caller's audio (``-rtp_echo``)."""

    name = "sipp"
    detects = False

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port(HOST)
        self.uri = f"sip:bot@{HOST}:{self.port}"

    def start(self, refer_to: str, succeeds: bool) -> None:
        script = "bot_refer.xml" if succeeds else "bot_refer_stay.xml"
        self.peer = SippPeer("bot", SCENARIOS / script, self.workdir, port=self.port, rtp_echo=True,
                             keys={"refer_to": refer_to}).start()

    def refer(self) -> None:
        pass  # the script REFERs 300 ms after the ACK

    def sound(self, caller_hz: float) -> float:
        return caller_hz

    def hears(self, hz: float, timeout: float = 8.0) -> bool:
        raise AssertionError("sipp cannot tell tones apart: it echoes")

    def _frags(self) -> list[tuple[int, bool]]:
        return sipfrags(self._messages())

    def notified(self) -> list[int]:
        return [status for status, _ in self._frags()]

    def wait_final(self, timeout: float = 15.0) -> tuple[int, bool]:
        wait_until(lambda: any(final for _, final in self._frags()), timeout, 0.05)
        frags = self._frags()
        assert frags and frags[-1][1], f"no final NOTIFY reached the bot: {frags}\n{self.report()}"
        return frags[-1]

    def wait_bye(self, timeout: float = 10.0) -> bool:
        return wait_until(lambda: "in BYE" in self._flow(), timeout, 0.05)

    def wait_kept(self, timeout: float = 10.0) -> bool:
        # bot_refer_stay.xml's INFO, 1.5 s after the final NOTIFY, answered 200
        return wait_until(lambda: "in 200 INFO" in self._flow(), timeout, 0.05) \
            and "in BYE" not in self._flow()

    def finish(self) -> None:
        self._exited_ok(15)


# ------------------------------------------------------------------------------ pjsua2
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


# ------------------------------------------------------------------------------ baresip
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


# ------------------------------------------------------------------------------ PBXs
class _PhoneCaller:
    """The scripted phone (peers.pbx.Phone: SIP and RTP over its own sockets, tones sent
    by a thread and detected per packet) calling through a PBX upstream of voicegw."""

    name = "phone"
    detects = True
    user = "phone"  # peers.pbx.Phone's From

    def __init__(self) -> None:
        self.phone: Phone | None = None
        self.talker: Talker | None = None

    def _dial(self) -> tuple[tuple[str, int], str]:
        raise NotImplementedError

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
