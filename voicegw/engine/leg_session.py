"""Executor glue: one leg's INVITE session on the SIP endpoint and the loop clock.

The INVITE session (:mod:`voicegw.sip.invite_session`) is sans-I/O: it takes typed
inputs with ``now`` and returns wire actions and events. :class:`LegSession` is the
small piece that runs it for one leg of a call (the way ``Leg`` in
tests/sip/test_invite_session_core.py runs it over two cores):

- it feeds the session the UA core's events for the leg (requests of its dialog, the
  responses and time-outs of the requests it sent, a CANCEL of its INVITE) and the
  engine's commands, each with the loop's time read here, at the edge;
- it carries out the wire actions (send a request, a response, a 2xx again), tracks
  the client transactions it opened so their outcome comes back as session inputs,
  registers the session's dialog with the engine and the core, and arms one loop
  timer for the session's next timer (``get_timer()``/``handle_timer(now)``);
- it hands the events to ``on_event`` (the engine, or a ``Dialing`` while an outgoing
  leg rings).

Our re-INVITEs wait their turn here: "a UAC MUST NOT initiate a new INVITE
transaction within a dialog while another INVITE transaction is in progress in either
direction" (RFC 3261 14.1), so an offer made while one is out (or while our 2xx is not
ACKed, or the peer's re-INVITE is unanswered) goes out once the session is idle.

Once the session has ended (and a BYE of ours that a challenge may hit has its final
response: the session's ``settled``) the glue lets go of the leg and of its callbacks
(no reference cycle per call) and tells the engine (``Wire.settled``); copies of a 2xx
are the UA core's to ACK again (13.2.2.4, sip/ack_store.py).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..sip.dialog_table import DialogId, DialogRole
from ..sip.events import Address, Event, ResponseReceived, TransactionTimedOut
from ..sip.invite_session import InviteSession
from ..sip.invite_session_actions import SessionConfig
from ..sip.invite_session_io import (
    Authorizer,
    IncomingResponse,
    Modify,
    ModifyCompleted,
    ModifyFailed,
    Output,
    RequestTimedOut,
    RetransmitResponse,
    SendRequest,
    SendResponse,
    SessionInput,
)
from ..sip.invite_session_table import InviteSessionError, State
from ..sip.locate import literal_hop
from ..sip.message import Request, Response
from ..sip.offer_answer import NegotiatedMedia
from ..sip.sdp import SessionDescription

if TYPE_CHECKING:
    from .call import Call, Leg

Answered = Callable[[NegotiatedMedia], None]
"""Told the negotiated media once a re-INVITE of ours is answered with 2xx."""
SessionEvent = Callable[[Output], None]


@dataclass(frozen=True)
class Wire:
    """What the glue needs of the engine: the SIP endpoint's send and answer, the
    engine's transaction index (responses come back to a handler), dialog index."""

    send: Callable[[Request, Address], str]
    """The endpoint's ``send_request``: the client transaction's id ("" for an ACK)."""
    respond: Callable[[str, Response], None]
    track: Callable[[str, Callable[[Event], None], Call], None]
    register: Callable[[Call, Leg], None]
    settled: Callable[[Call], None] = lambda call: None
    """Told when a leg's session is over (an ended call is forgotten once all are)."""


_WIRE = (SendRequest, SendResponse, RetransmitResponse)


