"""Placing an outgoing leg (bot or agent): INVITE, 1xx, 2xx + ACK, failure, CANCEL.

One ``Dialing`` per INVITE voicegw sends. It owns the leg's SDP offer, the no-answer
timer and the rules that are the same for every outgoing leg:

- every 2xx is ACKed, retransmissions included (13.2.2.4), from the dialog the first
  2xx created;
- a 2xx that arrives after we gave up (CANCEL crossed it, the call ended) is ACKed
  and then BYEd, so the far end never keeps a dead call;
- no final answer within ``answer_timeout`` sends CANCEL (9.1) and reports ``timeout``.

What a leg means (answer the caller, swap the bridge to an agent) is the caller's
business, through three callbacks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..media.endpoint import MediaEndpoint
from ..sip.advertise import AddressPolicy
from ..sip.build import new_call_id, new_tag
from ..sip.dialog import Dialog
from ..sip.errors import SipError
from ..sip.events import Address, Event, ResponseReceived, TransactionTimedOut
from ..sip.message import Headers, Request, Response
from ..sip.offer_answer import NegotiatedMedia, negotiate
from ..sip.sdp import SdpBuilder, SessionDescription
from ..sip.uri import SipUri
from .call import Call, Leg

#: A failure: the final status, or ``"timeout"`` when nothing final came in time.
FailureStatus = int | str


Answered = Callable[[NegotiatedMedia], None]
"""Told the negotiated media once a re-INVITE of ours is answered with 2xx."""


@dataclass(eq=False)
class Dialing:
    call: Call
    leg: Leg
    offer: SessionDescription
    on_progress: Callable[[Response], None]
    on_answer: Callable[[Response, NegotiatedMedia], None]
    on_failure: Callable[[FailureStatus, str], None]
    answered: bool = False
    given_up: bool = False
    timer: asyncio.TimerHandle | None = None
    sent_requests: list[str] = field(default_factory=list)


class OutboundLegs:
    """Builds and tracks outgoing INVITEs for the engine. ``send`` is the endpoint's
    ``send_request``; ``register`` registers a new dialog with the engine."""

    def __init__(self, *, addresses: AddressPolicy, sip_port: int, send: Callable[[Request, Address], str],
                 register: Callable[[Call, Leg], None],
                 track: Callable[[str, Callable[[Event], None], Call], None],
                 tls_port: int = 5061) -> None:
        self.addresses = addresses
        """Which of our addresses each peer is told (NAT: sip/advertise.py)."""
        self.sip_port = sip_port
        self.tls_port = tls_port
        self._send = send
        self._register = register
        self._track = track
        self._reinvites: dict[object, list[tuple[Call, Leg, SessionDescription, Answered | None]]] = {}
        """Dialogs (by id) with a re-INVITE of ours in progress, and the offers waiting."""

    def contact_for(self, peer: Address) -> str:
        """Our Contact on a leg to ``peer``, with the address ``peer`` can reach
        (behind a NAT: the external one). The peer sends its in-dialog requests
        (BYE, NOTIFY, re-INVITE) to it (RFC 3261 12.1: the remote target), so over TLS it
        names the TLS port and transport: a bare sip: URI with the UDP port would have a
        TLS peer open a TLS connection to our plain TCP port, and lose the request."""
        host = self.addresses.advertised(peer.host).sip_host
        if peer.transport == "tls":
            return f"<sip:voicegw@{host}:{self.tls_port};transport=tls>"
        return f"<sip:voicegw@{host}:{self.sip_port}>"

    def local_via(self, peer: Address) -> str:
        """Via sent-by of our in-dialog requests to ``peer`` (RFC 3261 18.2.2: where
        responses come back; behind a NAT the external address, rport does the rest)."""
        port = self.tls_port if peer.transport == "tls" else self.sip_port
        host = self.addresses.advertised(peer.host).sip_host
        return f"SIP/2.0/{peer.transport.upper()} {host}:{port};rport"

    def dial(
        self,
        call: Call,
        leg: Leg,
        uri: SipUri,
        *,
        caller_user: str,
        max_forwards: int,
        answer_timeout: float,
        extra_headers: list[tuple[str, str]],
        on_progress: Callable[[Response], None],
        on_answer: Callable[[Response, NegotiatedMedia], None],
        on_failure: Callable[[FailureStatus, str], None],
        from_: str | None = None,
    ) -> Dialing:
        """``from_``: the From value without tag (a profile's caller ID,
        sip/caller_id.py); None: the caller's user at our address."""
        assert leg.endpoint is not None
        ours = self.addresses.advertised(leg.peer.host)
        builder = SdpBuilder(session_id=random.getrandbits(48), address=ours.media_host)
        offer = builder.offer(port=leg.endpoint.port)
        headers = Headers([
            ("From", f"{from_ or f'<sip:{caller_user}@{ours.sip_host}>'};tag={new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", new_call_id(ours.sip_host)),
            ("CSeq", "1 INVITE"),
            ("Contact", self.contact_for(leg.peer)),
            ("Max-Forwards", str(max(max_forwards, 0))),
            *extra_headers,
        ])
        invite = Request("INVITE", str(uri), headers)
        invite.set_body(bytes(offer), "application/sdp")
        leg.invite = invite
        leg.sdp = builder  # re-offers on this leg keep the o= session id (RFC 3264 8)
        dialing = Dialing(call, leg, offer, on_progress, on_answer, on_failure)
        leg.transaction_id = self._send(invite, leg.peer)
        self._track(leg.transaction_id, lambda event: self._event(dialing, event), call)
        loop = asyncio.get_running_loop()
        dialing.timer = loop.call_later(answer_timeout, self._no_answer, dialing)
        return dialing

    def reoffer(self, call: Call, leg: Leg, offer: SessionDescription,
                answered: Answered | None = None) -> None:
        """A re-INVITE on a confirmed leg with our new ``offer`` (hold, unhold): its 2xx
        is ACKed and the answer applied; a failure leaves the session as it was
        (RFC 3261 14.1). While one is in progress on the leg, the next waits: "a UAC
        MUST NOT initiate a new INVITE transaction within a dialog while another INVITE
        transaction is in progress" (14.1); a quick hold then unhold otherwise reached
        a PJSIP bot before our ACK, which it answered 500 and stayed on hold."""
        if leg.dialog is None or leg.ended:
            return
        key = leg.dialog.id
        queue = self._reinvites.get(key)
        if queue is not None:
            queue.append((call, leg, offer, answered))
            return
        self._reinvites[key] = []
        request, hop = leg.dialog.create_request("INVITE", body=bytes(offer), content_type="application/sdp")
        seq = request.cseq.seq
        acked = False
        done = False

        def finished() -> None:
            nonlocal done
            if done:
                return
            done = True
            waiting = self._reinvites.pop(key, [])
            if waiting and not leg.ended:
                self.reoffer(*waiting[0])
                if key in self._reinvites:  # sent: the rest wait behind it
                    self._reinvites[key].extend(waiting[1:])

        def on_event(event: Event) -> None:
            nonlocal acked
            if isinstance(event, TransactionTimedOut):
                finished()
                return
            if not isinstance(event, ResponseReceived) or event.response.status < 200:
                return
            if event.response.status >= 300:  # the transaction ACKs it (17.1.1.3)
                finished()
                return
            ack, ack_hop = leg.dialog.create_ack(seq)  # type: ignore[union-attr]
            self._send(ack, destination(ack_hop, leg.peer))  # every 2xx, retransmissions too
            if acked:
                return
            acked = True
            try:
                media = negotiate(offer, SessionDescription.parse(event.response.body), local_is_offerer=True)
            except SipError:
                media = None
            if media is not None and answered is not None:
                answered(media)
            finished()

        self._track(self._send(request, destination(hop, leg.peer)), on_event, call)

    def give_up(self, dialing: Dialing) -> None:
        """Stop the attempt: CANCEL while it rings, BYE if it already answered."""
        if dialing.given_up:
            return
        dialing.given_up = True
        _settle(dialing)
        if dialing.answered:
            self.hang_up(dialing.leg)
        else:
            self.cancel(dialing.leg)

    def cancel(self, leg: Leg) -> None:
        """9.1: CANCEL copies the INVITE's Request-URI, Call-ID, To, From, CSeq number,
        top Via (same branch) and Route headers."""
        invite = leg.invite
        assert invite is not None
        headers = Headers()
        headers.add("Via", invite.headers.values("via")[0])
        for value in invite.headers.get_all("route"):
            headers.add("Route", value)
        for key, name in (("from", "From"), ("to", "To"), ("call-id", "Call-ID"), ("max-forwards", "Max-Forwards")):
            headers.add(name, invite.headers.get(key) or "")
        headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        self._send(Request("CANCEL", invite.uri, headers), leg.peer)

    def hang_up(self, leg: Leg, extra_headers: list[tuple[str, str]] | None = None) -> None:
        if leg.ended or leg.dialog is None:
            leg.ended = True
            return
        leg.ended = True
        try:
            bye, hop = leg.dialog.create_request("BYE", extra_headers=extra_headers or ())
        except SipError:
            return  # the dialog is already over (a crossing BYE): nothing to end
        self._send(bye, destination(hop, leg.peer))

    # ------------------------------------------------------------------ responses
    def _event(self, dialing: Dialing, event: Event) -> None:
        if isinstance(event, TransactionTimedOut):
            if event.timer == "transport":  # a fatal transport error is a 503 (RFC 3261 8.1.3.1)
                self._fail(dialing, 503, "transport failure: could not connect")
            else:
                self._fail(dialing, "timeout", "no response (Timer B)")
            return
        assert isinstance(event, ResponseReceived)
        response = event.response
        if response.status < 200:
            if response.status > 100 and not dialing.given_up:
                dialing.on_progress(response)
            return
        if response.status >= 300:
            self._fail(dialing, response.status, response.reason)
            return
        self._acknowledge(dialing, response)

    def _acknowledge(self, dialing: Dialing, response: Response) -> None:
        leg = dialing.leg
        assert leg.invite is not None
        if leg.dialog is None:
            leg.dialog = Dialog.from_uac_response(
                leg.invite, response, local_via=self.local_via(leg.peer),
                contact=self.contact_for(leg.peer), over_tls=leg.peer.transport == "tls")
            self._register(dialing.call, leg)
        ack, hop = leg.dialog.create_ack(leg.invite.cseq.seq)
        self._send(ack, destination(hop, leg.peer))
        if dialing.answered:
            return  # a retransmitted 2xx: ACKed again, nothing else
        dialing.answered = True
        _settle(dialing)
        if dialing.given_up:
            self.hang_up(leg)  # it answered as we cancelled: 15, end it
            return
        try:
            media = negotiate(dialing.offer, SessionDescription.parse(response.body), local_is_offerer=True)
        except SipError as error:
            self.hang_up(leg)
            self._fail(dialing, 488, f"unusable SDP in 2xx: {error.reason}")
            return
        dialing.on_answer(response, media)

    def _fail(self, dialing: Dialing, status: FailureStatus, reason: str) -> None:
        _settle(dialing)
        if dialing.given_up:
            return  # already reported, or we stopped it (the 487 to our CANCEL is not news)
        dialing.given_up = True
        dialing.on_failure(status, reason)

    def _no_answer(self, dialing: Dialing) -> None:
        dialing.timer = None
        if dialing.answered or dialing.given_up:
            return
        _settle(dialing)
        self.cancel(dialing.leg)
        dialing.given_up = True
        dialing.on_failure("timeout", "no answer")


