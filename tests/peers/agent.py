"""A scripted agent (UAS) for wire tests: raw SIP over UDP plus an RTP socket.

The counterpart of :mod:`peers.caller`: voicegw dials it as the transfer target.
It answers an INVITE after an optional delay (``mode="answer"``), refuses it
(``mode="busy"``: 486 at once; ``mode="fail"``: 486 after the delay) or lets it ring
until CANCEL (``mode="never"``); rings with 180, or with 183 and early media
(``early``: SDP of its RTP socket; a second fork's 183 with another tag and socket;
no SDP), and may answer from another RTP socket than the 183's (``moved``); answers
CANCEL (200 + 487), BYE (200) and other in-dialog requests; records every SIP
message and RTP packet with the time it arrived; sends RTP and RFC 4733 DTMF to the
media address voicegw offered, and can echo what it receives. Everything runs on one
background thread, bounded by ``close()`` (also a context manager).

Also here, for the warm transfer tests and scripts/bench/warm_complete.py:
:class:`Carrier`, the scripted caller with timestamped RTP that answers REFER with
202 and sends NOTIFY sipfrag (the carrier side of REFER with Replaces), and
:class:`WarmDaemon`, ``voicegw run --config`` with a warm ``calls:`` section.

Times are ``time.monotonic()`` so a test can compare them with its own clock.
"""

from __future__ import annotations

import json
import random
import re
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from peers.caller import Caller, _ok, bound_udp, speech_energy
from peers.daemon import DaemonProcess
from voicegw.media.dtmf import event_payloads
from voicegw.sip.message import Request, Response
from voicegw.sip.parser import parse_message

T1 = 0.5


@dataclass
class AgentCall:
    """The (single) call the agent is handling: the INVITE as received, our tag."""

    invite: Request
    raw: bytes
    source: tuple[str, int]
    local_tag: str
    received_at: float
    remote_media: tuple[str, int] | None = None
    dtmf_pt: int = 101
    answered_at: float | None = None
    acked: bool = False
    cancelled: bool = False
    bye_received_at: float | None = None
    bye_sent_at: float | None = None
    final: bytes | None = None
    """Our last response to the INVITE (retransmitted on a retransmitted INVITE)."""

    @property
    def call_id(self) -> str:
        return self.invite.call_id

    @property
    def remote_tag(self) -> str:
        """voicegw's tag on the consult dialog (the INVITE's From tag)."""
        return self.invite.from_.tag or ""