class LegSession:
    """Runs ``session`` for ``leg`` of ``call``; events go to ``on_event``."""

    __slots__ = ("_answered", "_call", "_due", "_leg", "_peer", "_registered", "_reoffers", "_timer", "_wire",
                 "on_event", "session")  # one per leg

    def __init__(self, call: Call, leg: Leg, session: InviteSession, wire: Wire,
                 on_event: SessionEvent) -> None:
        self.session = session
        self.on_event: SessionEvent | None = on_event
        self._call: Call | None = call
        self._leg: Leg | None = leg
        self._peer = leg.peer
        self._wire = wire
        self._registered: tuple[DialogId, ...] = ()  # usually one dialog (more: forked 2xx)
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None
        # our re-INVITEs waiting their turn: a list, made at the first (an empty deque
        # is ~600 bytes, and most legs never re-offer)
        self._reoffers: list[tuple[SessionDescription, Answered | None]] | None = None
        self._answered: Answered | None = None  # the waiter of our re-INVITE in flight

    @property
    def state(self) -> State:
        return self.session.state

    @property
    def terminated(self) -> bool:
        return self.session.terminated

    @property
    def settled(self) -> bool:
        """Over, and no BYE of ours still followed for a challenge (the session's)."""
        return self.session.settled

    # ------------------------------------------------------------------ inputs
    def handle(self, item: SessionInput) -> None:
        """One input, with the loop's time now; InviteSessionError if the state does
        not allow a command."""
        now = asyncio.get_running_loop().time()
        self._carry_out(self.session.handle(item, now))

    def end(self, status: int = 480) -> None:
        """Whatever ends the session from where it is: CANCEL, a final response, BYE."""
        self._reoffers = None
        now = asyncio.get_running_loop().time()
        self._carry_out(self.session.end(now, status))

    def reoffer(self, offer: SessionDescription, answered: Answered | None = None) -> None:
        """A re-INVITE with our ``offer``, now or once the session is idle (14.1)."""
        if self.terminated:
            return
        if self._reoffers is None:
            self._reoffers = []
        self._reoffers.append((offer, answered))
        self._next_reoffer()

    def _next_reoffer(self) -> None:
        while self._reoffers and self.state is State.CONFIRMED and self._answered is None:
            offer, answered = self._reoffers[0]
            try:
                outputs = self.session.handle(Modify(offer), asyncio.get_running_loop().time())
            except InviteSessionError:
                return  # our 2xx is not ACKed yet: try again after the next input
            del self._reoffers[0]
            self._answered = answered or _ignore
            self._carry_out(outputs)

    def _tick(self) -> None:
        self._timer, self._due = None, None
        self._carry_out(self.session.handle_timer(asyncio.get_running_loop().time()))

    def _client_event(self, method: str, seq: int, event: Event) -> None:
        """The outcome of a request we sent, as a session input."""
        if isinstance(event, ResponseReceived):
            self._carry_out(self.session.handle(IncomingResponse(event.response),
                                                asyncio.get_running_loop().time()))
        elif isinstance(event, TransactionTimedOut):
            # a fatal transport error is a 503 (RFC 3261 8.1.3.1)
            status = 503 if event.timer == "transport" else 408
            self._carry_out(self.session.handle(RequestTimedOut(method, seq, status),
                                                asyncio.get_running_loop().time()))

    # ------------------------------------------------------------------ outputs
    def _carry_out(self, outputs: list[Output]) -> None:
        call, leg = self._call, self._leg
        for output in outputs:
            if isinstance(output, SendRequest):
                self._send(output.request, output.next_hop, call)
            elif isinstance(output, (SendResponse, RetransmitResponse)):
                self._wire.respond(output.transaction_id, output.response)
        dialog = self.session.dialog
        if dialog is not None and leg is not None and call is not None:
            if leg.dialog is not dialog:
                leg.dialog = dialog
            if dialog.id not in self._registered:
                self._registered += (dialog.id,)
                self._wire.register(call, leg)
        for output in outputs:
            if isinstance(output, _WIRE):
                continue
            if isinstance(output, (ModifyCompleted, ModifyFailed)) and self._answered is not None:
                answered, self._answered = self._answered, None
                if isinstance(output, ModifyCompleted) and output.media is not None:
                    answered(output.media)
            if self.on_event is not None:
                self.on_event(output)
        if self.settled:
            self._let_go()
            return
        self._next_reoffer()
        self._arm()

    def _send(self, request: Request, hop: object, call: Call | None) -> None:
        transaction_id = self._wire.send(request, literal_hop(hop, self._peer))
        if transaction_id and call is not None:
            method, seq = request.method, request.cseq.seq
            self._wire.track(transaction_id, lambda event: self._client_event(method, seq, event), call)

    def _arm(self) -> None:
        due = self.session.get_timer()
        if due == self._due:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = due
        if due is not None:
            self._timer = asyncio.get_running_loop().call_at(due, self._tick)

    def _let_go(self) -> None:
        """The session is over: no timer, no callback, no leg (nothing cyclic stays)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._due = None, None
        self._reoffers = None
        self._answered = None
        self.on_event = None
        call, self._call, self._leg = self._call, None, None
        if call is not None:
            self._wire.settled(call)

    def __repr__(self) -> str:
        return f"<LegSession {self.session!r}>"


def _ignore(media: NegotiatedMedia) -> None:
    return None


def new_session(role: DialogRole, config: SessionConfig, local_tag: str = "",
                authorizer: Authorizer | None = None) -> InviteSession:
    """An INVITE session with the 491 back-off (14.1) and Retry-After (14.2) drawn
    from ``random.randint``; ``authorizer`` answers a UAC's 401/407 (22.2)."""
    return InviteSession(role, config, randint=random.randint, local_tag=local_tag, authorizer=authorizer)




__all__ = ["Answered", "LegSession", "SessionEvent", "Wire", "new_session"]
