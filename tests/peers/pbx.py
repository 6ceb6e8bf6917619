"""The parties around a PBX in wire tests (Asterisk now, any PBX that dials extensions
and takes registrations): a phone that calls an extension, an agent that registers
with digest auth, tones sent and detected on both, and voicegw started on the port
the PBX expects, with a flow and prompts written for the test.

- :class:`Phone`: the scripted carrier (peers.agent.Carrier: raw SIP over UDP, RTP
  kept with arrival times, REFER answered 202) whose INVITE names an extension; its
  From user names the PBX endpoint.
- :class:`RegisteredAgent`: the scripted agent (peers.agent.Agent: answers, busy or
  never; RTP kept; echo) that first REGISTERs with digest auth, answering the
  challenge with voicegw's own digest client (sip/digest_client.py).
- :class:`Talker`: a paced tone (20 ms PCMU frames with real RTP timing) from any
  socket towards wherever the party's call sends media; :func:`tone_packets` counts
  the received packets dominated by a frequency (Goertzel).
- :func:`start_voicegw`: ``voicegw run`` on the PBX's ``voicegw_port`` with a
  ``calls:`` section, an optional flow (its prompts are tone WAVs) and the API off.
"""

from __future__ import annotations

import functools
import random
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from peers.agent import Agent, Carrier
from peers.caller import _media_address
from peers.calls import free_block
from peers.daemon import DaemonProcess, wait_until
from voicegw.media import g711
from voicegw.media.tones import goertzel_power
from voicegw.media.wav import write_wav
from voicegw.sip.digest_client import Account, DigestClient, Refused
from voicegw.sip.message import Request, Response
from voicegw.sip.parser import parse_message

HOST = "127.0.0.1"


# ------------------------------------------------------------------------------ tones
def tone_frame(freq: float, index: int, amplitude: float = 8000.0) -> bytes:
    """The ``index``-th 20 ms PCMU frame of a continuous sine at ``freq`` Hz."""
    t = (np.arange(160) + 160 * index) / 8000.0
    return g711.ulaw_encode((amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16))


@functools.lru_cache(maxsize=50_000)
def _dominant(payload: bytes, freq: float) -> bool:
    samples = g711.ulaw_decode(payload).astype(np.float64)
    if np.sqrt(np.mean(samples**2)) < 300:
        return False
    total = float(np.mean((samples / 32768.0) ** 2))
    # a pure sine of mean power P has Goertzel power P/2 at its frequency
    return goertzel_power(samples, freq) > 0.35 * total


def tone_packets(packets: list[bytes], freq: float) -> int:
    """How many PCMU RTP packets (header included) carry mostly ``freq`` Hz."""
    return sum(1 for p in packets if len(p) == 172 and p[1] & 0x7F == 0 and _dominant(p[12:], freq))


def tone_wav(path: Path, freq: float, seconds: float = 0.6, gap: float = 0.1) -> Path:
    """A prompt: ``seconds`` of ``freq`` Hz then ``gap`` of silence (8 kHz WAV)."""
    t = np.arange(int(seconds * 8000)) / 8000
    tone = 12000 * np.sin(2 * np.pi * freq * t)
    write_wav(path, np.concatenate([tone, np.zeros(int(gap * 8000))]).astype(np.int16))
    return path


class Talker:
    """Sends a tone as paced RTP from ``sock`` to ``dest()`` until :meth:`stop`
    (bounded by ``seconds``); ``dest`` is asked every frame, so a party whose media
    address changes (or is not known yet) is followed."""

    def __init__(self, sock: Any, dest: Callable[[], tuple[str, int] | None], freq: float,
                 seconds: float = 30.0) -> None:
        self.sock, self.dest, self.freq, self.seconds = sock, dest, freq, seconds
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"talker-{freq}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq, ts, ssrc = random.getrandbits(16), random.getrandbits(32), random.getrandbits(32)
        start = time.monotonic()
        index = 0
        while not self._stop.is_set() and time.monotonic() - start < self.seconds:
            dest = self.dest()
            if dest is not None:
                header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
                try:
                    self.sock.sendto(header + tone_frame(self.freq, index), dest)
                    self.sent += 1
                except OSError:
                    return
            seq, ts, index = seq + 1, ts + 160, index + 1
            # pace on the clock, not on the sleeps (20 ms per frame)
            delay = start + index * 0.02 - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