def _settle(dialing: Dialing) -> None:
    """The attempt is decided (answered, failed, given up): its timer is cancelled and
    the leg lets go of it. The engine's handler for the INVITE keeps the Dialing for
    late or retransmitted responses; the timer handle (whose argument is the Dialing)
    and the leg (which the Dialing holds) keeping it too would be reference cycles
    that only the cyclic collector frees, one set per call."""
    if dialing.timer is not None:
        dialing.timer.cancel()
        dialing.timer = None
    if dialing.leg.dialing is dialing:
        dialing.leg.dialing = None


def destination(uri: object, fallback: Address) -> Address:
    """Where an in-dialog request goes: the next hop if it is an IP literal (no DNS
    yet), else the address the leg's peer used."""
    if isinstance(uri, SipUri):
        host = uri.host.strip("[]")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return fallback
        return Address(uri.transport or fallback.transport, host, uri.port or 5060)
    return fallback


def apply_media(endpoint: MediaEndpoint, media: NegotiatedMedia) -> None:
    """Point a leg's endpoint at what offer/answer settled on: payload types, SRTP
    keys (or none), the far address."""
    endpoint.payload_type = media.payload_type
    endpoint.dtmf_payload_type = media.telephone_event
    keys = media.srtp
    if keys is not None:
        endpoint.set_srtp(keys.remote_key, keys.local_key, keys.suite)
    else:
        endpoint.set_srtp(None)
    endpoint.set_remote(media.remote_address, media.remote_port)


def peer_of(uri: SipUri) -> Address:
    """Where a SIP URI is reached: sips: and ;transport=tls go over TLS (default port
    5061, RFC 3261 19.1.2), others over the URI's transport, UDP by default."""
    transport = "tls" if uri.scheme == "sips" else (uri.transport or "udp")
    return Address(transport, uri.host.strip("[]"), uri.port or (5061 if transport == "tls" else 5060))
