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

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from ..media.endpoint import open_endpoint
from ..media.ports import PortPoolExhausted
from ..settings import LegPolicy
from ..sip.message import Response
from ..sip.offer_answer import NegotiatedMedia
from ..sip.uri import SipUri
from .call import Call, CallState, Leg
from .events import CallEvent
from .outbound import FailureStatus, peer_of
from .ports import CallHost


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
    on_progress: Callable[[Response], None],
    on_answer: Callable[[Response, NegotiatedMedia], None],
    on_failure: Callable[[FailureStatus, str], None],
    dialling: CallEvent | None = None,
    prepare: Callable[[Leg], None] | None = None,
) -> Leg | NotDialled:
    """Dial ``uri`` as the call's ``role`` leg (``"bot"`` or ``"agent"``) while the call
    stays ``while_in``. ``dialling`` is recorded before the INVITE leaves; ``prepare``
    sees the new leg first (its DTMF handler, the transfer's own bookkeeping)."""
    try:
        endpoint = await open_endpoint(host.config.policy.rtp_host, host.pool)
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
    leg.dialing = host.outbound.dial(
        call, leg, uri, caller_user=invite.caller_user, from_=invite.from_, max_forwards=invite.max_forwards,
        answer_timeout=invite.answer_timeout, extra_headers=list(invite.headers), srtp=invite.policy.srtp,
        on_progress=on_progress, on_answer=on_answer, on_failure=on_failure)
    return leg


__all__ = ["LegInvite", "NotDialled", "dial_leg"]
