"""In-process SIP user agents and RTP sinks for the engine harness (peers/inproc.py).

:class:`Peer` is a SIP UA built from voicegw/sip/ (UA core, dialogs, the REFER
notifier) behind its own ``SipEndpoint`` on the virtual loop's in-memory UDP
(peers/vloop.py): it places calls (``call``, ``cancel``, ``hang_up``, ``refer``),
answers them as :class:`Answer` says, accepts REFERs as a carrier would
(``refer_outcome``), ACKs then BYEs a 2xx that crosses its CANCEL (RFC 3261 15), and
keeps what it saw as plain lists (:class:`PeerCall`). :class:`MediaSink` is a peer's
RTP socket: it counts what arrives by source and sends RTP or RFC 4733 digits.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from voicegw.media.rtp import build_rtp
from voicegw.sip.build import make_response, new_call_id, new_tag
from voicegw.sip.core import CoreConfig, UserAgentCore
from voicegw.sip.dialog import Dialog, make_dialog_response
from voicegw.sip.dialog_table import DialogId
from voicegw.sip.errors import SipError
from voicegw.sip.events import (
    Address,
    CancelReceived,
    Event,
    RequestReceived,
    ResponseReceived,
    TransactionTimedOut,
)
from voicegw.sip.message import Headers, Request, Response
from voicegw.sip.offer_answer import make_answer
from voicegw.sip.referee import IncomingRefer
from voicegw.sip.sdp import SdpBuilder, SessionDescription
from voicegw.sip.sdp_fields import Direction
from voicegw.sip.sipfrag import SipFrag
from voicegw.transport.endpoint import SipEndpoint

from .vloop import VirtualLoop

HOST = "127.0.0.1"
"""voicegw's SIP and RTP address."""
SIP_PORT = 5060
PEER_RTP_PORT = 30000
HOSTS = {"caller": "127.0.0.2", "bot": "127.0.0.3", "agent": "127.0.0.4", "agent2": "127.0.0.5"}
SUPPORTED = ("timer", "norefersub", "replaces")
"""What the daemon's core supports (daemon.py), and the peers' cores with it."""


def peer_uri(role: str) -> str:
    return f"sip:{role}@{HOSTS[role]}:{SIP_PORT}"


# ------------------------------------------------------------------------------ media
class MediaSink:
    """A peer's RTP socket on the fake network: counts packets by source, sends RTP."""

    def __init__(self, host: str, port: int = PEER_RTP_PORT) -> None:
        self.address = (host, port)
        self.received: dict[tuple[str, int], int] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._seq = itertools.count(random.Random(port).randrange(1 << 15))
        self.ssrc = port * 7919 & 0xFFFFFFFF

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received[addr] = self.received.get(addr, 0) + 1

    def error_received(self, exc: Exception) -> None:  # pragma: no cover - no ICMP here
        pass

    @property
    def total(self) -> int:
        return sum(self.received.values())

    def send_audio(self, to: tuple[str, int], packets: int = 5) -> None:
        assert self.transport is not None
        for _ in range(packets):
            seq = next(self._seq)
            self.transport.sendto(build_rtp(0, seq, seq * 160, self.ssrc, b"\xff" * 160), to)

    def send_digit(self, to: tuple[str, int], digit: str, payload_type: int = 101) -> None:
        """One RFC 4733 event: three packets with the end bit (as phones retransmit it)."""
        assert self.transport is not None
        event = "0123456789*#".index(digit)
        ts = next(self._seq) * 160
        for end in (False, True, True, True):
            flags = 0x80 if end else 0
            payload = bytes([event, flags | 10]) + (800).to_bytes(2, "big")
            self.transport.sendto(build_rtp(payload_type, next(self._seq), ts, self.ssrc, payload), to)


# ------------------------------------------------------------------------------ SIP peers
@dataclass(frozen=True)
class Answer:
    """How a peer answers an INVITE: ``status`` after ``after`` seconds (None: never),
    a 180 first when ``ring``."""

    status: int = 200
    after: float | None = 0.0
    ring: bool = True


