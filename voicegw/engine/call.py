"""A call and its legs, with the call's life as one transition table.

::

    SETUP --bot answered / local flow answered--> CONNECTED --BYE either side / no RTP--> ENDED
      |  \\--bot failed / timed out / caller CANCEL--> ENDED

Every change is recorded on the call's timeline as a typed event
(:mod:`voicegw.engine.events`), which the store persists and the API shows.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..sip.events import Address
from ..sip.invite_session_table import State as SessionState
from ..sip.message import Request
from .disposition import disposition
from .events import CallConnected, CallDisposed, CallEnded, CallEvent, CallStarted

if TYPE_CHECKING:
    from ..media.endpoint import MediaEndpoint
    from ..sip.dialog import Dialog


class CallState(enum.Enum):
    SETUP = "setup"
    CONNECTED = "connected"
    ENDED = "ended"


class CallInput(enum.Enum):
    ANSWERED = "answered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    HUNG_UP = "hung up"
    MEDIA_TIMEOUT = "media_timeout"
    """No RTP from a leg that should be sending (engine/media_watch.py)."""


TRANSITIONS: dict[tuple[CallState, CallInput], CallState] = {
    (CallState.SETUP, CallInput.ANSWERED): CallState.CONNECTED,
    (CallState.SETUP, CallInput.FAILED): CallState.ENDED,
    (CallState.SETUP, CallInput.CANCELLED): CallState.ENDED,
    (CallState.SETUP, CallInput.HUNG_UP): CallState.ENDED,
    (CallState.CONNECTED, CallInput.HUNG_UP): CallState.ENDED,
    (CallState.CONNECTED, CallInput.FAILED): CallState.ENDED,
    (CallState.CONNECTED, CallInput.MEDIA_TIMEOUT): CallState.ENDED,
}


@dataclass(eq=False, slots=True)  # slots: a few per call, held while it is up
class Leg:
    """One SIP dialog of the call plus its media endpoint."""

    role: str  # "caller" | "bot" | "agent"
    peer: Address
    """Where its in-dialog requests go when the remote target is not an IP literal."""
    endpoint: MediaEndpoint | None = None
    dialog: Dialog | None = None
    invite: Request | None = None
    """The INVITE that created the leg (ours on B/C, the caller's on A)."""
    transaction_id: str = ""
    """Caller leg: the INVITE server transaction; bot leg: our INVITE client transaction."""
    sdp: Any = None
    """Our SdpBuilder for this leg: one o= session id, version +1 per change (RFC 3264 8)."""
    dialing: Any = None
    """Outgoing legs: the ``Dialing`` of their INVITE while it is pending."""
    session: Any = None
    """The leg's INVITE session (an ``engine.leg_session.LegSession``): 2xx/ACK, CANCEL,
    BYE, re-INVITE/UPDATE and session timers; ``dialog`` is its dialog."""
    held: bool = False
    """The peer put us on hold (its last offer: sendonly, inactive or c=0.0.0.0)."""
    srtp_offer: str = "off"
    """What our offers on this leg carry (outgoing legs: the profile's ``srtp``): ``off``
    RTP/AVP, ``optional`` RTP/AVP with a=crypto, ``required`` RTP/SAVP (offer_on)."""
    srtp_key: bytes | None = None
    """Our SRTP master key || salt for this leg (RFC 4568), kept for its whole life so
    a re-INVITE keeps the running context; None: the leg cannot do SRTP."""
    early_address: tuple[str, int] | None = None
    """Where the leg's early media comes from (the SDP of the 183 relayed last): a 2xx
    naming another address re-points the leg (RFC 3960 3, MediaEndpoint.repoint)."""
    auth: Any = None
    """The leg's digest answers (a ``sip.request_auth.RequestAuth``) when its peer's
    profile has ``auth``: challenges to any request we send on it are answered."""

    @property
    def ended(self) -> bool:
        """The leg is over or on its way out, as its INVITE session says: ended, or
        ending (a CANCEL awaiting the INVITE's final response, RFC 3261 9.1; our BYE
        held for the ACK of our 2xx, 15). A leg without a session (a desk agent, an
        outgoing leg whose targets never resolved) once its media endpoint is closed,
        which every end of such a leg does. Derived, never written, like :attr:`up`."""
        if self.session is not None:
            return self.session.state in _ENDING
        return self.endpoint is not None and self.endpoint.closed

    @property
    def up(self) -> bool:
        """The leg's dialog is set up and nobody hung it up yet, as its INVITE session
        (sip/invite_session_table.py) says: the state the transfers read, never a flag
        of their own. A leg still ringing, cancelled, failed or after a BYE either way
        is not up."""
        return self.session is not None and self.session.state in _UP


#: Session states of a leg that is set up: answered (our 2xx awaiting its ACK counts),
#: a re-INVITE or UPDATE under way either way, or its 491 back-off (RFC 3261 14.1).
_UP = frozenset({SessionState.CONNECTING, SessionState.CONFIRMED, SessionState.REINVITING,
                 SessionState.GLARE, SessionState.REINVITED})
#: Session states of a leg that is over or on its way out.
_ENDING = frozenset({SessionState.CANCEL_PENDING, SessionState.CANCELLING, SessionState.DISCONNECTING,
                     SessionState.DISCONNECTED})


#: Keys kept for a flow that does not listen yet (our 2xx is out before the flow's task
#: takes its first step; a flow starting over): a number typed ahead fits, a flood does not.
EARLY_DIGITS = 32


@dataclass(eq=False, slots=True)
class Call:
    id: str
    caller: Leg
    created: float
    bot: Leg | None = None
    agent: Leg | None = None
    state: CallState = CallState.SETUP
    end_reason: str = ""
    local_tag: str = ""
    """Our tag on the caller's dialog (To tag of our responses)."""
    caller_sdp: Any = None
    """The SDP we answer the caller with (a SessionDescription)."""
    flow_task: Any = None
    """The task running the call's flow, when voicegw itself is the bot."""
    carrier: str | None = None
    """The carrier profile the call came from: the one whose registered binding it was
    sent to, else the first whose ``addresses`` hold its source; None for neither."""
    channel: Any = None
    """The channel the call came in on (a flow.router.Channel): its flow, or the bot
    it goes straight to; set when the INVITE is taken on."""
    refers: Any = None
    """ReferSubscriptions on the caller's dialog, once voicegw has sent a REFER."""
    bot_refer: Any = None
    """The bot's REFER being carried out (an IncomingRefer), if any."""
    context: dict[str, str] = field(default_factory=dict)
    """Context keys the bot handed over on its BYE (engine.bot_context), for the
    transfers that follow (a flow's agent_transfer after its bot node)."""
    transfer: Any = None
    """The transfer in progress or last done (engine.transfer_state.Transfer)."""
    media_watch: Any = None
    """Its RTP inactivity check once answered (engine.media_watch.MediaWatch), or None."""
    timers: dict[Any, Any] = field(default_factory=dict)
    """Named loop timer handles (a warm transfer's confirm timeout, a leg's ring timer),
    cancelled at the end (engine/executor.py)."""
    controller: Any = None
    """The call's controller (engine/controller.py), made by the executor on first use."""
    timeline: list[tuple[float, CallEvent]] = field(default_factory=list)
    """(loop time, event) for everything that happened to the call, oldest first."""
    tasks: set[Any] = field(default_factory=set)
    resources: list[Any] = field(default_factory=list)
    """Bridges and players to close when the call ends."""
    dialog_ids: list[Any] = field(default_factory=list)
    """Every dialog registered for the call, legs since replaced or dropped included:
    the engine forgets them all with the call."""
    transaction_ids: list[str] = field(default_factory=list)
    """Client transactions whose handlers the engine keeps for the call (their
    responses reach the leg's session): forgotten with the call."""
    early_digits: list[str] | None = None
    """Keys the caller pressed while no flow listened (:meth:`hold_digit`), for the flow."""

    listener: EventListener | None = None
    """Called with (call, time, event) for every timeline entry: the store records
    them, the API and metrics watch them."""

    def hold_digit(self, digit: str) -> None:
        """The caller's DTMF handler until the flow listens: the key is kept for it (the
        first EARLY_DIGITS of them)."""
        held = self.early_digits if self.early_digits is not None else []
        if len(held) < EARLY_DIGITS:
            held.append(digit)
        self.early_digits = held

    def take_digits(self) -> list[str]:
        """The keys held for the flow, oldest first; none are kept after."""
        held, self.early_digits = self.early_digits or [], None
        return held

    def record(self, now: float, event: CallEvent) -> None:
        self.timeline.append((now, event))
        if self.listener is not None:
            self.listener(self, now, event)

    def apply(self, event: CallInput, now: float, reason: str = "", status: int | None = None) -> bool:
        """Move by the table; False (and nothing changes) when there is no such arrow.
        ``status``: the final response the caller's INVITE got, when it ends in setup."""
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            return False
        if target is CallState.ENDED:
            self.record(now, CallEnded(event.value, reason, status))
            outcome = disposition(event for _, event in self.timeline)
            started = next((e for _, e in self.timeline if isinstance(e, CallStarted)), None)
            # before the end closes a transfer still under way (that one was abandoned)
            self.record(now, CallDisposed(outcome.disposition.value, outcome.method,
                                          started.flow if started else None,
                                          started.channel if started else None))
        else:
            self.record(now, CallConnected(event.value, reason))
        self.state = target
        if target is CallState.ENDED:
            self.end_reason = reason or event.value
        return True

    def lighten(self) -> None:
        """Once ended, the call stays among the API's last ended calls (and in the
        engine while a leg's INVITE session outlives the end: 64*T1 at most). Neither
        needs the parsed INVITEs' structured values, our SDP as a parsed description,
        or the closed bridges and players: let them go (issue 16)."""
        for leg in self.legs():
            if leg.invite is not None:
                leg.invite.headers.forget_parsed()
            if leg.sdp is not None:
                leg.sdp.last = None  # only compared with the next offer: there is none
        if self.caller_sdp is not None:
            self.caller_sdp = bytes(self.caller_sdp)  # what any late answer sends
        self.resources.clear()  # closed by the end; their RTP counts already taken

    @property
    def key(self) -> str:
        """Unique per call even when a caller reuses a Call-ID (our tag differs)."""
        return f"{self.id};{self.local_tag}"

    def cancel_timer(self, name: Any) -> None:
        handle = self.timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def legs(self) -> list[Leg]:
        return [leg for leg in (self.caller, self.bot, self.agent) if leg is not None]


EventListener = Callable[[Call, float, CallEvent], None]
"""Watches every call's timeline: ``listener(call, loop time, event)``."""
