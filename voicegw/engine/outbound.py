"""Legs on INVITE sessions: placing an outgoing leg (bot or agent), taking the caller's.

Every leg runs on its own INVITE session (:mod:`voicegw.sip.invite_session`, driven by
:class:`~voicegw.engine.leg_session.LegSession`), which owns 2xx/ACK, CANCEL, BYE,
re-INVITE/UPDATE with 491 glare, and session timers. This module builds them:

- ``dial``: one ``Dialing`` per INVITE voicegw sends. It holds the leg's SDP offer
  and whoever dialled it (three callbacks); the session's events go to the call's
  controller as typed inputs (``feed``: engine/control_io.py), which decides the
  attempt (answered, failed, given up at its ring timer) and has the executor tell the
  dialler; from then on the leg's events go to the engine (``dialog_events``). The
  session ACKs every 2xx, retransmissions included (13.2.2.4), ACKs and BYEs a 2xx
  that arrives after we gave up, and holds a CANCEL until the INVITE got a provisional
  response (9.1);
- ``take``: the session of an INVITE we received (the caller's, or one with Replaces).

What a leg means (answer the caller, swap the bridge to an agent) is the caller's
business, through the callbacks.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from ..media.endpoint import MediaEndpoint
from ..media.srtp import new_key as new_srtp_key
from ..sip.advertise import AddressPolicy
from ..sip.build import new_call_id, new_tag
from ..sip.core import ALLOWED_METHODS
from ..sip.dialog_table import DialogRole
from ..sip.digest_client import Account, DigestClient
from ..sip.errors import SipError
from ..sip.events import Address, Event
from ..sip.invite_session_actions import SessionConfig
from ..sip.invite_session_io import (
    Bye,
    IncomingRequest,
    Invite,
    MediaUpdated,
    Output,
    ProgressReceived,
    Terminated,
)
from ..sip.invite_session_table import Cause, State
from ..sip.message import Headers, Request, Response
from ..sip.offer_answer import NegotiatedMedia, make_answer
from ..sip.request_auth import RequestAuth
from ..sip.sdes import DEFAULT_SUITE, CryptoAttribute
from ..sip.sdp import SdpBuilder, SessionDescription
from ..sip.sdp_fields import Direction
from ..sip.uri import SipUri
from .call import Call, Leg
from .control_io import Input, LegAnswered, LegDialled, LegDropped, LegFailed, LegProgressed
from .leg_session import Answered, LegSession, Wire, new_session

#: A failure: the final status, ``"no_answer"`` when our ring timeout gave up on it, or
#: ``"timeout"`` when no response came at all (Timer B).
FailureStatus = int | str

DialogEvents = Callable[[Call, Leg, Output], None]
"""The engine's handler of a leg's session events once no ``Dialing`` has them."""


@dataclass(eq=False)
class Dialing:
    call: Call
    leg: Leg
    offer: SessionDescription
    on_progress: Callable[[Response, NegotiatedMedia | None], None]
    """Told each 1xx and what its SDP settled (early media), if anything."""
    on_answer: Callable[[Response | None, NegotiatedMedia], None]
    """Told the negotiated media of the 2xx (the response itself stays in the session)."""
    on_failure: Callable[[FailureStatus, str], None]
    session: LegSession | None = None
    answering: RequestAuth | None = None
    """Answers the peer's digest challenges when its profile has ``auth`` (the leg's
    ``auth``: the INVITE's, and every later request's on the leg)."""

    def end(self) -> None:
        """CANCEL the INVITE (held until a provisional response, 9.1), or end the
        session whatever its state."""
        if self.session is not None:
            self.session.end()


class OutboundLegs:
    """Builds the legs' INVITE sessions for the engine. ``send`` is the endpoint's
    ``send_request``, ``respond`` the engine's; ``register`` registers a new dialog with
    the engine; ``dialog_events`` takes a leg's session events once it is set up;
    ``feed`` hands a dial attempt's inputs to the call's controller (through the
    executor) and ``now`` is the loop's clock, read here to date a ring timeout."""

    def __init__(self, *, addresses: AddressPolicy, sip_port: int, send: Callable[[Request, Address], str],
                 register: Callable[[Call, Leg], None],
                 track: Callable[[str, Callable[[Event], None], Call], None],
                 respond: Callable[[str, Response], None] | None = None,
                 dialog_events: DialogEvents | None = None,
                 feed: Callable[[Call, Input], None] | None = None,
                 now: Callable[[], float] | None = None,
                 tls_port: int = 5061,
                 settled: Callable[[Call], None] | None = None) -> None:
        self.addresses = addresses
        """Which of our addresses each peer is told (NAT: sip/advertise.py)."""
        self.sip_port = sip_port
        self.tls_port = tls_port
        self._wire = Wire(send=send, respond=respond or _no_response, track=track, register=register,
                          settled=settled or _no_settled)
        self.dialog_events: DialogEvents = dialog_events or _no_events
        self.feed: Callable[[Call, Input], None] = feed or _no_feed
        self._now = now or _no_clock
        self._digests: dict[Account, DigestClient] = {}

    def _digest(self, account: Account) -> DigestClient:
        """One client per account: ``nc`` counts the uses of a nonce across calls
        (RFC 7616 3.4)."""
        client = self._digests.get(account)
        if client is None:
            client = self._digests[account] = DigestClient(account, lambda: secrets.token_hex(8))
        return client

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

    def session_config(self, peer: Address) -> SessionConfig:
        """A leg's session: our Via and Contact for ``peer``, Allow in our 2xx (13.3.1.4);
        voicegw asks for no session timer on the legs it places and follows what an
        INVITE it takes asks for (RFC 4028 9), Min-SE 90 s (RFC 4028 4)."""
        return SessionConfig(local_via=self.local_via(peer), contact=self.contact_for(peer),
                             over_tls=peer.transport == "tls", allow=ALLOW)

    # ------------------------------------------------------------------ sessions
    def take(self, call: Call, leg: Leg, transaction_id: str, local_tag: str,
             account: Account | None = None) -> LegSession:
        """The session of an INVITE we received (``leg.invite``); its events go to the
        engine. The session may refuse it at once (422, 488): see ``terminated``.
        ``account``: the digest credentials of the peer's profile, for its challenges
        to our requests on the leg (BYE, re-INVITE, REFER...; RFC 3261 22.2)."""
        assert leg.invite is not None
        if account is not None:
            leg.auth = RequestAuth(self._digest(account))
        session = new_session(DialogRole.UAS, self.session_config(leg.peer), local_tag, authorizer=leg.auth)
        glue = LegSession(call, leg, session, self._wire,
                          lambda output: self.dialog_events(call, leg, output))
        leg.session = glue
        glue.handle(IncomingRequest(leg.invite, transaction_id))
        return glue

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
        on_progress: Callable[[Response, NegotiatedMedia | None], None],
        on_answer: Callable[[Response | None, NegotiatedMedia], None],
        on_failure: Callable[[FailureStatus, str], None],
        from_: str | None = None,
        srtp: str = "off",
        account: Account | None = None,
        route: str | None = None,
        delayed_offer: bool = False,
    ) -> Dialing:
        """``from_``: the From value without tag (a profile's caller ID,
        sip/caller_id.py); None: the caller's user at our address. ``srtp``: the
        profile's SRTP offer (off, optional, required; see offer_on). ``account``: the
        target profile's digest credentials (RFC 3261 22.2); ``route``: a pre-loaded
        Route (the profile's outbound proxy, 8.1.2). ``leg.peer`` is where it is sent.
        ``delayed_offer``: the INVITE has no SDP (13.2.1); the peer's offer in its 2xx
        (or reliable 1xx) is answered from the leg's endpoint, in the ACK (or PRACK)."""
        assert leg.endpoint is not None
        ours = self.addresses.advertised(leg.peer.host)
        builder = SdpBuilder(session_id=random.getrandbits(48), address=ours.media_host)
        leg.sdp = builder  # re-offers on this leg keep the o= session id (RFC 3264 8)
        leg.srtp_offer = srtp
        if srtp != "off":
            leg.srtp_key = new_srtp_key()  # also lets us answer the peer's RTP/SAVP re-offers
        offer = offer_on(leg)
        headers = Headers([
            ("From", f"{from_ or f'<sip:{caller_user}@{ours.sip_host}>'};tag={new_tag()}"),
            ("To", f"<{uri}>"),
            ("Call-ID", new_call_id(ours.sip_host)),
            ("CSeq", "1 INVITE"),
            ("Contact", self.contact_for(leg.peer)),
            ("Max-Forwards", str(max(max_forwards, 0))),
            *((("Route", route),) if route else ()),
            *extra_headers,
        ])
        invite = Request("INVITE", str(uri), headers)
        if not delayed_offer:
            invite.set_body(bytes(offer), "application/sdp")
        leg.invite = invite
        dialing = Dialing(call, leg, offer, on_progress, on_answer, on_failure)
        if account is not None:
            dialing.answering = leg.auth = RequestAuth(self._digest(account))
        session = new_session(DialogRole.UAC, self.session_config(leg.peer), authorizer=dialing.answering)
        glue = LegSession(call, leg, session, self._wire, lambda output: self._event(dialing, output))
        dialing.session = leg.session = glue
        # the ring timer is armed before the INVITE leaves: a failure at once finds it
        self.feed(call, LegDialled(dialing, self._now() + answer_timeout))
        glue.handle(Invite(invite, (lambda offered: self._answer(leg, offered)) if delayed_offer else None))
        return dialing

    def _answer(self, leg: Leg, offer: SessionDescription) -> SessionDescription | None:
        """Our answer to the offer in the 2xx (or reliable 1xx) to a delayed-offer INVITE:
        the leg's endpoint, RTP/SAVP with our key when offered and the leg has one."""
        assert leg.endpoint is not None and leg.sdp is not None
        protos = ("RTP/AVP", "RTP/SAVP") if leg.srtp_key is not None else ("RTP/AVP",)
        try:
            answer = make_answer(offer, origin=leg.sdp.origin, address=self.addresses.advertised(leg.peer.host).media_host,
                                 port=leg.endpoint.port, protos=protos, srtp_key=leg.srtp_key)
        except SipError:
            return None
        return leg.sdp.stamp(answer.sdp)

    def reoffer(self, call: Call, leg: Leg, offer: SessionDescription,
                answered: Answered | None = None) -> None:
        """A re-INVITE on a confirmed leg with our new ``offer`` (hold, unhold): its 2xx
        is ACKed and the answer applied; a failure leaves the session as it was
        (RFC 3261 14.1). While an INVITE transaction is in progress on the leg, either
        way, it waits (14.1): a quick hold then unhold otherwise reached a PJSIP bot
        before our ACK, which it answered 500 and stayed on hold."""
        if leg.session is None or leg.ended:
            return
        leg.session.reoffer(offer, answered)

    def give_up(self, dialing: Dialing) -> None:
        """Stop an attempt that still rings: CANCEL (held until a provisional response,
        9.1). An attempt already decided is the engine's leg: ``hang_up`` it."""
        self.feed(dialing.call, LegDropped(dialing))

    def drop(self, leg: Leg) -> None:
        """Let go of an outgoing leg whatever became of it: CANCEL while its attempt
        rings (the controller decides it), BYE once it is set up."""
        if leg.dialing is not None:
            self.give_up(leg.dialing)
        else:
            self.hang_up(leg)

    def cancel(self, leg: Leg) -> None:
        """CANCEL the leg's INVITE (9.1), or end its session whatever its state."""
        if leg.session is not None:
            leg.session.end()

    def hang_up(self, leg: Leg, extra_headers: list[tuple[str, str]] | None = None) -> None:
        """BYE (15); a callee whose 2xx is not ACKed yet waits for the ACK first."""
        glue = leg.session
        if glue is None or glue.terminated:
            return
        if leg.up:
            glue.handle(Bye(tuple(extra_headers or ())))
        else:
            glue.end()

    # ------------------------------------------------------------------ the attempt
    def _event(self, dialing: Dialing, output: Output) -> None:
        """A ringing leg's session event, as the controller's input (it ignores what
        comes after the attempt is decided)."""
        if isinstance(output, ProgressReceived):
            self.feed(dialing.call, LegProgressed(dialing, output.response, output.early_media))
        elif isinstance(output, MediaUpdated) and dialing.session is not None \
                and dialing.session.state is State.CONFIRMED:
            self.feed(dialing.call, LegAnswered(dialing, output.media))
        elif isinstance(output, Terminated):
            self.feed(dialing.call, LegFailed(dialing, *_failure(output, dialing.answering)))

    def decide(self, dialing: Dialing, answered: bool) -> None:
        """The controller decided the attempt: the leg's later events go to the engine
        (answered) or nowhere, and the leg and session let go of the Dialing (else
        reference cycles that only the cyclic collector frees, one set per call)."""
        if dialing.leg.dialing is dialing:
            dialing.leg.dialing = None
        glue = dialing.session
        if glue is not None and glue.on_event is not None:
            call, leg, events = dialing.call, dialing.leg, self.dialog_events
            glue.on_event = (lambda output: events(call, leg, output)) if answered else None