@dataclass(eq=False)
class PeerCall:
    """One call at a peer, as the peer sees it."""

    call_id: str
    outgoing: bool
    invite: Request
    transaction_id: str
    sdp: SdpBuilder
    dialog: Dialog | None = None
    statuses: list[int] = field(default_factory=list)
    """Responses to our INVITE (outgoing) or that we sent (incoming), in order."""
    state: str = "calling"
    """calling, early, confirmed, ended (BYE either way), failed (final non-2xx), cancelled."""
    remote_media: tuple[str, int] | None = None
    requests: list[Request] = field(default_factory=list)
    """In-dialog requests received (BYE, REFER, NOTIFY, re-INVITE...)."""
    responses: dict[str, list[int]] = field(default_factory=dict)
    """Responses to our in-dialog requests, by method."""
    answer_handle: asyncio.TimerHandle | None = None
    cancelled: bool = False
    """We sent CANCEL: a 2xx that crosses it is ACKed and then BYEd (RFC 3261 15)."""
    refers: list[IncomingRefer] = field(default_factory=list)

    @property
    def notifies(self) -> list[int]:
        """Status codes of the sipfrag bodies of NOTIFYs received."""
        return [SipFrag.parse(r.body).status for r in self.requests if r.method == "NOTIFY" and r.body]

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