@dataclass
class Agent:
    port: int = 0
    mode: str = "answer"
    """answer | busy | fail | never"""
    early: str = ""
    """How it rings: "" 180; "sdp" 183 with SDP (early media from ``rtp``); "fork" that,
    then a second fork's 183 (another To tag) with SDP of ``rtp2``; "nosdp" 183 without SDP."""
    moved: bool = False
    """The 200's SDP names ``rtp2``, which sends from then on (the answer's media differs
    from the early media's)."""
    answer_delay: float = 0.0
    echo: bool = False
    """Send every received PCMU payload back (with our own RTP header)."""
    host: str = "127.0.0.1"
    user: str = "agent"
    sip: socket.socket = field(init=False)
    rtp: socket.socket = field(init=False)
    call: AgentCall | None = field(default=None, init=False)
    messages: list[tuple[float, Request | Response]] = field(default_factory=list, init=False)
    rtp_in: list[tuple[float, bytes]] = field(default_factory=list, init=False)
    sent: list[tuple[float, str]] = field(default_factory=list, init=False)
    """(time, first line) of every SIP message the agent sent."""

    def __post_init__(self) -> None:
        self.sip = bound_udp(self.host) if not self.port else _bind(self.host, self.port)
        self.port = self.sip.getsockname()[1]
        self.rtp = _even_rtp_socket(self.host)
        self.rtp2 = _even_rtp_socket(self.host) if self.moved or self.early == "fork" else None
        self.rtp2_in: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._ssrc = random.getrandbits(32)
        self._cseq = 1
        self._answer_due: float | None = None
        self._retransmit: tuple[float, float, int] | None = None  # (next, interval, left)
        self._thread = threading.Thread(target=self._run, name=f"agent-{self.port}", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ life
    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{self.host}:{self.port}"

    @property
    def rtp_port(self) -> int:
        return self.rtp.getsockname()[1]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sip.close()
        self.rtp.close()
        if self.rtp2 is not None:
            self.rtp2.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ queries
    def requests(self, method: str) -> list[tuple[float, Request]]:
        return [(t, m) for t, m in list(self.messages) if isinstance(m, Request) and m.method == method]

    def got(self, method: str) -> bool:
        return bool(self.requests(method))

    def wait_for(self, method: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.got(method):
                return True
            time.sleep(0.02)
        return self.got(method)

    def wait_answered(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.call is not None and self.call.acked:
                return True
            time.sleep(0.02)
        return False

    def quiet(self, since: float, quiet: float = 0.3, min_packets: int = 10) -> bool:
        """At least ``min_packets`` RTP packets arrived after ``since``, then nothing
        for ``quiet`` seconds (a prompt played to its end)."""
        times = [t for t, _ in list(self.rtp_in) if t >= since]
        return len(times) >= min_packets and time.monotonic() - times[-1] >= quiet

    def audio(self, since: float = 0.0, until: float = float("inf")) -> list[bytes]:
        """PCMU packets received in [since, until)."""
        return [p for t, p in list(self.rtp_in) if since <= t < until and len(p) > 12 and p[1] & 0x7F == 0]

    def energy(self, since: float = 0.0, until: float = float("inf")) -> float:
        return speech_energy(self.audio(since, until))

    # ------------------------------------------------------------------ actions
    def send_rtp(self, payload: bytes, pt: int = 0, marker: bool = False, advance: int = 160,
                 timestamp: int | None = None, sock: socket.socket | None = None) -> None:
        """From ``sock``; default ``rtp``, or ``rtp2`` once a ``moved`` call is answered."""
        call = self.call
        if sock is None:
            sock = self.rtp2 if self.moved and call is not None and call.answered_at is not None else self.rtp
        assert call is not None and call.remote_media is not None, "no media address yet"
        with self._lock:
            ts = self._ts if timestamp is None else timestamp
            header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self._seq & 0xFFFF,
                                 ts & 0xFFFFFFFF, self._ssrc)
            self._seq += 1
            self._ts += advance
        sock.sendto(header + payload, call.remote_media)  # type: ignore[union-attr]

    def send_dtmf(self, digit: str) -> float:
        """An RFC 4733 key press: updates every 20 ms, then the end packet three times.
        Returns the time the first end packet left: the moment a receiver (voicegw's
        detector reports a digit at its first end packet) can know the key."""
        call = self.call
        assert call is not None
        with self._lock:
            start = self._ts  # every packet of one event carries its start (RFC 4733 2.3.1)
        ended = 0.0
        for payload, marker in event_payloads(digit):
            end = bool(payload[1] & 0x80)
            if end and not ended:
                ended = time.monotonic()
            self.send_rtp(payload, pt=call.dtmf_pt, marker=marker, advance=0, timestamp=start)
            if not end:
                time.sleep(0.02)
        with self._lock:
            self._ts = max(self._ts, start + 1600)
        return ended

    def bye(self) -> None:
        """Hang up the answered call (RFC 3261 15.1.1, UAS side)."""
        call = self.call
        assert call is not None and call.answered_at is not None
        invite = call.invite
        contact = invite.contacts[0].uri if invite.contacts else invite.from_.uri
        with self._lock:
            self._cseq += 1
            cseq = self._cseq
        to = invite.headers.get("from")
        frm = f"{invite.headers.get('to')};tag={call.local_tag}"
        routes = "".join(f"Route: {r}\r\n" for r in invite.headers.get_all("record-route"))
        data = (
            f"BYE {contact} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch=z9hG4bK{random.getrandbits(48):x};rport\r\n"
            f"From: {frm}\r\nTo: {to}\r\nCall-ID: {invite.call_id}\r\nCSeq: {cseq} BYE\r\n"
            f"{routes}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        call.bye_sent_at = time.monotonic()
        self._send(data, call.source)

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                socks = [self.sip, self.rtp] + ([self.rtp2] if self.rtp2 is not None else [])
                ready, _, _ = select.select(socks, [], [], 0.01)
            except (OSError, ValueError):
                return
            now = time.monotonic()
            for sock in ready:
                try:
                    data, addr = sock.recvfrom(65535)
                except OSError:
                    continue
                if sock is self.rtp:
                    self._rtp(now, data)
                elif sock is self.rtp2:
                    self.rtp2_in.append((now, data))
                else:
                    try:
                        self._sip(now, data, addr)
                    except Exception as error:  # noqa: BLE001 - a bad message must not kill the agent
                        self.sent.append((now, f"error: {error!r}"))
            self._timers(time.monotonic())

    def _rtp(self, now: float, data: bytes) -> None:
        self.rtp_in.append((now, data))
        if self.echo and len(data) > 12 and data[1] & 0x7F == 0 and self.call and self.call.remote_media:
            self.send_rtp(data[12:])

    def _timers(self, now: float) -> None:
        call = self.call
        if call is None:
            return
        if self._answer_due is not None and now >= self._answer_due:
            self._answer_due = None
            if not call.cancelled and self.mode == "fail":
                call.final = _response(call.invite, 486, "Busy Here", tag=call.local_tag)
                self._send(call.final, call.source)
                self._retransmit = (now + T1, T1, 6)
            elif not call.cancelled:
                self._answer(call)
        if self._retransmit is not None and call.final is not None:
            due, interval, left = self._retransmit
            if call.acked or left <= 0:
                self._retransmit = None
            elif now >= due:
                self._send(call.final, call.source)
                self._retransmit = (now + interval * 2, interval * 2, left - 1)

    def _sip(self, now: float, data: bytes, addr: tuple[str, int]) -> None:
        message = parse_message(data)
        self.messages.append((now, message))
        if isinstance(message, Response):
            return
        method = message.method
        call = self.call
        if method == "INVITE" and (call is None or call.call_id != message.call_id):
            self._new_invite(now, message, data, addr)
        elif call is None or message.call_id != call.call_id:
            if method != "ACK":
                self._send(_response(message, 481, "Call/Transaction Does Not Exist", tag="x"), addr)
        elif method == "INVITE" and message.cseq.seq == call.invite.cseq.seq:
            if call.final is not None:  # a retransmission: our answer again
                self._send(call.final, addr)
        elif method == "ACK":
            if message.cseq.seq == call.invite.cseq.seq:
                call.acked = True
        elif method == "CANCEL":
            self._send(_response(message, 200, "OK", tag=call.local_tag), addr)
            if call.answered_at is None and call.final is None:
                call.cancelled = True
                self._answer_due = None
                call.final = _response(call.invite, 487, "Request Terminated", tag=call.local_tag)
                self._send(call.final, call.source)
        elif method == "BYE":
            call.bye_received_at = now
            self._send(_response(message, 200, "OK", tag=call.local_tag), addr)
        elif method == "INVITE":  # re-INVITE: same media
            self._send(_response(message, 200, "OK", tag=call.local_tag, contact=self._contact(),
                                 body=self._sdp(self.rtp2 if self.moved else None)), addr)
        else:
            self._send(_response(message, 200, "OK", tag=call.local_tag), addr)

    def _new_invite(self, now: float, invite: Request, raw: bytes, addr: tuple[str, int]) -> None:
        call = AgentCall(invite, raw, addr, f"agent{random.getrandbits(32):x}", now)
        text = invite.body.decode(errors="replace")
        media = re.search(r"m=audio (\d+)", text)
        conn = re.search(r"c=IN IP4 (\S+)", text)
        if media and conn:
            call.remote_media = (conn.group(1), int(media.group(1)))
        event = re.search(r"a=rtpmap:(\d+) telephone-event/8000", text)
        if event:
            call.dtmf_pt = int(event.group(1))
        self.call = call
        self._send(_response(invite, 100, "Trying"), addr)
        if self.mode == "busy":
            call.final = _response(invite, 486, "Busy Here", tag=call.local_tag)
            self._send(call.final, addr)
            return
        self._ring(invite, call, addr)
        if self.mode in ("answer", "fail"):
            self._answer_due = now + self.answer_delay

    def _ring(self, invite: Request, call: AgentCall, addr: tuple[str, int]) -> None:
        if not self.early:
            self._send(_response(invite, 180, "Ringing", tag=call.local_tag, contact=self._contact()), addr)
            return
        body = b"" if self.early == "nosdp" else self._sdp()
        self._send(_response(invite, 183, "Session Progress", tag=call.local_tag, contact=self._contact(),
                             body=body), addr)
        if self.early == "fork":
            assert self.rtp2 is not None
            self._send(_response(invite, 183, "Session Progress", tag=call.local_tag + "b",
                                 contact=self._contact(), body=self._sdp(self.rtp2)), addr)

    def _answer(self, call: AgentCall) -> None:
        media = self.rtp2 if self.moved else None
        call.final = _response(call.invite, 200, "OK", tag=call.local_tag, contact=self._contact(),
                               body=self._sdp(media))
        call.answered_at = time.monotonic()
        self._send(call.final, call.source)
        self._retransmit = (call.answered_at + T1, T1, 6)

    def _contact(self) -> str:
        return f"<sip:{self.user}@{self.host}:{self.port}>"

    def _sdp(self, sock: socket.socket | None = None) -> bytes:
        port = (sock or self.rtp).getsockname()[1]
        return (
            f"v=0\r\no=agent 1 1 IN IP4 {self.host}\r\ns=-\r\nc=IN IP4 {self.host}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        ).encode()

    def _send(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((time.monotonic(), data.split(b"\r\n", 1)[0].decode(errors="replace")))
        try:
            self.sip.sendto(data, addr)
        except OSError:
            pass


def _response(request: Request, status: int, reason: str, *, tag: str | None = None,
              contact: str | None = None, body: bytes = b"") -> bytes:
    lines = [f"SIP/2.0 {status} {reason}"]
    for name, value in request.headers:
        key = name.lower()
        if key in ("via", "v", "from", "f", "call-id", "i", "cseq", "record-route"):
            lines.append(f"{name}: {value}")
        elif key in ("to", "t"):
            lines.append(f"{name}: {value}" + (f";tag={tag}" if tag and "tag=" not in value else ""))
    if contact:
        lines.append(f"Contact: {contact}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    return sock


def _even_rtp_socket(host: str) -> socket.socket:
    for _ in range(50):
        sock = bound_udp(host)
        if sock.getsockname()[1] % 2 == 0:
            return sock
        sock.close()
    raise RuntimeError("no even RTP port")


# ---------------------------------------------------------------------- the caller side
@dataclass
class Carrier(Caller):
    """The scripted caller, acting as the carrier for REFER with Replaces: answers
    REFER with 202 (every other request with 200, like :class:`Caller`), sends NOTIFY
    sipfrag progress, and keeps RTP and SIP with their arrival times."""

    rtp_log: list[tuple[float, bytes]] = field(default_factory=list)
    sip_log: list[tuple[float, Request | Response]] = field(default_factory=list)
    refers: list[Request] = field(default_factory=list)
    hung_up: bool = False
    refer_answer: str = "202 Accepted"
    """How REFERs are answered: e.g. "501 Not Implemented" for a carrier without REFER."""
    unanswered: tuple[str, ...] = ()
    """Requests of these methods are recorded but not answered (their retransmissions
    are, once the test empties it): e.g. to send a BYE crossing voicegw's."""

    def invite(self, extra: str = "", timeout: float = 10.0) -> Response:
        """INVITE; a non-2xx final is ACKed too (RFC 3261 17.1.1.3), so voicegw stops
        retransmitting it."""
        final = super().invite(extra, timeout)
        if final.status >= 300:
            data = (
                f"ACK sip:demo@{self.daemon[0]}:{self.daemon[1]} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch={self.invite_branch};rport\r\n"
                f"From: <sip:{self.user}@127.0.0.1>;tag={self.from_tag}\r\n"
                f"To: {final.headers.get('to')}\r\nCall-ID: {self.call_id}\r\nCSeq: 1 ACK\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            self.sip.sendto(data, self.daemon)
        return final

    def bye(self, timeout: float = 5.0) -> Response:
        self.hung_up = True
        return super().bye(timeout)

    def hang_up_quietly(self) -> None:
        """Best effort, for a test's ``finally``: BYE a call that may still be up."""
        if self.to_tag is not None and not self.hung_up and not self.got_request("BYE"):
            try:
                self.bye(2.0)
            except TimeoutError:
                pass

    def poll(self, timeout: float = 0.05) -> Request | Response | None:
        self.sip.settimeout(timeout)
        try:
            data, addr = self.sip.recvfrom(65535)
        except (TimeoutError, BlockingIOError):
            return None
        message = parse_message(data)
        self.received.append(message)
        self.sip_log.append((time.monotonic(), message))
        if isinstance(message, Request) and message.method == "REFER":
            self.refers.append(message)
            self.sip.sendto(_ok(data, message).replace(b"200 OK", self.refer_answer.encode(), 1), addr)
        elif isinstance(message, Request) and message.method not in ("ACK", *self.unanswered):
            self.sip.sendto(_ok(data, message), addr)
        return message

    def requests_at(self, method: str) -> list[float]:
        return [t for t, m in self.sip_log if isinstance(m, Request) and m.method == method]

    def __post_init__(self) -> None:
        # RTP is read by a thread so every packet carries its true arrival time
        self._stop = threading.Event()
        self._rtp_thread = threading.Thread(target=self._record, name="carrier-rtp", daemon=True)
        self._rtp_thread.start()

    def _record(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.rtp], [], [], 0.01)
                if ready:
                    data, _ = self.rtp.recvfrom(2048)
                    self.rtp_log.append((time.monotonic(), data))
            except (OSError, ValueError):
                return

    def close(self) -> None:
        self._stop.set()
        self._rtp_thread.join(2)
        super().close()

    def listen(self, seconds: float, until: Callable[[], bool] | None = None, every: float = 0.02) -> bool:
        """Answer SIP for ``seconds``, or until ``until()`` holds (checked every
        ``every`` s); True when ``until`` held. RTP is recorded meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            if until is not None and until():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.poll(min(every, left))

    def audio(self, since: float = 0.0, until: float = float("inf")) -> list[bytes]:
        return [p for t, p in list(self.rtp_log) if since <= t < until and len(p) > 12 and p[1] & 0x7F == 0]

    def notify(self, refer: Request, status: int, reason: str, final: bool, timeout: float = 5.0) -> Response:
        """NOTIFY the REFER's subscription (RFC 3515 2.4.4) with a sipfrag status line."""
        body = f"SIP/2.0 {status} {reason}\r\n".encode()
        self.cseq += 1
        state = "terminated;reason=noresource" if final else "active;expires=60"
        branch = f"z9hG4bK{random.getrandbits(48):x}"
        data = (
            f"NOTIFY sip:demo@{self.daemon[0]}:{self.daemon[1]} SIP/2.0\r\n"
            + self._headers("NOTIFY", self.cseq, branch, self.to_tag)
            + f"Event: refer;id={refer.cseq.seq}\r\nSubscription-State: {state}\r\n"
            + f"Content-Type: message/sipfrag;version=2.0\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.sip.sendto(data, self.daemon)
        return self.wait_response("NOTIFY", timeout)


# ---------------------------------------------------------------------- the daemon
class WarmDaemon(DaemonProcess):
    """``voicegw run --config FILE --agent-uri URI --rtp-ports A-B`` where FILE has
    ``calls: {transfer_method: warm, warm: {...}, ...}`` (DaemonProcess adds its own
    isolation: work dir for the records, free API port, shared TTS cache)."""

    def __init__(self, workdir: Path, agent_uri: str, warm: dict[str, Any], rtp: tuple[int, int],
                 **calls: Any) -> None:
        import yaml

        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "voicegw-warm.yaml"
        path.write_text(yaml.safe_dump({"calls": {"transfer_method": "warm", "warm": warm, **calls}}))
        super().__init__("127.0.0.1", None, "--config", str(path), "--agent-uri", agent_uri,
                         "--rtp-ports", f"{rtp[0]}-{rtp[1]}")

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """The log lines of ``event`` whose fields match (JSON lines only)."""
        found = []
        for line in list(self.lines):
            if f'"{event}"' not in line:
                continue
            entry = json.loads(line)
            if entry.get("event") == event and all(entry.get(k) == v for k, v in fields.items()):
                found.append(entry)
        return found

    def noise(self) -> list[str]:
        """stderr lines that are not JSON log lines (tracebacks, asyncio warnings)."""
        bad = []
        for line in list(self.lines):
            try:
                json.loads(line)
            except ValueError:
                bad.append(line)
        return bad


# ------------------------------------------------------- verbs of the warm-transfer tests
SILENT = 30.0  # RMS below this is silence (hold "silence" is exactly 0)
AUDIBLE = 200.0  # RMS above this is a prompt (TTS speech is in the thousands)
CALLER_TONE = bytes([0x5A]) * 160  # marked payloads, one per direction
AGENT_TONE = bytes([0xA5]) * 160


def press_zero(daemon: WarmDaemon, user: str = "alice") -> Carrier:
    """A connected demo-flow call that asked for the agent (0 is queued during the
    greeting; the menu takes it when the greeting ends)."""
    caller = Carrier(daemon.address, user=user)
    assert caller.invite().status == 200
    caller.send_dtmf("0")
    return caller


def dial(address: tuple[str, int], key: str, *, cls: type[Carrier] = Carrier,
         before: Callable[[Carrier], None] | None = None, **fields: Any) -> Carrier:
    """A connected call (a ``cls`` caller with ``fields``) that pressed ``key`` in the
    flow's menu, a moment after the answer (``before`` that, ``before(caller)``)."""
    caller = cls(address, **fields)
    assert caller.invite().status == 200
    caller.listen(0.2)
    if before is not None:
        before(caller)
    caller.send_dtmf(key)
    return caller


def until_agent(caller: Carrier, agent: Agent, what: str, timeout: float = 12.0) -> None:
    checks = {
        "invited": lambda: agent.call is not None,
        "answered": lambda: agent.call is not None and agent.call.acked,
    }
    assert caller.listen(timeout, checks[what]), f"the agent was never {what}"


def exchange(caller: Carrier, agent: Agent, packets: int = 25) -> tuple[int, int]:
    """Both sides send marked audio at once; (agent got caller's, caller got agent's)."""
    start = time.monotonic()
    for _ in range(packets):
        caller.send_rtp(CALLER_TONE)
        agent.send_rtp(AGENT_TONE)
        caller.listen(0.02)
    caller.listen(0.4)
    to_agent = sum(1 for p in agent.audio(since=start) if p[12:] == CALLER_TONE)
    to_caller = sum(1 for p in caller.audio(since=start) if p[12:] == AGENT_TONE)
    return to_agent, to_caller


def until_quiet(caller: Carrier, quiet: float = 0.3, timeout: float = 6.0) -> None:
    """Until no RTP reached the caller for ``quiet`` s (a prompt ended)."""
    caller.listen(timeout, lambda: caller.rtp_log[-1][0] < time.monotonic() - quiet)


def done(caller: Carrier) -> None:
    caller.hang_up_quietly()
    caller.close()
