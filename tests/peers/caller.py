"""A scripted caller for wire tests: raw SIP over UDP plus an RTP socket.

sipp cannot press DTMF in the middle of a call or show what audio it received, so
tests that must listen use this small UAC: it sends real bytes to the daemon, reads
real bytes back, and hands the test what crossed the wire.
"""

from __future__ import annotations

import random
import re
import socket
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from voicegw.media import g711
from voicegw.media.dtmf import event_payloads
from voicegw.media.srtp import SrtpContext, new_key
from voicegw.sip.sdes import CryptoAttribute
from voicegw.sip.message import Request, Response
from voicegw.sip.parser import parse_message


def bound_udp(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


@dataclass
class Caller:
    daemon: tuple[str, int]
    user: str = "alice"
    sip: socket.socket = field(default_factory=bound_udp)
    rtp: socket.socket = field(default_factory=lambda: _even_rtp_socket())
    call_id: str = field(default_factory=lambda: f"caller-{random.getrandbits(40):x}@127.0.0.1")
    from_tag: str = field(default_factory=lambda: f"{random.getrandbits(32):x}")
    to_tag: str | None = None
    remote_media: tuple[str, int] | None = None
    cseq: int = 1
    received: list[Request | Response] = field(default_factory=list)
    rtp_seq: int = 0
    rtp_ts: int = 0
    ssrc: int = field(default_factory=lambda: random.getrandbits(32))
    request_user: str = "demo"
    """The Request-URI's user: the number called (e.g. an extension of the PBX at ``daemon``)."""

    @property
    def sip_port(self) -> int:
        return self.sip.getsockname()[1]

    @property
    def rtp_port(self) -> int:
        return self.rtp.getsockname()[1]

    def _headers(self, method: str, cseq: int, branch: str, to_tag: str | None) -> str:
        to = f"<sip:{self.request_user}@{self.daemon[0]}:{self.daemon[1]}>" + (f";tag={to_tag}" if to_tag else "")
        return (
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch={branch};rport\r\n"
            f"From: <sip:{self.user}@127.0.0.1>;tag={self.from_tag}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{self.user}@127.0.0.1:{self.sip_port}>\r\n"
            "Max-Forwards: 70\r\n"
        )

    def sdp(self, direction: str = "sendrecv") -> bytes:
        return (
            "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na={direction}\r\n"
        ).encode()

    def invite(self, extra: str = "", timeout: float = 10.0, *, offer: bool = True) -> Response:
        """INVITE, wait for the final response, ACK it (2xx); returns the final.
        ``offer=False``: a delayed offer - no SDP in the INVITE, our answer to the
        2xx's offer in the ACK (RFC 3261 13.2.1)."""
        branch = f"z9hG4bK{random.getrandbits(48):x}"
        self.invite_branch = branch
        body = self.sdp() if offer else b""
        ctype = "Content-Type: application/sdp\r\n" if offer else ""
        data = (
            f"INVITE sip:{self.request_user}@{self.daemon[0]}:{self.daemon[1]} SIP/2.0\r\n"
            + self._headers("INVITE", 1, branch, None) + extra
            + f"{ctype}Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.sip.sendto(data, self.daemon)
        final = self.wait_response("INVITE", timeout)
        if 200 <= final.status < 300:
            self.to_tag = final.to.tag
            self.remote_media = _media_address(final.body)
            self._send_in_dialog("ACK", cseq=1, body=b"" if offer else self.sdp())
        return final

    def _send_in_dialog(self, method: str, cseq: int | None = None, body: bytes = b"",
                        extra: str = "") -> None:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        branch = f"z9hG4bK{random.getrandbits(48):x}"
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        data = (
            f"{method} sip:{self.request_user}@{self.daemon[0]}:{self.daemon[1]} SIP/2.0\r\n"
            + self._headers(method, cseq, branch, self.to_tag) + extra + ctype
            + f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        self.sip.sendto(data, self.daemon)

    def reinvite(self, direction: str, timeout: float = 10.0) -> Response:
        """A re-INVITE offering ``direction`` (hold: sendonly or inactive), ACKed."""
        self.cseq += 1
        cseq = self.cseq
        self._send_in_dialog("INVITE", cseq=cseq, body=self.sdp(direction).replace(b"o=alice 1 1", b"o=alice 1 2"))
        final = self.wait_response("INVITE", timeout)
        if 200 <= final.status < 300:
            self._send_in_dialog("ACK", cseq=cseq)
        return final

    def bye(self, timeout: float = 5.0) -> Response:
        self._send_in_dialog("BYE")
        return self.wait_response("BYE", timeout)

    def poll(self, timeout: float = 0.05) -> Request | Response | None:
        """One SIP message, answering in-dialog requests (BYE...) with 200."""
        self.sip.settimeout(timeout)
        try:
            data, addr = self.sip.recvfrom(65535)
        except (TimeoutError, BlockingIOError):
            return None
        message = parse_message(data)
        self.received.append(message)
        if isinstance(message, Request) and message.method != "ACK":
            self.sip.sendto(_ok(data, message), addr)
        return message

    def wait_response(self, method: str, timeout: float) -> Response:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.poll(0.1)
            if isinstance(message, Response) and message.cseq.method == method and message.status >= 200:
                return message
        raise TimeoutError(f"no final response to {method} within {timeout}s")

    def got_request(self, method: str) -> bool:
        return any(isinstance(m, Request) and m.method == method for m in self.received)

    # --- media ----------------------------------------------------------------------
    def send_rtp(self, payload: bytes, pt: int = 0, marker: bool = False) -> None:
        assert self.remote_media is not None
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self.rtp_seq & 0xFFFF,
                             self.rtp_ts & 0xFFFFFFFF, self.ssrc)
        self.rtp.sendto(header + payload, self.remote_media)
        self.rtp_seq += 1

    def send_dtmf(self, digit: str) -> None:
        """An RFC 4733 event: packets every 20 ms, the end packet three times."""
        self.rtp_ts += 160
        for index, (payload, marker) in enumerate(event_payloads(digit)):
            self.send_rtp(payload, pt=101, marker=marker)
            time.sleep(0.02 if index < 5 else 0)
        self.rtp_ts += 1600

    def receive_rtp(self, seconds: float, max_packets: int = 5000) -> list[bytes]:
        """Every RTP packet that reaches the caller's socket within ``seconds``,
        answering SIP meanwhile."""
        packets: list[bytes] = []
        deadline = time.monotonic() + seconds
        self.rtp.settimeout(0.02)
        while time.monotonic() < deadline and len(packets) < max_packets:
            try:
                data, _ = self.rtp.recvfrom(2048)
                packets.append(data)
            except TimeoutError:
                self.poll(0.001)
        return packets

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()


def speech_energy(packets: list[bytes]) -> float:
    """RMS of the PCMU audio in ``packets`` (0 for silence)."""
    audio = [p[12:] for p in packets if len(p) > 12 and p[1] & 0x7F == 0]
    if not audio:
        return 0.0
    samples = g711.ulaw_decode(b"".join(audio)).astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


def _media_address(sdp: bytes) -> tuple[str, int]:
    text = sdp.decode()
    host = re.search(r"c=IN IP4 (\S+)", text).group(1)  # type: ignore[union-attr]
    port = int(re.search(r"m=audio (\d+)", text).group(1))  # type: ignore[union-attr]
    return host, port


def _ok(raw: bytes, request: Request) -> bytes:
    headers = "".join(
        f"{name}: {value}\r\n" for name, value in request.headers
        if name.lower() in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")
    )
    return f"SIP/2.0 200 OK\r\n{headers}Content-Length: 0\r\n\r\n".encode()


def _even_rtp_socket() -> socket.socket:
    for _ in range(50):
        sock = bound_udp()
        if sock.getsockname()[1] % 2 == 0:
            return sock
        sock.close()
    raise RuntimeError("no even RTP port")


SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"


@dataclass
class SrtpCaller(Caller):
    """The caller offering RTP/SAVP with an inline SDES key (RFC 4568). ``keyed(body)``
    takes the key of voicegw's answer; from then on ``send_rtp`` protects what it sends
    and ``unprotect`` checks what came back (None for a packet that fails)."""

    key: bytes = field(default_factory=lambda: new_key(SRTP_SUITE))
    srtp: SrtpContext | None = None

    def sdp(self, direction: str = "sendrecv") -> bytes:
        return (
            "v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
            f"a=crypto:{CryptoAttribute(1, SRTP_SUITE, self.key)}\r\na=ptime:20\r\na={direction}\r\n"
        ).encode()

    def keyed(self, answer: bytes) -> CryptoAttribute:
        """voicegw's a=crypto from its answer, now keying this caller's SRTP."""
        found = re.search(rb"a=crypto:(.*)\r\n", answer)
        assert found is not None, answer
        ours = CryptoAttribute.parse(found.group(1).decode())
        self.srtp = SrtpContext(ours.key_salt, self.key, ours.suite)  # in: voicegw's, out: ours
        return ours

    def send_rtp(self, payload: bytes, pt: int = 0, marker: bool = False) -> None:
        if self.srtp is None:
            return super().send_rtp(payload, pt, marker)
        assert self.remote_media is not None
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, self.rtp_seq & 0xFFFF,
                             self.rtp_ts & 0xFFFFFFFF, self.ssrc)
        protected = self.srtp.protect_rtp(header + payload)
        assert protected is not None
        self.rtp.sendto(protected, self.remote_media)
        self.rtp_seq += 1
        return None

    def unprotect(self, packets: list[bytes]) -> list[bytes | None]:
        assert self.srtp is not None
        return [self.srtp.unprotect_rtp(p) for p in packets]


@dataclass
class PcmaCaller(Caller):
    """The caller offering PCMA only (G.711 A-law, RFC 3551 4.5.14)."""

    def sdp(self, direction: str = "sendrecv") -> bytes:
        return (
            "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.rtp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na={direction}\r\n"
        ).encode()
