"""Dialling a leg, written once: open its RTP endpoint, make the ``Leg``, send the INVITE.

Every outgoing leg (the bot at call setup, a flow's bot node, an agent by INVITE
transfer, a warm transfer's consult call) goes through :func:`dial_leg`. What the
INVITE carries (From, headers, Max-Forwards, the no-answer time) is the caller's
business; what a 1xx, 2xx or failure means is too, through the ``Dialing`` callbacks
of engine/outbound.py. What is the same everywhere lives here:

- the endpoint is opened first: no INVITE offers a port we do not hold;
- the call may have moved on while the port was being opened (the caller hung up or
  cancelled): the port is given back and nothing is sent;
- the leg becomes the call's ``bot`` or ``agent`` and its dialling event is recorded
  before the INVITE leaves (DESIGN: written before acting).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from ..media.ports import PortPoolExhausted
from ..settings import LegPolicy
from ..sip.message import Response
from ..sip.offer_answer import NegotiatedMedia
from ..sip.uri import SipUri
from ..transport.dns import DnsError
from .call import Call, CallState, Leg
from .destinations import FAILOVER, GatewaysDown, locate
from .events import CallEvent
from .outbound import FailureStatus, peer_of
from .ports import CallHost

log = structlog.get_logger("voicegw.engine")


class NotDialled(enum.Enum):
    """Why :func:`dial_leg` sent nothing."""

    NO_PORTS = "no media ports"
    """The port pool is exhausted (the callers answer 503)."""
    CALL_MOVED_ON = "the call moved on while the port was opened"
    """The call left the state the leg was dialled for; the port is released."""


@dataclass(frozen=True)
class LegInvite:
    """What one INVITE carries, besides the SDP offer dial_leg builds."""

    answer_timeout: float
    """No final answer by then: CANCEL, and the failure ``timeout`` (RFC 3261 9.1)."""
    caller_user: str = "voicegw"
    """The From user when ``from_`` is None."""
    from_: str | None = None
    """A caller-ID profile's From value, without tag (sip/caller_id.py)."""
    max_forwards: int = 70
    headers: tuple[tuple[str, str], ...] = ()
    policy: LegPolicy = field(default_factory=LegPolicy)
    """The target profile's transport (when the URI names none, peer_of) and SRTP offer."""


async def dial_leg(
    host: CallHost, call: Call, role: str, uri: SipUri, invite: LegInvite, *, while_in: CallState,
    on_progress: Callable[[Response, NegotiatedMedia | None], None],
    on_answer: Callable[[Response, NegotiatedMedia], None],
    on_failure: Callable[[FailureStatus, str], None],
    dialling: CallEvent | None = None,
    prepare: Callable[[Leg], None] | None = None,
) -> Leg | NotDialled:
    """Dial ``uri`` as the call's ``role`` leg (``"bot"`` or ``"agent"``) while the call
    stays ``while_in``. ``dialling`` is recorded before the INVITE leaves; ``prepare``
    sees the new leg first (its DTMF handler, the transfer's own bookkeeping).

    The URI (or its profile's outbound proxy) is located first (RFC 3263, cached): a
    DNS failure is ``on_failure("dns", why)``, a carrier whose gateways are all down
    ``on_failure(503, why)``. A 408, 503 or timeout of one target moves the same leg on
    to the next (RFC 3263 4.3); ``on_failure`` hears the last target's failure."""
    try:
        endpoint = await host.media.open_endpoint(call.id, role)
    except PortPoolExhausted:
        return NotDialled.NO_PORTS
    if call.state is not while_in:
        endpoint.close()
        return NotDialled.CALL_MOVED_ON
    leg = Leg(role, peer_of(uri, invite.policy.transport), endpoint=endpoint)
    if role == "bot":
        call.bot = leg
    else:
        call.agent = leg
    if prepare is not None:
        prepare(leg)
    if dialling is not None:
        call.record(host.now(), dialling)
    policy = host.config.peers.for_uri(uri)
    try:
        targets = await locate(host.resolver, host.gateways, uri, policy, invite.policy.transport)
    except DnsError as error:
        log.warning("dial.dns_failed", call_id=call.id, role=role, host=error.host, reason=error.reason)
        on_failure("dns", f"DNS: {error}")
        return leg
    except GatewaysDown as error:
        log.warning("dial.gateways_down", call_id=call.id, role=role, reason=str(error))
        on_failure(503, str(error))
        return leg
    if call.state is not while_in:  # the call moved on during the lookup: send nothing
        return leg  # its endpoint closed with the call's end
    _Targets(host, call, role, uri, invite, while_in, leg, list(targets), policy,
             on_progress, on_answer, on_failure).attempt()
    return leg


@dataclass(eq=False)
class _Targets:
    """One leg's INVITE to each located target in turn (RFC 3263 4.3). An object, not
    three nested functions calling each other: those closures form a reference cycle
    holding the leg, the call's callbacks and so the call, freed only by a full
    collection (issue 16: ~57 objects per dialled leg in the bot_refer soak). The
    ``Dialing`` holds ``failed``; the controller's ``decide`` lets go of it."""

    host: CallHost
    call: Call
    role: str
    uri: SipUri
    invite: LegInvite
    while_in: CallState
    leg: Leg
    left: list
    policy: object
    on_progress: Callable[[Response, NegotiatedMedia | None], None]
    on_answer: Callable[[Response, NegotiatedMedia], None]
    on_failure: Callable[[FailureStatus, str], None]

    def attempt(self) -> None:
        leg, invite, policy = self.leg, self.invite, self.policy
        leg.peer = self.left.pop(0)
        leg.session, leg.dialog = None, None
        leg.dialing = self.host.outbound.dial(
            self.call, leg, self.uri, caller_user=invite.caller_user, from_=invite.from_,
            max_forwards=invite.max_forwards, answer_timeout=invite.answer_timeout,
            extra_headers=list(invite.headers), srtp=invite.policy.srtp,
            delayed_offer=invite.policy.delayed_offer,
            on_progress=self.on_progress, on_answer=self.on_answer,
            on_failure=self.failed, account=policy.account if policy else None,  # type: ignore[attr-defined]
            route=policy.route() if policy else None)  # type: ignore[attr-defined]

    def failed(self, status: FailureStatus, reason: str) -> None:
        if status not in FAILOVER or not self.left:
            self.on_failure(status, reason)
            return
        log.info("dial.failover", call_id=self.call.id, role=self.role, target=str(self.leg.peer), status=status,
                 reason=reason, next=str(self.left[0]))
        # after the failed session has let go of the leg
        asyncio.get_running_loop().call_soon(self.next_target, status, reason)

    def next_target(self, status: FailureStatus, reason: str) -> None:
        call, leg = self.call, self.leg
        if call.state is not self.while_in or (self.role == "agent" and call.agent is not leg) \
                or (self.role == "bot" and call.bot is not leg):
            self.on_failure(status, reason)  # the call moved on meanwhile: report the last one
            return
        self.attempt()


__all__ = ["LegInvite", "NotDialled", "dial_leg"]