ALLOW = ", ".join(ALLOWED_METHODS)
"""The Allow value of our INVITEs and 2xx (13.3.1.4; RFC 4028 9: a peer that sees
UPDATE there gets our refreshes as UPDATE)."""


def _failure(end: Terminated, answering: RequestAuth | None = None) -> tuple[FailureStatus, str]:
    """The attempt's failure status: a 401/407 we could not (or may no longer) answer
    is ``auth`` (RFC 3261 22.2: no loop on refused credentials; issue 12: at most two
    challenges per request), which fallback rules match."""
    if end.status in (401, 407):
        if answering is None:
            return "auth", f"{end.status} challenge, and the target's profile has no auth"
        if answering.refused:
            return "auth", f"{end.status} challenge not answered: {answering.refused}"
        return "auth", f"{end.status} challenge after {answering.answered} answered"
    if end.cause is Cause.TIMEOUT:
        return "timeout", "no response (Timer B)"
    if end.status == 503 and end.reason == "transport failure":
        return 503, "transport failure: could not connect"
    return end.status if end.status is not None else 500, end.reason


def _no_response(transaction_id: str, response: Response) -> None:
    raise RuntimeError("this OutboundLegs answers no request")


def _no_events(call: Call, leg: Leg, output: Output) -> None:
    return None