# ------------------------------------------------------------------------------ the phone
@dataclass
class Phone(Carrier):
    """A caller that dials extension ``exten`` of the PBX at ``daemon`` (the field
    name is the caller's: the address it sends to)."""

    user: str = "phone"
    exten: str = "vg"
    """The request URI's user; empty: a URI with no user (e.g. a Contact)."""

    @property
    def request_uri(self) -> str:
        host = f"{self.daemon[0]}:{self.daemon[1]}"
        return f"sip:{self.exten}@{host}" if self.exten else f"sip:{host}"

    def invite(self, extra: str = "", timeout: float = 20.0) -> Response:
        branch = f"z9hG4bK{random.getrandbits(48):x}"
        self.invite_branch = branch
        body = self.sdp()
        data = (
            f"INVITE {self.request_uri} SIP/2.0\r\n"
            + self._headers("INVITE", 1, branch, None).replace(
                f"<sip:demo@{self.daemon[0]}:{self.daemon[1]}>", f"<{self.request_uri}>", 1)
            + extra + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.sip.sendto(data, self.daemon)
        final = self.wait_response("INVITE", timeout)
        to = final.headers.get("to") or ""
        if 200 <= final.status < 300:
            self.to_tag = final.to.tag
            self.remote_media = _media_address(final.body)
            self._send_in_dialog("ACK", cseq=1)
        else:  # RFC 3261 17.1.1.3: the ACK of a non-2xx final is part of the transaction
            ack = (
                f"ACK {self.request_uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {HOST}:{self.sip_port};branch={branch};rport\r\n"
                f"From: <sip:{self.user}@{HOST}>;tag={self.from_tag}\r\nTo: {to}\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            self.sip.sendto(ack, self.daemon)
        return final

    def talk(self, freq: float, seconds: float = 30.0) -> Talker:
        return Talker(self.rtp, lambda: self.remote_media, freq, seconds)

    def heard(self, freq: float, since: float = 0.0, until: float = float("inf")) -> int:
        """Packets of ``freq`` Hz received in [since, until)."""
        return tone_packets([p for t, p in list(self.rtp_log) if since <= t < until], freq)

    def wait_heard(self, freq: float, packets: int = 15, since: float = 0.0, timeout: float = 20.0) -> bool:
        """Listen (answering SIP) until ``packets`` of ``freq`` Hz arrived after ``since``."""
        return self.listen(timeout, lambda: self.heard(freq, since) >= packets, every=0.05)


# ------------------------------------------------------------------------------ the agent
class RegisteredAgent(Agent):
    """An agent that registers its contact with the PBX (digest auth) before it is
    dialled; everything else as :class:`peers.agent.Agent`."""

    def register(self, registrar: tuple[str, int], username: str, password: str,
                 expires: int = 300, timeout: float = 10.0) -> Response:
        """REGISTER; a 401/407 is answered by voicegw's own digest client
        (sip/digest_client.DigestClient, as voicegw answers a trunk's challenge) until it
        refuses (:attr:`refused` then says why); returns the final response.
        Remembered for :meth:`unregister`."""
        self.registration = (registrar, username, password)
        self.refused: str | None = None
        client = DigestClient(Account(username, password), cnonce=lambda: uuid.uuid4().hex[:16])
        call_id = f"reg-{uuid.uuid4().hex}@{HOST}"
        tag = uuid.uuid4().hex[:8]
        uri = f"sip:{registrar[0]}:{registrar[1]}"
        authorization = ""
        for cseq in (1, 2, 3):
            data = (
                f"REGISTER {uri} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
                f"From: <sip:{username}@{registrar[0]}>;tag={tag}\r\n"
                f"To: <sip:{username}@{registrar[0]}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\n"
                f"Contact: <sip:{self.user}@{self.host}:{self.port}>\r\nExpires: {expires}\r\n"
                f"{authorization}Max-Forwards: 70\r\nUser-Agent: voicegw-test-agent\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            self._send(data, registrar)
            final = self._wait_response(call_id, cseq, timeout)
            if final.status not in (401, 407):
                return final
            request = parse_message(data)
            assert isinstance(request, Request)
            outcome = client.answer(request, final)
            if isinstance(outcome, Refused):
                self.refused = outcome.reason
                return final
            authorization = "".join(f"{name}: {value}\r\n" for name, value in outcome.headers)
        return final

    def unregister(self, timeout: float = 10.0) -> Response | None:
        """Remove the contact (Expires: 0), so the PBX does not dial a closed agent."""
        if getattr(self, "registration", None) is None:
            return None
        registrar, username, password = self.registration
        return self.register(registrar, username, password, expires=0, timeout=timeout)

    def _wait_response(self, call_id: str, cseq: int, timeout: float) -> Response:
        found: list[Response] = []

        def final() -> bool:
            found[:] = [m for _, m in list(self.messages)
                        if isinstance(m, Response) and m.call_id == call_id and m.cseq.seq == cseq
                        and m.status >= 200]
            return bool(found)

        if not wait_until(final, timeout, 0.02):
            raise TimeoutError(f"no final response to REGISTER (CSeq {cseq}) within {timeout} s")
        return found[0]

    def talk(self, freq: float, seconds: float = 30.0) -> Talker:
        return Talker(self.rtp, lambda: self.call.remote_media if self.call else None, freq, seconds)

    def heard(self, freq: float, since: float = 0.0) -> int:
        return tone_packets([p for t, p in list(self.rtp_in) if t >= since], freq)

    def wait_heard(self, freq: float, packets: int = 15, since: float = 0.0, timeout: float = 20.0) -> bool:
        return wait_until(lambda: self.heard(freq, since) >= packets, timeout, 0.05)


# ------------------------------------------------------------------------------ voicegw
def start_voicegw(workdir: Path, port: int, *, calls: dict[str, Any] | None = None,
                  flow: dict[str, Any] | None = None, args: tuple[str, ...] = (),
                  rtp_ports: int = 40, profiles: str | None = None) -> DaemonProcess:
    """``voicegw run`` on 127.0.0.1:``port`` (where the PBX sends and expects it), with
    ``calls`` and, when given, ``flow`` as the default flow; the control API is off."""
    workdir.mkdir(parents=True, exist_ok=True)
    # a call still up at the end (a leg the PBX has given up on) must not hold the stop
    config: dict[str, Any] = {"api": {"enabled": False}, "calls": calls or {},
                              "lifecycle": {"drain_deadline": 1}}
    if flow is not None:
        flows = workdir / "flows"
        flows.mkdir(exist_ok=True)
        (flows / "test.yaml").write_text(yaml.safe_dump(flow, sort_keys=False), encoding="utf-8")
        config.update(flows_dir=str(flows), default_flow="test")
    if profiles is not None:  # a sip_profiles folder
        config["profiles_dir"] = profiles
    path = workdir / "voicegw.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    low = free_block(rtp_ports)
    daemon = DaemonProcess(HOST, port, "--config", str(path), "--rtp-ports", f"{low}-{low + rtp_ports - 1}", *args)
    # a bound, not a speed check: importing voicegw took 12 s on this 2-core box under load
    return daemon.start(timeout=60)


def logged(daemon: DaemonProcess, event: str, **fields: object) -> list[dict[str, Any]]:
    """The daemon's JSON log lines ``event`` whose fields match."""
    return [e for e in daemon.events()
            if e.get("event") == event and all(e.get(k) == v for k, v in fields.items())]


def wait_logged(daemon: DaemonProcess, event: str, timeout: float = 20.0, **fields: object) -> dict[str, Any]:
    if not wait_until(lambda: bool(logged(daemon, event, **fields)), timeout, 0.05):
        tail = "\n".join(daemon.lines[-25:])
        raise AssertionError(f"voicegw logged no {event} {fields} within {timeout} s\n{tail}")
    return logged(daemon, event, **fields)[0]


# ------------------------------------------------------------------------------ the lab
class PbxLab:
    """One test's parties around ``pbx`` (an Asterisk, or any PBX object with
    ``address``, ``sip_port``, ``voicegw_port``, ``agent_password``, ``contacts()``
    and ``channels()``): everything started here is stopped by :meth:`close`,
    voicegw last, which returns the daemon's error lines."""

    def __init__(self, pbx: Any, workdir: Path) -> None:
        self.pbx = pbx
        self.workdir = workdir
        self.daemon: DaemonProcess | None = None
        self.phones: list[Phone] = []
        self.agents: list[RegisteredAgent] = []
        self.talkers: list[Talker] = []

    def agent(self, register: bool = True, **kwargs: Any) -> RegisteredAgent:
        """An agent (``mode``, ``answer_delay``, ``echo`` as peers.agent.Agent), by
        default registered with the PBX as ``agent`` (digest auth)."""
        agent = RegisteredAgent(**kwargs)
        self.agents.append(agent)
        if register:
            final = agent.register(self.pbx.address, "agent", self.pbx.agent_password)
            assert final.status == 200, f"REGISTER answered {final.status}"
            assert any(f":{agent.port}" in c for c in self.pbx.contacts("agent")), self.pbx.contacts("agent")
        return agent

    def voicegw(self, flow: dict[str, Any] | None = None, args: tuple[str, ...] = (),
                **calls: Any) -> DaemonProcess:
        """voicegw where the PBX expects it; transfers to the PBX are allowed."""
        allow = [f"sip:*@{HOST}:{self.pbx.sip_port}", *calls.pop("transfer_allow", [])]
        calls = {"transfer_allow": allow, "ringback": "silence", **calls}
        self.daemon = start_voicegw(self.workdir / "voicegw", self.pbx.voicegw_port, calls=calls,
                                    flow=flow, args=args)
        return self.daemon

    def phone(self, exten: str, to: tuple[str, int] | None = None) -> Phone:
        """A phone calling ``exten`` at the PBX (or at ``to``, e.g. voicegw itself)."""
        phone = Phone(to or self.pbx.address, exten=exten)
        self.phones.append(phone)
        return phone

    def talk(self, party: Phone | RegisteredAgent, freq: float) -> Talker:
        talker = party.talk(freq)
        self.talkers.append(talker)
        return talker

    def close(self) -> list[dict[str, Any]]:
        for talker in self.talkers:
            talker.stop()
        for phone in self.phones:
            phone.hang_up_quietly()
            phone.close()
        for agent in self.agents:
            try:
                agent.unregister()
            finally:
                agent.close()
        errors: list[dict[str, Any]] = []
        if self.daemon is not None:
            errors = [e for e in self.daemon.events() if e.get("level") in ("error", "critical")]
            if self.daemon.running():
                try:
                    self.daemon.terminate()
                finally:
                    self.daemon.kill()
        return errors