class Peer:
    """An in-process SIP UA at ``HOSTS[role]``:5060 with an RTP sink at :30000."""

    def __init__(self, loop: VirtualLoop, role: str) -> None:
        self.loop = loop
        self.role = role
        self.host = HOSTS[role]
        self.address = Address("udp", self.host, SIP_PORT)
        self.uri = peer_uri(role)
        self.core = UserAgentCore(CoreConfig(host=self.host, udp_port=SIP_PORT, tcp_port=SIP_PORT,
                                             user_agent=f"peer-{role}", supported=SUPPORTED))
        self.endpoint = SipEndpoint(core=self.core, on_event=self._on_event)
        self.media = MediaSink(self.host)
        self.answer: Answer | list[Answer] = Answer()
        """How incoming INVITEs are answered; a list: one per INVITE, in order (the last
        one for every INVITE after)."""
        self.refer_outcome: list[int] | int | None = [100, 200]
        """A REFER received (we are the carrier): a list = 202 then a NOTIFY per status;
        an int = that final response (405...); None = no answer at all."""
        self.on_request: Callable[[PeerCall, Request], None] | None = None
        """Called after each in-dialog request is handled (scripted reactions)."""
        self.calls: dict[str, PeerCall] = {}
        self._by_tx: dict[str, tuple[PeerCall, str]] = {}

    async def start(self) -> None:
        await self.endpoint.start(self.host, SIP_PORT, None, lag_probe=False)
        await self.loop.create_datagram_endpoint(lambda: self.media, local_addr=self.media.address)  # type: ignore[arg-type,return-value]

    @property
    def last(self) -> PeerCall:
        return list(self.calls.values())[-1]

    # -- as a UAC ---------------------------------------------------------------------
    def call(self, to: str = f"sip:bot@{HOST}:{SIP_PORT}", *, headers: list[tuple[str, str]] = ()) -> PeerCall:
        """INVITE voicegw with an SDP offer for our RTP sink."""
        sdp = SdpBuilder(session_id=random.getrandbits(32), address=self.host)
        offer = sdp.offer(port=self.media.address[1])
        call_id = new_call_id(self.host)
        invite = Request("INVITE", to, Headers([
            ("From", f"<sip:{self.role}@{self.host}>;tag={new_tag()}"), ("To", f"<{to}>"),
            ("Call-ID", call_id), ("CSeq", "1 INVITE"), ("Contact", f"<{self.uri}>"),
            ("Max-Forwards", "70"), *headers]))
        invite.set_body(bytes(offer), "application/sdp")
        transaction_id = self.endpoint.send_request(invite, Address("udp", HOST, SIP_PORT))
        call = PeerCall(call_id, True, invite, transaction_id, sdp)
        self.calls[call_id] = call
        self._by_tx[transaction_id] = (call, "INVITE")
        return call

    def cancel(self, call: PeerCall) -> None:
        call.cancelled = True
        invite = call.invite
        headers = Headers([("Via", invite.headers.values("via")[0])])
        for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("max-forwards", "Max-Forwards")):
            headers.add(name, invite.headers.get(key) or "")
        headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        self.endpoint.send_request(Request("CANCEL", invite.uri, headers), Address("udp", HOST, SIP_PORT))

    def request(self, call: PeerCall, method: str, *, headers: list[tuple[str, str]] = (),
                body: bytes = b"", content_type: str | None = None) -> Request:
        """An in-dialog request (BYE, REFER, re-INVITE, INFO...)."""
        assert call.dialog is not None, f"{self.role}: no dialog to send {method} on"
        request, _hop = call.dialog.create_request(method, body=body, content_type=content_type,
                                                   extra_headers=headers)
        transaction_id = self.endpoint.send_request(request, Address("udp", HOST, SIP_PORT))
        # a re-INVITE is told apart from the dialog-creating INVITE by its CSeq
        self._by_tx[transaction_id] = (call, method if method != "INVITE" else f"re-INVITE {request.cseq.seq}")
        if method == "BYE":
            call.state = "ended"
        return request

    def hold(self, call: PeerCall | None = None, on: bool = True) -> None:
        """A re-INVITE putting voicegw on hold (sendonly), or taking it off (sendrecv),
        when the call is up and no re-INVITE of ours is still waiting."""
        call = call or self.last
        if call.state != "confirmed" or call.dialog is None or any(
                c is call and m.startswith("re-INVITE") for c, m in self._by_tx.values()):
            return
        offer = call.sdp.offer(port=self.media.address[1],
                               direction=Direction.SENDONLY if on else Direction.SENDRECV)
        self.request(call, "INVITE", body=bytes(offer), content_type="application/sdp")

    def hang_up(self, call: PeerCall | None = None, headers: list[tuple[str, str]] = ()) -> None:
        """BYE when the call is up; CANCEL while it rings (outgoing) or a 486 (incoming)."""
        call = call or self.last
        if call.state in ("ended", "failed", "cancelled"):
            return
        if call.dialog is not None and call.state == "confirmed":
            self.request(call, "BYE", headers=headers)
        elif call.outgoing:
            self.cancel(call)
        else:
            self._respond_invite(call, 486)

    def refer(self, call: PeerCall, target: str, headers: list[tuple[str, str]] = ()) -> None:
        """REFER on the call (a bot asking voicegw to transfer the caller)."""
        self.request(call, "REFER", headers=[("Refer-To", f"<{target}>"),
                                              ("Referred-By", f"<{self.uri}>"), *headers])

    # -- events -------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event)
        elif isinstance(event, ResponseReceived):
            self._on_response(event)
        elif isinstance(event, TransactionTimedOut):
            found = self._by_tx.pop(event.transaction_id, None)
            if found is not None:
                call, method = found
                call.responses.setdefault(method, []).append(408)
                if method == "INVITE" and call.state in ("calling", "early"):
                    call.state = "failed"
        elif isinstance(event, CancelReceived):
            call = next((c for c in self.calls.values() if c.transaction_id == event.transaction_id), None)
            if call is not None and call.state in ("calling", "early"):
                self._respond_invite(call, 487)
                call.state = "cancelled"

    def _on_response(self, event: ResponseReceived) -> None:
        found = self._by_tx.get(event.transaction_id)
        if found is None:
            return
        call, method = found
        response = event.response
        if method.startswith("re-INVITE") and response.status >= 200:
            call.responses.setdefault("re-INVITE", []).append(response.status)
            self._by_tx.pop(event.transaction_id, None)
            if response.status < 300 and call.dialog is not None and call.state == "confirmed":
                ack, _hop = call.dialog.create_ack(int(method.split()[1]))
                self.endpoint.send_request(ack, Address("udp", HOST, SIP_PORT))
            return
        if method != "INVITE":
            if response.status >= 200:
                call.responses.setdefault(method, []).append(response.status)
                self._by_tx.pop(event.transaction_id, None)
            return
        call.statuses.append(response.status)
        if response.status < 200:
            if response.status > 100 and call.state == "calling":
                call.state = "early"
            return
        if response.status >= 300:
            call.state = "cancelled" if response.status == 487 else "failed"
            return
        if call.dialog is None:
            call.dialog = Dialog.from_uac_response(call.invite, response, local_via=self._via(),
                                                   contact=f"<{self.uri}>", over_tls=False)
            self.core.register_dialog(*_key(call.dialog.id))
        ack, _hop = call.dialog.create_ack(call.invite.cseq.seq)
        self.endpoint.send_request(ack, Address("udp", HOST, SIP_PORT))
        if call.state in ("calling", "early"):
            call.state = "confirmed"
            call.remote_media = _media_address(response.body)
            if call.cancelled:
                self.request(call, "BYE")

    def _on_request(self, event: RequestReceived) -> None:
        request = event.request
        if request.to.tag is None and request.method == "INVITE":
            self._incoming_invite(event)
            return
        call = self.calls.get(request.call_id)
        if call is None or call.dialog is None:
            if request.method != "ACK":
                self.endpoint.send_response(event.transaction_id, _response(request, 481))
            return
        if request.method == "ACK":
            return
        call.requests.append(request)
        dialog = call.dialog
        try:
            dialog.receive_request(request)
        except SipError as error:
            self.endpoint.send_response(event.transaction_id, dialog.respond(request, error.status))
            return
        method = request.method
        if method == "BYE":
            call.state = "ended"
            self.endpoint.send_response(event.transaction_id, dialog.respond(request, 200))
        elif method in ("INVITE", "UPDATE") and request.body:
            offer = SessionDescription.parse(request.body)
            answer = make_answer(offer, origin=call.sdp.origin, address=self.host, port=self.media.address[1])
            call.remote_media = _media_address(request.body)
            self.endpoint.send_response(event.transaction_id, dialog.respond(
                request, 200, body=bytes(call.sdp.stamp(answer.sdp)), content_type="application/sdp"))
        elif method == "REFER":
            self._refer_received(call, event)
        else:  # NOTIFY, INFO, OPTIONS, UPDATE without offer
            self.endpoint.send_response(event.transaction_id, dialog.respond(request, 200))
        if self.on_request is not None:
            self.on_request(call, request)

    def _incoming_invite(self, event: RequestReceived) -> None:
        request = event.request
        sdp = SdpBuilder(session_id=random.getrandbits(32), address=self.host)
        call = PeerCall(request.call_id, False, request, event.transaction_id, sdp,
                        remote_media=_media_address(request.body))
        self.calls[request.call_id] = call
        plans = self.answer if isinstance(self.answer, list) else [self.answer]
        plan = plans[min(len(self.calls) - 1, len(plans) - 1)]
        if plan.ring:
            self._respond_invite(call, 180)
        if plan.after is not None:
            call.answer_handle = self.loop.call_later(plan.after, self._respond_invite, call, plan.status)

    def _respond_invite(self, call: PeerCall, status: int) -> None:
        call.answer_handle = None
        if call.state not in ("calling", "early"):
            return
        invite = call.invite
        tag = call.dialog.id.local_tag if call.dialog is not None else new_tag()
        body, content_type = b"", None
        if status == 200:
            answer = make_answer(SessionDescription.parse(invite.body), origin=call.sdp.origin,
                                 address=self.host, port=self.media.address[1])
            body, content_type = bytes(call.sdp.stamp(answer.sdp)), "application/sdp"
        response = make_dialog_response(invite, status, local_tag=tag, contact=f"<{self.uri}>",
                                        body=body, content_type=content_type)
        if 100 < status < 300 and call.dialog is None:
            call.dialog = Dialog.from_uas_response(invite, response, local_via=self._via(), over_tls=False)
            self.core.register_dialog(*_key(call.dialog.id))
        elif call.dialog is not None and status >= 200:
            call.dialog.respond(invite, status)
        call.statuses.append(status)
        call.state = "early" if status < 200 else "confirmed" if status < 300 else "failed"
        self.endpoint.send_response(call.transaction_id, response)

    def _refer_received(self, call: PeerCall, event: RequestReceived) -> None:
        outcome = self.refer_outcome
        assert call.dialog is not None
        if outcome is None:
            return  # silent: voicegw's REFER times out
        incoming = IncomingRefer.receive(event.request, call.dialog)
        if isinstance(outcome, int):
            self.endpoint.send_response(event.transaction_id, incoming.reject(outcome))
            return
        response, notify = incoming.accept(self.loop.time())
        call.refers.append(incoming)
        self.endpoint.send_response(event.transaction_id, response)
        notifies = [notify] if notify is not None else []
        for status in outcome:
            later = incoming.notify(status, self.loop.time())
            if later is not None:
                notifies.append(later)
        for request, _hop in notifies:
            transaction_id = self.endpoint.send_request(request, Address("udp", HOST, SIP_PORT))
            self._by_tx[transaction_id] = (call, "NOTIFY")

    def _via(self) -> str:
        return f"SIP/2.0/UDP {self.host}:{SIP_PORT};rport"


def _key(dialog_id: DialogId) -> tuple[str, str, str]:
    return dialog_id.call_id, dialog_id.local_tag, dialog_id.remote_tag


def _response(request: Request, status: int) -> Response:
    return make_response(request, status, to_tag=request.to.tag or new_tag())


def _media_address(body: bytes) -> tuple[str, int] | None:
    if not body:
        return None
    sdp = SessionDescription.parse(body)
    audio = next((m for m in sdp.media if m.media == "audio"), None)
    if audio is None:
        return None
    host = audio.connection_address
    return (host, audio.port) if host else None