def _no_settled(call: Call) -> None:
    return None


def _no_feed(call: Call, event: Input) -> None:
    raise RuntimeError("this OutboundLegs dials no leg")


def _no_clock() -> float:
    raise RuntimeError("this OutboundLegs dials no leg")


def apply_media(endpoint: MediaEndpoint, media: NegotiatedMedia, *, repoint: bool = False) -> None:
    """Point a leg's endpoint at what offer/answer settled on: payload types, SRTP
    keys (or none), the far address. ``repoint``: the address moved since early media
    latched one (MediaEndpoint.repoint), learn it again."""
    endpoint.payload_type = media.payload_type
    endpoint.dtmf_payload_type = media.telephone_event
    keys = media.srtp
    if keys is not None:
        endpoint.set_srtp(keys.remote_key, keys.local_key, keys.suite)
    else:
        endpoint.set_srtp(None)
    if repoint:
        endpoint.repoint(media.remote_address, media.remote_port)
    else:
        endpoint.set_remote(media.remote_address, media.remote_port)


def offer_on(leg: Leg, direction: Direction = Direction.SENDRECV) -> SessionDescription:
    """Our offer on ``leg`` (its first one, or a re-offer: hold, unhold), with the SRTP
    its profile asks for. ``required``: RTP/SAVP with our SDES key (RFC 4568), which
    a peer must answer with its own; ``optional``: best-effort SRTP, RTP/AVP with the
    same a=crypto line - what Asterisk (media_encryption_optimistic) and FreeSWITCH
    (rtp_secure_media=optional) send: a peer that knows SDES answers with a key and
    the stream is SRTP, any other ignores the attribute (RFC 4566 5.13) and answers
    plain RTP. Chosen over two m= lines (SAVP and AVP, RFC 5939's alternative):
    carriers that do not know capability negotiation take those as two streams."""
    assert leg.sdp is not None and leg.endpoint is not None
    mode = leg.srtp_offer
    if mode == "off" and leg.endpoint.srtp is not None:
        mode = "required"  # a re-offer on a leg that answered SRTP (the caller's) keeps it
    if mode == "off" or leg.srtp_key is None:
        return leg.sdp.offer(port=leg.endpoint.port, direction=direction)
    crypto = (CryptoAttribute(1, DEFAULT_SUITE, leg.srtp_key),)
    proto = "RTP/SAVP" if mode == "required" else "RTP/AVP"
    return leg.sdp.offer(port=leg.endpoint.port, direction=direction, proto=proto, crypto=crypto)


def peer_of(uri: SipUri, transport: str | None = None) -> Address:
    """Where a SIP URI is reached: sips: and ;transport=tls go over TLS (default port
    5061, RFC 3261 19.1.2), others over the URI's transport; a URI that names none
    goes over ``transport`` (its profile's ``transport:``), UDP by default."""
    transport = "tls" if uri.scheme == "sips" else (uri.transport or transport or "udp")
    return Address(transport, uri.host.strip("[]"), uri.port or (5061 if transport == "tls" else 5060))


__all__ = ["ALLOW", "Dialing", "FailureStatus", "OutboundLegs", "apply_media", "offer_on", "peer_of"]
